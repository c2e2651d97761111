#include "config.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"

/*
 * Each getter leaves *out unchanged when the key is absent or null. An integer is a JSON integer
 * or a whole real (4.0), within int's range: a value out of it is refused, not wrapped (the cast
 * of an out-of-range real is undefined behaviour; found by tests/fuzz/fuzz_config.c).
 */
static int json_to_int(json_t *v, int *out) {
    double r = json_is_integer(v) ? (double)json_integer_value(v) : json_is_real(v) ? json_real_value(v) : 0.5;
    if (!(r >= INT_MIN && r <= INT_MAX) || r != floor(r)) return -1;
    *out = json_is_integer(v) ? (int)json_integer_value(v) : (int)r;
    return 0;
}

static int get_int(json_t *o, const char *key, int *out, sd_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (json_to_int(v, out) < 0)
        return sd_err(err, SD_EINPUT, "config key '%s' is not an integer from %d to %d", key, INT_MIN, INT_MAX);
    return 0;
}

/*
 * Channel counts of block_out_channels: 1 to 65536. No Stable Diffusion network has more than 2560;
 * the bound keeps what is derived from them in int (the time embedding's 4x; a count of 643333333
 * overflowed there: found by tests/fuzz/fuzz_config.c).
 */
#define CONFIG_MAX_CHANNELS 65536

static int check_channels(const char *key, const int *v, int n, sd_error *err) {
    for (int i = 0; i < n; i++)
        if (v[i] < 1 || v[i] > CONFIG_MAX_CHANNELS)
            return sd_err(err, SD_EINPUT, "config key '%s' entry %d is %d, not a channel count (1 to %d)", key, i, v[i],
                          CONFIG_MAX_CHANNELS);
    return 0;
}

static int get_float(json_t *o, const char *key, float *out, sd_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return sd_err(err, SD_EINPUT, "config key '%s' is not a number", key);
    *out = (float)json_number_value(v);
    return 0;
}

static int get_double(json_t *o, const char *key, double *out, sd_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return sd_err(err, SD_EINPUT, "config key '%s' is not a number", key);
    *out = json_number_value(v);
    return 0;
}

/* True when a diffusers-saved config lists key in "_use_default_values": from_config then
 * drops the stored value and the new class uses its own default. */
static int uses_default(json_t *o, const char *key) {
    json_t *list = json_object_get(o, "_use_default_values");
    size_t i;
    json_t *e;
    if (!json_is_array(list)) return 0;
    json_array_foreach(list, i, e) {
        if (json_is_string(e) && !strcmp(json_string_value(e), key)) return 1;
    }
    return 0;
}

static int get_bool(json_t *o, const char *key, int *out, sd_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return sd_err(err, SD_EINPUT, "config key '%s' is not true/false", key);
    *out = json_is_true(v);
    return 0;
}

static const char *get_str(json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

/* An int or a list of ints; a scalar is repeated n times. Returns the list length or n. */
static int get_int_list(json_t *o, const char *key, int *out, int n_default, sd_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return n_default;
    int one;
    if (json_is_integer(v) || json_is_real(v)) {
        if (json_to_int(v, &one) < 0)
            return sd_err(err, SD_EINPUT, "config key '%s' is not an integer from %d to %d", key, INT_MIN, INT_MAX);
        for (int i = 0; i < SD_MAX_LEVELS; i++) out[i] = one;
        return n_default;
    }
    if (!json_is_array(v)) return sd_err(err, SD_EINPUT, "config key '%s' is not an integer list", key);
    size_t n = json_array_size(v);
    if (n == 0 || n > SD_MAX_LEVELS)
        return sd_err(err, SD_EUNSUPPORTED, "config key '%s' has %zu entries (1..%d supported)", key, n, SD_MAX_LEVELS);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_integer(e) || json_to_int(e, &out[i]) < 0)
            return sd_err(err, SD_EINPUT, "config key '%s' entry %zu is not an integer from %d to %d", key, i, INT_MIN,
                          INT_MAX);
    }
    return (int)n;
}

static json_t *parse(const char *text, sd_error *err) {
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    if (!root) {
        sd_err(err, SD_EINPUT, "config is not valid JSON: %s (line %d)", je.text, je.line);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        sd_err(err, SD_EINPUT, "config is not a JSON object");
        return NULL;
    }
    return root;
}

/* Reads path and hands its text to parse(); errors get the path as prefix. */
#define LOAD_CONFIG(parse_fn, c, path, err)                 \
    do {                                                   \
        char *text_;                                       \
        int rc_ = sd_fs_read_file(path, &text_, NULL, err);   \
        if (rc_ < 0) return rc_;                           \
        rc_ = parse_fn(c, text_, err);                     \
        free(text_);                                       \
        if (rc_ < 0) sd_err_prefix(err, "%s", path);       \
        return rc_;                                        \
    } while (0)

/* diffusers' U-Net block class names and the attention each has after its resnets. */
typedef struct block_type {
    const char *name;
    unet_attn_kind kind;
} block_type;

static const block_type unet_down_types[] = {
    {"DownBlock2D", UNET_ATTN_NONE}, {"CrossAttnDownBlock2D", UNET_ATTN_CROSS}, {"AttnDownBlock2D", UNET_ATTN_SELF}};
static const block_type unet_up_types[] = {
    {"UpBlock2D", UNET_ATTN_NONE}, {"CrossAttnUpBlock2D", UNET_ATTN_CROSS}, {"AttnUpBlock2D", UNET_ATTN_SELF}};

/* kinds[0..n) from the block class names listed under key (unchanged when the key is absent). */
static int get_block_kinds(json_t *o, const char *key, const block_type *types, size_t n_types, unet_attn_kind *kinds,
                           int n, sd_error *err) {
    json_t *a = json_object_get(o, key);
    if (!a || json_is_null(a)) return 0;
    if (!json_is_array(a)) return sd_err(err, SD_EINPUT, "config key '%s' is not a list", key);
    if ((int)json_array_size(a) != n) return sd_err(err, SD_EINPUT, "config: %zu %s for %d blocks", json_array_size(a), key, n);
    for (int i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(a, (size_t)i));
        size_t k = 0;
        while (k < n_types && !(s && !strcmp(s, types[k].name))) k++;
        if (k == n_types) return sd_err(err, SD_EUNSUPPORTED, "config: %s entry '%s' is not supported", key, s ? s : "?");
        kinds[i] = types[k].kind;
    }
    return 0;
}

/* The mid block: UNet2DConditionModel's mid_block_type (only UNetMidBlock2DCrossAttn is implemented;
 * null means no mid block), or UNet2DModel's UNetMidBlock2D, with self-attention unless add_attention is false. */
static int get_mid_kind(json_t *o, int unet2d, unet_attn_kind *kind, sd_error *err) {
    if (unet2d) {
        int add = 1;
        int rc = get_bool(o, "add_attention", &add, err);
        *kind = add ? UNET_ATTN_SELF : UNET_ATTN_NONE;
        return rc;
    }
    json_t *v = json_object_get(o, "mid_block_type");
    const char *s = json_string_value(v);
    if (v && (!s || strcmp(s, "UNetMidBlock2DCrossAttn")))
        return sd_err(err, SD_EUNSUPPORTED, "config: mid block type '%s' is not supported", s ? s : "null");
    *kind = UNET_ATTN_CROSS;
    return 0;
}

/* only_cross_attention: a bool for every block or one per down block (out[i], 1 = attn1 is a cross-attention). */
static int get_only_cross(json_t *o, int *out, int n, sd_error *err) {
    json_t *v = json_object_get(o, "only_cross_attention");
    if (!v || json_is_null(v)) return 0;
    if (json_is_boolean(v)) {
        for (int i = 0; i < n; i++) out[i] = json_is_true(v);
        return 0;
    }
    if (!json_is_array(v) || (int)json_array_size(v) != n)
        return sd_err(err, SD_EINPUT, "config key 'only_cross_attention' is not true/false or a list of %d of them", n);
    for (int i = 0; i < n; i++) {
        json_t *e = json_array_get(v, (size_t)i);
        if (!json_is_boolean(e)) return sd_err(err, SD_EINPUT, "config key 'only_cross_attention' entry %d is not true/false", i);
        out[i] = json_is_true(e);
    }
    return 0;
}

/* The error for a block whose attention is a plain self-attention block. */
static int refuse_self_attn(const char *block, sd_error *err) {
    return sd_err(err, SD_EUNSUPPORTED,
                  "U-Net %s: plain self-attention blocks (LDM AttentionBlock) in a single checkpoint file are not "
                  "supported; use a diffusers folder",
                  block);
}

int unet_config_check_attn(const unet_config *c, sd_error *err) {
    char block[32];
    for (int i = 0; i < c->n_levels; i++) {
        snprintf(block, sizeof block, "down block %d", i);
        if (c->down_attn[i] == UNET_ATTN_SELF) return refuse_self_attn(block, err);
    }
    if (c->mid_attn == UNET_ATTN_SELF) return refuse_self_attn("mid block", err);
    for (int i = 0; i < c->n_levels; i++) {
        snprintf(block, sizeof block, "up block %d", i);
        if (c->up_attn[i] == UNET_ATTN_SELF) return refuse_self_attn(block, err);
    }
    return 0;
}

void unet_config_sd15(unet_config *c) {
    memset(c, 0, sizeof *c);
    c->in_channels = 4;
    c->out_channels = 4;
    c->n_levels = 4;
    int bo[4] = {320, 640, 1280, 1280};
    for (int i = 0; i < 4; i++) {
        c->block_out[i] = bo[i];
        c->heads[i] = 8;
        c->down_attn[i] = i < 3 ? UNET_ATTN_CROSS : UNET_ATTN_NONE;
        c->up_attn[i] = i > 0 ? UNET_ATTN_CROSS : UNET_ATTN_NONE;
    }
    c->layers_per_block = 2;
    c->norm_groups = 32;
    c->norm_eps = 1e-5f;
    c->cross_attention_dim = 768;
    c->mid_attn = UNET_ATTN_CROSS;
    for (int i = 0; i < SD_MAX_LEVELS; i++) c->transformer_layers[i] = 1;
    c->flip_sin_to_cos = 1;
    c->time_embed_dim = 1280;
    c->sample_size = 64;
    c->downsample_padding = 1;
}

/* SDXL's added conditioning: addition_embed_type null (none) or "text_time" with its two sizes. */
static int get_addition_embed(json_t *j, unet_config *c, sd_error *err) {
    json_t *v = json_object_get(j, "addition_embed_type");
    if (!v || json_is_null(v)) return 0;
    const char *s = json_string_value(v);
    if (!s || strcmp(s, "text_time"))
        return sd_err(err, SD_EUNSUPPORTED, "config key 'addition_embed_type' = '%s' is not supported yet (only "
                      "\"text_time\", SDXL's)", s ? s : "?");
    int rc;
    if ((rc = get_int(j, "addition_time_embed_dim", &c->addition_time_embed_dim, err)) < 0 ||
        (rc = get_int(j, "projection_class_embeddings_input_dim", &c->addition_in_dim, err)) < 0)
        return rc;
    if (c->addition_time_embed_dim < 2 || c->addition_time_embed_dim % 2 || c->addition_in_dim < 1)
        return sd_err(err, SD_EINPUT, "config: addition_embed_type \"text_time\" needs an even addition_time_embed_dim "
                      "and projection_class_embeddings_input_dim");
    return 0;
}

void unet_config_sdxl(unet_config *c) {
    unet_config_sd15(c);
    c->n_levels = 3;
    const int bo[3] = {320, 640, 1280}, depth[3] = {1, 2, 10};
    for (int i = 0; i < 3; i++) {
        c->block_out[i] = bo[i];
        c->heads[i] = bo[i] / 64;
        c->transformer_layers[i] = depth[i];
        c->down_attn[i] = i > 0 ? UNET_ATTN_CROSS : UNET_ATTN_NONE;
        c->up_attn[i] = i < 2 ? UNET_ATTN_CROSS : UNET_ATTN_NONE;
    }
    c->down_attn[3] = c->up_attn[3] = UNET_ATTN_NONE;
    c->block_out[3] = c->heads[3] = 0;
    c->cross_attention_dim = 2048;
    c->use_linear_projection = 1;
    c->addition_time_embed_dim = 256;
    c->addition_in_dim = 2816;
    c->sample_size = 128;
}

void clip_config_sdxl_bigg(clip_config *c) {
    clip_config_sd15(c);
    c->hidden = 1280;
    c->intermediate = 5120;
    c->layers = 32;
    c->heads = 20;
    c->act = CLIP_ACT_GELU;
    c->projection_dim = 1280;
    c->with_projection = 1;
}

int unet_config_head_dim(const unet_config *c, int level) { return c->block_out[level] / c->heads[level]; }

int unet_config_from_json(unet_config *c, const char *text, sd_error *err) {
    unet_config_sd15(c);
    json_t *j = parse(text, err);
    if (!j) return err ? err->code : SD_EINPUT;
    int rc, n;
    int heads[SD_MAX_LEVELS];
    if ((rc = config_check_keys(CONFIG_UNET, j, err)) < 0) goto out;
    const char *s = get_str(j, "_class_name");
    int unet2d = s && !strcmp(s, "UNet2DModel");
    if (s && !unet2d && strcmp(s, "UNet2DConditionModel")) {
        rc = sd_err(err, SD_EUNSUPPORTED, "config: _class_name '%s' is not supported (UNet2DConditionModel, UNet2DModel)", s);
        goto out;
    }
    if ((rc = get_int(j, "in_channels", &c->in_channels, err)) < 0) goto out;
    if ((rc = get_int(j, "out_channels", &c->out_channels, err)) < 0) goto out;
    if ((n = rc = get_int_list(j, "block_out_channels", c->block_out, 4, err)) < 0) goto out;
    if ((rc = check_channels("block_out_channels", c->block_out, n, err)) < 0) goto out;
    c->n_levels = n;
    if ((rc = get_int(j, "layers_per_block", &c->layers_per_block, err)) < 0) goto out;
    if ((rc = get_int(j, "norm_num_groups", &c->norm_groups, err)) < 0) goto out;
    if ((rc = get_float(j, "norm_eps", &c->norm_eps, err)) < 0) goto out;
    if ((rc = get_int(j, "cross_attention_dim", &c->cross_attention_dim, err)) < 0) goto out;
    if ((rc = get_bool(j, "use_linear_projection", &c->use_linear_projection, err)) < 0) goto out;
    if ((rc = get_bool(j, "upcast_attention", &c->upcast_attention, err)) < 0) goto out;
    if ((rc = get_bool(j, "flip_sin_to_cos", &c->flip_sin_to_cos, err)) < 0) goto out;
    if ((rc = get_int(j, "freq_shift", &c->freq_shift, err)) < 0) goto out;
    if ((rc = get_int(j, "sample_size", &c->sample_size, err)) < 0) goto out;
    if ((rc = get_int_list(j, "transformer_layers_per_block", c->transformer_layers, n, err)) < 0) goto out;
    if (rc != n) {
        rc = sd_err(err, SD_EINPUT, "config key 'transformer_layers_per_block' has %d entries for %d blocks", rc, n);
        goto out;
    }
    if ((rc = get_addition_embed(j, c, err)) < 0) goto out;
    if ((rc = get_int(j, "downsample_padding", &c->downsample_padding, err)) < 0) goto out;
    if ((rc = get_int(j, "num_class_embeds", &c->num_class_embeds, err)) < 0) goto out;
    if ((rc = get_only_cross(j, c->only_cross, n, err)) < 0) goto out;
    c->unet2d = unet2d;
    if (c->downsample_padding != 0 && c->downsample_padding != 1) {
        rc = sd_err(err, SD_EUNSUPPORTED, "config: downsample_padding %d is not supported (0 or 1)", c->downsample_padding);
        goto out;
    }
    if (c->num_class_embeds < 0) {
        rc = sd_err(err, SD_EINPUT, "config: num_class_embeds %d must be >= 0", c->num_class_embeds);
        goto out;
    }
    c->time_embed_dim = 4 * c->block_out[0];
    if ((rc = get_int(j, "time_embedding_dim", &c->time_embed_dim, err)) < 0) goto out;
    /* diffusers: num_attention_heads = num_attention_heads or attention_head_dim (a legacy misnomer) */
    /* UNet2DModel: attention_head_dim is the head size instead; null = one head over all channels */
    for (int i = 0; i < SD_MAX_LEVELS; i++) heads[i] = unet2d ? 0 : 8;
    json_t *nah = json_object_get(j, "num_attention_heads");
    const char *hkey = nah && !json_is_null(nah) ? "num_attention_heads" : "attention_head_dim";
    if ((rc = get_int_list(j, hkey, heads, n, err)) < 0) goto out;
    if (rc != n) {
        rc = sd_err(err, SD_EINPUT, "config key '%s' has %d entries for %d blocks", hkey, rc, n);
        goto out;
    }
    for (int i = 0; i < n && unet2d; i++) heads[i] = heads[i] > 0 ? c->block_out[i] / heads[i] : 1;
    for (int i = 0; i < n; i++) {
        c->heads[i] = heads[i];
        if (heads[i] <= 0 || c->block_out[i] % heads[i]) {
            rc = sd_err(err, SD_EINPUT, "config: %d attention heads do not divide %d channels", heads[i], c->block_out[i]);
            goto out;
        }
    }
    size_t nd = sizeof unet_down_types / sizeof *unet_down_types, nu = sizeof unet_up_types / sizeof *unet_up_types;
    if ((rc = get_block_kinds(j, "down_block_types", unet_down_types, nd, c->down_attn, n, err)) < 0 ||
        (rc = get_block_kinds(j, "up_block_types", unet_up_types, nu, c->up_attn, n, err)) < 0 ||
        (rc = get_mid_kind(j, unet2d, &c->mid_attn, err)) < 0)
        goto out;
    s = get_str(j, "act_fn");
    if (s && strcmp(s, "silu")) {
        rc = sd_err(err, SD_EUNSUPPORTED, "config: act_fn '%s' is not supported (only silu)", s);
        goto out;
    }
    for (int i = 0; i < n; i++)
        if (c->transformer_layers[i] < 1) {
            rc = sd_err(err, SD_EINPUT, "config: transformer_layers_per_block must be >= 1");
            goto out;
        }
    rc = 0; /* plain self-attention blocks load from folders (attnblock.c); single files refuse them (model.c) */
out:
    json_decref(j);
    return rc;
}

void vae_config_sd15(vae_config *c) {
    memset(c, 0, sizeof *c);
    c->in_channels = 3;
    c->out_channels = 3;
    c->latent_channels = 4;
    c->n_levels = 4;
    int bo[4] = {128, 256, 512, 512};
    for (int i = 0; i < 4; i++) c->block_out[i] = bo[i];
    c->layers_per_block = 2;
    c->norm_groups = 32;
    c->scaling_factor = 0.18215f;
    c->sample_size = 512;
}

int vae_scale_factor(const vae_config *c) { return c->n_levels > 1 ? 1 << (c->n_levels - 1) : 1; }

int vae_config_from_json(vae_config *c, const char *text, sd_error *err) {
    vae_config_sd15(c);
    json_t *j = parse(text, err);
    if (!j) return err ? err->code : SD_EINPUT;
    int rc;
    if ((rc = config_check_keys(CONFIG_VAE, j, err)) < 0) goto out;
    if ((rc = get_int(j, "in_channels", &c->in_channels, err)) < 0) goto out;
    if ((rc = get_int(j, "out_channels", &c->out_channels, err)) < 0) goto out;
    if ((rc = get_int(j, "latent_channels", &c->latent_channels, err)) < 0) goto out;
    if ((rc = get_int_list(j, "block_out_channels", c->block_out, 4, err)) < 0) goto out;
    c->n_levels = rc;
    if ((rc = check_channels("block_out_channels", c->block_out, c->n_levels, err)) < 0) goto out;
    if ((rc = get_int(j, "layers_per_block", &c->layers_per_block, err)) < 0) goto out;
    if ((rc = get_int(j, "norm_num_groups", &c->norm_groups, err)) < 0) goto out;
    if ((rc = get_float(j, "scaling_factor", &c->scaling_factor, err)) < 0) goto out;
    if ((rc = get_int(j, "sample_size", &c->sample_size, err)) < 0) goto out;
    const char *s = get_str(j, "act_fn");
    if (s && strcmp(s, "silu")) rc = sd_err(err, SD_EUNSUPPORTED, "config: act_fn '%s' is not supported", s);
    else rc = 0;
out:
    json_decref(j);
    return rc;
}

void clip_config_sd15(clip_config *c) {
    memset(c, 0, sizeof *c);
    c->vocab_size = 49408;
    c->hidden = 768;
    c->intermediate = 3072;
    c->layers = 12;
    c->heads = 12;
    c->max_positions = 77;
    c->act = CLIP_ACT_QUICK_GELU;
    c->eps = 1e-5f;
    c->projection_dim = 768;
}

int clip_config_from_json(clip_config *c, const char *text, sd_error *err) {
    clip_config_sd15(c);
    json_t *j = parse(text, err);
    if (!j) return err ? err->code : SD_EINPUT;
    int rc;
    if ((rc = config_check_keys(CONFIG_TEXT_ENCODER, j, err)) < 0) goto out;
    if ((rc = get_int(j, "vocab_size", &c->vocab_size, err)) < 0) goto out;
    if ((rc = get_int(j, "hidden_size", &c->hidden, err)) < 0) goto out;
    if ((rc = get_int(j, "intermediate_size", &c->intermediate, err)) < 0) goto out;
    if ((rc = get_int(j, "num_hidden_layers", &c->layers, err)) < 0) goto out;
    if ((rc = get_int(j, "num_attention_heads", &c->heads, err)) < 0) goto out;
    if ((rc = get_int(j, "max_position_embeddings", &c->max_positions, err)) < 0) goto out;
    if ((rc = get_float(j, "layer_norm_eps", &c->eps, err)) < 0) goto out;
    if ((rc = get_int(j, "projection_dim", &c->projection_dim, err)) < 0) goto out;
    json_t *arch = json_array_get(json_object_get(j, "architectures"), 0);
    c->with_projection = json_is_string(arch) && !strcmp(json_string_value(arch), "CLIPTextModelWithProjection");
    const char *s = get_str(j, "hidden_act");
    if (!s || !strcmp(s, "quick_gelu")) c->act = CLIP_ACT_QUICK_GELU;
    else if (!strcmp(s, "gelu")) c->act = CLIP_ACT_GELU;
    else {
        rc = sd_err(err, SD_EUNSUPPORTED, "config: hidden_act '%s' is not supported (quick_gelu or gelu)", s);
        goto out;
    }
    if (c->heads <= 0 || c->hidden % c->heads)
        rc = sd_err(err, SD_EINPUT, "config: %d heads do not divide hidden size %d", c->heads, c->hidden);
out:
    json_decref(j);
    return rc;
}

void sched_config_sd15(sched_config *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->class_name, "PNDMScheduler");
    c->beta_start = 0.00085;
    c->beta_end = 0.012;
    c->beta_schedule = SCHED_BETA_SCALED_LINEAR;
    c->num_train_timesteps = 1000;
    c->steps_offset = 1;
    c->skip_prk_steps = 1;
    c->prediction_type = SCHED_PRED_EPSILON;
    c->timestep_spacing = SCHED_SPACING_DEFAULT;
}

int sched_config_from_json(sched_config *c, const char *text, sd_error *err) {
    sched_config_sd15(c);
    json_t *j = parse(text, err);
    if (!j) return err ? err->code : SD_EINPUT;
    int rc;
    const char *s;
    if ((rc = config_check_keys(CONFIG_SCHEDULER, j, err)) < 0) goto out;
    /* keys a file leaves out take diffusers' defaults (SD files list them all; DDPM files do not) */
    c->steps_offset = 0;
    c->skip_prk_steps = 0;
    c->set_alpha_to_one = -1;
    if ((s = get_str(j, "_class_name"))) snprintf(c->class_name, sizeof c->class_name, "%s", s);
    if ((rc = get_double(j, "beta_start", &c->beta_start, err)) < 0) goto out;
    if ((rc = get_double(j, "beta_end", &c->beta_end, err)) < 0) goto out;
    if ((rc = get_int(j, "num_train_timesteps", &c->num_train_timesteps, err)) < 0) goto out;
    if ((rc = get_int(j, "steps_offset", &c->steps_offset, err)) < 0) goto out;
    if ((rc = get_bool(j, "set_alpha_to_one", &c->set_alpha_to_one, err)) < 0) goto out;
    if ((rc = get_bool(j, "skip_prk_steps", &c->skip_prk_steps, err)) < 0) goto out;
    if ((rc = get_bool(j, "clip_sample", &c->clip_sample, err)) < 0) goto out;
    if ((s = get_str(j, "beta_schedule"))) {
        if (!strcmp(s, "scaled_linear")) c->beta_schedule = SCHED_BETA_SCALED_LINEAR;
        else if (!strcmp(s, "linear")) c->beta_schedule = SCHED_BETA_LINEAR;
        else {
            rc = sd_err(err, SD_EUNSUPPORTED, "config: beta_schedule '%s' is not supported", s);
            goto out;
        }
    }
    if ((s = get_str(j, "prediction_type"))) {
        if (!strcmp(s, "epsilon")) c->prediction_type = SCHED_PRED_EPSILON;
        else if (!strcmp(s, "v_prediction")) c->prediction_type = SCHED_PRED_V;
        else if (!strcmp(s, "sample")) c->prediction_type = SCHED_PRED_SAMPLE;
        else {
            rc = sd_err(err, SD_EUNSUPPORTED, "config: prediction_type '%s' is not supported", s);
            goto out;
        }
    }
    if ((s = get_str(j, "timestep_spacing")) && !uses_default(j, "timestep_spacing")) {
        if (!strcmp(s, "leading")) c->timestep_spacing = SCHED_SPACING_LEADING;
        else if (!strcmp(s, "linspace")) c->timestep_spacing = SCHED_SPACING_LINSPACE;
        else if (!strcmp(s, "trailing")) c->timestep_spacing = SCHED_SPACING_TRAILING;
        else {
            rc = sd_err(err, SD_EUNSUPPORTED, "config: timestep_spacing '%s' is not supported", s);
            goto out;
        }
    }
    rc = 0;
out:
    json_decref(j);
    return rc;
}

int unet_config_load(unet_config *c, const char *path, sd_error *err) {
    LOAD_CONFIG(unet_config_from_json, c, path, err);
}
int vae_config_load(vae_config *c, const char *path, sd_error *err) {
    LOAD_CONFIG(vae_config_from_json, c, path, err);
}
int clip_config_load(clip_config *c, const char *path, sd_error *err) {
    LOAD_CONFIG(clip_config_from_json, c, path, err);
}
int sched_config_load(sched_config *c, const char *path, sd_error *err) {
    LOAD_CONFIG(sched_config_from_json, c, path, err);
}
