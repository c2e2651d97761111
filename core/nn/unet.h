/*
 * unet.h - diffusers' UNet2DConditionModel (SD 1.x, SD 2.x, inpainting).
 *
 *     unet_model m;
 *     unet_load(&m, &cfg, &weights, &err);          // every tensor shape-checked up front
 *     unet_forward(&m, x, t, ctx, 77, 2, 64, 64, eps, &err);
 *     unet_free(&m);
 *
 * Forward: sinusoidal time embedding ([cos, sin] with flip_sin_to_cos) ->
 * linear -> SiLU -> linear; conv_in; down blocks (resnets, each followed by
 * the level's attention block if it has one, stride-2 conv); mid block
 * (resnet, attention, resnet); up blocks (resnets on cat([h, skip]) with their
 * attention, nearest upsampling to the next skip's exact size + conv);
 * GroupNorm -> SiLU -> conv_out. Which attention a block has is data
 * (unet_config's down_attn / up_attn / mid_attn): a Transformer2DModel
 * (UNET_ATTN_CROSS) or none; plain self-attention is refused for now.
 * Any latent size >= 1x1 works: odd sizes round up when downsampling and
 * upsample back to the skip's size.
 * Weights stay in the caller's sd_weights (keep it alive while m is used).
 */
#ifndef SD_UNET_H
#define SD_UNET_H

#include "config.h"
#include "err.h"
#include "ops.h"
#include "probe.h"
#include "resnet.h"
#include "transformer2d.h"
#include "weights.h"

#define UNET_MAX_LAYERS 4 /* resnets per down block (layers_per_block) */

/* The attention block after one resnet: its kind (the config's, for the block) and its weights. */
typedef struct unet_attn {
    unet_attn_kind kind;                    /* UNET_ATTN_NONE: the resnet's output goes on as it is */
    transformer2d_model xf;                 /* UNET_ATTN_CROSS */
} unet_attn;

typedef struct unet_level {
    resnet_block down_res[UNET_MAX_LAYERS];
    unet_attn down_attn[UNET_MAX_LAYERS];
    const sd_tensor *down_w, *down_b;       /* stride-2 conv [C, C, 3, 3], [C]; NULL on the last level */
    resnet_block up_res[UNET_MAX_LAYERS + 1];  /* up block n-1-level */
    unet_attn up_attn[UNET_MAX_LAYERS + 1];
    const sd_tensor *up_w, *up_b;           /* conv after upsampling [C, C, 3, 3]; NULL on level 0 */
    int conv_c0, conv_cl;                   /* tensor-parallel: the input channels of down_w and up_w here */
} unet_level;

typedef struct unet_model {
    unet_config cfg;
    const sd_tensor *time_w1, *time_b1;     /* [temb, C0], [temb] */
    const sd_tensor *time_w2, *time_b2;     /* [temb, temb], [temb] */
    const sd_tensor *conv_in_w, *conv_in_b; /* [C0, in_channels, 3, 3] */
    unet_level levels[SD_MAX_LEVELS];
    resnet_block mid_res[2];
    unet_attn mid_attn;
    const sd_tensor *norm_out_w, *norm_out_b;   /* [C0] */
    const sd_tensor *conv_out_w, *conv_out_b;   /* [out_channels, C0, 3, 3] */
    ops_ctx ops;                            /* kernel context: activations and scratch of a forward pass */
    shard_store shards;                     /* this rank's weight shards (tensor parallelism) */
    /*
     * Optional: sees "time_proj", "time_embedding", "conv_in", "down_blocks.<i>",
     * "mid_block", "up_blocks.<i>", "conv_norm_out" (the names of the reference dumps).
     */
    const sd_probe *probe;
} unet_model;

/* Validates cfg and finds every tensor with its expected shape; the first problem is the error. */
int unet_load(unet_model *m, const unet_config *cfg, const sd_weights *w, sd_error *err);

/*
 * x: [B, in_channels, H, W] latents, t: [B] timesteps (any float),
 * ctx: [B, n_ctx, cross_attention_dim] -> out: [B, out_channels, H, W].
 */
int unet_forward(unet_model *m, const float *x, const float *t, const float *ctx, int n_ctx, int B, int H, int W,
                 float *out, sd_error *err);

struct ops_comm;
/*
 * Tensor parallelism: m's forward passes become collective over comm's
 * ranks (every rank calls unet_forward with the same inputs and gets the
 * same output). Every ResNet block and transformer keeps only this rank's
 * shards (resnet.h, transformer2d.h); the time embedding, conv_in, the
 * down/up-sampling convolutions, the final norm and conv_out stay replicated.
 * comm NULL or of size 1: nothing changes. SD_EINPUT, before anything
 * changes, when the GroupNorm groups or a level's heads do not split evenly.
 * The memory of the other ranks' parts of the weights is released
 * (shard_store_release_sources): nothing may read m's original tensors
 * afterwards.
 */
int unet_shard(unet_model *m, const struct ops_comm *comm, sd_error *err);

/* Frees the scratch arena (it grows back on the next call), e.g. before the VAE decode. */
void unet_release_scratch(unet_model *m);

void unet_free(unet_model *m);

/* Multiply-adds x 2 of one forward pass (convolutions, linear layers, attention products). */
double unet_flops(const unet_config *cfg, int B, int H, int W, int n_ctx);

#endif
