/*
 * ops_conv_narrow.c - the convolutions' product for small images in float32:
 * c[M, N] (+)= w[M, K] b[K, N] with 16-bit weights (F16, BF16) and few
 * columns (N = the positions of one or two 8x8 or smaller images).
 *
 * Why: there the GEMM reads each weight once per column block of 64 or fewer
 * columns, so the weights' handling, not the multiply-adds, is the cost. The
 * route before this widened 128 weight rows to a float32 copy (5.9 MB for
 * 1280 channels x 3x3: past L2) and oneDNN's sgemm then packed that copy
 * again: for one 8x8 image (64 columns, one rank of a CFG-parallel pair) the
 * 1280-channel convolution ran at 81 GFLOP/s on one core, against 140 for two
 * images. Here each weight is read once from its 16 bits, widened into an L1
 * block of R rows x KC, and used from there: no float32 copy in memory, no
 * packing. B's rows are read in place (a K-chunk of them stays in L2).
 *
 * Register tiles: R rows x NV vectors of 16 columns (12x1, 8x2, 6x3, 6x4),
 * the weight broadcast from the L1 block, a masked last vector. Each output
 * is one float32 chain of FMAs over k = 0..K-1 in order, starting from beta *
 * c: its bits do not depend on N, on where its column or row falls in a tile,
 * or on threads, so an image comes out the same alone or in a batch (the
 * CFG-parallel guarantee, core/pipeline/group.h).
 */
#include <string.h>

#include "ops_conv_impl.h"

#if defined(__AVX512F__)
#include <immintrin.h>

#define NARROW_KC 256 /* k per chunk: the weight block (R x KC floats) stays in L1 */

/*
 * Rows [0, R) x vectors [0, NV) of c for k in [k0, k0 + kc): wb: the rows' weights widened, [R][NARROW_KC];
 * first: the chunk starts the chain (acc = beta * c, or 0 when beta is 0). R, NV constant after inlining.
 */
static inline __attribute__((always_inline)) void narrow_tile(const float *wb, const float *b, size_t ldb, float *c,
                                                             size_t ldc, int kc, const __mmask16 *mk, int first,
                                                             float beta, const int R, const int NV) {
    __m512 acc[12][4];
#pragma GCC unroll 12
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            __m512 old = _mm512_maskz_loadu_ps(mk[v], c + (size_t)r * ldc + 16 * v);
            acc[r][v] = !first ? old : beta == 0.0f ? _mm512_setzero_ps() : _mm512_mul_ps(old, _mm512_set1_ps(beta));
        }
    for (int k = 0; k < kc; k++) {
        __m512 bv[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            bv[v] = _mm512_maskz_loadu_ps(mk[v], b + (size_t)k * ldb + 16 * v);
            __asm__("" : "+v"(bv[v])); /* one load per vector (GCC would fold it into each of the R FMAs) */
        }
#pragma GCC unroll 12
        for (int r = 0; r < R; r++) {
            __m512 x = _mm512_set1_ps(wb[r * NARROW_KC + k]);
            __asm__("" : "+v"(x)); /* likewise one broadcast per row */
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(x, bv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) _mm512_mask_storeu_ps(c + (size_t)r * ldc + 16 * v, mk[v], acc[r][v]);
}

/* narrow_tile for rr rows (rr = R, or 1 for the rows left over) and nv vectors. */
static void narrow_any(int rr, int nv, const float *wb, const float *b, size_t ldb, float *c, size_t ldc, int kc,
                       const __mmask16 *mk, int first, float beta) {
    if (rr == 1) {
        switch (nv) {
        case 1: narrow_tile(wb, b, ldb, c, ldc, kc, mk, first, beta, 1, 1); return;
        case 2: narrow_tile(wb, b, ldb, c, ldc, kc, mk, first, beta, 1, 2); return;
        case 3: narrow_tile(wb, b, ldb, c, ldc, kc, mk, first, beta, 1, 3); return;
        default: narrow_tile(wb, b, ldb, c, ldc, kc, mk, first, beta, 1, 4); return;
        }
    }
    switch (nv) {
    case 1: narrow_tile(wb, b, ldb, c, ldc, kc, mk, first, beta, 12, 1); return;
    case 2: narrow_tile(wb, b, ldb, c, ldc, kc, mk, first, beta, 8, 2); return;
    case 3: narrow_tile(wb, b, ldb, c, ldc, kc, mk, first, beta, 6, 3); return;
    default: narrow_tile(wb, b, ldb, c, ldc, kc, mk, first, beta, 6, 4); return;
    }
}

int conv_gemm_narrow(int M, int N, int K, const void *w, sd_dtype wt, const float *b, int ldb, float beta, float *c,
                     int ldc) {
    if ((wt != SD_F16 && wt != SD_BF16) || M <= 0 || N <= 0 || K <= 0) return -1;
    float wb[12 * NARROW_KC] __attribute__((aligned(64)));
    size_t esz = sd_dtype_size(wt);
    for (int n0 = 0; n0 < N; n0 += 64) {
        int nn = N - n0 < 64 ? N - n0 : 64, nv = (nn + 15) / 16, R = nv == 1 ? 12 : nv == 2 ? 8 : 6;
        __mmask16 mk[4];
        for (int v = 0; v < 4; v++) {
            int lanes = nn - 16 * v < 0 ? 0 : nn - 16 * v > 16 ? 16 : nn - 16 * v;
            mk[v] = (__mmask16)((1u << lanes) - 1);
        }
        /* k-chunks outside the rows: the chunk of b (KC x 64 floats) stays in cache for every row, c's
           partial sums (M x 64) in L2 */
        for (int k0 = 0; k0 < K; k0 += NARROW_KC) {
            int kc = K - k0 < NARROW_KC ? K - k0 : NARROW_KC;
            for (int r0 = 0; r0 < M;) {
                int rr = M - r0 >= R ? R : 1;
                for (int r = 0; r < rr; r++)
                    sd_dtype_convert_to_f32(wb + r * NARROW_KC,
                                            (const unsigned char *)w + ((size_t)(r0 + r) * K + k0) * esz, wt,
                                            (size_t)kc);
                narrow_any(rr, nv, wb, b + (size_t)k0 * ldb + n0, (size_t)ldb, c + (size_t)r0 * ldc + n0,
                           (size_t)ldc, kc, mk, k0 == 0, beta);
                r0 += rr;
            }
        }
    }
    return 0;
}

#else

int conv_gemm_narrow(int M, int N, int K, const void *w, sd_dtype wt, const float *b, int ldb, float beta, float *c,
                     int ldc) {
    return -1;
}

#endif
