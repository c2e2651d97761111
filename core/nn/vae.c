/* vae.c - AutoencoderKL decoder and encoder (see vae.h). */
#include "vae.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define VAE_EPS 1e-6f

/* Mid block and output head shared by both halves ("encoder" / "decoder" in `side`). */
static int load_mid_and_out(vae_coder *cd, const sd_weights *w, const char *side, int cm, int c0, int out_ch,
                            sd_error *err) {
    char p[96];
    int rc;
    for (int j = 0; j < 2; j++) {
        snprintf(p, sizeof p, "%s.mid_block.resnets.%d", side, j);
        if ((rc = resnet_load(&cd->mid_res[j], w, p, cm, cm, 0, err)) < 0) return rc;
    }
    snprintf(p, sizeof p, "%s.mid_block.attentions.0", side);
    if ((rc = attnblock_load(&cd->mid_attn, w, p, cm, err)) < 0 ||
        (rc = sd_weights_get_wb(w, &cd->norm_out_w, &cd->norm_out_b, err, c0, 0, -1, "%s.conv_norm_out", side)) < 0 ||
        (rc = sd_weights_get_wb(w, &cd->conv_out_w, &cd->conv_out_b, err, out_ch, c0, 3, "%s.conv_out", side)) < 0)
        return rc;
    return 0;
}

static int load_decoder(vae_model *m, const sd_weights *w, sd_error *err) {
    const vae_config *c = &m->cfg;
    vae_coder *d = &m->dec;
    int n = c->n_levels, L = c->latent_channels, top = c->block_out[n - 1], rc;
    char p[96];
    if ((rc = sd_weights_get_wb(w, &m->post_quant_w, &m->post_quant_b, err, L, L, 1, "post_quant_conv")) < 0 ||
        (rc = sd_weights_get_wb(w, &d->conv_in_w, &d->conv_in_b, err, top, L, 3, "decoder.conv_in")) < 0)
        return rc;
    int prev = top;
    for (int i = 0; i < n; i++) {
        int out = c->block_out[n - 1 - i];
        for (int j = 0; j <= c->layers_per_block; j++) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
            if ((rc = resnet_load(&d->res[i][j], w, p, j == 0 ? prev : out, out, 0, err)) < 0) return rc;
        }
        if (i < n - 1 &&
            (rc = sd_weights_get_wb(w, &d->sample_w[i], &d->sample_b[i], err, out, out, 3, "decoder.up_blocks.%d.upsamplers.0.conv", i)) < 0)
            return rc;
        prev = out;
    }
    return load_mid_and_out(d, w, "decoder", top, c->block_out[0], c->out_channels, err);
}

static int load_encoder(vae_model *m, const sd_weights *w, sd_error *err) {
    const vae_config *c = &m->cfg;
    vae_coder *e = &m->enc;
    int n = c->n_levels, L = c->latent_channels, rc;
    char p[96];
    if ((rc = sd_weights_get_wb(w, &m->quant_w, &m->quant_b, err, 2 * L, 2 * L, 1, "quant_conv")) < 0 ||
        (rc = sd_weights_get_wb(w, &e->conv_in_w, &e->conv_in_b, err, c->block_out[0], c->in_channels, 3, "encoder.conv_in")) < 0)
        return rc;
    int prev = c->block_out[0];
    for (int i = 0; i < n; i++) {
        int out = c->block_out[i];
        for (int j = 0; j < c->layers_per_block; j++) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%d", i, j);
            if ((rc = resnet_load(&e->res[i][j], w, p, j == 0 ? prev : out, out, 0, err)) < 0) return rc;
        }
        if (i < n - 1 &&
            (rc = sd_weights_get_wb(w, &e->sample_w[i], &e->sample_b[i], err, out, out, 3, "encoder.down_blocks.%d.downsamplers.0.conv", i)) < 0)
            return rc;
        prev = out;
    }
    return load_mid_and_out(e, w, "encoder", c->block_out[n - 1], c->block_out[n - 1], 2 * L, err);
}

int vae_load(vae_model *m, const vae_config *cfg, const sd_weights *w, sd_error *err) {
    memset(m, 0, sizeof *m);
    const vae_config *c = cfg;
    if (c->n_levels < 1 || c->n_levels > SD_MAX_LEVELS || c->layers_per_block < 1 ||
        c->layers_per_block > VAE_MAX_LAYERS || c->latent_channels < 1 || c->in_channels < 1 || c->out_channels < 1 ||
        c->norm_groups < 1)
        return sd_err(err, SD_EUNSUPPORTED, "vae: unsupported config (%d levels, %d layers per block)", c->n_levels,
                      c->layers_per_block);
    for (int i = 0; i < c->n_levels; i++)
        if (c->block_out[i] < 1 || c->block_out[i] % c->norm_groups)
            return sd_err(err, SD_EINPUT, "vae: %d groups do not divide %d channels", c->norm_groups, c->block_out[i]);
    m->cfg = *cfg;
    int rc = load_decoder(m, w, err);
    if (rc < 0) return rc;
    if (sd_weights_find(w, "encoder.conv_in.weight") || w->supply) { /* a supplier makes the encoder too */
        if ((rc = load_encoder(m, w, err)) < 0) return rc;
        m->has_encoder = 1;
    }
    ops_ctx_init(&m->ops, 0);
    /* 3x3 convolutions by Winograd F(4x4, 3x3) in float32: 1.8x fewer multiply-adds than F(2x2, 3x3);
     * measured on the golden decodes, 2.0e-5 from the reference against 9.2e-6 (tolerance 1e-4, the
     * reference's own float32 noise 7.6e-6). The U-Net keeps F(2x2): its 16x16 goldens allow 2e-5 in
     * all. bf16 keeps F(2x2) (ops.h). */
    m->ops.wino_tile = 4;
    return 0;
}

void vae_release_scratch(vae_model *m) { ops_arena_drop(&m->ops.scratch); }

void vae_free(vae_model *m) {
    attnblock_free(&m->enc.mid_attn);
    attnblock_free(&m->dec.mid_attn);
    ops_ctx_free(&m->ops);
    memset(m, 0, sizeof *m);
}

/* Mid block on buf[*cur] ([B, C, H, W]) using the other buffer; *cur ends on the result. */
static int mid_forward(vae_model *m, const vae_coder *cd, float **buf, int *cur, int B, int H, int W,
                       sd_error *err) {
    int G = m->cfg.norm_groups, rc;
    if ((rc = resnet_forward(&cd->mid_res[0], buf[!*cur], buf[*cur], B, H, W, NULL, G, VAE_EPS, &m->ops, err)) < 0)
        return rc;
    if ((rc = attnblock_forward(&cd->mid_attn, buf[*cur], buf[!*cur], B, H * W, G, VAE_EPS, &m->ops, err)) < 0)
        return rc;
    if ((rc = resnet_forward(&cd->mid_res[1], buf[!*cur], buf[*cur], B, H, W, NULL, G, VAE_EPS, &m->ops, err)) < 0)
        return rc;
    *cur = !*cur;
    return 0;
}

/* out = conv_out(SiLU(GroupNorm(x))), the norm fused into the convolution's input. */
static int head_forward(vae_model *m, const vae_coder *cd, float *out, const float *x, int B, int C, int H, int W,
                        int out_ch, sd_error *err) {
    ops_mark mark = ops_arena_mark(&m->ops.scratch);
    float *sc = ops_arena_floats(&m->ops.scratch, (size_t)2 * B * C, err);
    if (!sc) return err ? err->code : SD_ENOMEM;
    int rc = ops_groupnorm_affine(sc, sc + (size_t)B * C, x, B, C, H * W, m->cfg.norm_groups, VAE_EPS,
                                  cd->norm_out_w, cd->norm_out_b, &m->ops, err);
    if (rc == 0) {
        ops_conv_desc co = {.batch = B, .in_ch = C, .in_h = H, .in_w = W, .out_ch = out_ch, .k_h = 3, .k_w = 3,
                            .stride = 1, .pad_t = 1, .pad_l = 1, .pad_b = 1, .pad_r = 1, .weight = cd->conv_out_w,
                            .bias = cd->conv_out_b, .in_scale = sc, .in_shift = sc + (size_t)B * C, .in_silu = 1};
        rc = ops_conv2d(out, x, &co, &m->ops, err);
    }
    ops_arena_release(&m->ops.scratch, mark);
    return rc;
}

static void emit(const vae_model *m, const char *name, const float *x, int B, int C, int H, int W) {
    if (!m->probe) return;
    int64_t shape[4] = {B, C, H, W};
    sd_probe_emit(m->probe, name, x, 4, shape);
}

/*
 * Floats per image each ping-pong buffer of the decoder must hold. The main
 * path alternates: conv_in writes buffer 0, every later step (3 in the mid
 * block, then each resnet and upsampler) writes the other one, so step k
 * lands in buffer k % 2. At 512x512 this gives 268 MB + 134 MB instead of
 * twice the largest tensor.
 */
static void decode_buffer_sizes(const vae_config *c, int h, int w, size_t need[2]) {
    int n = c->n_levels, top = c->block_out[n - 1], k = 0;
    need[0] = need[1] = 0;
    size_t s = (size_t)top * h * w;
    for (; k < 4; k++) /* conv_in and the mid block */
        if (s > need[k % 2]) need[k % 2] = s;
    for (int i = 0; i < n; i++) {
        int out = c->block_out[n - 1 - i];
        s = (size_t)out * (h << i) * (w << i);
        for (int j = 0; j <= c->layers_per_block; j++, k++)
            if (s > need[k % 2]) need[k % 2] = s;
        if (i < n - 1) {
            s = (size_t)out * (h << (i + 1)) * (w << (i + 1));
            if (s > need[k % 2]) need[k % 2] = s;
            k++;
        }
    }
}

int vae_decode(vae_model *m, const float *z, int B, int h, int w, float *img, sd_error *err) {
    const vae_config *c = &m->cfg;
    if (B < 1 || h < 1 || w < 1) return sd_err(err, SD_EINPUT, "vae: bad latent shape %dx%dx%d", B, h, w);
    int n = c->n_levels, L = c->latent_channels, top = c->block_out[n - 1], G = c->norm_groups, rc = 0;
    ops_ctx *ops = &m->ops;
    ops_arena *a = &ops->scratch;
    ops_mark mark = ops_arena_mark(a);
    size_t need[2];
    decode_buffer_sizes(c, h, w, need);
    float *buf[2] = {ops_arena_floats(a, need[0] * B, err), ops_arena_floats(a, need[1] * B, err)};
    float *pq = ops_arena_floats(a, (size_t)B * L * h * w, err);
    if (!buf[0] || !buf[1] || !pq) {
        rc = err ? err->code : SD_ENOMEM;
        goto done;
    }
    ops_conv_desc pqc = {.batch = B, .in_ch = L, .in_h = h, .in_w = w, .out_ch = L, .k_h = 1, .k_w = 1, .stride = 1,
                         .weight = m->post_quant_w, .bias = m->post_quant_b};
    if ((rc = ops_conv2d(pq, z, &pqc, ops, err)) < 0) goto done;
    emit(m, "post_quant_conv", pq, B, L, h, w);
    ops_conv_desc ci = {.batch = B, .in_ch = L, .in_h = h, .in_w = w, .out_ch = top, .k_h = 3, .k_w = 3, .stride = 1,
                        .pad_t = 1, .pad_l = 1, .pad_b = 1, .pad_r = 1, .weight = m->dec.conv_in_w,
                        .bias = m->dec.conv_in_b};
    int cur = 0;
    if ((rc = ops_conv2d(buf[cur], pq, &ci, ops, err)) < 0) goto done;
    emit(m, "decoder.conv_in", buf[cur], B, top, h, w);
    if ((rc = mid_forward(m, &m->dec, buf, &cur, B, h, w, err)) < 0) goto done;
    emit(m, "decoder.mid_block", buf[cur], B, top, h, w);
    int H = h, W = w, ch = top;
    for (int i = 0; i < n; i++) {
        int out = c->block_out[n - 1 - i];
        for (int j = 0; j <= c->layers_per_block; j++) {
            if ((rc = resnet_forward(&m->dec.res[i][j], buf[!cur], buf[cur], B, H, W, NULL, G, VAE_EPS, ops, err)) < 0)
                goto done;
            cur = !cur;
        }
        ch = out;
        if (i < n - 1) {
            ops_conv_desc uc = {.batch = B, .in_ch = ch, .in_h = H, .in_w = W, .out_ch = ch, .k_h = 3, .k_w = 3,
                                .stride = 1, .pad_t = 1, .pad_l = 1, .pad_b = 1, .pad_r = 1,
                                .weight = m->dec.sample_w[i], .bias = m->dec.sample_b[i], .up_h = 2 * H, .up_w = 2 * W};
            if ((rc = ops_conv2d(buf[!cur], buf[cur], &uc, ops, err)) < 0) goto done;
            cur = !cur;
            H *= 2;
            W *= 2;
        }
        char name[40];
        snprintf(name, sizeof name, "decoder.up_blocks.%d", i);
        emit(m, name, buf[cur], B, ch, H, W);
    }
    rc = head_forward(m, &m->dec, img, buf[cur], B, ch, H, W, c->out_channels, err);
done:
    ops_arena_release(a, mark);
    return rc;
}

void vae_latent_size(const vae_config *cfg, int H, int W, int *h, int *w) {
    for (int i = 0; i < cfg->n_levels - 1; i++) { /* pad (0, 1, 0, 1), 3x3 stride 2 */
        H = H + 1 < 3 ? 0 : (H + 1 - 3) / 2 + 1;
        W = W + 1 < 3 ? 0 : (W + 1 - 3) / 2 + 1;
    }
    *h = H;
    *w = W;
}

int vae_encode(vae_model *m, const float *img, int B, int H, int W, float *mean, float *logvar, sd_error *err) {
    const vae_config *c = &m->cfg;
    if (!m->has_encoder) return sd_err(err, SD_EINPUT, "vae: these weights have no encoder (encoder.conv_in.weight)");
    int n = c->n_levels, L = c->latent_channels, G = c->norm_groups, rc = 0;
    int lh, lw;
    vae_latent_size(c, H, W, &lh, &lw);
    if (B < 1 || lh < 1 || lw < 1) return sd_err(err, SD_EINPUT, "vae: image %dx%d is too small to encode", H, W);
    ops_ctx *ops = &m->ops;
    ops_arena *a = &ops->scratch;
    ops_mark mark = ops_arena_mark(a);
    size_t big = 0;
    for (int i = 0, h = H, w = W, prev = c->block_out[0]; i < n; i++) {
        int out = c->block_out[i];
        size_t s = (size_t)(prev > out ? prev : out) * h * w;
        if (s > big) big = s;
        prev = out;
        if (i < n - 1) h = (h - 2) / 2 + 1, w = (w - 2) / 2 + 1;
    }
    float *buf[2] = {ops_arena_floats(a, big * B, err), ops_arena_floats(a, big * B, err)};
    float *moments = ops_arena_floats(a, (size_t)B * 2 * L * lh * lw, err);
    if (!buf[0] || !buf[1] || !moments) {
        rc = err ? err->code : SD_ENOMEM;
        goto done;
    }
    int cur = 0, ch = c->block_out[0];
    ops_conv_desc ci = {.batch = B, .in_ch = c->in_channels, .in_h = H, .in_w = W, .out_ch = ch, .k_h = 3, .k_w = 3,
                        .stride = 1, .pad_t = 1, .pad_l = 1, .pad_b = 1, .pad_r = 1, .weight = m->enc.conv_in_w,
                        .bias = m->enc.conv_in_b};
    if ((rc = ops_conv2d(buf[cur], img, &ci, ops, err)) < 0) goto done;
    int h = H, w = W;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < c->layers_per_block; j++) {
            if ((rc = resnet_forward(&m->enc.res[i][j], buf[!cur], buf[cur], B, h, w, NULL, G, VAE_EPS, ops, err)) < 0)
                goto done;
            cur = !cur;
        }
        ch = c->block_out[i];
        if (i < n - 1) {
            ops_conv_desc dc = {.batch = B, .in_ch = ch, .in_h = h, .in_w = w, .out_ch = ch, .k_h = 3, .k_w = 3,
                                .stride = 2, .pad_b = 1, .pad_r = 1, .weight = m->enc.sample_w[i],
                                .bias = m->enc.sample_b[i]};
            if ((rc = ops_conv2d(buf[!cur], buf[cur], &dc, ops, err)) < 0) goto done;
            cur = !cur;
            h = (h - 2) / 2 + 1;
            w = (w - 2) / 2 + 1;
        }
    }
    if ((rc = mid_forward(m, &m->enc, buf, &cur, B, h, w, err)) < 0 ||
        (rc = head_forward(m, &m->enc, buf[!cur], buf[cur], B, ch, h, w, 2 * L, err)) < 0)
        goto done;
    ops_conv_desc qc = {.batch = B, .in_ch = 2 * L, .in_h = h, .in_w = w, .out_ch = 2 * L, .k_h = 1, .k_w = 1,
                        .stride = 1, .weight = m->quant_w, .bias = m->quant_b};
    if ((rc = ops_conv2d(moments, buf[!cur], &qc, ops, err)) < 0) goto done;
    size_t plane = (size_t)L * h * w;
    for (int b = 0; b < B; b++) {
        memcpy(mean + b * plane, moments + b * 2 * plane, plane * sizeof(float));
        const float *lv = moments + b * 2 * plane + plane;
        for (size_t i = 0; i < plane; i++) logvar[b * plane + i] = lv[i] < -30.0f ? -30.0f : lv[i] > 20.0f ? 20.0f : lv[i];
    }
done:
    ops_arena_release(a, mark);
    return rc;
}

double vae_decode_flops(const vae_config *c, int B, int h, int w) {
    int n = c->n_levels, L = c->latent_channels, top = c->block_out[n - 1];
    double f = 2.0 * B * h * w * L * L + 2.0 * B * h * w * top * L * 9;
    f += 2 * resnet_flops_shape(top, top, 0, B, h, w) + attnblock_flops(B, top, (double)h * w);
    int H = h, W = w, prev = top;
    for (int i = 0; i < n; i++) {
        int out = c->block_out[n - 1 - i];
        for (int j = 0; j <= c->layers_per_block; j++) f += resnet_flops_shape(j == 0 ? prev : out, out, 0, B, H, W);
        if (i < n - 1) {
            H *= 2;
            W *= 2;
            f += 2.0 * B * H * W * out * out * 9;
        }
        prev = out;
    }
    return f + 2.0 * B * H * W * c->out_channels * c->block_out[0] * 9;
}

double vae_encode_flops(const vae_config *c, int B, int H, int W) {
    int n = c->n_levels, L = c->latent_channels;
    double f = 2.0 * B * H * W * c->block_out[0] * c->in_channels * 9;
    int h = H, w = W, prev = c->block_out[0];
    for (int i = 0; i < n; i++) {
        int out = c->block_out[i];
        for (int j = 0; j < c->layers_per_block; j++) f += resnet_flops_shape(j == 0 ? prev : out, out, 0, B, h, w);
        if (i < n - 1) {
            h = (h - 2) / 2 + 1;
            w = (w - 2) / 2 + 1;
            f += 2.0 * B * h * w * out * out * 9;
        }
        prev = out;
    }
    int cm = c->block_out[n - 1];
    f += 2 * resnet_flops_shape(cm, cm, 0, B, h, w) + attnblock_flops(B, cm, (double)h * w);
    return f + 2.0 * B * h * w * 2 * L * cm * 9 + 2.0 * B * h * w * 4 * L * L;
}
