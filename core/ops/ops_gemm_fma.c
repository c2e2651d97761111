/*
 * ops_gemm_fma.c - ops_gemm's float32 products in builds for CPUs with AVX2
 * and FMA but no AVX-512 (AMD Zen 1-3, Intel Haswell to Comet Lake), in
 * portable builds on any CPU that has AVX2 and FMA, and in AVX-512 builds
 * without oneDNN.
 *
 * Why not oneDNN's sgemm, as on AVX-512: its AVX2 kernels round a row
 * differently by where the row falls in the product. Measured on a Zen 1
 * EPYC with Debian's oneDNN 2.6 (one thread): the last 1-3 rows of a product
 * whose rows are not a multiple of 6 differ in their last bits from the same
 * rows in a larger product, and so do whole row blocks that its driver
 * splits differently by M (from 73 rows on). A batch entry then came out
 * different alone and in a batch (CFG-parallel ranks, `run` against
 * `generate`), and PNGs changed with --threads.
 *
 * Here every output is one chain of fused multiply-adds over k = 0, 1, ...,
 * K-1 (stored and reloaded exactly between blocks of k), started from 0, or
 * from c's value when beta is 1: its bits depend on its row of a and its
 * column of b alone, not on M, N, the tiles or the threads. Zero padding of
 * edge tiles adds exact zeros to chains whose results are dropped.
 *
 * Blocking, after BLIS's sgemm for Haswell and Zen: a 6 x 16 register tile
 * (12 accumulators of 8 floats, six broadcasts of a and two vectors of b per
 * k); k in blocks of at most KC, of equal size; rows in blocks of MC, whose
 * slice of a stays in L2 while the column panels pass; columns in blocks of
 * NC. A 16-column panel of b (24 KB at most) stays in L1 while every row
 * tile of the block uses it. It is packed (contiguous, zero-padded past N)
 * just before its first use, prefetching the next panel's source, or, when
 * b is not transposed, the block has one row block and b's row stride
 * cannot alias in L1 (not a multiple of 128 floats), read in place with the
 * first row tile prefetching the next panel: the Winograd products (48 rows
 * x 512 tiles, from memory) went 28 -> 34 GFLOP/s per core in a U-Net step.
 * a is read in place (a tile's six rows are six sequential streams): packing
 * it cost 20% of a 64 x 40 x 1024 attention product. Tiles of fewer rows or
 * 8 columns have their own instances of the tile kernel; other partial
 * tiles go through a 6 x 16 buffer.
 *
 * Single-threaded on the calling thread, like every ops_gemm route (the
 * kernels call it from inside their OpenMP loops); packing buffers are per
 * thread and grow to the largest call seen.
 *
 * Builds for an x86-64 below AVX2 (`make PORTABLE=1`: x86-64-v2, the binary
 * copied to a cluster's nodes) compile the kernel for AVX2 + FMA all the
 * same and run it where the CPU has both (ops_gemm_fma_available asks the
 * CPU). Before, their float32 products were OpenBLAS's, which rounds a row
 * by where it falls in the product as oneDNN's AVX2 kernels do: a portable
 * binary's batch entries differed alone and in a batch (test_ops failed
 * there), so CFG-parallel images were not one rank's. On a CPU without AVX2
 * they still are OpenBLAS's. AVX-512 builds without oneDNN (`make DNNL=0`)
 * take this kernel for the same reason.
 */
#include "ops.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__AVX2__) /* clang has no target pragma */
#define FMA_AT_RUNTIME 1 /* the kernel below is compiled for AVX2 + FMA; the CPU is asked before it runs */
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#else
#define FMA_AT_RUNTIME 0
#endif

#if defined(__AVX2__) && defined(__FMA__) && (!defined(__AVX512F__) || !defined(SD_HAVE_DNNL))
#define FMA_KERNEL 1
#include <immintrin.h>

#define MR 6    /* rows of a register tile */
#define NR 16   /* columns of a register tile (2 vectors) */
#define KC 384  /* k per block, at most (blocks of equal size: K = 320 is one block, not 256 + 64) */
#define MC 96   /* rows per block (a multiple of MR) */
#define NC 2048 /* columns per block of packed b (a multiple of NR) */

/*
 * This thread's buffer for packed panels of b: KC x NC floats at most, grown to the largest call seen and
 * kept for the next. A thread-specific key frees it when the thread ends (OpenMP retires its workers when
 * the thread count drops); the main thread's lives as long as the process.
 */
static _Thread_local float *pack_buf;
static _Thread_local size_t pack_floats;
static pthread_key_t pack_key;
static pthread_once_t pack_once = PTHREAD_ONCE_INIT;
static int pack_key_ok;

static void pack_key_make(void) { pack_key_ok = pthread_key_create(&pack_key, free) == 0; }

static float *thread_pack(size_t floats) {
    if (floats <= pack_floats) return pack_buf;
    pthread_once(&pack_once, pack_key_make);
    float *p = aligned_alloc(64, (floats * sizeof(float) + 63) & ~(size_t)63);
    if (!p || !pack_key_ok || pthread_setspecific(pack_key, p) != 0) {
        free(p);
        return NULL;
    }
    free(pack_buf);
    pack_buf = p;
    pack_floats = floats;
    return p;
}

/* dst[k * ldd + r] = src[r * lds + k] for r, k < 8: one 8 x 8 transpose in registers. */
static void transpose8(float *dst, size_t ldd, const float *src, size_t lds) {
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + lds), r2 = _mm256_loadu_ps(src + 2 * lds);
    __m256 r3 = _mm256_loadu_ps(src + 3 * lds), r4 = _mm256_loadu_ps(src + 4 * lds), r5 = _mm256_loadu_ps(src + 5 * lds);
    __m256 r6 = _mm256_loadu_ps(src + 6 * lds), r7 = _mm256_loadu_ps(src + 7 * lds);
    /* pairs of rows interleaved, then pairs of pairs: each 128-bit lane holds a 4 x 4 transpose */
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3);
    __m256 t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    /* then the lanes: rows 0-3 of each column from the low lane, rows 4-7 from the high one */
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/*
 * Columns [j0, j0 + w) (w <= NR) of rows [k0, k0 + kc) of b as one panel bp[k][NR], zeros past w; b is
 * [K, N] (row stride ldb), or [N, K] when trans_b. Prefetches the next panel's source (next_w columns from
 * j0 + NR), so that a panel packed just before its products finds its rows in cache: packing a whole block
 * of b first was a phase of plain memory reads (15% of a 320-channel Winograd convolution's time, whose
 * products have 48 rows, against 6% after).
 */
static void pack_b_panel(float *bp, const float *b, int ldb, int trans_b, int k0, int kc, int j0, int w, int next_w) {
    if (!trans_b) {
        for (int k = 0; k < kc; k++) {
            const float *src = b + (size_t)(k0 + k) * ldb + j0;
            float *d = bp + (size_t)k * NR;
            if (next_w > 0) _mm_prefetch((const char *)(src + NR), _MM_HINT_T0);
            if (next_w > 8) _mm_prefetch((const char *)(src + NR + 8), _MM_HINT_T0);
            if (w == NR) {
                _mm256_store_ps(d, _mm256_loadu_ps(src));
                _mm256_store_ps(d + 8, _mm256_loadu_ps(src + 8));
            } else {
                for (int j = 0; j < NR; j++) d[j] = j < w ? src[j] : 0.0f;
            }
        }
        return;
    }
    if (w < NR) memset(bp, 0, (size_t)kc * NR * sizeof(float));
    for (int j = 0; j < next_w; j++) {
        const float *src = b + (size_t)(j0 + NR + j) * ldb + k0;
        for (int k = 0; k < kc; k += 16) _mm_prefetch((const char *)(src + k), _MM_HINT_T0);
    }
    int j = 0;
    for (; j + 8 <= w; j += 8) { /* 8 rows of b at a time, 8 x 8 transposes */
        const float *src = b + (size_t)(j0 + j) * ldb + k0;
        int k = 0;
        for (; k + 8 <= kc; k += 8) transpose8(bp + (size_t)k * NR + j, NR, src + k, (size_t)ldb);
        for (; k < kc; k++)
            for (int r = 0; r < 8; r++) bp[(size_t)k * NR + j + r] = src[(size_t)r * ldb + k];
    }
    for (; j < w; j++) {
        const float *src = b + (size_t)(j0 + j) * ldb + k0;
        for (int k = 0; k < kc; k++) bp[(size_t)k * NR + j] = src[k];
    }
}

/*
 * c[r][0 .. 8 nv) for r < h (h <= MR, nv = 1 or 2 vectors): each the chain acc = fma(a[r][k], b[k][j], acc)
 * over the kc packed k, acc starting from c (load) or 0; times alpha before the store when scale. h and nv are
 * constants at every call (tile_any), so the unused accumulators and their instructions are dropped, and a
 * tile of 2 rows or 8 columns costs what it computes (a 40-wide attention product 27 -> 35 GFLOP/s on one Zen
 * 1 core). Twelve named accumulators, not an array: GCC stored an array's registers back to the stack on
 * every k (17 GFLOP/s against 36).
 */
static inline __attribute__((always_inline)) void tile_k(int h, int nv, int kc, const float *a, size_t lda,
                                                         const float *bp, size_t ldbp, const float *pf, float *c,
                                                         size_t ldc, int load, int scale, float alpha) {
    __m256 z = _mm256_setzero_ps();
    const float *a1 = h > 1 ? a + lda : a, *a2 = h > 2 ? a + 2 * lda : a, *a3 = h > 3 ? a + 3 * lda : a;
    const float *a4 = h > 4 ? a + 4 * lda : a, *a5 = h > 5 ? a + 5 * lda : a;
    __m256 c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z, c50 = z, c51 = z;
    if (load) {
        c00 = _mm256_loadu_ps(c);
        c01 = nv > 1 ? _mm256_loadu_ps(c + 8) : z;
        if (h > 1) {
            c10 = _mm256_loadu_ps(c + 1 * ldc);
            c11 = nv > 1 ? _mm256_loadu_ps(c + 1 * ldc + 8) : z;
        }
        if (h > 2) {
            c20 = _mm256_loadu_ps(c + 2 * ldc);
            c21 = nv > 1 ? _mm256_loadu_ps(c + 2 * ldc + 8) : z;
        }
        if (h > 3) {
            c30 = _mm256_loadu_ps(c + 3 * ldc);
            c31 = nv > 1 ? _mm256_loadu_ps(c + 3 * ldc + 8) : z;
        }
        if (h > 4) {
            c40 = _mm256_loadu_ps(c + 4 * ldc);
            c41 = nv > 1 ? _mm256_loadu_ps(c + 4 * ldc + 8) : z;
        }
        if (h > 5) {
            c50 = _mm256_loadu_ps(c + 5 * ldc);
            c51 = nv > 1 ? _mm256_loadu_ps(c + 5 * ldc + 8) : z;
        }
    }
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(bp), b1 = nv > 1 ? _mm256_loadu_ps(bp + 8) : z, av;
        if (pf) {
            _mm_prefetch((const char *)pf, _MM_HINT_T0);
            _mm_prefetch((const char *)(pf + 15), _MM_HINT_T0);
            pf += ldbp;
        }
        av = _mm256_broadcast_ss(a + k);
        c00 = _mm256_fmadd_ps(av, b0, c00);
        if (nv > 1) c01 = _mm256_fmadd_ps(av, b1, c01);
        if (h > 1) {
            av = _mm256_broadcast_ss(a1 + k);
            c10 = _mm256_fmadd_ps(av, b0, c10);
            if (nv > 1) c11 = _mm256_fmadd_ps(av, b1, c11);
        }
        if (h > 2) {
            av = _mm256_broadcast_ss(a2 + k);
            c20 = _mm256_fmadd_ps(av, b0, c20);
            if (nv > 1) c21 = _mm256_fmadd_ps(av, b1, c21);
        }
        if (h > 3) {
            av = _mm256_broadcast_ss(a3 + k);
            c30 = _mm256_fmadd_ps(av, b0, c30);
            if (nv > 1) c31 = _mm256_fmadd_ps(av, b1, c31);
        }
        if (h > 4) {
            av = _mm256_broadcast_ss(a4 + k);
            c40 = _mm256_fmadd_ps(av, b0, c40);
            if (nv > 1) c41 = _mm256_fmadd_ps(av, b1, c41);
        }
        if (h > 5) {
            av = _mm256_broadcast_ss(a5 + k);
            c50 = _mm256_fmadd_ps(av, b0, c50);
            if (nv > 1) c51 = _mm256_fmadd_ps(av, b1, c51);
        }
        bp += ldbp;
    }
    if (scale) {
        __m256 s = _mm256_set1_ps(alpha);
        c00 = _mm256_mul_ps(c00, s), c01 = _mm256_mul_ps(c01, s), c10 = _mm256_mul_ps(c10, s);
        c11 = _mm256_mul_ps(c11, s), c20 = _mm256_mul_ps(c20, s), c21 = _mm256_mul_ps(c21, s);
        c30 = _mm256_mul_ps(c30, s), c31 = _mm256_mul_ps(c31, s), c40 = _mm256_mul_ps(c40, s);
        c41 = _mm256_mul_ps(c41, s), c50 = _mm256_mul_ps(c50, s), c51 = _mm256_mul_ps(c51, s);
    }
    _mm256_storeu_ps(c, c00);
    if (h > 1) _mm256_storeu_ps(c + 1 * ldc, c10);
    if (h > 2) _mm256_storeu_ps(c + 2 * ldc, c20);
    if (h > 3) _mm256_storeu_ps(c + 3 * ldc, c30);
    if (h > 4) _mm256_storeu_ps(c + 4 * ldc, c40);
    if (h > 5) _mm256_storeu_ps(c + 5 * ldc, c50);
    if (nv > 1) _mm256_storeu_ps(c + 8, c01);
    if (nv > 1 && h > 1) _mm256_storeu_ps(c + 1 * ldc + 8, c11);
    if (nv > 1 && h > 2) _mm256_storeu_ps(c + 2 * ldc + 8, c21);
    if (nv > 1 && h > 3) _mm256_storeu_ps(c + 3 * ldc + 8, c31);
    if (nv > 1 && h > 4) _mm256_storeu_ps(c + 4 * ldc + 8, c41);
    if (nv > 1 && h > 5) _mm256_storeu_ps(c + 5 * ldc + 8, c51);
}

/* tile_k with constant h and nv. */
static void tile_hn(int h, int nv, int kc, const float *a, size_t lda, const float *bp, size_t ldbp, const float *pf, float *c, size_t ldc, int load,
                    int scale, float alpha) {
    switch (h * 2 + nv - 2) {
    case 1: tile_k(1, 1, kc, a, lda, bp, ldbp, pf, c, ldc, load, scale, alpha); break;
    case 2: tile_k(1, 2, kc, a, lda, bp, ldbp, pf, c, ldc, load, scale, alpha); break;
    case 3: tile_k(2, 1, kc, a, lda, bp, ldbp, pf, c, ldc, load, scale, alpha); break;
    case 4: tile_k(2, 2, kc, a, lda, bp, ldbp, pf, c, ldc, load, scale, alpha); break;
    case 5: tile_k(3, 1, kc, a, lda, bp, ldbp, pf, c, ldc, load, scale, alpha); break;
    case 6: tile_k(3, 2, kc, a, lda, bp, ldbp, pf, c, ldc, load, scale, alpha); break;
    case 7: tile_k(4, 1, kc, a, lda, bp, ldbp, pf, c, ldc, load, scale, alpha); break;
    case 8: tile_k(4, 2, kc, a, lda, bp, ldbp, pf, c, ldc, load, scale, alpha); break;
    case 9: tile_k(5, 1, kc, a, lda, bp, ldbp, pf, c, ldc, load, scale, alpha); break;
    case 10: tile_k(5, 2, kc, a, lda, bp, ldbp, pf, c, ldc, load, scale, alpha); break;
    case 11: tile_k(6, 1, kc, a, lda, bp, ldbp, pf, c, ldc, load, scale, alpha); break;
    case 12: tile_k(6, 2, kc, a, lda, bp, ldbp, pf, c, ldc, load, scale, alpha); break;
    default: break;
    }
}

/* One tile of h <= MR rows and w <= NR columns of c: in place when w is 8 or 16, else through a copy. */
static void tile_any(int kc, const float *a, int lda, const float *bp, size_t ldbp, const float *pf, float *c, int ldc, int h, int w, int load,
                     int scale, float alpha) {
    int nv = w > 8 ? 2 : 1;
    if (w == 8 * nv) {
        tile_hn(h, nv, kc, a, (size_t)lda, bp, ldbp, pf, c, (size_t)ldc, load, scale, alpha);
        return;
    }
    float t[MR * NR] __attribute__((aligned(32))) = {0};
    if (load)
        for (int r = 0; r < h; r++) memcpy(t + r * NR, c + (size_t)r * ldc, (size_t)w * sizeof(float));
    tile_hn(h, nv, kc, a, (size_t)lda, bp, ldbp, pf, t, NR, load, scale, alpha);
    for (int r = 0; r < h; r++) memcpy(c + (size_t)r * ldc, t + r * NR, (size_t)w * sizeof(float));
}

/* c = alpha * a b (beta 0) or c + a b (from_c: alpha 1, beta 1), each output one chain (header). */
static int gemm_chain(int trans_b, int M, int N, int K, float alpha, const float *a, int lda, const float *b, int ldb,
                      int from_c, float *c, int ldc) {
    int nkb = (K + KC - 1) / KC, kb = (K + nkb - 1) / nkb; /* k blocks of kb */
    int ncmax = N < NC ? N : NC;
    float *bp = thread_pack((size_t)kb * ((ncmax + NR - 1) / NR * NR));
    if (!bp) return -1;
    int direct = !trans_b && M <= MC && ldb % 128 != 0;
    for (int j0 = 0; j0 < N; j0 += NC) {
        int nc = N - j0 < NC ? N - j0 : NC;
        for (int k0 = 0; k0 < K; k0 += kb) {
            int kc = K - k0 < kb ? K - k0 : kb, load = k0 > 0 || from_c, last = k0 + kc >= K;
            for (int i0 = 0; i0 < M; i0 += MC) {
                int mc = M - i0 < MC ? M - i0 : MC;
                for (int jr = 0; jr < nc; jr += NR) {
                    int w = nc - jr < NR ? nc - jr : NR;
                    const float *panel = bp + (size_t)jr * kc;
                    size_t ldp = NR;
                    if (direct && (w == NR || w == 8)) {
                        panel = b + (size_t)k0 * ldb + j0 + jr;
                        ldp = (size_t)ldb;
                    } else if (i0 == 0) { /* each panel of b packed just before its first products */
                        pack_b_panel(bp + (size_t)jr * kc, b, ldb, trans_b, k0, kc, j0 + jr, w,
                                     nc - jr - NR < NR ? nc - jr - NR : NR);
                    }
                    /* direct: the first tile prefetches the next panel's rows (packing prefetches its own) */
                    const float *next = direct && nc - jr - NR >= 8 ? panel + NR : NULL;
                    for (int ir = 0; ir < mc; ir += MR)
                        tile_any(kc, a + (size_t)(i0 + ir) * lda + k0, lda, panel, ldp, ir == 0 ? next : NULL,
                                 c + (size_t)(i0 + ir) * ldc + j0 + jr, ldc, mc - ir < MR ? mc - ir : MR,
                                 nc - jr < NR ? nc - jr : NR, load, last && alpha != 1.0f, alpha);
                }
            }
        }
    }
    return 0;
}

/* ops_gemm_fma on a CPU that has AVX2 and FMA. */
static int fma_gemm(int trans_b, int M, int N, int K, float alpha, const float *a, int lda, const float *b, int ldb,
                    float beta, float *c, int ldc) {
    if (M <= 0 || N <= 0) return 0;
    if (K <= 0 || alpha == 0.0f) { /* c = beta c (beta 0: whatever c held, NaN included, becomes 0) */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float *x = c + (size_t)i * ldc + j;
                *x = beta == 0.0f ? 0.0f : beta * *x;
            }
        return 0;
    }
    if (beta == 0.0f) return gemm_chain(trans_b, M, N, K, alpha, a, lda, b, ldb, 0, c, ldc);
    if (beta == 1.0f && alpha == 1.0f) return gemm_chain(trans_b, M, N, K, 1.0f, a, lda, b, ldb, 1, c, ldc);
    /* anything else (a LoRA merge's scaled update): the product apart, then combined */
    float *t = malloc((size_t)M * N * sizeof(float));
    if (!t) return -1;
    int rc = gemm_chain(trans_b, M, N, K, alpha, a, lda, b, ldb, 0, t, N);
    if (rc == 0)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) c[(size_t)i * ldc + j] = t[(size_t)i * N + j] + beta * c[(size_t)i * ldc + j];
    free(t);
    return rc;
}

#endif /* FMA_KERNEL */

#if FMA_AT_RUNTIME
#pragma GCC pop_options
#endif

/* Compiled for the build's baseline: safe to call on any CPU. */
int ops_gemm_fma_available(void) {
#if defined(FMA_KERNEL) && FMA_AT_RUNTIME
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#elif defined(FMA_KERNEL)
    return 1;
#else
    return 0; /* other builds: oneDNN's or OpenBLAS's sgemm (ops_gemm.c) */
#endif
}

int ops_gemm_fma(int trans_b, int M, int N, int K, float alpha, const float *a, int lda, const float *b, int ldb,
                 float beta, float *c, int ldc) {
#ifdef FMA_KERNEL
    if (ops_gemm_fma_available()) return fma_gemm(trans_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
    return -1;
}
