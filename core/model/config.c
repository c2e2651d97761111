#include "config.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"

/* Each getter leaves *out unchanged when the key is absent or null. */
static int get_int(json_t *o, const char *key, int *out, sd_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (json_is_integer(v)) *out = (int)json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == (int)json_real_value(v)) *out = (int)json_real_value(v);
    else return sd_err(err, SD_EINPUT, "config key '%s' is not an integer", key);
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
    if (json_is_integer(v)) {
        for (int i = 0; i < SD_MAX_LEVELS; i++) out[i] = (int)json_integer_value(v);
        return n_default;
    }
    if (!json_is_array(v)) return sd_err(err, SD_EINPUT, "config key '%s' is not an integer list", key);
    size_t n = json_array_size(v);
    if (n == 0 || n > SD_MAX_LEVELS)
        return sd_err(err, SD_EUNSUPPORTED, "config key '%s' has %zu entries (1..%d supported)", key, n, SD_MAX_LEVELS);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_integer(e)) return sd_err(err, SD_EINPUT, "config key '%s' entry %zu is not an integer", key, i);
        out[i] = (int)json_integer_value(e);
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

void unet_config_sd15(unet_config *c) {
    memset(c, 0, sizeof *c);
    c->in_channels = 4;
    c->out_channels = 4;
    c->n_levels = 4;
    int bo[4] = {320, 640, 1280, 1280};
    for (int i = 0; i < 4; i++) {
        c->block_out[i] = bo[i];
        c->heads[i] = 8;
        c->down_attn[i] = i < 3;
        c->up_attn[i] = i > 0;
    }
    c->layers_per_block = 2;
    c->norm_groups = 32;
    c->norm_eps = 1e-5f;
    c->cross_attention_dim = 768;
    c->mid_attn = 1;
    c->transformer_layers = 1;
    c->flip_sin_to_cos = 1;
    c->time_embed_dim = 1280;
    c->sample_size = 64;
}

int unet_config_head_dim(const unet_config *c, int level) { return c->block_out[level] / c->heads[level]; }

int unet_config_from_json(unet_config *c, const char *text, sd_error *err) {
    unet_config_sd15(c);
    json_t *j = parse(text, err);
    if (!j) return err ? err->code : SD_EINPUT;
    int rc = 0, n;
    int heads[SD_MAX_LEVELS];
    const char *s;
    json_t *a;
    if ((rc = get_int(j, "in_channels", &c->in_channels, err)) < 0) goto out;
    if ((rc = get_int(j, "out_channels", &c->out_channels, err)) < 0) goto out;
    if ((n = rc = get_int_list(j, "block_out_channels", c->block_out, 4, err)) < 0) goto out;
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
    if ((rc = get_int(j, "transformer_layers_per_block", &c->transformer_layers, err)) < 0) goto out;
    c->time_embed_dim = 4 * c->block_out[0];
    if ((rc = get_int(j, "time_embedding_dim", &c->time_embed_dim, err)) < 0) goto out;
    /* diffusers: num_attention_heads = num_attention_heads or attention_head_dim (a legacy misnomer) */
    for (int i = 0; i < SD_MAX_LEVELS; i++) heads[i] = 8;
    json_t *nah = json_object_get(j, "num_attention_heads");
    const char *hkey = nah && !json_is_null(nah) ? "num_attention_heads" : "attention_head_dim";
    if ((rc = get_int_list(j, hkey, heads, n, err)) < 0) goto out;
    if (rc != n) {
        rc = sd_err(err, SD_EINPUT, "config key '%s' has %d entries for %d blocks", hkey, rc, n);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        c->heads[i] = heads[i];
        if (heads[i] <= 0 || c->block_out[i] % heads[i]) {
            rc = sd_err(err, SD_EINPUT, "config: %d attention heads do not divide %d channels", heads[i], c->block_out[i]);
            goto out;
        }
    }
    if ((a = json_object_get(j, "down_block_types")) && json_is_array(a)) {
        if ((int)json_array_size(a) != n) {
            rc = sd_err(err, SD_EINPUT, "config: %zu down_block_types for %d blocks", json_array_size(a), n);
            goto out;
        }
        for (int i = 0; i < n; i++) {
            s = json_string_value(json_array_get(a, (size_t)i));
            if (s && !strcmp(s, "CrossAttnDownBlock2D")) c->down_attn[i] = 1;
            else if (s && !strcmp(s, "DownBlock2D")) c->down_attn[i] = 0;
            else {
                rc = sd_err(err, SD_EUNSUPPORTED, "config: down block type '%s' is not supported", s ? s : "?");
                goto out;
            }
        }
    }
    if ((a = json_object_get(j, "up_block_types")) && json_is_array(a)) {
        if ((int)json_array_size(a) != n) {
            rc = sd_err(err, SD_EINPUT, "config: %zu up_block_types for %d blocks", json_array_size(a), n);
            goto out;
        }
        for (int i = 0; i < n; i++) {
            s = json_string_value(json_array_get(a, (size_t)i));
            if (s && !strcmp(s, "CrossAttnUpBlock2D")) c->up_attn[i] = 1;
            else if (s && !strcmp(s, "UpBlock2D")) c->up_attn[i] = 0;
            else {
                rc = sd_err(err, SD_EUNSUPPORTED, "config: up block type '%s' is not supported", s ? s : "?");
                goto out;
            }
        }
    }
    s = get_str(j, "mid_block_type");
    if (s && strcmp(s, "UNetMidBlock2DCrossAttn")) {
        rc = sd_err(err, SD_EUNSUPPORTED, "config: mid block type '%s' is not supported", s);
        goto out;
    }
    s = get_str(j, "act_fn");
    if (s && strcmp(s, "silu")) {
        rc = sd_err(err, SD_EUNSUPPORTED, "config: act_fn '%s' is not supported (only silu)", s);
        goto out;
    }
    static const char *unsupported[] = {"class_embed_type", "addition_embed_type", "encoder_hid_dim_type",
                                        "time_cond_proj_dim"};
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++) {
        json_t *v = json_object_get(j, unsupported[i]);
        if (v && !json_is_null(v)) {
            rc = sd_err(err, SD_EUNSUPPORTED, "config: '%s' is set; SDXL-style conditioning is not supported",
                        unsupported[i]);
            goto out;
        }
    }
    if (c->transformer_layers < 1) {
        rc = sd_err(err, SD_EINPUT, "config: transformer_layers_per_block must be >= 1");
        goto out;
    }
    rc = 0;
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

int vae_config_from_json(vae_config *c, const char *text, sd_error *err) {
    vae_config_sd15(c);
    json_t *j = parse(text, err);
    if (!j) return err ? err->code : SD_EINPUT;
    int rc;
    if ((rc = get_int(j, "in_channels", &c->in_channels, err)) < 0) goto out;
    if ((rc = get_int(j, "out_channels", &c->out_channels, err)) < 0) goto out;
    if ((rc = get_int(j, "latent_channels", &c->latent_channels, err)) < 0) goto out;
    if ((rc = get_int_list(j, "block_out_channels", c->block_out, 4, err)) < 0) goto out;
    c->n_levels = rc;
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
    if ((rc = get_int(j, "vocab_size", &c->vocab_size, err)) < 0) goto out;
    if ((rc = get_int(j, "hidden_size", &c->hidden, err)) < 0) goto out;
    if ((rc = get_int(j, "intermediate_size", &c->intermediate, err)) < 0) goto out;
    if ((rc = get_int(j, "num_hidden_layers", &c->layers, err)) < 0) goto out;
    if ((rc = get_int(j, "num_attention_heads", &c->heads, err)) < 0) goto out;
    if ((rc = get_int(j, "max_position_embeddings", &c->max_positions, err)) < 0) goto out;
    if ((rc = get_float(j, "layer_norm_eps", &c->eps, err)) < 0) goto out;
    if ((rc = get_int(j, "projection_dim", &c->projection_dim, err)) < 0) goto out;
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
    json_t *tb = json_object_get(j, "trained_betas");
    if (tb && !json_is_null(tb)) {
        rc = sd_err(err, SD_EUNSUPPORTED, "config: trained_betas are not supported");
        goto out;
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
