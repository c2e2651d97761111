/*
 * ops_conv.c - 2-D convolution as GEMM over strips of output rows (see ops.h).
 *
 * For each work item (image b, strip of output rows, chunk of output
 * channels) a thread takes one of two routes:
 *
 *  im2col (strided or small convolutions, 1x1 kernels):
 *   1. gathers the input rows the strip needs into `tin` when the input must
 *      be transformed first (nearest upsampling, GroupNorm affine, SiLU),
 *   2. builds the strip's im2col matrix col: [K = in_ch*k_h*k_w, T] in its own
 *      cache-sized buffer (a 1x1 stride-1 unpadded kernel uses tin itself),
 *   3. multiplies W: [out_ch, K] by col into out[b, :, strip] (ldc = H*W);
 *      a 1x1 kernel with no input work reads x directly.
 *
 *  merged (batch > 1, images under MERGE_MAX_POSITIONS positions): all
 *   threads first build one im2col matrix [K, batch*P] for the whole batch,
 *   then each multiplies its chunk of output channels by it. A GEMM per image
 *   would have 16-64 columns; at 8x8 this measured 134 -> 157 GFLOP/s.
 *
 *  taps (stride 1, k_h*k_w > 1, >= TAPS_MIN_IN channels, >= TAPS_MIN_WIDTH columns):
 *   1. gathers the strip's input rows, transformed and zero-padded, into xp:
 *      [in_ch, rows + k_h - 1, Wp = out_w + k_w - 1],
 *   2. for each kernel tap (i, j) multiplies W_ij: [out_ch, in_ch] by the
 *      view xp + i*Wp + j: [in_ch, rows*Wp] (row stride of the view = one
 *      channel of xp), accumulating into cbuf [out_ch, rows*Wp] whose last
 *      k_w - 1 columns of each row are junk,
 *   3. copies the valid columns out.
 *   This skips writing and re-reading the k_h*k_w times larger im2col matrix
 *   (9% of the VAE's time at 512x512); the weights are widened once per call
 *   into the tap-major layout W_ij.
 *
 *  few (images of at most OPS_FEW_MAX_ROWS output positions, float32): the
 *   batch's im2col matrix times the weights as stored by ops_gemm_few, in
 *   core/ops/ops_conv_few.c.
 *
 *  pair (CFG-parallel, one image of the pair, 16x16 and below): the partner
 *   ranks split the output channels of both images (core/ops/ops_conv_pair.c),
 *   then one of the routes here computes each half.
 *
 *  winograd (stride-1 3x3 kernels with >= 32 input and output channels on
 *   images of 9x9 and up): F(2x2, 3x3) in core/ops/ops_conv_winograd.c, 16 GEMMs
 *   on transformed tiles instead of 9 GEMM taps (2.25x fewer multiply-adds).
 *
 * All finish by adding bias, per-channel add and residual while the tile is
 * hot.
 */
#include "ops.h"

#include <omp.h>
#include <string.h>

#include "ops_conv_impl.h"
#include "ops_prof.h"
#include "ops_vmath.h"

#define COL_BUDGET_BYTES ((size_t)8 << 20)  /* im2col matrix per thread */
#define TAPS_BUDGET_BYTES ((size_t)2 << 20) /* padded input strip per thread */
#define MIN_STRIP_POSITIONS 128
#define TAPS_MIN_IN 64
#define TAPS_MIN_WIDTH 32
#define MERGE_MAX_POSITIONS 256               /* 16x16 and up gain nothing from merging */
#define MERGE_BUDGET_BYTES ((size_t)16 << 20) /* the one shared im2col matrix */
#define MERGE_CH 16 /* channels per phase-1 unit of the merged route */
#ifndef CONV_W_ROWS
#define CONV_W_ROWS 128 /* f16/bf16 weights converted where used: rows per product (weight_rows_gemm) */
#endif

void ops_conv2d_out_size(const ops_conv_desc *d, int *out_h, int *out_w) {
    int ih = d->up_h > 0 ? d->up_h : d->in_h, iw = d->up_w > 0 ? d->up_w : d->in_w;
    int ph = ih + d->pad_t + d->pad_b - d->k_h, pw = iw + d->pad_l + d->pad_r - d->k_w;
    if (d->stride <= 0 || ph < 0 || pw < 0) {
        *out_h = *out_w = 0;
        return;
    }
    *out_h = ph / d->stride + 1;
    *out_w = pw / d->stride + 1;
}

/* Geometry shared by all work items of one call. */
typedef struct conv_plan {
    const ops_conv_desc *d;
    int ih, iw;             /* (virtual, upsampled) input size */
    int oh, ow, P, K;
    int rows;               /* output rows per strip */
    int n_strips, mchunk, n_mchunks;
    int transform;          /* tin is needed */
    int pointwise;          /* 1x1, stride 1, no padding: col = tin (or x) */
    int taps;               /* the taps route */
    int merged;             /* small images: one im2col matrix [K, batch*P] for the whole batch */
    int wp;                 /* taps: padded row length out_w + k_w - 1 */
    size_t tin_floats, col_floats; /* per thread (taps: xp and cbuf) */
    size_t ldcol;           /* row stride of col (and of tin for a pointwise kernel): see conv_row_stride */
    int copy_x;             /* pointwise without input work: x's strip copied into col first (see plan_conv) */
    size_t cbuf_floats;     /* merged: GEMM result [mchunk, batch*P] per thread */
} conv_plan;

/* Input rows [*lo, *hi) of the (virtual) input that output rows [oy0, oy1) read. */
static void strip_input_rows(const conv_plan *p, int oy0, int oy1, int *lo, int *hi) {
    int a = oy0 * p->d->stride - p->d->pad_t, b = (oy1 - 1) * p->d->stride - p->d->pad_t + p->d->k_h;
    *lo = a < 0 ? 0 : a;
    *hi = b > p->ih ? p->ih : b;
    if (*hi < *lo) *hi = *lo;
}

/*
 * tin[c][r][x] = transform(x_b[c][src(lo + r)][src(x)]) for input rows [lo, hi), channels [c0, c1);
 * channels cs floats apart (0: packed, (hi - lo) * iw).
 */
static void gather_input(const conv_plan *p, float *tin, size_t cs, const float *xb, int b, int lo, int hi, int c0,
                         int c1) {
    const ops_conv_desc *d = p->d;
    int H = d->in_h, W = d->in_w, up = d->up_h > 0 || d->up_w > 0;
    int nr = hi - lo;
    if (!cs) cs = (size_t)nr * p->iw;
    for (int c = c0; c < c1; c++) {
        float sc = d->in_scale ? d->in_scale[(size_t)b * d->in_ch + c] : 1.0f;
        float sh = d->in_shift ? d->in_shift[(size_t)b * d->in_ch + c] : 0.0f;
        int affine = d->in_scale || d->in_shift;
        const float *xc = xb + (size_t)c * H * W;
        for (int r = 0; r < nr; r++) {
            int iy = lo + r;
            int sy = up ? (int)((int64_t)iy * H / p->ih) : iy;
            const float *srow = xc + (size_t)sy * W;
            float *dst = tin + (size_t)c * cs + (size_t)r * p->iw;
            if (up) {
                for (int x = 0; x < p->iw; x++) dst[x] = srow[(int64_t)x * W / p->iw];
            } else {
                memcpy(dst, srow, (size_t)W * sizeof(float));
            }
            if (d->in_silu) {
                vm_silu_span(dst, dst, (size_t)p->iw, affine, sc, sh);
            } else if (affine) {
#pragma omp simd
                for (int x = 0; x < p->iw; x++) dst[x] = dst[x] * sc + sh;
            }
        }
    }
}

/*
 * col[k][t] (row stride ldcol) for output rows [oy0, oy1) and the rows k of
 * channels [c0, c1): src holds input rows [lo, lo + nr) of every channel, row
 * stride iw, channel stride src_cs.
 */
static void im2col_strip(const conv_plan *p, float *col, size_t ldcol, const float *src, size_t src_cs, int lo, int nr,
                         int oy0, int oy1, int c0, int c1) {
    const ops_conv_desc *d = p->d;
    int s = d->stride, ow = p->ow, iw = p->iw;
    for (int c = c0; c < c1; c++) {
        for (int i = 0; i < d->k_h; i++) {
            for (int j = 0; j < d->k_w; j++) {
                float *dst = col + ((size_t)(c * d->k_h + i) * d->k_w + j) * ldcol;
                /* output columns whose input column ox*s - pad_l + j lies inside [0, iw) */
                int x_off = j - d->pad_l;
                int ox_lo = x_off >= 0 ? 0 : (-x_off + s - 1) / s;
                int ox_hi = (iw - 1 - x_off) < 0 ? 0 : (iw - 1 - x_off) / s + 1;
                if (ox_hi > ow) ox_hi = ow;
                if (ox_lo > ox_hi) ox_lo = ox_hi;
                for (int oy = oy0; oy < oy1; oy++, dst += ow) {
                    int iy = oy * s - d->pad_t + i;
                    if (iy < lo || iy >= lo + nr) {
                        memset(dst, 0, (size_t)ow * sizeof(float));
                        continue;
                    }
                    const float *srow = src + (size_t)c * src_cs + (size_t)(iy - lo) * iw;
                    for (int ox = 0; ox < ox_lo; ox++) dst[ox] = 0.0f;
                    if (s == 1) {
                        if (ox_hi > ox_lo)
                            memcpy(dst + ox_lo, srow + ox_lo + x_off, (size_t)(ox_hi - ox_lo) * sizeof(float));
                    } else {
                        for (int ox = ox_lo; ox < ox_hi; ox++) dst[ox] = srow[ox * s + x_off];
                    }
                    for (int ox = ox_hi; ox < ow; ox++) dst[ox] = 0.0f;
                }
            }
        }
    }
}

/* Bias, per-channel add and residual on out rows [m0, m0+mm) x positions [p0, p0+T) of image b. */
static void conv_epilogue(const conv_plan *p, float *out, const float *bias, int b, int m0, int mm, int p0, int T) {
    const ops_conv_desc *d = p->d;
    for (int m = m0; m < m0 + mm; m++) {
        float add = (bias ? bias[m] : 0.0f) + (d->chan_add ? d->chan_add[(size_t)b * d->out_ch + m] : 0.0f);
        size_t off = ((size_t)b * d->out_ch + m) * p->P + p0;
        float *o = out + off;
        if (d->residual) {
            const float *r = d->residual + off;
#pragma omp simd
            for (int t = 0; t < T; t++) o[t] = (o[t] + add) + r[t];
        } else if (bias || d->chan_add) {
#pragma omp simd
            for (int t = 0; t < T; t++) o[t] += add;
        }
    }
}

/*
 * xp[c][r][x] = the transformed input at row y0 + r, column x - pad_l, or 0
 * outside the (virtual, ih x iw) input: padding comes after GroupNorm and
 * SiLU, as in PyTorch. nr rows of wp columns per channel (columns past the
 * input are 0 too). Shared by the taps and Winograd routes.
 */
void conv_gather_padded(const ops_conv_desc *d, int ih, int iw, float *xp, const float *xb, int b, int c0, int c1,
                        int y0, int nr, int wp) {
    int H = d->in_h, W = d->in_w, up = d->up_h > 0 || d->up_w > 0;
    int affine = d->in_scale || d->in_shift;
    /* valid x' range: input column x' - pad_l inside [0, iw) */
    int x_lo = d->pad_l < wp ? d->pad_l : wp, x_hi = d->pad_l + iw < wp ? d->pad_l + iw : wp;
    for (int c = c0; c < c1; c++) {
        float sc = d->in_scale ? d->in_scale[(size_t)b * d->in_ch + c] : 1.0f;
        float sh = d->in_shift ? d->in_shift[(size_t)b * d->in_ch + c] : 0.0f;
        const float *xc = xb + (size_t)c * H * W, *prev = NULL;
        int prev_sy = -1;
        for (int r = 0; r < nr; r++) {
            int iy = y0 + r;
            float *dst = xp + ((size_t)(c - c0) * nr + r) * wp;
            if (iy < 0 || iy >= ih) {
                memset(dst, 0, (size_t)wp * sizeof(float));
                continue;
            }
            int sy = up ? (int)((int64_t)iy * H / ih) : iy;
            if (prev && sy == prev_sy) { /* upsampling repeats a source row: copy the finished one */
                memcpy(dst, prev, (size_t)wp * sizeof(float));
                continue;
            }
            prev = dst, prev_sy = sy;
            for (int x = 0; x < x_lo; x++) dst[x] = 0.0f;
            for (int x = x_hi; x < wp; x++) dst[x] = 0.0f;
            const float *srow = xc + (size_t)sy * W;
            float *v = dst + x_lo;
            int n = x_hi - x_lo;
            if (up && iw == 2 * W) { /* the usual x2: no division per element */
                for (int x = 0; x < n; x++) v[x] = srow[x >> 1];
            } else if (up) {
                for (int x = 0; x < n; x++) v[x] = srow[(int64_t)x * W / iw];
            } else {
                memcpy(v, srow, (size_t)n * sizeof(float));
            }
            if (d->in_silu) {
                vm_silu_span(v, v, (size_t)n, affine, sc, sh);
            } else if (affine) {
#pragma omp simd
                for (int x = 0; x < n; x++) v[x] = v[x] * sc + sh;
            }
        }
    }
}

/* out rows [oy0, oy0 + rows) of channels [m0, m0 + mm) = valid columns of cbuf + bias/add/residual. */
static void taps_epilogue(const conv_plan *p, float *out, const float *cbuf, const float *bias, int b, int m0,
                          int mm, int oy0, int rows) {
    const ops_conv_desc *d = p->d;
    int ow = p->ow, wp = p->wp;
    for (int m = m0; m < m0 + mm; m++) {
        float add = (bias ? bias[m] : 0.0f) + (d->chan_add ? d->chan_add[(size_t)b * d->out_ch + m] : 0.0f);
        for (int r = 0; r < rows; r++) {
            const float *src = cbuf + ((size_t)(m - m0) * rows + r) * wp;
            size_t off = ((size_t)b * d->out_ch + m) * p->P + (size_t)(oy0 + r) * ow;
            conv_store_row(out + off, src, d->residual ? d->residual + off : NULL, add, ow, d->accumulate);
        }
    }
}

/* wt[k][m][c] = w[m][c][k] as float32, k over the k_h*k_w taps (one widening per call). */
static float *widen_taps(const ops_conv_desc *d, ops_arena *a, int threads, sd_error *err) {
    int M = d->out_ch, C = d->in_ch, KK = d->k_h * d->k_w;
    size_t row = (size_t)C * KK, esz = sd_dtype_size(d->weight->dtype);
    float *wt = ops_arena_floats(a, (size_t)M * row, err);
    float *tmp = wt ? ops_arena_floats(a, row * threads, err) : NULL;
    if (!tmp) return NULL;
    const unsigned char *src = d->weight->data;
#pragma omp parallel num_threads(threads)
    {
        float *t = tmp + row * omp_get_thread_num();
#pragma omp for schedule(static)
        for (int m = 0; m < M; m++) {
            sd_dtype_convert_to_f32(t, src + (size_t)m * row * esz, d->weight->dtype, row);
            for (int c = 0; c < C; c++)
                for (int k = 0; k < KK; k++) wt[((size_t)k * M + m) * C + c] = t[(size_t)c * KK + k];
        }
    }
    return wt;
}

static void plan_conv(conv_plan *p, const ops_conv_desc *d, int threads) {
    memset(p, 0, sizeof *p);
    p->d = d;
    p->ih = d->up_h > 0 ? d->up_h : d->in_h;
    p->iw = d->up_w > 0 ? d->up_w : d->in_w;
    ops_conv2d_out_size(d, &p->oh, &p->ow);
    p->P = p->oh * p->ow;
    p->K = d->in_ch * d->k_h * d->k_w;
    if (p->P <= 0) return; /* the kernel does not fit: ops_conv2d reports it */
    p->transform = d->up_h > 0 || d->up_w > 0 || d->in_scale || d->in_shift || d->in_silu;
    p->pointwise = d->k_h == 1 && d->k_w == 1 && d->stride == 1 && !d->pad_t && !d->pad_l && !d->pad_b && !d->pad_r;
    /* taps pay k_w - 1 junk columns per row and 9 smaller GEMMs: measured faster from 32 columns up */
    p->taps = d->stride == 1 && d->k_h * d->k_w > 1 && d->in_ch >= TAPS_MIN_IN && p->ow >= TAPS_MIN_WIDTH;
    p->wp = p->ow + d->k_w - 1;
    /* rows per strip: fill the buffer budget, but at least MIN_STRIP_POSITIONS positions */
    size_t per_row = p->taps ? (size_t)d->in_ch * p->wp * sizeof(float) : (size_t)p->K * p->ow * sizeof(float);
    int rows = (int)((p->taps ? TAPS_BUDGET_BYTES : COL_BUDGET_BYTES) / (per_row ? per_row : 1));
    int min_rows = (MIN_STRIP_POSITIONS + p->ow - 1) / p->ow;
    if (rows < min_rows) rows = min_rows;
    if (rows < 1) rows = 1;
    if (rows > p->oh) rows = p->oh;
    /* enough items for the threads: shorter strips first (not below min_rows), then channel chunks */
    while (rows > min_rows && (long)d->batch * ((p->oh + rows - 1) / rows) < 2L * threads) rows = (rows + 1) / 2;
    p->rows = rows;
    p->n_strips = (p->oh + rows - 1) / rows;
    /*
     * Small images (the U-Net's 8x8 and 4x4 levels): a GEMM per image would have
     * 16-64 columns, each weight packed and used for as few flops. One matrix for
     * the whole batch doubles that and halves the weight traffic per flop.
     */
    p->merged = !p->taps && d->batch > 1 && p->n_strips == 1 && p->P < MERGE_MAX_POSITIONS &&
                (size_t)p->K * d->batch * p->P * sizeof(float) <= MERGE_BUDGET_BYTES;
    long items = p->merged ? 1 : (long)d->batch * p->n_strips;
    /* merged items share one im2col matrix and are equal: one per thread is balanced */
    long want = p->merged ? threads : 2L * threads;
    int mchunk = d->out_ch;
    while (items * ((d->out_ch + mchunk - 1) / mchunk) < want && mchunk >= 128)
        mchunk = ((mchunk / 2) + 15) & ~15;
    p->mchunk = mchunk;
    p->n_mchunks = (d->out_ch + mchunk - 1) / mchunk;
    int T = rows * p->ow;
    if (p->merged) { /* tin per image and one shared col; cbuf per thread */
        p->tin_floats = p->transform ? (size_t)d->in_ch * p->ih * p->iw : 0;
        p->col_floats = (size_t)p->K * d->batch * p->P;
        p->cbuf_floats = (size_t)p->mchunk * d->batch * p->P;
        return;
    }
    if (p->taps) {
        p->tin_floats = (size_t)d->in_ch * (rows + d->k_h - 1) * p->wp + (size_t)d->k_w + 16;
        p->col_floats = (size_t)p->mchunk * rows * p->wp;
        return;
    }
    p->ldcol = conv_row_stride((size_t)T);
    if (p->transform) {
        int nr = (rows - 1) * d->stride + d->k_h;
        if (nr > p->ih) nr = p->ih;
        p->tin_floats = p->pointwise ? (size_t)d->in_ch * p->ldcol : (size_t)d->in_ch * nr * p->iw;
    }
    /* a pointwise kernel reads x in place, rows P floats apart, unless that stride is a bad one */
    p->copy_x = p->pointwise && !p->transform && conv_row_stride((size_t)p->P) != (size_t)p->P;
    if (!p->pointwise || p->copy_x) p->col_floats = (size_t)p->K * p->ldcol;
}

/*
 * Merged route, phase 1 (unit u = image b, channels [c0, c0 + MERGE_CH)): the
 * unit's rows of the shared im2col matrix col [K, batch*P].
 */
static void merged_col_unit(const conv_plan *p, const float *x, float *tin_all, float *col, int u) {
    const ops_conv_desc *d = p->d;
    int n_cc = (d->in_ch + MERGE_CH - 1) / MERGE_CH, b = u / n_cc, c0 = (u % n_cc) * MERGE_CH;
    int c1 = c0 + MERGE_CH < d->in_ch ? c0 + MERGE_CH : d->in_ch, P = p->P, N = d->batch * P;
    const float *xb = x + (size_t)d->in_ch * d->in_h * d->in_w * b, *src = xb;
    size_t cs = (size_t)d->in_h * d->in_w;
    int lo = 0, hi = d->in_h;
    if (p->transform) {
        strip_input_rows(p, 0, p->oh, &lo, &hi);
        float *tin = tin_all + p->tin_floats * b;
        gather_input(p, tin, 0, xb, b, lo, hi, c0, c1);
        src = tin;
        cs = (size_t)(hi - lo) * p->iw;
    }
    if (p->pointwise) {
        for (int c = c0; c < c1; c++)
            memcpy(col + (size_t)c * N + (size_t)b * P, src + c * cs, (size_t)P * sizeof(float));
    } else {
        im2col_strip(p, col + (size_t)b * P, (size_t)N, src, cs, lo, hi - lo, 0, p->oh, c0, c1);
    }
}

/*
 * c [mm, N] (row stride ldc) = rows [m0, m0 + mm) of the weights [out_ch, K] times bmat [K, N] (+ beta c).
 * wf: the float32 weights; NULL: the rows of d->weight (f16, bf16) are converted CONV_W_ROWS at a time
 * into wbuf [CONV_W_ROWS, K] just before their product (see ops_conv2d).
 * bh (bf16 only, N >= 16): bmat already rounded to bf16, [K, N] contiguous; the weight rows then go
 * straight from their 16 bits to bf16 (in wbuf) and into ops_gemm_bf16_rounded: the same roundings and
 * primitive as ops_gemm's bf16 route, which would widen them to float32 first and round bmat again for
 * every CONV_W_ROWS rows (10 times for 1280 channels).
 */
static void weight_rows_gemm(const conv_plan *p, const float *wf, float *wbuf, const uint16_t *bh, int m0, int mm,
                             int N, const float *bmat, int ldb, float beta, float *c, int ldc, const ops_ctx *ctx) {
    const ops_conv_desc *d = p->d;
    if (wf) {
        ops_gemm(ctx, 0, mm, N, p->K, 1.0f, wf + (size_t)m0 * p->K, p->K, bmat, ldb, beta, c, ldc);
        return;
    }
    size_t esz = sd_dtype_size(d->weight->dtype);
    for (int r0 = 0; r0 < mm; r0 += CONV_W_ROWS) {
        int rn = mm - r0 < CONV_W_ROWS ? mm - r0 : CONV_W_ROWS;
        const unsigned char *wrows = (const unsigned char *)d->weight->data + (size_t)(m0 + r0) * p->K * esz;
        /* (counted in the convolution's time, not as widening: the profiler is not per thread) */
        if (bh && rn >= 16) {
            uint16_t *wh = (uint16_t *)wbuf;
            ops_convert_to_bf16(wh, wrows, d->weight->dtype, (size_t)rn * p->K);
            if (ops_gemm_bf16_rounded(0, rn, N, p->K, 1.0f, wh, p->K, bh, N, beta, c + (size_t)r0 * ldc, ldc) == 0)
                continue;
        }
        sd_dtype_convert_to_f32(wbuf, wrows, d->weight->dtype, (size_t)rn * p->K);
        ops_gemm(ctx, 0, rn, N, p->K, 1.0f, wbuf, p->K, bmat, ldb, beta, c + (size_t)r0 * ldc, ldc);
    }
}

/* Merged route, phase 2: output channels [m0, m0 + mm) of every image; cbuf [mm, batch*P] is the item's. */
static void merged_gemm_item(const conv_plan *p, float *out, const float *wf, const float *bias, const float *col,
                             const uint16_t *colh, float *cbuf, float *wbuf, int m0, int mm, const ops_ctx *ctx) {
    const ops_conv_desc *d = p->d;
    int B = d->batch, P = p->P, N = B * P;
    weight_rows_gemm(p, wf, wbuf, colh, m0, mm, N, col, N, 0.0f, cbuf, N, ctx);
    for (int b = 0; b < B; b++)
        for (int m = m0; m < m0 + mm; m++) {
            float add = (bias ? bias[m] : 0.0f) + (d->chan_add ? d->chan_add[(size_t)b * d->out_ch + m] : 0.0f);
            const float *src = cbuf + (size_t)(m - m0) * N + (size_t)b * P;
            size_t off = ((size_t)b * d->out_ch + m) * P;
            float *o = out + off;
            const float *res = d->residual ? d->residual + off : NULL;
            for (int t = 0; t < P; t++) {
                float v = src[t] + add;
                if (res) v += res[t];
                o[t] = d->accumulate ? o[t] + v : v;
            }
        }
}

int ops_conv2d(float *out, const float *x, const ops_conv_desc *d, ops_ctx *ctx, sd_error *err) {
    int64_t wn = (int64_t)d->out_ch * d->in_ch * d->k_h * d->k_w;
    if (sd_tensor_numel(d->weight) != wn || (d->bias && sd_tensor_numel(d->bias) != d->out_ch))
        return sd_err(err, SD_EINTERNAL, "conv2d: weight '%s' does not hold [%d, %d, %d, %d]", d->weight->name,
                      d->out_ch, d->in_ch, d->k_h, d->k_w);
    int threads = ops_get_threads();
    conv_plan p;
    plan_conv(&p, d, ops_plan_threads());
    if (p.P <= 0) return sd_err(err, SD_EINTERNAL, "conv2d: kernel %dx%d larger than padded input %dx%d", d->k_h,
                                d->k_w, p.ih, p.iw);
    if (d->batch <= 0 || d->out_ch <= 0) return 0;
    if (conv_pair_pick(d, p.P, ctx)) return conv_pair_run(out, x, d, p.P, ctx, err); /* profiled inside */
    double t0 = prof_begin();
    if (conv_winograd_pick(d, p.oh, p.ow, ctx->conv_kernel)) {
        int rc = conv_winograd_run(out, x, d, ops_plan_threads(), threads, ctx, err);
        prof_end(PROF_CONV3, t0, 2.0 * d->batch * d->out_ch * (double)p.K * p.P);
        return rc;
    }
    ops_arena *scratch = &ctx->scratch;
    ops_mark mark = ops_arena_mark(scratch);
    int rc = 0;
    if (conv_few_pick(d, p.P, ctx)) { /* small images: ops_gemm_few on the weights as stored (ops_conv_few.c) */
        const float *bias = d->bias ? ops_weight_f32(d->bias, ctx, err) : NULL;
        rc = d->bias && !bias ? (err ? err->code : SD_ENOMEM)
                              : conv_few_run(out, x, d, p.ih, p.iw, p.oh, p.ow, bias, ctx, err);
        goto done;
    }
    double tw = prof_begin();
    /*
     * f16/bf16 weights on images of one strip (the merged route, or one strip per image): each item
     * converts its own rows just before their product (weight_rows_gemm) instead of all of them
     * first. The small images' convolutions hold most of the U-Net's weights (1280 channels at 8x8
     * and 4x4), and converting them all first wrote and re-read a float32 copy through memory: 12% of
     * a 256x256 step, more with one image per rank (CFG-parallel), whose products have few columns.
     * With several strips each would convert the same rows again: those widen once, first.
     */
    int stream_w = (p.merged || (!p.taps && p.n_strips == 1)) && !sd_tensor_f32_view(d->weight);
    const float *wf = stream_w ? NULL : p.taps ? widen_taps(d, scratch, threads, err) : ops_weight_f32(d->weight, ctx, err);
    if (p.taps) prof_end(PROF_WIDEN, tw, 0);
    int w_ok = wf || stream_w;
    const float *bf = w_ok && d->bias ? ops_weight_f32(d->bias, ctx, err) : NULL;
    float *tin_all = NULL, *col_all = NULL, *cbuf_all = NULL, *wbuf_all = NULL;
    uint16_t *bh_all = NULL; /* bf16: the GEMMs' right operand rounded once (merged: shared; else per thread) */
    int n_cols = p.merged ? d->batch * p.P : p.rows * p.ow;
    if (stream_w && (!d->bias || bf))
        wbuf_all = ops_arena_floats(scratch, (size_t)CONV_W_ROWS * p.K * threads, err);
    if (wbuf_all && ctx->precision == OPS_PRECISION_BF16 && ops_bf16_available() && n_cols >= 16) {
        bh_all = ops_arena_alloc(scratch, (size_t)p.K * n_cols * (p.merged ? 1 : threads) * sizeof *bh_all, err);
        if (!bh_all) wbuf_all = NULL;
    }
    size_t tin_copies = p.merged ? (size_t)d->batch : (size_t)threads, col_copies = p.merged ? 1 : (size_t)threads;
    w_ok = w_ok && (!stream_w || wbuf_all);
    if (w_ok && (!d->bias || bf) && p.tin_floats) tin_all = ops_arena_floats(scratch, p.tin_floats * tin_copies, err);
    if (w_ok && (!d->bias || bf) && p.col_floats) col_all = ops_arena_floats(scratch, p.col_floats * col_copies, err);
    if (w_ok && (!d->bias || bf) && p.cbuf_floats) cbuf_all = ops_arena_floats(scratch, p.cbuf_floats * threads, err);
    if (!w_ok || (d->bias && !bf) || (p.tin_floats && !tin_all) || (p.col_floats && !col_all) ||
        (p.cbuf_floats && !cbuf_all)) {
        rc = err ? err->code : SD_ENOMEM;
        goto done;
    }
    size_t in_img = (size_t)d->in_ch * d->in_h * d->in_w;
    int n_items = p.merged ? p.n_mchunks : d->batch * p.n_strips * p.n_mchunks;
    int n_units = p.merged ? d->batch * ((d->in_ch + MERGE_CH - 1) / MERGE_CH) : 0;
#pragma omp parallel num_threads(threads)
    {
        int tid = omp_get_thread_num();
        float *tin = tin_all && !p.merged ? tin_all + p.tin_floats * tid : NULL;
        float *col = col_all && !p.merged ? col_all + p.col_floats * tid : NULL;
        float *cbuf = cbuf_all ? cbuf_all + p.cbuf_floats * tid : NULL;
        if (p.merged) { /* phase 1 fills the shared col; the loop's barrier ends it */
#pragma omp for schedule(dynamic, 1)
            for (int u = 0; u < n_units; u++) merged_col_unit(&p, x, tin_all, col_all, u);
            if (bh_all) { /* bf16: col rounded once for every chunk of weight rows (the barrier ends it) */
#pragma omp for schedule(static)
                for (int k = 0; k < p.K; k++)
                    ops_round_bf16(bh_all + (size_t)k * n_cols, col_all + (size_t)k * n_cols, (size_t)n_cols);
            }
        }
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < n_items; it++) {
            int mc = it % p.n_mchunks, s = (it / p.n_mchunks) % p.n_strips, b = it / (p.n_mchunks * p.n_strips);
            int oy0 = s * p.rows, oy1 = oy0 + p.rows < p.oh ? oy0 + p.rows : p.oh;
            int m0 = mc * p.mchunk, mm = d->out_ch - m0 < p.mchunk ? d->out_ch - m0 : p.mchunk;
            if (p.merged) {
                merged_gemm_item(&p, out, wf, bf, col_all, bh_all, cbuf,
                                 wbuf_all ? wbuf_all + (size_t)CONV_W_ROWS * p.K * tid : NULL, m0, mm, ctx);
                continue;
            }
            int T = (oy1 - oy0) * p.ow, p0 = oy0 * p.ow;
            const float *xb = x + in_img * b;
            if (p.taps) {
                int rows = oy1 - oy0, nr = rows + d->k_h - 1, Tp = rows * p.wp;
                float *xp = tin, *cbuf = col;
                conv_gather_padded(d, p.ih, p.iw, xp, xb, b, 0, d->in_ch, oy0 - d->pad_t, nr, p.wp);
                /* the junk columns of the last channel's last taps read up to k_w - 1 floats past xp */
                memset(xp + (size_t)d->in_ch * nr * p.wp, 0, (size_t)(d->k_w + 16) * sizeof(float));
                for (int k = 0; k < d->k_h * d->k_w; k++) {
                    int i = k / d->k_w, j = k % d->k_w;
                    ops_gemm(ctx, 0, mm, Tp, d->in_ch, 1.0f, wf + ((size_t)k * d->out_ch + m0) * d->in_ch, d->in_ch,
                             xp + (size_t)i * p.wp + j, nr * p.wp, k ? 1.0f : 0.0f, cbuf, Tp);
                }
                taps_epilogue(&p, out, cbuf, bf, b, m0, mm, oy0, rows);
                continue;
            }
            const float *bmat;
            int ldb;
            if (p.transform) {
                int lo, hi;
                strip_input_rows(&p, oy0, oy1, &lo, &hi);
                gather_input(&p, tin, p.pointwise ? p.ldcol : 0, xb, b, lo, hi, 0, d->in_ch);
                if (p.pointwise) {
                    bmat = tin;
                    ldb = (int)p.ldcol;
                } else {
                    im2col_strip(&p, col, p.ldcol, tin, (size_t)(hi - lo) * p.iw, lo, hi - lo, oy0, oy1, 0, d->in_ch);
                    bmat = col;
                    ldb = (int)p.ldcol;
                }
            } else if (p.copy_x) {
                for (int c = 0; c < d->in_ch; c++)
                    memcpy(col + (size_t)c * p.ldcol, xb + (size_t)c * p.P + p0, (size_t)T * sizeof(float));
                bmat = col;
                ldb = (int)p.ldcol;
            } else if (p.pointwise) {
                bmat = xb + p0;
                ldb = p.P;
            } else {
                im2col_strip(&p, col, p.ldcol, xb, (size_t)d->in_h * d->in_w, 0, d->in_h, oy0, oy1, 0, d->in_ch);
                bmat = col;
                ldb = (int)p.ldcol;
            }
            float *c = out + ((size_t)b * d->out_ch + m0) * p.P + p0;
            uint16_t *bh = bh_all && T >= 16 ? bh_all + (size_t)p.K * n_cols * tid : NULL;
            for (int k = 0; bh && k < p.K; k++) ops_round_bf16(bh + (size_t)k * T, bmat + (size_t)k * ldb, (size_t)T);
            weight_rows_gemm(&p, wf, wbuf_all ? wbuf_all + (size_t)CONV_W_ROWS * p.K * tid : NULL, bh, m0, mm, T,
                             bmat, ldb, d->accumulate ? 1.0f : 0.0f, c, p.P, ctx);
            conv_epilogue(&p, out, bf, b, m0, mm, p0, T);
        }
    }
done:
    ops_arena_release(scratch, mark);
    prof_end(d->k_h * d->k_w > 1 ? PROF_CONV3 : PROF_CONV1, t0, 2.0 * d->batch * d->out_ch * (double)p.K * p.P);
    return rc;
}
