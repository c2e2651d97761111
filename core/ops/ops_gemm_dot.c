/*
 * ops_gemm_dot.c - products with few rows against 16-bit weights, as dot
 * products (AVX-512).
 *
 *   c[i, j] = sum_k a[i, k] w[j, k]     a [M, K] float32, w [N, K] F16/BF16/F32
 *
 * The U-Net's 4x4 level (a 256x256 image: 16 positions per image, 32 with the
 * CFG batch) multiplies its largest weights (1280 channels, 3x3: K = 11520)
 * by a few dozen rows. oneDNN's sgemm packs both operands for that, and the
 * 16-bit weights were widened to float32 first. Here every weight row is read
 * where it lies, widened in registers, and used by a block of 4 rows of a at
 * once. Measured with `bench --op`, 1280 channels 3x3 (ms per call, GEMM
 * route -> this), on the Xeon: one core 4x4 one image 11.8 -> 3.7, two 9.6 ->
 * 7.4; two cores, two images 4.4-4.8 -> 3.5. Not used at 8x8: one image gains
 * (two cores 10.9-11.9 -> 7.2 ms) but two lose (12.8-13.9 -> 14.6; the
 * widening in the loop takes FMA slots, ~80% of oneDNN's rate once it has
 * enough rows), and the route may not depend on the batch (below).
 *
 * Order of the sums: c[i, j] is 16 lane sums (lane l adds a[i, k] w[j, k] for
 * k = l, l + 16, ... in order, one fused multiply-add each), then one fixed
 * tree of the 16 (_mm512_reduce_add_ps). That depends on K alone: not on M, N,
 * the blocks, nor the threads. So a batch entry comes out the same alone or in
 * a batch (a CFG-parallel rank computes one; core/pipeline/group.h) whatever
 * the callers group together.
 *
 * Blocking: rows of a in chunks that fit a core's L2 (a chunk is re-read for
 * every 6 weight rows), 4 x 6 sums in registers over all of K; work items are
 * (block of 48 weight rows, chunk), weight-major, so the threads share a block
 * of weights while it is in the last-level cache.
 */
#include "ops.h"

#include <omp.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>

#define DOT_MR 4                            /* rows of a per register block */
#define DOT_NR 6                            /* weight rows per register block */
#define DOT_CHUNK_BYTES ((size_t)768 << 10) /* rows of a per work item: about this much (L2: 1-2 MB per core) */
#define DOT_ITEM_ROWS 48                    /* weight rows per work item */

/* 16 weights of row w (dtype t) from k on, as float32; lanes past `mask` are 0. */
static inline __attribute__((always_inline)) __m512 dot_load_w(const void *w, sd_dtype t, size_t k, __mmask16 mask) {
    if (t == SD_F16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, (const uint16_t *)w + k));
    if (t == SD_BF16)
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, (const uint16_t *)w + k)), 16));
    return _mm512_maskz_loadu_ps(mask, (const float *)w + k);
}

/*
 * sum[i][j] = row ar[i] of a times weight row wr[j] over all K, for a 4 x 6 block (rows past the
 * valid ones are copies, computed and dropped by the caller). always_inline with a constant t: one
 * loop per weight type, the 24 sums in registers.
 */
static inline __attribute__((always_inline)) void dot_block(const float *const ar[DOT_MR], const void *const wr[DOT_NR],
                                                            sd_dtype t, int K, float sum[DOT_MR][DOT_NR]) {
    __m512 acc[DOT_MR][DOT_NR];
    for (int i = 0; i < DOT_MR; i++)
        for (int j = 0; j < DOT_NR; j++) acc[i][j] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 av[DOT_MR];
        for (int i = 0; i < DOT_MR; i++) av[i] = _mm512_loadu_ps(ar[i] + k);
        for (int j = 0; j < DOT_NR; j++) {
            __m512 wv = dot_load_w(wr[j], t, (size_t)k, 0xffff);
            for (int i = 0; i < DOT_MR; i++) acc[i][j] = _mm512_fmadd_ps(av[i], wv, acc[i][j]);
        }
    }
    if (k < K) { /* the last K % 16: zeros in the other lanes add nothing */
        __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
        __m512 av[DOT_MR];
        for (int i = 0; i < DOT_MR; i++) av[i] = _mm512_maskz_loadu_ps(m, ar[i] + k);
        for (int j = 0; j < DOT_NR; j++) {
            __m512 wv = dot_load_w(wr[j], t, (size_t)k, m);
            for (int i = 0; i < DOT_MR; i++) acc[i][j] = _mm512_fmadd_ps(av[i], wv, acc[i][j]);
        }
    }
    for (int i = 0; i < DOT_MR; i++)
        for (int j = 0; j < DOT_NR; j++) sum[i][j] = _mm512_reduce_add_ps(acc[i][j]);
}

/* Rows [m0, m1) of a against weight rows [n0, n1), in blocks of 4 x 6. */
static void dot_item(float *c, int ldc, const float *a, int lda, const void *w, sd_dtype t, int K, int m0, int m1,
                     int n0, int n1, const float *bias, int accumulate) {
    size_t wrow = (size_t)K * sd_dtype_size(t);
    for (int n = n0; n < n1; n += DOT_NR) {
        int nr = n1 - n < DOT_NR ? n1 - n : DOT_NR;
        const void *wr[DOT_NR];
        for (int j = 0; j < DOT_NR; j++) wr[j] = (const unsigned char *)w + (size_t)(n + (j < nr ? j : 0)) * wrow;
        for (int m = m0; m < m1; m += DOT_MR) {
            int mr = m1 - m < DOT_MR ? m1 - m : DOT_MR;
            const float *ar[DOT_MR];
            for (int i = 0; i < DOT_MR; i++) ar[i] = a + (size_t)(m + (i < mr ? i : 0)) * lda;
            float sum[DOT_MR][DOT_NR];
            if (t == SD_F16) dot_block(ar, wr, SD_F16, K, sum);
            else if (t == SD_BF16) dot_block(ar, wr, SD_BF16, K, sum);
            else dot_block(ar, wr, SD_F32, K, sum);
            for (int i = 0; i < mr; i++)
                for (int j = 0; j < nr; j++) {
                    float v = sum[i][j], *o = c + (size_t)(m + i) * ldc + n + j;
                    if (accumulate) v = *o + v;
                    if (bias) v += bias[n + j];
                    *o = v;
                }
        }
    }
}

int ops_gemm_dot_available(sd_dtype t) { return t == SD_F16 || t == SD_BF16 || t == SD_F32; }

int ops_gemm_dot(float *c, int ldc, const float *a, int lda, const void *w, sd_dtype t, int M, int N, int K,
                 const float *bias, int accumulate, ops_ctx *ctx, sd_error *err) {
    (void)ctx, (void)err;
    if (M <= 0 || N <= 0) return 0;
    int chunk = (int)(DOT_CHUNK_BYTES / ((size_t)K * sizeof(float) + 1));
    chunk = chunk < DOT_MR ? DOT_MR : chunk - chunk % DOT_MR;
    if (chunk > M) chunk = M;
    int n_chunks = (M + chunk - 1) / chunk, n_blocks = (N + DOT_ITEM_ROWS - 1) / DOT_ITEM_ROWS;
#pragma omp parallel for schedule(dynamic, 1) num_threads(ops_get_threads())
    for (int it = 0; it < n_chunks * n_blocks; it++) {
        int m0 = (it % n_chunks) * chunk, n0 = (it / n_chunks) * DOT_ITEM_ROWS;
        int m1 = m0 + chunk < M ? m0 + chunk : M, n1 = n0 + DOT_ITEM_ROWS < N ? n0 + DOT_ITEM_ROWS : N;
        dot_item(c, ldc, a, lda, w, t, K, m0, m1, n0, n1, bias, accumulate);
    }
    return 0;
}

#else /* no AVX-512: callers take their GEMM routes */

int ops_gemm_dot_available(sd_dtype t) {
    (void)t;
    return 0;
}

int ops_gemm_dot(float *c, int ldc, const float *a, int lda, const void *w, sd_dtype t, int M, int N, int K,
                 const float *bias, int accumulate, ops_ctx *ctx, sd_error *err) {
    (void)c, (void)ldc, (void)a, (void)lda, (void)w, (void)t, (void)M, (void)N, (void)K, (void)bias, (void)accumulate;
    (void)ctx;
    return sd_err(err, SD_EINTERNAL, "ops_gemm_dot: not in this build (no AVX-512)");
}

#endif
