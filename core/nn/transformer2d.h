/*
 * transformer2d.h - diffusers' Transformer2DModel (the U-Net's spatial transformer).
 *
 *   h = GroupNorm(x) (eps 1e-6) -> proj_in -> [B, HW, C]
 *   per BasicTransformerBlock:
 *     h += attn1(LN1 h)                 self-attention over the HW positions (only_cross: a second
 *                                       cross-attention, K and V from the context; x4 upscaler)
 *     h += attn2(LN2 h, context)        cross-attention: K, V from the text context
 *     h += ff(LN3 h)                    GEGLU: value * GELU(gate), then Linear(inner -> C)
 *   out = proj_out(h) -> [B, C, H, W] + x
 * proj_in/proj_out are 1x1 convolutions before flattening (SD 1.x) or Linear
 * layers after it (SD 2.x, use_linear_projection).
 *
 * Tensor parallelism (Megatron-LM's pattern, after transformer2d_shard): each
 * rank of ops->comm runs heads/P heads of both attentions (q, k, v column-
 * parallel, to_out row-parallel) and inner/P features of the feed-forward
 * (ff1 column-parallel on both GEGLU halves, ff2 row-parallel): two rank-
 * ordered all-reduces of [B*HW, C] per attention and one per feed-forward,
 * the bias and residual added once after each. proj_in/out are column-
 * parallel: each rank computes C/P output channels (features) and an
 * all-gather shares them (replicated, they cost each rank of a pair 0.2 s
 * of a 5.2 s step at 256x256 on the Zen 1 VM; the all-gathers add 23 MB and
 * under 0.02 s). GroupNorm and the LayerNorms are replicated: ~1% of the work.
 */
#ifndef SD_TRANSFORMER2D_H
#define SD_TRANSFORMER2D_H

#include "err.h"
#include "ops.h"
#include "shard.h"
#include "weights.h"

typedef struct transformer2d_block {
    const sd_tensor *norm1_w, *norm1_b, *norm2_w, *norm2_b, *norm3_w, *norm3_b; /* [C] */
    const sd_tensor *a1_q, *a1_k, *a1_v, *a1_o, *a1_ob; /* [C, C] x4, [C] */
    const sd_tensor *a2_q, *a2_k, *a2_v, *a2_o, *a2_ob; /* q, out [C, C]; k, v [C, ctx_dim]; [C] */
    const sd_tensor *ff1_w, *ff1_b;                     /* [2*inner, C], [2*inner] */
    const sd_tensor *ff2_w, *ff2_b;                     /* [C, inner], [C] */
} transformer2d_block;

typedef struct transformer2d_model {
    int ch, heads, ctx_dim, inner, linear_proj, n_blocks;
    int only_cross;                           /* attn1 attends to the context (its to_k/to_v: [C, ctx_dim]) */
    int heads_local, inner_local;            /* this rank's share (heads, inner when not sharded) */
    int proj_split;                          /* proj_in/out hold this rank's output channels */
    int groups;
    const sd_tensor *norm_w, *norm_b;         /* [C] */
    const sd_tensor *proj_in_w, *proj_in_b;   /* [C, C, 1, 1] or [C, C] (linear), [C] */
    const sd_tensor *proj_out_w, *proj_out_b;
    transformer2d_block *blocks;                        /* n_blocks, owned */
} transformer2d_model;

/* Finds "<prefix>.norm.weight", "<prefix>.transformer_blocks.<i>.attn1.to_q.weight", ...
 * only_cross: attn1 is a cross-attention too (diffusers' only_cross_attention). */
int transformer2d_load(transformer2d_model *t, const sd_weights *w, const char *prefix, int ch, int heads,
                       int ctx_dim, int n_blocks, int linear_proj, int groups, int only_cross, sd_error *err);
void transformer2d_free(transformer2d_model *t);

struct ops_comm;
/* Replaces t's weights by this rank's shards (owned by store); nothing without an active comm.
 * SD_EINPUT when the heads or the feed-forward width do not split evenly over comm's ranks. */
int transformer2d_shard(transformer2d_model *t, const struct ops_comm *comm, shard_store *store, sd_error *err);

/*
 * x: [B, C, H, W], ctx: [B, n_ctx, ctx_dim] (the text context) -> out: [B, C, H, W]
 * (out must not alias x). Kernels run with ops; temporaries come from its arena.
 */
int transformer2d_forward(const transformer2d_model *t, float *out, const float *x, int B, int H, int W,
                          const float *ctx, int n_ctx, ops_ctx *ops, sd_error *err);

/* Multiply-adds x 2 of one call, from the shapes alone. */
double transformer2d_flops_shape(int ch, int ctx_dim, int n_blocks, int B, int HW, int n_ctx);

#endif
