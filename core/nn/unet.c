/* unet.c - UNet2DConditionModel: loading, forward pass and flop count (see unet.h). */
#include "unet.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ops_comm.h"

#define MAX_SKIPS (1 + SD_MAX_LEVELS * (UNET_MAX_LAYERS + 1))

/* Channel counts of up block i (level L = n-1-i), as diffusers derives them. */
static int up_resnet_in(const unet_config *c, int L, int j) {
    int n = c->n_levels, out = c->block_out[L];
    int prev = L == n - 1 ? c->block_out[n - 1] : c->block_out[L + 1];
    int skip = j == c->layers_per_block ? c->block_out[L > 0 ? L - 1 : 0] : out;
    return (j == 0 ? prev : out) + skip;
}

static int check_config(const unet_config *c, sd_error *err) {
    if (c->n_levels < 1 || c->n_levels > SD_MAX_LEVELS)
        return sd_err(err, SD_EUNSUPPORTED, "unet: %d levels (1..%d supported)", c->n_levels, SD_MAX_LEVELS);
    if (c->layers_per_block < 1 || c->layers_per_block > UNET_MAX_LAYERS)
        return sd_err(err, SD_EUNSUPPORTED, "unet: layers_per_block %d (1..%d supported)", c->layers_per_block,
                      UNET_MAX_LAYERS);
    if (c->in_channels < 1 || c->out_channels < 1 || c->time_embed_dim < 1 || c->cross_attention_dim < 1 ||
        c->norm_groups < 1 || c->addition_time_embed_dim < 0 || c->addition_time_embed_dim % 2 ||
        (c->addition_time_embed_dim && c->addition_in_dim < 1))
        return sd_err(err, SD_EINPUT, "unet: config has a non-positive size");
    if (c->block_out[0] % 2)
        return sd_err(err, SD_EUNSUPPORTED, "unet: block_out_channels[0] = %d must be even", c->block_out[0]);
    for (int i = 0; i < c->n_levels; i++) {
        if (c->block_out[i] < 1 || c->block_out[i] % c->norm_groups)
            return sd_err(err, SD_EINPUT, "unet: %d groups do not divide %d channels", c->norm_groups, c->block_out[i]);
        if (c->heads[i] < 1 || c->block_out[i] % c->heads[i])
            return sd_err(err, SD_EINPUT, "unet: %d heads do not divide %d channels", c->heads[i], c->block_out[i]);
        if (c->transformer_layers[i] < 1)
            return sd_err(err, SD_EINPUT, "unet: level %d has %d transformer layers", i, c->transformer_layers[i]);
    }
    return 0;
}

/* The attention block of kind `kind` after a resnet of level `level` (its heads and transformer depth):
 * weights at prefix p, ch channels; only_cross: a transformer whose attn1 attends to the context. */
static int attn_load(unet_attn *a, const unet_config *c, unet_attn_kind kind, const sd_weights *w, const char *p,
                     int ch, int level, int only_cross, sd_error *err) {
    int heads = c->heads[level];
    a->kind = kind;
    switch (kind) {
    case UNET_ATTN_NONE: return 0;
    case UNET_ATTN_CROSS:
        return transformer2d_load(&a->xf, w, p, ch, heads, c->cross_attention_dim, c->transformer_layers[level],
                                  c->use_linear_projection, c->norm_groups, only_cross, err);
    case UNET_ATTN_SELF:
        if (heads != 1)
            return sd_err(err, SD_EUNSUPPORTED, "unet: %s: self-attention with %d heads is not supported (only one "
                          "head, attention_head_dim null)", p, heads);
        return attnblock_load(&a->ab, w, p, ch, err);
    }
    return sd_err(err, SD_EINTERNAL, "unet: %s: unknown attention kind %d", p, kind);
}

int unet_load(unet_model *m, const unet_config *cfg, const sd_weights *w, sd_error *err) {
    memset(m, 0, sizeof *m);
    int rc = check_config(cfg, err);
    if (rc < 0) return rc;
    m->cfg = *cfg;
    const unet_config *c = cfg;
    int n = c->n_levels, C0 = c->block_out[0], T = c->time_embed_dim;
    char p[128];
    if ((rc = sd_weights_get_wb(w, &m->time_w1, &m->time_b1, err, T, C0, 0, "time_embedding.linear_1")) < 0 ||
        (rc = sd_weights_get_wb(w, &m->time_w2, &m->time_b2, err, T, T, 0, "time_embedding.linear_2")) < 0 ||
        (rc = sd_weights_get_wb(w, &m->conv_in_w, &m->conv_in_b, err, C0, c->in_channels, 3, "conv_in")) < 0 ||
        (rc = sd_weights_get_wb(w, &m->conv_out_w, &m->conv_out_b, err, c->out_channels, C0, 3, "conv_out")) < 0 ||
        (rc = sd_weights_get(w, "conv_norm_out.weight", 1, (int64_t[]){C0}, &m->norm_out_w, err)) < 0 ||
        (rc = sd_weights_get(w, "conv_norm_out.bias", 1, (int64_t[]){C0}, &m->norm_out_b, err)) < 0)
        goto fail;
    if (c->addition_time_embed_dim &&
        ((rc = sd_weights_get_wb(w, &m->add_w1, &m->add_b1, err, T, c->addition_in_dim, 0, "add_embedding.linear_1")) < 0 ||
         (rc = sd_weights_get_wb(w, &m->add_w2, &m->add_b2, err, T, T, 0, "add_embedding.linear_2")) < 0))
        goto fail;
    if (c->num_class_embeds > 0 &&
        (rc = sd_weights_get(w, "class_embedding.weight", 2, (int64_t[]){c->num_class_embeds, T}, &m->class_w, err)) < 0)
        goto fail;
    int ch_in = C0;
    for (int i = 0; i < n; i++) {
        unet_level *lv = &m->levels[i];
        int ch = c->block_out[i];
        for (int j = 0; j < c->layers_per_block; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
            if ((rc = resnet_load(&lv->down_res[j], w, p, j == 0 ? ch_in : ch, ch, T, err)) < 0) goto fail;
            snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
            if ((rc = attn_load(&lv->down_attn[j], c, c->down_attn[i], w, p, ch, i, c->only_cross[i], err)) < 0)
                goto fail;
        }
        if (i < n - 1 &&
            (rc = sd_weights_get_wb(w, &lv->down_w, &lv->down_b, err, ch, ch, 3, "down_blocks.%d.downsamplers.0.conv", i)) < 0)
            goto fail;
        ch_in = ch;
    }
    int cm = c->block_out[n - 1];
    if ((rc = resnet_load(&m->mid_res[0], w, "mid_block.resnets.0", cm, cm, T, err)) < 0 ||
        (rc = resnet_load(&m->mid_res[1], w, "mid_block.resnets.1", cm, cm, T, err)) < 0 ||
        (rc = attn_load(&m->mid_attn, c, c->mid_attn, w, "mid_block.attentions.0", cm, n - 1, 0, err)) < 0)
        goto fail;
    for (int i = 0; i < n; i++) {
        int L = n - 1 - i, ch = c->block_out[L];
        unet_level *lv = &m->levels[L];
        for (int j = 0; j <= c->layers_per_block; j++) {
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
            if ((rc = resnet_load(&lv->up_res[j], w, p, up_resnet_in(c, L, j), ch, T, err)) < 0) goto fail;
            snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
            if ((rc = attn_load(&lv->up_attn[j], c, c->up_attn[i], w, p, ch, L, c->only_cross[L], err)) < 0)
                goto fail;
        }
        if (L > 0 && (rc = sd_weights_get_wb(w, &lv->up_w, &lv->up_b, err, ch, ch, 3, "up_blocks.%d.upsamplers.0.conv", i)) < 0)
            goto fail;
    }
    ops_ctx_init(&m->ops, 0);
    return 0;
fail:
    unet_free(m);
    return rc;
}

/* A level's down- or upsampling convolution d: row-parallel over the input channels when sharded. */
static int level_conv(unet_model *m, const unet_level *lv, float *out, const float *x, const ops_conv_desc *d,
                      sd_error *err) {
    if (lv->conv_cl && lv->conv_cl < d->in_ch)
        return ops_conv2d_row_parallel(m->ops.comm, out, x, d, lv->conv_c0, lv->conv_cl, NULL, &m->ops, err);
    return ops_conv2d(out, x, d, &m->ops, err);
}

/* The transformer of an attention block, or NULL. */
static transformer2d_model *attn_xf(unet_attn *a) { return a->kind == UNET_ATTN_CROSS ? &a->xf : NULL; }

int unet_shard(unet_model *m, const ops_comm *comm, sd_error *err) {
    m->ops.comm = comm;
    if (!ops_comm_active(comm)) return 0;
    const unet_config *c = &m->cfg;
    int P = comm->size, n = c->n_levels, rc = 0;
    /* check everything first: a clear message, nothing half-sharded */
    if (c->norm_groups % P)
        return sd_err(err, SD_EINPUT, "--tp %d: the U-Net's %d GroupNorm groups must be a multiple of the ranks sharing "
                      "each layer; use a divisor of %d", P, c->norm_groups, c->norm_groups);
    for (int i = 0; i < n; i++)
        if (c->heads[i] % P)
            return sd_err(err, SD_EINPUT, "--tp %d: U-Net level %d has %d attention heads, not a multiple of the ranks "
                          "sharing each layer", P, i, c->heads[i]);
    for (int i = 0; i < n && rc == 0; i++) {
        unet_level *lv = &m->levels[i];
        for (int j = 0; j < c->layers_per_block && rc == 0; j++) {
            rc = resnet_shard(&lv->down_res[j], comm, c->norm_groups, &m->shards, err);
            transformer2d_model *x = attn_xf(&lv->down_attn[j]);
            if (rc == 0 && x) rc = transformer2d_shard(x, comm, &m->shards, err);
        }
        for (int j = 0; j <= c->layers_per_block && rc == 0; j++) {
            rc = resnet_shard(&lv->up_res[j], comm, c->norm_groups, &m->shards, err);
            transformer2d_model *x = attn_xf(&lv->up_attn[j]);
            if (rc == 0 && x) rc = transformer2d_shard(x, comm, &m->shards, err);
        }
    }
    /* the down/up-sampling convolutions (30 GFLOP each at 512x512 for the upsamplers of levels 1 and 2)
     * by input channels */
    for (int i = 0; i < n && rc == 0; i++) {
        unet_level *lv = &m->levels[i];
        int c0, c1;
        ops_comm_share(comm, c->block_out[i], &c0, &c1);
        if (lv->down_w) rc = shard_cols(&m->shards, lv->down_w, c0, c1, &lv->down_w, err);
        if (rc == 0 && lv->up_w) rc = shard_cols(&m->shards, lv->up_w, c0, c1, &lv->up_w, err);
        lv->conv_c0 = c0;
        lv->conv_cl = c1 - c0;
    }
    for (int j = 0; j < 2 && rc == 0; j++) rc = resnet_shard(&m->mid_res[j], comm, c->norm_groups, &m->shards, err);
    if (rc == 0 && attn_xf(&m->mid_attn)) rc = transformer2d_shard(&m->mid_attn.xf, comm, &m->shards, err);
    /* keep only this rank's share resident (the full tensors are not read again) */
    if (rc == 0) shard_store_release_sources(&m->shards);
    return rc;
}

void unet_release_scratch(unet_model *m) { ops_arena_drop(&m->ops.scratch); }

void unet_free(unet_model *m) {
    for (int i = 0; i < SD_MAX_LEVELS; i++) {
        for (int j = 0; j < UNET_MAX_LAYERS; j++) transformer2d_free(&m->levels[i].down_attn[j].xf);
        for (int j = 0; j <= UNET_MAX_LAYERS; j++) transformer2d_free(&m->levels[i].up_attn[j].xf);
    }
    transformer2d_free(&m->mid_attn.xf);
    /* attnblocks hold views into the caller's weights: nothing to free */
    shard_store_free(&m->shards);
    ops_ctx_free(&m->ops);
    memset(m, 0, sizeof *m);
}

/*
 * emb: [B, dim] sinusoidal embedding of t: [B], computed in float32 like diffusers'
 * get_timestep_embedding: freq_i = exp(-ln(10000) * i / (half - shift)),
 * [cos(t*freq), sin(t*freq)] with flip_sin_to_cos, else [sin, cos]. The time step
 * uses dim = block_out[0]; SDXL's time ids addition_time_embed_dim.
 */
static void time_proj(const unet_config *c, int dim, const float *t, int B, float *emb) {
    int half = dim / 2;
    for (int i = 0; i < half; i++) {
        float e = (float)(-log(10000.0)) * (float)i;
        e = e / (float)(half - c->freq_shift);
        float freq = expf(e);
        for (int b = 0; b < B; b++) {
            float arg = t[b] * freq;
            float *row = emb + (size_t)b * 2 * half;
            row[c->flip_sin_to_cos ? i : half + i] = cosf(arg);
            row[c->flip_sin_to_cos ? half + i : i] = sinf(arg);
        }
    }
}

/*
 * SDXL: temb += add_embedding(cat([text_embeds, time_proj(time_ids)])): [B, T], the
 * linears run like the time embedding's (linear_1 -> SiLU -> linear_2).
 */
static int add_text_time(unet_model *m, const unet_added_cond *ac, int B, float *temb, sd_error *err) {
    const unet_config *c = &m->cfg;
    int D = c->addition_time_embed_dim, T = c->time_embed_dim, K = c->addition_in_dim, rc;
    ops_arena *a = &m->ops.scratch;
    ops_mark mark = ops_arena_mark(a);
    float *in = ops_arena_floats(a, (size_t)B * K, err);
    float *te = ops_arena_floats(a, (size_t)B * ac->n_time * D, err);
    float *h = ops_arena_floats(a, (size_t)B * T, err);
    float *aug = ops_arena_floats(a, (size_t)B * T, err);
    if (!in || !te || !h || !aug) {
        rc = err && err->code ? err->code : SD_ENOMEM;
        goto done;
    }
    time_proj(c, D, ac->time_ids, B * ac->n_time, te);
    for (int b = 0; b < B; b++) {
        memcpy(in + (size_t)b * K, ac->text_embeds + (size_t)b * ac->n_text, sizeof(float) * ac->n_text);
        memcpy(in + (size_t)b * K + ac->n_text, te + (size_t)b * ac->n_time * D, sizeof(float) * ac->n_time * D);
    }
    if ((rc = ops_linear(h, in, B, K, m->add_w1, m->add_b1, T, 0, &m->ops, err)) < 0) goto done;
    ops_silu(h, (size_t)B * T);
    if ((rc = ops_linear(aug, h, B, T, m->add_w2, m->add_b2, T, 0, &m->ops, err)) < 0) goto done;
    if (m->probe) sd_probe_emit(m->probe, "add_embedding", aug, 2, (int64_t[]){B, T});
    for (size_t i = 0; i < (size_t)B * T; i++) temb[i] += aug[i];
done:
    ops_arena_release(a, mark);
    return rc;
}

/* Per-level spatial sizes: each stride-2 conv (3x3, padding 1) maps n to ceil(n / 2); with
 * downsample_padding 0 (one zero row/column right and bottom) to floor(n / 2). */
static void level_sizes(const unet_config *c, int H, int W, int *hs, int *ws) {
    hs[0] = H;
    ws[0] = W;
    int r = c->downsample_padding ? 1 : 0;
    for (int l = 1; l < c->n_levels; l++) {
        hs[l] = (hs[l - 1] + r) / 2;
        ws[l] = (ws[l - 1] + r) / 2;
    }
}

static void emit(const unet_model *m, const char *name, const float *x, int B, int C, int H, int W) {
    if (!m->probe) return;
    int64_t shape[4] = {B, C, H, W};
    sd_probe_emit(m->probe, name, x, 4, shape);
}

/*
 * One down or mid/up "layer": the resnet into res_out, then its attention block (by kind) into attn_out;
 * *h ends on the result. x = *h: [B, C_in, H, W] -> [B, C, H, W].
 */
static int res_attn(unet_model *m, const resnet_block *r, const unet_attn *at, float **h, float *res_out,
                    float *attn_out, const float *temb_silu, const float *ctx, int n_ctx, int B, int H, int W,
                    sd_error *err) {
    const unet_config *c = &m->cfg;
    int rc = resnet_forward(r, res_out, *h, B, H, W, temb_silu, c->norm_groups, c->norm_eps, &m->ops, err);
    if (rc < 0) return rc;
    *h = res_out;
    switch (at->kind) {
    case UNET_ATTN_NONE: return 0;
    case UNET_ATTN_CROSS: {
        const transformer2d_model *t = &at->xf;
        if ((rc = transformer2d_forward(t, attn_out, res_out, B, H, W, ctx, n_ctx, &m->ops, err)) < 0) return rc;
        *h = attn_out;
        return 0;
    }
    case UNET_ATTN_SELF:
        if ((rc = attnblock_forward(&at->ab, attn_out, res_out, B, H * W, c->norm_groups, c->norm_eps, &m->ops, err)) < 0)
            return rc;
        *h = attn_out;
        return 0;
    }
    return sd_err(err, SD_EINTERNAL, "unet: unknown attention kind %d", at->kind);
}

/* The activations the up path takes back from the down path: conv_in's and every down layer's output. */
typedef struct unet_skips {
    float *x[MAX_SKIPS];
    int ch[MAX_SKIPS], n;
} unet_skips;

/* t: [B] -> temb: [B, T] (plus SDXL's added embedding and the class_embedding rows of ac's labels, when
 * given) and temb_silu = SiLU(temb); tp: [B, C0] holds the sinusoidal embedding. */
static int forward_time(unet_model *m, const float *t, const unet_added_cond *ac, int B, float *tp, float *temb,
                        float *temb_silu, sd_error *err) {
    const unet_config *c = &m->cfg;
    int C0 = c->block_out[0], T = c->time_embed_dim, rc;
    ops_ctx *ops = &m->ops;
    time_proj(c, C0, t, B, tp);
    if (m->probe) sd_probe_emit(m->probe, "time_proj", tp, 2, (int64_t[]){B, C0});
    if ((rc = ops_linear(temb_silu, tp, B, C0, m->time_w1, m->time_b1, T, 0, ops, err)) < 0) goto done;
    ops_silu(temb_silu, (size_t)B * T);
    if ((rc = ops_linear(temb, temb_silu, B, T, m->time_w2, m->time_b2, T, 0, ops, err)) < 0) goto done;
    if (m->probe) sd_probe_emit(m->probe, "time_embedding", temb, 2, (int64_t[]){B, T});
    if (ac && ac->text_embeds && (rc = add_text_time(m, ac, B, temb, err)) < 0) goto done;
    if (m->class_w) {
        const int *labels = ac->labels;
        ops_mark mark = ops_arena_mark(&ops->scratch);
        const float *table = ops_weight_f32(m->class_w, ops, err);
        float *ce = table ? ops_arena_floats(&ops->scratch, (size_t)B * T, err) : NULL;
        if (!ce) {
            rc = err && err->code ? err->code : SD_ENOMEM;
            goto done;
        }
        for (int b = 0; b < B; b++) memcpy(ce + (size_t)b * T, table + (size_t)labels[b] * T, (size_t)T * sizeof(float));
        if (m->probe) sd_probe_emit(m->probe, "class_embedding", ce, 2, (int64_t[]){B, T});
        ops_add(temb, temb, ce, (size_t)B * T);
        ops_arena_release(&ops->scratch, mark);
    }
    memcpy(temb_silu, temb, (size_t)B * T * sizeof(float));
    ops_silu(temb_silu, (size_t)B * T);
done:
    return rc;
}

/*
 * The down path from *hp = conv_in's output [B, C0, H, W]: per level its resnets with their attention,
 * then the stride-2 conv (not on the last level). Every output is pushed on skips; *hp ends on the
 * deepest: [B, C_{n-1}, hs[n-1], ws[n-1]]. Buffers come from the arena and stay until the pass ends.
 */
static int forward_down(unet_model *m, unet_skips *skips, float **hp, const float *temb_silu, const float *ctx,
                        int n_ctx, int B, const int *hs, const int *ws, sd_error *err) {
    const unet_config *c = &m->cfg;
    int n = c->n_levels, lpb = c->layers_per_block, rc = 0;
    ops_ctx *ops = &m->ops;
    ops_arena *a = &ops->scratch;
    float *h = *hp;
    char name[32];
    for (int i = 0; i < n; i++) {
        unet_level *lv = &m->levels[i];
        int ch = c->block_out[i];
        size_t sz = (size_t)B * ch * hs[i] * ws[i];
        for (int j = 0; j < lpb; j++) {
            float *r_out = ops_arena_floats(a, sz, err);
            float *t_out = c->down_attn[i] ? ops_arena_floats(a, sz, err) : NULL;
            if (!r_out || (c->down_attn[i] && !t_out)) goto oom;
            if ((rc = res_attn(m, &lv->down_res[j], &lv->down_attn[j], &h, r_out, t_out,
                               temb_silu, ctx, n_ctx, B, hs[i], ws[i], err)) < 0)
                goto done;
            skips->x[skips->n] = h;
            skips->ch[skips->n++] = ch;
        }
        if (i < n - 1) {
            float *d = ops_arena_floats(a, (size_t)B * ch * hs[i + 1] * ws[i + 1], err);
            if (!d) goto oom;
            int p = c->downsample_padding;
            ops_conv_desc dc = {.batch = B, .in_ch = ch, .in_h = hs[i], .in_w = ws[i], .out_ch = ch, .k_h = 3,
                                .k_w = 3, .stride = 2, .pad_t = p, .pad_l = p, .pad_b = 1, .pad_r = 1,
                                .weight = lv->down_w, .bias = lv->down_b};
            if ((rc = level_conv(m, lv, d, h, &dc, err)) < 0) goto done;
            h = d;
            skips->x[skips->n] = h;
            skips->ch[skips->n++] = ch;
        }
        snprintf(name, sizeof name, "down_blocks.%d", i);
        emit(m, name, h, B, ch, hs[i < n - 1 ? i + 1 : i], ws[i < n - 1 ? i + 1 : i]);
    }
    *hp = h;
    return 0;
oom:
    rc = err && err->code ? err->code : SD_ENOMEM;
done:
    return rc;
}

/*
 * The mid block (resnet, attention, resnet) on *hp: [B, C_{n-1}, hs[n-1], ws[n-1]]. Allocates bufs[2],
 * two buffers of the largest main-path size that it and the up path alternate between; *hp ends in one.
 */
static int forward_mid(unet_model *m, float **bufs, float **hp, const float *temb_silu, const float *ctx, int n_ctx,
                       int B, const int *hs, const int *ws, sd_error *err) {
    const unet_config *c = &m->cfg;
    ops_ctx *ops = &m->ops;
    ops_arena *a = &ops->scratch;
    float *h = *hp;
    int n = c->n_levels, rc;
    size_t big = 0;
    for (int L = 0; L < n; L++) {
        size_t s = (size_t)B * c->block_out[L] * hs[L] * ws[L];
        if (L > 0 && (size_t)B * c->block_out[L] * hs[L - 1] * ws[L - 1] > s)
            s = (size_t)B * c->block_out[L] * hs[L - 1] * ws[L - 1];
        if (s > big) big = s;
    }
    float *buf[2] = {ops_arena_floats(a, big, err), ops_arena_floats(a, big, err)};
    if (!buf[0] || !buf[1]) return err && err->code ? err->code : SD_ENOMEM;
    bufs[0] = buf[0];
    bufs[1] = buf[1];
    int cm = c->block_out[n - 1], cur = 0;
    if ((rc = res_attn(m, &m->mid_res[0], &m->mid_attn, &h, buf[0], buf[1], temb_silu, ctx,
                       n_ctx, B, hs[n - 1], ws[n - 1], err)) < 0)
        goto done;
    cur = h == buf[0] ? 1 : 0; /* the free buffer */
    if ((rc = resnet_forward(&m->mid_res[1], buf[cur], h, B, hs[n - 1], ws[n - 1], temb_silu, c->norm_groups,
                             c->norm_eps, ops, err)) < 0)
        goto done;
    h = buf[cur];
    emit(m, "mid_block", h, B, cm, hs[n - 1], ws[n - 1]);
    *hp = h;
done:
    return rc;
}

/*
 * The up path from the mid block's output *hp: per level (deepest first) its resnets on cat([h, skip])
 * with their attention, then nearest upsampling to the next skip's size + conv (not on level 0).
 * Works in buf; *hp ends on [B, C0, H, W].
 */
static int forward_up(unet_model *m, unet_skips *skips, float **buf, float **hp, const float *temb_silu,
                      const float *ctx, int n_ctx, int B, const int *hs, const int *ws, sd_error *err) {
    const unet_config *c = &m->cfg;
    float *h = *hp;
    char name[32];
    int n = c->n_levels, lpb = c->layers_per_block, h_ch = c->block_out[n - 1], rc = 0;
    ops_ctx *ops = &m->ops;
    ops_arena *a = &ops->scratch;
    for (int i = 0; i < n; i++) {
        int L = n - 1 - i, ch = c->block_out[L];
        unet_level *lv = &m->levels[L];
        for (int j = 0; j <= lpb; j++) {
            float *sk = skips->x[--skips->n];
            int sc = skips->ch[skips->n];
            ops_mark cm_mark = ops_arena_mark(a);
            float *cat = ops_arena_floats(a, (size_t)B * (h_ch + sc) * hs[L] * ws[L], err);
            if (!cat) return err && err->code ? err->code : SD_ENOMEM;
            ops_concat_channels(cat, h, h_ch, sk, sc, B, hs[L] * ws[L]);
            int fr = h == buf[0] ? 1 : 0;
            float *cat_in = cat;
            rc = res_attn(m, &lv->up_res[j], &lv->up_attn[j], &cat_in, buf[fr], buf[1 - fr],
                          temb_silu, ctx, n_ctx, B, hs[L], ws[L], err);
            ops_arena_release(a, cm_mark);
            if (rc < 0) goto done;
            h = cat_in;
            h_ch = ch;
        }
        int oh = hs[L], ow = ws[L];
        if (L > 0) {
            float *u = h == buf[0] ? buf[1] : buf[0];
            ops_conv_desc uc = {.batch = B, .in_ch = ch, .in_h = hs[L], .in_w = ws[L], .out_ch = ch, .k_h = 3,
                                .k_w = 3, .stride = 1, .pad_t = 1, .pad_l = 1, .pad_b = 1, .pad_r = 1,
                                .weight = lv->up_w, .bias = lv->up_b, .up_h = hs[L - 1], .up_w = ws[L - 1]};
            if ((rc = level_conv(m, lv, u, h, &uc, err)) < 0) goto done;
            h = u;
            oh = hs[L - 1];
            ow = ws[L - 1];
        }
        snprintf(name, sizeof name, "up_blocks.%d", i);
        emit(m, name, h, B, ch, oh, ow);
    }
    *hp = h;
done:
    return rc;
}

/* out = conv_out(SiLU(GroupNorm(h))), the norm fused into the convolution's input; h: [B, C0, H, W] is in one
 * of buf (the other one receives the probe's copy of the normalized tensor) -> out: [B, out_channels, H, W]. */
static int forward_out(unet_model *m, float **buf, const float *h, int B, int H, int W, float *out, sd_error *err) {
    const unet_config *c = &m->cfg;
    ops_ctx *ops = &m->ops;
    ops_arena *a = &ops->scratch;
    int C0 = c->block_out[0], rc;
    float *sc = ops_arena_floats(a, (size_t)2 * B * C0, err);
    if (!sc) return err && err->code ? err->code : SD_ENOMEM;
    if ((rc = ops_groupnorm_affine(sc, sc + (size_t)B * C0, h, B, C0, H * W, c->norm_groups, c->norm_eps,
                                   m->norm_out_w, m->norm_out_b, ops, err)) < 0)
        goto done;
    if (m->probe) {
        float *g = h == buf[0] ? buf[1] : buf[0];
        for (int r = 0; r < B * C0; r++)
            for (int k = 0; k < H * W; k++) g[(size_t)r * H * W + k] = h[(size_t)r * H * W + k] * sc[r] + sc[B * C0 + r];
        emit(m, "conv_norm_out", g, B, C0, H, W);
    }
    ops_conv_desc co = {.batch = B, .in_ch = C0, .in_h = H, .in_w = W, .out_ch = c->out_channels, .k_h = 3,
                        .k_w = 3, .stride = 1, .pad_t = 1, .pad_l = 1, .pad_b = 1, .pad_r = 1,
                        .weight = m->conv_out_w, .bias = m->conv_out_b, .in_scale = sc,
                        .in_shift = sc + (size_t)B * C0, .in_silu = 1};
    rc = ops_conv2d(out, h, &co, ops, err);
done:
    return rc;
}

/* The added conditioning given matches the model's: present exactly for SDXL, with the widths it expects. */
static int check_added(const unet_config *c, const unet_added_cond *ac, sd_error *err) {
    if (!c->addition_time_embed_dim && (!ac || (!ac->text_embeds && !ac->time_ids))) return 0;
    if (!ac || !ac->text_embeds || !ac->time_ids)
        return sd_err(err, SD_EINPUT, "unet: this SDXL U-Net needs the pooled text embedding and the time ids");
    if (!c->addition_time_embed_dim)
        return sd_err(err, SD_EINPUT, "unet: added text/time conditioning given to a U-Net without it");
    if (ac->n_text < 1 || ac->n_time < 1 || ac->n_text + ac->n_time * c->addition_time_embed_dim != c->addition_in_dim)
        return sd_err(err, SD_EINPUT, "unet: %d text + %d x %d time-id features do not make the %d the U-Net expects",
                      ac->n_text, ac->n_time, c->addition_time_embed_dim, c->addition_in_dim);
    return 0;
}

/* 1 when some block of c is a Transformer2DModel (needs a text context). */
static int has_cross_attention(const unet_config *c) {
    int any = c->mid_attn == UNET_ATTN_CROSS;
    for (int i = 0; i < c->n_levels; i++) any |= c->down_attn[i] == UNET_ATTN_CROSS || c->up_attn[i] == UNET_ATTN_CROSS;
    return any;
}

int unet_forward(unet_model *m, const float *x, const float *t, const float *ctx, int n_ctx, int B, int H, int W,
                 float *out, sd_error *err) {
    return unet_forward_cond(m, x, t, ctx, n_ctx, NULL, B, H, W, out, err);
}

int unet_forward_labels(unet_model *m, const float *x, const float *t, const int *labels, const float *ctx, int n_ctx,
                        int B, int H, int W, float *out, sd_error *err) {
    unet_added_cond ac = {.labels = labels};
    return unet_forward_cond(m, x, t, ctx, n_ctx, labels ? &ac : NULL, B, H, W, out, err);
}

int unet_forward_cond(unet_model *m, const float *x, const float *t, const float *ctx, int n_ctx,
                      const unet_added_cond *added, int B, int H, int W, float *out, sd_error *err) {
    const int *labels = added ? added->labels : NULL;
    const unet_config *c = &m->cfg;
    int cross = has_cross_attention(c);
    if (B < 1 || H < 1 || W < 1 || n_ctx < 0 || (cross && (n_ctx < 1 || !ctx)))
        return sd_err(err, SD_EINPUT, "unet: bad input shape (batch %d, %dx%d latent, %d context tokens)", B, H, W,
                      n_ctx);
    int rc0 = check_added(c, added, err);
    if (rc0 < 0) return rc0;
    int f = 1 << (c->n_levels - 1);
    if (!c->downsample_padding && (H % f || W % f))
        return sd_err(err, SD_EINPUT, "unet: %dx%d: this U-Net (downsample_padding 0) needs sizes divisible by %d", W, H,
                      f);
    if (m->class_w && !labels) return sd_err(err, SD_EINPUT, "unet: the model has a class embedding; pass class labels");
    for (int b = 0; m->class_w && b < B; b++)
        if (labels[b] < 0 || labels[b] >= c->num_class_embeds)
            return sd_err(err, SD_EINPUT, "unet: class label %d out of range 0..%d", labels[b], c->num_class_embeds - 1);
    int C0 = c->block_out[0], T = c->time_embed_dim, rc = 0;
    int hs[SD_MAX_LEVELS], ws[SD_MAX_LEVELS];
    level_sizes(c, H, W, hs, ws);
    ops_ctx *ops = &m->ops;
    ops_arena *a = &ops->scratch;
    ops_mark mark = ops_arena_mark(a);
    float *tp = ops_arena_floats(a, (size_t)B * C0, err);
    float *temb = ops_arena_floats(a, (size_t)B * T, err);
    float *temb_silu = ops_arena_floats(a, (size_t)B * T, err);
    float *h = ops_arena_floats(a, (size_t)B * C0 * H * W, err);
    if (!tp || !temb || !temb_silu || !h) {
        rc = err && err->code ? err->code : SD_ENOMEM;
        goto done;
    }
    if ((rc = forward_time(m, t, added, B, tp, temb, temb_silu, err)) < 0) goto done;

    /* conv_in, then the down path; conv_in's output is the first skip */
    ops_conv_desc cin = {.batch = B, .in_ch = c->in_channels, .in_h = H, .in_w = W, .out_ch = C0, .k_h = 3,
                         .k_w = 3, .stride = 1, .pad_t = 1, .pad_l = 1, .pad_b = 1, .pad_r = 1,
                         .weight = m->conv_in_w, .bias = m->conv_in_b};
    if ((rc = ops_conv2d(h, x, &cin, ops, err)) < 0) goto done;
    emit(m, "conv_in", h, B, C0, H, W);
    unet_skips skips = {.x = {h}, .ch = {C0}, .n = 1};
    float *buf[2];
    if ((rc = forward_down(m, &skips, &h, temb_silu, ctx, n_ctx, B, hs, ws, err)) < 0 ||
        (rc = forward_mid(m, buf, &h, temb_silu, ctx, n_ctx, B, hs, ws, err)) < 0 ||
        (rc = forward_up(m, &skips, buf, &h, temb_silu, ctx, n_ctx, B, hs, ws, err)) < 0)
        goto done;
    rc = forward_out(m, buf, h, B, H, W, out, err);
done:
    ops_arena_release(a, mark);
    return rc;
}

/* Flops of one attention block of kind `kind` of level `level` over hw positions of ch channels. */
static double attn_flops(const unet_config *c, unet_attn_kind kind, int level, int ch, int B, int hw, int n_ctx) {
    if (kind == UNET_ATTN_CROSS)
        return transformer2d_flops_shape(ch, c->cross_attention_dim, c->transformer_layers[level], B, hw, n_ctx);
    return kind == UNET_ATTN_SELF ? attnblock_flops(B, ch, hw) : 0;
}

double unet_flops(const unet_config *c, int B, int H, int W, int n_ctx) {
    int n = c->n_levels, C0 = c->block_out[0], T = c->time_embed_dim, lpb = c->layers_per_block;
    int hs[SD_MAX_LEVELS], ws[SD_MAX_LEVELS];
    level_sizes(c, H, W, hs, ws);
    double f = 2.0 * B * (C0 * T + T * T);                         /* time embedding */
    f += 2.0 * B * ((double)c->addition_in_dim * T + (c->addition_time_embed_dim ? (double)T * T : 0)); /* SDXL */
    f += 2.0 * B * H * W * C0 * c->in_channels * 9;                 /* conv_in */
    f += 2.0 * B * H * W * c->out_channels * C0 * 9;                /* conv_out */
    int ch_in = C0;
    for (int i = 0; i < n; i++) {
        int ch = c->block_out[i], hw = hs[i] * ws[i];
        for (int j = 0; j < lpb; j++) {
            f += resnet_flops_shape(j == 0 ? ch_in : ch, ch, T, B, hs[i], ws[i]);
            f += attn_flops(c, c->down_attn[i], i, ch, B, hw, n_ctx);
        }
        if (i < n - 1) f += 2.0 * B * hs[i + 1] * ws[i + 1] * ch * ch * 9;
        ch_in = ch;
    }
    int cm = c->block_out[n - 1], hwm = hs[n - 1] * ws[n - 1];
    f += 2 * resnet_flops_shape(cm, cm, T, B, hs[n - 1], ws[n - 1]);
    f += attn_flops(c, c->mid_attn, n - 1, cm, B, hwm, n_ctx);
    for (int i = 0; i < n; i++) {
        int L = n - 1 - i, ch = c->block_out[L];
        for (int j = 0; j <= lpb; j++) {
            f += resnet_flops_shape(up_resnet_in(c, L, j), ch, T, B, hs[L], ws[L]);
            f += attn_flops(c, c->up_attn[i], L, ch, B, hs[L] * ws[L], n_ctx);
        }
        if (L > 0) f += 2.0 * B * hs[L - 1] * ws[L - 1] * ch * ch * 9;
    }
    return f;
}
