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
 * Two implementations of the two products:
 *  - AVX-512 (default where available): K of every (batch, head) is first
 *    transposed once into the workspace as K^T [d, n_kv padded to 64], then
 *    register-blocked kernels compute 6x64 tiles of S (broadcast q, FMA with
 *    rows of K^T) and 6-12 row x 16-64 column tiles of O (broadcast P, FMA
 *    with rows of V). No per-call packing: OpenBLAS re-packs K and V for every
 *    query tile and ran at ~45% of its sgemm speed on head_dim 40.
 *  - ops_gemm calls per tile (OpenBLAS sgemm; the portable fallback).
 * Workspace: K^T (O(n_kv * heads * d), only for AVX-512) plus per thread S, O,
 * m and l: O(tile * (block + d)), never [n_q, n_kv].
 */
#include "ops.h"

#include <math.h>
#include <omp.h>

#include "ops_prof.h"
#include "ops_vmath.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#define HAVE_AVX512_ATTENTION 1
#else
#define HAVE_AVX512_ATTENTION 0
#endif

/* Tile sizes: BLAS path, then AVX-512 path (multiples of the kernels' 6/8/12 rows and 64 keys). */
#define BLAS_Q_TILE 64
#define BLAS_KV_BLOCK 1024
#define AVX_Q_TILE 96
#define AVX_KV_BLOCK 512
#define KEY_PAD 64

/*
 * Whether ctx's attention kernel is the AVX-512 one (AUTO, in builds that have it). In bf16 too:
 * the GEMM route with its two products in bf16 measured slower than this kernel in fp32 (SD 1.5 at
 * 512x512, one U-Net step: 1.30 s against 1.04 s of attention), which is also the more exact one.
 */
static int use_avx512(const ops_ctx *ctx) { return HAVE_AVX512_ATTENTION && ctx->attn_kernel != OPS_ATTN_BLAS; }

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }
static int imin(int a, int b) { return a < b ? a : b; }

/* Per-call geometry of either path. */
typedef struct attn_plan {
    int tq, tk;           /* query tile, key block */
    int ldo;              /* row stride of the O tile */
    int n_pad;            /* keys padded (AVX-512: K^T's valid row length) */
    int ldkt, lds;        /* row strides of K^T and S: a cache line over a multiple of 64 floats (AVX-512),
                             so the kernels' 6-40 live rows do not all share a few cache sets (at 64x64
                             latents K^T rows were 16 KiB apart); measured 2-4% on that shape */
    size_t kt_floats;     /* K^T of all (batch, head) pairs, 0 for BLAS */
    size_t thread_floats; /* S, O, m, l of one thread */
} attn_plan;

static void plan_attention(attn_plan *p, const ops_attn_desc *d, int avx) {
    int qt = avx ? AVX_Q_TILE : BLAS_Q_TILE, kb = avx ? AVX_KV_BLOCK : BLAS_KV_BLOCK;
    p->tq = imin(d->n_q, qt);
    p->tk = imin(d->n_kv, kb);
    p->ldo = avx ? (int)round16((size_t)d->head_dim) : d->head_dim;
    p->n_pad = avx ? (d->n_kv + KEY_PAD - 1) / KEY_PAD * KEY_PAD : d->n_kv;
    p->ldkt = avx ? p->n_pad + 16 : p->n_pad;
    p->lds = avx ? (p->tk + KEY_PAD - 1) / KEY_PAD * KEY_PAD + 16 : p->tk;
    p->kt_floats = avx ? round16((size_t)d->batch * d->heads * d->head_dim * p->ldkt) : 0;
    p->thread_floats = round16((size_t)p->tq * p->lds + (size_t)p->tq * p->ldo + 2 * (size_t)p->tq);
}

size_t ops_attention_workspace(const ops_attn_desc *d, int threads, const ops_ctx *ctx) {
    attn_plan p;
    plan_attention(&p, d, use_avx512(ctx));
    return (p.kt_floats + p.thread_floats * (size_t)(threads > 0 ? threads : 1)) * sizeof(float);
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

/* ---- AVX-512 path ---------------------------------------------------------- */

#if HAVE_AVX512_ATTENTION

/* kt: [dh, n_pad] (row stride ldkt) = K[b, :, h*dh : (h+1)*dh]^T, zero beyond n_kv. */
static void pack_kt(float *kt, const float *k, const ops_attn_desc *d, int n_pad, int ldkt, int b, int h) {
    int dh = d->head_dim;
    const float *kb = k + (size_t)b * d->n_kv * d->k_stride + (size_t)h * dh;
    for (int j0 = 0; j0 < n_pad; j0 += 16) {
        for (int c = 0; c < dh; c++) {
            float *dst = kt + (size_t)c * ldkt + j0;
            for (int j = 0; j < 16; j++) dst[j] = j0 + j < d->n_kv ? kb[(size_t)(j0 + j) * d->k_stride + c] : 0.0f;
        }
    }
}

/* S[r][0, 64) = scale * sum_c q[r][c] * kt[c][0, 64) for R rows (R constant after inlining). */
static inline __attribute__((always_inline)) void qk_rows(float *S, int lds, const float *q, int qs, const float *kt,
                                                          int ldkt, int dh, float scale, const int R) {
    __m512 acc[6][4];
    for (int r = 0; r < R; r++)
        for (int u = 0; u < 4; u++) acc[r][u] = _mm512_setzero_ps();
    for (int c = 0; c < dh; c++) {
        const float *kc = kt + (size_t)c * ldkt;
        __m512 k0 = _mm512_loadu_ps(kc), k1 = _mm512_loadu_ps(kc + 16);
        __m512 k2 = _mm512_loadu_ps(kc + 32), k3 = _mm512_loadu_ps(kc + 48);
        for (int r = 0; r < R; r++) {
            __m512 qb = _mm512_set1_ps(q[(size_t)r * qs + c]);
            acc[r][0] = _mm512_fmadd_ps(qb, k0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(qb, k1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(qb, k2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(qb, k3, acc[r][3]);
        }
    }
    __m512 sc = _mm512_set1_ps(scale);
    for (int r = 0; r < R; r++)
        for (int u = 0; u < 4; u++) _mm512_storeu_ps(S + (size_t)r * lds + 16 * u, _mm512_mul_ps(acc[r][u], sc));
}

/* S [tq, tk rounded up to 64] for one key block. */
static void qk_block(float *S, int lds, const float *q, int qs, const float *kt, int ldkt, int dh, float scale, int tq,
                     int tk) {
    for (int j = 0; j < tk; j += 64) {
        int i = 0;
        for (; i + 6 <= tq; i += 6) qk_rows(S + (size_t)i * lds + j, lds, q + (size_t)i * qs, qs, kt + j, ldkt, dh, scale, 6);
        for (; i < tq; i++) qk_rows(S + (size_t)i * lds + j, lds, q + (size_t)i * qs, qs, kt + j, ldkt, dh, scale, 1);
    }
}

/*
 * O[r][c0, c0 + 16*NV) (+)= sum_{j < tk} P[r][j] * v[j][c0, ...) for R rows;
 * columns at or beyond dh are masked off. R, NV constant after inlining.
 */
static inline __attribute__((always_inline)) void pv_rows(float *O, int ldo, const float *P, int ldp, const float *v,
                                                          int vs, int tk, int c0, int dh, int accumulate, const int R,
                                                          const int NV) {
    __m512 acc[12][4];
    __mmask16 m[4];
    for (int u = 0; u < NV; u++) {
        int left = dh - c0 - 16 * u;
        m[u] = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
    }
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NV; u++)
            acc[r][u] = accumulate ? _mm512_loadu_ps(O + (size_t)r * ldo + c0 + 16 * u) : _mm512_setzero_ps();
    for (int j = 0; j < tk; j++) {
        const float *vj = v + (size_t)j * vs + c0;
        __m512 vv[4];
        for (int u = 0; u < NV; u++) vv[u] = _mm512_maskz_loadu_ps(m[u], vj + 16 * u);
        for (int r = 0; r < R; r++) {
            __m512 pb = _mm512_set1_ps(P[(size_t)r * ldp + j]);
            for (int u = 0; u < NV; u++) acc[r][u] = _mm512_fmadd_ps(pb, vv[u], acc[r][u]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int u = 0; u < NV; u++) _mm512_storeu_ps(O + (size_t)r * ldo + c0 + 16 * u, acc[r][u]);
}

/* Rows [0, tq) of O for columns [c0, c0 + 16*nv), in row blocks sized so R*NV accumulators fit in registers. */
static void pv_cols(float *O, int ldo, const float *P, int ldp, const float *v, int vs, int tk, int c0, int dh,
                    int acc, int tq, int nv) {
    int i = 0;
    switch (nv) {
    case 4:
        for (; i + 6 <= tq; i += 6) pv_rows(O + (size_t)i * ldo, ldo, P + (size_t)i * ldp, ldp, v, vs, tk, c0, dh, acc, 6, 4);
        for (; i < tq; i++) pv_rows(O + (size_t)i * ldo, ldo, P + (size_t)i * ldp, ldp, v, vs, tk, c0, dh, acc, 1, 4);
        break;
    case 3:
        for (; i + 8 <= tq; i += 8) pv_rows(O + (size_t)i * ldo, ldo, P + (size_t)i * ldp, ldp, v, vs, tk, c0, dh, acc, 8, 3);
        for (; i < tq; i++) pv_rows(O + (size_t)i * ldo, ldo, P + (size_t)i * ldp, ldp, v, vs, tk, c0, dh, acc, 1, 3);
        break;
    case 2:
        for (; i + 12 <= tq; i += 12) pv_rows(O + (size_t)i * ldo, ldo, P + (size_t)i * ldp, ldp, v, vs, tk, c0, dh, acc, 12, 2);
        for (; i < tq; i++) pv_rows(O + (size_t)i * ldo, ldo, P + (size_t)i * ldp, ldp, v, vs, tk, c0, dh, acc, 1, 2);
        break;
    default:
        for (; i + 12 <= tq; i += 12) pv_rows(O + (size_t)i * ldo, ldo, P + (size_t)i * ldp, ldp, v, vs, tk, c0, dh, acc, 12, 1);
        for (; i < tq; i++) pv_rows(O + (size_t)i * ldo, ldo, P + (size_t)i * ldp, ldp, v, vs, tk, c0, dh, acc, 1, 1);
        break;
    }
}

static void attn_tile_avx512(float *out, const float *q, const float *v, const float *kt_all, const ops_attn_desc *d,
                             const attn_plan *p, int b, int h, int i0, float *S, float *O, float *mrow, float *lrow) {
    int dh = d->head_dim, tq = imin(d->n_q - i0, p->tq), kv_end = tile_kv_end(d, i0, tq);
    int lds = p->lds, nvec = (dh + 15) / 16;
    const float *qt = q + ((size_t)b * d->n_q + i0) * d->q_stride + (size_t)h * dh;
    const float *kt = kt_all + ((size_t)b * d->heads + h) * dh * p->ldkt;
    const float *vb = v + (size_t)b * d->n_kv * d->v_stride + (size_t)h * dh;
    for (int i = 0; i < tq; i++) mrow[i] = -INFINITY, lrow[i] = 0.0f;
    for (int j0 = 0; j0 < kv_end; j0 += p->tk) {
        int tk = imin(kv_end - j0, p->tk);
        qk_block(S, lds, qt, d->q_stride, kt + j0, p->ldkt, dh, d->scale, tq, tk);
        softmax_block(S, lds, tq, tk, i0, j0, d->causal, mrow, lrow, O, p->ldo, dh);
        for (int u = 0; u < nvec; u += 4)
            pv_cols(O, p->ldo, S, lds, vb + (size_t)j0 * d->v_stride, d->v_stride, tk, 16 * u, dh, j0 > 0, tq,
                    imin(4, nvec - u));
    }
    write_tile(out, d, b, h, i0, tq, O, p->ldo, lrow);
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
    int avx = use_avx512(ctx);
    attn_plan p;
    plan_attention(&p, d, avx);
#if HAVE_AVX512_ATTENTION
    float *kt_all = ws;
#endif
    int n_tiles = (d->n_q + p.tq - 1) / p.tq, n_items = d->batch * d->heads * n_tiles;
    int lds = p.lds;
#pragma omp parallel num_threads(threads)
    {
        float *S = (float *)ws + p.kt_floats + p.thread_floats * (size_t)omp_get_thread_num();
        float *O = S + (size_t)p.tq * lds, *mrow = O + (size_t)p.tq * p.ldo, *lrow = mrow + p.tq;
#if HAVE_AVX512_ATTENTION
        if (avx) {
#pragma omp for schedule(static)
            for (int bh = 0; bh < d->batch * d->heads; bh++)
                pack_kt(kt_all + (size_t)bh * d->head_dim * p.ldkt, k, d, p.n_pad, p.ldkt, bh / d->heads,
                        bh % d->heads);
        }
#endif
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < n_items; it++) {
            int t = it % n_tiles, h = (it / n_tiles) % d->heads, b = it / (n_tiles * d->heads);
#if HAVE_AVX512_ATTENTION
            if (avx) {
                attn_tile_avx512(out, q, v, kt_all, d, &p, b, h, t * p.tq, S, O, mrow, lrow);
                continue;
            }
#endif
            attn_tile_blas(out, q, k, v, d, &p, b, h, t * p.tq, S, O, mrow, lrow, ctx);
        }
    }
    prof_end(PROF_ATTENTION, t0, 4.0 * d->batch * d->heads * (double)d->n_q * d->n_kv * d->head_dim);
    return 0;
}
