/*
 * ops_cnn.h - kernels that classic convolutional image networks (the FID
 * Inception) need beyond core/ops/ops.h: pooling, ReLU, batch-norm folding and a
 * PyTorch-compatible bilinear resize.
 *
 * Same conventions as ops.h: float32 NCHW buffers owned by the caller, the
 * kernel fills `out` and allocates nothing (small tables come from the
 * context's scratch arena), OpenMP over image planes with
 * ops_get_threads() threads. `out` must not alias `x` unless stated.
 *
 *     ops_maxpool2d(y, x, B, C, 147, 147, 3, 2, 0);        // y: [B, C, 73, 73]
 *     ops_avgpool2d(y, x, B, C, 35, 35, 3, 1, 1, 0);       // TensorFlow-style edges
 */
#ifndef SD_OPS_CNN_H
#define SD_OPS_CNN_H

#include <stddef.h>

#include "ops.h"

/* Output size of a k-wide window with stride and symmetric padding (floor mode); 0 if it does not fit. */
int ops_pool_out_size(int in, int k, int stride, int pad);

/*
 * x: [B, C, H, W] -> out: [B, C, oh, ow], max over each k x k window
 * (PyTorch max_pool2d, floor mode): padding never wins (acts as -inf), and a
 * NaN in the window gives NaN.
 */
void ops_maxpool2d(float *out, const float *x, int B, int C, int H, int W, int k, int stride, int pad);

/*
 * x: [B, C, H, W] -> out: [B, C, oh, ow], mean over each k x k window
 * (PyTorch avg_pool2d, floor mode). count_include_pad = 0 divides by the
 * number of taps inside the image (4 at a corner of a 3x3/pad 1 window),
 * as TensorFlow does; 1 divides by k*k.
 */
void ops_avgpool2d(float *out, const float *x, int B, int C, int H, int W, int k, int stride, int pad,
                   int count_include_pad);

/* x: [planes, HW] -> out: [planes], the mean of each plane (global average pool), summed in double. */
void ops_mean_planes(float *out, const float *x, int planes, int HW);

/* x = max(x, 0), in place. */
void ops_relu(float *x, size_t n);

/*
 * Folds an eval-mode BatchNorm that follows a bias-free layer into it:
 *   w[o, :] *= gamma[o] / sqrt(var[o] + eps),  bias[o] = beta[o] - mean[o] * that scale.
 * w: [out_ch, per_out] float32 in place; bias: [out_ch] written. The scale
 * is computed in double and each product rounded once.
 */
void ops_fold_batchnorm(float *w, float *bias, int out_ch, size_t per_out, const float *gamma, const float *beta,
                        const float *mean, const float *var, double eps);

/*
 * x: [B, C, H, W] -> out: [B, C, oh, ow] as PyTorch's CPU
 * F.interpolate(mode="bilinear", align_corners=False) without antialiasing,
 * in float32: per axis scale = in/out (float), src = max((dst + 0.5) * scale
 * - 0.5, 0) (double, as PyTorch's CPU accumulate type), i0 = floor(src),
 * i1 = min(i0 + 1, in - 1), lambda = src - i0 (rounded to float); each row
 * pair is blended along x first, then the two results along y. Index tables come from
 * ctx->scratch (released before returning); fails only when out of memory.
 */
int ops_resize_bilinear(float *out, const float *x, int B, int C, int H, int W, int oh, int ow, ops_ctx *ctx,
                        sd_error *err);

#endif
