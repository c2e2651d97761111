/* inception.c - pytorch-fid's FID InceptionV3 to pool3 (see inception.h). */
#include "inception.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops_cnn.h"

#define BN_EPS 1e-3 /* pytorch-fid's BasicConv2d: BatchNorm2d(eps=0.001) */
#define NAME_MAX_LEN 48

/* ---- the network's modules, in one place ----------------------------- */

/*
 * Every BasicConv2d is declared once, in visit_convs below, with its
 * checkpoint name, geometry and input size at a 299x299 network input. The
 * loader runs the visit twice (count, then load); flops use it too.
 */
typedef struct conv_visit {
    int (*fn)(struct conv_visit *v, inception_conv *c, const char *name, sd_error *err);
    const sd_weights *w;
    size_t n_params;    /* pass 1: floats needed */
    int n_convs;        /* pass 1: modules declared */
    float *cursor;      /* pass 2: next free float in the params block */
    char *names;        /* pass 2: next free name slot */
    float *bn;          /* pass 2: [4, 2048] BatchNorm scratch */
    int in_hw;          /* input height = width of the module being declared */
    double flops;
} conv_visit;

/* Declares module "<block>.<name>" (in -> out channels, kh x kw kernel) and hands it to the pass's fn. */
static int def(conv_visit *v, inception_conv *c, const char *block, const char *name, int in, int out, int kh, int kw,
               int stride, int ph, int pw, sd_error *err) {
    char full[NAME_MAX_LEN];
    snprintf(full, sizeof full, "%s%s%s", block, *block ? "." : "", name);
    c->in_ch = in, c->out_ch = out, c->k_h = kh, c->k_w = kw, c->stride = stride, c->pad_h = ph, c->pad_w = pw;
    int oh = (v->in_hw + 2 * ph - kh) / stride + 1, ow = (v->in_hw + 2 * pw - kw) / stride + 1;
    v->flops += 2.0 * out * in * kh * kw * oh * ow;
    return v->fn ? v->fn(v, c, full, err) : 0;
}

static int visit_block_a(conv_visit *v, inception_block_a *b, const char *n, int in, int pool_ch, sd_error *err) {
    int rc;
    if ((rc = def(v, &b->b1x1, n, "branch1x1", in, 64, 1, 1, 1, 0, 0, err)) < 0 ||
        (rc = def(v, &b->b5x5_1, n, "branch5x5_1", in, 48, 1, 1, 1, 0, 0, err)) < 0 ||
        (rc = def(v, &b->b5x5_2, n, "branch5x5_2", 48, 64, 5, 5, 1, 2, 2, err)) < 0 ||
        (rc = def(v, &b->dbl_1, n, "branch3x3dbl_1", in, 64, 1, 1, 1, 0, 0, err)) < 0 ||
        (rc = def(v, &b->dbl_2, n, "branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1, err)) < 0 ||
        (rc = def(v, &b->dbl_3, n, "branch3x3dbl_3", 96, 96, 3, 3, 1, 1, 1, err)) < 0 ||
        (rc = def(v, &b->pool, n, "branch_pool", in, pool_ch, 1, 1, 1, 0, 0, err)) < 0)
        return rc;
    return 0;
}

static int visit_block_b(conv_visit *v, inception_block_b *b, const char *n, int in, sd_error *err) {
    int rc;
    if ((rc = def(v, &b->b3x3, n, "branch3x3", in, 384, 3, 3, 2, 0, 0, err)) < 0 ||
        (rc = def(v, &b->dbl_1, n, "branch3x3dbl_1", in, 64, 1, 1, 1, 0, 0, err)) < 0 ||
        (rc = def(v, &b->dbl_2, n, "branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1, err)) < 0)
        return rc;
    return def(v, &b->dbl_3, n, "branch3x3dbl_3", 96, 96, 3, 3, 2, 0, 0, err);
}

static int visit_block_c(conv_visit *v, inception_block_c *b, const char *n, int c7, sd_error *err) {
    int rc;
    if ((rc = def(v, &b->b1x1, n, "branch1x1", 768, 192, 1, 1, 1, 0, 0, err)) < 0 ||
        (rc = def(v, &b->b7_1, n, "branch7x7_1", 768, c7, 1, 1, 1, 0, 0, err)) < 0 ||
        (rc = def(v, &b->b7_2, n, "branch7x7_2", c7, c7, 1, 7, 1, 0, 3, err)) < 0 ||
        (rc = def(v, &b->b7_3, n, "branch7x7_3", c7, 192, 7, 1, 1, 3, 0, err)) < 0 ||
        (rc = def(v, &b->dbl_1, n, "branch7x7dbl_1", 768, c7, 1, 1, 1, 0, 0, err)) < 0 ||
        (rc = def(v, &b->dbl_2, n, "branch7x7dbl_2", c7, c7, 7, 1, 1, 3, 0, err)) < 0 ||
        (rc = def(v, &b->dbl_3, n, "branch7x7dbl_3", c7, c7, 1, 7, 1, 0, 3, err)) < 0 ||
        (rc = def(v, &b->dbl_4, n, "branch7x7dbl_4", c7, c7, 7, 1, 1, 3, 0, err)) < 0 ||
        (rc = def(v, &b->dbl_5, n, "branch7x7dbl_5", c7, 192, 1, 7, 1, 0, 3, err)) < 0 ||
        (rc = def(v, &b->pool, n, "branch_pool", 768, 192, 1, 1, 1, 0, 0, err)) < 0)
        return rc;
    return 0;
}

static int visit_block_d(conv_visit *v, inception_block_d *b, const char *n, sd_error *err) {
    int rc;
    if ((rc = def(v, &b->b3_1, n, "branch3x3_1", 768, 192, 1, 1, 1, 0, 0, err)) < 0 ||
        (rc = def(v, &b->b3_2, n, "branch3x3_2", 192, 320, 3, 3, 2, 0, 0, err)) < 0 ||
        (rc = def(v, &b->b7x3_1, n, "branch7x7x3_1", 768, 192, 1, 1, 1, 0, 0, err)) < 0 ||
        (rc = def(v, &b->b7x3_2, n, "branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3, err)) < 0 ||
        (rc = def(v, &b->b7x3_3, n, "branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0, err)) < 0 ||
        (rc = def(v, &b->b7x3_4, n, "branch7x7x3_4", 192, 192, 3, 3, 2, 0, 0, err)) < 0)
        return rc;
    return 0;
}

static int visit_block_e(conv_visit *v, inception_block_e *b, const char *n, int in, sd_error *err) {
    int rc;
    if ((rc = def(v, &b->b1x1, n, "branch1x1", in, 320, 1, 1, 1, 0, 0, err)) < 0 ||
        (rc = def(v, &b->b3_1, n, "branch3x3_1", in, 384, 1, 1, 1, 0, 0, err)) < 0 ||
        (rc = def(v, &b->b3_2a, n, "branch3x3_2a", 384, 384, 1, 3, 1, 0, 1, err)) < 0 ||
        (rc = def(v, &b->b3_2b, n, "branch3x3_2b", 384, 384, 3, 1, 1, 1, 0, err)) < 0 ||
        (rc = def(v, &b->dbl_1, n, "branch3x3dbl_1", in, 448, 1, 1, 1, 0, 0, err)) < 0 ||
        (rc = def(v, &b->dbl_2, n, "branch3x3dbl_2", 448, 384, 3, 3, 1, 1, 1, err)) < 0 ||
        (rc = def(v, &b->dbl_3a, n, "branch3x3dbl_3a", 384, 384, 1, 3, 1, 0, 1, err)) < 0 ||
        (rc = def(v, &b->dbl_3b, n, "branch3x3dbl_3b", 384, 384, 3, 1, 1, 1, 0, err)) < 0 ||
        (rc = def(v, &b->pool, n, "branch_pool", in, 192, 1, 1, 1, 0, 0, err)) < 0)
        return rc;
    return 0;
}

/* Declares all 94 modules of m in checkpoint order. */
static int visit_convs(conv_visit *v, inception_model *m, sd_error *err) {
    static const char *const a_names[3] = {"Mixed_5b", "Mixed_5c", "Mixed_5d"};
    static const char *const c_names[4] = {"Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"};
    static const int a_in[3] = {192, 256, 288}, a_pool[3] = {32, 64, 64}, c7[4] = {128, 160, 160, 192};
    int rc;
    v->in_hw = 299;
    if ((rc = def(v, &m->c1a, "", "Conv2d_1a_3x3", 3, 32, 3, 3, 2, 0, 0, err)) < 0) return rc;
    v->in_hw = 149;
    if ((rc = def(v, &m->c2a, "", "Conv2d_2a_3x3", 32, 32, 3, 3, 1, 0, 0, err)) < 0) return rc;
    v->in_hw = 147;
    if ((rc = def(v, &m->c2b, "", "Conv2d_2b_3x3", 32, 64, 3, 3, 1, 1, 1, err)) < 0) return rc;
    v->in_hw = 73;
    if ((rc = def(v, &m->c3b, "", "Conv2d_3b_1x1", 64, 80, 1, 1, 1, 0, 0, err)) < 0) return rc;
    if ((rc = def(v, &m->c4a, "", "Conv2d_4a_3x3", 80, 192, 3, 3, 1, 0, 0, err)) < 0) return rc;
    v->in_hw = 35;
    for (int i = 0; i < 3; i++)
        if ((rc = visit_block_a(v, &m->m5[i], a_names[i], a_in[i], a_pool[i], err)) < 0) return rc;
    /* Mixed_6a reads 35x35; its stride-2 convs give 17x17 */
    if ((rc = visit_block_b(v, &m->m6a, "Mixed_6a", 288, err)) < 0) return rc;
    v->in_hw = 17;
    for (int i = 0; i < 4; i++)
        if ((rc = visit_block_c(v, &m->m6[i], c_names[i], c7[i], err)) < 0) return rc;
    if ((rc = visit_block_d(v, &m->m7a, "Mixed_7a", err)) < 0) return rc;
    v->in_hw = 8;
    if ((rc = visit_block_e(v, &m->m7[0], "Mixed_7b", 1280, err)) < 0) return rc;
    return visit_block_e(v, &m->m7[1], "Mixed_7c", 2048, err);
}

/* ---- loading ---------------------------------------------------------- */

static int count_conv(conv_visit *v, inception_conv *c, const char *name, sd_error *err) {
    (void)name, (void)err;
    size_t nw = (size_t)c->out_ch * c->in_ch * c->k_h * c->k_w;
    v->n_params += (nw + 15) / 16 * 16 + (size_t)(c->out_ch + 15) / 16 * 16; /* 64-byte aligned pieces */
    v->n_convs++;
    return 0;
}

/* The float tensor `<name>.<part>` of the given shape. */
static int get_float(const sd_weights *w, const char *name, const char *part, int ndim, const int64_t *shape,
                     const sd_tensor **t, sd_error *err) {
    char full[NAME_MAX_LEN + 32];
    snprintf(full, sizeof full, "%s.%s", name, part);
    int rc = sd_weights_get(w, full, ndim, shape, t, err);
    if (rc < 0) return rc;
    if (!sd_dtype_is_float((*t)->dtype))
        return sd_err(err, SD_EINPUT, "%s: tensor '%s' is %s, expected a float type (F32, F16 or BF16)", w->label,
                      full, sd_dtype_name((*t)->dtype));
    return 0;
}

/* Converts conv + BatchNorm of module `name` into the params block, folding the BatchNorm. */
static int load_conv(conv_visit *v, inception_conv *c, const char *name, sd_error *err) {
    static const char *const bn_parts[4] = {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"};
    int64_t wshape[4] = {c->out_ch, c->in_ch, c->k_h, c->k_w}, bshape[1] = {c->out_ch};
    const sd_tensor *tw, *tbn[4];
    int rc = get_float(v->w, name, "conv.weight", 4, wshape, &tw, err);
    for (int i = 0; i < 4 && rc == 0; i++) rc = get_float(v->w, name, bn_parts[i], 1, bshape, &tbn[i], err);
    if (rc < 0) return rc;
    size_t per_out = (size_t)c->in_ch * c->k_h * c->k_w, nw = per_out * c->out_ch;
    float *wf = v->cursor, *bf = wf + (nw + 15) / 16 * 16;
    v->cursor = bf + (size_t)(c->out_ch + 15) / 16 * 16;
    sd_tensor_to_f32(tw, wf);
    for (int i = 0; i < 4; i++) sd_tensor_to_f32(tbn[i], v->bn + (size_t)i * INCEPTION_DIM);
    const float *bn = v->bn;
    for (int o = 0; o < c->out_ch; o++)
        if (!(bn[3 * INCEPTION_DIM + o] + BN_EPS > 0))
            return sd_err(err, SD_EINPUT, "%s: '%s.bn.running_var' has %g at channel %d; a variance must be >= 0",
                          v->w->label, name, bn[3 * INCEPTION_DIM + o], o);
    ops_fold_batchnorm(wf, bf, c->out_ch, per_out, bn, bn + INCEPTION_DIM, bn + 2 * INCEPTION_DIM,
                       bn + 3 * INCEPTION_DIM, BN_EPS);
    /* views for ops_conv2d; the name lives in the model's names block */
    strcpy(v->names, name);
    memset(&c->w, 0, sizeof c->w);
    c->w.name = v->names;
    c->w.dtype = SD_F32;
    c->w.ndim = 4;
    memcpy(c->w.shape, wshape, sizeof wshape);
    c->w.data = wf;
    c->w.nbytes = nw * sizeof(float);
    c->b = c->w;
    c->b.ndim = 1;
    c->b.shape[0] = c->out_ch;
    c->b.data = bf;
    c->b.nbytes = (size_t)c->out_ch * sizeof(float);
    v->names += NAME_MAX_LEN;
    return 0;
}

int inception_load(inception_model *m, const sd_weights *w, sd_error *err) {
    memset(m, 0, sizeof *m);
    conv_visit v = {.fn = count_conv, .w = w};
    int rc = visit_convs(&v, m, err);
    if (rc < 0) return rc;
    m->n_params = v.n_params;
    size_t bytes = m->n_params * sizeof(float) + (size_t)v.n_convs * NAME_MAX_LEN; /* weights, then names */
    m->params = aligned_alloc(64, (bytes + 63) & ~(size_t)63); /* C11: size a multiple of the alignment */
    v.bn = malloc(4 * INCEPTION_DIM * sizeof(float));
    if (!m->params || !v.bn) {
        free(v.bn);
        free(m->params);
        m->params = NULL;
        return sd_err(err, SD_ENOMEM, "out of memory loading the Inception network (%zu MB)",
                      m->n_params * sizeof(float) >> 20);
    }
    v.fn = load_conv;
    v.cursor = m->params;
    v.names = (char *)(m->params + m->n_params);
    rc = visit_convs(&v, m, err);
    free(v.bn);
    if (rc < 0) {
        inception_free(m);
        return rc;
    }
    m->max_batch = INCEPTION_DEFAULT_MAX_BATCH;
    ops_ctx_init(&m->ops, (size_t)32 << 20);
    return 0;
}

void inception_free(inception_model *m) {
    free(m->params);
    ops_ctx_free(&m->ops);
    memset(m, 0, sizeof *m);
}

double inception_flops(const inception_model *m, int B) {
    inception_model tmp = *m; /* the visit writes geometry; keep m untouched */
    conv_visit v = {0};
    visit_convs(&v, &tmp, NULL);
    return v.flops * B;
}

/* ---- forward ---------------------------------------------------------- */

/*
 * x: [B, c->in_ch, H, W] -> channels [c0, c0 + out_ch) of y: [B, ctot, oh, ow],
 * y = relu(conv(x) + folded bias). A slice of a wider y is written image by image.
 */
static int conv_relu(inception_model *m, const inception_conv *c, const float *x, int B, int H, int W, float *y,
                     int ctot, int c0, sd_error *err) {
    ops_conv_desc d = {.batch = B, .in_ch = c->in_ch, .in_h = H, .in_w = W, .out_ch = c->out_ch, .k_h = c->k_h,
                       .k_w = c->k_w, .stride = c->stride, .pad_t = c->pad_h, .pad_b = c->pad_h,
                       .pad_l = c->pad_w, .pad_r = c->pad_w, .weight = &c->w, .bias = &c->b};
    int oh, ow, rc;
    ops_conv2d_out_size(&d, &oh, &ow);
    size_t P = (size_t)oh * ow;
    if (ctot == c->out_ch) {
        if ((rc = ops_conv2d(y, x, &d, &m->ops, err)) < 0) return rc;
        ops_relu(y, (size_t)B * c->out_ch * P);
        return 0;
    }
    d.batch = 1;
    for (int b = 0; b < B; b++) {
        float *yb = y + ((size_t)b * ctot + c0) * P;
        if ((rc = ops_conv2d(yb, x + (size_t)b * c->in_ch * H * W, &d, &m->ops, err)) < 0) return rc;
        ops_relu(yb, (size_t)c->out_ch * P);
    }
    return 0;
}

/* x: [B, C, H, W] -> channels [c0, c0 + C) of y: [B, ctot, oh, ow], a 3x3 max pool. */
static void maxpool_into(float *y, int ctot, int c0, const float *x, int B, int C, int H, int W, int stride,
                         int pad) {
    int oh = ops_pool_out_size(H, 3, stride, pad), ow = ops_pool_out_size(W, 3, stride, pad);
    for (int b = 0; b < B; b++)
        ops_maxpool2d(y + ((size_t)b * ctot + c0) * oh * ow, x + (size_t)b * C * H * W, 1, C, H, W, 3, stride, pad);
}

/* n floats from the arena; on failure the error is set and NULL returned. */
static float *tmp(inception_model *m, size_t n, sd_error *err) { return ops_arena_floats(&m->ops.scratch, n, err); }

/* FIDInceptionA. x: [B, in, 35, 35] -> y: [B, 224 + pool_ch, 35, 35]. */
static int block_a(inception_model *m, const inception_block_a *k, const float *x, int B, float *y, sd_error *err) {
    const int S = 35, in = k->b1x1.in_ch, ctot = 224 + k->pool.out_ch;
    size_t P = (size_t)S * S;
    ops_mark mark = ops_arena_mark(&m->ops.scratch);
    int rc = 0;
    float *t1, *t2, *pooled;
    t1 = tmp(m, B * 96 * P, err);
    t2 = tmp(m, B * 96 * P, err);
    pooled = tmp(m, B * in * P, err);
    if (!t1 || !t2 || !pooled) {
        rc = err ? err->code : SD_ENOMEM;
        goto out;
    }
    if ((rc = conv_relu(m, &k->b1x1, x, B, S, S, y, ctot, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->b5x5_1, x, B, S, S, t1, 48, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->b5x5_2, t1, B, S, S, y, ctot, 64, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->dbl_1, x, B, S, S, t1, 64, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->dbl_2, t1, B, S, S, t2, 96, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->dbl_3, t2, B, S, S, y, ctot, 128, err)) < 0) goto out;
    ops_avgpool2d(pooled, x, B, in, S, S, 3, 1, 1, 0);
    if ((rc = conv_relu(m, &k->pool, pooled, B, S, S, y, ctot, 224, err)) < 0) goto out;
out:
    ops_arena_release(&m->ops.scratch, mark);
    return rc;
}

/* InceptionB. x: [B, 288, 35, 35] -> y: [B, 768, 17, 17]. */
static int block_b(inception_model *m, const inception_block_b *k, const float *x, int B, float *y, sd_error *err) {
    const int S = 35, in = k->b3x3.in_ch, ctot = 480 + in;
    size_t P = (size_t)S * S;
    ops_mark mark = ops_arena_mark(&m->ops.scratch);
    int rc = 0;
    float *t1, *t2;
    t1 = tmp(m, B * 64 * P, err);
    t2 = tmp(m, B * 96 * P, err);
    if (!t1 || !t2) {
        rc = err ? err->code : SD_ENOMEM;
        goto out;
    }
    if ((rc = conv_relu(m, &k->b3x3, x, B, S, S, y, ctot, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->dbl_1, x, B, S, S, t1, 64, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->dbl_2, t1, B, S, S, t2, 96, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->dbl_3, t2, B, S, S, y, ctot, 384, err)) < 0) goto out;
    maxpool_into(y, ctot, 480, x, B, in, S, S, 2, 0);
out:
    ops_arena_release(&m->ops.scratch, mark);
    return rc;
}

/* FIDInceptionC. x: [B, 768, 17, 17] -> y: [B, 768, 17, 17]. */
static int block_c(inception_model *m, const inception_block_c *k, const float *x, int B, float *y, sd_error *err) {
    const int S = 17, in = 768, ctot = 768, c7 = k->b7_1.out_ch;
    size_t P = (size_t)S * S;
    ops_mark mark = ops_arena_mark(&m->ops.scratch);
    int rc = 0;
    float *t1, *t2, *pooled;
    t1 = tmp(m, B * c7 * P, err);
    t2 = tmp(m, B * c7 * P, err);
    pooled = tmp(m, B * in * P, err);
    if (!t1 || !t2 || !pooled) {
        rc = err ? err->code : SD_ENOMEM;
        goto out;
    }
    if ((rc = conv_relu(m, &k->b1x1, x, B, S, S, y, ctot, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->b7_1, x, B, S, S, t1, c7, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->b7_2, t1, B, S, S, t2, c7, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->b7_3, t2, B, S, S, y, ctot, 192, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->dbl_1, x, B, S, S, t1, c7, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->dbl_2, t1, B, S, S, t2, c7, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->dbl_3, t2, B, S, S, t1, c7, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->dbl_4, t1, B, S, S, t2, c7, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->dbl_5, t2, B, S, S, y, ctot, 384, err)) < 0) goto out;
    ops_avgpool2d(pooled, x, B, in, S, S, 3, 1, 1, 0);
    if ((rc = conv_relu(m, &k->pool, pooled, B, S, S, y, ctot, 576, err)) < 0) goto out;
out:
    ops_arena_release(&m->ops.scratch, mark);
    return rc;
}

/* InceptionD. x: [B, 768, 17, 17] -> y: [B, 1280, 8, 8]. */
static int block_d(inception_model *m, const inception_block_d *k, const float *x, int B, float *y, sd_error *err) {
    const int S = 17, in = 768, ctot = 1280;
    size_t P = (size_t)S * S;
    ops_mark mark = ops_arena_mark(&m->ops.scratch);
    int rc = 0;
    float *t1, *t2;
    t1 = tmp(m, B * 192 * P, err);
    t2 = tmp(m, B * 192 * P, err);
    if (!t1 || !t2) {
        rc = err ? err->code : SD_ENOMEM;
        goto out;
    }
    if ((rc = conv_relu(m, &k->b3_1, x, B, S, S, t1, 192, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->b3_2, t1, B, S, S, y, ctot, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->b7x3_1, x, B, S, S, t1, 192, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->b7x3_2, t1, B, S, S, t2, 192, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->b7x3_3, t2, B, S, S, t1, 192, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->b7x3_4, t1, B, S, S, y, ctot, 320, err)) < 0) goto out;
    maxpool_into(y, ctot, 512, x, B, in, S, S, 2, 0);
out:
    ops_arena_release(&m->ops.scratch, mark);
    return rc;
}

/*
 * FIDInceptionE_1 (max_pool = 0: average pool without padding counts) or
 * FIDInceptionE_2 (max_pool = 1). x: [B, in, 8, 8] -> y: [B, 2048, 8, 8].
 */
static int block_e(inception_model *m, const inception_block_e *k, const float *x, int B, int max_pool, float *y,
                   sd_error *err) {
    const int S = 8, in = k->b1x1.in_ch, ctot = 2048;
    size_t P = (size_t)S * S;
    ops_mark mark = ops_arena_mark(&m->ops.scratch);
    int rc = 0;
    float *t1, *t2, *pooled;
    t1 = tmp(m, B * 448 * P, err);
    t2 = tmp(m, B * 384 * P, err);
    pooled = tmp(m, B * in * P, err);
    if (!t1 || !t2 || !pooled) {
        rc = err ? err->code : SD_ENOMEM;
        goto out;
    }
    if ((rc = conv_relu(m, &k->b1x1, x, B, S, S, y, ctot, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->b3_1, x, B, S, S, t1, 384, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->b3_2a, t1, B, S, S, y, ctot, 320, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->b3_2b, t1, B, S, S, y, ctot, 704, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->dbl_1, x, B, S, S, t1, 448, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->dbl_2, t1, B, S, S, t2, 384, 0, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->dbl_3a, t2, B, S, S, y, ctot, 1088, err)) < 0) goto out;
    if ((rc = conv_relu(m, &k->dbl_3b, t2, B, S, S, y, ctot, 1472, err)) < 0) goto out;
    if (max_pool) ops_maxpool2d(pooled, x, B, in, S, S, 3, 1, 1);
    else ops_avgpool2d(pooled, x, B, in, S, S, 3, 1, 1, 0);
    if ((rc = conv_relu(m, &k->pool, pooled, B, S, S, y, ctot, 1856, err)) < 0) goto out;
out:
    ops_arena_release(&m->ops.scratch, mark);
    return rc;
}

static void emit(const inception_model *m, const char *name, const float *x, int B, int C, int S) {
    int64_t shape[4] = {B, C, S, S};
    sd_probe_emit(m->probe, name, x, 4, shape);
}

int inception_forward(inception_model *m, const float *x, int B, float *out, sd_error *err) {
    if (!m->params) return sd_err(err, SD_EINTERNAL, "inception: forward on a model that is not loaded");
    if (B <= 0) return 0;
    /* two ping-pong buffers, each the largest activation: [B, 64, 147, 147] */
    size_t max_act = (size_t)64 * 147 * 147;
    ops_mark mark = ops_arena_mark(&m->ops.scratch);
    int rc = 0;
    float *a, *b;
    a = tmp(m, B * max_act, err);
    b = tmp(m, B * max_act, err);
    if (!a || !b) {
        rc = err ? err->code : SD_ENOMEM;
        goto out;
    }
    emit(m, "input", x, B, 3, 299);
    if ((rc = conv_relu(m, &m->c1a, x, B, 299, 299, a, 32, 0, err)) < 0) goto out; /* [B, 32, 149, 149] */
    emit(m, "conv2d_1a_3x3", a, B, 32, 149);
    if ((rc = conv_relu(m, &m->c2a, a, B, 149, 149, b, 32, 0, err)) < 0) goto out; /* [B, 32, 147, 147] */
    if ((rc = conv_relu(m, &m->c2b, b, B, 147, 147, a, 64, 0, err)) < 0) goto out; /* [B, 64, 147, 147] */
    ops_maxpool2d(b, a, B, 64, 147, 147, 3, 2, 0);             /* [B, 64, 73, 73] */
    emit(m, "block0_maxpool1", b, B, 64, 73);
    if ((rc = conv_relu(m, &m->c3b, b, B, 73, 73, a, 80, 0, err)) < 0) goto out;   /* [B, 80, 73, 73] */
    if ((rc = conv_relu(m, &m->c4a, a, B, 73, 73, b, 192, 0, err)) < 0) goto out;  /* [B, 192, 71, 71] */
    ops_maxpool2d(a, b, B, 192, 71, 71, 3, 2, 0);              /* [B, 192, 35, 35] */
    emit(m, "block1_maxpool2", a, B, 192, 35);
    if ((rc = block_a(m, &m->m5[0], a, B, b, err)) < 0) goto out; /* [B, 256, 35, 35] */
    if ((rc = block_a(m, &m->m5[1], b, B, a, err)) < 0) goto out; /* [B, 288, 35, 35] */
    if ((rc = block_a(m, &m->m5[2], a, B, b, err)) < 0) goto out; /* [B, 288, 35, 35] */
    if ((rc = block_b(m, &m->m6a, b, B, a, err)) < 0) goto out;   /* [B, 768, 17, 17] */
    if ((rc = block_c(m, &m->m6[0], a, B, b, err)) < 0) goto out;
    if ((rc = block_c(m, &m->m6[1], b, B, a, err)) < 0) goto out;
    if ((rc = block_c(m, &m->m6[2], a, B, b, err)) < 0) goto out;
    if ((rc = block_c(m, &m->m6[3], b, B, a, err)) < 0) goto out; /* [B, 768, 17, 17] */
    emit(m, "block2_mixed_6e", a, B, 768, 17);
    if ((rc = block_d(m, &m->m7a, a, B, b, err)) < 0) goto out;          /* [B, 1280, 8, 8] */
    if ((rc = block_e(m, &m->m7[0], b, B, 0, a, err)) < 0) goto out;     /* [B, 2048, 8, 8] */
    if ((rc = block_e(m, &m->m7[1], a, B, 1, b, err)) < 0) goto out;     /* [B, 2048, 8, 8] */
    emit(m, "mixed_7c", b, B, 2048, 8);
    ops_mean_planes(out, b, B * INCEPTION_DIM, 64);  /* [B, 2048] */
out:
    ops_arena_release(&m->ops.scratch, mark);
    return rc;
}

/* ---- input ------------------------------------------------------------ */

int inception_preprocess(const uint8_t *rgb, int h, int w, float *out, ops_ctx *ops, sd_error *err) {
    if (h <= 0 || w <= 0 || (size_t)h * w > ((size_t)1 << 28))
        return sd_err(err, SD_EINPUT, "inception: image size %dx%d is not supported", w, h);
    ops_ctx own;
    if (!ops) {
        ops_ctx_init(&own, 0);
        ops = &own;
    }
    ops_arena *a = &ops->scratch;
    ops_mark mark = ops_arena_mark(a);
    int rc = 0;
    size_t P = (size_t)h * w;
    float *planes = ops_arena_floats(a, 3 * P, err); /* [3, h, w] in [0, 1], as ToTensor */
    if (!planes) {
        rc = err ? err->code : SD_ENOMEM;
    } else {
        for (size_t i = 0; i < P; i++)
            for (int c = 0; c < 3; c++) planes[c * P + i] = (float)rgb[3 * i + c] / 255.0f;
        rc = ops_resize_bilinear(out, planes, 1, 3, h, w, INCEPTION_SIZE, INCEPTION_SIZE, ops, err);
        if (rc == 0)
            for (size_t i = 0; i < (size_t)3 * INCEPTION_SIZE * INCEPTION_SIZE; i++) out[i] = 2.0f * out[i] - 1.0f;
    }
    ops_arena_release(a, mark);
    if (ops == &own) ops_ctx_free(&own);
    return rc;
}

int inception_features_batch(inception_model *m, const uint8_t *const *rgb, const int *h, const int *w, int n,
                             float *out, sd_error *err) {
    int chunk = m->max_batch > 0 ? m->max_batch : 1, rc = 0;
    size_t in_floats = (size_t)3 * INCEPTION_SIZE * INCEPTION_SIZE;
    for (int i0 = 0; i0 < n && rc == 0; i0 += chunk) {
        int B = n - i0 < chunk ? n - i0 : chunk;
        ops_mark mark = ops_arena_mark(&m->ops.scratch);
        float *x = ops_arena_floats(&m->ops.scratch, (size_t)B * in_floats, err);
        if (!x) rc = err ? err->code : SD_ENOMEM;
        for (int b = 0; b < B && rc == 0; b++) {
            rc = inception_preprocess(rgb[i0 + b], h[i0 + b], w[i0 + b], x + (size_t)b * in_floats, &m->ops, err);
            if (rc < 0) sd_err_prefix(err, "image %d", i0 + b);
        }
        if (rc == 0) rc = inception_forward(m, x, B, out + (size_t)i0 * INCEPTION_DIM, err);
        ops_arena_release(&m->ops.scratch, mark);
    }
    return rc;
}

int inception_features(inception_model *m, const uint8_t *rgb, int h, int w, float *out, sd_error *err) {
    return inception_features_batch(m, &rgb, &h, &w, 1, out, err);
}
