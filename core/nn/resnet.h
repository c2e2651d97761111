/*
 * resnet.h - diffusers' ResnetBlock2D, shared by the U-Net and the VAE.
 *
 *   h   = conv1(SiLU(GN1(x)))            GN1 + SiLU fused into conv1's input
 *   h  += time_emb_proj(SiLU(temb))      per channel (U-Net only), fused into conv1's output
 *   out = shortcut(x) + conv2(SiLU(GN2(h)))   1x1-conv shortcut only when channels change
 *
 * Tensor parallelism (after resnet_shard, with ops->comm): conv1 and the time
 * projection are column-parallel on output channels cut at GroupNorm group
 * boundaries (GN2 stays local), conv2 is row-parallel on its input channels:
 * the 1x1 shortcut is row-parallel too, accumulated into conv2's partial sum;
 * one rank-ordered all-reduce of [B, out_ch, H, W], then the biases (and the
 * identity residual) are added once. GN1 is replicated.
 */
#ifndef SD_RESNET_H
#define SD_RESNET_H

#include "err.h"
#include "ops.h"
#include "shard.h"
#include "weights.h"

typedef struct resnet_block {
    int in_ch, out_ch, temb_dim;      /* temb_dim 0: no time embedding (VAE) */
    int out_local;                    /* conv1's output channels on this rank (out_ch unless sharded) */
    int short_c0, short_cl;           /* the shortcut's input channels on this rank (all unless sharded) */
    const sd_tensor *norm1_w, *norm1_b; /* [in_ch] */
    const sd_tensor *conv1_w, *conv1_b; /* [out_ch, in_ch, 3, 3], [out_ch] */
    const sd_tensor *temb_w, *temb_b;   /* [out_ch, temb_dim], [out_ch] */
    const sd_tensor *norm2_w, *norm2_b; /* [out_ch] */
    const sd_tensor *conv2_w, *conv2_b; /* [out_ch, out_ch, 3, 3], [out_ch] */
    const sd_tensor *short_w, *short_b; /* [out_ch, in_ch, 1, 1], [out_ch]; NULL when in_ch == out_ch */
} resnet_block;

/* Finds "<prefix>.norm1.weight" etc. with their shapes; a shortcut is required exactly when in_ch != out_ch. */
int resnet_load(resnet_block *r, const sd_weights *w, const char *prefix, int in_ch, int out_ch, int temb_dim,
                sd_error *err);

/*
 * x: [B, in_ch, H, W] -> out: [B, out_ch, H, W] (out must not alias x).
 * temb_silu: [B, temb_dim], the time embedding after SiLU, or NULL without one.
 * Kernels run with ops; temporaries come from its arena.
 */
int resnet_forward(const resnet_block *r, float *out, const float *x, int B, int H, int W, const float *temb_silu,
                   int groups, float eps, ops_ctx *ops, sd_error *err);

struct ops_comm;
/* Replaces r's weights by this rank's shards (owned by store); nothing without an active comm.
 * SD_EINPUT when `groups` does not split evenly over comm's ranks. */
int resnet_shard(resnet_block *r, const struct ops_comm *comm, int groups, shard_store *store, sd_error *err);

/* Multiply-adds x 2 of one call. */
double resnet_flops(const resnet_block *r, int B, int H, int W);
/* The same from channel counts alone (for planning without weights). */
double resnet_flops_shape(int in_ch, int out_ch, int temb_dim, int B, int H, int W);

#endif
