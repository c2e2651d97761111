/* ops_eltwise.c - activations, softmax, adds, resampling and layout changes. */
#include "ops.h"

#include <math.h>
#include <string.h>

#include "ops_prof.h"
#include "ops_vmath.h"

/* Element ranges below this run on one thread: a parallel region costs more. */
#define PAR_MIN 32768

/*
 * GCC leaves loops of vm_geluf scalar (its selects stay branches): SD 1.5's GEGLU took 1.1 s of a 512x512
 * U-Net step on a 2-core Zen 1 (6%). With AVX2 the vector bodies run vm_gelu256, which gives the same bits,
 * so where a row splits into vectors and a scalar tail changes nothing.
 */
static void gelu_span(float *o, const float *x, const float *mul, size_t n) {
    size_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    for (; i + 8 <= n; i += 8) {
        __m256 g = vm_gelu256(_mm256_loadu_ps(x + i));
        _mm256_storeu_ps(o + i, mul ? _mm256_mul_ps(_mm256_loadu_ps(mul + i), g) : g);
    }
#endif
    for (; i < n; i++) o[i] = mul ? mul[i] * vm_geluf(x[i]) : vm_geluf(x[i]);
}

/* x[0..n) = SiLU(x) (gelu 0) or GELU(x) (gelu 1) in place, in chunks of 4096 over the threads. */
static void activate(float *x, size_t n, int gelu) {
    double t0 = prof_begin();
    size_t chunk = 4096, nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) num_threads(ops_get_threads()) if (n >= PAR_MIN)
    for (size_t c = 0; c < nchunks; c++) {
        size_t i0 = c * chunk, m = n - i0 < chunk ? n - i0 : chunk;
        if (gelu) gelu_span(x + i0, x + i0, NULL, m);
        else vm_silu_span(x + i0, x + i0, m, 0, 1.0f, 0.0f);
    }
    prof_end(PROF_ELTWISE, t0, 0);
}

void ops_silu(float *x, size_t n) { activate(x, n, 0); }

void ops_gelu(float *x, size_t n) { activate(x, n, 1); }

void ops_quick_gelu(float *x, size_t n) {
    double t0 = prof_begin();
#pragma omp parallel for simd schedule(static) num_threads(ops_get_threads()) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] = x[i] * vm_sigmoidf(1.702f * x[i]);
    prof_end(PROF_ELTWISE, t0, 0);
}

void ops_geglu(float *out, const float *x, int M, int inner) {
    double t0 = prof_begin();
#pragma omp parallel for schedule(static) num_threads(ops_get_threads()) if ((size_t)M * inner >= PAR_MIN)
    for (int r = 0; r < M; r++) {
        const float *val = x + (size_t)r * 2 * inner;
        gelu_span(out + (size_t)r * inner, val + inner, val, (size_t)inner); /* val * gelu(gate) */
    }
    prof_end(PROF_ELTWISE, t0, 0);
}

void ops_softmax(float *x, int rows, int n) {
    double t0 = prof_begin();
#pragma omp parallel for schedule(static) num_threads(ops_get_threads()) if ((size_t)rows * n >= PAR_MIN)
    for (int r = 0; r < rows; r++) {
        float *v = x + (size_t)r * n, m = -INFINITY, s = 0;
#pragma omp simd reduction(max : m)
        for (int i = 0; i < n; i++) m = v[i] > m ? v[i] : m;
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < n; i++) {
            v[i] = vm_expf(v[i] - m);
            s += v[i];
        }
        float inv = 1.0f / s;
#pragma omp simd
        for (int i = 0; i < n; i++) v[i] *= inv;
    }
    prof_end(PROF_ELTWISE, t0, 0);
}

void ops_add(float *out, const float *a, const float *b, size_t n) {
    double t0 = prof_begin();
#pragma omp parallel for simd schedule(static) num_threads(ops_get_threads()) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
    prof_end(PROF_ELTWISE, t0, 0);
}

void ops_upsample_nearest(float *out, const float *x, int B, int C, int H, int W, int oh, int ow) {
    double t0 = prof_begin();
#pragma omp parallel for schedule(static) num_threads(ops_get_threads()) if ((size_t)B * C * oh * ow >= PAR_MIN)
    for (int bc = 0; bc < B * C; bc++) {
        const float *src = x + (size_t)bc * H * W;
        float *dst = out + (size_t)bc * oh * ow;
        for (int y = 0; y < oh; y++) {
            const float *srow = src + (size_t)((int64_t)y * H / oh) * W;
            float *drow = dst + (size_t)y * ow;
            for (int xo = 0; xo < ow; xo++) drow[xo] = srow[(int64_t)xo * W / ow];
        }
    }
    prof_end(PROF_LAYOUT, t0, 0);
}

void ops_concat_channels(float *out, const float *a, int Ca, const float *b, int Cb, int B, int HW) {
    double t0 = prof_begin();
    size_t na = (size_t)Ca * HW, nb = (size_t)Cb * HW;
    for (int i = 0; i < B; i++) {
        memcpy(out + i * (na + nb), a + i * na, na * sizeof(float));
        memcpy(out + i * (na + nb) + na, b + i * nb, nb * sizeof(float));
    }
    prof_end(PROF_LAYOUT, t0, 0);
}

/* Transposes each of B [rows, cols] matrices in 32x32 blocks (cache friendly both ways). */
static void transpose_batched(float *out, const float *x, int B, int rows, int cols) {
    double t0 = prof_begin();
    int rb = (rows + 31) / 32, cb = (cols + 31) / 32;
#pragma omp parallel for schedule(static) num_threads(ops_get_threads()) if ((size_t)B * rows * cols >= PAR_MIN)
    for (long t = 0; t < (long)B * rb * cb; t++) {
        int b = (int)(t / ((long)rb * cb)), r0 = (int)(t / cb % rb) * 32, c0 = (int)(t % cb) * 32;
        const float *src = x + (size_t)b * rows * cols;
        float *dst = out + (size_t)b * rows * cols;
        int r1 = r0 + 32 < rows ? r0 + 32 : rows, c1 = c0 + 32 < cols ? c0 + 32 : cols;
        for (int r = r0; r < r1; r++)
            for (int c = c0; c < c1; c++) dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
    }
    prof_end(PROF_LAYOUT, t0, 0);
}

void ops_nchw_to_nlc(float *out, const float *x, int B, int C, int HW) { transpose_batched(out, x, B, C, HW); }

void ops_nlc_to_nchw(float *out, const float *x, int B, int C, int HW) { transpose_batched(out, x, B, HW, C); }
