/*
 * ops_conv_impl.h - what the convolution routes in core/ops_conv*.c share
 * (internal to core/ops_*.c; the public interface is ops_conv2d in ops.h).
 */
#ifndef SD_OPS_CONV_IMPL_H
#define SD_OPS_CONV_IMPL_H

#include "ops.h"

/*
 * xp: [c1 - c0, nr, wp] = channels [c0, c1), input rows y0 .. y0 + nr - 1 of
 * image b (xb) of the virtual ih x iw input (upsampled, GroupNorm affine, SiLU
 * as d says), input column x - pad_l at column x, 0 outside the input (zero
 * padding).
 */
void conv_gather_padded(const ops_conv_desc *d, int ih, int iw, float *xp, const float *xb, int b, int c0, int c1,
                        int y0, int nr, int wp);

/*
 * The row stride of a GEMM operand of n columns (im2col and pointwise operands, Winograd's V and M):
 * n, plus a cache line when n is a multiple of 64 floats. The GEMM reads its operand's rows a few at a
 * time, and rows a multiple of 256 bytes apart share few cache sets: measured with oneDNN's sgemm on
 * 256x4096x512, 117 GFLOP/s per core with ldb = 65536 (a 256x256 image's channel stride), 149 with 4112.
 */
static inline size_t conv_row_stride(size_t n) { return n % 64 ? n : n + 16; }

/*
 * One finished output row: dst[x] (+)= (src[x] + add) (+ res[x]), the bias
 * and per-channel add already summed into add; res may be NULL.
 */
static inline void conv_store_row(float *dst, const float *src, const float *res, float add, int n, int accumulate) {
    if (accumulate && res) {
#pragma omp simd
        for (int x = 0; x < n; x++) dst[x] += (src[x] + add) + res[x];
    } else if (accumulate) {
#pragma omp simd
        for (int x = 0; x < n; x++) dst[x] += src[x] + add;
    } else if (res) {
#pragma omp simd
        for (int x = 0; x < n; x++) dst[x] = (src[x] + add) + res[x];
    } else {
#pragma omp simd
        for (int x = 0; x < n; x++) dst[x] = src[x] + add;
    }
}

/*
 * Whether ops_conv2d takes the Winograd route for d with an oh x ow output:
 * a stride-1 3x3 convolution it handles faster than the GEMM routes (or any
 * stride-1 3x3 one when kernel, the context's conv_kernel, forces it).
 */
int conv_winograd_pick(const ops_conv_desc *d, int oh, int ow, ops_conv_kernel kernel);

/*
 * out = conv(x) by Winograd F(2x2, 3x3) or F(4x4, 3x3) (ctx->wino_tile; see ops_conv_winograd.c), with
 * every fused input and output option of d. Work is planned for plan_threads
 * and run on `threads` (results do not depend on `threads`).
 */
int conv_winograd_run(float *out, const float *x, const ops_conv_desc *d, int plan_threads, int threads,
                      ops_ctx *ctx, sd_error *err);

/*
 * Whether ops_conv2d takes the few route (ops_conv_few.c) for d with P output positions per image:
 * float32, P <= OPS_FEW_MAX_ROWS, weights ops_gemm_few reads, Winograd not forced. A property of the
 * layer and the image size, never of the batch.
 */
int conv_few_pick(const ops_conv_desc *d, int P, const ops_ctx *ctx);

/*
 * out = conv(x) by the few route, ih x iw the (virtual, upsampled) input and oh x ow the output; bias
 * as float32 (may be NULL). Scratch from ctx's arena (the caller releases it).
 */
int conv_few_run(float *out, const float *x, const ops_conv_desc *d, int ih, int iw, int oh, int ow, const float *bias,
                 ops_ctx *ctx, sd_error *err);

/*
 * Whether ops_conv2d shares d (P output positions) with ctx->pair (ops_conv_pair.c): one image, a
 * pair of 2, at most 16x16 positions, an even number (>= 64) of output channels, not accumulating.
 */
int conv_pair_pick(const ops_conv_desc *d, int P, const ops_ctx *ctx);

/* out = conv(x) computed by the pair, each rank half the output channels of both images. Collective. */
int conv_pair_run(float *out, const float *x, const ops_conv_desc *d, int P, ops_ctx *ctx, sd_error *err);

/* Tests: the largest V (bytes) the shared way may use; 1 forces strips, 0 restores the default. */
void conv_winograd_set_shared_limit(size_t bytes);

#endif
