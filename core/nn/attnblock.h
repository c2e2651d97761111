/*
 * attnblock.h - a plain self-attention block over the spatial positions:
 * diffusers' Attention with a GroupNorm in front and a residual, as in the
 * VAE's mid block (and UNet2DModel's AttnDownBlock2D / AttnUpBlock2D, which
 * are not wired up yet).
 *
 *   n   = GroupNorm(x) -> [B, HW, C]
 *   out = x + to_out(softmax(to_q(n) to_k(n)^T / sqrt(C)) to_v(n))
 *
 * One head over all C channels; q, k, v and the output projection are Linear
 * layers with bias (single-file checkpoints store them as [C, C, 1, 1] 1x1
 * convolutions; core/model views those as [C, C]). Unlike Transformer2DModel
 * there is no context, no LayerNorm and no feed-forward.
 */
#ifndef SD_ATTNBLOCK_H
#define SD_ATTNBLOCK_H

#include "err.h"
#include "ops.h"
#include "weights.h"

typedef struct attnblock {
    int ch;
    const sd_tensor *norm_w, *norm_b;                   /* [C] */
    const sd_tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b; /* [C, C], [C] */
    const sd_tensor *o_w, *o_b;                         /* [C, C], [C] */
} attnblock;

/* Finds "<prefix>.group_norm.weight", "<prefix>.to_q.weight", ..., "<prefix>.to_out.0.bias" for ch channels. */
int attnblock_load(attnblock *t, const sd_weights *w, const char *prefix, int ch, sd_error *err);
void attnblock_free(attnblock *t);

/* x: [B, C, HW] -> out: [B, C, HW] (out must not alias x); GroupNorm with `groups` groups and eps. */
int attnblock_forward(const attnblock *t, float *out, const float *x, int B, int HW, int groups, float eps,
                      ops_ctx *ops, sd_error *err);

/* Multiply-adds x 2 of one call over HW positions of C channels: 4 projections and the two attention products. */
double attnblock_flops(int B, int C, double HW);

#endif
