/* clip_model.c - CLIP image and text towers, preprocessing and CLIP score (see clip_model.h). */
#include "clip_model.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "pil_resize.h"

#define VP "vision_model."
#define TP "text_model."

/* ---- configuration ---------------------------------------------------- */

/* Number of encoder layers under prefix: the first l without "<prefix>encoder.layers.<l>.layer_norm1.weight". */
static int count_layers(const sd_weights *w, const char *prefix) {
    char name[128];
    int l = 0;
    for (;; l++) {
        snprintf(name, sizeof name, "%sencoder.layers.%d.layer_norm1.weight", prefix, l);
        if (!sd_weights_find(w, name)) return l;
    }
}

/* The tensor `name` with ndim dimensions (any sizes), or an error naming it. */
static int find_dims(const sd_weights *w, const char *name, int ndim, const sd_tensor **t, sd_error *err) {
    *t = sd_weights_find(w, name);
    if (!*t) return sd_err(err, SD_ENOTFOUND, "%s: tensor '%s' not found; is this a CLIPModel checkpoint?", w->label,
                           name);
    if ((*t)->ndim != ndim)
        return sd_err(err, SD_EINPUT, "%s: tensor '%s' has %d dimensions, expected %d", w->label, name, (*t)->ndim,
                      ndim);
    return 0;
}

/* Reads num_attention_heads, hidden_act and layer_norm_eps of one tower's section of a CLIPModel config.json. */
static int apply_tower_json(clip_config *c, json_t *root, const char *section, const char *path, sd_error *err) {
    char dict[64];
    snprintf(dict, sizeof dict, "%s_dict", section); /* older transformers wrote "text_config_dict" */
    json_t *s = json_object_get(root, section);
    if (!json_is_object(s)) s = json_object_get(root, dict);
    if (!json_is_object(s)) return 0;
    json_t *v = json_object_get(s, "hidden_size");
    if (json_is_integer(v) && json_integer_value(v) != c->hidden)
        return sd_err(err, SD_EINPUT, "%s: %s.hidden_size is %lld but the weights have width %d", path, section,
                      (long long)json_integer_value(v), c->hidden);
    v = json_object_get(s, "num_attention_heads");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > INT_MAX)
            return sd_err(err, SD_EINPUT, "%s: %s.num_attention_heads is not a positive integer", path, section);
        c->heads = (int)json_integer_value(v);
    }
    v = json_object_get(s, "layer_norm_eps");
    if (v && !json_is_null(v)) {
        if (!json_is_number(v)) return sd_err(err, SD_EINPUT, "%s: %s.layer_norm_eps is not a number", path, section);
        c->eps = (float)json_number_value(v);
    }
    const char *act = json_string_value(json_object_get(s, "hidden_act"));
    if (act && !strcmp(act, "gelu")) c->act = CLIP_ACT_GELU;
    else if (act && strcmp(act, "quick_gelu"))
        return sd_err(err, SD_EUNSUPPORTED, "%s: %s.hidden_act '%s' is not supported (quick_gelu or gelu)", path,
                      section, act);
    return 0;
}

static int apply_config_json(clip_model_config *c, const char *path, sd_error *err) {
    char *text = NULL;
    size_t len;
    int rc = sd_fs_read_file(path, &text, &len, err);
    if (rc < 0) return rc;
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    free(text);
    if (!json_is_object(root)) {
        json_decref(root);
        return sd_err(err, SD_EINPUT, "%s: not a JSON object (%s, line %d)", path, je.text, je.line);
    }
    json_t *pd = json_object_get(root, "projection_dim");
    if (json_is_integer(pd) && json_integer_value(pd) != c->projection_dim)
        rc = sd_err(err, SD_EINPUT, "%s: projection_dim is %lld but the weights project to %d", path,
                    (long long)json_integer_value(pd), c->projection_dim);
    if (rc == 0) rc = apply_tower_json(&c->text, root, "text_config", path, err);
    if (rc == 0) rc = apply_tower_json(&c->vision, root, "vision_config", path, err);
    json_decref(root);
    return rc;
}

int clip_model_config_derive(clip_model_config *c, const sd_weights *w, const char *config_path, sd_error *err) {
    memset(c, 0, sizeof *c);
    const sd_tensor *tok, *tpos, *tfc1, *tproj, *patch, *vpos, *vfc1, *vproj;
    int rc;
    if ((rc = find_dims(w, TP "embeddings.token_embedding.weight", 2, &tok, err)) < 0 ||
        (rc = find_dims(w, TP "embeddings.position_embedding.weight", 2, &tpos, err)) < 0 ||
        (rc = find_dims(w, TP "encoder.layers.0.mlp.fc1.weight", 2, &tfc1, err)) < 0 ||
        (rc = find_dims(w, "text_projection.weight", 2, &tproj, err)) < 0 ||
        (rc = find_dims(w, VP "embeddings.patch_embedding.weight", 4, &patch, err)) < 0 ||
        (rc = find_dims(w, VP "embeddings.position_embedding.weight", 2, &vpos, err)) < 0 ||
        (rc = find_dims(w, VP "encoder.layers.0.mlp.fc1.weight", 2, &vfc1, err)) < 0 ||
        (rc = find_dims(w, "visual_projection.weight", 2, &vproj, err)) < 0)
        return rc;
    clip_config *t = &c->text, *v = &c->vision;
    t->vocab_size = (int)tok->shape[0];
    t->hidden = (int)tok->shape[1];
    t->max_positions = (int)tpos->shape[0];
    t->intermediate = (int)tfc1->shape[0];
    t->layers = count_layers(w, TP);
    v->hidden = (int)patch->shape[0];
    v->intermediate = (int)vfc1->shape[0];
    v->layers = count_layers(w, VP);
    v->max_positions = (int)vpos->shape[0];
    c->patch_size = (int)patch->shape[3];
    c->projection_dim = (int)vproj->shape[0];
    int grid = (int)lround(sqrt((double)(v->max_positions - 1)));
    if (patch->shape[1] != 3 || patch->shape[2] != patch->shape[3] || grid * grid != v->max_positions - 1 ||
        grid == 0)
        return sd_err(err, SD_EINPUT, "%s: patch embedding [%lld, %lld, %lld, %lld] with %d positions is not a "
                      "square ViT grid plus a class token", w->label, (long long)patch->shape[0],
                      (long long)patch->shape[1], (long long)patch->shape[2], (long long)patch->shape[3],
                      v->max_positions);
    c->image_size = grid * c->patch_size;
    for (int i = 0; i < 2; i++) {
        clip_config *tw = i ? v : t;
        tw->heads = tw->hidden / 64; /* OpenAI: width // 64 */
        tw->act = CLIP_ACT_QUICK_GELU;
        tw->eps = 1e-5f;
        tw->projection_dim = c->projection_dim;
    }
    if (config_path) return apply_config_json(c, config_path, err);
    return 0;
}

/* ---- loading ---------------------------------------------------------- */

int clip_model_load(clip_model *m, const clip_model_config *c, const sd_weights *w, sd_error *err) {
    memset(m, 0, sizeof *m);
    const clip_config *v = &c->vision;
    if (v->heads <= 0 || v->hidden % v->heads || c->text.heads <= 0 || c->text.hidden % c->text.heads)
        return sd_err(err, SD_EINPUT, "clip: %d vision heads for width %d, %d text heads for width %d: heads must "
                      "divide the width (set them from the model's config.json)", v->heads, v->hidden,
                      c->text.heads, c->text.hidden);
    if (v->layers <= 0 || c->patch_size <= 0 || c->image_size % c->patch_size)
        return sd_err(err, SD_EINPUT, "clip: bad vision config (%d layers, patch %d, image %d)", v->layers,
                      c->patch_size, c->image_size);
    m->cfg = *c;
    int64_t D = v->hidden, E = c->projection_dim, p = c->patch_size, g = c->image_size / c->patch_size;
    int rc = clip_text_load(&m->text, &c->text, w, err);
    if (rc < 0) return rc;
    m->vlayers = calloc((size_t)v->layers, sizeof *m->vlayers);
    if (!m->vlayers) {
        rc = sd_err(err, SD_ENOMEM, "out of memory loading the CLIP image tower");
        goto fail;
    }
    if ((rc = sd_weights_get(w, "text_projection.weight", 2, (int64_t[]){E, c->text.hidden}, &m->text_proj, err)) <
            0 ||
        (rc = sd_weights_get(w, VP "embeddings.patch_embedding.weight", 4, (int64_t[]){D, 3, p, p}, &m->patch_w,
                             err)) < 0 ||
        (rc = sd_weights_get(w, VP "embeddings.class_embedding", 1, (int64_t[]){D}, &m->class_emb, err)) < 0 ||
        (rc = sd_weights_get(w, VP "embeddings.position_embedding.weight", 2, (int64_t[]){1 + g * g, D},
                             &m->pos_emb, err)) < 0 ||
        (rc = sd_weights_get(w, VP "pre_layrnorm.weight", 1, (int64_t[]){D}, &m->pre_ln_w, err)) < 0 ||
        (rc = sd_weights_get(w, VP "pre_layrnorm.bias", 1, (int64_t[]){D}, &m->pre_ln_b, err)) < 0 ||
        (rc = sd_weights_get(w, VP "post_layernorm.weight", 1, (int64_t[]){D}, &m->post_ln_w, err)) < 0 ||
        (rc = sd_weights_get(w, VP "post_layernorm.bias", 1, (int64_t[]){D}, &m->post_ln_b, err)) < 0 ||
        (rc = sd_weights_get(w, "visual_projection.weight", 2, (int64_t[]){E, D}, &m->vis_proj, err)) < 0)
        goto fail;
    for (int l = 0; l < v->layers; l++)
        if ((rc = clip_layer_load(&m->vlayers[l], w, VP, l, D, v->intermediate, err)) < 0) goto fail;
    ops_ctx_init(&m->ops, (size_t)16 << 20);
    return 0;
fail:
    clip_model_free(m);
    return rc;
}

void clip_model_free(clip_model *m) {
    clip_text_free(&m->text);
    free(m->vlayers);
    ops_ctx_free(&m->ops);
    memset(m, 0, sizeof *m);
}

/* ---- preprocessing ---------------------------------------------------- */

/* Python's round(d / 2) for an integer d >= 0: half to even. */
static int half_round_even(int d) {
    int q = d / 2;
    if (d % 2 == 0) return q;
    return q % 2 == 0 ? q : q + 1;
}

int clip_model_image_resize_crop(const uint8_t *rgb, int h, int w, int size, uint8_t *out, sd_error *err) {
    if (h <= 0 || w <= 0 || size <= 0)
        return sd_err(err, SD_EINPUT, "clip: cannot preprocess a %dx%d image to %d", w, h, size);
    /* torchvision Resize(size): the short side becomes size, the long side int(size * long / short) */
    int rh, rw;
    if (w <= h) {
        rw = size;
        rh = (int)((double)size * h / w);
    } else {
        rh = size;
        rw = (int)((double)size * w / h);
    }
    uint8_t *resized = malloc((size_t)rh * rw * 3);
    if (!resized) return sd_err(err, SD_ENOMEM, "out of memory resizing a %dx%d image", w, h);
    int rc = pil_resize_bicubic(resized, rh, rw, rgb, h, w, 3, err);
    if (rc == 0) {
        int top = half_round_even(rh - size), left = half_round_even(rw - size);
        for (int y = 0; y < size; y++)
            memcpy(out + (size_t)y * size * 3, resized + ((size_t)(top + y) * rw + left) * 3, (size_t)size * 3);
    }
    free(resized);
    return rc;
}

void clip_model_image_normalize(const uint8_t *img, int size, float *out) {
    /* as torch: float32 constants, (x / 255 - mean) / std */
    static const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    static const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    size_t P = (size_t)size * size;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < P; i++) out[c * P + i] = ((float)img[3 * i + c] / 255.0f - mean[c]) / std[c];
}

int clip_model_image_preprocess(const uint8_t *rgb, int h, int w, int size, uint8_t *crop, float *pixels, sd_error *err) {
    uint8_t *buf = crop ? crop : malloc((size_t)size * size * 3);
    if (!buf) return sd_err(err, SD_ENOMEM, "out of memory preprocessing an image");
    int rc = clip_model_image_resize_crop(rgb, h, w, size, buf, err);
    if (rc == 0) clip_model_image_normalize(buf, size, pixels);
    if (!crop) free(buf);
    return rc;
}

/* ---- towers ----------------------------------------------------------- */

int clip_model_image_embeds(clip_model *m, const float *pixels, int B, float *pooled, float *embeds, sd_error *err) {
    const clip_config *v = &m->cfg.vision;
    int D = v->hidden, p = m->cfg.patch_size, S = m->cfg.image_size, g = S / p, G = g * g, N = 1 + G, rc = 0;
    if (B <= 0) return 0;
    ops_ctx *ops = &m->ops;
    ops_arena *a = &ops->scratch;
    ops_mark mark = ops_arena_mark(a);
    float *patches = ops_arena_floats(a, (size_t)B * D * G, err); /* [B, D, g*g] */
    float *x = ops_arena_floats(a, (size_t)B * N * D, err);       /* [B, N, D] */
    float *cls = ops_arena_floats(a, (size_t)B * D, err);         /* [B, D] */
    const float *ce = patches && x && cls ? ops_weight_f32(m->class_emb, ops, err) : NULL;
    const float *pe = ce ? ops_weight_f32(m->pos_emb, ops, err) : NULL;
    if (!pe) {
        rc = err ? err->code : SD_ENOMEM;
        goto out;
    }
    ops_conv_desc d = {.batch = B, .in_ch = 3, .in_h = S, .in_w = S, .out_ch = D, .k_h = p, .k_w = p, .stride = p,
                       .weight = m->patch_w};
    if ((rc = ops_conv2d(patches, pixels, &d, ops, err)) < 0) goto out;
    /* x[b, 0] = class + pos[0]; x[b, 1 + i] = patch i + pos[1 + i] */
    for (int b = 0; b < B; b++) {
        float *xb = x + (size_t)b * N * D;
        for (int c = 0; c < D; c++) xb[c] = ce[c] + pe[c];
        for (int i = 0; i < G; i++)
            for (int c = 0; c < D; c++)
                xb[(size_t)(1 + i) * D + c] = patches[((size_t)b * D + c) * G + i] + pe[(size_t)(1 + i) * D + c];
    }
    if ((rc = ops_layernorm(x, x, B * N, D, v->eps, m->pre_ln_w, m->pre_ln_b, ops, err)) < 0) goto out;
    for (int l = 0; l < v->layers; l++)
        if ((rc = clip_layer_forward(v, &m->vlayers[l], x, B, N, 0, ops, err)) < 0) goto out;
    for (int b = 0; b < B; b++) memcpy(cls + (size_t)b * D, x + (size_t)b * N * D, (size_t)D * sizeof(float));
    if ((rc = ops_layernorm(cls, cls, B, D, v->eps, m->post_ln_w, m->post_ln_b, ops, err)) < 0) goto out;
    if (pooled) memcpy(pooled, cls, (size_t)B * D * sizeof(float));
    rc = ops_linear(embeds, cls, B, D, m->vis_proj, NULL, m->cfg.projection_dim, 0, ops, err);
out:
    ops_arena_release(a, mark);
    return rc;
}

int clip_model_text_embeds(clip_model *m, const int *ids, int B, int T, float *pooled, float *embeds, sd_error *err) {
    int D = m->cfg.text.hidden, rc;
    if (B <= 0) return 0;
    ops_ctx *ops = &m->ops;
    ops_arena *a = &ops->scratch;
    ops_mark mark = ops_arena_mark(a);
    float *hidden = ops_arena_floats(a, (size_t)B * T * D, err); /* [B, T, D] */
    float *eot = ops_arena_floats(a, (size_t)B * D, err);        /* [B, D] */
    if (!hidden || !eot) {
        rc = err ? err->code : SD_ENOMEM;
        goto out;
    }
    if ((rc = clip_text_forward(&m->text, ids, B, T, 0, hidden, err)) < 0) goto out;
    for (int b = 0; b < B; b++) {
        int e = 0; /* the first position of the largest id: the first EOT */
        for (int t = 1; t < T; t++)
            if (ids[(size_t)b * T + t] > ids[(size_t)b * T + e]) e = t;
        memcpy(eot + (size_t)b * D, hidden + ((size_t)b * T + e) * D, (size_t)D * sizeof(float));
    }
    if (pooled) memcpy(pooled, eot, (size_t)B * D * sizeof(float));
    rc = ops_linear(embeds, eot, B, D, m->text_proj, NULL, m->cfg.projection_dim, 0, ops, err);
out:
    ops_arena_release(a, mark);
    return rc;
}

/* ---- scores ----------------------------------------------------------- */

void clip_model_normalize_rows(float *x, int B, int E) {
    for (int b = 0; b < B; b++) {
        float *r = x + (size_t)b * E;
        double s = 0;
        for (int i = 0; i < E; i++) s += (double)r[i] * r[i];
        float norm = (float)sqrt(s);
        for (int i = 0; i < E; i++) r[i] /= norm;
    }
}

void clip_model_pair_cosines(const float *a, const float *b, int B, int E, double *cos) {
    for (int i = 0; i < B; i++) {
        const float *x = a + (size_t)i * E, *y = b + (size_t)i * E;
        double xy = 0, xx = 0, yy = 0;
        for (int k = 0; k < E; k++) {
            xy += (double)x[k] * y[k];
            xx += (double)x[k] * x[k];
            yy += (double)y[k] * y[k];
        }
        cos[i] = xy / sqrt(xx * yy);
    }
}

int clip_model_pair_scores(clip_model *m, const float *pixels, const int *ids, int B, int T, double *score,
                           sd_error *err) {
    int E = m->cfg.projection_dim, rc;
    if (B <= 0) return 0;
    float *img = malloc((size_t)2 * B * E * sizeof(float));
    if (!img) return sd_err(err, SD_ENOMEM, "out of memory scoring %d images", B);
    float *txt = img + (size_t)B * E;
    if ((rc = clip_model_image_embeds(m, pixels, B, NULL, img, err)) == 0 &&
        (rc = clip_model_text_embeds(m, ids, B, T, NULL, txt, err)) == 0) {
        clip_model_pair_cosines(img, txt, B, E, score);
        for (int i = 0; i < B; i++) score[i] *= 100.0;
    }
    free(img);
    return rc;
}

double clip_model_score_from_sum(double sum_100cos, int64_t n) {
    if (n <= 0) return 0.0;
    double mean = sum_100cos / (double)n;
    return mean > 0 ? mean : 0.0;
}
