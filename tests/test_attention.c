/* Tests for ops_attention: equals softmax(q k^T * scale) v, in memory that does not grow with n_q * n_kv. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "ops.h"

static float frand(void) { return (float)(tu_urand() * 2 - 1); }

static float *rand_floats(size_t n, float scale) {
    float *p = malloc(n * sizeof(float));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = frand() * scale;
    return p;
}

/*
 * Reference for one (batch, head, query): a full softmax row in double, O(n_kv) memory. Returns how far a
 * float32 kernel's rounding of the scores may move the row's outputs. Score j, scale * (q . k_j), summed in
 * float32 over head_dim products and scaled, is off by about e_j = sqrt(head_dim + 1) u scale sum_c |q_c
 * k_jc| (u = 2^-24; independent roundings add up like a random walk: the worst case, head_dim + 1 for the
 * square root, was 5-200x the errors seen), and scores off by e_j move the weighted average of v by at most
 * (to first order) 2 sum_j p_j e_j max |v|. With large scores (q, k scaled by 3 below: a peaked softmax)
 * this is the largest float32 error, and its size depends on the order of the sums: at 2500 keys OpenBLAS's
 * Haswell kernels and ops_gemm_fma measured 3.6e-6 and 4.4e-6 (the largest: 0.49 of this estimate plus the
 * sqrt(n_kv) term), over the sqrt(n_kv) term alone (3e-6) that the AVX-512 kernel had stayed within.
 */
static double naive_row(double *o, const float *q, const float *k, const float *v, const ops_attn_desc *d, int b,
                        int h, int i, double *p) {
    const float *qi = q + ((size_t)b * d->n_q + i) * d->q_stride + (size_t)h * d->head_dim;
    int n = d->causal ? (i + 1 < d->n_kv ? i + 1 : d->n_kv) : d->n_kv;
    double m = -INFINITY, s = 0, score_err = 0, vmax = 0;
    for (int j = 0; j < n; j++) {
        const float *kj = k + ((size_t)b * d->n_kv + j) * d->k_stride + (size_t)h * d->head_dim;
        double dot = 0;
        for (int c = 0; c < d->head_dim; c++) dot += (double)qi[c] * kj[c];
        p[j] = dot * d->scale;
        if (p[j] > m) m = p[j];
    }
    for (int j = 0; j < n; j++) s += (p[j] = exp(p[j] - m));
    for (int c = 0; c < d->head_dim; c++) o[c] = 0;
    for (int j = 0; j < n; j++) {
        const float *vj = v + ((size_t)b * d->n_kv + j) * d->v_stride + (size_t)h * d->head_dim;
        const float *kj = k + ((size_t)b * d->n_kv + j) * d->k_stride + (size_t)h * d->head_dim;
        double abs_dot = 0;
        for (int c = 0; c < d->head_dim; c++) {
            o[c] += p[j] / s * vj[c];
            abs_dot += fabs((double)qi[c] * kj[c]);
            if (fabs(vj[c]) > vmax) vmax = fabs(vj[c]);
        }
        score_err += p[j] / s * sqrt(d->head_dim + 1.0) * 0x1p-24 * d->scale * abs_dot;
    }
    return 2 * score_err * vmax;
}

/* x rounded to the nearest bfloat16 (ties to even), as a float. */
static float round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

/*
 * Runs d with ctx's attention kernel on random q, k, v (q/k scaled by
 * qk_scale) and compares every output with the reference.
 *
 * When the kernel's products take bf16 inputs (ops_attention_bf16), q, k and v
 * are bf16 values already, so the kernel's rounding of them is exact and only
 * its rounding of the probabilities P to bf16 remains: each P[j] moves by at
 * most 2^-8 of itself, so the weighted average of v (|v| <= 1) moves by at
 * most 2^-8 -- added to the float32 tolerance. A wrong pair, a dropped key or
 * an unscaled row costs far more (a key's whole weight, >= 1/n_kv).
 */
static void check_attention(const ops_ctx *ctx, const ops_attn_desc *d, float qk_scale, const char *label) {
    size_t nq = (size_t)d->batch * d->n_q, nk = (size_t)d->batch * d->n_kv;
    float *q = rand_floats(nq * d->q_stride, qk_scale), *k = rand_floats(nk * d->k_stride, qk_scale);
    float *v = rand_floats(nk * d->v_stride, 1), *out = rand_floats(nq * d->out_stride, 1);
    int bf16 = ops_attention_bf16(ctx);
    if (bf16) {
        for (size_t i = 0; i < nq * d->q_stride; i++) q[i] = round_bf16(q[i]);
        for (size_t i = 0; i < nk * d->k_stride; i++) k[i] = round_bf16(k[i]), v[i] = round_bf16(v[i]);
    }
    float *keep = malloc(nq * d->out_stride * sizeof(float));
    memcpy(keep, out, nq * d->out_stride * sizeof(float));
    size_t wsb = ops_attention_workspace(d, ops_get_threads(), ctx);
    void *ws = aligned_alloc(64, (wsb + 63) & ~(size_t)63);
    memset(ws, 0xff, wsb); /* NaN everywhere: a kernel that reads workspace it did not write fails */
    sd_error err = {0};
    assert_int_equal(ops_attention(out, q, k, v, d, ws, wsb, ctx, &err), 0);
    double *o = malloc(d->head_dim * sizeof(double)), *p = malloc(d->n_kv * sizeof(double)), worst = 0, worst_tol = 0;
    /* float32 rounding of a weighted average of n_kv values grows like sqrt(n_kv); plus the scores' (naive_row) */
    double tol0 = 1e-6 + 4e-8 * sqrt((double)d->n_kv) + (bf16 ? 1.0 / 256 : 0.0);
    for (int b = 0; b < d->batch; b++)
        for (int h = 0; h < d->heads; h++)
            for (int i = 0; i < d->n_q; i++) {
                double tol = tol0 + naive_row(o, q, k, v, d, b, h, i, p);
                const float *got = out + ((size_t)b * d->n_q + i) * d->out_stride + (size_t)h * d->head_dim;
                for (int c = 0; c < d->head_dim; c++)
                    if (!(fabs(got[c] - o[c]) / tol <= worst)) { /* NaN sticks */
                        worst = fabs(got[c] - o[c]) / tol;
                        worst_tol = tol;
                    }
            }
    if (!(worst <= 1))
        fail_msg("%s: max |got - want| = %.3g (tolerance %.3g)", label, worst * worst_tol, worst_tol);
    /* columns outside the heads (out_stride > heads * head_dim) are untouched */
    for (size_t t = 0; t < nq; t++)
        for (int c = d->heads * d->head_dim; c < d->out_stride; c++)
            assert_true(out[t * d->out_stride + c] == keep[t * d->out_stride + c]);
    free(q), free(k), free(v), free(out), free(keep), free(ws), free(o), free(p);
}

static void test_attention_matches_naive_for_self_cross_and_causal(void **state) {
    (void)state;
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    /* AVX-512 (where built), OpenBLAS, bf16 AUTO (AMX where the CPU has it), bf16 dot products; 1-3 threads */
    for (int run = 0; run < 12; run++) {
        int threads = 1 + run % 3;
        ops_set_threads(threads);
        ctx.attn_kernel = run >= 9 ? OPS_ATTN_DOT_BF16 : run < 3 || run >= 6 ? OPS_ATTN_AUTO : OPS_ATTN_BLAS;
        ctx.precision = run >= 6 ? OPS_PRECISION_BF16 : OPS_PRECISION_FP32;
        if (run % 3 == 0) printf("  kernel: %s\n", ops_attention_name(&ctx));
        if (run == 6 && !ops_attention_bf16(&ctx)) printf("  (no bf16 attention kernel here: fp32 checked again)\n");
        /* self-attention on a fused [B, T, 3C] projection: q, k, v are column slices */
        ops_attn_desc self = {.batch = 2, .heads = 3, .head_dim = 8, .n_q = 150, .n_kv = 150,
                              .q_stride = 72, .k_stride = 72, .v_stride = 72, .out_stride = 24,
                              .scale = 1 / sqrtf(8.0f)};
        check_attention(&ctx, &self, 2.0f, "self-attention");
        /* cross-attention: 77 keys of a text context */
        ops_attn_desc cross = {.batch = 2, .heads = 2, .head_dim = 16, .n_q = 130, .n_kv = 77,
                               .q_stride = 32, .k_stride = 32, .v_stride = 32, .out_stride = 35,
                               .scale = 0.25f};
        check_attention(&ctx, &cross, 2.0f, "cross-attention");
        /* CLIP text: causal, 77 tokens, 12 heads of 4 */
        ops_attn_desc clip = {.batch = 1, .heads = 12, .head_dim = 4, .n_q = 77, .n_kv = 77,
                              .q_stride = 48, .k_stride = 48, .v_stride = 48, .out_stride = 48,
                              .scale = 0.5f, .causal = 1};
        check_attention(&ctx, &clip, 2.0f, "causal attention");
        /* VAE: one head over all positions, head_dim = channels */
        ops_attn_desc vae = {.batch = 1, .heads = 1, .head_dim = 64, .n_q = 70, .n_kv = 70,
                             .q_stride = 64, .k_stride = 64, .v_stride = 64, .out_stride = 64,
                             .scale = 0.125f};
        check_attention(&ctx, &vae, 1.0f, "one head");
        /* head dims that are not multiples of 16, and wide heads split into column groups */
        ops_attn_desc odd = {.batch = 1, .heads = 2, .head_dim = 40, .n_q = 101, .n_kv = 70, .q_stride = 80,
                             .k_stride = 80, .v_stride = 80, .out_stride = 80, .scale = 0.15f};
        check_attention(&ctx, &odd, 1.0f, "head_dim 40");
        odd.head_dim = 5, odd.q_stride = odd.k_stride = odd.v_stride = odd.out_stride = 10;
        check_attention(&ctx, &odd, 1.0f, "head_dim 5");
        odd.head_dim = 160, odd.q_stride = odd.k_stride = odd.v_stride = odd.out_stride = 320;
        check_attention(&ctx, &odd, 0.5f, "head_dim 160");
    }
    ops_ctx_free(&ctx);
}

static void test_attention_streams_over_more_keys_than_one_block(void **state) {
    (void)state;
    ops_set_threads(2);
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    for (int kernel = 0; kernel < 4; kernel++) { /* AUTO, OpenBLAS, AUTO in bf16 (AMX where there), dot products */
        ctx.attn_kernel = kernel == 1 ? OPS_ATTN_BLAS : kernel == 3 ? OPS_ATTN_DOT_BF16 : OPS_ATTN_AUTO;
        ctx.precision = kernel >= 2 ? OPS_PRECISION_BF16 : OPS_PRECISION_FP32;
        /* several blocks of keys (512 in the GEMM route, 64 or 512 in the AVX-512 kernels), a partial last one, plain and causal */
        ops_attn_desc d = {.batch = 1, .heads = 2, .head_dim = 8, .n_q = 2500, .n_kv = 2500, .q_stride = 16,
                           .k_stride = 16, .v_stride = 16, .out_stride = 16, .scale = 1 / sqrtf(8.0f)};
        check_attention(&ctx, &d, 3.0f, "2500 keys");
        d.causal = 1;
        check_attention(&ctx, &d, 3.0f, "2500 keys causal");
        d.causal = 0;
        d.n_q = 70;
        check_attention(&ctx, &d, 3.0f, "70 queries, 2500 keys");
    }
    ops_ctx_free(&ctx);
}

/* Peak resident memory (VmHWM) in KiB since the last reset_peak_rss(). */
static long peak_rss_kb(void) {
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (fp && fgets(line, sizeof line, fp))
        if (!strncmp(line, "VmHWM:", 6)) kb = atol(line + 6);
    if (fp) fclose(fp);
    if (kb < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kb = ru.ru_maxrss;
    }
    return kb;
}

/* Resets the peak to the current resident size (Linux: "5" > clear_refs), so growth is measurable. */
static void reset_peak_rss(void) {
    FILE *fp = fopen("/proc/self/clear_refs", "w");
    if (fp) {
        fputs("5", fp);
        fclose(fp);
    }
}

static void test_attention_4096_tokens_without_a_score_matrix(void **state) {
    (void)state;
    ops_set_threads(2);
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    const int N = 4096;
    ops_attn_desc d = {.batch = 1, .heads = 2, .head_dim = 16, .n_q = N, .n_kv = N, .q_stride = 32,
                       .k_stride = 32, .v_stride = 32, .out_stride = 32, .scale = 0.25f};
    size_t score_bytes = (size_t)N * N * sizeof(float); /* 64 MiB: what a naive kernel holds */
    size_t wsb = ops_attention_workspace(&d, ops_get_threads(), &ctx);
    if (wsb * 16 > score_bytes) fail_msg("workspace of %zu bytes is not far below the %zu-byte score matrix", wsb, score_bytes);
    size_t n = (size_t)N * 32;
    float *q = rand_floats(n, 2), *k = rand_floats(n, 2), *v = rand_floats(n, 1), *out = calloc(n, sizeof(float));
    void *ws = aligned_alloc(64, (wsb + 63) & ~(size_t)63);
    memset(ws, 0, wsb);
    sd_error err = {0};
    /* warm up: OpenBLAS maps its packing buffers on first use in each thread */
    ops_attn_desc warm = d;
    warm.n_q = warm.n_kv = 256;
    assert_int_equal(ops_attention(out, q, k, v, &warm, ws, wsb, &ctx, &err), 0);
    reset_peak_rss();
    long before = peak_rss_kb();
    assert_int_equal(ops_attention(out, q, k, v, &d, ws, wsb, &ctx, &err), 0);
    long grown_kb = peak_rss_kb() - before;
    if ((size_t)grown_kb * 1024 > score_bytes / 4)
        fail_msg("resident memory grew by %ld KiB during the call: the kernel allocated score-sized memory", grown_kb);
    /* exact against the reference on a sample of queries (every 61st, both heads, last query included) */
    double *o = malloc(16 * sizeof(double)), *p = malloc((size_t)N * sizeof(double)), worst = 0;
    for (int s = 0; s <= N / 61; s++)
        for (int h = 0, i = s == N / 61 ? N - 1 : s * 61; h < 2; h++) {
            naive_row(o, q, k, v, &d, 0, h, i, p);
            for (int c = 0; c < 16; c++) {
                double e = fabs(out[(size_t)i * 32 + h * 16 + c] - o[c]);
                if (!(e <= worst)) worst = e; /* NaN sticks */
            }
        }
    if (!(worst <= 1e-6 + 4e-8 * sqrt((double)N))) fail_msg("N=4096: max |got - want| = %.3g", worst);
    /* a workspace one byte short is refused, not overrun */
    assert_int_equal(ops_attention(out, q, k, v, &d, ws, wsb - 1, &ctx, &err), SD_EINTERNAL);
    free(q), free(k), free(v), free(out), free(ws), free(o), free(p);
    ops_ctx_free(&ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_4096_tokens_without_a_score_matrix),
        cmocka_unit_test(test_attention_matches_naive_for_self_cross_and_causal),
        cmocka_unit_test(test_attention_streams_over_more_keys_than_one_block),
    };
    return cmocka_run_group_tests_name("attention", tests, NULL, NULL);
}
