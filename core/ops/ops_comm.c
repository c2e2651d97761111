/* ops_comm.c - timed all-gather and the rank-ordered all-reduce (see ops_comm.h). */
#include "ops_comm.h"
#include "ops_prof.h"

#include <string.h>

/* One collective that began at t0 and sent `bytes` to each partner, into c->stats and the profile. */
static void comm_count(const ops_comm *c, size_t bytes, double t0) {
    double t = prof_now() - t0;
    if (c->stats) {
        c->stats->seconds += t;
        c->stats->bytes_sent += (uint64_t)bytes * (uint64_t)(c->size - 1);
        c->stats->calls++;
    }
    if (ops_prof_on) prof_add(PROF_COMM, t, 0); /* (-1: prof_add reads SDRENDER_PROFILE first) */
}

/* fn (c->allgather or c->allgather_idle), timed and counted. */
static int comm_allgather(const ops_comm *c,
                          int (*fn)(const ops_comm *, const void *, void *, size_t, sd_error *),
                          const void *send, void *recv, size_t bytes, sd_error *err) {
    if (!ops_comm_active(c)) {
        if (recv != send) memcpy(recv, send, bytes);
        return 0;
    }
    double t0 = prof_now();
    int rc = fn(c, send, recv, bytes, err);
    comm_count(c, bytes, t0);
    return rc;
}

int ops_comm_allgather(const ops_comm *c, const void *send, void *recv, size_t bytes, sd_error *err) {
    return comm_allgather(c, c ? c->allgather : NULL, send, recv, bytes, err);
}

int ops_comm_allgather_idle(const ops_comm *c, const void *send, void *recv, size_t bytes, sd_error *err) {
    return comm_allgather(c, c && c->allgather_idle ? c->allgather_idle : c ? c->allgather : NULL, send, recv, bytes, err);
}

/* c->alltoall, timed and counted like the all-gather. */
static int comm_alltoall(const ops_comm *c, const void *send, void *recv, size_t bytes, sd_error *err) {
    double t0 = prof_now();
    int rc = c->alltoall(c, send, recv, bytes, err);
    comm_count(c, bytes, t0);
    return rc;
}

/* One run of elements whose bias terms advance by `step` (0: one channel's positions; 1: a row's channels). */
static void epi_run(float *o, const float *s, const float *r, const float *b1, const float *b2, size_t step,
                    size_t len) {
    for (size_t j = 0; j < len; j++) {
        float t = s[j];
        if (b1) t += b1[j * step];
        if (r) t += b2 ? r[j] + b2[j * step] : r[j];
        else if (b2) t += b2[j * step];
        o[j] = t;
    }
}

void ops_reduce_epi_apply(const ops_reduce_epi *e, const float *sum, size_t i0, size_t n, float *dst) {
    const size_t C = (size_t)e->channels, inner = e->inner, end = i0 + n;
    for (size_t i = i0; i < end;) {
        size_t c = inner == 1 ? i % C : (i / inner) % C;
        size_t len = inner == 1 ? C - c : inner - i % inner;
        if (len > end - i) len = end - i;
        epi_run(dst + (i - i0), sum + (i - i0), e->residual ? e->residual + i : NULL, e->bias1 ? e->bias1 + c : NULL,
                e->bias2 ? e->bias2 + c : NULL, inner == 1, len);
        i += len;
    }
}

void ops_comm_sum_ranks(float *dst, const float *const *parts, int P, size_t i0, size_t n, const ops_reduce_epi *e) {
    enum { BLOCK = 2048 };
#pragma omp parallel for schedule(static) num_threads(ops_get_threads())
    for (size_t b0 = 0; b0 < n; b0 += BLOCK) {
        size_t len = n - b0 < BLOCK ? n - b0 : BLOCK;
        float s[BLOCK]; /* the block's sums apart from dst, which may be e's residual */
        memcpy(s, parts[0] + b0, len * sizeof(float));
        for (int r = 1; r < P; r++) {
            const float *p = parts[r] + b0;
            for (size_t j = 0; j < len; j++) s[j] += p[j];
        }
        if (e) ops_reduce_epi_apply(e, s, i0 + b0, len, dst + b0);
        else memcpy(dst + b0, s, len * sizeof(float));
    }
}

/*
 * The all-to-all way: rank r sums, in rank order, the r-th of `size` equal pieces of everyone's
 * buffer (padded to m = ceil(n / size) floats) and finishes its real elements, then an all-gather shares them.
 */
static int allreduce_alltoall(const ops_comm *c, float *buf, size_t n, const ops_reduce_epi *e, ops_ctx *ctx,
                              sd_error *err) {
    const int P = c->size;
    size_t m = (n + (size_t)P - 1) / (size_t)P;
    ops_mark mark = ops_arena_mark(&ctx->scratch);
    float *send = ops_arena_floats(&ctx->scratch, m * (size_t)P, err);
    float *recv = send ? ops_arena_floats(&ctx->scratch, m * (size_t)P, err) : NULL;
    float *sums = recv ? ops_arena_floats(&ctx->scratch, m * (size_t)P, err) : NULL;
    int rc = sums ? 0 : (err ? err->code : SD_ENOMEM);
    if (rc == 0) {
        memcpy(send, buf, n * sizeof(float));
        memset(send + n, 0, (m * (size_t)P - n) * sizeof(float));
        rc = comm_alltoall(c, send, recv, m * sizeof(float), err);
    }
    if (rc == 0) {
        size_t i0 = (size_t)c->rank * m, real = i0 < n ? (n - i0 < m ? n - i0 : m) : 0;
        const float *parts[P];
        for (int r = 0; r < P; r++) parts[r] = recv + (size_t)r * m;
        double t0 = prof_begin();
        ops_comm_sum_ranks(sums + i0, parts, P, i0, real, e);
        memset(sums + i0 + real, 0, (m - real) * sizeof(float));
        prof_end(PROF_ELTWISE, t0, 0);
        rc = ops_comm_allgather(c, sums + i0, sums, m * sizeof(float), err);
    }
    if (rc == 0) memcpy(e ? e->out : buf, sums, n * sizeof(float));
    ops_arena_release(&ctx->scratch, mark);
    return rc;
}

int ops_comm_allreduce_sum(const ops_comm *c, float *buf, size_t n, const ops_reduce_epi *e, ops_ctx *ctx,
                           sd_error *err) {
    if (n == 0) return 0;
    if (!ops_comm_active(c)) {
        if (e) ops_comm_sum_ranks(e->out, (const float *const[]){buf}, 1, 0, n, e);
        return 0;
    }
    if (c->allreduce_sum) {
        /* counted as the all-to-all way's volume: 2 n / size floats to each partner */
        double t0 = prof_now();
        int rc = c->allreduce_sum(c, buf, n, e, err);
        comm_count(c, 2 * n * sizeof(float) / (size_t)c->size, t0);
        return rc;
    }
    if (c->alltoall && c->size > 2) return allreduce_alltoall(c, buf, n, e, ctx, err);
    ops_mark mark = ops_arena_mark(&ctx->scratch);
    float *all = ops_arena_floats(&ctx->scratch, n * (size_t)c->size, err);
    int rc = all ? ops_comm_allgather(c, buf, all, n * sizeof(float), err) : (err ? err->code : SD_ENOMEM);
    if (rc == 0) {
        const int P = c->size;
        const float *parts[P];
        for (int r = 0; r < P; r++) parts[r] = all + (size_t)r * n;
        double t0 = prof_begin();
        ops_comm_sum_ranks(e ? e->out : buf, parts, P, 0, n, e);
        prof_end(PROF_ELTWISE, t0, 0);
    }
    ops_arena_release(&ctx->scratch, mark);
    return rc;
}

int ops_conv2d_row_parallel(const ops_comm *c, float *out, const float *x, const ops_conv_desc *d, int c0, int cl,
                            const float *residual, ops_ctx *ctx, sd_error *err) {
    int oh, ow, rc = 0, B = d->batch;
    ops_conv2d_out_size(d, &oh, &ow);
    size_t in_hw = (size_t)d->in_h * d->in_w, out_n = (size_t)d->out_ch * oh * ow;
    ops_conv_desc one = *d;
    one.in_ch = cl;
    one.bias = NULL;
    one.residual = NULL;
    one.accumulate = 0;
    one.chan_add = NULL;
    /*
     * A channel slice is contiguous within one image only: the batch's slices are packed into one
     * [B, cl, H, W] input (and [B, cl] scale and shift) for one convolution of the whole batch. One per
     * image cost more at the small levels, where a call's weight work outweighs the image's
     * (2 ranks x 1 thread, 256x256: 12 calls per step, +0.1 s), and gives the same bits.
     */
    ops_mark mark = ops_arena_mark(&ctx->scratch);
    const float *xs = x + (size_t)c0 * in_hw;
    if (B > 1) {
        float *pk = ops_arena_floats(&ctx->scratch, (size_t)B * cl * in_hw, err);
        float *st = pk && d->in_scale ? ops_arena_floats(&ctx->scratch, (size_t)2 * B * cl, err) : NULL;
        if (!pk || (d->in_scale && !st)) {
            ops_arena_release(&ctx->scratch, mark);
            return err ? err->code : SD_ENOMEM;
        }
        for (int b = 0; b < B; b++) {
            memcpy(pk + (size_t)b * cl * in_hw, x + ((size_t)b * d->in_ch + (size_t)c0) * in_hw,
                   (size_t)cl * in_hw * sizeof(float));
            if (st) {
                memcpy(st + (size_t)b * cl, d->in_scale + (size_t)b * d->in_ch + c0, (size_t)cl * sizeof(float));
                memcpy(st + (size_t)(B + b) * cl, d->in_shift + (size_t)b * d->in_ch + c0, (size_t)cl * sizeof(float));
            }
        }
        xs = pk;
        if (st) {
            one.in_scale = st;
            one.in_shift = st + (size_t)B * cl;
        }
    } else if (d->in_scale) {
        one.in_scale = d->in_scale + c0;
        one.in_shift = d->in_shift + c0;
    }
    rc = ops_conv2d(out, xs, &one, ctx, err);
    ops_arena_release(&ctx->scratch, mark);
    /* sum + (residual + bias): the order this layer has always added them in (the same PNG bytes) */
    const float *bias = rc == 0 && d->bias ? ops_weight_f32(d->bias, ctx, err) : NULL;
    if (rc == 0 && d->bias && !bias) rc = err ? err->code : SD_ENOMEM;
    ops_reduce_epi e = {.out = out, .bias2 = bias, .residual = residual, .channels = d->out_ch, .inner = (size_t)oh * ow};
    if (rc == 0) rc = ops_comm_allreduce_sum(c, out, (size_t)B * out_n, &e, ctx, err);
    ops_arena_release(&ctx->scratch, mark);
    return rc;
}

int ops_conv2d_col_parallel(const ops_comm *c, float *out, const float *x, const ops_conv_desc *d,
                            const float *residual, ops_ctx *ctx, sd_error *err) {
    int oh, ow, o0, o1, B = d->batch;
    ops_comm_share(c, d->out_ch, &o0, &o1);
    int ol = o1 - o0;
    if (d->residual || d->chan_add || d->accumulate || d->out_ch % (ops_comm_active(c) ? c->size : 1) ||
        d->weight->shape[0] != ol)
        return sd_err(err, SD_EINTERNAL, "column-parallel convolution: %lld weight rows for %d of %d output channels",
                      (long long)d->weight->shape[0], ol, d->out_ch);
    ops_conv2d_out_size(d, &oh, &ow);
    size_t ohw = (size_t)oh * ow, mine = (size_t)ol * ohw;
    ops_mark mark = ops_arena_mark(&ctx->scratch);
    float *t = ops_arena_floats(&ctx->scratch, (size_t)B * mine, err);
    if (!t) {
        ops_arena_release(&ctx->scratch, mark);
        return err ? err->code : SD_ENOMEM;
    }
    ops_conv_desc part = *d;
    part.out_ch = ol;
    int rc = ops_conv2d(t, x, &part, ctx, err);
    /* this rank's channels into place, + residual as ops_conv2d adds it: (conv + bias) + residual */
    if (rc == 0) {
#pragma omp parallel for schedule(static) num_threads(ops_get_threads())
        for (int b = 0; b < B; b++) {
            float *dst = out + ((size_t)b * d->out_ch + (size_t)o0) * ohw;
            const float *src = t + (size_t)b * mine, *r = residual ? residual + ((size_t)b * d->out_ch + (size_t)o0) * ohw : NULL;
            if (r)
                for (size_t i = 0; i < mine; i++) dst[i] = src[i] + r[i];
            else
                memcpy(dst, src, mine * sizeof(float));
        }
    }
    ops_arena_release(&ctx->scratch, mark);
    /* every image's channel slices from every rank: contiguous, in rank order */
    for (int b = 0; b < B && rc == 0; b++) {
        float *img = out + (size_t)b * d->out_ch * ohw;
        rc = ops_comm_allgather(c, img + (size_t)o0 * ohw, img, mine * sizeof(float), err);
    }
    return rc;
}

int ops_linear_col_parallel(const ops_comm *c, float *out, const float *x, int M, int K, const sd_tensor *w,
                            const sd_tensor *b, int N, ops_ctx *ctx, sd_error *err) {
    int n0, n1, P = ops_comm_active(c) ? c->size : 1;
    ops_comm_share(c, N, &n0, &n1);
    int nl = n1 - n0;
    if (N % P || w->shape[0] != nl || (b && b->shape[0] != nl))
        return sd_err(err, SD_EINTERNAL, "column-parallel linear: %lld weight rows for %d of %d output features",
                      (long long)w->shape[0], nl, N);
    size_t mine = (size_t)M * nl;
    ops_mark mark = ops_arena_mark(&ctx->scratch);
    float *all = ops_arena_floats(&ctx->scratch, mine * (size_t)P, err);
    int rc = all ? ops_linear(all + (size_t)c->rank * mine, x, M, K, w, b, nl, 0, ctx, err) : (err ? err->code : SD_ENOMEM);
    if (rc == 0) rc = ops_comm_allgather(c, all + (size_t)c->rank * mine, all, mine * sizeof(float), err);
    if (rc == 0) { /* [P][M][nl] -> [M][P * nl] */
#pragma omp parallel for schedule(static) num_threads(ops_get_threads())
        for (int m = 0; m < M; m++)
            for (int r = 0; r < P; r++)
                memcpy(out + (size_t)m * N + (size_t)r * nl, all + (size_t)r * mine + (size_t)m * nl, (size_t)nl * sizeof(float));
    }
    ops_arena_release(&ctx->scratch, mark);
    return rc;
}

void ops_comm_share(const ops_comm *c, int n, int *lo, int *hi) {
    int P = ops_comm_active(c) ? c->size : 1, r = ops_comm_active(c) ? c->rank : 0;
    *lo = (int)((int64_t)n * r / P);
    *hi = (int)((int64_t)n * (r + 1) / P);
}
