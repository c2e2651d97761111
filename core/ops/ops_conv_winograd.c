/*
 * ops_conv_winograd.c - stride-1 3x3 convolutions by Winograd's minimal
 * filtering F(2x2, 3x3), or F(4x4, 3x3) where ctx->wino_tile is 4 (the VAE).
 *
 * A direct 3x3 convolution spends 9 multiply-adds per input channel on each
 * output pixel; F(2x2, 3x3) spends 16 per 2x2 output tile (4 per pixel) on
 * transformed data, in 16 independent GEMMs:
 *
 *   U[xi] = (G g G^T)[xi]   filters g = w[o][c] (3x3) -> [16][out_ch][in_ch]
 *   V[xi] = (B^T d B)[xi]   4x4 input tiles d (overlapping by 2, stride 2)
 *                           -> [16][in_ch][tiles]
 *   M[xi] = U[xi] V[xi]     16 GEMMs [out_ch, in_ch] x [in_ch, tiles]
 *   y     = A^T M A         the 2x2 output tile, then bias / add / residual
 *
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *   A^T = [1 1 1 0; 0 1 -1 -1]
 *
 * F(4x4, 3x3) (Lavin and Gray's points 0, +-1, +-2): 6x6 input tiles
 * overlapping by 2 (stride 4), 36 GEMMs, 36 multiply-adds per 16 outputs
 * (2.25 per pixel, 1.8x fewer than F(2x2)):
 *
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0;
 *          0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6;
 *          1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 *
 * The GEMMs: ops_gemm (oneDNN's sgemm, or its bf16 matmul in bf16) in builds
 * with oneDNN. Builds with AVX-512 but without oneDNN (DNNL=0) use a
 * register-tiled kernel (6 x 64 outputs) that reads U and V where the
 * transforms wrote them: OpenBLAS would pack both for every call, and at 8x8
 * and 16x16 its sgemm reached 60-75 GFLOP/s per core on these shapes, the
 * kernel 85-95. oneDNN beats that kernel on every shape of SD 1.5 (measured
 * with both on 2 threads, one convolution, huge pages: 320 ch at 64x64
 * 16.3 -> 12.8 ms, 640 at 32x32 19.0 -> 12.8, 1280 at 16x16 23.2 -> 19.7,
 * 1280 at 8x8 15.2 -> 12.9, 128 at 512x512 161 -> 133, 512 at 128x128
 * 121 -> 112). Builds without either: OpenBLAS's sgemm through ops_gemm.
 *
 * The transforms are separable (rows, then columns) and vectorized over the
 * tiles of a row. Input tiles are read from rows gathered one channel at a
 * time with zero padding, nearest upsampling, GroupNorm affine and SiLU fused
 * (conv_gather_padded, shared with the taps route); a row is split into
 * planes of every m-th value before its transform, and output rows are
 * joined from planes (planes_split, planes_join), so that no loop reads or
 * writes with a stride: 128 channels at 512x512 on 2 threads, F(2x2)
 * 133 -> 127 ms, F(4x4) 85 -> 79 ms (the same bits).
 *
 * Two ways to cut the work, both planned for ops_plan_threads() threads only,
 * so no sum depends on --threads:
 *   strips (large images, the VAE decoder): U of all filters first; then
 *     items (image, strip of tile rows, chunk of output channels) each
 *     transform their strip into V, multiply, and write their output rows.
 *   shared (small images, the U-Net: V of the whole batch <= 48 MB): all
 *     threads first transform the whole batch into one V; then items (block
 *     of output channels, strip of ~512 tiles across the batch's tile rows)
 *     transform their block of filters into a U that stays in cache (a thread
 *     keeps it for its next item of the same block) and multiply it by their
 *     strip of V. All filters first would write and re-read 16/9 x the
 *     float32 weights through memory, which at 16x16 costs as much as the
 *     GEMMs save; and a GEMM per image would have only 16-64 columns there.
 * The 16 (36) planes of U, V and M are a cache line more than a power of
 * two apart, so they do not all map to the same cache sets.
 *
 * Precision: every F(2x2) coefficient is 0, +-1 or +-1/2, so each
 * transformed value is a sum of at most 4 (inputs, outputs) or 9 (filters)
 * terms with few roundings; measured against a float64 convolution it is as
 * close as the im2col route (tests/test_ops.c). F(4x4)'s coefficients reach
 * 5 (inputs) and 8 (outputs): 10-30x F(2x2)'s error against float64
 * (1e-5..2e-4 relative, more with more channels), over the U-Net's golden
 * tolerances, so the U-Net keeps F(2x2). In the VAE decoder it measured
 * 2.0e-5 from the reference's golden decodes (F(2x2) 9.2e-6, tolerance 1e-4),
 * and it changes 40 of 196,608 values of a 256x256 picture of full-size SD
 * 1.5 (random weights) by 1 level (128 channels at 512x512 on 2 threads:
 * 127 -> 79 ms). In bf16 the transformed values are rounded before their
 * products, and F(4x4)'s wider ones cost the golden pipelines 4-6 dB of
 * PSNR: bf16 always takes F(2x2).
 */
#include <omp.h>
#include <string.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(__AVX512F__) && !defined(SD_HAVE_DNNL)
#define WINO_OWN_KERNEL 1 /* the register-tiled kernel below (see the header) */
#include <immintrin.h>
#else
#define WINO_OWN_KERNEL 0
#endif

#include "ops_conv_impl.h"

#define WINO_MIN_IN 32                          /* fewer input or output channels: the GEMM routes */
/* 2x2 tiles per image, at least; fewer (8x8 and below): the GEMM routes. Measured on 2 threads, batch 2,
 * 1280 channels: 8x8 Winograd 14.3-15.3 ms, GEMM 11.3-13.4; 10x10 21.3-21.8 / 20.5-20.9; 12x12
 * 24.2-25.9 / 33.4-36.2 */
#define WINO_MIN_TILES 25
#define WINO_STRIP_V_BYTES ((size_t)8 << 20)    /* strips: transformed input of one strip, per thread */
#define WINO_STRIP_MIN_TILES 64                 /* strips: GEMM columns per strip, at least */
#define WINO_SHARED_V_BYTES ((size_t)48 << 20)  /* shared: the one V of the whole batch, at most */
#define WINO_SHARED_U_BYTES ((size_t)8 << 20)   /* shared: a block of U, per thread */
#define WINO_SHARED_STRIP_TILES 512             /* shared: GEMM columns per item, about */
#define WINO_SHARED_CH 16                       /* shared: input channels per input-transform unit */

static size_t shared_v_bytes = WINO_SHARED_V_BYTES;

void conv_winograd_set_shared_limit(size_t bytes) { shared_v_bytes = bytes ? bytes : WINO_SHARED_V_BYTES; }

int conv_winograd_pick(const ops_conv_desc *d, int oh, int ow, ops_conv_kernel kernel) {
    if (d->k_h != 3 || d->k_w != 3 || d->stride != 1 || oh < 1 || ow < 1 || kernel == OPS_CONV_GEMM) return 0;
    if (kernel == OPS_CONV_WINOGRAD) return 1;
    return d->in_ch >= WINO_MIN_IN && d->out_ch >= WINO_MIN_IN && ((oh + 1) / 2) * ((ow + 1) / 2) >= WINO_MIN_TILES;
}

/* Geometry shared by the work items of one call. */
typedef struct wino_plan {
    const ops_conv_desc *d;
    int m, a, np;             /* output tile m x m, input tile a x a (a = m + 2), np = a * a planes */
    int ih, iw, oh, ow;       /* (virtual, upsampled) input and output size */
    int tx_n, ty_n;           /* tiles per row and per column */
    int wp;                   /* gathered row length: m * tx_n + 2 */
    size_t ldp;               /* floats from one plane of a split row to the next (tx_n + 1, rounded up) */
    int shared;               /* the shared way (else strips) */
    int strip_ty;             /* tile rows per strip (shared: ty_n) */
    int n_strips, mchunk, n_mchunks;
    size_t ldv, ldm;          /* tiles per row of V (strip or whole batch) and of M (strip) */
    size_t vxs, mxs, uxs;     /* floats from V[xi], M[xi], U[xi] to the next: padded by a cache line so the
                                 np planes do not fall on the same cache sets at power-of-two sizes */
    size_t rows_floats, h_floats, v_floats, u_floats, mb_floats, s_floats, y_floats, pl_floats; /* per thread */
    int bf16;                 /* ctx in bf16: U and V also rounded once into bf16 copies (Uh, Vh) */
} wino_plan;

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

/* ---- 1-D transforms, vectorized over n tiles ----------------------------- */

/* F(2x2, 3x3): out[j * js + i] = sum_k BT[j][k] in[k][i], j < 4. */
static inline __attribute__((always_inline)) void bt_1d(const float *i0, const float *i1, const float *i2,
                                                        const float *i3, float *out, ptrdiff_t js, int n) {
    float *o0 = out, *o1 = out + js, *o2 = out + 2 * js, *o3 = out + 3 * js;
#pragma omp simd
    for (int i = 0; i < n; i++) {
        float d0 = i0[i], d1 = i1[i], d2 = i2[i], d3 = i3[i];
        o0[i] = d0 - d2;
        o1[i] = d1 + d2;
        o2[i] = d2 - d1;
        o3[i] = d1 - d3;
    }
}

/* F(2x2, 3x3): out[j * js + i] = sum_k AT[j][k] in[k * ks + i], j < 2. */
static inline __attribute__((always_inline)) void at_1d(const float *in, ptrdiff_t ks, float *out, ptrdiff_t js,
                                                        int n) {
    const float *i0 = in, *i1 = in + ks, *i2 = in + 2 * ks, *i3 = in + 3 * ks;
#pragma omp simd
    for (int i = 0; i < n; i++) {
        float m0 = i0[i], m1 = i1[i], m2 = i2[i], m3 = i3[i];
        out[i] = (m0 + m1) + m2;
        out[i + js] = (m1 - m2) - m3;
    }
}

/* F(4x4, 3x3): out[j * js + i] = sum_k BT[j][k] in[k][i], j < 6 (B^T of the header). */
static inline __attribute__((always_inline)) void bt6_1d(const float *i0, const float *i1, const float *i2,
                                                         const float *i3, const float *i4, const float *i5,
                                                         float *out, ptrdiff_t js, int n) {
    float *o0 = out, *o1 = out + js, *o2 = out + 2 * js, *o3 = out + 3 * js, *o4 = out + 4 * js, *o5 = out + 5 * js;
#pragma omp simd
    for (int i = 0; i < n; i++) {
        float d0 = i0[i], d1 = i1[i], d2 = i2[i], d3 = i3[i], d4 = i4[i], d5 = i5[i];
        float t1 = d4 - 4.0f * d2, t2 = d3 - 4.0f * d1, t3 = d4 - d2, t4 = 2.0f * (d3 - d1);
        o0[i] = (4.0f * d0 - 5.0f * d2) + d4;
        o1[i] = t1 + t2;
        o2[i] = t1 - t2;
        o3[i] = t3 + t4;
        o4[i] = t3 - t4;
        o5[i] = (4.0f * d1 - 5.0f * d3) + d5;
    }
}

/* F(4x4, 3x3): out[j * js + i] = sum_k AT[j][k] in[k * ks + i], j < 4. */
static inline __attribute__((always_inline)) void at6_1d(const float *in, ptrdiff_t ks, float *out, ptrdiff_t js,
                                                         int n) {
    const float *i0 = in, *i1 = in + ks, *i2 = in + 2 * ks, *i3 = in + 3 * ks, *i4 = in + 4 * ks, *i5 = in + 5 * ks;
#pragma omp simd
    for (int i = 0; i < n; i++) {
        float m0 = i0[i], m1 = i1[i], m2 = i2[i], m3 = i3[i], m4 = i4[i], m5 = i5[i];
        float sa = m1 + m2, da = m1 - m2, sb = m3 + m4, db = m3 - m4;
        out[i] = (m0 + sa) + sb;
        out[i + js] = da + 2.0f * db;
        out[i + 2 * js] = sa + 4.0f * sb;
        out[i + 3 * js] = (da + 8.0f * db) + m5;
    }
}

/*
 * The transforms run over the tiles of a row, whose k-th values lie m
 * floats apart in the image row: read in place, that is a strided access
 * the compiler does element by element (most of the transforms' time).
 * So a row is first split into m planes, pl[k * ldp + t] = row[m * t + k]
 * (t <= n; a tile's values k >= m are plane k - m one tile on), and the
 * output rows are put back together from m planes the same way. AVX-512:
 * 4x4 transposes of 16 tiles at a time; AVX2: of 8; elsewhere plain loops.
 */
static void planes_split(const float *row, int len, int m, float *pl, size_t ldp, int n) {
    int t = 0;
#if defined(__AVX512F__)
    if (m == 4) {
        for (; 64 * (t / 16 + 1) <= len && t + 16 <= n; t += 16) {
            const float *r = row + 4 * t;
            __m512 v0 = _mm512_loadu_ps(r), v1 = _mm512_loadu_ps(r + 16), v2 = _mm512_loadu_ps(r + 32),
                   v3 = _mm512_loadu_ps(r + 48);
            /* 128-bit lanes: u_q = (v0.q, v1.q, v2.q, v3.q), lane L of u_q holding tile 4 L + q */
            __m512 w0 = _mm512_shuffle_f32x4(v0, v1, 0x44), w1 = _mm512_shuffle_f32x4(v2, v3, 0x44);
            __m512 w2 = _mm512_shuffle_f32x4(v0, v1, 0xEE), w3 = _mm512_shuffle_f32x4(v2, v3, 0xEE);
            __m512 u0 = _mm512_shuffle_f32x4(w0, w1, 0x88), u1 = _mm512_shuffle_f32x4(w0, w1, 0xDD);
            __m512 u2 = _mm512_shuffle_f32x4(w2, w3, 0x88), u3 = _mm512_shuffle_f32x4(w2, w3, 0xDD);
            /* a 4x4 transpose in each lane */
            __m512 t0 = _mm512_unpacklo_ps(u0, u1), t1 = _mm512_unpackhi_ps(u0, u1);
            __m512 t2 = _mm512_unpacklo_ps(u2, u3), t3 = _mm512_unpackhi_ps(u2, u3);
            _mm512_storeu_ps(pl + t, _mm512_shuffle_ps(t0, t2, 0x44));
            _mm512_storeu_ps(pl + ldp + t, _mm512_shuffle_ps(t0, t2, 0xEE));
            _mm512_storeu_ps(pl + 2 * ldp + t, _mm512_shuffle_ps(t1, t3, 0x44));
            _mm512_storeu_ps(pl + 3 * ldp + t, _mm512_shuffle_ps(t1, t3, 0xEE));
        }
    } else {
        const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
        for (; 32 * (t / 16 + 1) <= len && t + 16 <= n; t += 16) {
            __m512 v0 = _mm512_loadu_ps(row + 2 * t), v1 = _mm512_loadu_ps(row + 2 * t + 16);
            _mm512_storeu_ps(pl + t, _mm512_permutex2var_ps(v0, even, v1));
            _mm512_storeu_ps(pl + ldp + t, _mm512_permutex2var_ps(v0, odd, v1));
        }
    }
#elif defined(__AVX2__)
    if (m == 4) { /* 8 tiles: each 128-bit lane of v holds one tile's 4 values */
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (; 4 * (t + 8) <= len && t + 8 <= n; t += 8) {
            const float *r = row + 4 * t;
            __m256 v0 = _mm256_loadu_ps(r), v1 = _mm256_loadu_ps(r + 8), v2 = _mm256_loadu_ps(r + 16),
                   v3 = _mm256_loadu_ps(r + 24);
            /* a 4x4 transpose in each lane: u_k = value k of tiles (0, 2, 4, 6 | 1, 3, 5, 7) */
            __m256 t0 = _mm256_unpacklo_ps(v0, v1), t1 = _mm256_unpackhi_ps(v0, v1);
            __m256 t2 = _mm256_unpacklo_ps(v2, v3), t3 = _mm256_unpackhi_ps(v2, v3);
            _mm256_storeu_ps(pl + t, _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, 0x44), order));
            _mm256_storeu_ps(pl + ldp + t, _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, 0xEE), order));
            _mm256_storeu_ps(pl + 2 * ldp + t, _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, 0x44), order));
            _mm256_storeu_ps(pl + 3 * ldp + t, _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, 0xEE), order));
        }
    } else {
        for (; 2 * (t + 8) <= len && t + 8 <= n; t += 8) {
            __m256 v0 = _mm256_loadu_ps(row + 2 * t), v1 = _mm256_loadu_ps(row + 2 * t + 8);
            /* even values: lanes hold tiles (0, 1, 4, 5 | 2, 3, 6, 7); the 64-bit pairs put back in order */
            __m256 e = _mm256_shuffle_ps(v0, v1, 0x88), o = _mm256_shuffle_ps(v0, v1, 0xDD);
            _mm256_storeu_ps(pl + t, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8)));
            _mm256_storeu_ps(pl + ldp + t, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xD8)));
        }
    }
#endif
    for (; t <= n; t++)
        for (int k = 0; k < m && m * t + k < len; k++) pl[k * ldp + t] = row[m * t + k];
}

/* row[m * t + k] = pl[k * ldp + t] for t < n, k < m. */
static void planes_join(float *row, int m, const float *pl, size_t ldp, int n) {
    int t = 0;
#if defined(__AVX512F__)
    if (m == 4) {
        for (; t + 16 <= n; t += 16) {
            __m512 a0 = _mm512_loadu_ps(pl + t), a1 = _mm512_loadu_ps(pl + ldp + t);
            __m512 a2 = _mm512_loadu_ps(pl + 2 * ldp + t), a3 = _mm512_loadu_ps(pl + 3 * ldp + t);
            /* a 4x4 transpose in each lane: u_q lane L = tile 4 L + q */
            __m512 t0 = _mm512_unpacklo_ps(a0, a1), t1 = _mm512_unpackhi_ps(a0, a1);
            __m512 t2 = _mm512_unpacklo_ps(a2, a3), t3 = _mm512_unpackhi_ps(a2, a3);
            __m512 u0 = _mm512_shuffle_ps(t0, t2, 0x44), u1 = _mm512_shuffle_ps(t0, t2, 0xEE);
            __m512 u2 = _mm512_shuffle_ps(t1, t3, 0x44), u3 = _mm512_shuffle_ps(t1, t3, 0xEE);
            /* then the lanes: output vector v = (u0.v, u1.v, u2.v, u3.v) */
            __m512 w0 = _mm512_shuffle_f32x4(u0, u1, 0x44), w1 = _mm512_shuffle_f32x4(u2, u3, 0x44);
            __m512 w2 = _mm512_shuffle_f32x4(u0, u1, 0xEE), w3 = _mm512_shuffle_f32x4(u2, u3, 0xEE);
            float *r = row + 4 * t;
            _mm512_storeu_ps(r, _mm512_shuffle_f32x4(w0, w1, 0x88));
            _mm512_storeu_ps(r + 16, _mm512_shuffle_f32x4(w0, w1, 0xDD));
            _mm512_storeu_ps(r + 32, _mm512_shuffle_f32x4(w2, w3, 0x88));
            _mm512_storeu_ps(r + 48, _mm512_shuffle_f32x4(w2, w3, 0xDD));
        }
    } else {
        const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
        for (; t + 16 <= n; t += 16) {
            __m512 a0 = _mm512_loadu_ps(pl + t), a1 = _mm512_loadu_ps(pl + ldp + t);
            _mm512_storeu_ps(row + 2 * t, _mm512_permutex2var_ps(a0, lo, a1));
            _mm512_storeu_ps(row + 2 * t + 16, _mm512_permutex2var_ps(a0, hi, a1));
        }
    }
#elif defined(__AVX2__)
    if (m == 4) { /* 8 tiles: planes_split's steps backwards */
        const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
        for (; t + 8 <= n; t += 8) {
            /* u_k = value k of tiles (0, 2, 4, 6 | 1, 3, 5, 7), then a 4x4 transpose in each lane */
            __m256 u0 = _mm256_permutevar8x32_ps(_mm256_loadu_ps(pl + t), order);
            __m256 u1 = _mm256_permutevar8x32_ps(_mm256_loadu_ps(pl + ldp + t), order);
            __m256 u2 = _mm256_permutevar8x32_ps(_mm256_loadu_ps(pl + 2 * ldp + t), order);
            __m256 u3 = _mm256_permutevar8x32_ps(_mm256_loadu_ps(pl + 3 * ldp + t), order);
            __m256 t0 = _mm256_unpacklo_ps(u0, u1), t1 = _mm256_unpackhi_ps(u0, u1);
            __m256 t2 = _mm256_unpacklo_ps(u2, u3), t3 = _mm256_unpackhi_ps(u2, u3);
            float *r = row + 4 * t;
            _mm256_storeu_ps(r, _mm256_shuffle_ps(t0, t2, 0x44));
            _mm256_storeu_ps(r + 8, _mm256_shuffle_ps(t0, t2, 0xEE));
            _mm256_storeu_ps(r + 16, _mm256_shuffle_ps(t1, t3, 0x44));
            _mm256_storeu_ps(r + 24, _mm256_shuffle_ps(t1, t3, 0xEE));
        }
    } else {
        for (; t + 8 <= n; t += 8) {
            __m256 e = _mm256_loadu_ps(pl + t), o = _mm256_loadu_ps(pl + ldp + t);
            __m256 lo = _mm256_unpacklo_ps(e, o), hi = _mm256_unpackhi_ps(e, o);
            _mm256_storeu_ps(row + 2 * t, _mm256_permute2f128_ps(lo, hi, 0x20));
            _mm256_storeu_ps(row + 2 * t + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
        }
    }
#endif
    for (; t < n; t++)
        for (int k = 0; k < m; k++) row[m * t + k] = pl[k * ldp + t];
}

/* ---- filters ---------------------------------------------------------- */

/* The 9 * in_ch float32 weights of output channel o: a view of an aligned F32 weight, else converted into
 * wrow. */
static const float *filter_f32(const ops_conv_desc *d, int o, float *wrow) {
    size_t row = (size_t)d->in_ch * 9;
    const float *view = sd_tensor_f32_view(d->weight);
    if (view) return view + (size_t)o * row;
    size_t at = (size_t)o * row * sd_dtype_size(d->weight->dtype);
    sd_dtype_convert_to_f32(wrow, (const unsigned char *)d->weight->data + at, d->weight->dtype, row);
    return wrow;
}

/*
 * F(4x4, 3x3): U[xi * xs + o * os + c] = (G g G^T)[xi], xi < 36, with G of
 * the header. G's sixths and twenty-fourths are not exact in binary: the
 * sums run in double, so each U value is rounded once.
 */
static void transform_filters6(const ops_conv_desc *d, int o0, int on, float *U, size_t xs, size_t os,
                              float *wrow) {
    int C = d->in_ch;
    for (int o = 0; o < on; o++) {
        const float *w = filter_f32(d, o0 + o, wrow);
        float *uo = U + (size_t)o * os;
        for (int c = 0; c < C; c++) {
            const float *g = w + (size_t)c * 9;
            double t[3][6]; /* along each kernel row r: t[r][j] = sum_s G[j][s] g[r][s] */
            for (int r = 0; r < 3; r++) {
                double a = g[3 * r], b = g[3 * r + 1], e = g[3 * r + 2];
                t[r][0] = a / 4;
                t[r][1] = -(a + b + e) / 6;
                t[r][2] = -(a - b + e) / 6;
                t[r][3] = (a + 2 * b + 4 * e) / 24;
                t[r][4] = (a - 2 * b + 4 * e) / 24;
                t[r][5] = e;
            }
            for (int j = 0; j < 6; j++) { /* down each column j: U[i * 6 + j] = sum_r G[i][r] t[r][j] */
                double a = t[0][j], b = t[1][j], e = t[2][j];
                float *u = uo + (size_t)j * xs + c;
                u[0] = (float)(a / 4);
                u[6 * xs] = (float)(-(a + b + e) / 6);
                u[12 * xs] = (float)(-(a - b + e) / 6);
                u[18 * xs] = (float)((a + 2 * b + 4 * e) / 24);
                u[24 * xs] = (float)((a - 2 * b + 4 * e) / 24);
                u[30 * xs] = (float)e;
            }
        }
    }
}

/*
 * U[xi * xs + o * os + c] = (G g G^T)[xi], xi < 16 (m = 4: 36, by
 * transform_filters6), for the filters g = w[o0 + o][c] of output channels
 * o < on; wrow: per-thread room for one widened row (9 * in_ch floats)
 * unless the weight is aligned F32.
 */
static void transform_filters(const ops_conv_desc *d, int m, int o0, int on, float *U, size_t xs, size_t os,
                              float *wrow) {
    if (m == 4) {
        transform_filters6(d, o0, on, U, xs, os, wrow);
        return;
    }
    int C = d->in_ch;
    for (int o = 0; o < on; o++) {
        const float *w = filter_f32(d, o0 + o, wrow);
        float *uo = U + (size_t)o * os;
        for (int c0 = 0; c0 < C; c0 += 16) {
            int n = C - c0 < 16 ? C - c0 : 16;
            float g[9][16], t[3][4][16];
            for (int c = 0; c < n; c++)
                for (int k = 0; k < 9; k++) g[k][c] = w[(size_t)(c0 + c) * 9 + k];
            /* along each kernel row r: t[r][j] = sum_s G[j][s] g[r][s] */
            for (int r = 0; r < 3; r++) {
#pragma omp simd
                for (int c = 0; c < n; c++) {
                    float a = g[3 * r][c], b = g[3 * r + 1][c], e = g[3 * r + 2][c], s = a + e;
                    t[r][0][c] = a;
                    t[r][1][c] = 0.5f * (s + b);
                    t[r][2][c] = 0.5f * (s - b);
                    t[r][3][c] = e;
                }
            }
            /* down each column j: U[i * 4 + j] = sum_r G[i][r] t[r][j] */
            for (int j = 0; j < 4; j++) {
                float *u0 = uo + (size_t)j * xs + c0, *u1 = u0 + 4 * xs, *u2 = u0 + 8 * xs, *u3 = u0 + 12 * xs;
#pragma omp simd
                for (int c = 0; c < n; c++) {
                    float a = t[0][j][c], b = t[1][j][c], e = t[2][j][c], s = a + e;
                    u0[c] = a;
                    u1[c] = 0.5f * (s + b);
                    u2[c] = 0.5f * (s - b);
                    u3[c] = e;
                }
            }
        }
    }
}

/* ---- inputs and outputs ------------------------------------------------- */

/*
 * V[(xi * in_ch + c) * ldv + ty * tx_n + tx] for channels [c0, c1) and tile
 * rows [ty0, ty0 + nty) of image b; rows: [m * nty + 2][wp], hb:
 * [m * nty + 2][a][tx_n], pl: [m][ldp] per-thread scratch.
 */
static void transform_input(const wino_plan *p, float *V, size_t ldv, float *rows, float *hb, float *pl,
                            const float *xb, int b, int ty0, int nty, int c0, int c1) {
    const ops_conv_desc *d = p->d;
    int tx_n = p->tx_n, wp = p->wp, m = p->m, A = p->a, nr = m * nty + 2;
    size_t hrow = (size_t)A * tx_n, xs = p->vxs, ldp = p->ldp;
    const float *q0 = pl, *q1 = pl + ldp, *q2 = pl + 2 * ldp, *q3 = pl + 3 * ldp;
    for (int c = c0; c < c1; c++) {
        conv_gather_padded(d, p->ih, p->iw, rows, xb, b, c, c + 1, m * ty0 - d->pad_t, nr, wp);
        /* along each row, split into planes: hb[r][j][tx] */
        for (int r = 0; r < nr; r++) {
            planes_split(rows + (size_t)r * wp, wp, m, pl, ldp, tx_n);
            if (m == 4)
                bt6_1d(q0, q1, q2, q3, q0 + 1, q1 + 1, hb + r * hrow, tx_n, tx_n);
            else
                bt_1d(q0, q1, q0 + 1, q1 + 1, hb + r * hrow, tx_n, tx_n);
        }
        /* down each column of tiles: V[i * a + j] */
        for (int ty = 0; ty < nty; ty++)
            for (int j = 0; j < A; j++) {
                const float *h = hb + (size_t)m * ty * hrow + (size_t)j * tx_n;
                float *dst = V + (size_t)j * xs + (size_t)c * ldv + (size_t)ty * tx_n;
                if (m == 4)
                    bt6_1d(h, h + hrow, h + 2 * hrow, h + 3 * hrow, h + 4 * hrow, h + 5 * hrow, dst,
                           (ptrdiff_t)(6 * xs), tx_n);
                else
                    bt_1d(h, h + hrow, h + 2 * hrow, h + 3 * hrow, dst, (ptrdiff_t)(4 * xs), tx_n);
            }
    }
}

/*
 * Output channels [m0, m0 + mm), tile rows [ty0, ty0 + nty) of image b from
 * Mb[(xi * mm + o - m0) * ldm + ty * tx_n + tx], with bias, per-channel add,
 * residual and accumulation; s: [m][a][tx_n], y: [m][m * tx_n], pl: [m][ldp]
 * scratch.
 */
static void transform_output(const wino_plan *p, float *out, const float *Mb, size_t ldm, float *s, float *y,
                             float *pl, const float *bias, int b, int m0, int mm, int ty0, int nty) {
    const ops_conv_desc *d = p->d;
    int tx_n = p->tx_n, ow = p->ow, m = p->m, A = p->a, ylen = m * tx_n;
    size_t xs = p->mxs;
    for (int ml = 0; ml < mm; ml++) {
        int o = m0 + ml;
        float add = (bias ? bias[o] : 0.0f) + (d->chan_add ? d->chan_add[(size_t)b * d->out_ch + o] : 0.0f);
        for (int ty = 0; ty < nty; ty++) {
            /* down the columns: s[i][j][tx] = sum_k AT[i][k] M[k * a + j] */
            for (int j = 0; j < A; j++) {
                const float *src = Mb + (size_t)j * xs + (size_t)ml * ldm + (size_t)ty * tx_n;
                if (m == 4)
                    at6_1d(src, (ptrdiff_t)(6 * xs), s + (size_t)j * tx_n, (ptrdiff_t)6 * tx_n, tx_n);
                else
                    at_1d(src, (ptrdiff_t)(4 * xs), s + (size_t)j * tx_n, (ptrdiff_t)4 * tx_n, tx_n);
            }
            /* along the rows, into planes joined to y[i][m * tx + j] */
            for (int i = 0; i < m; i++) {
                if (m == 4)
                    at6_1d(s + (size_t)i * 6 * tx_n, tx_n, pl, (ptrdiff_t)p->ldp, tx_n);
                else
                    at_1d(s + (size_t)i * 4 * tx_n, tx_n, pl, (ptrdiff_t)p->ldp, tx_n);
                planes_join(y + (size_t)i * ylen, m, pl, p->ldp, tx_n);
            }
            for (int i = 0; i < m; i++) {
                int oy = m * (ty0 + ty) + i;
                if (oy >= p->oh) break;
                size_t off = ((size_t)b * d->out_ch + o) * p->oh * ow + (size_t)oy * ow;
                conv_store_row(out + off, y + (size_t)i * ylen, d->residual ? d->residual + off : NULL, add, ow,
                               d->accumulate);
            }
        }
    }
}

/* ---- planning --------------------------------------------------------- */

static void plan_winograd(wino_plan *p, const ops_conv_desc *d, int m, int threads) {
    memset(p, 0, sizeof *p);
    p->d = d;
    p->m = m == 4 ? 4 : 2;
    p->a = p->m + 2;
    p->np = p->a * p->a;
    const size_t np = (size_t)p->np;
    p->ih = d->up_h > 0 ? d->up_h : d->in_h;
    p->iw = d->up_w > 0 ? d->up_w : d->in_w;
    ops_conv2d_out_size(d, &p->oh, &p->ow);
    p->tx_n = (p->ow + p->m - 1) / p->m;
    p->ty_n = (p->oh + p->m - 1) / p->m;
    p->wp = p->m * p->tx_n + 2;
    p->ldp = round16((size_t)p->tx_n + 1);
    int C = d->in_ch, M = d->out_ch;
    size_t t_img = (size_t)p->tx_n * p->ty_n, t_all = t_img * d->batch;
    p->shared = np * C * t_all * sizeof(float) <= shared_v_bytes;
    if (p->shared) {
        /*
         * strips of about WINO_SHARED_STRIP_TILES tiles over the tile rows of all images in a row
         * (small images share a strip); blocks of output channels whose U fits the budget
         */
        int rows = (WINO_SHARED_STRIP_TILES + p->tx_n - 1) / p->tx_n, g_rows = d->batch * p->ty_n;
        p->strip_ty = rows < g_rows ? rows : g_rows;
        p->n_strips = (g_rows + p->strip_ty - 1) / p->strip_ty;
        long items = p->n_strips;
        int mb = (int)(WINO_SHARED_U_BYTES / (np * C * sizeof(float))) & ~15;
        if (mb < 16) mb = 16;
        if (mb > M) mb = M;
        while (items * ((M + mb - 1) / mb) < threads && mb >= 64) mb = ((mb / 2) + 15) & ~15;
        p->mchunk = mb;
        p->ldv = conv_row_stride(t_all);
    } else {
        size_t per_ty = np * C * p->tx_n * sizeof(float);
        int rows = (int)(WINO_STRIP_V_BYTES / per_ty);
        int min_rows = (WINO_STRIP_MIN_TILES + p->tx_n - 1) / p->tx_n;
        if (rows < min_rows) rows = min_rows;
        if (rows > p->ty_n) rows = p->ty_n;
        while (rows > min_rows && (long)d->batch * ((p->ty_n + rows - 1) / rows) < 2L * threads) rows = (rows + 1) / 2;
        p->strip_ty = rows;
        p->n_strips = (p->ty_n + rows - 1) / rows;
        long items = (long)d->batch * p->n_strips;
        int mchunk = M;
        while (items * ((M + mchunk - 1) / mchunk) < 2L * threads && mchunk >= 128)
            mchunk = ((mchunk / 2) + 15) & ~15;
        p->mchunk = mchunk;
        p->ldv = conv_row_stride((size_t)rows * p->tx_n);
    }
    p->n_mchunks = (M + p->mchunk - 1) / p->mchunk;
    p->ldm = conv_row_stride((size_t)p->strip_ty * p->tx_n);
    int nr = p->m * (p->shared ? p->ty_n : p->strip_ty) + 2; /* the shared way transforms whole images */
    p->rows_floats = (size_t)nr * p->wp;
    p->h_floats = (size_t)nr * p->a * p->tx_n;
    p->vxs = round16((size_t)C * p->ldv) + 16;
    p->mxs = round16((size_t)p->mchunk * p->ldm) + 16;
    p->uxs = round16((size_t)(p->shared ? p->mchunk : M) * C) + 16;
    p->v_floats = p->shared ? 0 : np * p->vxs;
    p->u_floats = p->shared ? np * p->uxs : 0;
    p->mb_floats = np * p->mxs;
    p->s_floats = (size_t)p->m * p->a * p->tx_n;
    p->y_floats = (size_t)p->m * p->m * p->tx_n;
    p->pl_floats = (size_t)p->m * p->ldp;
}

/* ---- the route -------------------------------------------------------- */

/* Per-thread buffers carved from one 64-byte aligned block; in bf16 only: Vh, one plane of V (strips),
 * Uh, the bf16 copy of U (shared). */
typedef struct wino_bufs {
    float *rows, *hb, *V, *U, *Mb, *s, *y, *pl, *wrow;
    uint16_t *Vh, *Uh;
} wino_bufs;

/* Floats that hold n bf16 values, rounded up to a cache line. */
static size_t half_floats(size_t n) { return round16((n + 1) / 2); }

static size_t bufs_floats(const wino_plan *p) {
    return round16(p->rows_floats) + round16(p->h_floats) + round16(p->v_floats) + round16(p->u_floats) +
           round16(p->mb_floats) + round16(p->s_floats) + round16(p->y_floats) + round16(p->pl_floats) +
           round16((size_t)9 * p->d->in_ch) +
           (p->bf16 ? half_floats(p->v_floats / (size_t)p->np) + half_floats(p->u_floats) : 0);
}

static wino_bufs bufs_carve(const wino_plan *p, float *w) {
    wino_bufs b;
    b.rows = w;
    b.hb = b.rows + round16(p->rows_floats);
    b.V = b.hb + round16(p->h_floats);
    b.U = b.V + round16(p->v_floats);
    b.Mb = b.U + round16(p->u_floats);
    b.s = b.Mb + round16(p->mb_floats);
    b.y = b.s + round16(p->s_floats);
    b.pl = b.y + round16(p->y_floats);
    b.wrow = b.pl + round16(p->pl_floats);
    float *h = b.wrow + round16((size_t)9 * p->d->in_ch);
    b.Vh = p->bf16 ? (uint16_t *)h : NULL;
    b.Uh = p->bf16 ? (uint16_t *)(h + half_floats(p->v_floats / (size_t)p->np)) : NULL;
    return b;
}

/*
 * bf16: Mb[xi] = Uh[xi] Vh[xi] on U rounded once (Uh, laid out as U) instead of ops_gemm rounding
 * it for each of its calls (a block of U serves every strip; the strips way's U every image and
 * strip). V: rounded once too (Vh, laid out as V: the shared way's V serves every block of
 * filters), or, when Vh is NULL, each plane of V just before its product into vbuf ([in_ch, T]),
 * while it is in cache (the strips way's V serves one product per plane). 0, or -1 when that
 * product is not available (the caller multiplies U and V then).
 */
static int multiply_rounded(const wino_plan *p, float *Mb, size_t ldm, const uint16_t *Uh, size_t u_xs,
                            const uint16_t *Vh, const float *V, uint16_t *vbuf, size_t ldv, int mm, int T) {
    int C = p->d->in_ch;
    if (!Uh || (!Vh && !vbuf) || mm < 16 || T < 16) return -1; /* ops_gemm pads smaller products */
    for (int xi = 0; xi < p->np; xi++) {
        const uint16_t *vh = Vh ? Vh + (size_t)xi * p->vxs : vbuf;
        if (!Vh)
            for (int c = 0; c < C; c++)
                ops_round_bf16(vbuf + (size_t)c * T, V + (size_t)xi * p->vxs + (size_t)c * ldv, (size_t)T);
        if (ops_gemm_bf16_rounded(0, mm, T, C, 1.0f, Uh + (size_t)xi * u_xs, C, vh, Vh ? (int)ldv : T, 0.0f,
                                  Mb + (size_t)xi * p->mxs, (int)ldm) < 0)
            return -1;
    }
    return 0;
}

/* dst = bf16(src) for the first n values of each of the np planes (xs apart). */
static void round_planes(uint16_t *dst, const float *src, int np, size_t xs, size_t n) {
    for (int xi = 0; xi < np; xi++) ops_round_bf16(dst + xi * xs, src + xi * xs, n);
}

/* Mb[xi] = U[xi] V[xi]: np ops_gemm calls [mm, in_ch] x [in_ch, T], U rows of in_ch floats, U[xi] u_xs apart:
 * the products in ctx's precision (bf16: oneDNN's bf16 matmul). */
static void multiply_gemm(const wino_plan *p, float *Mb, size_t ldm, const float *U, size_t u_xs, const float *V,
                          size_t ldv, int mm, int T, const ops_ctx *ctx) {
    int C = p->d->in_ch;
    for (int xi = 0; xi < p->np; xi++)
        ops_gemm(ctx, 0, mm, T, C, 1.0f, U + (size_t)xi * u_xs, C, V + (size_t)xi * p->vxs, (int)ldv, 0.0f,
                 Mb + (size_t)xi * p->mxs, (int)ldm);
}

#if WINO_OWN_KERNEL
/*
 * c[r][0..16 NB) (+)= sum_k a[r * lda + k] b[k * ldb + 0..16 NB) for rows
 * r < MR, the q-th 16 columns masked by mk[q]: MR x NB accumulators, B rows
 * read in place (no packing), A elements broadcast. MR and NB are constants
 * at every call, and the loops over them are unrolled so the accumulators
 * stay in registers (GCC keeps a rolled loop's array on the stack: half the
 * speed).
 */
static inline __attribute__((always_inline)) void kern_tile(int MR, int NB, int K, const float *a, size_t lda,
                                                            const float *b, size_t ldb, float *c, size_t ldc,
                                                            const __mmask16 *mk, int add) {
    __m512 acc[8][4];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int q = 0; q < NB; q++)
            acc[r][q] = add ? _mm512_maskz_loadu_ps(mk[q], c + r * ldc + 16 * q) : _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        __m512 bk[4];
#pragma GCC unroll 4
        for (int q = 0; q < NB; q++) bk[q] = _mm512_maskz_loadu_ps(mk[q], b + k * ldb + 16 * q);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512 x = _mm512_set1_ps(a[r * lda + k]);
#pragma GCC unroll 4
            for (int q = 0; q < NB; q++) acc[r][q] = _mm512_fmadd_ps(x, bk[q], acc[r][q]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int q = 0; q < NB; q++) _mm512_mask_storeu_ps(c + r * ldc + 16 * q, mk[q], acc[r][q]);
}

/* kern_tile for mr rows of 64 columns (mr <= 6) or, when nb is 2, of 32 columns (mr <= 8). */
static void kern_any(int nb, int mr, int K, const float *a, size_t lda, const float *b, size_t ldb, float *c,
                     size_t ldc, const __mmask16 *mk, int add) {
    if (nb == 4) {
        switch (mr) {
        case 6: kern_tile(6, 4, K, a, lda, b, ldb, c, ldc, mk, add); return;
        case 5: kern_tile(5, 4, K, a, lda, b, ldb, c, ldc, mk, add); return;
        case 4: kern_tile(4, 4, K, a, lda, b, ldb, c, ldc, mk, add); return;
        case 3: kern_tile(3, 4, K, a, lda, b, ldb, c, ldc, mk, add); return;
        case 2: kern_tile(2, 4, K, a, lda, b, ldb, c, ldc, mk, add); return;
        default: kern_tile(1, 4, K, a, lda, b, ldb, c, ldc, mk, add); return;
        }
    }
    switch (mr) {
    case 8: kern_tile(8, 2, K, a, lda, b, ldb, c, ldc, mk, add); return;
    case 7: kern_tile(7, 2, K, a, lda, b, ldb, c, ldc, mk, add); return;
    case 6: kern_tile(6, 2, K, a, lda, b, ldb, c, ldc, mk, add); return;
    case 5: kern_tile(5, 2, K, a, lda, b, ldb, c, ldc, mk, add); return;
    case 4: kern_tile(4, 2, K, a, lda, b, ldb, c, ldc, mk, add); return;
    case 3: kern_tile(3, 2, K, a, lda, b, ldb, c, ldc, mk, add); return;
    case 2: kern_tile(2, 2, K, a, lda, b, ldb, c, ldc, mk, add); return;
    default: kern_tile(1, 2, K, a, lda, b, ldb, c, ldc, mk, add); return;
    }
}

#define WINO_KC 256 /* input channels per pass over a block (a 64-column panel of V: 64 KiB) */

/*
 * Mb[xi] = U[xi] V[xi] for the np xi: [mm, in_ch] x [in_ch, T] each, in
 * register tiles of 6 x 64 outputs (8 x 32 for a last panel of <= 32
 * columns, so 8x8 images waste no lanes) over passes of WINO_KC input
 * channels. The transforms already wrote U and V row-major, so nothing is
 * packed; the sum over channels runs in channel order within a pass, passes
 * added in order. Measured on these shapes: 85-99 GFLOP/s per core (6 x 64),
 * 75-90 (8 x 32), OpenBLAS sgemm 64-89.
 */
static void multiply(const wino_plan *p, float *Mb, size_t ldm, const float *U, size_t u_xs, const float *V,
                     size_t ldv, int mm, int T, const ops_ctx *ctx) {
    if (ctx && ctx->precision == OPS_PRECISION_BF16) {
        multiply_gemm(p, Mb, ldm, U, u_xs, V, ldv, mm, T, ctx);
        return;
    }
    int C = p->d->in_ch;
    for (int xi = 0; xi < p->np; xi++) {
        const float *u = U + (size_t)xi * u_xs, *v = V + (size_t)xi * p->vxs;
        float *mb = Mb + (size_t)xi * p->mxs;
        for (int k0 = 0; k0 < C; k0 += WINO_KC) {
            int kc = C - k0 < WINO_KC ? C - k0 : WINO_KC;
            for (int n0 = 0; n0 < T; n0 += 64) {
                int nn = T - n0 < 64 ? T - n0 : 64, nb = nn > 32 ? 4 : 2, mr = nb == 4 ? 6 : 8;
                __mmask16 mk[4];
                for (int q = 0; q < 4; q++) {
                    int lanes = nn - 16 * q < 0 ? 0 : nn - 16 * q > 16 ? 16 : nn - 16 * q;
                    mk[q] = (__mmask16)((1u << lanes) - 1);
                }
                for (int r0 = 0; r0 < mm; r0 += mr)
                    kern_any(nb, mm - r0 < mr ? mm - r0 : mr, kc, u + (size_t)r0 * C + k0, (size_t)C,
                             v + (size_t)k0 * ldv + n0, ldv, mb + (size_t)r0 * ldm + n0, ldm, mk, k0 > 0);
            }
        }
    }
}
#else
static void multiply(const wino_plan *p, float *Mb, size_t ldm, const float *U, size_t u_xs, const float *V,
                     size_t ldv, int mm, int T, const ops_ctx *ctx) {
    multiply_gemm(p, Mb, ldm, U, u_xs, V, ldv, mm, T, ctx);
}
#endif

int conv_winograd_run(float *out, const float *x, const ops_conv_desc *d, int plan_threads, int threads,
                      ops_ctx *ctx, sd_error *err) {
    wino_plan p;
    /* F(4x4) only in float32: its transformed values span ~100x the inputs' range, and rounded to bf16
     * they cost the golden pipelines 4-6 dB of PSNR (sd2_ddim_vpred_96 41.7 -> 37.7 dB) */
    plan_winograd(&p, d, ctx->precision == OPS_PRECISION_BF16 ? 2 : ctx->wino_tile, plan_threads);
    p.bf16 = ctx->precision == OPS_PRECISION_BF16;
    int M = d->out_ch, C = d->in_ch, rc = 0;
    size_t in_img = (size_t)C * d->in_h * d->in_w, per_thread = bufs_floats(&p);
    ops_arena *a = &ctx->scratch;
    ops_mark mark = ops_arena_mark(a);
    /* strips: U of all filters; shared: V of the whole batch */
    size_t big = (size_t)p.np * (p.shared ? p.vxs : p.uxs);
    float *all = ops_arena_floats(a, big, err);
    uint16_t *allh = all && p.bf16 ? ops_arena_alloc(a, big * sizeof(uint16_t), err) : NULL;
    const float *bf = all && d->bias ? ops_weight_f32(d->bias, ctx, err) : NULL;
    float *work = all && (!p.bf16 || allh) && (!d->bias || bf) ? ops_arena_floats(a, per_thread * threads, err) : NULL;
    if (!work) {
        rc = err ? err->code : SD_ENOMEM;
        goto done;
    }
    int n_items = (p.shared ? 1 : d->batch) * p.n_strips * p.n_mchunks;
    if (p.shared) {
        int n_cc = (C + WINO_SHARED_CH - 1) / WINO_SHARED_CH, n_units = d->batch * n_cc;
        size_t t_img = (size_t)p.tx_n * p.ty_n;
#pragma omp parallel num_threads(threads)
        {
            wino_bufs w = bufs_carve(&p, work + per_thread * omp_get_thread_num());
            int have_mc = -1; /* the block of U in w.U */
            /* phase 1: V of every image, in units of (image, WINO_SHARED_CH channels); the loop's barrier ends it */
#pragma omp for schedule(dynamic, 1)
            for (int u = 0; u < n_units; u++) {
                int b = u / n_cc, c0 = (u % n_cc) * WINO_SHARED_CH;
                int c1 = c0 + WINO_SHARED_CH < C ? c0 + WINO_SHARED_CH : C;
                transform_input(&p, all + t_img * b, p.ldv, w.rows, w.hb, w.pl, x + in_img * b, b, 0, p.ty_n, c0, c1);
            }
            if (allh) { /* bf16: V rounded once, row by row (the loop's barrier ends it) */
#pragma omp for schedule(static)
                for (int r = 0; r < p.np * C; r++)
                    ops_round_bf16(allh + (size_t)(r / C) * p.vxs + (size_t)(r % C) * p.ldv,
                                   all + (size_t)(r / C) * p.vxs + (size_t)(r % C) * p.ldv, t_img * d->batch);
            }
            /*
             * phase 2: items (block of output channels, strip of the tile rows g = b * ty_n + ty of all
             * images), block-major so that a thread mostly keeps its U block
             */
#pragma omp for schedule(dynamic, 1)
            for (int it = 0; it < n_items; it++) {
                int st = it % p.n_strips, mc = it / p.n_strips, g_rows = d->batch * p.ty_n;
                int g0 = st * p.strip_ty, ng = g_rows - g0 < p.strip_ty ? g_rows - g0 : p.strip_ty;
                int m0 = mc * p.mchunk, mm = M - m0 < p.mchunk ? M - m0 : p.mchunk;
                if (have_mc != mc) {
                    transform_filters(d, p.m, m0, mm, w.U, p.uxs, (size_t)C, w.wrow);
                    if (w.Uh) round_planes(w.Uh, w.U, p.np, p.uxs, (size_t)mm * C);
                }
                have_mc = mc;
                if (multiply_rounded(&p, w.Mb, p.ldm, w.Uh, p.uxs, allh ? allh + (size_t)g0 * p.tx_n : NULL, NULL, NULL,
                                     p.ldv, mm, ng * p.tx_n) < 0)
                    multiply(&p, w.Mb, p.ldm, w.U, p.uxs, all + (size_t)g0 * p.tx_n, p.ldv, mm, ng * p.tx_n, ctx);
                for (int g = g0; g < g0 + ng;) { /* the strip's tile rows, image by image */
                    int b = g / p.ty_n, ty = g % p.ty_n, n = p.ty_n - ty < g0 + ng - g ? p.ty_n - ty : g0 + ng - g;
                    transform_output(&p, out, w.Mb + (size_t)(g - g0) * p.tx_n, p.ldm, w.s, w.y, w.pl, bf, b, m0, mm, ty, n);
                    g += n;
                }
            }
        }
    } else {
        int n_units = (M + 15) / 16;
#pragma omp parallel num_threads(threads)
        {
            wino_bufs w = bufs_carve(&p, work + per_thread * omp_get_thread_num());
            /* phase 1: U of every filter, 16 output channels per unit; the loop's barrier ends it */
#pragma omp for schedule(static)
            for (int u = 0; u < n_units; u++) {
                int o0 = u * 16, on = M - o0 < 16 ? M - o0 : 16;
                transform_filters(d, p.m, o0, on, all + (size_t)o0 * C, p.uxs, (size_t)C, w.wrow);
            }
            if (allh) { /* bf16: U rounded once (the loop's barrier ends it) */
#pragma omp for schedule(static)
                for (int xi = 0; xi < p.np; xi++)
                    ops_round_bf16(allh + (size_t)xi * p.uxs, all + (size_t)xi * p.uxs, (size_t)M * C);
            }
            /* phase 2: items (image, strip, chunk of output channels) */
#pragma omp for schedule(dynamic, 1)
            for (int it = 0; it < n_items; it++) {
                int mc = it % p.n_mchunks, st = (it / p.n_mchunks) % p.n_strips, b = it / (p.n_mchunks * p.n_strips);
                int ty0 = st * p.strip_ty, nty = p.ty_n - ty0 < p.strip_ty ? p.ty_n - ty0 : p.strip_ty;
                int m0 = mc * p.mchunk, mm = M - m0 < p.mchunk ? M - m0 : p.mchunk;
                transform_input(&p, w.V, p.ldv, w.rows, w.hb, w.pl, x + in_img * b, b, ty0, nty, 0, C);
                if (multiply_rounded(&p, w.Mb, p.ldm, allh ? allh + (size_t)m0 * C : NULL, p.uxs, NULL, w.V, w.Vh, p.ldv,
                                     mm, nty * p.tx_n) < 0)
                    multiply(&p, w.Mb, p.ldm, all + (size_t)m0 * C, p.uxs, w.V, p.ldv, mm, nty * p.tx_n, ctx);
                transform_output(&p, out, w.Mb, p.ldm, w.s, w.y, w.pl, bf, b, m0, mm, ty0, nty);
            }
        }
    }
done:
    ops_arena_release(a, mark);
    return rc;
}
