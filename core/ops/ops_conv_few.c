/*
 * ops_conv_few.c - convolutions of small images (<= OPS_FEW_MAX_ROWS output
 * positions per image: the U-Net's 8x8 and 4x4 levels) by ops_gemm_few.
 *
 *   1. the im2col matrix of the whole batch, at [K = in_ch * k_h * k_w, Mp]:
 *      column b * P + p = output position p of image b, its receptive field in
 *      the weights' order (channel, kernel row, kernel column), gathered with
 *      the fused input work (upsampling, GroupNorm affine, SiLU, zero
 *      padding); zero columns up to Mp, a multiple of 16;
 *   2. ct [out_ch, Mp] = weights [out_ch, K] times at (ops_gemm_few: the
 *      weights read as stored, once);
 *   3. out[b, m, :] = ct[m, b * P ..] + bias, per-channel add, residual.
 *
 * Why: these layers hold most of the U-Net's weights (1280 channels) and
 * multiply them by 16 or 64 positions per image. The GEMM routes packed the
 * weights for every product, after widening them to float32; one image cost
 * almost as much as two (one core, 1280 channels 3x3: 4x4 11.8 ms alone, 9.6
 * for two; 8x8 25.1 and 28.6), which made a CFG-parallel rank (one image) slow.
 * Every output is ops_gemm_few's chain over k alone, so an image comes out
 * the same alone or in a batch.
 */
#include "ops.h"

#include <omp.h>
#include <string.h>

#include "ops_conv_impl.h"

#define FEW_GATHER_CH 16 /* input channels per gather unit */

int conv_few_pick(const ops_conv_desc *d, int P, const ops_ctx *ctx) {
    return P <= OPS_FEW_MAX_ROWS && ctx->precision != OPS_PRECISION_BF16 && ctx->conv_kernel != OPS_CONV_WINOGRAD &&
           ops_gemm_few_available(d->weight->dtype);
}

/* at's rows of channels [c0, c1) for image b (columns b * P ..); xp: this unit's padded input. */
static void few_im2col_unit(const ops_conv_desc *d, int ih, int iw, int oh, int ow, float *at, size_t ldat, float *xp,
                            const float *x, int b, int c0, int c1) {
    int KK = d->k_h * d->k_w, nr = (oh - 1) * d->stride + d->k_h, wp = (ow - 1) * d->stride + d->k_w;
    size_t P = (size_t)oh * ow;
    const float *xb = x + (size_t)b * d->in_ch * d->in_h * d->in_w;
    conv_gather_padded(d, ih, iw, xp, xb, b, c0, c1, -d->pad_t, nr, wp);
    for (int c = c0; c < c1; c++)
        for (int ky = 0; ky < d->k_h; ky++)
            for (int kx = 0; kx < d->k_w; kx++) {
                float *row = at + ((size_t)c * KK + (size_t)ky * d->k_w + kx) * ldat + (size_t)b * P;
                const float *src = xp + (size_t)(c - c0) * nr * wp + (size_t)ky * wp + kx;
                for (int oy = 0; oy < oh; oy++)
                    for (int ox = 0; ox < ow; ox++)
                        row[(size_t)oy * ow + ox] = src[(size_t)oy * d->stride * wp + (size_t)ox * d->stride];
                if (b == d->batch - 1) /* the padding columns, once */
                    memset(row + P, 0, (ldat - (size_t)d->batch * P) * sizeof(float));
            }
}

int conv_few_run(float *out, const float *x, const ops_conv_desc *d, int ih, int iw, int oh, int ow, const float *bias,
                 ops_ctx *ctx, sd_error *err) {
    int threads = ops_get_threads(), B = d->batch, M = d->out_ch;
    int nr = (oh - 1) * d->stride + d->k_h, wp = (ow - 1) * d->stride + d->k_w;
    size_t K = (size_t)d->in_ch * d->k_h * d->k_w, P = (size_t)oh * ow, Mp = ((size_t)B * P + 15) & ~(size_t)15;
    size_t xp_floats = (size_t)FEW_GATHER_CH * nr * wp;
    ops_arena *scratch = &ctx->scratch;
    float *at = ops_arena_floats(scratch, K * Mp, err);
    float *ct = at ? ops_arena_floats(scratch, (size_t)M * Mp, err) : NULL;
    float *xp_all = ct ? ops_arena_floats(scratch, xp_floats * threads, err) : NULL;
    if (!xp_all) return err ? err->code : SD_ENOMEM;
    int n_cc = (d->in_ch + FEW_GATHER_CH - 1) / FEW_GATHER_CH;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int u = 0; u < B * n_cc; u++) {
        int b = u / n_cc, c0 = (u % n_cc) * FEW_GATHER_CH;
        int c1 = c0 + FEW_GATHER_CH < d->in_ch ? c0 + FEW_GATHER_CH : d->in_ch;
        few_im2col_unit(d, ih, iw, oh, ow, at, Mp, xp_all + xp_floats * omp_get_thread_num(), x, b, c0, c1);
    }
    int rc = ops_gemm_few(ct, (int)Mp, at, (int)Mp, d->weight->data, d->weight->dtype, (int)Mp, M, (int)K, ctx, err);
    if (rc < 0) return rc;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int bm = 0; bm < B * M; bm++) {
        int b = bm / M, m = bm % M;
        float add = (bias ? bias[m] : 0.0f) + (d->chan_add ? d->chan_add[(size_t)b * M + m] : 0.0f);
        size_t off = (size_t)bm * P;
        conv_store_row(out + off, ct + (size_t)m * Mp + (size_t)b * P, d->residual ? d->residual + off : NULL, add,
                       (int)P, d->accumulate);
    }
    return 0;
}
