/* Tests for core/ops: every optimized kernel against a plain loop (in double) on random shapes. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "ops_conv_impl.h"
#include "ops_vmath.h"

/*
 * The Winograd F(4x4, 3x3) route (the VAE's) against the float64 convolution: its transforms have
 * coefficients up to 5 (inputs) and 8 (outputs), so the rounding of the products it sums is that of
 * terms up to ~100x larger than the direct route's, partly cancelling. Measured on the cases below:
 * 1e-6..2.1e-5 with up to 40 input channels, 7e-5..1.7e-4 with 300 (10-30x F(2x2, 3x3)'s); a wrong
 * transform coefficient, tap, tile border or padding is off by 1e-2 or more.
 */
#define WINO4_TOL 3e-4

/* ---- helpers ---------------------------------------------------------- */


static float *rand_floats(size_t n, float scale) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = (float)((tu_urand() * 2 - 1) * scale);
    return p;
}

/* A weight tensor stored as dtype, with the float values it represents in `f`. */
typedef struct test_weight {
    sd_tensor t;
    unsigned char *raw; /* storage (+1 byte so F32 can be deliberately misaligned) */
    float *f;
} test_weight;

static void tw_make(test_weight *w, sd_dtype dt, int ndim, const int64_t *shape, float scale, int misalign) {
    memset(w, 0, sizeof *w);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    w->f = rand_floats(n, scale);
    size_t esz = sd_dtype_size(dt);
    w->raw = malloc(n * esz + 8);
    assert_non_null(w->raw);
    unsigned char *data = w->raw + (misalign ? 1 : 0);
    for (size_t i = 0; i < n; i++) {
        if (dt == SD_F16) {
            uint16_t h = sd_dtype_f32_to_f16(w->f[i]);
            w->f[i] = sd_dtype_f16_to_f32(h);
            memcpy(data + 2 * i, &h, 2);
        } else if (dt == SD_BF16) {
            uint16_t h = sd_dtype_f32_to_bf16(w->f[i]);
            w->f[i] = sd_dtype_bf16_to_f32(h);
            memcpy(data + 2 * i, &h, 2);
        } else {
            memcpy(data + 4 * i, &w->f[i], 4);
        }
    }
    w->t.name = "test.weight";
    w->t.dtype = dt;
    w->t.ndim = ndim;
    for (int i = 0; i < ndim; i++) w->t.shape[i] = shape[i];
    w->t.data = data;
    w->t.nbytes = n * esz;
}

static void tw_free(test_weight *w) {
    free(w->raw);
    free(w->f);
}

/* Fails unless |got - want| <= tol * (1 + |want|) everywhere; prints the worst element. */
static void expect_near(const char *label, const float *got, const double *want, size_t n, double tol) {
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(got[i] - want[i]) / (1 + fabs(want[i]));
        if (!(d <= worst)) {
            worst = d;
            wi = i;
        }
    }
    if (!(worst <= tol))
        fail_msg("%s: relative error %.3g at %zu (got %.9g, want %.9g), tolerance %.3g", label, worst, wi, got[wi],
                 want[wi], tol);
}

static const sd_dtype weight_dtypes[3] = {SD_F32, SD_F16, SD_BF16};

/* ---- vector math ------------------------------------------------------ */

static void test_vmath_exp_and_erf_match_libm(void **state) {
    (void)state;
    double worst_exp = 0, worst_erf = 0;
    for (int i = 0; i <= 400000; i++) {
        float x = -87.0f + 175.0f * (float)i / 400000.0f;
        double rel = fabs(vm_expf(x) - exp((double)x)) / exp((double)x);
        if (rel > worst_exp) worst_exp = rel;
        float z = -6.0f + 12.0f * (float)i / 400000.0f;
        double ae = fabs(vm_erff(z) - erf((double)z));
        if (ae > worst_erf) worst_erf = ae;
    }
    if (worst_exp > 3.0 * 5.96e-8) fail_msg("vm_expf relative error %.3g above 3 ulp", worst_exp);
    if (worst_erf > 1.5e-7) fail_msg("vm_erff absolute error %.3g above 1.5e-7", worst_erf);
#if defined(__AVX512F__)
    /* the 16-lane version gives the same numbers */
    for (int i = 0; i < 4096; i++) {
        float x[16], y[16];
        for (int l = 0; l < 16; l++) x[l] = -100.0f + 190.0f * (float)(i * 16 + l) / 65536.0f;
        _mm512_storeu_ps(y, vm_exp512(_mm512_loadu_ps(x)));
        for (int l = 0; l < 16; l++)
            if (y[l] != vm_expf(x[l])) fail_msg("vm_exp512(%.9g) = %.9g, vm_expf gives %.9g", x[l], y[l], vm_expf(x[l]));
    }
    assert_true(_mm512_reduce_add_ps(vm_exp512(_mm512_set1_ps(-INFINITY))) == 0.0f);
#endif
#if defined(__AVX2__) && defined(__FMA__)
    /* the 8-lane versions repeat the scalar steps: the same bits in every lane, specials included */
    static const float special[8] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 88.5f, -87.4f, 1e-30f};
    for (int i = 0; i <= 40000; i++) {
        float x[8], z[8], y[4][8];
        for (int l = 0; l < 8; l++) {
            x[l] = i == 40000 ? special[l] : -100.0f + 200.0f * (float)(i * 8 + l) / 320000.0f;
            z[l] = x[l] * 0.1f; /* erf and gelu: [-10, 10] */
        }
        _mm256_storeu_ps(y[0], vm_exp256(_mm256_loadu_ps(x)));
        _mm256_storeu_ps(y[1], vm_erf256(_mm256_loadu_ps(z)));
        _mm256_storeu_ps(y[2], vm_gelu256(_mm256_loadu_ps(z)));
        _mm256_storeu_ps(y[3], vm_sigmoid256(_mm256_loadu_ps(x)));
        for (int l = 0; l < 8; l++) {
            float in[4] = {x[l], z[l], z[l], x[l]};
            float want[4] = {vm_expf(x[l]), vm_erff(z[l]), vm_geluf(z[l]), vm_sigmoidf(x[l])};
            static const char *names[4] = {"vm_exp256", "vm_erf256", "vm_gelu256", "vm_sigmoid256"};
            for (int f = 0; f < 4; f++)
                if (memcmp(&y[f][l], &want[f], sizeof(float)))
                    fail_msg("%s(%.9g) = %.9g, the scalar function gives %.9g", names[f], in[f], y[f][l], want[f]);
        }
    }
#endif
    /* vm_silu_span (vector bodies and a scalar tail) against the scalar expression, in place and not */
    float xs[37], ys[37], ws[37];
    for (int i = 0; i < 37; i++) xs[i] = -9.0f + 0.5f * (float)i - (i == 18 ? 0.0f : 0.013f);
    for (int affine = 0; affine < 2; affine++) {
        vm_silu_span(ys, xs, 37, affine, 1.37f, -0.21f);
        memcpy(ws, xs, sizeof ws);
        vm_silu_span(ws, ws, 37, affine, 1.37f, -0.21f);
        for (int i = 0; i < 37; i++) {
            float v = affine ? xs[i] * 1.37f + -0.21f : xs[i], want = v * vm_sigmoidf(v);
            if (memcmp(&ys[i], &want, sizeof want) || memcmp(&ws[i], &want, sizeof want))
                fail_msg("vm_silu_span (affine %d) [%d] = %.9g / %.9g in place, want %.9g", affine, i, ys[i], ws[i],
                         want);
        }
    }
    assert_true(vm_expf(-INFINITY) == 0.0f);
    assert_true(vm_expf(-100.0f) == 0.0f);
    assert_true(vm_expf(0.0f) == 1.0f);
    assert_true(isfinite(vm_expf(200.0f)));
}

/* ---- linear and matmul ------------------------------------------------ */

static void test_linear_matches_naive_for_f32_f16_bf16_weights(void **state) {
    (void)state;
    ops_ctx ctx;
    ops_ctx_init(&ctx, 1 << 20);
    sd_error err = {0};
    for (int rep = 0; rep < 18; rep++) {
        int M = tu_irand(1, 300), K = tu_irand(1, 200), N = tu_irand(1, 700);
        sd_dtype dt = weight_dtypes[rep % 3];
        /* the last 6: rows per entry small enough for ops_gemm_few, where this build has it */
        ctx.entry_rows = rep >= 12 ? 1 + rep % OPS_FEW_MAX_ROWS : 0;
        int with_bias = rep % 4 != 3, acc = rep % 5 == 2;
        ops_set_threads(1 + rep % 3);
        test_weight w, b;
        tw_make(&w, dt, 2, (int64_t[]){N, K}, 0.5f, rep % 2);
        tw_make(&b, dt, 1, (int64_t[]){N}, 1.0f, 0);
        float *x = rand_floats((size_t)M * K, 1.0f), *out = rand_floats((size_t)M * N, 1.0f);
        double *want = malloc((size_t)M * N * sizeof(double));
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double s = acc ? out[(size_t)i * N + j] : 0;
                for (int k = 0; k < K; k++) s += (double)x[(size_t)i * K + k] * w.f[(size_t)j * K + k];
                want[(size_t)i * N + j] = s + (with_bias ? b.f[j] : 0);
            }
        assert_int_equal(ops_linear(out, x, M, K, &w.t, with_bias ? &b.t : NULL, N, acc, &ctx, &err), 0);
        char label[96];
        snprintf(label, sizeof label, "linear M%d K%d N%d %s%s", M, K, N, sd_dtype_name(dt),
                 ctx.entry_rows ? " (few rows per entry)" : "");
        expect_near(label, out, want, (size_t)M * N, 1e-5);
        assert_true(ctx.scratch.in_use == 0); /* scratch fully released */
        free(x), free(out), free(want);
        tw_free(&w), tw_free(&b);
    }
    ctx.entry_rows = 0;
    /* a weight of the wrong size is refused */
    test_weight w;
    tw_make(&w, SD_F32, 2, (int64_t[]){3, 4}, 1, 0);
    float x[8] = {0}, out[8];
    assert_int_equal(ops_linear(out, x, 2, 4, &w.t, NULL, 2, 0, &ctx, &err), SD_EINTERNAL);
    assert_non_null(strstr(err.msg, "test.weight"));
    tw_free(&w);
    ops_ctx_free(&ctx);
}

/*
 * ops_gemm_few (the U-Net's few-row products): every row comes out with the same bits whatever rows
 * share the call and whatever the thread count, as a CFG-parallel rank (one image) needs to match one
 * rank (two), for K with and without a whole last block and weights of every type; and the products
 * are right (float64 reference).
 */
static void test_gemm_few_rows_do_not_depend_on_the_batch_or_threads(void **state) {
    (void)state;
    if (!ops_gemm_few_available(SD_F16)) skip();
    ops_ctx ctx;
    ops_ctx_init(&ctx, 1 << 20);
    sd_error err = {0};
    static const int shapes[][3] = {{128, 1440, 100}, {37, 203, 61}, {70, 1030, 7}, {16, 600, 50}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2], Mp = (M + 15) & ~15;
        sd_dtype dt = weight_dtypes[s % 3];
        test_weight w;
        tw_make(&w, dt, 2, (int64_t[]){N, K}, 0.5f, 0);
        float *a = rand_floats((size_t)M * K, 1.0f), *at = malloc((size_t)K * Mp * sizeof(float));
        float *all = malloc((size_t)N * Mp * sizeof(float)), *part = malloc((size_t)N * Mp * sizeof(float));
        ops_set_threads(2);
        ops_few_transpose(at, Mp, a, K, M, K);
        assert_int_equal(ops_gemm_few(all, Mp, at, Mp, w.t.data, dt, Mp, N, K, &ctx, &err), 0);
        for (int n = 0; n < N; n += 7) /* against float64 */
            for (int m = 0; m < M; m += 5) {
                double want = 0;
                for (int k = 0; k < K; k++) want += (double)a[(size_t)m * K + k] * w.f[(size_t)n * K + k];
                if (fabs(all[(size_t)n * Mp + m] - want) > 1e-4 * (1 + fabs(want)))
                    fail_msg("gemm_few M%d K%d N%d: [%d, %d] = %g, want %g", M, K, N, m, n, all[(size_t)n * Mp + m], want);
            }
        /* rows [r0, r0 + r) alone, 1 or 2 threads: the same bits */
        for (int r0 = 0, r = 1; r0 < M; r0 += r, r = r * 3 % 17 + 1) {
            if (r > M - r0) r = M - r0;
            int rp = (r + 15) & ~15;
            ops_set_threads(1 + r0 % 2);
            ops_few_transpose(at, rp, a + (size_t)r0 * K, K, r, K);
            assert_int_equal(ops_gemm_few(part, rp, at, rp, w.t.data, dt, rp, N, K, &ctx, &err), 0);
            for (int n = 0; n < N; n++)
                if (memcmp(part + (size_t)n * rp, all + (size_t)n * Mp + r0, (size_t)r * sizeof(float)))
                    fail_msg("gemm_few M%d K%d N%d %s: rows %d..%d alone differ from all rows in one call", M, K, N,
                             sd_dtype_name(dt), r0, r0 + r - 1);
        }
        assert_true(ctx.scratch.in_use == 0);
        free(a), free(at), free(all), free(part);
        tw_free(&w);
    }
    ops_ctx_free(&ctx);
}

/*
 * want[M, N] = alpha * a[M, K] b + beta * c in double, b [K, N] or, when tb,
 * [N, K] used transposed; beta = 0 does not read c.
 */
static void gemm_naive(double *want, int M, int N, int K, double alpha, const float *a, int lda, const float *b,
                       int ldb, int tb, double beta, const float *c, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)a[(size_t)i * lda + k] * (tb ? b[(size_t)j * ldb + k] : b[(size_t)k * ldb + j]);
            want[(size_t)i * N + j] = alpha * s + (beta != 0 ? beta * c[(size_t)i * ldc + j] : 0);
        }
}

static void test_matmul_matches_naive_with_and_without_transpose(void **state) {
    (void)state;
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    for (int rep = 0; rep < 8; rep++) {
        int M = tu_irand(1, 200), N = tu_irand(1, 600), K = tu_irand(1, 100), tb = rep % 2, acc = rep % 3 == 1;
        ops_set_threads(1 + rep % 2);
        int lda = K + tu_irand(0, 3), ldb = (tb ? K : N) + tu_irand(0, 3), ldc = N + tu_irand(0, 3);
        float *A = rand_floats((size_t)M * lda, 1), *B = rand_floats((size_t)(tb ? N : K) * ldb, 1);
        float *C = rand_floats((size_t)M * ldc, 1);
        double *want = malloc((size_t)M * N * sizeof(double));
        float *got = malloc((size_t)M * N * sizeof(float));
        gemm_naive(want, M, N, K, 1, A, lda, B, ldb, tb, acc, C, ldc);
        ops_matmul(C, ldc, A, lda, B, ldb, M, N, K, tb, acc, &ctx);
        for (int i = 0; i < M; i++) memcpy(got + (size_t)i * N, C + (size_t)i * ldc, (size_t)N * sizeof(float));
        expect_near("matmul", got, want, (size_t)M * N, 1e-5);
        free(A), free(B), free(C), free(want), free(got);
    }
    ops_ctx_free(&ctx);
}

/*
 * ops_gemm, the one GEMM every kernel calls: c = alpha a b + beta c with
 * both layouts of b, leading dimensions wider than the matrices (columns
 * outside are untouched), and beta = 0 overwriting whatever c held (the
 * attention and convolution routes hand it uninitialized tiles).
 */
static void test_gemm_computes_alpha_ab_plus_beta_c_with_and_without_transpose(void **state) {
    (void)state;
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    for (int rep = 0; rep < 8; rep++) {
        int M = tu_irand(1, 70), N = tu_irand(1, 90), K = tu_irand(1, 50), tb = rep % 2;
        float alpha = rep % 4 < 2 ? 1.0f : 0.37f, beta = rep % 3 == 0 ? 0.0f : rep % 3 == 1 ? 1.0f : -0.5f;
        int lda = K + tu_irand(0, 3), ldb = (tb ? K : N) + tu_irand(0, 3), ldc = N + tu_irand(0, 3);
        float *A = rand_floats((size_t)M * lda, 1), *B = rand_floats((size_t)(tb ? N : K) * ldb, 1);
        float *C = rand_floats((size_t)M * ldc, 1), *C0 = malloc((size_t)M * ldc * sizeof(float));
        double *want = malloc((size_t)M * N * sizeof(double));
        float *got = malloc((size_t)M * N * sizeof(float));
        if (beta == 0.0f)
            for (int i = 0; i < M; i++) C[(size_t)i * ldc] = NAN; /* must not leak into the result */
        memcpy(C0, C, (size_t)M * ldc * sizeof(float));
        gemm_naive(want, M, N, K, alpha, A, lda, B, ldb, tb, beta, C, ldc);
        ops_gemm(&ctx, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        for (int i = 0; i < M; i++) {
            memcpy(got + (size_t)i * N, C + (size_t)i * ldc, (size_t)N * sizeof(float));
            for (int j = N; j < ldc; j++) assert_true(C[(size_t)i * ldc + j] == C0[(size_t)i * ldc + j]);
        }
        char label[96];
        snprintf(label, sizeof label, "gemm M%d N%d K%d trans_b %d alpha %g beta %g", M, N, K, tb, alpha, beta);
        expect_near(label, got, want, (size_t)M * N, 1e-5);
        free(A), free(B), free(C), free(C0), free(want), free(got);
    }
    ops_ctx_free(&ctx);
}

/*
 * ops_gemm_fma, ops_gemm's float32 route in builds for AVX2 CPUs without AVX-512, computes each output as it
 * says: one chain of fused multiply-adds over k in order, from 0 (then times alpha, then plus beta c) or from
 * c (alpha = beta = 1) -- bit for bit, in products larger than its blocks (k past 384: two blocks of k, the
 * partial sums stored and reloaded; rows past 96; columns past 2048) and for both layouts of b. So an output's bits do not depend on the product's shape: any block of
 * rows and columns computed alone equals that block of the whole product (a batch entry comes out the same
 * alone or in a batch, an image the same on any thread count). Skipped in other builds.
 */
static float gemm_fma_chain(int i, int j, int K, float alpha, const float *a, const float *b, int tb, int ldb,
                            float beta, float c) {
    float acc = alpha == 1.0f && beta == 1.0f ? c : 0.0f;
    for (int k = 0; k < K; k++) acc = fmaf(a[(size_t)i * K + k], tb ? b[(size_t)j * ldb + k] : b[(size_t)k * ldb + j], acc);
    if (alpha == 1.0f && beta == 1.0f) return acc;
    if (alpha != 1.0f) acc = acc * alpha;
    return beta == 0.0f ? acc : acc + beta * c;
}

static void test_gemm_fma_outputs_are_one_chain_whatever_the_products_shape(void **state) {
    (void)state;
    if (!ops_gemm_fma_available()) skip();
    const int M = 110, N = 2070, K = 400;
    for (int rep = 0; rep < 4; rep++) {
        int tb = rep % 2, ldb = tb ? K : N;
        float alpha = rep == 1 || rep == 3 ? 0.37f : 1.0f, beta = rep == 2 ? 1.0f : rep == 3 ? -0.5f : 0.0f;
        float *A = rand_floats((size_t)M * K, 1), *B = rand_floats((size_t)N * K, 1), *C0 = rand_floats((size_t)M * N, 1);
        float *C = malloc((size_t)M * N * sizeof(float)), *part = malloc((size_t)M * N * sizeof(float));
        assert_non_null(C), assert_non_null(part);
        memcpy(C, C0, (size_t)M * N * sizeof(float));
        assert_int_equal(ops_gemm_fma(tb, M, N, K, alpha, A, K, B, ldb, beta, C, N), 0);
        char label[96];
        snprintf(label, sizeof label, "gemm_fma M%d N%d K%d trans_b %d alpha %g beta %g", M, N, K, tb, alpha, beta);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float want = gemm_fma_chain(i, j, K, alpha, A, B, tb, ldb, beta, C0[(size_t)i * N + j]);
                if (memcmp(&want, C + (size_t)i * N + j, sizeof want))
                    fail_msg("%s: [%d, %d] = %.9g, the chain gives %.9g", label, i, j, C[(size_t)i * N + j], want);
            }
        for (int t = 0; t < 8; t++) { /* rows [i0, i0 + m) x columns [j0, j0 + n), one row and one column included */
            int m = t == 0 ? 1 : tu_irand(1, M), n = t == 1 ? 1 : tu_irand(1, N);
            int i0 = tu_irand(0, M - m), j0 = tu_irand(0, N - n);
            for (int i = 0; i < m; i++) memcpy(part + (size_t)i * n, C0 + (size_t)(i0 + i) * N + j0, (size_t)n * sizeof(float));
            assert_int_equal(ops_gemm_fma(tb, m, n, K, alpha, A + (size_t)i0 * K, K, tb ? B + (size_t)j0 * K : B + j0,
                                          ldb, beta, part, n),
                             0);
            for (int i = 0; i < m; i++)
                if (memcmp(part + (size_t)i * n, C + (size_t)(i0 + i) * N + j0, (size_t)n * sizeof(float)))
                    fail_msg("%s: rows %d..%d x columns %d..%d alone differ from the whole product", label, i0,
                             i0 + m - 1, j0, j0 + n - 1);
        }
        free(A), free(B), free(C0), free(C), free(part);
    }
}

/*
 * ops_gemm's implementation (oneDNN when built with it) must not plan its
 * work for the kernels' thread count from inside their tiles: a product
 * gives the same bits on 1, 2 or 3 threads, and called from outside any
 * parallel region (an image must not depend on --threads).
 */
static void test_matmul_gives_the_same_bits_on_any_thread_count(void **state) {
    (void)state;
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    const int M = 300, N = 200, K = 1500;
    float *A = rand_floats((size_t)M * K, 1), *B = rand_floats((size_t)N * K, 1);
    float *ref = malloc((size_t)M * N * sizeof(float)), *got = malloc((size_t)M * N * sizeof(float));
    assert_non_null(ref);
    assert_non_null(got);
    ops_set_threads(1);
    ops_matmul(ref, N, A, K, B, K, M, N, K, 1, 0, &ctx);
    for (int threads = 2; threads <= 3; threads++) {
        ops_set_threads(threads);
        ops_matmul(got, N, A, K, B, K, M, N, K, 1, 0, &ctx);
        if (memcmp(ref, got, (size_t)M * N * sizeof(float)))
            fail_msg("ops_matmul on %d threads differs from 1 thread", threads);
    }
    /* one ops_gemm from outside any parallel region: the same bits with 3 threads set as with 1 */
    ops_gemm(&ctx, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, got, N);
    float *got1 = malloc((size_t)M * N * sizeof(float));
    assert_non_null(got1);
    ops_set_threads(1);
    ops_gemm(&ctx, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, got1, N);
    if (memcmp(got, got1, (size_t)M * N * sizeof(float))) fail_msg("ops_gemm depends on ops_set_threads");
    ops_set_threads(0);
    free(A), free(B), free(ref), free(got), free(got1);
    ops_ctx_free(&ctx);
}

/*
 * ops_gemm in bf16 computes exactly the float32 product of the inputs
 * rounded to bfloat16 (nearest even): checked against a double-precision
 * product of those rounded inputs, for both layouts of b, alpha, beta and
 * leading dimensions, inside and outside ops_matmul's tiles. Skipped where
 * the build or the CPU has no bf16 GEMM.
 */
static void test_gemm_bf16_is_the_product_of_bf16_rounded_inputs(void **state) {
    (void)state;
    if (!ops_bf16_available()) {
        printf("  (no bf16 GEMM here: skipped)\n");
        return;
    }
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    ctx.precision = OPS_PRECISION_BF16;
    for (int rep = 0; rep < 12; rep++) {
        /*
         * reps 0-3: one ops_gemm with alpha and beta; reps 4-7: ops_matmul's tiles (alpha 1, beta 0 or 1);
         * reps 8-11: ops_gemm_bf16_rounded on operands rounded by ops_round_bf16 (M, N >= 16)
         */
        int rounded = rep >= 8, tiled = rep >= 4 && !rounded, tb = rep % 2;
        int M = tu_irand(rounded ? 16 : 1, 300), N = tu_irand(rounded ? 16 : 1, 600), K = tu_irand(1, 400);
        float alpha = !tiled && rep % 2 ? 0.37f : 1.0f;
        float beta = tiled ? (float)(rep % 2) : rep % 3 == 0 ? 0.0f : rep % 3 == 1 ? 1.0f : -0.5f;
        int lda = K + tu_irand(0, 3), ldb = (tb ? K : N) + tu_irand(0, 3), ldc = N + tu_irand(0, 3);
        size_t na = (size_t)M * lda, nb = (size_t)(tb ? N : K) * ldb;
        float *A = rand_floats(na, 1), *B = rand_floats(nb, 1), *C = rand_floats((size_t)M * ldc, 1);
        float *Ar = malloc(na * sizeof(float)), *Br = malloc(nb * sizeof(float));
        double *want = malloc((size_t)M * N * sizeof(double));
        float *got = malloc((size_t)M * N * sizeof(float));
        assert_true(Ar && Br && want && got);
        for (size_t i = 0; i < na; i++) Ar[i] = sd_dtype_bf16_to_f32(sd_dtype_f32_to_bf16(A[i]));
        for (size_t i = 0; i < nb; i++) Br[i] = sd_dtype_bf16_to_f32(sd_dtype_f32_to_bf16(B[i]));
        gemm_naive(want, M, N, K, alpha, Ar, lda, Br, ldb, tb, beta, C, ldc);
        if (rounded) {
            uint16_t *Ah = malloc(na * sizeof(uint16_t)), *Bh = malloc(nb * sizeof(uint16_t));
            assert_true(Ah && Bh);
            ops_round_bf16(Ah, A, na);
            ops_round_bf16(Bh, B, nb);
            for (size_t i = 0; i < na; i++) assert_int_equal(Ah[i], sd_dtype_f32_to_bf16(A[i]));
            assert_int_equal(ops_gemm_bf16_rounded(tb, M, N, K, alpha, Ah, lda, Bh, ldb, beta, C, ldc), 0);
            free(Ah), free(Bh);
        } else if (tiled) {
            ops_matmul(C, ldc, A, lda, B, ldb, M, N, K, tb, beta == 1.0f, &ctx);
        } else {
            ops_gemm(&ctx, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        }
        for (int i = 0; i < M; i++) memcpy(got + (size_t)i * N, C + (size_t)i * ldc, (size_t)N * sizeof(float));
        char label[96];
        snprintf(label, sizeof label, "bf16 gemm%s M%d N%d K%d trans_b %d alpha %g beta %g", rounded ? " (rounded)" : "",
                 M, N, K, tb, alpha, beta);
        expect_near(label, got, want, (size_t)M * N, 1e-5);
        free(A), free(B), free(C), free(Ar), free(Br), free(want), free(got);
    }
    ops_ctx_free(&ctx);
}

/* ---- convolution ------------------------------------------------------ */

/* Plain-loop reference of ops_conv2d with every fused option. */
static void conv_naive(double *out, const float *x, const ops_conv_desc *d, const float *w, const float *bias) {
    int ih = d->up_h > 0 ? d->up_h : d->in_h, iw = d->up_w > 0 ? d->up_w : d->in_w, oh, ow;
    ops_conv2d_out_size(d, &oh, &ow);
    for (int b = 0; b < d->batch; b++)
        for (int o = 0; o < d->out_ch; o++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    double s = bias ? bias[o] : 0;
                    for (int c = 0; c < d->in_ch; c++)
                        for (int i = 0; i < d->k_h; i++)
                            for (int j = 0; j < d->k_w; j++) {
                                int iy = oy * d->stride - d->pad_t + i, ix = ox * d->stride - d->pad_l + j;
                                if (iy < 0 || iy >= ih || ix < 0 || ix >= iw) continue;
                                int sy = (int)((long)iy * d->in_h / ih), sx = (int)((long)ix * d->in_w / iw);
                                double v = x[(((size_t)b * d->in_ch + c) * d->in_h + sy) * d->in_w + sx];
                                if (d->in_scale) v = v * d->in_scale[b * d->in_ch + c] + d->in_shift[b * d->in_ch + c];
                                if (d->in_silu) v = v / (1 + exp(-v));
                                s += v * w[(((size_t)o * d->in_ch + c) * d->k_h + i) * d->k_w + j];
                            }
                    size_t idx = (((size_t)b * d->out_ch + o) * oh + oy) * ow + ox;
                    if (d->chan_add) s += d->chan_add[b * d->out_ch + o];
                    if (d->residual) s += d->residual[idx];
                    out[idx] += s;
                }
}

typedef struct conv_case {
    int batch, in_ch, in_h, in_w, out_ch, k_h, k_w, stride, pad_t, pad_l, pad_b, pad_r;
    int up_h, up_w, norm, silu, chan_add, residual, accumulate, bias;
} conv_case;

/* ops_conv2d on cc against conv_naive: |got - want| <= tol (1 + |want|). */
static void run_conv_case_tol(const conv_case *cc, sd_dtype dt, int threads, ops_ctx *ctx, double tol) {
    ops_set_threads(threads);
    ops_conv_desc d = {.batch = cc->batch, .in_ch = cc->in_ch, .in_h = cc->in_h, .in_w = cc->in_w,
                       .out_ch = cc->out_ch, .k_h = cc->k_h, .k_w = cc->k_w, .stride = cc->stride,
                       .pad_t = cc->pad_t, .pad_l = cc->pad_l, .pad_b = cc->pad_b, .pad_r = cc->pad_r};
    d.up_h = cc->up_h;
    d.up_w = cc->up_w;
    test_weight w, b;
    tw_make(&w, dt, 4, (int64_t[]){cc->out_ch, cc->in_ch, cc->k_h, cc->k_w}, 0.3f, dt == SD_F32);
    tw_make(&b, dt, 1, (int64_t[]){cc->out_ch}, 1.0f, 0);
    d.weight = &w.t;
    d.bias = cc->bias ? &b.t : NULL;
    int oh, ow;
    ops_conv2d_out_size(&d, &oh, &ow);
    assert_true(oh > 0 && ow > 0);
    size_t nin = (size_t)cc->batch * cc->in_ch * cc->in_h * cc->in_w, nout = (size_t)cc->batch * cc->out_ch * oh * ow;
    float *x = rand_floats(nin, 1), *scale = rand_floats((size_t)cc->batch * cc->in_ch, 2);
    float *shift = rand_floats((size_t)cc->batch * cc->in_ch, 1), *cadd = rand_floats((size_t)cc->batch * cc->out_ch, 1);
    float *res = rand_floats(nout, 1), *out = rand_floats(nout, 1);
    if (cc->norm) d.in_scale = scale, d.in_shift = shift;
    d.in_silu = cc->silu;
    if (cc->chan_add) d.chan_add = cadd;
    if (cc->residual) d.residual = res;
    d.accumulate = cc->accumulate;
    double *want = malloc(nout * sizeof(double));
    for (size_t i = 0; i < nout; i++) want[i] = cc->accumulate ? out[i] : 0;
    conv_naive(want, x, &d, w.f, cc->bias ? b.f : NULL);
    sd_error err = {0};
    int rc = ops_conv2d(out, x, &d, ctx, &err);
    if (rc) fail_msg("conv2d failed: %s", err.msg);
    char label[200];
    snprintf(label, sizeof label,
             "conv b%d %dx%dx%d -> %d k%dx%d s%d pad %d,%d,%d,%d up %dx%d norm%d silu%d add%d res%d acc%d %s t%d",
             cc->batch, cc->in_ch, cc->in_h, cc->in_w, cc->out_ch, cc->k_h, cc->k_w, cc->stride, cc->pad_t, cc->pad_l,
             cc->pad_b, cc->pad_r, cc->up_h, cc->up_w, cc->norm, cc->silu, cc->chan_add, cc->residual, cc->accumulate,
             sd_dtype_name(dt), threads);
    if (getenv("SDR_PRINTERR")) {
        double worst = 0;
        for (size_t i = 0; i < nout; i++) worst = fmax(worst, fabs(out[i] - want[i]) / (1 + fabs(want[i])));
        printf("ERR %.3g %s\n", worst, label);
    }
    expect_near(label, out, want, nout, tol);
    assert_true(ctx->scratch.in_use == 0);
    free(x), free(scale), free(shift), free(cadd), free(res), free(out), free(want);
    tw_free(&w), tw_free(&b);
}

/* run_conv_case_tol within the 2e-5 every float32 route is held to. */
static void run_conv_case(const conv_case *cc, sd_dtype dt, int threads, ops_ctx *ctx) {
    run_conv_case_tol(cc, dt, threads, ctx, 2e-5);
}

static void test_conv2d_matches_naive_for_kernel_shapes_strides_and_padding(void **state) {
    (void)state;
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    static const conv_case cases[] = {
        /* b  cin h   w  cout kh kw s  pt pl pb pr  uph upw nrm silu add res acc bias */
        {2, 5, 9, 7, 6, 3, 3, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1},     /* SD 3x3 */
        {1, 4, 10, 12, 7, 3, 3, 2, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1},   /* U-Net downsampler */
        {1, 3, 11, 9, 5, 3, 3, 2, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1},    /* VAE downsampler: pad right/bottom */
        {2, 6, 5, 8, 9, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},     /* 1x1, x read directly */
        {1, 5, 12, 10, 4, 1, 7, 1, 0, 3, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1},   /* Inception 1x7 */
        {1, 5, 12, 10, 4, 7, 1, 1, 3, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 1},   /* Inception 7x1 */
        {1, 3, 13, 13, 4, 5, 5, 1, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0},   /* 5x5, no bias */
        {1, 3, 17, 17, 8, 3, 3, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},   /* Inception stem: valid, stride 2 */
        {1, 2, 6, 6, 3, 3, 3, 1, 2, 0, 1, 3, 0, 0, 0, 0, 0, 0, 0, 1},     /* asymmetric padding */
        {2, 4, 1, 2, 5, 3, 3, 1, 1, 1, 1, 1, 2, 3, 0, 0, 0, 0, 0, 1},     /* upsample 1x2 -> 2x3, then 3x3 */
        {1, 4, 4, 4, 5, 3, 3, 1, 1, 1, 1, 1, 8, 8, 0, 0, 0, 0, 0, 1},     /* upsample x2 */
        {2, 8, 7, 5, 6, 3, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1},     /* GN affine + SiLU + time add */
        {2, 8, 7, 5, 6, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1},     /* 1x1 with affine, residual */
        {1, 6, 6, 9, 6, 3, 3, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1, 1},     /* SiLU only, accumulate */
        {2, 6, 9, 9, 7, 3, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1},     /* everything at once */
        {1, 3, 5, 5, 2, 5, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},     /* kernel = input: 1x1 output */
        {2, 6, 4, 4, 7, 3, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1},     /* 4x4 (the dot route): everything */
        {2, 5, 8, 8, 6, 3, 3, 2, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1},     /* stride 2 to 4x4, GN affine + SiLU */
        {1, 5, 2, 2, 6, 3, 3, 1, 1, 1, 1, 1, 4, 4, 0, 0, 0, 0, 0, 1},     /* upsample 2x2 -> 4x4, then 3x3 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_conv_case(&cases[i], weight_dtypes[i % 3], 1 + (int)(i % 3), &ctx);
    /* a kernel larger than the padded input is an error, not a crash */
    test_weight w;
    tw_make(&w, SD_F32, 4, (int64_t[]){2, 1, 5, 5}, 1, 0);
    float x[9] = {0}, out[4];
    ops_conv_desc bad = {.batch = 1, .in_ch = 1, .in_h = 3, .in_w = 3, .out_ch = 2, .k_h = 5, .k_w = 5, .stride = 1,
                         .weight = &w.t};
    sd_error err = {0};
    assert_int_equal(ops_conv2d(out, x, &bad, &ctx, &err), SD_EINTERNAL);
    assert_non_null(strstr(err.msg, "larger than"));
    tw_free(&w);
    ops_ctx_free(&ctx);
}

/*
 * A batch entry comes out of ops_conv2d with the same bits alone as in a batch of 2 (what CFG-parallel
 * ranks, one entry each, rely on), for 16-bit weights on small images, where the batch of 2 takes the
 * merged route and one image its own strip, in both precisions.
 */
static void test_conv2d_batch_entries_are_bit_identical_alone(void **state) {
    (void)state;
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    static const conv_case cases[] = {
        /* b  cin h   w  cout kh kw s  pt pl pb pr  uph upw nrm silu add res acc bias */
        {2, 48, 8, 8, 40, 3, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1},   /* 8x8: 64 positions */
        {2, 40, 4, 4, 140, 3, 3, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1},  /* 4x4 */
        {2, 24, 3, 5, 20, 3, 3, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1},   /* 3x5 (not accumulate: see resnet.c) */
        {2, 32, 8, 8, 48, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1},   /* 1x1 shortcut */
        {2, 32, 16, 16, 32, 3, 3, 2, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1}, /* stride-2 downsampler to 8x8 */
        {2, 16, 10, 9, 24, 3, 3, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1},  /* 90 positions: other routes */
    };
    for (int prec = 0; prec < 2; prec++) {
        ctx.precision = prec ? OPS_PRECISION_BF16 : OPS_PRECISION_FP32;
        if (prec && !ops_bf16_available()) break;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            const conv_case *cc = &cases[i];
            ops_set_threads(2);
            ops_conv_desc d = {.batch = 2, .in_ch = cc->in_ch, .in_h = cc->in_h, .in_w = cc->in_w,
                               .out_ch = cc->out_ch, .k_h = cc->k_h, .k_w = cc->k_w, .stride = cc->stride,
                               .pad_t = cc->pad_t, .pad_l = cc->pad_l, .pad_b = cc->pad_b, .pad_r = cc->pad_r};
            test_weight w, b;
            tw_make(&w, i % 2 ? SD_BF16 : SD_F16, 4, (int64_t[]){cc->out_ch, cc->in_ch, cc->k_h, cc->k_w}, 0.3f, 0);
            tw_make(&b, SD_F32, 1, (int64_t[]){cc->out_ch}, 1.0f, 0);
            d.weight = &w.t;
            d.bias = &b.t;
            int oh, ow;
            ops_conv2d_out_size(&d, &oh, &ow);
            size_t nin = (size_t)cc->in_ch * cc->in_h * cc->in_w, nout = (size_t)cc->out_ch * oh * ow;
            float *x = rand_floats(2 * nin, 1), *scale = rand_floats(2 * (size_t)cc->in_ch, 2);
            float *shift = rand_floats(2 * (size_t)cc->in_ch, 1), *cadd = rand_floats(2 * (size_t)cc->out_ch, 1);
            float *res = rand_floats(2 * nout, 1), *two = rand_floats(2 * nout, 1), *one = malloc(nout * sizeof(float));
            if (cc->norm) d.in_scale = scale, d.in_shift = shift;
            d.in_silu = cc->silu;
            if (cc->chan_add) d.chan_add = cadd;
            if (cc->residual) d.residual = res;
            d.accumulate = cc->accumulate;
            sd_error err = {0};
            float *start = malloc(2 * nout * sizeof(float));
            memcpy(start, two, 2 * nout * sizeof(float));
            if (ops_conv2d(two, x, &d, &ctx, &err)) fail_msg("conv2d failed: %s", err.msg);
            for (int k = 0; k < 2; k++) {
                ops_conv_desc e = d;
                e.batch = 1;
                e.in_scale = d.in_scale ? d.in_scale + k * cc->in_ch : NULL;
                e.in_shift = d.in_shift ? d.in_shift + k * cc->in_ch : NULL;
                e.chan_add = d.chan_add ? d.chan_add + k * cc->out_ch : NULL;
                e.residual = d.residual ? d.residual + k * nout : NULL;
                memcpy(one, start + k * nout, nout * sizeof(float));
                ops_set_threads(1 + k);
                if (ops_conv2d(one, x + k * nin, &e, &ctx, &err)) fail_msg("conv2d failed: %s", err.msg);
                if (memcmp(one, two + k * nout, nout * sizeof(float)))
                    fail_msg("%s case %zu (%dx%d, %d -> %d): image %d alone differs from the batch",
                             prec ? "bf16" : "fp32", i, cc->in_h, cc->in_w, cc->in_ch, cc->out_ch, k);
            }
            free(x), free(scale), free(shift), free(cadd), free(res), free(two), free(one), free(start);
            tw_free(&w), tw_free(&b);
        }
    }
    ops_ctx_free(&ctx);
}

static void test_conv2d_splits_large_images_into_strips_and_channel_chunks(void **state) {
    (void)state;
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    /* K = 2304: an 8 MB column budget holds ~14 rows of 64, so this runs in several strips */
    conv_case big = {1, 256, 48, 64, 20, 3, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 0, 1};
    run_conv_case(&big, SD_F16, 2, &ctx);
    /* a 2x3 image and 300 output channels: too few strips, so the channels are split */
    conv_case deep = {1, 40, 2, 3, 300, 3, 3, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1};
    run_conv_case(&deep, SD_F32, 4, &ctx);
    /* f16 weights converted by each item, 128 rows at a time, just before their product: items of 600
     * rows (16 images of one strip each: no channel split) and of 144 rows (the merged route, 1100
     * output channels in 8 chunks) */
    conv_case per_image = {16, 8, 16, 16, 600, 3, 3, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1};
    run_conv_case(&per_image, SD_F16, 2, &ctx);
    conv_case merged = {2, 8, 2, 3, 1100, 3, 3, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1};
    run_conv_case(&merged, SD_F16, 1, &ctx);
    conv_case deep1 = {2, 40, 2, 3, 260, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1};
    run_conv_case(&deep1, SD_BF16, 3, &ctx);
    /* the taps route (stride 1, >= 64 input channels, >= 32 output columns): padding, kernel shapes,
     * fused input and output work */
    static const conv_case taps[] = {
        /* b  cin h   w  cout kh kw s  pt pl pb pr  uph upw nrm silu add res acc bias */
        {2, 64, 5, 33, 20, 3, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1},  /* resnet conv1 */
        {1, 70, 6, 34, 9, 1, 7, 1, 0, 3, 0, 3, 0, 0, 0, 0, 0, 1, 0, 1},   /* Inception 1x7 */
        {1, 70, 9, 32, 9, 7, 1, 1, 3, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 1},   /* Inception 7x1, accumulate */
        {1, 64, 3, 17, 17, 3, 3, 1, 1, 1, 1, 1, 7, 35, 0, 0, 0, 0, 0, 1}, /* upsample to 7x35, then 3x3 */
        {2, 66, 6, 33, 5, 3, 3, 1, 2, 0, 1, 3, 0, 0, 1, 0, 1, 1, 1, 0},   /* asymmetric padding, everything */
        {1, 64, 5, 36, 3, 5, 5, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1},   /* unpadded 5x5: one output row */
        {1, 64, 30, 260, 12, 3, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 0, 1}, /* several strips */
    };
    for (size_t i = 0; i < sizeof taps / sizeof taps[0]; i++)
        run_conv_case(&taps[i], weight_dtypes[i % 3], 1 + (int)(i % 2), &ctx);
    /* random shapes */
    for (int rep = 0; rep < 12; rep++) {
        int k = tu_irand(1, 4), s = tu_irand(1, 2);
        conv_case c = {tu_irand(1, 2), tu_irand(1, 9), tu_irand(k, 14), tu_irand(k, 14), tu_irand(1, 9), k, tu_irand(1, 4), s,
                       tu_irand(0, 2), tu_irand(0, 2), tu_irand(0, 2), tu_irand(0, 2), 0, 0, tu_irand(0, 1), tu_irand(0, 1),
                       tu_irand(0, 1), tu_irand(0, 1), tu_irand(0, 1), tu_irand(0, 1)};
        if (rep % 3 == 0) c.up_h = c.in_h + tu_irand(0, 5), c.up_w = c.in_w + tu_irand(0, 5);
        if (c.in_w + c.pad_l + c.pad_r < c.k_w) c.pad_r = c.k_w;
        run_conv_case(&c, weight_dtypes[rep % 3], 1 + rep % 3, &ctx);
    }
    ops_ctx_free(&ctx);
}

/*
 * The Winograd F(2x2, 3x3) route against the float64 convolution. Error
 * model: each output is A^T M A, a +-1 combination of 9 of the 16 GEMM
 * results M[xi] = sum over in_ch of U[xi] V[xi], where every transformed
 * value is a +-1 (inputs) or +-1/2 (filters) combination of at most 4 or 9
 * float32 numbers. So the rounding is that of a 9 * in_ch term dot product
 * with terms at most ~4x larger than the direct route's: for inputs in
 * [-1, 1] (GroupNorm affine up to 3, SiLU), weights in [-0.3, 0.3] and
 * in_ch <= 300, about sqrt(9 in_ch) * 2^-24 * 4 * |terms| < 1e-5 relative,
 * inside the 2e-5 every conv route is held to; a wrong tap, tile border,
 * padding or epilogue term is off by 1e-2 or more.
 */
static void test_conv2d_winograd_matches_naive_with_fused_input_and_output_work(void **state) {
    (void)state;
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    ctx.conv_kernel = OPS_CONV_WINOGRAD;
    static const conv_case cases[] = {
        /* b  cin h   w  cout kh kw s  pt pl pb pr  uph upw nrm silu add res acc bias */
        {2, 40, 16, 16, 36, 3, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1},   /* resnet conv1: GN + SiLU + time add */
        {2, 36, 16, 16, 36, 3, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 0, 1},   /* resnet conv2: + residual */
        {1, 33, 9, 13, 35, 3, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1},    /* odd sizes (half tiles), accumulate */
        {1, 32, 7, 5, 33, 3, 3, 1, 1, 1, 1, 1, 14, 10, 0, 0, 0, 0, 0, 1},   /* upsampler: nearest x2, then 3x3 */
        {2, 34, 3, 5, 20, 3, 3, 1, 1, 1, 1, 1, 7, 11, 1, 1, 1, 1, 0, 0},    /* odd upsampling, no bias */
        {1, 8, 11, 10, 5, 3, 3, 1, 2, 0, 1, 3, 0, 0, 1, 0, 1, 1, 1, 1},     /* asymmetric padding, everything */
        {1, 5, 6, 7, 3, 3, 3, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1},       /* unpadded: 4x5 output */
        {2, 3, 1, 1, 4, 3, 3, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1},       /* 1x1 image: one half-used tile */
        {1, 300, 10, 12, 260, 3, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1}, /* many channels, several U blocks */
        {2, 40, 80, 15, 36, 3, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 0, 1},   /* shared: a strip spans both images */
        {1, 33, 48, 48, 70, 3, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1},   /* shared: 2 strips x 2 blocks of U */
    };
    for (int strips = 0; strips < 4; strips++) {
        /* the shared way (one V for the batch) and strips of tile rows (forced by a 1-byte limit), with
         * F(2x2, 3x3) and then F(4x4, 3x3) */
        conv_winograd_set_shared_limit(strips % 2 ? 1 : 0);
        ctx.wino_tile = strips < 2 ? 2 : 4;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            run_conv_case_tol(&cases[i], weight_dtypes[(i + strips) % 3], 1 + (int)((i + strips) % 3), &ctx,
                              strips < 2 ? 2e-5 : WINO4_TOL);
    }
    ctx.wino_tile = 2;
    /* strips: several per image (5, 5, 5 and 2 tile rows), and channel chunks */
    conv_winograd_set_shared_limit(1);
    conv_case tall = {2, 40, 33, 20, 36, 3, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 0, 1};
    run_conv_case(&tall, SD_F16, 2, &ctx);
    conv_case wide = {1, 32, 12, 12, 260, 3, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1};
    run_conv_case(&wide, SD_BF16, 3, &ctx);
    ctx.wino_tile = 4; /* 3, 3, 3 and 1 tile rows of 4 */
    conv_case tall4 = {2, 40, 39, 20, 36, 3, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 0, 1};
    run_conv_case_tol(&tall4, SD_F16, 2, &ctx, WINO4_TOL);
    run_conv_case_tol(&wide, SD_BF16, 3, &ctx, WINO4_TOL);
    ctx.wino_tile = 2;
    conv_winograd_set_shared_limit(0);
    /* random shapes, every fused option */
    for (int rep = 0; rep < 14; rep++) {
        conv_case c = {tu_irand(1, 2), tu_irand(1, 40), tu_irand(1, 17), tu_irand(1, 17), tu_irand(1, 40), 3, 3, 1,
                       tu_irand(0, 2), tu_irand(0, 2), tu_irand(0, 2), tu_irand(0, 2), 0, 0, tu_irand(0, 1),
                       tu_irand(0, 1), tu_irand(0, 1), tu_irand(0, 1), tu_irand(0, 1), tu_irand(0, 1)};
        if (rep % 3 == 0) c.up_h = c.in_h + tu_irand(0, 9), c.up_w = c.in_w + tu_irand(0, 9);
        int ih = c.up_h ? c.up_h : c.in_h, iw = c.up_w ? c.up_w : c.in_w;
        if (ih + c.pad_t + c.pad_b < 3) c.pad_b = 3;
        if (iw + c.pad_l + c.pad_r < 3) c.pad_r = 3;
        conv_winograd_set_shared_limit(rep % 2 ? 1 : 0);
        ctx.wino_tile = rep < 5 ? 2 : 4;
        run_conv_case_tol(&c, weight_dtypes[rep % 3], 1 + rep % 3, &ctx, rep < 5 ? 2e-5 : WINO4_TOL);
    }
    ctx.wino_tile = 2;
    conv_winograd_set_shared_limit(0);
    ops_set_threads(0);
    ops_ctx_free(&ctx);
}

/* out of a conv with the given kernel choice and thread count on fixed inputs (resnet conv1 fusions). */
static void conv_run_fixed(float *out, const ops_conv_desc *d, const float *x, ops_conv_kernel kernel, int threads,
                           ops_ctx *ctx) {
    ctx->conv_kernel = kernel;
    ops_set_threads(threads);
    sd_error err = {0};
    if (ops_conv2d(out, x, d, ctx, &err)) fail_msg("conv2d failed: %s", err.msg);
    ctx->conv_kernel = OPS_CONV_AUTO;
    ops_set_threads(0);
}

static void test_conv2d_winograd_is_picked_for_resnet_convs_and_does_not_depend_on_threads(void **state) {
    (void)state;
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    /* b, in_ch, side, out_ch, Winograd tile: the shared way, strips of a larger image, too few channels for
     * Winograd; F(2x2) and F(4x4) */
    static const int shapes[][5] = {{2, 64, 16, 64, 2}, {1, 32, 200, 32, 2}, {2, 16, 16, 64, 2},
                                    {2, 64, 16, 64, 4}, {1, 32, 200, 32, 4}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int B = shapes[s][0], C = shapes[s][1], S = shapes[s][2], M = shapes[s][3];
        ctx.wino_tile = shapes[s][4];
        test_weight w, bias;
        tw_make(&w, SD_F16, 4, (int64_t[]){M, C, 3, 3}, 0.1f, 0);
        tw_make(&bias, SD_F16, 1, (int64_t[]){M}, 1.0f, 0);
        size_t nin = (size_t)B * C * S * S, nout = (size_t)B * M * S * S;
        float *x = rand_floats(nin, 1), *scale = rand_floats((size_t)B * C, 2), *shift = rand_floats((size_t)B * C, 1);
        float *cadd = rand_floats((size_t)B * M, 1);
        ops_conv_desc d = {.batch = B, .in_ch = C, .in_h = S, .in_w = S, .out_ch = M, .k_h = 3, .k_w = 3, .stride = 1,
                           .pad_t = 1, .pad_l = 1, .pad_b = 1, .pad_r = 1, .weight = &w.t, .bias = &bias.t,
                           .in_scale = scale, .in_shift = shift, .in_silu = 1, .chan_add = cadd};
        float *ref = malloc(nout * sizeof(float)), *got = malloc(nout * sizeof(float));
        float *gemm = malloc(nout * sizeof(float));
        assert_true(ref && got && gemm);
        conv_run_fixed(ref, &d, x, OPS_CONV_WINOGRAD, 1, &ctx);
        for (int t = 2; t <= 5; t += 3) {
            conv_run_fixed(got, &d, x, OPS_CONV_WINOGRAD, t, &ctx);
            if (memcmp(ref, got, nout * sizeof(float)))
                fail_msg("winograd F(%dx%d) %dx%dx%d -> %d: %d threads give other numbers than 1", ctx.wino_tile,
                         ctx.wino_tile, C, S, S, M, t);
        }
        /* AUTO takes the Winograd route with >= 32 channels each way, the GEMM routes below */
        conv_run_fixed(got, &d, x, OPS_CONV_AUTO, 2, &ctx);
        conv_run_fixed(gemm, &d, x, OPS_CONV_GEMM, 2, &ctx);
        int wino = C >= 32 && M >= 32;
        if (memcmp(got, wino ? ref : gemm, nout * sizeof(float)))
            fail_msg("%dx%dx%d -> %d: auto did not take the %s route", C, S, S, M, wino ? "Winograd" : "GEMM");
        if (!memcmp(ref, gemm, nout * sizeof(float))) fail_msg("the Winograd and GEMM routes give identical bits");
        if (ctx.wino_tile == 4) { /* not F(2x2)'s numbers either; in bf16, F(2x2)'s (ops.h) */
            ctx.wino_tile = 2;
            conv_run_fixed(got, &d, x, OPS_CONV_WINOGRAD, 2, &ctx);
            if (!memcmp(ref, got, nout * sizeof(float))) fail_msg("F(4x4) and F(2x2) give identical bits");
            if (ops_bf16_available()) {
                ctx.precision = OPS_PRECISION_BF16;
                conv_run_fixed(got, &d, x, OPS_CONV_WINOGRAD, 2, &ctx);
                ctx.wino_tile = 4;
                conv_run_fixed(gemm, &d, x, OPS_CONV_WINOGRAD, 2, &ctx);
                if (memcmp(got, gemm, nout * sizeof(float))) fail_msg("bf16 took F(4x4)");
                ctx.precision = OPS_PRECISION_FP32;
            }
        }
        assert_true(ctx.scratch.in_use == 0);
        free(x), free(scale), free(shift), free(cadd), free(ref), free(got), free(gemm);
        tw_free(&w), tw_free(&bias);
    }
    ops_ctx_free(&ctx);
}

/* ---- normalization ---------------------------------------------------- */

static void test_groupnorm_and_layernorm_match_naive(void **state) {
    (void)state;
    ops_ctx ctx;
    ops_ctx_init(&ctx, 1 << 20);
    sd_error err = {0};
    for (int rep = 0; rep < 6; rep++) {
        int B = tu_irand(1, 3), G = tu_irand(1, 4), C = G * tu_irand(1, 5), HW = tu_irand(1, 300), silu = rep % 2;
        float eps = rep % 2 ? 1e-6f : 1e-5f;
        ops_set_threads(1 + rep % 2);
        test_weight g, bt;
        tw_make(&g, weight_dtypes[rep % 3], 1, (int64_t[]){C}, 2, 0);
        tw_make(&bt, weight_dtypes[rep % 3], 1, (int64_t[]){C}, 1, 0);
        size_t n = (size_t)B * C * HW;
        float *x = rand_floats(n, 3), *out = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) x[i] += 0.5f; /* non-zero mean */
        double *want = malloc(n * sizeof(double));
        int cpg = C / G;
        for (int b = 0; b < B; b++)
            for (int gi = 0; gi < G; gi++) {
                const float *xg = x + ((size_t)b * C + gi * cpg) * HW;
                double m = 0, v = 0;
                for (int i = 0; i < cpg * HW; i++) m += xg[i];
                m /= cpg * HW;
                for (int i = 0; i < cpg * HW; i++) v += (xg[i] - m) * (xg[i] - m);
                v /= cpg * HW;
                for (int c = 0; c < cpg; c++)
                    for (int i = 0; i < HW; i++) {
                        double y = (xg[c * HW + i] - m) / sqrt(v + eps) * g.f[gi * cpg + c] + bt.f[gi * cpg + c];
                        if (silu) y = y / (1 + exp(-y));
                        want[((size_t)b * C + gi * cpg + c) * HW + i] = y;
                    }
            }
        assert_int_equal(ops_groupnorm(out, x, B, C, HW, G, eps, &g.t, &bt.t, silu, &ctx, &err), 0);
        expect_near("groupnorm", out, want, n, 1e-5);
        /* in place gives the same */
        assert_int_equal(ops_groupnorm(x, x, B, C, HW, G, eps, &g.t, &bt.t, silu, &ctx, &err), 0);
        expect_near("groupnorm in place", x, want, n, 1e-5);
        free(x), free(out), free(want);
        tw_free(&g), tw_free(&bt);

        /* LayerNorm over rows */
        int M = tu_irand(1, 100);
        C = tu_irand(1, 300);
        tw_make(&g, weight_dtypes[rep % 3], 1, (int64_t[]){C}, 2, 0);
        tw_make(&bt, weight_dtypes[rep % 3], 1, (int64_t[]){C}, 1, 0);
        x = rand_floats((size_t)M * C, 4);
        out = malloc((size_t)M * C * sizeof(float));
        want = malloc((size_t)M * C * sizeof(double));
        for (int r = 0; r < M; r++) {
            const float *xr = x + (size_t)r * C;
            double m = 0, v = 0;
            for (int i = 0; i < C; i++) m += xr[i];
            m /= C;
            for (int i = 0; i < C; i++) v += (xr[i] - m) * (xr[i] - m);
            v /= C;
            for (int i = 0; i < C; i++) want[(size_t)r * C + i] = (xr[i] - m) / sqrt(v + eps) * g.f[i] + bt.f[i];
        }
        assert_int_equal(ops_layernorm(out, x, M, C, eps, &g.t, &bt.t, &ctx, &err), 0);
        expect_near("layernorm", out, want, (size_t)M * C, 1e-5);
        free(x), free(out), free(want);
        tw_free(&g), tw_free(&bt);
    }
    assert_true(ctx.scratch.in_use == 0);
    ops_ctx_free(&ctx);
}

/* ---- element-wise ----------------------------------------------------- */

static void test_activations_softmax_and_geglu_match_naive(void **state) {
    (void)state;
    ops_set_threads(2);
    size_t n = 100003; /* above the parallel threshold, not a multiple of 16 */
    float *x = rand_floats(n, 8), *y = malloc(n * sizeof(float));
    double *want = malloc(n * sizeof(double));
    for (int act = 0; act < 3; act++) {
        memcpy(y, x, n * sizeof(float));
        for (size_t i = 0; i < n; i++) {
            double v = x[i];
            want[i] = act == 0 ? v / (1 + exp(-v)) : act == 1 ? 0.5 * v * (1 + erf(v / sqrt(2.0)))
                                                              : v / (1 + exp(-1.702 * v));
        }
        if (act == 0) ops_silu(y, n);
        if (act == 1) ops_gelu(y, n);
        if (act == 2) ops_quick_gelu(y, n);
        expect_near(act == 0 ? "silu" : act == 1 ? "gelu" : "quick_gelu", y, want, n, 3e-7);
    }
    /* GEGLU: first half value, second half gate */
    int M = 37, inner = 129;
    float *g = rand_floats((size_t)M * 2 * inner, 3), *go = malloc((size_t)M * inner * sizeof(float));
    for (int r = 0; r < M; r++)
        for (int i = 0; i < inner; i++) {
            double v = g[(size_t)r * 2 * inner + i], gt = g[(size_t)r * 2 * inner + inner + i];
            want[(size_t)r * inner + i] = v * 0.5 * gt * (1 + erf(gt / sqrt(2.0)));
        }
    ops_geglu(go, g, M, inner);
    expect_near("geglu", go, want, (size_t)M * inner, 3e-7);
    /* softmax rows, including large logits */
    int rows = 13, len = 1000;
    float *s = rand_floats((size_t)rows * len, 30);
    for (int r = 0; r < rows; r++) {
        double m = -INFINITY, sum = 0;
        for (int i = 0; i < len; i++) m = fmax(m, s[r * len + i]);
        for (int i = 0; i < len; i++) sum += exp(s[r * len + i] - m);
        for (int i = 0; i < len; i++) want[r * len + i] = exp(s[r * len + i] - m) / sum;
    }
    ops_softmax(s, rows, len);
    expect_near("softmax", s, want, (size_t)rows * len, 1e-6);
    free(x), free(y), free(want), free(g), free(go), free(s);
}

static void test_upsample_concat_and_transposes_move_the_right_elements(void **state) {
    (void)state;
    /* nearest to an exact size: source index floor(dst * in / out), e.g. 1x2 -> 2x3 and 3x5 -> 7x11 */
    int sizes[][4] = {{1, 2, 2, 3}, {3, 5, 7, 11}, {4, 4, 8, 8}, {5, 3, 2, 7}};
    for (int t = 0; t < 4; t++) {
        int H = sizes[t][0], W = sizes[t][1], oh = sizes[t][2], ow = sizes[t][3], B = 2, C = 3;
        float *x = rand_floats((size_t)B * C * H * W, 1), *o = malloc((size_t)B * C * oh * ow * sizeof(float));
        ops_upsample_nearest(o, x, B, C, H, W, oh, ow);
        for (int bc = 0; bc < B * C; bc++)
            for (int y = 0; y < oh; y++)
                for (int xx = 0; xx < ow; xx++)
                    assert_true(o[((size_t)bc * oh + y) * ow + xx] == x[((size_t)bc * H + y * H / oh) * W + xx * W / ow]);
        free(x), free(o);
    }
    int B = 2, Ca = 3, Cb = 5, HW = 7;
    float *a = rand_floats((size_t)B * Ca * HW, 1), *b = rand_floats((size_t)B * Cb * HW, 1);
    float *o = malloc((size_t)B * (Ca + Cb) * HW * sizeof(float));
    ops_concat_channels(o, a, Ca, b, Cb, B, HW);
    for (int i = 0; i < B; i++)
        for (int c = 0; c < Ca + Cb; c++)
            for (int p = 0; p < HW; p++)
                assert_true(o[((size_t)i * (Ca + Cb) + c) * HW + p] ==
                            (c < Ca ? a[((size_t)i * Ca + c) * HW + p] : b[((size_t)i * Cb + c - Ca) * HW + p]));
    free(a), free(b), free(o);
    int C = 67;
    HW = 45;
    float *x = rand_floats((size_t)B * C * HW, 1), *t = malloc((size_t)B * C * HW * sizeof(float));
    float *back = malloc((size_t)B * C * HW * sizeof(float));
    ops_nchw_to_nlc(t, x, B, C, HW);
    for (int i = 0; i < B; i++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < HW; p++) assert_true(t[((size_t)i * HW + p) * C + c] == x[((size_t)i * C + c) * HW + p]);
    ops_nlc_to_nchw(back, t, B, C, HW);
    assert_memory_equal(back, x, (size_t)B * C * HW * sizeof(float));
    float *sum = malloc((size_t)B * C * HW * sizeof(float));
    ops_add(sum, x, back, (size_t)B * C * HW);
    for (size_t i = 0; i < (size_t)B * C * HW; i++) assert_true(sum[i] == 2 * x[i]);
    free(x), free(t), free(back), free(sum);
}

/* ---- arena ------------------------------------------------------------ */

static void test_arena_reuses_memory_after_release_and_keeps_alignment(void **state) {
    (void)state;
    ops_arena a;
    ops_arena_init(&a, 4096);
    sd_error err = {0};
    ops_mark m0 = ops_arena_mark(&a);
    char *p1 = ops_arena_alloc(&a, 100, &err);
    char *p2 = ops_arena_alloc(&a, 10000, &err); /* larger than a block: its own block */
    char *p3 = ops_arena_alloc(&a, 3, &err);
    assert_non_null(p1), assert_non_null(p2), assert_non_null(p3);
    assert_true(((uintptr_t)p1 % 64) == 0 && ((uintptr_t)p2 % 64) == 0 && ((uintptr_t)p3 % 64) == 0);
    memset(p2, 1, 10000);
    int grown = a.n_grow;
    size_t peak = a.peak;
    ops_arena_release(&a, m0);
    assert_true(a.in_use == 0);
#if !defined(__SANITIZE_ADDRESS__) /* under ASan every allocation is its own malloc (see ops_arena.c) */
    /* the same sequence again allocates nothing new and returns the same memory */
    assert_ptr_equal(ops_arena_alloc(&a, 100, &err), p1);
    assert_ptr_equal(ops_arena_alloc(&a, 10000, &err), p2);
    assert_ptr_equal(ops_arena_alloc(&a, 3, &err), p3);
    assert_int_equal(a.n_grow, grown);
#else
    (void)grown;
    assert_non_null(ops_arena_alloc(&a, 10000, &err));
#endif
    assert_true(a.peak == peak);
    ops_arena_free(&a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vmath_exp_and_erf_match_libm),
        cmocka_unit_test(test_linear_matches_naive_for_f32_f16_bf16_weights),
        cmocka_unit_test(test_matmul_matches_naive_with_and_without_transpose),
        cmocka_unit_test(test_conv2d_matches_naive_for_kernel_shapes_strides_and_padding),
        cmocka_unit_test(test_conv2d_splits_large_images_into_strips_and_channel_chunks),
        cmocka_unit_test(test_conv2d_batch_entries_are_bit_identical_alone),
        cmocka_unit_test(test_gemm_few_rows_do_not_depend_on_the_batch_or_threads),
        cmocka_unit_test(test_conv2d_winograd_matches_naive_with_fused_input_and_output_work),
        cmocka_unit_test(test_conv2d_winograd_is_picked_for_resnet_convs_and_does_not_depend_on_threads),
        cmocka_unit_test(test_groupnorm_and_layernorm_match_naive),
        cmocka_unit_test(test_activations_softmax_and_geglu_match_naive),
        cmocka_unit_test(test_upsample_concat_and_transposes_move_the_right_elements),
        cmocka_unit_test(test_arena_reuses_memory_after_release_and_keeps_alignment),
        /* last: its random shapes would shift every later test's */
        cmocka_unit_test(test_gemm_computes_alpha_ab_plus_beta_c_with_and_without_transpose),
        cmocka_unit_test(test_gemm_fma_outputs_are_one_chain_whatever_the_products_shape),
        cmocka_unit_test(test_matmul_gives_the_same_bits_on_any_thread_count),
        cmocka_unit_test(test_gemm_bf16_is_the_product_of_bf16_rounded_inputs),
    };
    return cmocka_run_group_tests_name("ops", tests, NULL, NULL);
}
