/* ops_cnn.c - pooling, ReLU, batch-norm folding and bilinear resize (see ops_cnn.h). */
#include "ops_cnn.h"

#include <math.h>
#include <stdint.h>

#include "ops.h"

int ops_pool_out_size(int in, int k, int stride, int pad) {
    int span = in + 2 * pad - k;
    if (stride <= 0 || span < 0) return 0;
    return span / stride + 1;
}

void ops_maxpool2d(float *out, const float *x, int B, int C, int H, int W, int k, int stride, int pad) {
    int oh = ops_pool_out_size(H, k, stride, pad), ow = ops_pool_out_size(W, k, stride, pad);
    long planes = (long)B * C;
#pragma omp parallel for schedule(static) num_threads(ops_get_threads())
    for (long p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * H * W;
        float *op = out + (size_t)p * oh * ow;
        for (int oy = 0; oy < oh; oy++) {
            int y0 = oy * stride - pad, y1 = y0 + k;
            if (y0 < 0) y0 = 0;
            if (y1 > H) y1 = H;
            for (int ox = 0; ox < ow; ox++) {
                int x0 = ox * stride - pad, x1 = x0 + k;
                if (x0 < 0) x0 = 0;
                if (x1 > W) x1 = W;
                float m = -INFINITY;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) {
                        float v = xp[(size_t)iy * W + ix];
                        if (v > m || isnan(v)) m = v;
                    }
                op[(size_t)oy * ow + ox] = m;
            }
        }
    }
}

void ops_avgpool2d(float *out, const float *x, int B, int C, int H, int W, int k, int stride, int pad,
                   int count_include_pad) {
    int oh = ops_pool_out_size(H, k, stride, pad), ow = ops_pool_out_size(W, k, stride, pad);
    long planes = (long)B * C;
#pragma omp parallel for schedule(static) num_threads(ops_get_threads())
    for (long p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * H * W;
        float *op = out + (size_t)p * oh * ow;
        for (int oy = 0; oy < oh; oy++) {
            /* as PyTorch: the window clipped to the padded image, then to the image */
            int y0 = oy * stride - pad, y1 = y0 + k < H + pad ? y0 + k : H + pad;
            int ph = y1 - y0;
            if (y0 < 0) y0 = 0;
            if (y1 > H) y1 = H;
            for (int ox = 0; ox < ow; ox++) {
                int x0 = ox * stride - pad, x1 = x0 + k < W + pad ? x0 + k : W + pad;
                int pw = x1 - x0;
                if (x0 < 0) x0 = 0;
                if (x1 > W) x1 = W;
                float s = 0.0f;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) s += xp[(size_t)iy * W + ix];
                int count = count_include_pad ? ph * pw : (y1 - y0) * (x1 - x0);
                op[(size_t)oy * ow + ox] = s / (float)count;
            }
        }
    }
}

void ops_mean_planes(float *out, const float *x, int planes, int HW) {
#pragma omp parallel for schedule(static) num_threads(ops_get_threads())
    for (int p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * HW;
        double s = 0;
        for (int i = 0; i < HW; i++) s += xp[i];
        out[p] = (float)(s / HW);
    }
}

void ops_relu(float *x, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void ops_fold_batchnorm(float *w, float *bias, int out_ch, size_t per_out, const float *gamma, const float *beta,
                        const float *mean, const float *var, double eps) {
    for (int o = 0; o < out_ch; o++) {
        double scale = (double)gamma[o] / sqrt((double)var[o] + eps);
        float *wo = w + (size_t)o * per_out;
        for (size_t i = 0; i < per_out; i++) wo[i] = (float)(wo[i] * scale);
        bias[o] = (float)((double)beta[o] - (double)mean[o] * scale);
    }
}

/*
 * Source indices and weights of one axis as PyTorch 1.13's CPU kernel: the
 * scale in float32 (in / out), the source coordinate in double (its CPU
 * accumulate type), the weights rounded to float32. Matching this, rather
 * than doing everything in float32, brings the 400->299 resize from 1.7e-5
 * to 2e-7 of the reference.
 */
static void bilinear_axis(int in, int out, int *i0, int *i1, float *l0, float *l1) {
    float scale = (float)in / (float)out;
    for (int o = 0; o < out; o++) {
        if (in == out) { /* PyTorch copies: weights exactly (1, 0) */
            i0[o] = i1[o] = o;
            l0[o] = 1.0f;
            l1[o] = 0.0f;
            continue;
        }
        double src = (double)scale * (o + 0.5) - 0.5;
        if (src < 0) src = 0;
        int a = (int)src;
        double lam = src - a;
        l1[o] = (float)(lam < 0 ? 0 : lam > 1 ? 1 : lam);
        l0[o] = 1.0f - l1[o];
        i0[o] = a;
        i1[o] = a < in - 1 ? a + 1 : a;
    }
}

int ops_resize_bilinear(float *out, const float *x, int B, int C, int H, int W, int oh, int ow, ops_ctx *ctx,
                        sd_error *err) {
    ops_arena *scratch = &ctx->scratch;
    ops_mark mark = ops_arena_mark(scratch);
    int *iy0 = ops_arena_alloc(scratch, sizeof(int) * 2 * ((size_t)oh + ow), err);
    float *ly = iy0 ? ops_arena_floats(scratch, 2 * ((size_t)oh + ow), err) : NULL;
    if (!ly) {
        ops_arena_release(scratch, mark);
        return err ? err->code : SD_ENOMEM;
    }
    int *iy1 = iy0 + oh, *ix0 = iy1 + oh, *ix1 = ix0 + ow;
    float *ly0 = ly, *ly1 = ly0 + oh, *lx0 = ly1 + oh, *lx1 = lx0 + ow;
    bilinear_axis(H, oh, iy0, iy1, ly0, ly1);
    bilinear_axis(W, ow, ix0, ix1, lx0, lx1);
    long planes = (long)B * C;
#pragma omp parallel for schedule(static) num_threads(ops_get_threads())
    for (long p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * H * W;
        float *op = out + (size_t)p * oh * ow;
        for (int oy = 0; oy < oh; oy++) {
            const float *r0 = xp + (size_t)iy0[oy] * W, *r1 = xp + (size_t)iy1[oy] * W;
            float wy0 = ly0[oy], wy1 = ly1[oy];
            for (int ox = 0; ox < ow; ox++) {
                float t0 = r0[ix0[ox]] * lx0[ox];
                t0 += r0[ix1[ox]] * lx1[ox];
                float t1 = r1[ix0[ox]] * lx0[ox];
                t1 += r1[ix1[ox]] * lx1[ox];
                float v = t0 * wy0;
                v += t1 * wy1;
                op[(size_t)oy * ow + ox] = v;
            }
        }
    }
    ops_arena_release(scratch, mark);
    return 0;
}
