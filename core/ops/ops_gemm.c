/*
 * ops_gemm.c - threads, weight widening, the one GEMM entry point (ops_gemm)
 * and the GEMM-shaped kernels (linear, matmul).
 */
#include "ops.h"

#include <cblas.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#include <math.h>
#ifdef SD_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops_prof.h"

/* ---- threads ---------------------------------------------------------- */

static int ops_threads;

void ops_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    ops_threads = n;
    omp_set_num_threads(n);
    /* every sgemm runs inside an OpenMP tile loop: OpenBLAS must not start threads of its own */
    openblas_set_num_threads(1);
}

static int plan_threads;
static pthread_once_t plan_once = PTHREAD_ONCE_INIT;
static void plan_default(void) {
    const char *e = getenv("SDRENDER_PLAN_THREADS");
    int n = e ? atoi(e) : 0;
    plan_threads = n >= 1 && n <= 1024 ? n : OPS_PLAN_THREADS_DEFAULT;
}

int ops_plan_threads(void) {
    pthread_once(&plan_once, plan_default);
    return plan_threads;
}

static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
static void threads_default(void) {
    if (!ops_threads) ops_set_threads(0);
}

int ops_get_threads(void) {
    pthread_once(&threads_once, threads_default);
    return ops_threads;
}

/* ---- weights ---------------------------------------------------------- */

const float *ops_weight_f32(const sd_tensor *w, ops_ctx *ctx, sd_error *err) {
    const float *view = sd_tensor_f32_view(w);
    if (view) return view;
    size_t n = (size_t)sd_tensor_numel(w);
    float *dst = ops_arena_floats(&ctx->scratch, n, err);
    if (!dst) return NULL;
    double t0 = prof_begin();
    size_t esz = sd_dtype_size(w->dtype);
    const unsigned char *src = w->data;
    if (n < (1u << 16)) {
        sd_dtype_convert_to_f32(dst, src, w->dtype, n);
        prof_end(PROF_WIDEN, t0, 0);
        return dst;
    }
    /* chunks of 16K elements: multiples of every vector width, one per loop step */
    size_t chunk = 1u << 14, nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) num_threads(ops_get_threads())
    for (size_t c = 0; c < nchunks; c++) {
        size_t i0 = c * chunk, m = n - i0 < chunk ? n - i0 : chunk;
        sd_dtype_convert_to_f32(dst + i0, src + i0 * esz, w->dtype, m);
    }
    prof_end(PROF_WIDEN, t0, 0);
    return dst;
}

/* ---- tiling ----------------------------------------------------------- */

/*
 * Splits an M x N output into tiles of tm x tn: columns in tiles of 512 (N when smaller), rows in
 * tiles of up to 512, halved (not below 64) until there are at least 2 tiles per thread.
 * The column tiles depend on N alone: oneDNN's result for an element depends on its tile's width,
 * and a row must come out the same whatever M is (a batch entry alone or in a batch;
 * core/pipeline/group.h). Narrower column tiles for parallelism (as before 2026-12-02: N = 320 went
 * in 4 tiles of 80) made each call pack its rows of a again for a few columns; measured on 2
 * threads (ops_matmul, U-Net shapes M x N x K), e.g. 2048x640x2560 258-271 -> 300-332 GFLOP/s,
 * 154x320x768 274-283 -> 298-340, 8192x2560x320 317-327 -> 349-355.
 */
static void split_tiles(int M, int N, int threads, int *tm, int *tn) {
    int bm = M < 512 ? M : 512, bn = N < 512 ? N : 512;
    long want = 2L * threads;
    while ((long)((M + bm - 1) / bm) * ((N + bn - 1) / bn) < want && bm >= 128) bm = bm / 2;
    *tm = bm;
    *tn = bn;
}

/*
 * Products with fewer rows (or columns) are computed on a copy padded to this many. oneDNN's sgemm
 * takes other kernels below 16 rows (measured: the rows of 1..15-row products differ in their last
 * bits from the same rows in a larger product; 16 and up agree), and likewise for 1-column products
 * (a convolution of a 1x1 image), so without padding a row's result would depend on how many rows
 * share its call: on the batch (a time embedding is one row per image) and
 * on where tiles end. A batch entry must come out the same alone or in a batch: CFG-parallel ranks
 * compute one entry each (core/pipeline/group.h).
 */
#define GEMM_MIN_ROWS 16

/*
 * The thread count gemm_tiled plans its row tiles for. In float32 with oneDNN a row's bits do not
 * depend on how many rows share its product (16 and up; ops_gemm pads fewer), so the rows are cut
 * for the threads really there: planned for 8 (ops_plan_threads), one image's 32x32 transformer
 * cut M = 1024 into 16 tiles of 64 rows, each packing the weights again and converting its 16-bit
 * rows again; on one thread 1024x1280x320 went 120 -> 148 GFLOP/s, 256x2560x640 105 -> 143
 * (bench --op linear, the Xeon). OpenBLAS (its small-matrix kernels are picked by the product's
 * size) and the bf16 routes keep the fixed plan.
 */
static int row_plan_threads(const ops_ctx *ctx) {
#ifdef SD_HAVE_DNNL
    if (!ctx || ctx->precision != OPS_PRECISION_BF16) return ops_get_threads();
#endif
    (void)ctx;
    return ops_plan_threads();
}

/* ---- the GEMM entry point ---------------------------------------------- */

#ifdef SD_HAVE_DNNL
/*
 * oneDNN's sgemm (row-major, like ours) on the calling thread. oneDNN shares
 * our OpenMP runtime and sizes its work by omp_get_max_threads(): oneDNN 2.6
 * runs alone when called inside a parallel region, but a call from serial
 * code would start a team of its own, and another version might nest one in
 * our tiles. Setting this task's thread count to 1 for the call (an ICV of
 * the calling task only, cheap) makes every call one single-threaded product
 * whose result depends on its shape alone, wherever it is called from.
 */
static void gemm_dnnl(int trans_b, int M, int N, int K, float alpha, const float *a, int lda, const float *b,
                      int ldb, float beta, float *c, int ldc) {
    int saved = omp_get_max_threads();
    if (saved != 1) omp_set_num_threads(1);
    dnnl_sgemm('N', trans_b ? 'T' : 'N', M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
    if (saved != 1) omp_set_num_threads(saved);
}
#endif

/*
 * Every GEMM of the kernels (linear, matmul, the convolution routes, the
 * BLAS attention) is one call of this, on the calling thread: the place a
 * precision (ctx->precision) or an instruction set picks the implementation.
 * In bf16 (ops_gemm_bf16.c) the inputs are rounded to bfloat16 first.
 * Float32 is one sgemm with exactly these arguments: oneDNN's when the build
 * has it (about twice OpenBLAS's AVX2 kernels on the AVX-512 EPYC, see the
 * README), else OpenBLAS's.
 */
static void gemm_route(const ops_ctx *ctx, int trans_b, int M, int N, int K, float alpha, const float *a,
                          int lda, const float *b, int ldb, float beta, float *c, int ldc);

/*
 * ops_gemm for M or N < GEMM_MIN_ROWS: the same product on at least GEMM_MIN_ROWS rows and columns,
 * zeros in the padding (a's extra rows, b's extra columns), the real part copied back.
 */
static void gemm_padded(const ops_ctx *ctx, int trans_b, int M, int N, int K, float alpha, const float *a, int lda,
                        const float *b, int ldb, float beta, float *c, int ldc) {
    const int R = M < GEMM_MIN_ROWS ? GEMM_MIN_ROWS : M, Q = N < GEMM_MIN_ROWS ? GEMM_MIN_ROWS : N;
    float *ap = R != M ? calloc((size_t)R * K, sizeof(float)) : NULL;
    float *bp = Q != N ? calloc((size_t)Q * K, sizeof(float)) : NULL;
    float *cp = calloc((size_t)R * Q, sizeof(float));
    if ((R != M && !ap) || (Q != N && !bp) || !cp) { /* out of memory: the unpadded product (right, not batch-invariant) */
        free(ap), free(bp), free(cp);
        gemm_route(ctx, trans_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    if (ap)
        for (int i = 0; i < M; i++) memcpy(ap + (size_t)i * K, a + (size_t)i * lda, (size_t)K * sizeof(float));
    if (bp) { /* b as [Q, K] rows (trans_b) or [K, Q] columns */
        if (trans_b)
            for (int j = 0; j < N; j++) memcpy(bp + (size_t)j * K, b + (size_t)j * ldb, (size_t)K * sizeof(float));
        else
            for (int k = 0; k < K; k++) memcpy(bp + (size_t)k * Q, b + (size_t)k * ldb, (size_t)N * sizeof(float));
    }
    if (beta != 0.0f)
        for (int i = 0; i < M; i++) memcpy(cp + (size_t)i * Q, c + (size_t)i * ldc, (size_t)N * sizeof(float));
    gemm_route(ctx, trans_b, R, Q, K, alpha, ap ? ap : a, ap ? K : lda, bp ? bp : b, bp ? (trans_b ? K : Q) : ldb, beta,
               cp, Q);
    for (int i = 0; i < M; i++) memcpy(c + (size_t)i * ldc, cp + (size_t)i * Q, (size_t)N * sizeof(float));
    free(ap), free(bp), free(cp);
}

void ops_gemm(const ops_ctx *ctx, int trans_b, int M, int N, int K, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc) {
    /* the FMA kernel's rows and columns come out the same in any shape: no padding */
    if ((!ctx || ctx->precision != OPS_PRECISION_BF16 || !ops_bf16_available()) && ops_gemm_fma_available() &&
        ops_gemm_fma(trans_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc) == 0)
        return;
    if (M > 0 && N > 0 && (M < GEMM_MIN_ROWS || N < GEMM_MIN_ROWS))
        gemm_padded(ctx, trans_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
    else
        gemm_route(ctx, trans_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* The product itself, by ctx->precision (ops_gemm pads few-row products first). */
static void gemm_route(const ops_ctx *ctx, int trans_b, int M, int N, int K, float alpha, const float *a, int lda,
                          const float *b, int ldb, float beta, float *c, int ldc) {
    if (ctx && ctx->precision == OPS_PRECISION_BF16 &&
        ops_gemm_bf16(trans_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc) == 0)
        return;
#ifdef SD_HAVE_DNNL
    gemm_dnnl(trans_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
#else
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, a, lda, b, ldb,
                beta, c, ldc);
#endif
}

const char *ops_gemm_backend(void) {
    if (ops_gemm_fma_available()) return "own AVX2 FMA kernel";
#ifdef SD_HAVE_DNNL
    return "oneDNN sgemm";
#else
    return "OpenBLAS sgemm";
#endif
}

/* ---- linear and matmul ------------------------------------------------ */

/*
 * c[M, N] (+)= a[M, K] * b (+ bias[N] on every row), b [K, N], or b [N, K]
 * used transposed when trans_b. The output is cut into tiles planned for
 * ops_plan_threads() threads (split_tiles), run on ops_get_threads(), one
 * ops_gemm per tile; the bias is added while the tile is hot. Shared by
 * ops_linear and ops_matmul.
 *
 * b NULL: b is the 16-bit tensor bt ([N, K], trans_b), and each tile converts
 * its own rows of it into its thread's part of bbuf (threads x tn x K floats)
 * just before its product. Converting all of it first wrote a float32 copy to
 * memory and read it back (4.8% of a 256x256 U-Net step with the
 * convolutions' weights; see ops_conv2d); a tile converts rows that other row
 * tiles convert too, at 4 / tm of its product's cost.
 */
static void gemm_tiled(int trans_b, int M, int N, int K, const float *a, int lda, const float *b, int ldb,
                       const sd_tensor *bt, float *bbuf, int accumulate, const float *bias, float *c, int ldc,
                       const ops_ctx *ctx) {
    if (M <= 0 || N <= 0) return;
    int threads = ops_get_threads(), tm, tn;
    split_tiles(M, N, row_plan_threads(ctx), &tm, &tn);
    int mt = (M + tm - 1) / tm, nt = (N + tn - 1) / tn;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int t = 0; t < mt * nt; t++) {
        int m0 = (t / nt) * tm, n0 = (t % nt) * tn;
        int mm = M - m0 < tm ? M - m0 : tm, nn = N - n0 < tn ? N - n0 : tn;
        const float *bp;
        if (b) {
            bp = trans_b ? b + (size_t)n0 * ldb : b + n0;
        } else { /* rows [n0, n0 + nn) of bt, as float32 */
            float *mine = bbuf + (size_t)tn * K * omp_get_thread_num();
            sd_dtype_convert_to_f32(mine, (const unsigned char *)bt->data + (size_t)n0 * K * sd_dtype_size(bt->dtype),
                                    bt->dtype, (size_t)nn * K);
            bp = mine;
        }
        float *ct = c + (size_t)m0 * ldc + n0;
        ops_gemm(ctx, trans_b, mm, nn, K, 1.0f, a + (size_t)m0 * lda, lda, bp, ldb, accumulate ? 1.0f : 0.0f, ct, ldc);
        if (bias) {
            for (int i = 0; i < mm; i++) {
                float *row = ct + (size_t)i * ldc;
#pragma omp simd
                for (int j = 0; j < nn; j++) row[j] += bias[n0 + j];
            }
        }
    }
}

/*
 * ops_linear in bf16 (ctx's precision, where ops_gemm_bf16 runs): x rounded to bf16 once per call, the
 * weight taken as bf16 (a BF16 tensor where it is, others converted once per call, straight from their
 * 16 bits), every tile one ops_gemm_bf16_rounded. The same roundings and the same primitive per tile
 * shape as ops_gemm's bf16 route, so the same bits; that route rounds x once per column tile and
 * converts each weight once per row tile, twice (16 bits -> float32 in gemm_tiled, -> bf16 in
 * ops_gemm_bf16), which on a CPU with AMX cost about as much as the products: the linear layers of two
 * SD 1.5 CFG steps at 512x512 took 1.62-1.69 s (553-575 GFLOP/s), now 1.33 (704), with the same PNG bytes.
 * 1 when it ran, 0 when it does not apply (tiles under 16 rows or columns, which ops_gemm pads; no
 * bf16 here), -1 on failure (err set).
 */
static int linear_bf16(float *out, const float *x, int M, int K, const sd_tensor *w, const float *bias, int N,
                       int accumulate, ops_ctx *ctx, sd_error *err) {
    int tm, tn;
    split_tiles(M, N, ops_plan_threads(), &tm, &tn);
    if (ctx->precision != OPS_PRECISION_BF16 || !ops_bf16_available() || (M % tm && M % tm < 16) ||
        (N % tn && N % tn < 16) || M < 16 || N < 16)
        return 0;
    int threads = ops_get_threads(), mt = (M + tm - 1) / tm, nt = (N + tn - 1) / tn, failed = 0;
    uint16_t *xb = ops_arena_alloc(&ctx->scratch, (size_t)M * K * sizeof *xb, err);
    uint16_t *wb = w->dtype == SD_BF16 && ((uintptr_t)w->data & 1) == 0
                       ? (uint16_t *)w->data
                       : ops_arena_alloc(&ctx->scratch, (size_t)N * K * sizeof *wb, err);
    if (!xb || !wb) return -1;
    size_t chunk = 1u << 14, nx = (size_t)M * K, nw = (size_t)N * K;
    size_t cx = (nx + chunk - 1) / chunk, cw = wb == w->data ? 0 : (nw + chunk - 1) / chunk;
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(static)
        for (size_t u = 0; u < cx + cw; u++) { /* x's chunks, then the weight's */
            size_t i0 = (u < cx ? u : u - cx) * chunk, n = u < cx ? nx : nw, m = n - i0 < chunk ? n - i0 : chunk;
            if (u < cx) ops_round_bf16(xb + i0, x + i0, m);
            else ops_convert_to_bf16(wb + i0, (const unsigned char *)w->data + i0 * sd_dtype_size(w->dtype), w->dtype, m);
        }
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < mt * nt; t++) {
            int m0 = (t / nt) * tm, n0 = (t % nt) * tn;
            int mm = M - m0 < tm ? M - m0 : tm, nn = N - n0 < tn ? N - n0 : tn;
            float *ct = out + (size_t)m0 * N + n0;
            if (ops_gemm_bf16_rounded(1, mm, nn, K, 1.0f, xb + (size_t)m0 * K, K, wb + (size_t)n0 * K, K,
                                      accumulate ? 1.0f : 0.0f, ct, N) < 0) {
#pragma omp atomic write
                failed = 1;
                continue;
            }
            if (bias)
                for (int i = 0; i < mm; i++) {
                    float *row = ct + (size_t)i * N;
#pragma omp simd
                    for (int j = 0; j < nn; j++) row[j] += bias[n0 + j];
                }
        }
    }
    return failed ? sd_err(err, SD_ENOMEM, "linear '%s': oneDNN's bf16 matmul failed (out of memory?)", w->name)
                  : 1;
}

int ops_linear_takes_few(const ops_ctx *ctx, sd_dtype t) {
    return ctx->precision != OPS_PRECISION_BF16 && ctx->entry_rows > 0 && ctx->entry_rows <= OPS_FEW_MAX_ROWS &&
           ops_gemm_few_available(t);
}

/*
 * ops_linear by ops_gemm_few: x transposed into [K, Mp], the product transposed, then out[m, n] =
 * (out + ) product + bias. For products of few rows per batch entry (ctx->entry_rows), where oneDNN
 * packed the weights for a few rows at a time; the same bits for a row whatever M.
 */
static int linear_few(float *out, const float *x, int M, int K, const sd_tensor *w, const sd_tensor *b, int N,
                      int accumulate, ops_ctx *ctx, sd_error *err) {
    int Mp = (M + 15) & ~15;
    const float *bf = b ? ops_weight_f32(b, ctx, err) : NULL;
    float *at = !b || bf ? ops_arena_floats(&ctx->scratch, (size_t)K * Mp, err) : NULL;
    float *ct = at ? ops_arena_floats(&ctx->scratch, (size_t)N * Mp, err) : NULL;
    if (!ct) return err ? err->code : SD_ENOMEM;
    ops_few_transpose(at, Mp, x, K, M, K);
    int rc = ops_gemm_few(ct, Mp, at, Mp, w->data, w->dtype, Mp, N, K, ctx, err);
    if (rc < 0) return rc;
#pragma omp parallel for schedule(static) num_threads(ops_get_threads())
    for (int n0 = 0; n0 < N; n0 += 16) /* 16 columns of out at a time: ct's rows n0 .. n0 + 15 */
        for (int m = 0; m < M; m++)
            for (int n = n0; n < N && n < n0 + 16; n++) {
                float v = ct[(size_t)n * Mp + m], *o = out + (size_t)m * N + n;
                if (accumulate) v = *o + v;
                if (bf) v += bf[n];
                *o = v;
            }
    return 0;
}

int ops_linear(float *out, const float *x, int M, int K, const sd_tensor *w, const sd_tensor *b, int N,
               int accumulate, ops_ctx *ctx, sd_error *err) {
    if (sd_tensor_numel(w) != (int64_t)N * K || (b && sd_tensor_numel(b) != N))
        return sd_err(err, SD_EINTERNAL, "linear: weight '%s' does not hold [%d, %d]", w->name, N, K);
    if (M <= 0) return 0;
    double t0 = prof_begin();
    ops_mark mark = ops_arena_mark(&ctx->scratch);
    if (ctx->precision == OPS_PRECISION_BF16) {
        const float *bf = b ? ops_weight_f32(b, ctx, err) : NULL;
        int rc = b && !bf ? -1 : linear_bf16(out, x, M, K, w, bf, N, accumulate, ctx, err);
        if (rc != 0) {
            ops_arena_release(&ctx->scratch, mark);
            if (rc > 0) prof_end(PROF_LINEAR, t0, 2.0 * M * N * K);
            return rc > 0 ? 0 : err ? err->code : SD_ENOMEM;
        }
    }
    if (ops_linear_takes_few(ctx, w->dtype)) {
        /* few rows per entry (the U-Net's 8x8 and 4x4 levels): see linear_few */
        int rc = linear_few(out, x, M, K, w, b, N, accumulate, ctx, err);
        ops_arena_release(&ctx->scratch, mark);
        if (rc == 0) prof_end(PROF_LINEAR, t0, 2.0 * M * N * K);
        return rc;
    }
    /* float32 weights are used where they are; 16-bit ones are converted tile by tile (gemm_tiled) */
    const float *wf = sd_tensor_f32_view(w);
    float *wbuf = NULL;
    if (!wf) {
        int tm, tn;
        split_tiles(M, N, ops_plan_threads(), &tm, &tn);
        wbuf = ops_arena_floats(&ctx->scratch, (size_t)tn * K * ops_get_threads(), err);
    }
    const float *bf = (wf || wbuf) && b ? ops_weight_f32(b, ctx, err) : NULL;
    if ((!wf && !wbuf) || (b && !bf)) {
        ops_arena_release(&ctx->scratch, mark);
        return err ? err->code : SD_ENOMEM;
    }
    gemm_tiled(1, M, N, K, x, K, wf, K, w, wbuf, accumulate, bf, out, N, ctx);
    ops_arena_release(&ctx->scratch, mark);
    prof_end(PROF_LINEAR, t0, 2.0 * M * N * K);
    return 0;
}

void ops_matmul(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int M, int N, int K,
                int trans_b, int accumulate, const ops_ctx *ctx) {
    if (M <= 0 || N <= 0) return;
    double t0 = prof_begin();
    gemm_tiled(trans_b, M, N, K, a, lda, b, ldb, NULL, NULL, accumulate, NULL, c, ldc, ctx);
    prof_end(PROF_MATMUL, t0, 2.0 * M * N * K);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/*
 * Calls OpenBLAS directly, not ops_gemm: it measures OpenBLAS itself (with
 * its own threads), the yardstick `sdrender bench` compares the kernels to.
 */
double ops_sgemm_reference_gflops(int size, int reps) {
    size_t n = (size_t)size * size;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float)), *c = malloc(n * sizeof(float));
    double gflops = 0;
    if (a && b && c && reps > 0) {
        for (size_t i = 0; i < n; i++) {
            a[i] = (float)(i % 97) * 0.01f - 0.5f;
            b[i] = (float)(i % 89) * 0.01f - 0.4f;
        }
        openblas_set_num_threads(ops_get_threads());
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, size, size, size, 1.0f, a, size, b, size, 0.0f, c,
                    size);
        double t0 = now_s();
        for (int r = 0; r < reps; r++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, size, size, size, 1.0f, a, size, b, size, 0.0f, c,
                        size);
        double dt = now_s() - t0;
        openblas_set_num_threads(1);
        gflops = 2.0 * size * size * (double)size * reps / dt / 1e9;
    }
    free(a);
    free(b);
    free(c);
    return gflops;
}

/*
 * GFLOP/s of c[4096, 320] = a[4096, 1280] * b[320, 1280]^T (a U-Net
 * projection's shape) through ops_matmul: ctx's GEMM with the kernels' own
 * tiles and threads, the best rate a kernel built on ops_gemm can reach
 * (the best of reps calls, after 0.3 s of untimed ones). 0 when out of memory.
 */
double ops_gemm_peak_gflops(const ops_ctx *ctx, int reps) {
    const int M = 4096, N = 320, K = 1280;
    float *a = malloc((size_t)M * K * sizeof(float)), *b = malloc((size_t)N * K * sizeof(float));
    float *c = malloc((size_t)M * N * sizeof(float));
    double gflops = 0;
    if (a && b && c && reps > 0) {
        for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 97) * 0.01f - 0.5f;
        for (size_t i = 0; i < (size_t)N * K; i++) b[i] = (float)(i % 89) * 0.01f - 0.4f;
        /*
         * Untimed calls for 0.3 s first: the OpenBLAS sgemm that `bench` times just before leaves
         * OpenBLAS's worker threads spinning on the other cores for about 0.1 s, which made this
         * rate 184-296 GFLOP/s from run to run on the Xeon (and unet_vs_peak up to 1.7). Then the
         * best of reps calls.
         */
        double warm_end = now_s() + 0.3, best = 1e30;
        do ops_matmul(c, N, a, K, b, K, M, N, K, 1, 0, ctx);
        while (now_s() < warm_end);
        for (int r = 0; r < reps; r++) {
            double t0 = now_s();
            ops_matmul(c, N, a, K, b, K, M, N, K, 1, 0, ctx);
            double dt = now_s() - t0;
            if (dt < best) best = dt;
        }
        gflops = 2.0 * M * N * (double)K / best / 1e9;
    }
    free(a);
    free(b);
    free(c);
    return gflops;
}
