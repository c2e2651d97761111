/*
 * clip_model.h - OpenAI CLIP (ViT image tower + text tower) for CLIP score,
 * with Hugging Face `CLIPModel` tensor names.
 *
 *     clip_model_config cfg;
 *     clip_model_config_derive(&cfg, &w, "model/config.json", &err);  // or NULL: heads = width / 64
 *     cfg.vision.heads = 2;                                           // optional override
 *     clip_model m;
 *     clip_model_load(&m, &cfg, &w, &err);
 *     clip_model_image_preprocess(rgb, h, w, cfg.image_size, NULL, pixels, &err); // -> [3, S, S]
 *     clip_model_pair_scores(&m, pixels, ids, B, 77, score, &err);    // score[i] = 100 cos(img_i, txt_i)
 *     clip_model_free(&m);
 *
 * Image tower: patch conv (no bias) -> class token + patches (row-major grid)
 * -> + position embedding -> pre_layrnorm -> pre-LN encoder layers without a
 * mask -> post_layernorm of the class token -> visual_projection (no bias).
 * Text tower: core/nn/clip.c (causal, final_layer_norm), pooled at the first
 * EOT, i.e. the first position of the largest id (openai's ids.argmax(-1)),
 * then text_projection. The weights stay in the caller's sd_weights.
 *
 * CLIP score (torchmetrics): score_i = 100 * cos(img_i, txt_i); the score of
 * a set is max(mean_i score_i, 0), the clamp applied to the mean. To merge
 * ranks, sum the per-pair scores and counts, then call clip_model_score_from_sum.
 */
#ifndef SD_CLIP_MODEL_H
#define SD_CLIP_MODEL_H

#include <stdint.h>

#include "clip.h"
#include "config.h"
#include "err.h"
#include "ops.h"
#include "weights.h"

/* Sizes of both towers. clip_config's fields mean the same for the vision tower (vocab_size unused). */
typedef struct clip_model_config {
    clip_config text;    /* vocab_size, hidden, intermediate, layers, heads, max_positions (77), act, eps */
    clip_config vision;  /* hidden, intermediate, layers, heads, act, eps; max_positions = 1 + grid^2 */
    int image_size;      /* input height = width (224 for ViT-B/32, L/14) */
    int patch_size;
    int projection_dim;  /* joint embedding size */
} clip_model_config;

/*
 * Derives every size from the tensor shapes of w. Heads are not in the
 * weights: they come from config_path (a Hugging Face CLIPModel config.json:
 * text_config / vision_config num_attention_heads, also hidden_act and
 * layer_norm_eps) when it is not NULL, else width / 64 as OpenAI's code does.
 * Override c->text.heads / c->vision.heads afterwards to force a value.
 * A config_path that cannot be read, or that disagrees with the weights, is an error.
 */
int clip_model_config_derive(clip_model_config *c, const sd_weights *w, const char *config_path, sd_error *err);

typedef struct clip_model {
    clip_model_config cfg;
    clip_text_model text;                 /* text tower (core/nn/clip.c) */
    const sd_tensor *text_proj;           /* [E, Dt] */
    const sd_tensor *patch_w;             /* [Dv, 3, p, p] */
    const sd_tensor *class_emb;           /* [Dv] */
    const sd_tensor *pos_emb;             /* [1 + g*g, Dv] */
    const sd_tensor *pre_ln_w, *pre_ln_b; /* [Dv] */
    clip_layer *vlayers;                  /* cfg.vision.layers */
    const sd_tensor *post_ln_w, *post_ln_b; /* [Dv] */
    const sd_tensor *vis_proj;            /* [E, Dv] */
    ops_ctx ops;                          /* kernel context: image-tower activations and scratch */
} clip_model;

/* Finds and shape-checks every tensor; fails naming the first missing or mismatched one. */
int clip_model_load(clip_model *m, const clip_model_config *c, const sd_weights *w, sd_error *err);
void clip_model_free(clip_model *m);

/*
 * OpenAI's _transform(size) up to the uint8 image: Pillow bicubic resize of
 * the short side to `size` (long side int(size * long / short)), then a
 * center crop at round((h - size) / 2), round((w - size) / 2) with Python's
 * round-half-to-even. rgb: [h, w, 3] -> out: [size, size, 3].
 */
int clip_model_image_resize_crop(const uint8_t *rgb, int h, int w, int size, uint8_t *out, sd_error *err);
/* img: [size, size, 3] uint8 -> out: [3, size, size], (x / 255 - mean) / std with CLIP's mean and std, in float32. */
void clip_model_image_normalize(const uint8_t *img, int size, float *out);
/* Both: rgb [h, w, 3] -> pixels [3, size, size]; crop [size, size, 3] is filled too when not NULL. */
int clip_model_image_preprocess(const uint8_t *rgb, int h, int w, int size, uint8_t *crop, float *pixels, sd_error *err);

/*
 * pixels: [B, 3, S, S] (S = cfg.image_size) -> embeds: [B, E] (unnormalised);
 * pooled: [B, Dv] (class token after post_layernorm) when not NULL.
 */
int clip_model_image_embeds(clip_model *m, const float *pixels, int B, float *pooled, float *embeds, sd_error *err);

/*
 * ids: [B, T] token ids (T <= 77; padding after the EOT is ignored) ->
 * embeds: [B, E]; pooled: [B, Dt] (EOT state after final_layer_norm) when not NULL.
 */
int clip_model_text_embeds(clip_model *m, const int *ids, int B, int T, float *pooled, float *embeds, sd_error *err);

/* Rows of x: [B, E] divided by their L2 norm (no eps), in place. */
void clip_model_normalize_rows(float *x, int B, int E);
/* cos[i] = cos(a_i, b_i) for a, b: [B, E] (unnormalised), computed in double. */
void clip_model_pair_cosines(const float *a, const float *b, int B, int E, double *cos);

/* score[i] = 100 * cos(image i, prompt i) for B pairs; the embeddings are computed in one batch each. */
int clip_model_pair_scores(clip_model *m, const float *pixels, const int *ids, int B, int T, double *score,
                           sd_error *err);

/* torchmetrics' CLIP score from the sum of n per-pair scores (100 cos): max(sum / n, 0); 0 when n = 0. */
double clip_model_score_from_sum(double sum_100cos, int64_t n);

#endif
