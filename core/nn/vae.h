/*
 * vae.h - diffusers' AutoencoderKL: the decoder (latents -> image) and the
 * encoder (image -> posterior mean and log-variance).
 *
 *     vae_model m;
 *     vae_load(&m, &cfg, &weights, &err);
 *     vae_decode(&m, z, 1, 64, 64, img, &err);   // z = latents / scaling_factor: [1, 4, 64, 64] -> [1, 3, 512, 512]
 *     vae_encode(&m, img, 1, 512, 512, mean, logvar, &err);
 *     vae_free(&m);
 *
 * Decoder: post_quant_conv (1x1) -> conv_in -> mid (resnet, attention,
 * resnet) -> up blocks (layers_per_block+1 resnets, nearest x2 + conv except
 * the last) -> GroupNorm -> SiLU -> conv_out. The image is not clamped.
 * Encoder: conv_in -> down blocks (resnets; pad right/bottom by one, conv 3x3
 * stride 2 except the last) -> mid -> GroupNorm -> SiLU -> conv_out ->
 * quant_conv; mean = channels [0, L), logvar = channels [L, 2L) clamped to
 * [-30, 20]. Every GroupNorm has eps 1e-6; the mid block's attention is an
 * attnblock (one head over all positions, scale 1/sqrt(C)).
 *
 * Memory: the main path lives in two ping-pong buffers sized for the largest
 * activation, every other tensor is scratch that ops reuse; a 512x512 decode
 * of SD 1.5's VAE peaks at about 0.8 GB of activations.
 */
#ifndef SD_VAE_H
#define SD_VAE_H

#include "attnblock.h"
#include "config.h"
#include "err.h"
#include "ops.h"
#include "probe.h"
#include "resnet.h"
#include "weights.h"

#define VAE_MAX_LAYERS 4 /* layers_per_block */

/* One half of the autoencoder; level i of the decoder is up block i (deepest first). */
typedef struct vae_coder {
    const sd_tensor *conv_in_w, *conv_in_b;
    resnet_block res[SD_MAX_LEVELS][VAE_MAX_LAYERS + 1];
    const sd_tensor *sample_w[SD_MAX_LEVELS], *sample_b[SD_MAX_LEVELS]; /* down/upsampler conv, NULL on the last */
    resnet_block mid_res[2];
    attnblock mid_attn;
    const sd_tensor *norm_out_w, *norm_out_b;
    const sd_tensor *conv_out_w, *conv_out_b;
} vae_coder;

typedef struct vae_model {
    vae_config cfg;
    vae_coder enc, dec;
    int has_encoder;                            /* the weights hold encoder.* and quant_conv */
    const sd_tensor *quant_w, *quant_b;         /* [2L, 2L, 1, 1], [2L] */
    const sd_tensor *post_quant_w, *post_quant_b; /* [L, L, 1, 1], [L] */
    ops_ctx ops;                                /* kernel context: activations and scratch */
    /* optional: "post_quant_conv", "decoder.conv_in", "decoder.mid_block", "decoder.up_blocks.<i>" */
    const sd_probe *probe;
} vae_model;

/* Finds and shape-checks the decoder (required) and the encoder (when its tensors are present). */
int vae_load(vae_model *m, const vae_config *cfg, const sd_weights *w, sd_error *err);

/* z: [B, latent_channels, h, w] (already divided by scaling_factor) -> img: [B, out_channels, 2^(n-1) h, 2^(n-1) w]. */
int vae_decode(vae_model *m, const float *z, int B, int h, int w, float *img, sd_error *err);

/*
 * img: [B, in_channels, H, W] in [-1, 1] -> mean, logvar: [B, latent_channels, h, w]
 * with h, w from vae_latent_size (H / vae_scale_factor for multiples of it).
 */
int vae_encode(vae_model *m, const float *img, int B, int H, int W, float *mean, float *logvar, sd_error *err);

/* Latent size the encoder produces for an H x W image. */
void vae_latent_size(const vae_config *cfg, int H, int W, int *h, int *w);

/* Frees the scratch arena (it grows back on the next call): for the pipeline after its last decode. */
void vae_release_scratch(vae_model *m);

void vae_free(vae_model *m);

/* Multiply-adds x 2 of a decode of B latents of h x w / an encode of B images of H x W. */
double vae_decode_flops(const vae_config *cfg, int B, int h, int w);
double vae_encode_flops(const vae_config *cfg, int B, int H, int W);

#endif
