/*
 * ops_attention.c - scaled dot-product attention with a streaming softmax.
 *
 * Work item = (batch, head, tile of queries). For each block of keys:
 *   S = scale * Q_tile K_block^T                          [tq, tk]
 *   m' = max(m, rowmax S); P = exp(S - m'); l = l*exp(m - m') + rowsum P
 *   O = O*exp(m - m') + P V_block                         [tq, d]
 * and finally out = O / l. With all keys in one block (cross-attention, CLIP,
 * latents up to 32x32 with the BLAS path) this is exactly softmax-then-multiply.
 *
 * Three implementations of the two products:
 *  - AVX-512 (default where available), queries in the vector lanes: a tile of
 *    up to 96 queries is transposed once into Q^T [d, tile], then
 *    register-blocked kernels compute S^T = K_block Q^T (4 keys x 6 vectors of
 *    16 queries: broadcast a key's element, FMA with a row of Q^T) and
 *    O^T += V_block^T P^T (4 output columns x 6 query vectors: broadcast an
 *    element of V, FMA with a row of P^T). Every lane does useful work whatever
 *    head_dim is (with keys in the lanes, head_dim 40 filled 40 of 48 lanes in
 *    P V), the softmax's max and sum run down the rows (lane-wise, no
 *    horizontal reductions), and K and V are read where they are (no K^T copy).
 *    Measured against the keys-in-lanes kernel it replaced (2 threads, SD 1.5
 *    at 512x512): self-attention at 64x64 latents 172-183 -> 145-150 ms,
 *    cross-attention 5.3-5.9 -> 3.7-3.9 ms, the VAE's one head of 512
 *    114-123 -> 98-106 ms.
 *  - The same kernel on AVX2 with FMA (8 queries per vector; 16 registers, so
 *    register tiles of 6 keys or output columns x 16 queries, as the FMA
 *    GEMM's): SD 1.5's 64x64 self-attention on one Zen 1 core 24.6-26.4 ->
 *    30.1-31.0 GFLOP/s against the GEMM route, at 512x512 one U-Net step on 2
 *    threads 19.0 -> 18.3-18.5 s. Heads wider than 96 take the GEMM route.
 *  - ops_gemm calls per tile (the portable fallback, AVX2's wide heads: their
 *    own FMA GEMM, with the softmax's exponentials on 8 lanes, vm_exp256).
 * In bf16 (ctx->precision), the same tiles with bf16 products: Intel AMX tiles
 * where the CPU has them, else AVX512_BF16 dot products (below).
 * Workspace per thread: O(tile * (block + 2 d)), never [n_q, n_kv].
 */
#include "ops.h"

#include <math.h>
#include <omp.h>

#include "ops_prof.h"
#include "ops_vmath.h"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(__AVX512F__)
#define HAVE_AVX512_ATTENTION 1
#else
#define HAVE_AVX512_ATTENTION 0
#endif
/* The float32 kernel with queries in the vector lanes: 16 of them on AVX-512, 8 on AVX2 with FMA. */
#if HAVE_AVX512_ATTENTION
#define HAVE_LANES_ATTENTION 1
#define LANES 16
#elif defined(__AVX2__) && defined(__FMA__)
#define HAVE_LANES_ATTENTION 1
#define LANES 8
#else
#define HAVE_LANES_ATTENTION 0
#define LANES 1
#endif
#if HAVE_AVX512_ATTENTION && defined(__AVX512BF16__)
#define HAVE_BF16_ATTENTION 1
#include <string.h>
#else
#define HAVE_BF16_ATTENTION 0
#endif
#if HAVE_BF16_ATTENTION && defined(__x86_64__) && defined(__linux__)
#define HAVE_AMX_ATTENTION 1 /* compiled everywhere the bf16 kernel is; used where ops_amx_available() */
#else
#define HAVE_AMX_ATTENTION 0
#endif

/*
 * Tile sizes: BLAS path, then the AVX-512 paths (96 queries = the kernels' 6 vectors, at most). Keys per
 * block: the bf16 kernels 512; float32 64, whose S^T block (64 x 96 floats, 24 KB) stays in L1 between
 * the product, the softmax and the second product: on the Xeon (2 threads, alternating builds) 64x64
 * self-attention 2 x 8 heads of 40 took 226-236 ms against 261-273 with 512 keys, the VAE's one head of
 * 512 the same (134-142 / 140-146). In bf16 64 keys made the AMX kernel's VAE head slower (35 -> 46 ms).
 */
/* GEMM route: 128 queries x 512 keys (S 256 KB, in L2), for the own AVX2 GEMM 10-15% faster than 64 x 1024
 * (each tile packs its block of keys once for twice the queries); measured on one Zen 1 core, SD 1.5's 64x64
 * self-attention, alternating builds on a noisy VM: 19.0-23.3 -> 20.3-26.0 GFLOP/s */
#define BLAS_Q_TILE 128
#define BLAS_KV_BLOCK 512
#define AVX_Q_TILE 96
#define AVX_KV_BLOCK 512
#define AVX_KV_BLOCK_F32 64
/* float32: query tiles that share each block of keys while it is in L1, as many as fit in this (their QT,
 * OT, m, l) and at most 8. 64x64 self-attention (heads of 40, 31 KB per tile) on the Xeon, 2 threads: 1 tile
 * 226-236 ms, 2 223-227, 4 210-213, 8 203-207; the VAE's one head of 512 (384 KB per tile) got slower with
 * any group (138-141 ms with 2, 150 with 4), so it keeps 1. */
#define AVX_GROUP_BYTES ((size_t)256 << 10)
#define AVX_Q_GROUP_MAX 8
/*
 * float32 lanes kernel: queries per tile and keys per block. AVX2 (16 registers of 8 lanes): tiles of 64 queries,
 * worked through 16 at a time, keys in blocks of 64. On one Zen 1 core, SD 1.5's 64x64 self-attention (2 x 8
 * heads of 40) ran at 30.4-31.0 GFLOP/s with tiles of 32, 48, 64 or 96 queries and 64 keys, 29.6-29.8 with 32
 * keys, 29.1-30.2 with 128. Heads wider than LANE_MAX_HEAD_DIM take the GEMM route, faster there: the tile's
 * Q^T is then larger than L1 (one core: heads of 160 at 16x16 latents 18.9 ms both ways, with 77 keys 5.9 against
 * 6.4 ms; the VAE's one head of 512 at 64x64 869 against 957 ms). Heads of 80 (32x32 latents) 167 -> 156 ms.
 */
#if LANES == 8
#define LANE_Q_TILE 64
#define LANE_KV_BLOCK 64
#define LANE_MAX_HEAD_DIM 96
#else
#define LANE_Q_TILE AVX_Q_TILE
#define LANE_KV_BLOCK AVX_KV_BLOCK_F32
#define LANE_MAX_HEAD_DIM 0x7fffffff
#endif
#define KV_PACK_ROWS 64 /* bf16: keys per unit of K and V rounding */
#define AMX_Q_TILE 64   /* AMX: queries per tile, always (4 accumulator tiles of 16 queries; short tiles padded) */

/* The implementations, as ops_attention picks them. */
enum { ATTN_BLAS, ATTN_LANES, ATTN_BF16, ATTN_AMX };

/*
 * AUTO: in bf16 (ctx's precision, on a CPU with AVX512_BF16), the AMX kernels where the CPU has AMX-BF16, else
 * the AVX512_BF16 ones; in float32 the AVX-512 kernels where the build has them, else OpenBLAS. (The GEMM route
 * with bf16 products measured slower than the float32 kernel on the EPYC: 1.30 s against 1.04 s of attention in
 * one SD 1.5 step at 512x512. On a Xeon with AMX, where vdpbf16ps runs at the rate of two FMAs, the AVX512_BF16
 * kernel was slower than the float32 one: 64x64 self-attention 239 against 209 ms; AMX: see its section below.)
 * AVX2 builds take the lanes kernel for heads up to LANE_MAX_HEAD_DIM wide, the GEMM route for wider ones.
 * head_dim 0: the kernel of the usual heads (names).
 */
static int attn_kind(const ops_ctx *ctx, int head_dim) {
    if (ctx->attn_kernel == OPS_ATTN_BLAS || !HAVE_LANES_ATTENTION) return ATTN_BLAS;
    if (LANES == 8 && head_dim > LANE_MAX_HEAD_DIM) return ATTN_BLAS;
    if (!HAVE_BF16_ATTENTION || ctx->precision != OPS_PRECISION_BF16 || !ops_bf16_available()) return ATTN_LANES;
    if (HAVE_AMX_ATTENTION && ctx->attn_kernel != OPS_ATTN_DOT_BF16 && ops_amx_available()) return ATTN_AMX;
    return ATTN_BF16;
}

int ops_attention_bf16(const ops_ctx *ctx) { return attn_kind(ctx, 0) >= ATTN_BF16; }

const char *ops_attention_name(const ops_ctx *ctx) {
    static const char *names[] = {"", LANES == 8 ? "AVX2 float32 (heads over 96: the GEMM route)" : "AVX-512 float32",
                                  "AVX512_BF16 dot products", "AMX bf16 tiles"};
    int kind = attn_kind(ctx, 0);
    return kind == ATTN_BLAS ? ops_gemm_backend() : names[kind]; /* the GEMM route: whatever ops_gemm runs on */
}

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }
static int imin(int a, int b) { return a < b ? a : b; }

/* Per-call geometry of either path. */
typedef struct attn_plan {
    int kind;             /* ATTN_* */
    int tq, tk;           /* query tile, key block */
    int tqp;              /* AVX-512: query tile rounded up to 16 (a row of QT, ST and OT); BLAS: tq */
    int dhp, ldvt;        /* bf16: head_dim rounded up to even (rows of K), n_kv rounded up to even (AMX: to 32;
                             rows of V^T) */
    int st_rows, ot_rows; /* AVX-512 and bf16: rows of ST (tk) and OT (head_dim); AMX: rounded up to 16 */
    int p2_rows;          /* bf16: rows of P2, (tk + 1) / 2 (AMX: rounded up to 16) */
    size_t shared_floats; /* bf16: K and V^T of every (batch, head), rounded (in units of floats) */
    size_t thread_floats; /* BLAS: S, O, m, l of one thread; AVX-512: QT, ST, OT, m, l; bf16: also P2, a row */
    int group;            /* float32 lanes kernel: query tiles per work item (attn_group_lanes); else 1 */
} attn_plan;

/* Float32 AVX-512: one tile's QT [dh, tqp], OT [ot_rows, tqp], m and l [tqp]. */
static size_t avx_tile_floats(const attn_plan *p, int dh) {
    return round16((size_t)p->tqp * ((size_t)dh + p->ot_rows + 2));
}

static void plan_attention(attn_plan *p, const ops_attn_desc *d, int kind) {
    int avx = kind != ATTN_BLAS;
    size_t dh = (size_t)d->head_dim;
    p->kind = kind;
    int amx = kind == ATTN_AMX;
    int lanes = kind == ATTN_LANES;
    p->tq = imin(d->n_q, amx ? AMX_Q_TILE : lanes ? LANE_Q_TILE : avx ? AVX_Q_TILE : BLAS_Q_TILE);
    p->tk = imin(d->n_kv, lanes ? LANE_KV_BLOCK : avx ? AVX_KV_BLOCK : BLAS_KV_BLOCK);
    p->tqp = amx ? AMX_Q_TILE : lanes ? (p->tq + LANES - 1) / LANES * LANES : avx ? (int)round16((size_t)p->tq) : p->tq;
    p->dhp = (d->head_dim + 1) & ~1;
    p->ldvt = amx ? (d->n_kv + 31) & ~31 : (d->n_kv + 1) & ~1;
    /* AMX tiles hold 16 rows: ST and OT get whole tiles of rows, P2 whole tiles of pairs (32 keys) */
    p->st_rows = amx ? (int)round16((size_t)p->tk) : p->tk;
    p->ot_rows = amx ? (int)round16(dh) : (int)dh;
    p->p2_rows = amx ? (int)round16((size_t)(p->tk + 1) / 2) : (p->tk + 1) / 2;
    p->shared_floats = 0;
    p->thread_floats = round16((size_t)p->tqp * (dh + p->st_rows + p->ot_rows + 2));
    p->group = 1;
    if (lanes) {
        size_t fit = AVX_GROUP_BYTES / (avx_tile_floats(p, d->head_dim) * sizeof(float));
        p->group = fit < 1 ? 1 : fit > AVX_Q_GROUP_MAX ? AVX_Q_GROUP_MAX : (int)fit;
    }
    if (lanes) /* one ST, and per tile of the group QT, OT, m, l */
        p->thread_floats = round16((size_t)p->st_rows * p->tqp) + (size_t)p->group * avx_tile_floats(p, d->head_dim);
    if (kind >= ATTN_BF16) {
        /* AMX reads whole tiles of 16 rows: the last (batch, head)'s K and V^T get 16 rows of slack */
        size_t bh = (size_t)d->batch * d->heads, slack = amx ? 16 : 0;
        p->shared_floats = round16((bh * d->n_kv * p->dhp + slack * p->dhp + (bh * dh + slack) * p->ldvt + 1) / 2);
        p->thread_floats += round16((size_t)p->p2_rows * p->tqp) + round16(KV_PACK_ROWS * dh / 2 + 1);
    }
}

size_t ops_attention_workspace(const ops_attn_desc *d, int threads, const ops_ctx *ctx) {
    attn_plan p;
    plan_attention(&p, d, attn_kind(ctx, d->head_dim));
    return (p.shared_floats + p.thread_floats * (size_t)(threads > 0 ? threads : 1)) * sizeof(float);
}

/*
 * Online-softmax step for rows [0, tq) of a tile whose first query is i0,
 * against keys [j0, j0 + tk): S (row stride lds) becomes P, m and l are
 * updated, O rows (stride ldo, dh columns) are rescaled when the max moved.
 */
static void softmax_block(float *S, int lds, int tq, int tk, int i0, int j0, int causal, float *mrow, float *lrow,
                          float *O, int ldo, int dh) {
    for (int i = 0; i < tq; i++) {
        float *s = S + (size_t)i * lds;
        int valid = tk;
        if (causal) { /* keys j0 + j > i0 + i are masked: probability exactly 0 */
            valid = i0 + i - j0 + 1;
            if (valid > tk) valid = tk;
            if (valid < 0) valid = 0;
            for (int j = valid; j < tk; j++) s[j] = 0.0f;
        }
        if (valid == 0) continue; /* never for j0 = 0; later blocks keep m and l */
        float mx = s[0];
#pragma omp simd reduction(max : mx)
        for (int j = 1; j < valid; j++) mx = s[j] > mx ? s[j] : mx;
        float m_new = mrow[i] > mx ? mrow[i] : mx, sum = 0.0f;
#if defined(__AVX512F__)
        __m512 vmax = _mm512_set1_ps(m_new), vsum = _mm512_setzero_ps();
        int j = 0;
        for (; j + 16 <= valid; j += 16) {
            __m512 e = vm_exp512(_mm512_sub_ps(_mm512_loadu_ps(s + j), vmax));
            _mm512_storeu_ps(s + j, e);
            vsum = _mm512_add_ps(vsum, e);
        }
        if (j < valid) {
            __mmask16 mk = (__mmask16)((1u << (valid - j)) - 1);
            __m512 e = vm_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, s + j), vmax));
            _mm512_mask_storeu_ps(s + j, mk, e);
            vsum = _mm512_mask_add_ps(vsum, mk, vsum, e);
        }
        sum = _mm512_reduce_add_ps(vsum);
#elif defined(__AVX2__) && defined(__FMA__)
        __m256 vmax = _mm256_set1_ps(m_new), vsum = _mm256_setzero_ps();
        int j = 0;
        for (; j + 8 <= valid; j += 8) {
            __m256 e = vm_exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), vmax));
            _mm256_storeu_ps(s + j, e);
            vsum = _mm256_add_ps(vsum, e);
        }
        if (j < valid) { /* the last 1-7 keys: masked, through the same function */
            __m256i mk = _mm256_cmpgt_epi32(_mm256_set1_epi32(valid - j), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            __m256 e = vm_exp256(_mm256_sub_ps(_mm256_maskload_ps(s + j, mk), vmax));
            e = _mm256_and_ps(e, _mm256_castsi256_ps(mk));
            _mm256_maskstore_ps(s + j, mk, e);
            vsum = _mm256_add_ps(vsum, e);
        }
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(vsum), _mm256_extractf128_ps(vsum, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        sum = _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
#else
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < valid; j++) {
            s[j] = vm_expf(s[j] - m_new);
            sum += s[j];
        }
#endif
        if (j0 > 0) {
            float corr = vm_expf(mrow[i] - m_new);
            lrow[i] = lrow[i] * corr + sum;
            if (corr != 1.0f) {
                float *o = O + (size_t)i * ldo;
#pragma omp simd
                for (int c = 0; c < dh; c++) o[c] *= corr;
            }
        } else {
            lrow[i] = sum;
        }
        mrow[i] = m_new;
    }
}

/* out rows of the tile = O / l. */
static void write_tile(float *out, const ops_attn_desc *d, int b, int h, int i0, int tq, const float *O, int ldo,
                       const float *lrow) {
    int dh = d->head_dim;
    float *ot = out + ((size_t)b * d->n_q + i0) * d->out_stride + (size_t)h * dh;
    for (int i = 0; i < tq; i++) {
        float inv = 1.0f / lrow[i];
        const float *o = O + (size_t)i * ldo;
        float *dst = ot + (size_t)i * d->out_stride;
#pragma omp simd
        for (int c = 0; c < dh; c++) dst[c] = o[c] * inv;
    }
}

/* Keys a tile of queries [i0, i0 + tq) attends to. */
static int tile_kv_end(const ops_attn_desc *d, int i0, int tq) {
    return d->causal && i0 + tq < d->n_kv ? i0 + tq : d->n_kv;
}

/* ---- BLAS path ------------------------------------------------------------- */

static void attn_tile_blas(float *out, const float *q, const float *k, const float *v, const ops_attn_desc *d,
                           const attn_plan *p, int b, int h, int i0, float *S, float *O, float *mrow, float *lrow,
                           const ops_ctx *ctx) {
    int dh = d->head_dim, tq = imin(d->n_q - i0, p->tq), kv_end = tile_kv_end(d, i0, tq);
    const float *qt = q + ((size_t)b * d->n_q + i0) * d->q_stride + (size_t)h * dh;
    const float *kb = k + (size_t)b * d->n_kv * d->k_stride + (size_t)h * dh;
    const float *vb = v + (size_t)b * d->n_kv * d->v_stride + (size_t)h * dh;
    for (int i = 0; i < tq; i++) mrow[i] = -INFINITY, lrow[i] = 0.0f;
    for (int j0 = 0; j0 < kv_end; j0 += p->tk) {
        int tk = imin(kv_end - j0, p->tk);
        ops_gemm(ctx, 1, tq, tk, dh, d->scale, qt, d->q_stride, kb + (size_t)j0 * d->k_stride, d->k_stride, 0.0f, S,
                 tk);
        softmax_block(S, tk, tq, tk, i0, j0, d->causal, mrow, lrow, O, dh, dh);
        ops_gemm(ctx, 0, tq, dh, tk, 1.0f, S, tk, vb + (size_t)j0 * d->v_stride, d->v_stride, j0 > 0 ? 1.0f : 0.0f, O,
                 dh);
    }
    write_tile(out, d, b, h, i0, tq, O, dh, lrow);
}

/* ---- float32, queries in the vector lanes (AVX-512 or AVX2) ----------------- */

#if HAVE_LANES_ATTENTION

/*
 * An empty asm that "changes" x: GCC otherwise folds the load of x into each of the R FMAs that use it (R loads
 * instead of one), and the kernels become load-bound.
 */
#define KEEP_IN_REGISTER(x) __asm__("" : "+v"(x))

/* qt: [dh, tqp] = the tile's queries transposed (h's columns), zero for padded queries tq <= i < tqp. */
static void pack_qt(float *qt, int tqp, const float *q, int qs, int dh, int tq) {
    for (int c = 0; c < dh; c++) {
        float *dst = qt + (size_t)c * tqp;
        for (int i = 0; i < tq; i++) dst[i] = q[(size_t)i * qs + c];
        for (int i = tq; i < tqp; i++) dst[i] = 0.0f;
    }
}

#if HAVE_AVX512_ATTENTION

/*
 * ST[r][16u, 16u + 16) = scale * sum_c k[r][c] * qt[c][16u, ...) for R key rows and NI vectors of queries
 * (R, NI constant after inlining; R*NI <= 24 accumulators).
 */
static inline __attribute__((always_inline)) void qk_rows(float *ST, int tqp, const float *k, int ks, const float *qt,
                                                          int dh, float scale, const int R, const int NI) {
    __m512 acc[4][6];
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NI; u++) acc[r][u] = _mm512_setzero_ps();
    for (int c = 0; c < dh; c++) { /* R broadcasts in registers, each query vector loaded once */
        __m512 kb[4];
        for (int r = 0; r < R; r++) kb[r] = _mm512_set1_ps(k[(size_t)r * ks + c]);
        for (int u = 0; u < NI; u++) {
            __m512 qv = _mm512_loadu_ps(qt + (size_t)c * tqp + 16 * u);
            KEEP_IN_REGISTER(qv);
            for (int r = 0; r < R; r++) acc[r][u] = _mm512_fmadd_ps(kb[r], qv, acc[r][u]);
        }
    }
    __m512 sc = _mm512_set1_ps(scale);
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NI; u++) _mm512_storeu_ps(ST + (size_t)r * tqp + 16 * u, _mm512_mul_ps(acc[r][u], sc));
}

/*
 * OT[c0 + r][16u, ...) (+)= sum_{j < tk} v[j][c0 + r] * PT[j][16u, ...) for R output columns and NI vectors of
 * queries (R, NI constant after inlining).
 */
static inline __attribute__((always_inline)) void pv_rows(float *OT, int tqp, const float *PT, const float *v, int vs,
                                                          int tk, int accumulate, const int R, const int NI) {
    __m512 acc[4][6];
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NI; u++)
            acc[r][u] = accumulate ? _mm512_loadu_ps(OT + (size_t)r * tqp + 16 * u) : _mm512_setzero_ps();
    for (int j = 0; j < tk; j++) { /* as qk_rows: broadcasts in registers, each P vector loaded once */
        __m512 vb[4];
        for (int r = 0; r < R; r++) vb[r] = _mm512_set1_ps(v[(size_t)j * vs + r]);
        for (int u = 0; u < NI; u++) {
            __m512 pv = _mm512_loadu_ps(PT + (size_t)j * tqp + 16 * u);
            KEEP_IN_REGISTER(pv);
            for (int r = 0; r < R; r++) acc[r][u] = _mm512_fmadd_ps(vb[r], pv, acc[r][u]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NI; u++) _mm512_storeu_ps(OT + (size_t)r * tqp + 16 * u, acc[r][u]);
}

/* Both products over a whole block, for a tile of NI query vectors (NI constant after inlining). */
static inline __attribute__((always_inline)) void qk_block_ni(float *ST, int tqp, const float *k, int ks,
                                                              const float *qt, int dh, float scale, int tk,
                                                              const int NI) {
    int j = 0;
    for (; j + 4 <= tk; j += 4) qk_rows(ST + (size_t)j * tqp, tqp, k + (size_t)j * ks, ks, qt, dh, scale, 4, NI);
    for (; j < tk; j++) qk_rows(ST + (size_t)j * tqp, tqp, k + (size_t)j * ks, ks, qt, dh, scale, 1, NI);
}

static inline __attribute__((always_inline)) void pv_block_ni(float *OT, int tqp, const float *PT, const float *v,
                                                              int vs, int tk, int dh, int accumulate, const int NI) {
    int c = 0;
    for (; c + 4 <= dh; c += 4) pv_rows(OT + (size_t)c * tqp, tqp, PT, v + c, vs, tk, accumulate, 4, NI);
    for (; c < dh; c++) pv_rows(OT + (size_t)c * tqp, tqp, PT, v + c, vs, tk, accumulate, 1, NI);
}

/* ST [tk, tqp] = scale * K_block Q_tile^T, for tqp / 16 = 1..6 vectors of queries. */
static void qk_block(float *ST, int tqp, const float *k, int ks, const float *qt, int dh, float scale, int tk) {
    switch (tqp / 16) {
    case 1: qk_block_ni(ST, tqp, k, ks, qt, dh, scale, tk, 1); break;
    case 2: qk_block_ni(ST, tqp, k, ks, qt, dh, scale, tk, 2); break;
    case 3: qk_block_ni(ST, tqp, k, ks, qt, dh, scale, tk, 3); break;
    case 4: qk_block_ni(ST, tqp, k, ks, qt, dh, scale, tk, 4); break;
    case 5: qk_block_ni(ST, tqp, k, ks, qt, dh, scale, tk, 5); break;
    default: qk_block_ni(ST, tqp, k, ks, qt, dh, scale, tk, 6); break;
    }
}

/* OT [dh, tqp] (+)= V_block^T PT. */
static void pv_block(float *OT, int tqp, const float *PT, const float *v, int vs, int tk, int dh, int accumulate) {
    switch (tqp / 16) {
    case 1: pv_block_ni(OT, tqp, PT, v, vs, tk, dh, accumulate, 1); break;
    case 2: pv_block_ni(OT, tqp, PT, v, vs, tk, dh, accumulate, 2); break;
    case 3: pv_block_ni(OT, tqp, PT, v, vs, tk, dh, accumulate, 3); break;
    case 4: pv_block_ni(OT, tqp, PT, v, vs, tk, dh, accumulate, 4); break;
    case 5: pv_block_ni(OT, tqp, PT, v, vs, tk, dh, accumulate, 5); break;
    default: pv_block_ni(OT, tqp, PT, v, vs, tk, dh, accumulate, 6); break;
    }
}

/*
 * Online-softmax step on ST [tk, tqp] (keys j0.., queries i0.. in lanes): ST becomes P, m and l (one lane per
 * query) are updated, and OT [dh, tqp] is rescaled where a query's max moved. All reductions run over keys, down
 * the rows, so they are lane-wise: no horizontal sums.
 */
#if HAVE_BF16_ATTENTION
/* The pairs (a[i], b[i]) of 16 float32 lanes, each rounded to bf16 (to nearest even): a low, b high. */
static inline __m512i pair_bf16(__m512 a, __m512 b) {
    const __m512i interleave = _mm512_setr_epi32(0x00100000, 0x00110001, 0x00120002, 0x00130003, 0x00140004,
                                                 0x00150005, 0x00160006, 0x00170007, 0x00180008, 0x00190009,
                                                 0x001a000a, 0x001b000b, 0x001c000c, 0x001d000d, 0x001e000e,
                                                 0x001f000f);
    __m512i ab = (__m512i)_mm512_cvtne2ps_pbh(b, a); /* a's 16 bf16 in the low half, b's in the high half */
    return _mm512_permutexvar_epi16(interleave, ab);
}
#endif

/* p2: NULL, or (bf16 path) where P goes as pairs of rows rounded to bf16 (P2 [ceil(tk/2), tqp]) instead of ST. */
static void softmax_block_t(float *ST, int tqp, int tk, int i0, int j0, int causal, float *m, float *l, float *OT,
                            int dh, uint32_t *p2, float scale) {
    int nv = tqp / 16;
    const __m512 sc = _mm512_set1_ps(scale); /* ST holds products not yet scaled (AMX), else scale is 1 */
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int u = 0; u < nv; u++) {
        __m512 mx = _mm512_loadu_ps(m + 16 * u), sum = _mm512_setzero_ps();
        if (causal) { /* query i0 + 16u + lane sees keys up to itself: the rest get -inf (probability 0) */
            __m512i qi = _mm512_add_epi32(lane, _mm512_set1_epi32(i0 + 16 * u));
            for (int j = 0; j < tk; j++) {
                __mmask16 masked = _mm512_cmplt_epi32_mask(qi, _mm512_set1_epi32(j0 + j));
                float *s = ST + (size_t)j * tqp + 16 * u;
                _mm512_mask_storeu_ps(s, masked, _mm512_set1_ps(-INFINITY));
            }
        }
        __m512 smax = _mm512_set1_ps(-INFINITY); /* scale > 0: the max of the scaled values is scale * the max */
        for (int j = 0; j < tk; j++) smax = _mm512_max_ps(smax, _mm512_loadu_ps(ST + (size_t)j * tqp + 16 * u));
        mx = _mm512_max_ps(mx, _mm512_mul_ps(smax, sc));
#if HAVE_BF16_ATTENTION
        if (p2) { /* rows j and j + 1 straight into their pair (a missing last row is zero) */
            for (int j = 0; j < tk; j += 2) {
                __m512 e0 = vm_exp512(_mm512_fmsub_ps(_mm512_loadu_ps(ST + (size_t)j * tqp + 16 * u), sc, mx));
                __m512 e1 = j + 1 < tk ? vm_exp512(_mm512_fmsub_ps(_mm512_loadu_ps(ST + (size_t)(j + 1) * tqp + 16 * u),
                                                                   sc, mx))
                                       : _mm512_setzero_ps();
                sum = _mm512_add_ps(_mm512_add_ps(sum, e0), e1);
                _mm512_storeu_si512(p2 + (size_t)(j / 2) * tqp + 16 * u, pair_bf16(e0, e1));
            }
        }
#endif
        for (int j = 0; j < tk && !p2; j++) {
            float *s = ST + (size_t)j * tqp + 16 * u;
            __m512 e = vm_exp512(_mm512_fmsub_ps(_mm512_loadu_ps(s), sc, mx));
            _mm512_storeu_ps(s, e);
            sum = _mm512_add_ps(sum, e);
        }
        __m512 lv = sum;
        if (j0 > 0) {
            __m512 corr = vm_exp512(_mm512_sub_ps(_mm512_loadu_ps(m + 16 * u), mx));
            lv = _mm512_fmadd_ps(_mm512_loadu_ps(l + 16 * u), corr, sum);
            for (int c = 0; c < dh; c++) {
                float *o = OT + (size_t)c * tqp + 16 * u;
                _mm512_storeu_ps(o, _mm512_mul_ps(_mm512_loadu_ps(o), corr));
            }
        }
        _mm512_storeu_ps(l + 16 * u, lv);
        _mm512_storeu_ps(m + 16 * u, mx);
    }
}

static void softmax_lanes(float *ST, int tqp, int tk, int i0, int j0, int causal, float *m, float *l, float *OT,
                          int dh) {
    softmax_block_t(ST, tqp, tk, i0, j0, causal, m, l, OT, dh, NULL, 1.0f);
}

#else /* AVX2 */

/*
 * AVX2: 16 registers of 8 floats. Every row of QT, ST, OT, m and l starts on 32 bytes (tqp is a multiple of 8 and
 * the workspace is 64-byte aligned): aligned loads and stores, which GCC's Zen tuning does not split in halves. A register tile is R <= 6 rows (keys in the first product, output columns in
 * the second) by NI <= 2 vectors of 8 queries: 12 accumulators, the two query vectors and one broadcast, as the
 * FMA GEMM's 6 x 16 tile (ops_gemm_fma.c). Tiles of more queries are worked through 16 at a time.
 */

/* ST[r][8u, 8u + 8) = scale * sum_c k[r][c] * qt[c][8u, ...) for R key rows and NI query vectors. */
static inline __attribute__((always_inline)) void qk_rows(float *ST, int tqp, const float *k, int ks, const float *qt,
                                                          int dh, float scale, const int R, const int NI) {
    __m256 acc[6][2];
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NI; u++) acc[r][u] = _mm256_setzero_ps();
    for (int c = 0; c < dh; c++) {
        __m256 q0 = _mm256_load_ps(qt + (size_t)c * tqp), q1 = q0;
        if (NI > 1) q1 = _mm256_load_ps(qt + (size_t)c * tqp + 8);
        KEEP_IN_REGISTER(q0);
        KEEP_IN_REGISTER(q1);
        for (int r = 0; r < R; r++) {
            __m256 kb = _mm256_broadcast_ss(k + (size_t)r * ks + c);
            acc[r][0] = _mm256_fmadd_ps(kb, q0, acc[r][0]);
            if (NI > 1) acc[r][1] = _mm256_fmadd_ps(kb, q1, acc[r][1]);
        }
    }
    __m256 sc = _mm256_set1_ps(scale);
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NI; u++) _mm256_store_ps(ST + (size_t)r * tqp + 8 * u, _mm256_mul_ps(acc[r][u], sc));
}

/* OT[r][8u, ...) (+)= sum_{j < tk} v[j][r] * PT[j][8u, ...) for R output columns and NI query vectors. */
static inline __attribute__((always_inline)) void pv_rows(float *OT, int tqp, const float *PT, const float *v, int vs,
                                                          int tk, int accumulate, const int R, const int NI) {
    __m256 acc[6][2];
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NI; u++)
            acc[r][u] = accumulate ? _mm256_load_ps(OT + (size_t)r * tqp + 8 * u) : _mm256_setzero_ps();
    for (int j = 0; j < tk; j++) {
        __m256 p0 = _mm256_load_ps(PT + (size_t)j * tqp), p1 = p0;
        if (NI > 1) p1 = _mm256_load_ps(PT + (size_t)j * tqp + 8);
        KEEP_IN_REGISTER(p0);
        KEEP_IN_REGISTER(p1);
        for (int r = 0; r < R; r++) {
            __m256 vb = _mm256_broadcast_ss(v + (size_t)j * vs + r);
            acc[r][0] = _mm256_fmadd_ps(vb, p0, acc[r][0]);
            if (NI > 1) acc[r][1] = _mm256_fmadd_ps(vb, p1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NI; u++) _mm256_store_ps(OT + (size_t)r * tqp + 8 * u, acc[r][u]);
}

/* ST [tk, tqp] = scale * K_block Q_tile^T: 16 queries at a time (then 8), keys 6 at a time (then 1-5). */
static void qk_block(float *ST, int tqp, const float *k, int ks, const float *qt, int dh, float scale, int tk) {
    for (int u = 0; u < tqp; u += 16) {
        float *st = ST + u;
        const float *q = qt + u;
        int j = 0;
        if (u + 16 <= tqp) {
            for (; j + 6 <= tk; j += 6) qk_rows(st + (size_t)j * tqp, tqp, k + (size_t)j * ks, ks, q, dh, scale, 6, 2);
            for (; j < tk; j++) qk_rows(st + (size_t)j * tqp, tqp, k + (size_t)j * ks, ks, q, dh, scale, 1, 2);
        } else {
            for (; j + 6 <= tk; j += 6) qk_rows(st + (size_t)j * tqp, tqp, k + (size_t)j * ks, ks, q, dh, scale, 6, 1);
            for (; j < tk; j++) qk_rows(st + (size_t)j * tqp, tqp, k + (size_t)j * ks, ks, q, dh, scale, 1, 1);
        }
    }
}

/* OT [dh, tqp] (+)= V_block^T PT: 16 queries at a time (then 8), output columns 6 at a time (then 1-5). */
static void pv_block(float *OT, int tqp, const float *PT, const float *v, int vs, int tk, int dh, int accumulate) {
    for (int u = 0; u < tqp; u += 16) {
        float *ot = OT + u;
        const float *pt = PT + u;
        int c = 0;
        if (u + 16 <= tqp) {
            for (; c + 6 <= dh; c += 6) pv_rows(ot + (size_t)c * tqp, tqp, pt, v + c, vs, tk, accumulate, 6, 2);
            for (; c + 2 <= dh; c += 2) pv_rows(ot + (size_t)c * tqp, tqp, pt, v + c, vs, tk, accumulate, 2, 2);
            for (; c < dh; c++) pv_rows(ot + (size_t)c * tqp, tqp, pt, v + c, vs, tk, accumulate, 1, 2);
        } else {
            for (; c + 6 <= dh; c += 6) pv_rows(ot + (size_t)c * tqp, tqp, pt, v + c, vs, tk, accumulate, 6, 1);
            for (; c < dh; c++) pv_rows(ot + (size_t)c * tqp, tqp, pt, v + c, vs, tk, accumulate, 1, 1);
        }
    }
}

/*
 * The online-softmax step of the AVX-512 kernel (above) on 8 lanes: ST [tk, tqp] becomes P, m and l (a lane per
 * query) are updated, OT [dh, tqp] rescaled where a query's max moved; reductions run down the rows.
 */
static void softmax_lanes(float *ST, int tqp, int tk, int i0, int j0, int causal, float *m, float *l, float *OT,
                          int dh) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int u = 0; u < tqp; u += 8) {
        if (causal) { /* query i0 + u + lane sees keys up to itself: the rest get -inf (probability 0) */
            __m256i qi = _mm256_add_epi32(lane, _mm256_set1_epi32(i0 + u));
            for (int j = 0; j < tk; j++) {
                __m256i masked = _mm256_cmpgt_epi32(_mm256_set1_epi32(j0 + j), qi);
                _mm256_maskstore_ps(ST + (size_t)j * tqp + u, masked, _mm256_set1_ps(-INFINITY));
            }
        }
        __m256 mold = _mm256_load_ps(m + u), mx = mold, sum = _mm256_setzero_ps();
        for (int j = 0; j < tk; j++) mx = _mm256_max_ps(mx, _mm256_load_ps(ST + (size_t)j * tqp + u));
        int j = 0;
        for (; j + 4 <= tk; j += 4) { /* four rows at a time: their exponentials' chains interleaved */
            float *s = ST + (size_t)j * tqp + u;
            __m256 e[4];
            for (int i = 0; i < 4; i++) e[i] = _mm256_sub_ps(_mm256_load_ps(s + (size_t)i * tqp), mx);
            vm_exp256_n(e, 4);
            for (int i = 0; i < 4; i++) {
                _mm256_store_ps(s + (size_t)i * tqp, e[i]);
                sum = _mm256_add_ps(sum, e[i]);
            }
        }
        for (; j < tk; j++) {
            float *s = ST + (size_t)j * tqp + u;
            __m256 e = vm_exp256(_mm256_sub_ps(_mm256_load_ps(s), mx));
            _mm256_store_ps(s, e);
            sum = _mm256_add_ps(sum, e);
        }
        __m256 lv = sum;
        if (j0 > 0) {
            __m256 corr = vm_exp256(_mm256_sub_ps(mold, mx));
            lv = _mm256_fmadd_ps(_mm256_load_ps(l + u), corr, sum);
            for (int c = 0; c < dh; c++) {
                float *o = OT + (size_t)c * tqp + u;
                _mm256_store_ps(o, _mm256_mul_ps(_mm256_load_ps(o), corr));
            }
        }
        _mm256_store_ps(l + u, lv);
        _mm256_store_ps(m + u, mx);
    }
}

#endif

/* out rows of the tile = OT^T / l. */
static void write_tile_t(float *out, const ops_attn_desc *d, int b, int h, int i0, int tq, const float *OT, int tqp,
                         const float *l) {
    int dh = d->head_dim;
    float *ot = out + ((size_t)b * d->n_q + i0) * d->out_stride + (size_t)h * dh;
    for (int i = 0; i < tq; i++) {
        float inv = 1.0f / l[i];
        float *dst = ot + (size_t)i * d->out_stride;
        for (int c = 0; c < dh; c++) dst[c] = OT[(size_t)c * tqp + i] * inv;
    }
}

/*
 * Query tiles t0 .. t0 + g - 1 of (b, h) together: each block of keys and values is used by the g tiles in
 * turn while it is in L1 (a tile alone streamed all of a head's K and V, 1.3 MB at 4096 tokens, from L2 for
 * every 96 queries). Each tile's sums are the ones it gets alone, in the same order: the same bits for any g.
 * ST: one [tk, tqp] block; tiles: g tiles' state (avx_tile_floats each).
 */
static void attn_group_lanes(float *out, const float *q, const float *k, const float *v, const ops_attn_desc *d,
                              const attn_plan *p, int b, int h, int t0, int g, float *ST, float *tiles) {
    int dh = d->head_dim, kv_end = 0;
    size_t per = avx_tile_floats(p, dh);
    const float *kb = k + (size_t)b * d->n_kv * d->k_stride + (size_t)h * dh;
    const float *vb = v + (size_t)b * d->n_kv * d->v_stride + (size_t)h * dh;
    for (int i = 0; i < g; i++) {
        int i0 = (t0 + i) * p->tq, tq = imin(d->n_q - i0, p->tq), tqp = (tq + LANES - 1) / LANES * LANES, end;
        float *QT = tiles + i * per, *m = QT + (size_t)(dh + p->ot_rows) * p->tqp, *l = m + p->tqp;
        pack_qt(QT, tqp, q + ((size_t)b * d->n_q + i0) * d->q_stride + (size_t)h * dh, d->q_stride, dh, tq);
        for (int j = 0; j < tqp; j++) m[j] = -INFINITY, l[j] = 0.0f;
        if ((end = tile_kv_end(d, i0, tq)) > kv_end) kv_end = end;
    }
    for (int j0 = 0; j0 < kv_end; j0 += p->tk)
        for (int i = 0; i < g; i++) {
            int i0 = (t0 + i) * p->tq, tq = imin(d->n_q - i0, p->tq), tqp = (tq + LANES - 1) / LANES * LANES;
            int end = tile_kv_end(d, i0, tq), tk = imin(end - j0, p->tk);
            if (tk <= 0) continue;
            float *QT = tiles + i * per, *OT = QT + (size_t)dh * p->tqp, *m = OT + (size_t)p->ot_rows * p->tqp;
            qk_block(ST, tqp, kb + (size_t)j0 * d->k_stride, d->k_stride, QT, dh, d->scale, tk);
            softmax_lanes(ST, tqp, tk, i0, j0, d->causal, m, m + p->tqp, OT, dh);
            pv_block(OT, tqp, ST, vb + (size_t)j0 * d->v_stride, d->v_stride, tk, dh, j0 > 0);
        }
    for (int i = 0; i < g; i++) {
        int i0 = (t0 + i) * p->tq, tq = imin(d->n_q - i0, p->tq), tqp = (tq + LANES - 1) / LANES * LANES;
        float *OT = tiles + i * per + (size_t)dh * p->tqp;
        write_tile_t(out, d, b, h, i0, tq, OT, tqp, OT + (size_t)(p->ot_rows + 1) * p->tqp);
    }
}

#endif

/* ---- AVX512_BF16 path (precision bf16) ---------------------------------------- */

#if HAVE_BF16_ATTENTION

/*
 * The same tiles with both products on bfloat16 inputs and float32 sums (vdpbf16ps: each lane adds the
 * products of one pair of bf16 elements). The pairs run along the products' inner dimension, so:
 *   S^T: a lane holds a query's pair (q[c], q[c+1]) (QT2 [dh/2, tqp] pairs) and the broadcast is a key's pair
 *        (K rounded once per call, rows of dhp = dh rounded up to even);
 *   O^T: a lane holds a query's pair of probabilities (P2 [tk/2, tqp] pairs, rounded from the softmax's float32
 *        P) and the broadcast is (v[j][c], v[j+1][c]) (V^T rounded once per call, rows of n_kv rounded up to
 *        even). The softmax, its sums l and the O^T rescaling stay float32.
 * Rounding is to nearest even, as ops_round_bf16.
 */

static inline uint32_t load_pair(const uint16_t *p) {
    uint32_t u;
    memcpy(&u, p, 4);
    return u;
}

/* ST[r][16u, ...) = scale * sum_{cp} dot2(kbf[r][2cp, 2cp+2), QT2[cp][16u, ...)) for R keys, NI query vectors. */
static inline __attribute__((always_inline)) void qk_rows_bf16(float *ST, int tqp, const uint16_t *kbf, int ldk,
                                                               const uint32_t *qt2, int npairs, float scale,
                                                               const int R, const int NI) {
    __m512 acc[4][6];
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NI; u++) acc[r][u] = _mm512_setzero_ps();
    for (int cp = 0; cp < npairs; cp++) {
        __m512i kb[4];
        for (int r = 0; r < R; r++) kb[r] = _mm512_set1_epi32((int)load_pair(kbf + (size_t)r * ldk + 2 * cp));
        for (int u = 0; u < NI; u++) {
            __m512i qv = _mm512_loadu_si512(qt2 + (size_t)cp * tqp + 16 * u);
            KEEP_IN_REGISTER(qv);
            for (int r = 0; r < R; r++) acc[r][u] = _mm512_dpbf16_ps(acc[r][u], (__m512bh)kb[r], (__m512bh)qv);
        }
    }
    __m512 sc = _mm512_set1_ps(scale);
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NI; u++) _mm512_storeu_ps(ST + (size_t)r * tqp + 16 * u, _mm512_mul_ps(acc[r][u], sc));
}

/* OT[r][16u, ...) (+)= sum_{jp} dot2(vt[r][2jp, 2jp+2), P2[jp][16u, ...)) for R output columns, NI vectors. */
static inline __attribute__((always_inline)) void pv_rows_bf16(float *OT, int tqp, const uint32_t *p2,
                                                               const uint16_t *vt, int ldvt, int npairs,
                                                               int accumulate, const int R, const int NI) {
    __m512 acc[4][6];
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NI; u++)
            acc[r][u] = accumulate ? _mm512_loadu_ps(OT + (size_t)r * tqp + 16 * u) : _mm512_setzero_ps();
    for (int jp = 0; jp < npairs; jp++) {
        __m512i vb[4];
        for (int r = 0; r < R; r++) vb[r] = _mm512_set1_epi32((int)load_pair(vt + (size_t)r * ldvt + 2 * jp));
        for (int u = 0; u < NI; u++) {
            __m512i pv = _mm512_loadu_si512(p2 + (size_t)jp * tqp + 16 * u);
            KEEP_IN_REGISTER(pv);
            for (int r = 0; r < R; r++) acc[r][u] = _mm512_dpbf16_ps(acc[r][u], (__m512bh)vb[r], (__m512bh)pv);
        }
    }
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NI; u++) _mm512_storeu_ps(OT + (size_t)r * tqp + 16 * u, acc[r][u]);
}

static inline __attribute__((always_inline)) void qk_block_bf16_ni(float *ST, int tqp, const uint16_t *kbf, int ldk,
                                                                   const uint32_t *qt2, int npairs, float scale,
                                                                   int tk, const int NI) {
    int j = 0;
    for (; j + 4 <= tk; j += 4)
        qk_rows_bf16(ST + (size_t)j * tqp, tqp, kbf + (size_t)j * ldk, ldk, qt2, npairs, scale, 4, NI);
    for (; j < tk; j++) qk_rows_bf16(ST + (size_t)j * tqp, tqp, kbf + (size_t)j * ldk, ldk, qt2, npairs, scale, 1, NI);
}

static inline __attribute__((always_inline)) void pv_block_bf16_ni(float *OT, int tqp, const uint32_t *p2,
                                                                   const uint16_t *vt, int ldvt, int npairs, int dh,
                                                                   int accumulate, const int NI) {
    int c = 0;
    for (; c + 4 <= dh; c += 4)
        pv_rows_bf16(OT + (size_t)c * tqp, tqp, p2, vt + (size_t)c * ldvt, ldvt, npairs, accumulate, 4, NI);
    for (; c < dh; c++)
        pv_rows_bf16(OT + (size_t)c * tqp, tqp, p2, vt + (size_t)c * ldvt, ldvt, npairs, accumulate, 1, NI);
}

static void qk_block_bf16(float *ST, int tqp, const uint16_t *kbf, int ldk, const uint32_t *qt2, int npairs,
                          float scale, int tk) {
    switch (tqp / 16) {
    case 1: qk_block_bf16_ni(ST, tqp, kbf, ldk, qt2, npairs, scale, tk, 1); break;
    case 2: qk_block_bf16_ni(ST, tqp, kbf, ldk, qt2, npairs, scale, tk, 2); break;
    case 3: qk_block_bf16_ni(ST, tqp, kbf, ldk, qt2, npairs, scale, tk, 3); break;
    case 4: qk_block_bf16_ni(ST, tqp, kbf, ldk, qt2, npairs, scale, tk, 4); break;
    case 5: qk_block_bf16_ni(ST, tqp, kbf, ldk, qt2, npairs, scale, tk, 5); break;
    default: qk_block_bf16_ni(ST, tqp, kbf, ldk, qt2, npairs, scale, tk, 6); break;
    }
}

static void pv_block_bf16(float *OT, int tqp, const uint32_t *p2, const uint16_t *vt, int ldvt, int npairs, int dh,
                          int accumulate) {
    switch (tqp / 16) {
    case 1: pv_block_bf16_ni(OT, tqp, p2, vt, ldvt, npairs, dh, accumulate, 1); break;
    case 2: pv_block_bf16_ni(OT, tqp, p2, vt, ldvt, npairs, dh, accumulate, 2); break;
    case 3: pv_block_bf16_ni(OT, tqp, p2, vt, ldvt, npairs, dh, accumulate, 3); break;
    case 4: pv_block_bf16_ni(OT, tqp, p2, vt, ldvt, npairs, dh, accumulate, 4); break;
    case 5: pv_block_bf16_ni(OT, tqp, p2, vt, ldvt, npairs, dh, accumulate, 5); break;
    default: pv_block_bf16_ni(OT, tqp, p2, vt, ldvt, npairs, dh, accumulate, 6); break;
    }
}

/*
 * Rounds keys [j0, j0 + n) of K (rows of dhp) and V^T (rows of ldvt) of one (batch, head); tmp: n * dh bf16
 * (V's rows, then written column by column so that V^T's rows are written in runs). Padding (an odd dh's last
 * column, V^T's columns from n_kv to ldvt) is zero.
 */
static void pack_kv_bf16(uint16_t *kbf, uint16_t *vt, const float *k, const float *v, const ops_attn_desc *d,
                         int dhp, int ldvt, int b, int h, int j0, int n, uint16_t *tmp) {
    int dh = d->head_dim;
    for (int j = j0; j < j0 + n; j++) {
        uint16_t *kr = kbf + (size_t)j * dhp;
        ops_round_bf16(kr, k + ((size_t)b * d->n_kv + j) * d->k_stride + (size_t)h * dh, (size_t)dh);
        if (dhp > dh) kr[dh] = 0;
        ops_round_bf16(tmp + (size_t)(j - j0) * dh, v + ((size_t)b * d->n_kv + j) * d->v_stride + (size_t)h * dh,
                       (size_t)dh);
    }
    for (int c = 0; c < dh; c++) {
        uint16_t *dst = vt + (size_t)c * ldvt + j0;
        for (int j = 0; j < n; j++) dst[j] = tmp[(size_t)j * dh + c];
        if (j0 + n == d->n_kv)
            for (int j = d->n_kv; j < ldvt; j++) dst[j - j0] = 0;
    }
}

/* QT2[cp][i] = the tile's query i, elements (2cp, 2cp + 1), rounded; zero for padded queries and columns. */
static void pack_qt_bf16(uint32_t *qt2, int tqp, const float *q, int qs, int dh, int tq, uint16_t *tmp) {
    int npairs = (dh + 1) / 2;
    for (int i = 0; i < tqp; i++) {
        if (i < tq) ops_round_bf16(tmp, q + (size_t)i * qs, (size_t)dh);
        tmp[dh] = 0;
        for (int cp = 0; cp < npairs; cp++)
            qt2[(size_t)cp * tqp + i] = i < tq ? (uint32_t)tmp[2 * cp] | (uint32_t)tmp[2 * cp + 1] << 16 : 0;
    }
}

static void attn_tile_bf16(float *out, const float *q, const uint16_t *kbf, const uint16_t *vt,
                           const ops_attn_desc *d, const attn_plan *p, int b, int h, int i0, uint32_t *QT2,
                           float *ST, uint32_t *P2, float *OT, float *m, float *l, uint16_t *row) {
    int dh = d->head_dim, tq = imin(d->n_q - i0, p->tq), kv_end = tile_kv_end(d, i0, tq);
    int tqp = (tq + 15) / 16 * 16, dhp = (dh + 1) & ~1, npairs = dhp / 2;
    pack_qt_bf16(QT2, tqp, q + ((size_t)b * d->n_q + i0) * d->q_stride + (size_t)h * dh, d->q_stride, dh, tq, row);
    for (int i = 0; i < tqp; i++) m[i] = -INFINITY, l[i] = 0.0f;
    for (int j0 = 0; j0 < kv_end; j0 += p->tk) {
        int tk = imin(kv_end - j0, p->tk);
        qk_block_bf16(ST, tqp, kbf + (size_t)j0 * dhp, dhp, QT2, npairs, d->scale, tk);
        softmax_block_t(ST, tqp, tk, i0, j0, d->causal, m, l, OT, dh, P2, 1.0f);
        pv_block_bf16(OT, tqp, P2, vt + j0, p->ldvt, (tk + 1) / 2, dh, j0 > 0);
    }
    write_tile_t(out, d, b, h, i0, tq, OT, tqp, l);
}

#endif

/* ---- AMX path (precision bf16, CPUs with AMX-BF16) -------------------------------- */

#if HAVE_AMX_ATTENTION

/*
 * The bf16 path's tiles and layouts with the products on AMX tiles (tdpbf16ps: a 16 x 16 float32 tile += a
 * 16-row tile of bf16 pairs times a tile of 16 rows of pairs, 16 x 16 x 32 multiply-adds in one instruction).
 * The layouts the AVX512_BF16 kernel uses are exactly AMX's operands:
 *   S^T [keys, queries] = K Q^T: A = 16 rows of K (32 of dh per tile), B = QT2 (pairs of dh down the rows,
 *     16 queries across), C = 16 keys x 16 queries;
 *   O^T [dh, queries] += V^T P^T: A = 16 rows of V^T (32 keys per tile), B = P2 (pairs of keys down the rows),
 *     C = 16 columns of dh x 16 queries.
 * A tile is always AMX_Q_TILE = 64 queries (4 accumulator tiles; a short tile's padded queries are zero). S^T
 * is stored unscaled: the softmax multiplies by the scale inside its exp argument (one FMA). Tiles hold whole
 * groups of 16 rows, so ST, OT and P2 have whole groups, and K and V^T have 16 rows of slack at their end:
 * rows past the last key or dh column hold garbage that no kept value depends on (row r of a product depends
 * on row r of A only); P2's rows past the block's keys are zeroed, and V^T's columns past n_kv are zero.
 * Measured on a 2-core Xeon with AMX (2 threads, best of 3): SD 1.5's 64x64 self-attention (2 x 8 heads of 40,
 * 4096 tokens) 83 ms against 209 in float32 and 239 with the AVX512_BF16 kernel; the VAE's one head of 512 over
 * 4096 positions 29 ms against 119 and 159.
 *
 * Tile registers: 0-3 accumulators (16 x 16 float32), 4 A (16 rows x 32 bf16), 5 A's last dh columns when dh
 * is not a multiple of 32 (16 rows x dh % 32), 6 B (16 rows of 16 pairs), 7 B's last (dh % 32) / 2 rows.
 */
typedef struct amx_tilecfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16]; /* bytes per row of each tile */
    uint8_t rows[16];
} amx_tilecfg;

/* The tile registers as above for rows of dhp bf16 in K (tail = dhp % 32 columns in tiles 5 and 7). */
__attribute__((target("amx-tile,amx-bf16"))) static void amx_configure(int dhp) {
    amx_tilecfg c;
    int tail = dhp % 32;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) c.colsb[t] = 64, c.rows[t] = 16;
    if (tail) c.colsb[5] = (uint16_t)(2 * tail), c.rows[7] = (uint8_t)(tail / 2);
    __asm__ volatile("" ::: "memory");
    _tile_loadconfig(&c);
}

__attribute__((target("amx-tile,amx-bf16"))) static void amx_release(void) { _tile_release(); }

/* ST [round16(tk), 64] = K_block QT2^T (unscaled), keys of the block from kbf (rows of dhp). */
__attribute__((target("amx-tile,amx-bf16"))) static void qk_block_amx(float *ST, const uint16_t *kbf, int dhp,
                                                                   const uint32_t *qt2, int tk) {
    const int tqp = AMX_Q_TILE;
    size_t ks = (size_t)dhp * 2, qs = (size_t)tqp * 4, ss = (size_t)tqp * 4;
    int nfull = dhp / 32, tail = dhp % 32;
    __asm__ volatile("" ::: "memory"); /* QT2 is written before the tile loads read it */
    for (int r0 = 0; r0 < tk; r0 += 16) {
        const uint16_t *kr = kbf + (size_t)r0 * dhp;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int kc = 0; kc < nfull; kc++) {
            const uint32_t *qb = qt2 + (size_t)16 * kc * tqp;
            _tile_loadd(4, kr + 32 * kc, ks);
            _tile_loadd(6, qb, qs);
            _tile_dpbf16ps(0, 4, 6);
            _tile_loadd(6, qb + 16, qs);
            _tile_dpbf16ps(1, 4, 6);
            _tile_loadd(6, qb + 32, qs);
            _tile_dpbf16ps(2, 4, 6);
            _tile_loadd(6, qb + 48, qs);
            _tile_dpbf16ps(3, 4, 6);
        }
        if (tail) {
            const uint32_t *qb = qt2 + (size_t)16 * nfull * tqp;
            _tile_loadd(5, kr + 32 * nfull, ks);
            _tile_loadd(7, qb, qs);
            _tile_dpbf16ps(0, 5, 7);
            _tile_loadd(7, qb + 16, qs);
            _tile_dpbf16ps(1, 5, 7);
            _tile_loadd(7, qb + 32, qs);
            _tile_dpbf16ps(2, 5, 7);
            _tile_loadd(7, qb + 48, qs);
            _tile_dpbf16ps(3, 5, 7);
        }
        float *sr = ST + (size_t)r0 * tqp;
        _tile_stored(0, sr, ss);
        _tile_stored(1, sr + 16, ss);
        _tile_stored(2, sr + 32, ss);
        _tile_stored(3, sr + 48, ss);
    }
}

/* OT [round16(dh), 64] (+)= V_block^T P2^T over npairs pairs of keys (a multiple of 16: P2's rows past the
 * block's keys are zero); vt: the block's first key in V^T (rows of ldvt). */
__attribute__((target("amx-tile,amx-bf16"))) static void pv_block_amx(float *OT, const uint32_t *p2,
                                                                   const uint16_t *vt, int ldvt, int npairs, int dh,
                                                                   int accumulate) {
    const int tqp = AMX_Q_TILE;
    size_t vs = (size_t)ldvt * 2, ps = (size_t)tqp * 4, os = (size_t)tqp * 4;
    __asm__ volatile("" ::: "memory"); /* P2 and the rescaled OT are written before the tile loads read them */
    for (int c0 = 0; c0 < dh; c0 += 16) {
        float *orow = OT + (size_t)c0 * tqp;
        if (accumulate) {
            _tile_loadd(0, orow, os);
            _tile_loadd(1, orow + 16, os);
            _tile_loadd(2, orow + 32, os);
            _tile_loadd(3, orow + 48, os);
        } else {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
        }
        const uint16_t *vr = vt + (size_t)c0 * ldvt;
        for (int jp = 0; jp < npairs; jp += 16) {
            const uint32_t *pb = p2 + (size_t)jp * tqp;
            _tile_loadd(4, vr + 2 * jp, vs);
            _tile_loadd(6, pb, ps);
            _tile_dpbf16ps(0, 4, 6);
            _tile_loadd(6, pb + 16, ps);
            _tile_dpbf16ps(1, 4, 6);
            _tile_loadd(6, pb + 32, ps);
            _tile_dpbf16ps(2, 4, 6);
            _tile_loadd(6, pb + 48, ps);
            _tile_dpbf16ps(3, 4, 6);
        }
        _tile_stored(0, orow, os);
        _tile_stored(1, orow + 16, os);
        _tile_stored(2, orow + 32, os);
        _tile_stored(3, orow + 48, os);
    }
}

static void attn_tile_amx(float *out, const float *q, const uint16_t *kbf, const uint16_t *vt,
                          const ops_attn_desc *d, const attn_plan *p, int b, int h, int i0, uint32_t *QT2, float *ST,
                          uint32_t *P2, float *OT, float *m, float *l, uint16_t *row) {
    const int tqp = AMX_Q_TILE;
    int dh = d->head_dim, tq = imin(d->n_q - i0, p->tq), kv_end = tile_kv_end(d, i0, tq);
    pack_qt_bf16(QT2, tqp, q + ((size_t)b * d->n_q + i0) * d->q_stride + (size_t)h * dh, d->q_stride, dh, tq, row);
    for (int i = 0; i < tqp; i++) m[i] = -INFINITY, l[i] = 0.0f;
    for (int j0 = 0; j0 < kv_end; j0 += p->tk) {
        int tk = imin(kv_end - j0, p->tk), npairs = (tk + 1) / 2, npairs16 = (int)round16((size_t)npairs);
        qk_block_amx(ST, kbf + (size_t)j0 * p->dhp, p->dhp, QT2, tk);
        softmax_block_t(ST, tqp, tk, i0, j0, d->causal, m, l, OT, dh, P2, d->scale);
        memset(P2 + (size_t)npairs * tqp, 0, (size_t)(npairs16 - npairs) * tqp * sizeof *P2);
        pv_block_amx(OT, P2, vt + j0, p->ldvt, npairs16, dh, j0 > 0);
    }
    write_tile_t(out, d, b, h, i0, tq, OT, tqp, l);
}

#endif

/* ---- entry point ----------------------------------------------------------- */

int ops_attention(float *out, const float *q, const float *k, const float *v, const ops_attn_desc *d, void *ws,
                  size_t ws_bytes, const ops_ctx *ctx, sd_error *err) {
    int threads = ops_get_threads();
    if (d->n_q <= 0 || d->batch <= 0 || d->heads <= 0) return 0;
    if (d->n_kv <= 0 || d->head_dim <= 0)
        return sd_err(err, SD_EINTERNAL, "attention: %d keys of dimension %d", d->n_kv, d->head_dim);
    if (ws_bytes < ops_attention_workspace(d, threads, ctx) || ((uintptr_t)ws & 63))
        return sd_err(err, SD_EINTERNAL, "attention: workspace of %zu bytes, need %zu (64-byte aligned)", ws_bytes,
                      ops_attention_workspace(d, threads, ctx));
    double t0 = prof_begin();
    attn_plan p;
    plan_attention(&p, d, attn_kind(ctx, d->head_dim));
    if (p.kind == ATTN_AMX && !(d->scale > 0)) /* its softmax takes the max before scaling */
        return sd_err(err, SD_EINTERNAL, "attention: scale %g, the AMX kernel needs a positive one", d->scale);
    int n_tiles = (d->n_q + p.tq - 1) / p.tq, n_groups = (n_tiles + p.group - 1) / p.group;
    int n_items = d->batch * d->heads * (p.group > 1 ? n_groups : n_tiles);
#pragma omp parallel num_threads(threads)
    {
        float *mine = (float *)ws + p.shared_floats + p.thread_floats * (size_t)omp_get_thread_num();
        float *QT = mine, *ST = QT + (size_t)d->head_dim * p.tqp, *OT = ST + (size_t)p.st_rows * p.tqp;
        float *m = OT + (size_t)p.ot_rows * p.tqp, *l = m + p.tqp;
        (void)l; /* builds without AVX-512 have only the BLAS path, which keeps its own */
#if HAVE_BF16_ATTENTION
        size_t bh_n = (size_t)d->batch * d->heads, k_slack = p.kind == ATTN_AMX ? 16 : 0;
        uint16_t *kbf = ws, *vt = kbf + (bh_n * d->n_kv + k_slack) * p.dhp;
        uint32_t *P2 =
            (uint32_t *)(mine + round16((size_t)p.tqp * ((size_t)d->head_dim + p.st_rows + p.ot_rows + 2)));
        uint16_t *row = (uint16_t *)(P2 + round16((size_t)p.p2_rows * p.tqp));
        if (p.kind >= ATTN_BF16) {
            int chunks = (d->n_kv + KV_PACK_ROWS - 1) / KV_PACK_ROWS;
#pragma omp for schedule(static)
            for (size_t u = 0; u < bh_n * chunks; u++) {
                size_t bh = u / chunks;
                int j0 = (int)(u % chunks) * KV_PACK_ROWS;
                pack_kv_bf16(kbf + bh * d->n_kv * p.dhp, vt + bh * d->head_dim * p.ldvt, k, v, d, p.dhp, p.ldvt,
                             (int)(bh / d->heads), (int)(bh % d->heads), j0, imin(KV_PACK_ROWS, d->n_kv - j0), row);
            }
        }
#endif
        int amx_ready = 0; /* AMX: this thread's tile registers are configured */
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < n_items; it++) {
            int t = it % n_tiles, h = (it / n_tiles) % d->heads, b = it / (n_tiles * d->heads);
            size_t bh = (size_t)b * d->heads + h;
            (void)bh;
#if HAVE_AMX_ATTENTION
            if (p.kind == ATTN_AMX) {
                if (!amx_ready) amx_configure(p.dhp);
                amx_ready = 1;
                attn_tile_amx(out, q, kbf + bh * d->n_kv * p.dhp, vt + bh * d->head_dim * p.ldvt, d, &p, b, h,
                              t * p.tq, (uint32_t *)QT, ST, P2, OT, m, l, row);
                continue;
            }
#endif
#if HAVE_BF16_ATTENTION
            if (p.kind == ATTN_BF16) {
                attn_tile_bf16(out, q, kbf + bh * d->n_kv * p.dhp, vt + bh * d->head_dim * p.ldvt, d, &p, b, h,
                               t * p.tq, (uint32_t *)QT, ST, P2, OT, m, l, row);
                continue;
            }
#endif
#if HAVE_LANES_ATTENTION
            if (p.kind == ATTN_LANES) { /* items are groups of tiles */
                int gi = it % n_groups, hh = (it / n_groups) % d->heads, bb = it / (n_groups * d->heads);
                attn_group_lanes(out, q, k, v, d, &p, bb, hh, gi * p.group, imin(p.group, n_tiles - gi * p.group),
                                  mine, mine + round16((size_t)p.st_rows * p.tqp));
                continue;
            }
#endif
            float *S = mine, *O = S + (size_t)p.tq * p.tk, *mrow = O + (size_t)p.tq * d->head_dim;
            attn_tile_blas(out, q, k, v, d, &p, b, h, t * p.tq, S, O, mrow, mrow + p.tq, ctx);
        }
#if HAVE_AMX_ATTENTION
        if (amx_ready) amx_release();
#else
        (void)amx_ready;
#endif
    }
    prof_end(PROF_ATTENTION, t0, 4.0 * d->batch * d->heads * (double)d->n_q * d->n_kv * d->head_dim);
    return 0;
}
