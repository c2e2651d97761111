/*
 * ops_attention.c - scaled dot-product attention with a streaming softmax.
 *
 * Work item = (batch, head, tile of Q_TILE queries). For each block of at
 * most KV_BLOCK keys:
 *   S = scale * Q_tile K_block^T                (sgemm, [tq, tk])
 *   m' = max(m, rowmax S); P = exp(S - m'); l = l*exp(m - m') + rowsum P
 *   O = O*exp(m - m') + P V_block               (sgemm, [tq, d])
 * and finally out = O / l. With n_kv <= KV_BLOCK (cross-attention, CLIP,
 * everything up to 32x32 latents) there is one block and this is exactly
 * softmax-then-multiply. Per thread the workspace holds S, O, m and l:
 * O(Q_TILE * (KV_BLOCK + d)) floats whatever the sequence length.
 */
#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>

#include "ops_vmath.h"

#define Q_TILE 64
#define KV_BLOCK 1024

/* Floats of one thread's workspace, rounded to 16 (64 bytes). */
static size_t attn_thread_floats(const ops_attn_desc *d) {
    size_t tq = d->n_q < Q_TILE ? (size_t)d->n_q : Q_TILE, tk = d->n_kv < KV_BLOCK ? (size_t)d->n_kv : KV_BLOCK;
    size_t n = tq * tk + tq * (size_t)d->head_dim + 2 * tq;
    return (n + 15) & ~(size_t)15;
}

size_t ops_attention_workspace(const ops_attn_desc *d, int threads) {
    return attn_thread_floats(d) * sizeof(float) * (size_t)(threads > 0 ? threads : 1);
}

/* One (batch, head, query tile) item; S, O, m, l are the thread's workspace. */
static void attn_tile(float *out, const float *q, const float *k, const float *v, const ops_attn_desc *d, int b,
                      int h, int i0, float *S, float *O, float *mrow, float *lrow) {
    int dh = d->head_dim, tq = d->n_q - i0 < Q_TILE ? d->n_q - i0 : Q_TILE;
    const float *qt = q + ((size_t)b * d->n_q + i0) * d->q_stride + (size_t)h * dh;
    const float *kb = k + (size_t)b * d->n_kv * d->k_stride + (size_t)h * dh;
    const float *vb = v + (size_t)b * d->n_kv * d->v_stride + (size_t)h * dh;
    int kv_end = d->n_kv;
    if (d->causal && i0 + tq < kv_end) kv_end = i0 + tq;
    for (int i = 0; i < tq; i++) {
        mrow[i] = -INFINITY;
        lrow[i] = 0.0f;
    }
    for (int j0 = 0; j0 < kv_end; j0 += KV_BLOCK) {
        int tk = kv_end - j0 < KV_BLOCK ? kv_end - j0 : KV_BLOCK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tq, tk, dh, d->scale, qt, d->q_stride,
                    kb + (size_t)j0 * d->k_stride, d->k_stride, 0.0f, S, tk);
        for (int i = 0; i < tq; i++) {
            float *s = S + (size_t)i * tk;
            int valid = tk;
            if (d->causal) { /* keys j0 + j > i0 + i are masked: probability exactly 0 */
                valid = i0 + i - j0 + 1;
                if (valid > tk) valid = tk;
                if (valid < 0) valid = 0;
                for (int j = valid; j < tk; j++) s[j] = 0.0f;
            }
            if (valid == 0) continue; /* cannot happen for j0 = 0; later blocks keep m, l */
            float mx = s[0];
            for (int j = 1; j < valid; j++) mx = s[j] > mx ? s[j] : mx;
            float m_new = mrow[i] > mx ? mrow[i] : mx, sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int j = 0; j < valid; j++) {
                s[j] = vm_expf(s[j] - m_new);
                sum += s[j];
            }
            if (j0 > 0) {
                float corr = vm_expf(mrow[i] - m_new);
                lrow[i] = lrow[i] * corr + sum;
                if (corr != 1.0f) {
                    float *o = O + (size_t)i * dh;
#pragma omp simd
                    for (int c = 0; c < dh; c++) o[c] *= corr;
                }
            } else {
                lrow[i] = sum;
            }
            mrow[i] = m_new;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tq, dh, tk, 1.0f, S, tk,
                    vb + (size_t)j0 * d->v_stride, d->v_stride, j0 > 0 ? 1.0f : 0.0f, O, dh);
    }
    float *ot = out + ((size_t)b * d->n_q + i0) * d->out_stride + (size_t)h * dh;
    for (int i = 0; i < tq; i++) {
        float inv = 1.0f / lrow[i];
        const float *o = O + (size_t)i * dh;
        float *dst = ot + (size_t)i * d->out_stride;
#pragma omp simd
        for (int c = 0; c < dh; c++) dst[c] = o[c] * inv;
    }
}

int ops_attention(float *out, const float *q, const float *k, const float *v, const ops_attn_desc *d, void *ws,
                  size_t ws_bytes, sd_error *err) {
    int threads = ops_get_threads();
    if (d->n_q <= 0 || d->batch <= 0 || d->heads <= 0) return 0;
    if (d->n_kv <= 0 || d->head_dim <= 0)
        return sd_err(err, SD_EINTERNAL, "attention: %d keys of dimension %d", d->n_kv, d->head_dim);
    if (ws_bytes < ops_attention_workspace(d, threads) || ((uintptr_t)ws & 63))
        return sd_err(err, SD_EINTERNAL, "attention: workspace of %zu bytes, need %zu (64-byte aligned)", ws_bytes,
                      ops_attention_workspace(d, threads));
    size_t per = attn_thread_floats(d);
    size_t tq = d->n_q < Q_TILE ? (size_t)d->n_q : Q_TILE, tk = d->n_kv < KV_BLOCK ? (size_t)d->n_kv : KV_BLOCK;
    int n_tiles = (d->n_q + Q_TILE - 1) / Q_TILE;
    int n_items = d->batch * d->heads * n_tiles;
#pragma omp parallel num_threads(threads)
    {
        float *S = (float *)ws + per * (size_t)omp_get_thread_num();
        float *O = S + tq * tk, *mrow = O + tq * (size_t)d->head_dim, *lrow = mrow + tq;
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < n_items; it++) {
            int t = it % n_tiles, h = (it / n_tiles) % d->heads, b = it / (n_tiles * d->heads);
            attn_tile(out, q, k, v, d, b, h, t * Q_TILE, S, O, mrow, lrow);
        }
    }
    return 0;
}
