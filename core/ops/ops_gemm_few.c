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
 * Measured with `bench --op conv:1280,S,B` (3x3, 1280 channels, fp16 weights;
 * ms per call, the GEMM route before -> this), on the Xeon: one core, 8x8 one
 * image 24.0 -> 14.9, two 26.8 -> 26.9; 4x4 one 12.0 -> 7.2, two 10.0 -> 7.7;
 * two cores, 8x8 one 11.4 -> 6.9, two 13.3 -> 13.6.
 *
 * 16 rows (one 4x4 image): a tile of 24 weights x 1 vector broadcasts a
 * weight for every multiply-add, so there the weights are widened and
 * transposed instead (16 x 16 blocks), and a tile is 8 rows x 48 weights (3
 * vectors across weights, the rows of a broadcast): one 1280-channel 3x3
 * convolution at 4x4 on one core, 9.2 -> 7.2 ms (at 32 rows, 8.6 -> 10.9: not
 * used there).
 *
 * Order of the sums: every output is one chain of fused multiply-adds over k
 * = 0, 1, ..., K-1 from 0 (stored and reloaded exactly between k blocks). It
 * does not depend on Mp, N, the tiles, the vectorized side, nor the threads
 * (a * w + s is the same float as w * a + s): a row of a comes out
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

/*
 * wf[j][0 .. kc) (row stride OP_KC) = values [k0, k0 + kc) of weight row n0 + j as float32, j < rows; rows
 * from nr on (past N) copy row n0: computed with the tile and dropped.
 */
static void few_widen_rows(float *wf, const void *w, sd_dtype t, int K, int n0, int nr, int rows, int k0, int kc) {
    size_t esz = sd_dtype_size(t);
    for (int j = 0; j < rows; j++)
        sd_dtype_convert_to_f32(wf + (size_t)j * OP_KC, (const unsigned char *)w + ((size_t)(n0 + (j < nr ? j : 0)) * K + k0) * esz,
                                t, (size_t)kc);
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

/* ---- 16 or 32 rows: the weights transposed, vectors across weight rows ------------------------ */

#define WIDE_MAX_ROWS 16 /* rows of a up to which ops_gemm_few vectorizes across weight rows (32 measured slower) */
#define WIDE_NR 48       /* weight rows per tile (3 vectors) */
#define WIDE_MR 8        /* rows of a per tile */

/*
 * cm[i][v*16 ..] (+)= sum over kc steps k of at[k][i] * wt[k][v*16 ..], i < 8, v < 3: a tile of 8 rows
 * of a (at, row stride ldat, at the tile's first k and row) and 48 weight rows (wt [kc][48], widened
 * and transposed), sums in cm (row stride ldcm). The same fused multiply-add per output and k, in the
 * same order, as few_tile: the same bits.
 */
static void wide_tile(float *cm, size_t ldcm, const float *at, size_t ldat, const float *wt, int kc, int first) {
    __m512 acc[WIDE_MR][3];
    for (int i = 0; i < WIDE_MR; i++)
        for (int v = 0; v < 3; v++) acc[i][v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(cm + (size_t)i * ldcm + v * 16);
    for (int k = 0; k < kc; k++) {
        __m512 wv[3];
        for (int v = 0; v < 3; v++) wv[v] = _mm512_loadu_ps(wt + (size_t)k * WIDE_NR + v * 16);
        for (int i = 0; i < WIDE_MR; i++) {
            __m512 a = _mm512_set1_ps(at[(size_t)k * ldat + i]);
            for (int v = 0; v < 3; v++) acc[i][v] = _mm512_fmadd_ps(a, wv[v], acc[i][v]);
        }
    }
    for (int i = 0; i < WIDE_MR; i++)
        for (int v = 0; v < 3; v++) _mm512_storeu_ps(cm + (size_t)i * ldcm + v * 16, acc[i][v]);
}

/* ops_gemm_few for Mp <= WIDE_MAX_ROWS: sums in cm [Mp][Np] (Np = N rounded up to 48), then ct = cm^T. */
static int few_run_wide(float *ct, int ldct, const float *at, int ldat, const void *w, sd_dtype t, int Mp, int N,
                        int K, ops_ctx *ctx, sd_error *err) {
    int threads = ops_get_threads(), n_tiles = (N + WIDE_NR - 1) / WIDE_NR, Np = n_tiles * WIDE_NR;
    size_t per_thread = (size_t)2 * WIDE_NR * OP_KC;
    ops_mark mark = ops_arena_mark(&ctx->scratch);
    float *cm = ops_arena_floats(&ctx->scratch, (size_t)Mp * Np, err);
    float *buf_all = cm ? ops_arena_floats(&ctx->scratch, per_thread * threads, err) : NULL;
    if (!buf_all) {
        ops_arena_release(&ctx->scratch, mark);
        return err ? err->code : SD_ENOMEM;
    }
#pragma omp parallel num_threads(threads)
    {
        float *wf = buf_all + per_thread * omp_get_thread_num(), *wt = wf + (size_t)WIDE_NR * OP_KC;
        for (int k0 = 0; k0 < K; k0 += OP_KC) {
            int kc = K - k0 < OP_KC ? K - k0 : OP_KC, k16 = kc & ~15;
#pragma omp for schedule(static)
            for (int tn = 0; tn < n_tiles; tn++) {
                int n0 = tn * WIDE_NR, nr = N - n0 < WIDE_NR ? N - n0 : WIDE_NR;
                few_widen_rows(wf, w, t, K, n0, nr, WIDE_NR, k0, kc);
                for (int k = 0; k < k16; k += 16)
                    for (int v = 0; v < 3; v++)
                        few_transpose16(wt + (size_t)k * WIDE_NR + v * 16, WIDE_NR, wf + (size_t)v * 16 * OP_KC + k, OP_KC);
                for (int k = k16; k < kc; k++)
                    for (int j = 0; j < WIDE_NR; j++) wt[(size_t)k * WIDE_NR + j] = wf[(size_t)j * OP_KC + k];
                for (int m0 = 0; m0 < Mp; m0 += WIDE_MR)
                    wide_tile(cm + (size_t)m0 * Np + n0, (size_t)Np, at + (size_t)k0 * ldat + m0, (size_t)ldat, wt, kc,
                              k0 == 0);
            }
        }
#pragma omp for schedule(static)
        for (int n0 = 0; n0 < N; n0 += 16)
            for (int m0 = 0; m0 < Mp; m0 += 16) {
                if (n0 + 16 <= N) {
                    few_transpose16(ct + (size_t)n0 * ldct + m0, (size_t)ldct, cm + (size_t)m0 * Np + n0, (size_t)Np);
                    continue;
                }
                for (int n = n0; n < N; n++)
                    for (int m = m0; m < m0 + 16; m++) ct[(size_t)n * ldct + m] = cm[(size_t)m * Np + n];
            }
    }
    ops_arena_release(&ctx->scratch, mark);
    return 0;
}

int ops_gemm_few_available(sd_dtype t) { return t == SD_F16 || t == SD_BF16 || t == SD_F32; }

int ops_gemm_few(float *ct, int ldct, const float *at, int ldat, const void *w, sd_dtype t, int Mp, int N, int K,
                 ops_ctx *ctx, sd_error *err) {
    if (Mp % 16 || ldat < Mp || ldct < Mp)
        return sd_err(err, SD_EINTERNAL, "ops_gemm_few: %d rows (a multiple of 16 needed) in strides %d, %d", Mp,
                      ldat, ldct);
    if (Mp <= 0 || N <= 0) return 0;
    if (Mp <= WIDE_MAX_ROWS) return few_run_wide(ct, ldct, at, ldat, w, t, Mp, N, K, ctx, err);
    int threads = ops_get_threads(), nv = Mp / 16;
    int MV = nv < 4 ? nv : 4, NR = OP_ACC / MV; /* 16 rows: 24 x 1, 32: 12 x 2, 48: 8 x 3, 64 and up: 6 x 4 */
    ops_mark mark = ops_arena_mark(&ctx->scratch);
    float *wf_all = ops_arena_floats(&ctx->scratch, (size_t)OP_ACC * OP_KC * threads, err);
    if (!wf_all) return err ? err->code : SD_ENOMEM;
    int n_tiles = (N + NR - 1) / NR, m_blocks = (nv + MV - 1) / MV;
#pragma omp parallel num_threads(threads)
    {
        float *wf = wf_all + (size_t)OP_ACC * OP_KC * omp_get_thread_num();
        float part[OP_ACC * 64]; /* the last tile's rows when N is not a multiple of NR */
        memset(part, 0, sizeof part); /* its rows past N are loaded, computed and dropped */
        for (int k0 = 0; k0 < K; k0 += OP_KC) {
            int kc = K - k0 < OP_KC ? K - k0 : OP_KC;
#pragma omp for schedule(static)
            for (int tn = 0; tn < n_tiles; tn++) {
                int n0 = tn * NR, nr = N - n0 < NR ? N - n0 : NR;
                few_widen_rows(wf, w, t, K, n0, nr, NR, k0, kc);
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
