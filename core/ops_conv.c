/*
 * ops_conv.c - 2-D convolution as GEMM over strips of output rows (see ops.h).
 *
 * For each work item (image b, strip of output rows, chunk of output
 * channels) a thread
 *   1. gathers the input rows the strip needs into `tin` when the input must
 *      be transformed first (nearest upsampling, GroupNorm affine, SiLU),
 *   2. builds the strip's im2col matrix col: [K = in_ch*k_h*k_w, T] in its own
 *      cache-sized buffer (a 1x1 stride-1 unpadded kernel uses tin itself),
 *   3. multiplies W: [out_ch, K] by col into out[b, :, strip] (ldc = H*W),
 *   4. adds bias, per-channel add and residual to the tile while it is hot.
 * A 1x1 kernel with no input work skips 1-2 and reads x directly.
 */
#include "ops.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "ops_prof.h"
#include "ops_vmath.h"

#define COL_BUDGET_BYTES ((size_t)8 << 20) /* per thread */
#define MIN_STRIP_POSITIONS 128

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
    size_t tin_floats, col_floats; /* per thread */
} conv_plan;

/* Input rows [*lo, *hi) of the (virtual) input that output rows [oy0, oy1) read. */
static void strip_input_rows(const conv_plan *p, int oy0, int oy1, int *lo, int *hi) {
    int a = oy0 * p->d->stride - p->d->pad_t, b = (oy1 - 1) * p->d->stride - p->d->pad_t + p->d->k_h;
    *lo = a < 0 ? 0 : a;
    *hi = b > p->ih ? p->ih : b;
    if (*hi < *lo) *hi = *lo;
}

/* tin[c][r][x] = transform(x_b[c][src(lo + r)][src(x)]) for input rows [lo, hi). */
static void gather_input(const conv_plan *p, float *tin, const float *xb, int b, int lo, int hi) {
    const ops_conv_desc *d = p->d;
    int H = d->in_h, W = d->in_w, up = d->up_h > 0 || d->up_w > 0;
    int nr = hi - lo;
    for (int c = 0; c < d->in_ch; c++) {
        float sc = d->in_scale ? d->in_scale[(size_t)b * d->in_ch + c] : 1.0f;
        float sh = d->in_shift ? d->in_shift[(size_t)b * d->in_ch + c] : 0.0f;
        int affine = d->in_scale || d->in_shift;
        const float *xc = xb + (size_t)c * H * W;
        for (int r = 0; r < nr; r++) {
            int iy = lo + r;
            int sy = up ? (int)((int64_t)iy * H / p->ih) : iy;
            const float *srow = xc + (size_t)sy * W;
            float *dst = tin + ((size_t)c * nr + r) * p->iw;
            if (up) {
                for (int x = 0; x < p->iw; x++) dst[x] = srow[(int64_t)x * W / p->iw];
            } else {
                memcpy(dst, srow, (size_t)W * sizeof(float));
            }
            if (affine && d->in_silu) {
#pragma omp simd
                for (int x = 0; x < p->iw; x++) {
                    float v = dst[x] * sc + sh;
                    dst[x] = v * vm_sigmoidf(v);
                }
            } else if (affine) {
#pragma omp simd
                for (int x = 0; x < p->iw; x++) dst[x] = dst[x] * sc + sh;
            } else if (d->in_silu) {
#pragma omp simd
                for (int x = 0; x < p->iw; x++) dst[x] = dst[x] * vm_sigmoidf(dst[x]);
            }
        }
    }
}

/*
 * col[k][t] for output rows [oy0, oy1): src holds input rows [lo, lo + nr) of
 * every channel with row stride src_w and channel stride src_cs.
 */
static void im2col_strip(const conv_plan *p, float *col, const float *src, size_t src_cs, int lo, int nr, int oy0,
                         int oy1) {
    const ops_conv_desc *d = p->d;
    int T = (oy1 - oy0) * p->ow, s = d->stride, ow = p->ow, iw = p->iw;
    for (int c = 0; c < d->in_ch; c++) {
        for (int i = 0; i < d->k_h; i++) {
            for (int j = 0; j < d->k_w; j++) {
                float *dst = col + ((size_t)(c * d->k_h + i) * d->k_w + j) * T;
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

static void plan_conv(conv_plan *p, const ops_conv_desc *d, int threads) {
    memset(p, 0, sizeof *p);
    p->d = d;
    p->ih = d->up_h > 0 ? d->up_h : d->in_h;
    p->iw = d->up_w > 0 ? d->up_w : d->in_w;
    ops_conv2d_out_size(d, &p->oh, &p->ow);
    p->P = p->oh * p->ow;
    p->K = d->in_ch * d->k_h * d->k_w;
    p->transform = d->up_h > 0 || d->up_w > 0 || d->in_scale || d->in_shift || d->in_silu;
    p->pointwise = d->k_h == 1 && d->k_w == 1 && d->stride == 1 && !d->pad_t && !d->pad_l && !d->pad_b && !d->pad_r;
    /* rows per strip: fill the column budget, but at least MIN_STRIP_POSITIONS positions */
    size_t per_row = (size_t)p->K * p->ow * sizeof(float);
    int rows = (int)(COL_BUDGET_BYTES / (per_row ? per_row : 1));
    int min_rows = (MIN_STRIP_POSITIONS + p->ow - 1) / p->ow;
    if (rows < min_rows) rows = min_rows;
    if (rows < 1) rows = 1;
    if (rows > p->oh) rows = p->oh;
    /* enough items for the threads: shorter strips first (not below min_rows), then channel chunks */
    while (rows > min_rows && (long)d->batch * ((p->oh + rows - 1) / rows) < 2L * threads) rows = (rows + 1) / 2;
    p->rows = rows;
    p->n_strips = (p->oh + rows - 1) / rows;
    long items = (long)d->batch * p->n_strips;
    int mchunk = d->out_ch;
    while (items * ((d->out_ch + mchunk - 1) / mchunk) < 2L * threads && mchunk >= 128)
        mchunk = ((mchunk / 2) + 15) & ~15;
    p->mchunk = mchunk;
    p->n_mchunks = (d->out_ch + mchunk - 1) / mchunk;
    int T = rows * p->ow;
    if (p->transform) {
        int nr = (rows - 1) * d->stride + d->k_h;
        if (nr > p->ih) nr = p->ih;
        p->tin_floats = (size_t)d->in_ch * nr * p->iw;
    }
    if (!p->pointwise) p->col_floats = (size_t)p->K * T;
}

int ops_conv2d(float *out, const float *x, const ops_conv_desc *d, ops_arena *scratch, sd_error *err) {
    int64_t wn = (int64_t)d->out_ch * d->in_ch * d->k_h * d->k_w;
    if (sd_tensor_numel(d->weight) != wn || (d->bias && sd_tensor_numel(d->bias) != d->out_ch))
        return sd_err(err, SD_EINTERNAL, "conv2d: weight '%s' does not hold [%d, %d, %d, %d]", d->weight->name,
                      d->out_ch, d->in_ch, d->k_h, d->k_w);
    int threads = ops_get_threads();
    conv_plan p;
    plan_conv(&p, d, threads);
    if (p.P <= 0) return sd_err(err, SD_EINTERNAL, "conv2d: kernel %dx%d larger than padded input %dx%d", d->k_h,
                                d->k_w, p.ih, p.iw);
    if (d->batch <= 0 || d->out_ch <= 0) return 0;
    double t0 = prof_begin();
    ops_mark mark = ops_arena_mark(scratch);
    int rc = 0;
    const float *wf = ops_weight_f32(d->weight, scratch, err);
    const float *bf = wf && d->bias ? ops_weight_f32(d->bias, scratch, err) : NULL;
    float *tin_all = NULL, *col_all = NULL;
    if (wf && (!d->bias || bf) && p.tin_floats) tin_all = ops_arena_floats(scratch, p.tin_floats * threads, err);
    if (wf && (!d->bias || bf) && p.col_floats) col_all = ops_arena_floats(scratch, p.col_floats * threads, err);
    if (!wf || (d->bias && !bf) || (p.tin_floats && !tin_all) || (p.col_floats && !col_all)) {
        rc = err ? err->code : SD_ENOMEM;
        goto done;
    }
    size_t in_img = (size_t)d->in_ch * d->in_h * d->in_w;
    int n_items = d->batch * p.n_strips * p.n_mchunks;
#pragma omp parallel num_threads(threads)
    {
        int tid = omp_get_thread_num();
        float *tin = tin_all ? tin_all + p.tin_floats * tid : NULL;
        float *col = col_all ? col_all + p.col_floats * tid : NULL;
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < n_items; it++) {
            int mc = it % p.n_mchunks, s = (it / p.n_mchunks) % p.n_strips, b = it / (p.n_mchunks * p.n_strips);
            int oy0 = s * p.rows, oy1 = oy0 + p.rows < p.oh ? oy0 + p.rows : p.oh;
            int m0 = mc * p.mchunk, mm = d->out_ch - m0 < p.mchunk ? d->out_ch - m0 : p.mchunk;
            int T = (oy1 - oy0) * p.ow, p0 = oy0 * p.ow;
            const float *xb = x + in_img * b;
            const float *bmat;
            int ldb;
            if (p.transform) {
                int lo, hi;
                strip_input_rows(&p, oy0, oy1, &lo, &hi);
                gather_input(&p, tin, xb, b, lo, hi);
                if (p.pointwise) {
                    bmat = tin;
                    ldb = T;
                } else {
                    im2col_strip(&p, col, tin, (size_t)(hi - lo) * p.iw, lo, hi - lo, oy0, oy1);
                    bmat = col;
                    ldb = T;
                }
            } else if (p.pointwise) {
                bmat = xb + p0;
                ldb = p.P;
            } else {
                im2col_strip(&p, col, xb, (size_t)d->in_h * d->in_w, 0, d->in_h, oy0, oy1);
                bmat = col;
                ldb = T;
            }
            float *c = out + ((size_t)b * d->out_ch + m0) * p.P + p0;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, mm, T, p.K, 1.0f, wf + (size_t)m0 * p.K, p.K,
                        bmat, ldb, d->accumulate ? 1.0f : 0.0f, c, p.P);
            conv_epilogue(&p, out, bf, b, m0, mm, p0, T);
        }
    }
done:
    ops_arena_release(scratch, mark);
    prof_end(d->k_h * d->k_w > 1 ? PROF_CONV3 : PROF_CONV1, t0, 2.0 * d->batch * d->out_ch * (double)p.K * p.P);
    return rc;
}
