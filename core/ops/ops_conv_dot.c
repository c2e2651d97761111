/*
 * ops_conv_dot.c - convolutions of small images (<= OPS_DOT_MAX_ROWS output
 * positions per image: the U-Net's 4x4 level at 256x256) as ops_gemm_dot.
 *
 *   1. every image's im2row matrix: a [batch * P, K = in_ch * k_h * k_w], row
 *      = one output position, its receptive field in the weights' order
 *      (channel, kernel row, kernel column), gathered with the fused input
 *      work (upsampling, GroupNorm affine, SiLU, zero padding);
 *   2. t [batch * P, out_ch] = a times the weights [out_ch, K]^T, read as
 *      stored (16-bit or float32) by ops_gemm_dot;
 *   3. out[b, m, p] = t[b * P + p, m] + bias, per-channel add, residual.
 *
 * Why: these layers hold the U-Net's largest weights (1280 channels) and
 * multiply them by 16 positions per image. The GEMM routes packed the weights
 * for every product, widened to float32 first; one image took longer than two
 * (one core, 1280 channels 3x3 at 4x4: 11.8 ms alone, 9.6 for two), which
 * made a CFG-parallel rank (one image) slow. Now 3.7 and 7.4 (ops_gemm_dot.c).
 * Each result is ops_gemm_dot's fixed-order dot product of one position's
 * row, so an image comes out the same alone or in a batch.
 */
#include "ops.h"

#include <omp.h>
#include <string.h>

#include "ops_conv_impl.h"

#define DOT_GATHER_CH 16 /* input channels per gather unit */

int conv_dot_pick(const ops_conv_desc *d, int P, const ops_ctx *ctx) {
    return P <= OPS_DOT_MAX_ROWS && ctx->precision != OPS_PRECISION_BF16 && ctx->conv_kernel != OPS_CONV_WINOGRAD &&
           ops_gemm_dot_available(d->weight->dtype);
}

/* rows [b * P, (b + 1) * P), columns of channels [c0, c1) of a [batch * P, K]; xp: this unit's padded input */
static void dot_im2row_unit(const ops_conv_desc *d, int ih, int iw, int oh, int ow, float *a, float *xp,
                            const float *x, int b, int c0, int c1) {
    int KK = d->k_h * d->k_w, nr = (oh - 1) * d->stride + d->k_h, wp = (ow - 1) * d->stride + d->k_w;
    size_t K = (size_t)d->in_ch * KK, P = (size_t)oh * ow;
    const float *xb = x + (size_t)b * d->in_ch * d->in_h * d->in_w;
    conv_gather_padded(d, ih, iw, xp, xb, b, c0, c1, -d->pad_t, nr, wp);
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
            float *row = a + ((size_t)b * P + (size_t)oy * ow + ox) * K;
            for (int c = c0; c < c1; c++) {
                const float *src = xp + ((size_t)(c - c0) * nr + (size_t)oy * d->stride) * wp + (size_t)ox * d->stride;
                float *dst = row + (size_t)c * KK;
                for (int ky = 0; ky < d->k_h; ky++)
                    for (int kx = 0; kx < d->k_w; kx++) dst[ky * d->k_w + kx] = src[(size_t)ky * wp + kx];
            }
        }
}

int conv_dot_run(float *out, const float *x, const ops_conv_desc *d, int ih, int iw, int oh, int ow, const float *bias,
                 ops_ctx *ctx, sd_error *err) {
    int threads = ops_get_threads(), KK = d->k_h * d->k_w, B = d->batch, M = d->out_ch;
    int nr = (oh - 1) * d->stride + d->k_h, wp = (ow - 1) * d->stride + d->k_w;
    size_t K = (size_t)d->in_ch * KK, P = (size_t)oh * ow, xp_floats = (size_t)DOT_GATHER_CH * nr * wp;
    ops_arena *scratch = &ctx->scratch;
    float *a = ops_arena_floats(scratch, (size_t)B * P * K, err);
    float *t = a ? ops_arena_floats(scratch, (size_t)B * P * M, err) : NULL;
    float *xp_all = t ? ops_arena_floats(scratch, xp_floats * threads, err) : NULL;
    if (!xp_all) return err ? err->code : SD_ENOMEM;
    int n_cc = (d->in_ch + DOT_GATHER_CH - 1) / DOT_GATHER_CH;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int u = 0; u < B * n_cc; u++) {
        int b = u / n_cc, c0 = (u % n_cc) * DOT_GATHER_CH, c1 = c0 + DOT_GATHER_CH < d->in_ch ? c0 + DOT_GATHER_CH : d->in_ch;
        dot_im2row_unit(d, ih, iw, oh, ow, a, xp_all + xp_floats * omp_get_thread_num(), x, b, c0, c1);
    }
    int rc = ops_gemm_dot(t, M, a, (int)K, d->weight->data, d->weight->dtype, B * (int)P, M, (int)K, NULL, 0, ctx, err);
    if (rc < 0) return rc;
    /* out[b, m, :] from column m of t's rows of image b (P <= OPS_DOT_MAX_ROWS floats at a time) */
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int bm = 0; bm < B * M; bm++) {
        int b = bm / M, m = bm % M;
        float col[OPS_DOT_MAX_ROWS];
        for (size_t p = 0; p < P; p++) col[p] = t[((size_t)b * P + p) * M + m];
        float add = (bias ? bias[m] : 0.0f) + (d->chan_add ? d->chan_add[(size_t)b * M + m] : 0.0f);
        size_t off = (size_t)bm * P;
        conv_store_row(out + off, col, d->residual ? d->residual + off : NULL, add, (int)P, d->accumulate);
    }
    return 0;
}
