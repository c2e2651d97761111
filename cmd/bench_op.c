/*
 * bench_op.c - `sdrender bench --op KIND:SHAPE`: one kernel alone (a 3x3 or 1x1
 * convolution, a linear layer or an attention) on random inputs and random
 * fp16 weights, the best of --steps calls after 0.3 s of warm-up calls, in fp32, bf16 or
 * both. Kernel changes are measured this way (old and new builds alternating),
 * so that the README's per-kernel figures can be repeated on any machine.
 *
 *   conv:C,S[,B[,K[,T]]]    C -> C channels on S x S images, batch B (2), K x K kernel (3), stride 1, padding K/2,
 *                           Winograd output tile T (ops_ctx.wino_tile: 2, the U-Net's, the default; 4, the VAE's)
 *   linear:M,K,N[,E]        [M, K] x [K, N] with an [N, K] fp16 weight, E rows per batch entry (ops_ctx.entry_rows;
 *                           0, the default: unknown)
 *   attention:B,H,D,NQ[,NKV] B x H heads of D, NQ queries, NKV keys (NQ)
 *
 * Under mpirun with --tp K, `allreduce:N` times a tensor-parallel group's all-reduce instead
 * (bench_op_allreduce).
 */
#include "bench_op.h"

#include <jansson.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "ops_comm.h"
#include "dtype.h"
#include "ops.h"

typedef struct op_spec {
    enum { OP_CONV, OP_LINEAR, OP_ATTENTION } kind;
    int v[5]; /* the shape's numbers, defaults filled in */
} op_spec;

static double op_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* KIND:N,N,... into s; 0, or -1 with a message naming the spec and what a valid one looks like. */
static int op_parse(const char *spec, op_spec *s, sd_error *err) {
    static const struct { const char *name; int kind, min_n, max_n, defaults[5]; } kinds[] = {
        {"conv", OP_CONV, 2, 5, {0, 0, 2, 3, 2}},
        {"linear", OP_LINEAR, 3, 4, {0, 0, 0, 0, 0}},
        {"attention", OP_ATTENTION, 4, 5, {0, 0, 0, 0, -1}},
    };
    const char *colon = strchr(spec, ':');
    for (size_t i = 0; colon && i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strncmp(spec, kinds[i].name, (size_t)(colon - spec)) || strlen(kinds[i].name) != (size_t)(colon - spec))
            continue;
        memcpy(s->v, kinds[i].defaults, sizeof s->v);
        s->kind = kinds[i].kind;
        const char *p = colon + 1;
        int n = 0;
        while (*p && n < 5) {
            char *end;
            long x = strtol(p, &end, 10);
            if (end == p || x < 1 || x > 1000000 || (*end && *end != ',')) break;
            s->v[n++] = (int)x;
            p = *end ? end + 1 : end;
        }
        if (!*p && n >= kinds[i].min_n && n <= kinds[i].max_n) {
            if (s->kind == OP_ATTENTION && s->v[4] < 0) s->v[4] = s->v[3];
            if (s->kind == OP_CONV && s->v[3] != 1 && s->v[3] != 3)
                return sd_err(err, SD_EINPUT, "bench: --op '%s': the kernel size must be 1 or 3", spec);
            if (s->kind == OP_CONV && s->v[4] != 2 && s->v[4] != 4)
                return sd_err(err, SD_EINPUT, "bench: --op '%s': the Winograd tile must be 2 or 4", spec);
            return 0;
        }
        break;
    }
    return sd_err(err, SD_EINPUT,
                  "bench: --op '%s': use conv:C,S[,B[,K[,T]]], linear:M,K,N[,E] or attention:B,H,D,NQ[,NKV] "
                  "(positive numbers)", spec);
}

/* n floats in [-scale, scale), the same for every run. */
static float *op_random(size_t n, float scale, unsigned seed) {
    float *x = malloc(n * sizeof *x);
    uint32_t r = seed * 2654435761u + 1;
    for (size_t i = 0; x && i < n; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = scale * ((float)(r >> 8) / 8388608.0f - 1.0f);
    }
    return x;
}

/* An fp16 tensor of shape (ndim dims) with random values of about `scale`; data owned by *buf. */
static int op_weight(sd_tensor *t, uint16_t **buf, int ndim, const int64_t *shape, float scale) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    float *f = op_random(n, scale, (unsigned)n);
    *buf = malloc(n * sizeof **buf);
    if (!f || !*buf) {
        free(f);
        return -1;
    }
    for (size_t i = 0; i < n; i++) (*buf)[i] = sd_dtype_f32_to_f16(f[i]);
    free(f);
    memset(t, 0, sizeof *t);
    t->name = "bench";
    t->dtype = SD_F16;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->data = *buf;
    t->nbytes = n * sizeof **buf;
    return 0;
}

#define OP_WARMUP_S 0.3 /* untimed calls first, for at least this long */

/* One call of the kernel s names on the operands op_time made. */
static int op_call(const op_spec *s, const ops_conv_desc *cd, const sd_tensor *w, const ops_attn_desc *ad,
                   const float *x, float *y, const float *q, const float *k, float *o, void *ws, size_t wsb,
                   ops_ctx *ctx, sd_error *err) {
    const int *v = s->v;
    if (s->kind == OP_CONV) return ops_conv2d(y, x, cd, ctx, err);
    if (s->kind == OP_LINEAR) return ops_linear(y, x, v[0], v[1], w, NULL, v[2], 0, ctx, err);
    return ops_attention(o, q, k, x, ad, ws, wsb, ctx, err);
}

/* The best seconds of `steps` calls of s in ctx's precision (after OP_WARMUP_S of untimed calls); flops per call in *flops. */
static int op_time(const op_spec *s, ops_ctx *ctx, int steps, double *best, double *flops, sd_error *err) {
    const int *v = s->v;
    float *x = NULL, *y = NULL, *q = NULL, *k = NULL, *o = NULL;
    void *ws = NULL;
    uint16_t *wbuf = NULL;
    sd_tensor w;
    int rc = 0;
    ops_conv_desc cd = {0};
    ops_attn_desc ad = {0};
    size_t wsb = 0;
    if (s->kind == OP_CONV) {
        int C = v[0], S = v[1], B = v[2], K = v[3];
        ctx->wino_tile = v[4];
        cd = (ops_conv_desc){.batch = B, .in_ch = C, .in_h = S, .in_w = S, .out_ch = C, .k_h = K, .k_w = K,
                             .stride = 1, .pad_t = K / 2, .pad_l = K / 2, .pad_b = K / 2, .pad_r = K / 2};
        x = op_random((size_t)B * C * S * S, 1.0f, 1);
        y = malloc((size_t)B * C * S * S * sizeof *y);
        if (op_weight(&w, &wbuf, 4, (int64_t[]){C, C, K, K}, 0.05f) == 0) cd.weight = &w;
        *flops = 2.0 * B * C * (double)C * K * K * S * S;
    } else if (s->kind == OP_LINEAR) {
        ctx->entry_rows = v[3];
        x = op_random((size_t)v[0] * v[1], 1.0f, 1);
        y = malloc((size_t)v[0] * v[2] * sizeof *y);
        op_weight(&w, &wbuf, 2, (int64_t[]){v[2], v[1]}, 0.05f);
        *flops = 2.0 * v[0] * (double)v[1] * v[2];
    } else {
        int B = v[0], H = v[1], D = v[2], NQ = v[3], NKV = v[4];
        ad = (ops_attn_desc){.batch = B, .heads = H, .head_dim = D, .n_q = NQ, .n_kv = NKV, .q_stride = H * D,
                             .k_stride = H * D, .v_stride = H * D, .out_stride = H * D, .scale = 1.0f / 8.0f};
        q = op_random((size_t)B * NQ * H * D, 1.0f, 1);
        k = op_random((size_t)B * NKV * H * D, 1.0f, 2);
        x = op_random((size_t)B * NKV * H * D, 1.0f, 3);
        o = malloc((size_t)B * NQ * H * D * sizeof *o);
        wsb = ops_attention_workspace(&ad, ops_get_threads(), ctx);
        ws = aligned_alloc(64, (wsb + 63) & ~(size_t)63);
        *flops = 4.0 * B * H * (double)NQ * NKV * D;
    }
    int ok = s->kind == OP_ATTENTION ? q && k && x && o && ws : x && y && wbuf;
    if (!ok) rc = sd_err(err, SD_ENOMEM, "bench: --op: out of memory for the operands");
    *best = 1e30;
    /*
     * Untimed calls for OP_WARMUP_S first: besides caches and pages, OpenBLAS's worker threads (made
     * when the library loads, though the kernels never call it) spin on the other cores for about
     * 0.1 s before they sleep, which made 2-thread calls in the first 0.1 s of a run 2-4x slower.
     */
    double warm_end = op_now() + OP_WARMUP_S;
    for (int i = 0; rc == 0 && (i == 0 || op_now() < warm_end); i++) rc = op_call(s, &cd, &w, &ad, x, y, q, k, o, ws, wsb, ctx, err);
    for (int i = 0; i < steps && rc == 0; i++) {
        double t0 = op_now();
        rc = op_call(s, &cd, &w, &ad, x, y, q, k, o, ws, wsb, ctx, err);
        double dt = op_now() - t0;
        if (dt < *best) *best = dt;
    }
    free(x), free(y), free(q), free(k), free(o), free(ws), free(wbuf);
    return rc < 0 ? rc : 0;
}

int bench_op_run(const char *spec, int steps, int prec, const char *json_path) {
    sd_error err = {0};
    op_spec s = {0};
    if (op_parse(spec, &s, &err) < 0) return cli_usage_error("%s", err.msg);
    if (prec != 0 && !cli_bf16_usable()) prec = 0;
    char cpu[256];
    printf("sdrender bench --op %s: %d threads, best of %d calls after 0.3 s of warm-up calls\n  cpu: %s\n", spec,
           ops_get_threads(), steps, ops_cpu_describe(cpu, sizeof cpu));
    json_t *o = json_object();
    json_object_set_new(o, "op", json_string(spec));
    json_object_set_new(o, "threads", json_integer(ops_get_threads()));
    json_object_set_new(o, "steps", json_integer(steps));
    json_object_set_new(o, "cpu", json_string(cpu));
    int rc = 0;
    for (int p = prec == 1 ? 1 : 0; p <= (prec == 0 ? 0 : 1) && rc == 0; p++) {
        ops_ctx ctx;
        ops_ctx_init(&ctx, 0);
        ctx.precision = p ? OPS_PRECISION_BF16 : OPS_PRECISION_FP32;
        double best = 0, flops = 0;
        rc = op_time(&s, &ctx, steps, &best, &flops, &err);
        if (rc == 0) {
            const char *name = p ? "bf16" : "fp32";
            printf("  %s: %.3f ms per call, %.1f GFLOP/s%s%s\n", name, best * 1e3, flops / best / 1e9,
                   s.kind == OP_ATTENTION ? "; kernel: " : "", s.kind == OP_ATTENTION ? ops_attention_name(&ctx) : "");
            char key[32];
            snprintf(key, sizeof key, "%s_ms", name);
            json_object_set_new(o, key, json_real(best * 1e3));
            snprintf(key, sizeof key, "%s_gflops", name);
            json_object_set_new(o, key, json_real(flops / best / 1e9));
        }
        ops_ctx_free(&ctx);
    }
    if (rc == 0 && json_path && json_dump_file(o, json_path, JSON_INDENT(2)) < 0)
        rc = sd_err(&err, SD_EIO, "bench: %s: cannot write the JSON", json_path);
    json_decref(o);
    return rc < 0 ? cli_fail(&err) : 0;
}

/*
 * The group's all-reduce of n floats as a transformer's row-parallel layer ends (h += sum + bias over 320
 * channels, ops_reduce_epi), `steps` calls after 3 untimed ones, each on a fresh partial and h; the slowest
 * rank's mean per call (a call's time includes waiting for the other ranks to arrive).
 * Collective over c.
 */
int bench_op_allreduce(const char *spec, const ops_comm *c, int steps, const char *json_path) {
    sd_error err = {0};
    char *end = NULL;
    const char *num = strncmp(spec, "allreduce:", 10) ? NULL : spec + 10;
    long long n = num ? strtoll(num, &end, 10) : 0;
    if (!num || end == num || *end || n < 1 || n > (1LL << 31))
        return cli_usage_error("bench: --op '%s': expected allreduce:N, N floats from 1 to 2^31", spec);
    enum { C = 320 };
    float *buf = malloc((size_t)n * sizeof(float)), *h = malloc((size_t)n * sizeof(float));
    float *src = malloc((size_t)n * sizeof(float)), bias[C];
    if (!buf || !h || !src) {
        free(buf), free(h), free(src);
        sd_err(&err, SD_ENOMEM, "out of memory for %lld floats", n);
        return cli_fail(&err);
    }
    for (int i = 0; i < C; i++) bias[i] = (float)i / C;
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    ops_reduce_epi e = {.out = h, .bias1 = bias, .residual = h, .channels = C, .inner = 1};
    for (long long i = 0; i < n; i++) src[i] = (float)((i * 7 + c->rank) % 101) / 101.0f;
    int rc = 0;
    double mine = 0, all[1024], slowest = 0;
    for (int k = 0; k < 3 + steps && rc == 0; k++) {
        memcpy(buf, src, (size_t)n * sizeof(float));
        for (long long i = 0; i < n; i++) h[i] = 0.5f;
        double t0 = op_now();
        rc = ops_comm_allreduce_sum(c, buf, (size_t)n, &e, &ctx, &err);
        if (k >= 3) mine += (op_now() - t0) / steps;
    }
    if (rc == 0 && c->size <= 1024) rc = ops_comm_allgather(c, &mine, all, sizeof mine, &err);
    for (int r = 0; rc == 0 && r < c->size && r < 1024; r++) slowest = all[r] > slowest ? all[r] : slowest;
    ops_ctx_free(&ctx);
    free(buf), free(h), free(src);
    if (rc < 0) return cli_fail(&err);
    if (c->rank != 0) return 0;
    const char *transport = c->transport ? c->transport : "MPI messages";
    printf("sdrender bench --op %s: %d ranks, all-reduce through %s: %.3f ms per call (slowest rank's mean of %d, "
           "with h += sum + bias), %.2f GB/s of partials\n",
           spec, c->size, transport, slowest * 1e3, steps, (double)n * sizeof(float) / slowest / 1e9);
    json_t *o = json_object();
    json_object_set_new(o, "op", json_string(spec));
    json_object_set_new(o, "tp", json_integer(c->size));
    json_object_set_new(o, "allreduce_transport", json_string(transport));
    json_object_set_new(o, "steps", json_integer(steps));
    json_object_set_new(o, "ms", json_real(slowest * 1e3));
    if (json_path && json_dump_file(o, json_path, JSON_INDENT(2)) < 0)
        rc = sd_err(&err, SD_EIO, "bench: %s: cannot write the JSON", json_path);
    json_decref(o);
    return rc < 0 ? cli_fail(&err) : 0;
}
