/* attnblock.c - plain self-attention block (see attnblock.h). */
#include "attnblock.h"

#include <math.h>
#include <string.h>

int attnblock_load(attnblock *t, const sd_weights *w, const char *p, int C, sd_error *err) {
    memset(t, 0, sizeof *t);
    t->ch = C;
    int rc;
    if ((rc = sd_weights_get_wb(w, &t->norm_w, &t->norm_b, err, C, 0, -1, "%s.group_norm", p)) < 0 ||
        (rc = sd_weights_get_wb(w, &t->q_w, &t->q_b, err, C, C, 0, "%s.to_q", p)) < 0 ||
        (rc = sd_weights_get_wb(w, &t->k_w, &t->k_b, err, C, C, 0, "%s.to_k", p)) < 0 ||
        (rc = sd_weights_get_wb(w, &t->v_w, &t->v_b, err, C, C, 0, "%s.to_v", p)) < 0 ||
        (rc = sd_weights_get_wb(w, &t->o_w, &t->o_b, err, C, C, 0, "%s.to_out.0", p)) < 0)
        return rc;
    return 0;
}

/* The weights are views into the caller's table: nothing to release. */
void attnblock_free(attnblock *t) { memset(t, 0, sizeof *t); }

int attnblock_forward(const attnblock *at, float *out, const float *x, int B, int HW, int groups, float eps,
                      ops_ctx *ops, sd_error *err) {
    ops_arena *a = &ops->scratch;
    int C = at->ch, M = B * HW, rc;
    ops_mark mark = ops_arena_mark(a);
    ops_attn_desc ad = {.batch = B, .heads = 1, .head_dim = C, .n_q = HW, .n_kv = HW, .q_stride = C,
                        .k_stride = C, .v_stride = C, .out_stride = C, .scale = (float)(1.0 / sqrt((double)C))};
    size_t wsb = ops_attention_workspace(&ad, ops_get_threads(), ops);
    float *n = ops_arena_floats(a, (size_t)M * C, err), *q = ops_arena_floats(a, (size_t)M * C, err);
    float *k = ops_arena_floats(a, (size_t)M * C, err), *v = ops_arena_floats(a, (size_t)M * C, err);
    void *ws = ops_arena_alloc(a, wsb, err);
    if (!n || !q || !k || !v || !ws) {
        rc = err ? err->code : SD_ENOMEM;
        goto done;
    }
    if ((rc = ops_groupnorm(out, x, B, C, HW, groups, eps, at->norm_w, at->norm_b, 0, ops, err)) < 0) goto done;
    ops_nchw_to_nlc(n, out, B, C, HW);
    if ((rc = ops_linear(q, n, M, C, at->q_w, at->q_b, C, 0, ops, err)) < 0 ||
        (rc = ops_linear(k, n, M, C, at->k_w, at->k_b, C, 0, ops, err)) < 0 ||
        (rc = ops_linear(v, n, M, C, at->v_w, at->v_b, C, 0, ops, err)) < 0 ||
        (rc = ops_attention(n, q, k, v, &ad, ws, wsb, ops, err)) < 0 ||
        (rc = ops_linear(q, n, M, C, at->o_w, at->o_b, C, 0, ops, err)) < 0)
        goto done;
    ops_nlc_to_nchw(out, q, B, C, HW);
    ops_add(out, out, x, (size_t)M * C);
done:
    ops_arena_release(a, mark);
    return rc;
}

double attnblock_flops(int B, int C, double HW) { return 2.0 * B * HW * C * C * 4 + 4.0 * B * HW * HW * C; }
