/* transformer2d.c - Transformer2DModel forward (see transformer2d.h). */
#include "transformer2d.h"

#include "ops_comm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Rows of the feed-forward processed at once: bounds its [rows, 2*inner] buffer to 16 MB. */
#define FF_CHUNK_FLOATS ((size_t)4 << 20)

static int get(const sd_weights *w, const sd_tensor **t, sd_error *err, int64_t d0, int64_t d1, int ndim,
               const char *fmt, const char *prefix, int blk, const char *name) {
    int64_t shape[4] = {d0, d1, 1, 1};
    if (blk < 0) return sd_weights_getf(w, t, err, shape, ndim, fmt, prefix, name);
    return sd_weights_getf(w, t, err, shape, ndim, fmt, prefix, blk, name);
}

#define TOP "%s.%s"
#define BLK "%s.transformer_blocks.%d.%s"

/* One BasicTransformerBlock; attn1's K and V take kv1-wide inputs (C, or the context width D). */
static int load_block(transformer2d_block *b, const sd_weights *w, const char *p, int i, int C, int D, int kv1,
                      int inner, sd_error *err) {
    int rc;
    if ((rc = get(w, &b->norm1_w, err, C, 0, 1, BLK, p, i, "norm1.weight")) < 0 ||
        (rc = get(w, &b->norm1_b, err, C, 0, 1, BLK, p, i, "norm1.bias")) < 0 ||
        (rc = get(w, &b->norm2_w, err, C, 0, 1, BLK, p, i, "norm2.weight")) < 0 ||
        (rc = get(w, &b->norm2_b, err, C, 0, 1, BLK, p, i, "norm2.bias")) < 0 ||
        (rc = get(w, &b->norm3_w, err, C, 0, 1, BLK, p, i, "norm3.weight")) < 0 ||
        (rc = get(w, &b->norm3_b, err, C, 0, 1, BLK, p, i, "norm3.bias")) < 0 ||
        (rc = get(w, &b->a1_q, err, C, C, 2, BLK, p, i, "attn1.to_q.weight")) < 0 ||
        (rc = get(w, &b->a1_k, err, C, kv1, 2, BLK, p, i, "attn1.to_k.weight")) < 0 ||
        (rc = get(w, &b->a1_v, err, C, kv1, 2, BLK, p, i, "attn1.to_v.weight")) < 0 ||
        (rc = get(w, &b->a1_o, err, C, C, 2, BLK, p, i, "attn1.to_out.0.weight")) < 0 ||
        (rc = get(w, &b->a1_ob, err, C, 0, 1, BLK, p, i, "attn1.to_out.0.bias")) < 0 ||
        (rc = get(w, &b->a2_q, err, C, C, 2, BLK, p, i, "attn2.to_q.weight")) < 0 ||
        (rc = get(w, &b->a2_k, err, C, D, 2, BLK, p, i, "attn2.to_k.weight")) < 0 ||
        (rc = get(w, &b->a2_v, err, C, D, 2, BLK, p, i, "attn2.to_v.weight")) < 0 ||
        (rc = get(w, &b->a2_o, err, C, C, 2, BLK, p, i, "attn2.to_out.0.weight")) < 0 ||
        (rc = get(w, &b->a2_ob, err, C, 0, 1, BLK, p, i, "attn2.to_out.0.bias")) < 0 ||
        (rc = get(w, &b->ff1_w, err, 2 * inner, C, 2, BLK, p, i, "ff.net.0.proj.weight")) < 0 ||
        (rc = get(w, &b->ff1_b, err, 2 * inner, 0, 1, BLK, p, i, "ff.net.0.proj.bias")) < 0 ||
        (rc = get(w, &b->ff2_w, err, C, inner, 2, BLK, p, i, "ff.net.2.weight")) < 0 ||
        (rc = get(w, &b->ff2_b, err, C, 0, 1, BLK, p, i, "ff.net.2.bias")) < 0)
        return rc;
    return 0;
}

int transformer2d_load(transformer2d_model *t, const sd_weights *w, const char *prefix, int ch, int heads,
                       int ctx_dim, int n_blocks, int linear_proj, int groups, int only_cross, sd_error *err) {
    memset(t, 0, sizeof *t);
    t->only_cross = only_cross;
    t->ch = ch;
    t->heads = heads;
    t->ctx_dim = ctx_dim;
    t->inner = 4 * ch;
    t->heads_local = heads;
    t->inner_local = t->inner;
    t->linear_proj = linear_proj;
    t->n_blocks = n_blocks;
    t->groups = groups;
    int rc, pd = linear_proj ? 2 : 4;
    if ((rc = get(w, &t->norm_w, err, ch, 0, 1, TOP, prefix, -1, "norm.weight")) < 0 ||
        (rc = get(w, &t->norm_b, err, ch, 0, 1, TOP, prefix, -1, "norm.bias")) < 0 ||
        (rc = get(w, &t->proj_in_w, err, ch, ch, pd, TOP, prefix, -1, "proj_in.weight")) < 0 ||
        (rc = get(w, &t->proj_in_b, err, ch, 0, 1, TOP, prefix, -1, "proj_in.bias")) < 0 ||
        (rc = get(w, &t->proj_out_w, err, ch, ch, pd, TOP, prefix, -1, "proj_out.weight")) < 0 ||
        (rc = get(w, &t->proj_out_b, err, ch, 0, 1, TOP, prefix, -1, "proj_out.bias")) < 0)
        return rc;
    t->blocks = calloc((size_t)n_blocks, sizeof *t->blocks);
    if (!t->blocks) return sd_err(err, SD_ENOMEM, "out of memory loading %s", prefix);
    for (int i = 0; i < n_blocks; i++) {
        if ((rc = load_block(&t->blocks[i], w, prefix, i, ch, ctx_dim, only_cross ? ctx_dim : ch, t->inner, err)) < 0) {
            transformer2d_free(t);
            return rc;
        }
    }
    return 0;
}

/*
 * Keeps this rank's share (see transformer2d.h): heads [h0, h1) of every attention (q, k, v rows:
 * views; to_out columns: copies) and inner features [i0, i1) of every feed-forward (ff1 rows of both
 * GEGLU halves, ff2 columns: copies) and output channels of proj_in and proj_out (views). Norms and the
 * biases of the row-parallel layers stay whole (replicated).
 */
int transformer2d_shard(transformer2d_model *t, const ops_comm *comm, shard_store *store, sd_error *err) {
    if (!ops_comm_active(comm)) return 0;
    int P = comm->size, hd = t->ch / t->heads, rc = 0;
    if (t->heads % P || t->inner % P)
        return sd_err(err, SD_EINPUT, "tensor parallelism over %d ranks: %d attention heads of %d channels do not split evenly",
                      P, t->heads, t->ch);
    int h0, h1, i0, i1;
    ops_comm_share(comm, t->heads, &h0, &h1);
    ops_comm_share(comm, t->inner, &i0, &i1);
    int64_t c0 = (int64_t)h0 * hd, c1 = (int64_t)h1 * hd;
    for (int i = 0; i < t->n_blocks && rc == 0; i++) {
        transformer2d_block *b = &t->blocks[i];
        if ((rc = shard_rows(store, b->a1_q, c0, c1, &b->a1_q, err)) < 0 ||
            (rc = shard_rows(store, b->a1_k, c0, c1, &b->a1_k, err)) < 0 ||
            (rc = shard_rows(store, b->a1_v, c0, c1, &b->a1_v, err)) < 0 ||
            (rc = shard_cols(store, b->a1_o, c0, c1, &b->a1_o, err)) < 0 ||
            (rc = shard_rows(store, b->a2_q, c0, c1, &b->a2_q, err)) < 0 ||
            (rc = shard_rows(store, b->a2_k, c0, c1, &b->a2_k, err)) < 0 ||
            (rc = shard_rows(store, b->a2_v, c0, c1, &b->a2_v, err)) < 0 ||
            (rc = shard_cols(store, b->a2_o, c0, c1, &b->a2_o, err)) < 0 ||
            (rc = shard_rows2(store, b->ff1_w, i0, i1, t->inner + i0, t->inner + i1, &b->ff1_w, err)) < 0 ||
            (rc = shard_rows2(store, b->ff1_b, i0, i1, t->inner + i0, t->inner + i1, &b->ff1_b, err)) < 0 ||
            (rc = shard_cols(store, b->ff2_w, i0, i1, &b->ff2_w, err)) < 0)
            break;
    }
    if (rc == 0) {
        int o0, o1;
        ops_comm_share(comm, t->ch, &o0, &o1);
        if ((rc = shard_rows(store, t->proj_in_w, o0, o1, &t->proj_in_w, err)) == 0 &&
            (rc = shard_rows(store, t->proj_in_b, o0, o1, &t->proj_in_b, err)) == 0 &&
            (rc = shard_rows(store, t->proj_out_w, o0, o1, &t->proj_out_w, err)) == 0 &&
            (rc = shard_rows(store, t->proj_out_b, o0, o1, &t->proj_out_b, err)) == 0)
            t->proj_split = 1;
    }
    if (rc == 0) {
        t->heads_local = h1 - h0;
        t->inner_local = i1 - i0;
    }
    return rc;
}

void transformer2d_free(transformer2d_model *t) {
    free(t->blocks);
    t->blocks = NULL;
}

/* Scratch buffers of one forward call. */
typedef struct tf_bufs {
    float *h;     /* [M, C] the token stream */
    float *n;     /* [M, C] LayerNorm output, then attention output */
    float *q;     /* [M, C] */
    float *k, *v; /* [max(M, B*n_ctx), C] */
    float *f, *g; /* [rows, 2*inner], [rows, inner] feed-forward chunk */
    int ff_rows;
    void *ws;     /* attention workspace */
    size_t ws_bytes;
} tf_bufs;

/*
 * h += the all-reduced partial in q (tensor-parallel to_out / ff2) + bias: each element once, as
 * h + (sum + bias) (the one-rank layer's order), through the all-reduce's epilogue.
 */
static int allreduce_into(float *h, float *q, const sd_tensor *bias, int M, int C, ops_ctx *ops, sd_error *err) {
    ops_mark mark = ops_arena_mark(&ops->scratch);
    const float *b = bias ? ops_weight_f32(bias, ops, err) : NULL;
    int rc = bias && !b ? (err ? err->code : SD_ENOMEM) : 0;
    ops_reduce_epi e = {.out = h, .bias1 = b, .residual = h, .channels = C, .inner = 1};
    if (rc == 0) rc = ops_comm_allreduce_sum(ops->comm, q, (size_t)M * C, &e, ops, err);
    ops_arena_release(&ops->scratch, mark);
    return rc;
}

/*
 * h += to_out(attention(LN(h) W_q, src W_k, src W_v)); src = LN(h) itself (self) or the context.
 * Tensor-parallel (ops->comm): this rank's heads only (q, k, v are their rows of the weights, Cl =
 * heads_local * head_dim columns); to_out's columns for those heads give a partial [M, C] that is
 * all-reduced, then its bias and the residual are added once.
 */
static int attention_sublayer(const transformer2d_model *t, tf_bufs *s, int B, int n_q, const sd_tensor *ln_w,
                              const sd_tensor *ln_b, const sd_tensor *wq, const sd_tensor *wk, const sd_tensor *wv,
                              const sd_tensor *wo, const sd_tensor *bo, const float *ctx, int n_ctx, ops_ctx *ops,
                              sd_error *err) {
    int C = t->ch, M = B * n_q, rc, hd = C / t->heads, Cl = t->heads_local * hd;
    int n_kv = ctx ? n_ctx : n_q, kv_dim = ctx ? t->ctx_dim : C;
    ops_attn_desc ad = {.batch = B, .heads = t->heads_local, .head_dim = hd, .n_q = n_q, .n_kv = n_kv,
                        .q_stride = Cl, .k_stride = Cl, .v_stride = Cl, .out_stride = Cl,
                        .scale = (float)(1.0 / sqrt((double)hd))};
    const float *src = ctx ? ctx : s->n;
    int q_rows = ops->entry_rows; /* k and v have n_kv rows per image */
    if ((rc = ops_layernorm(s->n, s->h, M, C, 1e-5f, ln_w, ln_b, ops, err)) < 0 ||
        (rc = ops_linear(s->q, s->n, M, C, wq, NULL, Cl, 0, ops, err)) < 0)
        return rc;
    ops->entry_rows = n_kv;
    if ((rc = ops_linear(s->k, src, B * n_kv, kv_dim, wk, NULL, Cl, 0, ops, err)) == 0)
        rc = ops_linear(s->v, src, B * n_kv, kv_dim, wv, NULL, Cl, 0, ops, err);
    ops->entry_rows = q_rows;
    if (rc < 0 || (rc = ops_attention(s->n, s->q, s->k, s->v, &ad, s->ws, s->ws_bytes, ops, err)) < 0)
        return rc;
    if (!ops_comm_active(ops->comm)) return ops_linear(s->h, s->n, M, C, wo, bo, C, 1, ops, err);
    /* row-parallel to_out: partial into q (free now), reduce, then bias + residual */
    if ((rc = ops_linear(s->q, s->n, M, Cl, wo, NULL, C, 0, ops, err)) < 0) return rc;
    return allreduce_into(s->h, s->q, bo, M, C, ops, err);
}

/*
 * h += ff2(GEGLU(ff1(LN3 h))), in chunks of rows. Tensor-parallel: this rank's inner_local features
 * (ff1's rows of both GEGLU halves, ff2's columns); ff2's partials for all rows gather in q, then one
 * all-reduce, bias and residual.
 */
static int ff_sublayer(const transformer2d_model *t, const transformer2d_block *b, tf_bufs *s, int M, ops_ctx *ops,
                       sd_error *err) {
    int C = t->ch, inner = t->inner_local, rc, tp = ops_comm_active(ops->comm);
    if ((rc = ops_layernorm(s->n, s->h, M, C, 1e-5f, b->norm3_w, b->norm3_b, ops, err)) < 0) return rc;
    /*
     * Float32: widen the two weights once for all chunks, unless ops_gemm_few reads them as stored
     * (few rows per image: widening 1280 x 10240 weights for 64 rows cost as much for one image as
     * for two). bf16: never (ops_linear converts them straight to bf16, to the same values).
     */
    ops_arena *a = &ops->scratch;
    ops_mark mark = ops_arena_mark(a);
    sd_tensor w1 = *b->ff1_w, w2 = *b->ff2_w;
    if (ops->precision != OPS_PRECISION_BF16 &&
        (!ops_linear_takes_few(ops, b->ff1_w->dtype) || !ops_linear_takes_few(ops, b->ff2_w->dtype))) {
        if (!(w1.data = ops_weight_f32(b->ff1_w, ops, err)) || !(w2.data = ops_weight_f32(b->ff2_w, ops, err))) {
            ops_arena_release(a, mark);
            return err ? err->code : SD_ENOMEM;
        }
        w1.dtype = w2.dtype = SD_F32;
        w1.nbytes = (size_t)sd_tensor_numel(&w1) * sizeof(float);
        w2.nbytes = (size_t)sd_tensor_numel(&w2) * sizeof(float);
    }
    for (int r0 = 0; r0 < M && rc == 0; r0 += s->ff_rows) {
        int rows = M - r0 < s->ff_rows ? M - r0 : s->ff_rows;
        if ((rc = ops_linear(s->f, s->n + (size_t)r0 * C, rows, C, &w1, b->ff1_b, 2 * inner, 0, ops, err)) < 0) break;
        ops_geglu(s->g, s->f, rows, inner);
        if (tp)
            rc = ops_linear(s->q + (size_t)r0 * C, s->g, rows, inner, &w2, NULL, C, 0, ops, err);
        else
            rc = ops_linear(s->h + (size_t)r0 * C, s->g, rows, inner, &w2, b->ff2_b, C, 1, ops, err);
    }
    ops_arena_release(a, mark);
    if (rc == 0 && tp) rc = allreduce_into(s->h, s->q, b->ff2_b, M, C, ops, err);
    return rc;
}

int transformer2d_forward(const transformer2d_model *t, float *out, const float *x, int B, int H, int W,
                          const float *ctx, int n_ctx, ops_ctx *ops, sd_error *err) {
    int C = t->ch, HW = H * W, M = B * HW, rc = 0;
    int kv_rows = M > B * n_ctx ? M : B * n_ctx, saved_rows = ops->entry_rows;
    ops_arena *a = &ops->scratch;
    ops_mark mark = ops_arena_mark(a);
    ops->entry_rows = HW; /* HW rows per image: small levels take ops_gemm_few, per image, not per batch */
    tf_bufs s = {0};
    size_t ff_rows = FF_CHUNK_FLOATS / (2 * (size_t)t->inner_local);
    if (ff_rows < 64) ff_rows = 64;
    if (ff_rows > (size_t)M) ff_rows = (size_t)M;
    s.ff_rows = (int)ff_rows;
    ops_attn_desc self = {.batch = B, .heads = t->heads_local, .head_dim = C / t->heads, .n_q = HW, .n_kv = HW};
    ops_attn_desc cross = self;
    cross.n_kv = n_ctx;
    size_t ws1 = ops_attention_workspace(&self, ops_get_threads(), ops);
    size_t ws2 = ops_attention_workspace(&cross, ops_get_threads(), ops);
    s.ws_bytes = ws1 > ws2 ? ws1 : ws2;
    float *sc = ops_arena_floats(a, (size_t)2 * B * C, err);
    s.h = ops_arena_floats(a, (size_t)M * C, err);
    s.n = ops_arena_floats(a, (size_t)M * C, err);
    s.q = ops_arena_floats(a, (size_t)M * C, err);
    s.k = ops_arena_floats(a, (size_t)kv_rows * C, err);
    s.v = ops_arena_floats(a, (size_t)kv_rows * C, err);
    s.f = ops_arena_floats(a, ff_rows * 2 * t->inner_local, err);
    s.g = ops_arena_floats(a, ff_rows * t->inner_local, err);
    s.ws = ops_arena_alloc(a, s.ws_bytes, err);
    if (!sc || !s.h || !s.n || !s.q || !s.k || !s.v || !s.f || !s.g || !s.ws) {
        rc = err ? err->code : SD_ENOMEM;
        goto done;
    }
    float *shift = sc + (size_t)B * C;
    /* GroupNorm -> proj_in -> [B, HW, C]; `out` serves as NCHW scratch until the end */
    if (!t->linear_proj) {
        if ((rc = ops_groupnorm_affine(sc, shift, x, B, C, HW, t->groups, 1e-6f, t->norm_w, t->norm_b, ops, err)) < 0)
            goto done;
        ops_conv_desc pin = {.batch = B, .in_ch = C, .in_h = H, .in_w = W, .out_ch = C, .k_h = 1, .k_w = 1,
                             .stride = 1, .weight = t->proj_in_w, .bias = t->proj_in_b, .in_scale = sc,
                             .in_shift = shift};
        rc = t->proj_split ? ops_conv2d_col_parallel(ops->comm, out, x, &pin, NULL, ops, err)
                           : ops_conv2d(out, x, &pin, ops, err);
        if (rc < 0) goto done;
        ops_nchw_to_nlc(s.h, out, B, C, HW);
    } else {
        if ((rc = ops_groupnorm(out, x, B, C, HW, t->groups, 1e-6f, t->norm_w, t->norm_b, 0, ops, err)) < 0) goto done;
        ops_nchw_to_nlc(s.n, out, B, C, HW);
        rc = t->proj_split ? ops_linear_col_parallel(ops->comm, s.h, s.n, M, C, t->proj_in_w, t->proj_in_b, C, ops, err)
                           : ops_linear(s.h, s.n, M, C, t->proj_in_w, t->proj_in_b, C, 0, ops, err);
        if (rc < 0) goto done;
    }
    for (int i = 0; i < t->n_blocks; i++) {
        const transformer2d_block *b = &t->blocks[i];
        if ((rc = attention_sublayer(t, &s, B, HW, b->norm1_w, b->norm1_b, b->a1_q, b->a1_k, b->a1_v, b->a1_o,
                                     b->a1_ob, t->only_cross ? ctx : NULL, n_ctx, ops, err)) < 0 ||
            (rc = attention_sublayer(t, &s, B, HW, b->norm2_w, b->norm2_b, b->a2_q, b->a2_k, b->a2_v, b->a2_o,
                                     b->a2_ob, ctx, n_ctx, ops, err)) < 0 ||
            (rc = ff_sublayer(t, b, &s, M, ops, err)) < 0)
            goto done;
    }
    /* proj_out -> NCHW, + x */
    if (!t->linear_proj) {
        ops_nlc_to_nchw(s.n, s.h, B, C, HW);
        ops_conv_desc pout = {.batch = B, .in_ch = C, .in_h = H, .in_w = W, .out_ch = C, .k_h = 1, .k_w = 1,
                              .stride = 1, .weight = t->proj_out_w, .bias = t->proj_out_b};
        if (t->proj_split) {
            rc = ops_conv2d_col_parallel(ops->comm, out, s.n, &pout, x, ops, err);
        } else {
            pout.residual = x;
            rc = ops_conv2d(out, s.n, &pout, ops, err);
        }
    } else {
        rc = t->proj_split ? ops_linear_col_parallel(ops->comm, s.n, s.h, M, C, t->proj_out_w, t->proj_out_b, C, ops, err)
                           : ops_linear(s.n, s.h, M, C, t->proj_out_w, t->proj_out_b, C, 0, ops, err);
        if (rc < 0) goto done;
        ops_nlc_to_nchw(out, s.n, B, C, HW);
        ops_add(out, out, x, (size_t)M * C);
    }
done:
    ops->entry_rows = saved_rows;
    ops_arena_release(a, mark);
    return rc;
}

double transformer2d_flops_shape(int ch, int ctx_dim, int n_blocks, int B, int HW, int n_ctx) {
    double C = ch, M = (double)B * HW, inner = 4.0 * ch;
    double proj = 2 * (2 * M * C * C);
    double blk = 2 * M * C * C * 3 + 2 * M * C * C   /* self q, k, v, out */
                 + 4 * (double)B * HW * HW * C       /* self scores + weighted sum */
                 + 2 * M * C * C * 2                 /* cross q, out */
                 + 2 * 2 * (double)B * n_ctx * ctx_dim * C /* cross k, v */
                 + 4 * (double)B * HW * n_ctx * C    /* cross scores + weighted sum */
                 + 2 * M * C * 2 * inner + 2 * M * inner * C; /* GEGLU feed-forward */
    return proj + blk * n_blocks;
}
