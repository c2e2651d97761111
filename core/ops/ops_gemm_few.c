/*
 * ops_gemm_few.c - products of few rows against 16-bit weights (AVX-512).
 *
 *   ct[n, m] = sum_k w[n, k] at[k, m]    w [N, K] F16/BF16/F32 as stored,
 *                                         at [K, Mp] float32 (a transposed)
 *
 * The U-Net's smallest levels (8x8 and 4x4 latents: 64 and 16 positions per
 * image) multiply their largest weights (1280 channels; 3x3: K = 11520) by a
 * few dozen rows: one image's positions, or two with classifier-free
 * guidance. A GEMM library packs both operands for every such product, and
 * the weights were widened to float32 first; one image then cost almost as
 * much as two, so a CFG-parallel rank (one image) lost most of its gain.
 *
 * Here the output is computed transposed, tiles of NR weight rows x MV vectors
 * of 16 rows of a (24 accumulators: 6 x 4, 8 x 3, 12 x 2 or 24 x 1 for 64+,
 * 48, 32 or 16 rows): per k, MV vector loads of at and NR broadcasts of a
 * weight. k goes in blocks of OP_KC: the block of at (Mp x OP_KC floats, 128
 * KB for 64 rows) stays in L2 while every tile of weights uses it; each tile's
 * weights are widened into L1 once per block and never packed; the partial
 * sums wait in ct between blocks. The weights are read from memory once per
 * call, whatever the number of rows.
 *
 * Order of the sums: every output is one chain of fused multiply-adds over k
 * = 0, 1, ..., K-1 from 0 (stored and reloaded exactly between k blocks). It
 * does not depend on Mp, N, the tiles, nor the threads: a row of a comes out
 * the same alone or with others, so a batch entry is the same alone or in a
 * batch (core/pipeline/group.h), however the callers group rows.
 */
#include "ops.h"

#include <omp.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>

#define OP_KC 512 /* k per block */
#define OP_ACC 24 /* accumulators per tile: NR weight rows x MV vectors */

/*
 * ct[j][v*16 ..] (+)= sum over kc steps k of wf[j][k] * at[k][v*16 ..] for j < NR, v < MV: one tile,
 * at and ct already at the tile's first k and m (row strides ldat, ldct), wf the NR widened weight
 * rows (row stride OP_KC). first: the sums start from 0. always_inline with constant MV and NR: the
 * accumulators stay in registers.
 */
static inline __attribute__((always_inline)) void few_tile(float *ct, size_t ldct, const float *at, size_t ldat,
                                                           const float *wf, int kc, int first, int MV, int NR) {
    __m512 acc[OP_ACC];
    for (int j = 0; j < NR; j++)
        for (int v = 0; v < MV; v++)
            acc[j * MV + v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(ct + (size_t)j * ldct + v * 16);
    for (int k = 0; k < kc; k++) {
        __m512 av[4];
        for (int v = 0; v < MV; v++) av[v] = _mm512_loadu_ps(at + (size_t)k * ldat + v * 16);
        for (int j = 0; j < NR; j++) {
            __m512 b = _mm512_set1_ps(wf[(size_t)j * OP_KC + k]);
            for (int v = 0; v < MV; v++) acc[j * MV + v] = _mm512_fmadd_ps(b, av[v], acc[j * MV + v]);
        }
    }
    for (int j = 0; j < NR; j++)
        for (int v = 0; v < MV; v++) _mm512_storeu_ps(ct + (size_t)j * ldct + v * 16, acc[j * MV + v]);
}

/* One tile of mv vectors (mv <= MV of the plan) and the plan's NR rows: the shapes few_tile is built for. */
static void few_tile_any(float *ct, size_t ldct, const float *at, size_t ldat, const float *wf, int kc, int first,
                         int mv, int NR) {
    if (mv == 4) few_tile(ct, ldct, at, ldat, wf, kc, first, 4, 6);
    else if (mv == 3) few_tile(ct, ldct, at, ldat, wf, kc, first, 3, 8);
    else if (mv == 2 && NR == 12) few_tile(ct, ldct, at, ldat, wf, kc, first, 2, 12);
    else if (mv == 2 && NR == 8) few_tile(ct, ldct, at, ldat, wf, kc, first, 2, 8);
    else if (mv == 2) few_tile(ct, ldct, at, ldat, wf, kc, first, 2, 6);
    else if (NR == 24) few_tile(ct, ldct, at, ldat, wf, kc, first, 1, 24);
    else if (NR == 12) few_tile(ct, ldct, at, ldat, wf, kc, first, 1, 12);
    else if (NR == 8) few_tile(ct, ldct, at, ldat, wf, kc, first, 1, 8);
    else few_tile(ct, ldct, at, ldat, wf, kc, first, 1, 6);
}

int ops_gemm_few_available(sd_dtype t) { return t == SD_F16 || t == SD_BF16 || t == SD_F32; }

int ops_gemm_few(float *ct, int ldct, const float *at, int ldat, const void *w, sd_dtype t, int Mp, int N, int K,
                 ops_ctx *ctx, sd_error *err) {
    if (Mp % 16 || ldat < Mp || ldct < Mp)
        return sd_err(err, SD_EINTERNAL, "ops_gemm_few: %d rows (a multiple of 16 needed) in strides %d, %d", Mp,
                      ldat, ldct);
    if (Mp <= 0 || N <= 0) return 0;
    int threads = ops_get_threads(), nv = Mp / 16;
    int MV = nv < 4 ? nv : 4, NR = OP_ACC / MV; /* 16 rows: 24 x 1, 32: 12 x 2, 48: 8 x 3, 64 and up: 6 x 4 */
    size_t esz = sd_dtype_size(t);
    ops_mark mark = ops_arena_mark(&ctx->scratch);
    float *wf_all = ops_arena_floats(&ctx->scratch, (size_t)OP_ACC * OP_KC * threads, err);
    if (!wf_all) return err ? err->code : SD_ENOMEM;
    int n_tiles = (N + NR - 1) / NR, m_blocks = (nv + MV - 1) / MV;
#pragma omp parallel num_threads(threads)
    {
        float *wf = wf_all + (size_t)OP_ACC * OP_KC * omp_get_thread_num();
        float part[OP_ACC * 64]; /* the last tile's rows when N is not a multiple of NR */
        for (int k0 = 0; k0 < K; k0 += OP_KC) {
            int kc = K - k0 < OP_KC ? K - k0 : OP_KC;
#pragma omp for schedule(static)
            for (int tn = 0; tn < n_tiles; tn++) {
                int n0 = tn * NR, nr = N - n0 < NR ? N - n0 : NR;
                for (int j = 0; j < NR; j++) /* rows past N: copies of the tile's first, dropped */
                    sd_dtype_convert_to_f32(wf + (size_t)j * OP_KC,
                                            (const unsigned char *)w + ((size_t)(n0 + (j < nr ? j : 0)) * K + k0) * esz,
                                            t, (size_t)kc);
                for (int mb = 0; mb < m_blocks; mb++) {
                    int v0 = mb * MV, mv = nv - v0 < MV ? nv - v0 : MV;
                    float *cb = ct + (size_t)n0 * ldct + v0 * 16;
                    const float *ab = at + (size_t)k0 * ldat + v0 * 16;
                    if (nr == NR) {
                        few_tile_any(cb, (size_t)ldct, ab, (size_t)ldat, wf, kc, k0 == 0, mv, NR);
                        continue;
                    }
                    for (int j = 0; j < nr && k0; j++) memcpy(part + j * 64, cb + (size_t)j * ldct, (size_t)mv * 64);
                    few_tile_any(part, 64, ab, (size_t)ldat, wf, kc, k0 == 0, mv, NR);
                    for (int j = 0; j < nr; j++) memcpy(cb + (size_t)j * ldct, part + j * 64, (size_t)mv * 64);
                }
            }
        }
    }
    ops_arena_release(&ctx->scratch, mark);
    return 0;
}

/* dst[0..15] = lane l (4 floats) of g0, g1, g2, g3, in that order. always_inline: l is a constant. */
static inline __attribute__((always_inline)) void few_gather_lanes(float *dst, __m512 g0, __m512 g1, __m512 g2,
                                                                   __m512 g3, const int l) {
    __m512 lo = _mm512_shuffle_f32x4(g0, g1, l | l << 2 | l << 4 | l << 6); /* [g0 l, g0 l, g1 l, g1 l] */
    __m512 hi = _mm512_shuffle_f32x4(g2, g3, l | l << 2 | l << 4 | l << 6);
    _mm512_storeu_ps(dst, _mm512_shuffle_f32x4(lo, hi, 0x88)); /* lanes 0 and 2 of each */
}

/* dst[16][ldd] = src[16][lds] transposed (16 x 16 floats). */
static void few_transpose16(float *dst, size_t ldd, const float *src, size_t lds) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + (size_t)i * lds);
    for (int i = 0; i < 16; i += 2) { /* pairs of rows interleaved */
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* quads */
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    /*
     * Now r[4q + w], lane l (of 4 floats) = column 4l + w of rows 4q .. 4q + 3. Output row 4l + w takes
     * lane l of r[w], r[4 + w], r[8 + w], r[12 + w] (immediates need constants: one call per lane).
     */
    for (int w = 0; w < 4; w++) {
        few_gather_lanes(dst + (size_t)w * ldd, r[w], r[4 + w], r[8 + w], r[12 + w], 0);
        few_gather_lanes(dst + (size_t)(4 + w) * ldd, r[w], r[4 + w], r[8 + w], r[12 + w], 1);
        few_gather_lanes(dst + (size_t)(8 + w) * ldd, r[w], r[4 + w], r[8 + w], r[12 + w], 2);
        few_gather_lanes(dst + (size_t)(12 + w) * ldd, r[w], r[4 + w], r[8 + w], r[12 + w], 3);
    }
}

void ops_few_transpose(float *at, int ldat, const float *a, int lda, int M, int K) {
    int Mp = (M + 15) & ~15;
#pragma omp parallel for schedule(static) num_threads(ops_get_threads())
    for (int k0 = 0; k0 < K; k0 += 16) {
        for (int m0 = 0; m0 < Mp; m0 += 16) {
            if (k0 + 16 <= K && m0 + 16 <= M) {
                few_transpose16(at + (size_t)k0 * ldat + m0, (size_t)ldat, a + (size_t)m0 * lda + k0, (size_t)lda);
                continue;
            }
            for (int k = k0; k < K && k < k0 + 16; k++)
                for (int m = m0; m < m0 + 16; m++) at[(size_t)k * ldat + m] = m < M ? a[(size_t)m * lda + k] : 0.0f;
        }
    }
}

#else /* no AVX-512: callers take their GEMM routes */

int ops_gemm_few_available(sd_dtype t) {
    (void)t;
    return 0;
}

int ops_gemm_few(float *ct, int ldct, const float *at, int ldat, const void *w, sd_dtype t, int Mp, int N, int K,
                 ops_ctx *ctx, sd_error *err) {
    (void)ct, (void)ldct, (void)at, (void)ldat, (void)w, (void)t, (void)Mp, (void)N, (void)K, (void)ctx;
    return sd_err(err, SD_EINTERNAL, "ops_gemm_few: not in this build (no AVX-512)");
}

void ops_few_transpose(float *at, int ldat, const float *a, int lda, int M, int K) {
    int Mp = (M + 15) & ~15;
    for (int k = 0; k < K; k++)
        for (int m = 0; m < Mp; m++) at[(size_t)k * ldat + m] = m < M ? a[(size_t)m * lda + k] : 0.0f;
}

#endif
