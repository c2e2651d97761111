/* resnet.c - ResnetBlock2D forward (see resnet.h). */
#include "resnet.h"

#include <string.h>

#include "ops_comm.h"

static int get(const sd_weights *w, const sd_tensor **t, sd_error *err, const char *prefix, const char *name,
               int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    int64_t shape[4] = {d0, d1, d2, d3};
    return sd_weights_getf(w, t, err, shape, ndim, "%s.%s", prefix, name);
}

int resnet_load(resnet_block *r, const sd_weights *w, const char *prefix, int in_ch, int out_ch, int temb_dim,
                sd_error *err) {
    memset(r, 0, sizeof *r);
    r->in_ch = in_ch;
    r->out_ch = out_ch;
    r->temb_dim = temb_dim;
    r->out_local = out_ch;
    r->short_cl = in_ch;
    int rc;
    if ((rc = get(w, &r->norm1_w, err, prefix, "norm1.weight", 1, in_ch, 0, 0, 0)) < 0 ||
        (rc = get(w, &r->norm1_b, err, prefix, "norm1.bias", 1, in_ch, 0, 0, 0)) < 0 ||
        (rc = get(w, &r->conv1_w, err, prefix, "conv1.weight", 4, out_ch, in_ch, 3, 3)) < 0 ||
        (rc = get(w, &r->conv1_b, err, prefix, "conv1.bias", 1, out_ch, 0, 0, 0)) < 0 ||
        (rc = get(w, &r->norm2_w, err, prefix, "norm2.weight", 1, out_ch, 0, 0, 0)) < 0 ||
        (rc = get(w, &r->norm2_b, err, prefix, "norm2.bias", 1, out_ch, 0, 0, 0)) < 0 ||
        (rc = get(w, &r->conv2_w, err, prefix, "conv2.weight", 4, out_ch, out_ch, 3, 3)) < 0 ||
        (rc = get(w, &r->conv2_b, err, prefix, "conv2.bias", 1, out_ch, 0, 0, 0)) < 0)
        return rc;
    if (temb_dim > 0 && ((rc = get(w, &r->temb_w, err, prefix, "time_emb_proj.weight", 2, out_ch, temb_dim, 0, 0)) < 0 ||
                         (rc = get(w, &r->temb_b, err, prefix, "time_emb_proj.bias", 1, out_ch, 0, 0, 0)) < 0))
        return rc;
    if (in_ch != out_ch && ((rc = get(w, &r->short_w, err, prefix, "conv_shortcut.weight", 4, out_ch, in_ch, 1, 1)) < 0 ||
                            (rc = get(w, &r->short_b, err, prefix, "conv_shortcut.bias", 1, out_ch, 0, 0, 0)) < 0))
        return rc;
    return 0;
}

int resnet_forward(const resnet_block *r, float *out, const float *x, int B, int H, int W, const float *temb_silu,
                   int groups, float eps, ops_ctx *ops, sd_error *err) {
    int HW = H * W, rc, tp = ops_comm_active(ops->comm) && r->out_local != r->out_ch;
    int ol = r->out_local, gl = tp ? groups / (r->out_ch / r->out_local) : groups;
    ops_arena *a = &ops->scratch;
    ops_mark mark = ops_arena_mark(a);
    float *h = ops_arena_floats(a, (size_t)B * ol * HW, err);
    float *sc = ops_arena_floats(a, (size_t)B * (r->in_ch > r->out_ch ? r->in_ch : r->out_ch) * 2, err);
    float *tproj = ops_arena_floats(a, (size_t)B * ol, err);
    if (!h || !sc || !tproj) {
        rc = err ? err->code : SD_ENOMEM;
        goto out;
    }
    /* h = conv1(SiLU(GN1(x))) + bias + time projection (tensor-parallel: this rank's output channels) */
    float *shift = sc + (size_t)B * (r->in_ch > r->out_ch ? r->in_ch : r->out_ch);
    if ((rc = ops_groupnorm_affine(sc, shift, x, B, r->in_ch, HW, groups, eps, r->norm1_w, r->norm1_b, ops, err)) < 0)
        goto out;
    if (r->temb_w && temb_silu &&
        (rc = ops_linear(tproj, temb_silu, B, r->temb_dim, r->temb_w, r->temb_b, ol, 0, ops, err)) < 0)
        goto out;
    ops_conv_desc c1 = {.batch = B, .in_ch = r->in_ch, .in_h = H, .in_w = W, .out_ch = ol, .k_h = 3,
                        .k_w = 3, .stride = 1, .pad_t = 1, .pad_l = 1, .pad_b = 1, .pad_r = 1,
                        .weight = r->conv1_w, .bias = r->conv1_b, .in_scale = sc, .in_shift = shift, .in_silu = 1,
                        .chan_add = r->temb_w && temb_silu ? tproj : NULL};
    if ((rc = ops_conv2d(h, x, &c1, ops, err)) < 0) goto out;
    /* out = shortcut(x) + conv2(SiLU(GN2(h))) + bias; GN2's groups lie within one rank's channels */
    if ((rc = ops_groupnorm_affine(sc, shift, h, B, ol, HW, gl, eps, r->norm2_w, r->norm2_b, ops, err)) < 0)
        goto out;
    ops_conv_desc c2 = {.batch = B, .in_ch = ol, .in_h = H, .in_w = W, .out_ch = r->out_ch, .k_h = 3,
                        .k_w = 3, .stride = 1, .pad_t = 1, .pad_l = 1, .pad_b = 1, .pad_r = 1,
                        .weight = r->conv2_w, .bias = r->conv2_b, .in_scale = sc, .in_shift = shift, .in_silu = 1};
    if (tp) {
        /* row-parallel conv2: partial sums over this rank's input channels, reduced, then bias + residual */
        c2.bias = NULL;
        if ((rc = ops_conv2d(out, h, &c2, ops, err)) < 0) goto out;
        /* a 1x1 shortcut joins the same all-reduce: this rank's input channels of x, accumulated */
        for (int b = 0; r->short_w && b < B && rc == 0; b++) {
            ops_conv_desc s = {.batch = 1, .in_ch = r->short_cl, .in_h = H, .in_w = W, .out_ch = r->out_ch,
                               .k_h = 1, .k_w = 1, .stride = 1, .weight = r->short_w, .accumulate = 1};
            rc = ops_conv2d(out + (size_t)b * r->out_ch * HW, x + ((size_t)b * r->in_ch + r->short_c0) * HW, &s, ops,
                            err);
        }
        /* once, on the reduced sum: (sum + shortcut bias) + conv2 bias, or sum + (x + conv2 bias) */
        const float *sb = rc == 0 && r->short_w && r->short_b ? ops_weight_f32(r->short_b, ops, err) : NULL;
        const float *cb = rc == 0 && r->conv2_b ? ops_weight_f32(r->conv2_b, ops, err) : NULL;
        if (rc == 0 && ((r->short_w && r->short_b && !sb) || (r->conv2_b && !cb))) rc = err ? err->code : SD_ENOMEM;
        ops_reduce_epi e = {.out = out, .bias1 = sb, .bias2 = cb, .residual = r->short_w ? NULL : x,
                            .channels = r->out_ch, .inner = (size_t)HW};
        if (rc == 0) rc = ops_comm_allreduce_sum(ops->comm, out, (size_t)B * r->out_ch * HW, &e, ops, err);
        goto out;
    }
    if (r->short_w) {
        /* the shortcut as conv2's residual, not accumulated into: accumulation rounds differently when
         * a batch of small images is merged into one product, and an image must come out the same
         * alone or in a batch (core/pipeline/group.h) */
        float *sc_out = ops_arena_floats(a, (size_t)B * r->out_ch * HW, err);
        if (!sc_out) {
            rc = err ? err->code : SD_ENOMEM;
            goto out;
        }
        ops_conv_desc s = {.batch = B, .in_ch = r->in_ch, .in_h = H, .in_w = W, .out_ch = r->out_ch, .k_h = 1,
                           .k_w = 1, .stride = 1, .weight = r->short_w, .bias = r->short_b};
        if ((rc = ops_conv2d(sc_out, x, &s, ops, err)) < 0) goto out;
        c2.residual = sc_out;
    } else {
        c2.residual = x;
    }
    rc = ops_conv2d(out, h, &c2, ops, err);
out:
    ops_arena_release(a, mark);
    return rc;
}

/*
 * Keeps this rank's output channels of conv1 (whole GroupNorm groups: groups/P of them, so GN2
 * stays local): conv1, its bias, the time projection and GN2 by rows (views), conv2 by input
 * channels (a copy). conv2's bias and the shortcut stay whole.
 */
int resnet_shard(resnet_block *r, const struct ops_comm *comm, int groups, shard_store *store, sd_error *err) {
    if (!ops_comm_active(comm)) return 0;
    int P = comm->size, rc;
    if (groups % P || r->out_ch % groups)
        return sd_err(err, SD_EINPUT, "tensor parallelism over %d ranks: %d GroupNorm groups do not split evenly",
                      P, groups);
    int g0, g1, cpg = r->out_ch / groups;
    ops_comm_share(comm, groups, &g0, &g1);
    int64_t c0 = (int64_t)g0 * cpg, c1 = (int64_t)g1 * cpg;
    if ((rc = shard_rows(store, r->conv1_w, c0, c1, &r->conv1_w, err)) < 0 ||
        (rc = shard_rows(store, r->conv1_b, c0, c1, &r->conv1_b, err)) < 0 ||
        (rc = shard_rows(store, r->norm2_w, c0, c1, &r->norm2_w, err)) < 0 ||
        (rc = shard_rows(store, r->norm2_b, c0, c1, &r->norm2_b, err)) < 0 ||
        (rc = shard_cols(store, r->conv2_w, c0, c1, &r->conv2_w, err)) < 0)
        return rc;
    if (r->temb_w && ((rc = shard_rows(store, r->temb_w, c0, c1, &r->temb_w, err)) < 0 ||
                      (rc = shard_rows(store, r->temb_b, c0, c1, &r->temb_b, err)) < 0))
        return rc;
    if (r->short_w) {
        if (r->in_ch % P)
            return sd_err(err, SD_EINPUT, "tensor parallelism over %d ranks: a shortcut's %d input channels do not "
                          "split evenly", P, r->in_ch);
        int s0, s1;
        ops_comm_share(comm, r->in_ch, &s0, &s1);
        if ((rc = shard_cols(store, r->short_w, s0, s1, &r->short_w, err)) < 0) return rc;
        r->short_c0 = s0;
        r->short_cl = s1 - s0;
    }
    r->out_local = (int)(c1 - c0);
    return 0;
}

double resnet_flops_shape(int in_ch, int out_ch, int temb_dim, int B, int H, int W) {
    double P = (double)B * H * W;
    double f = 2 * P * out_ch * in_ch * 9 + 2 * P * out_ch * out_ch * 9;
    if (in_ch != out_ch) f += 2 * P * out_ch * in_ch;
    if (temb_dim > 0) f += 2.0 * B * out_ch * temb_dim;
    return f;
}

double resnet_flops(const resnet_block *r, int B, int H, int W) {
    return resnet_flops_shape(r->in_ch, r->out_ch, r->temb_dim, B, H, W);
}
