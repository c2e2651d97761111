/* clip.c - CLIP text transformer forward pass (see clip.h). */
#include "clip.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P "text_model."

/* Looks up "<prefix>encoder.layers.<l>.<name>" with the given shape (d1 = 0: a vector). */
static int get_layer(const sd_weights *w, const sd_tensor **t, sd_error *err, const char *prefix, int l,
                     const char *name, int64_t d0, int64_t d1) {
    int64_t shape[2] = {d0, d1};
    return sd_weights_getf(w, t, err, shape, d1 ? 2 : 1, "%sencoder.layers.%d.%s", prefix, l, name);
}

int clip_layer_load(clip_layer *L, const sd_weights *w, const char *prefix, int l, int64_t D, int64_t I,
                    sd_error *err) {
    int rc;
    if ((rc = get_layer(w, &L->ln1_w, err, prefix, l, "layer_norm1.weight", D, 0)) < 0 ||
        (rc = get_layer(w, &L->ln1_b, err, prefix, l, "layer_norm1.bias", D, 0)) < 0 ||
        (rc = get_layer(w, &L->q_w, err, prefix, l, "self_attn.q_proj.weight", D, D)) < 0 ||
        (rc = get_layer(w, &L->q_b, err, prefix, l, "self_attn.q_proj.bias", D, 0)) < 0 ||
        (rc = get_layer(w, &L->k_w, err, prefix, l, "self_attn.k_proj.weight", D, D)) < 0 ||
        (rc = get_layer(w, &L->k_b, err, prefix, l, "self_attn.k_proj.bias", D, 0)) < 0 ||
        (rc = get_layer(w, &L->v_w, err, prefix, l, "self_attn.v_proj.weight", D, D)) < 0 ||
        (rc = get_layer(w, &L->v_b, err, prefix, l, "self_attn.v_proj.bias", D, 0)) < 0 ||
        (rc = get_layer(w, &L->o_w, err, prefix, l, "self_attn.out_proj.weight", D, D)) < 0 ||
        (rc = get_layer(w, &L->o_b, err, prefix, l, "self_attn.out_proj.bias", D, 0)) < 0 ||
        (rc = get_layer(w, &L->ln2_w, err, prefix, l, "layer_norm2.weight", D, 0)) < 0 ||
        (rc = get_layer(w, &L->ln2_b, err, prefix, l, "layer_norm2.bias", D, 0)) < 0 ||
        (rc = get_layer(w, &L->fc1_w, err, prefix, l, "mlp.fc1.weight", I, D)) < 0 ||
        (rc = get_layer(w, &L->fc1_b, err, prefix, l, "mlp.fc1.bias", I, 0)) < 0 ||
        (rc = get_layer(w, &L->fc2_w, err, prefix, l, "mlp.fc2.weight", D, I)) < 0 ||
        (rc = get_layer(w, &L->fc2_b, err, prefix, l, "mlp.fc2.bias", D, 0)) < 0)
        return rc;
    return 0;
}

int clip_text_load(clip_text_model *m, const clip_config *c, const sd_weights *w, sd_error *err) {
    memset(m, 0, sizeof *m);
    if (c->layers <= 0 || c->hidden <= 0 || c->heads <= 0 || c->hidden % c->heads)
        return sd_err(err, SD_EINPUT, "clip: bad config (%d layers, hidden %d, %d heads)", c->layers, c->hidden,
                      c->heads);
    m->cfg = *c;
    int64_t D = c->hidden, I = c->intermediate;
    m->layers = calloc((size_t)c->layers, sizeof *m->layers);
    if (!m->layers) return sd_err(err, SD_ENOMEM, "out of memory loading the text encoder");
    int rc;
    if ((rc = sd_weights_get(w, P "embeddings.token_embedding.weight", 2, (int64_t[]){c->vocab_size, D},
                             &m->tok_emb, err)) < 0 ||
        (rc = sd_weights_get(w, P "embeddings.position_embedding.weight", 2, (int64_t[]){c->max_positions, D},
                             &m->pos_emb, err)) < 0 ||
        (rc = sd_weights_get(w, P "final_layer_norm.weight", 1, (int64_t[]){D}, &m->final_ln_w, err)) < 0 ||
        (rc = sd_weights_get(w, P "final_layer_norm.bias", 1, (int64_t[]){D}, &m->final_ln_b, err)) < 0)
        goto fail;
    for (int l = 0; l < c->layers; l++)
        if ((rc = clip_layer_load(&m->layers[l], w, P, l, D, I, err)) < 0) goto fail;
    ops_ctx_init(&m->ops, (size_t)16 << 20);
    return 0;
fail:
    free(m->layers);
    m->layers = NULL;
    return rc;
}

void clip_text_free(clip_text_model *m) {
    free(m->layers);
    ops_ctx_free(&m->ops);
    memset(m, 0, sizeof *m);
}

/* x: [B*T, D] = token_embedding[ids] + position_embedding[0..T). */
static int embed(const clip_text_model *m, const int *ids, int B, int T, float *x, float *row, sd_error *err) {
    int D = m->cfg.hidden;
    size_t esz_t = sd_dtype_size(m->tok_emb->dtype), esz_p = sd_dtype_size(m->pos_emb->dtype);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int id = ids[b * T + t];
            if (id < 0 || id >= m->cfg.vocab_size)
                return sd_err(err, SD_EINPUT, "text encoder: token id %d at position %d of prompt %d is outside the "
                              "vocabulary (0..%d)", id, t, b, m->cfg.vocab_size - 1);
            float *xr = x + ((size_t)b * T + t) * D;
            sd_dtype_convert_to_f32(xr, (const char *)m->tok_emb->data + (size_t)id * D * esz_t, m->tok_emb->dtype,
                              (size_t)D);
            sd_dtype_convert_to_f32(row, (const char *)m->pos_emb->data + (size_t)t * D * esz_p, m->pos_emb->dtype,
                              (size_t)D);
            for (int i = 0; i < D; i++) xr[i] += row[i];
        }
    return 0;
}

int clip_layer_forward(const clip_config *c, const clip_layer *L, float *x, int B, int T, int causal, ops_ctx *ops,
                       sd_error *err) {
    int D = c->hidden, I = c->intermediate, M = B * T, rc;
    ops_arena *a = &ops->scratch;
    ops_mark mark = ops_arena_mark(a);
    float *h = ops_arena_floats(a, (size_t)M * D, err);
    float *q = ops_arena_floats(a, (size_t)M * D, err);
    float *k = ops_arena_floats(a, (size_t)M * D, err);
    float *v = ops_arena_floats(a, (size_t)M * D, err);
    float *f = ops_arena_floats(a, (size_t)M * I, err);
    ops_attn_desc ad = {.batch = B, .heads = c->heads, .head_dim = D / c->heads, .n_q = T, .n_kv = T,
                        .q_stride = D, .k_stride = D, .v_stride = D, .out_stride = D,
                        .scale = 1.0f / sqrtf((float)(D / c->heads)), .causal = causal};
    size_t wsb = ops_attention_workspace(&ad, ops_get_threads(), ops);
    void *ws = ops_arena_alloc(a, wsb, err);
    if (!h || !q || !k || !v || !f || !ws) {
        rc = err ? err->code : SD_ENOMEM;
        goto out;
    }
    if ((rc = ops_layernorm(h, x, M, D, c->eps, L->ln1_w, L->ln1_b, ops, err)) < 0 ||
        (rc = ops_linear(q, h, M, D, L->q_w, L->q_b, D, 0, ops, err)) < 0 ||
        (rc = ops_linear(k, h, M, D, L->k_w, L->k_b, D, 0, ops, err)) < 0 ||
        (rc = ops_linear(v, h, M, D, L->v_w, L->v_b, D, 0, ops, err)) < 0 ||
        (rc = ops_attention(h, q, k, v, &ad, ws, wsb, ops, err)) < 0 ||
        (rc = ops_linear(x, h, M, D, L->o_w, L->o_b, D, 1, ops, err)) < 0 ||
        (rc = ops_layernorm(h, x, M, D, c->eps, L->ln2_w, L->ln2_b, ops, err)) < 0 ||
        (rc = ops_linear(f, h, M, D, L->fc1_w, L->fc1_b, I, 0, ops, err)) < 0)
        goto out;
    if (c->act == CLIP_ACT_GELU) ops_gelu(f, (size_t)M * I);
    else ops_quick_gelu(f, (size_t)M * I);
    rc = ops_linear(x, f, M, I, L->fc2_w, L->fc2_b, D, 1, ops, err);
out:
    ops_arena_release(a, mark);
    return rc;
}

/* ids -> x: [B, T, D] (from the arena, caller releases) after the embeddings and blocks 0..n_run-1; when
 * keep_at >= 0, keep (may be NULL) receives the activations after keep_at blocks. */
static int run_layers(clip_text_model *m, const int *ids, int B, int T, int n_run, int keep_at, float *keep, float **xp,
                      sd_error *err) {
    const clip_config *c = &m->cfg;
    int D = c->hidden, rc;
    float *x = ops_arena_floats(&m->ops.scratch, (size_t)B * T * D, err);
    float *row = ops_arena_floats(&m->ops.scratch, (size_t)D, err);
    if (!x || !row) return err ? err->code : SD_ENOMEM;
    if ((rc = embed(m, ids, B, T, x, row, err)) < 0) return rc;
    int64_t shape[3] = {B, T, D};
    sd_probe_emit(m->probe, "hidden_states.embeddings", x, 3, shape);
    for (int l = 0; l <= n_run; l++) {
        if (l == keep_at && keep) memcpy(keep, x, sizeof(float) * B * T * D);
        if (l == n_run) break;
        if ((rc = clip_layer_forward(c, &m->layers[l], x, B, T, 1, &m->ops, err)) < 0) return rc;
        char name[48];
        snprintf(name, sizeof name, "hidden_states.layer%d", l);
        sd_probe_emit(m->probe, name, x, 3, shape);
    }
    *xp = x;
    return 0;
}

/* T within the positions the model has. */
static int check_tokens(const clip_config *c, int T, sd_error *err) {
    if (T <= 0 || T > c->max_positions)
        return sd_err(err, SD_EINPUT, "text encoder: %d tokens, the model takes 1..%d", T, c->max_positions);
    return 0;
}

int clip_text_forward(clip_text_model *m, const int *ids, int B, int T, int skip_layers, float *out, sd_error *err) {
    const clip_config *c = &m->cfg;
    int rc = check_tokens(c, T, err);
    if (rc < 0) return rc;
    if (skip_layers < 0 || skip_layers >= c->layers)
        return sd_err(err, SD_EINPUT, "text encoder: cannot skip %d of %d layers", skip_layers, c->layers);
    ops_mark mark = ops_arena_mark(&m->ops.scratch);
    float *x = NULL;
    rc = run_layers(m, ids, B, T, c->layers - skip_layers, -1, NULL, &x, err);
    if (rc == 0) rc = ops_layernorm(out, x, B * T, c->hidden, c->eps, m->final_ln_w, m->final_ln_b, &m->ops, err);
    ops_arena_release(&m->ops.scratch, mark);
    return rc;
}

int clip_text_forward_hidden(clip_text_model *m, const int *ids, int B, int T, int hidden_skip, float *hidden,
                             float *final, sd_error *err) {
    const clip_config *c = &m->cfg;
    int rc = check_tokens(c, T, err);
    if (rc < 0) return rc;
    if (hidden_skip < 0 || hidden_skip > c->layers)
        return sd_err(err, SD_EINPUT, "text encoder: no hidden state %d layers before the last of %d", hidden_skip,
                      c->layers);
    ops_mark mark = ops_arena_mark(&m->ops.scratch);
    float *x = NULL;
    int at = c->layers - hidden_skip;
    rc = run_layers(m, ids, B, T, final ? c->layers : at, at, hidden, &x, err);
    if (rc == 0 && final)
        rc = ops_layernorm(final, x, B * T, c->hidden, c->eps, m->final_ln_w, m->final_ln_b, &m->ops, err);
    ops_arena_release(&m->ops.scratch, mark);
    return rc;
}

double clip_text_flops(const clip_config *c, int B, int T) {
    double D = c->hidden, I = c->intermediate, M = (double)B * T;
    double per_layer = 2 * M * D * D * 4       /* q, k, v, out projections */
                       + 2 * M * D * I * 2     /* fc1, fc2 */
                       + 2 * (double)B * T * T * D * 2; /* scores and weighted sum (all heads) */
    return per_layer * c->layers;
}
