/*
 * Tests for tensor parallelism in core/: the rank-ordered all-reduce, weight
 * shards, and the sharded U-Net against the reference outputs. Ranks are
 * threads here (a pthread communicator); the MPI communicator and whole
 * pipelines under mpirun are tested in test_tp_mpi.c.
 */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dtype.h"
#include "ops.h"
#include "ops_comm.h"
#include "shard.h"
#include "unet.h"
#include "weights.h"

/* ---- a communicator of P threads ---- */

typedef struct thread_group {
    int size;
    pthread_barrier_t barrier;
    const void *send[8];
} thread_group;

static int thread_allgather(const ops_comm *c, const void *send, void *recv, size_t bytes, sd_error *err) {
    (void)err;
    thread_group *g = c->impl;
    g->send[c->rank] = send;
    pthread_barrier_wait(&g->barrier);
    for (int r = 0; r < g->size; r++)
        if ((char *)recv + (size_t)r * bytes != g->send[r]) memcpy((char *)recv + (size_t)r * bytes, g->send[r], bytes);
    pthread_barrier_wait(&g->barrier);
    return 0;
}

static int thread_alltoall(const ops_comm *c, const void *send, void *recv, size_t bytes, sd_error *err) {
    (void)err;
    thread_group *g = c->impl;
    g->send[c->rank] = send;
    pthread_barrier_wait(&g->barrier);
    for (int r = 0; r < g->size; r++)
        memcpy((char *)recv + (size_t)r * bytes, (const char *)g->send[r] + (size_t)c->rank * bytes, bytes);
    pthread_barrier_wait(&g->barrier);
    return 0;
}

typedef struct rank_job {
    ops_comm comm;
    ops_comm_stats stats;
    void (*fn)(struct rank_job *);
    void *user;
    int rc;
    char msg[512];
} rank_job;

static void *rank_main(void *p) {
    rank_job *j = p;
    j->fn(j);
    return NULL;
}

static int use_alltoall; /* run_ranks gives the communicators an all-to-all */

/* Runs fn on P threads, each with its own communicator of the group. */
static void run_ranks(int P, void (*fn)(rank_job *), void *user, rank_job *jobs) {
    thread_group g = {.size = P};
    pthread_barrier_init(&g.barrier, NULL, (unsigned)P);
    pthread_t th[8];
    for (int r = 0; r < P; r++) {
        memset(&jobs[r], 0, sizeof jobs[r]);
        jobs[r].comm = (ops_comm){.rank = r, .size = P, .impl = &g, .stats = &jobs[r].stats,
                                  .allgather = thread_allgather, .alltoall = use_alltoall ? thread_alltoall : NULL};
        jobs[r].fn = fn;
        jobs[r].user = user;
        pthread_create(&th[r], NULL, rank_main, &jobs[r]);
    }
    for (int r = 0; r < P; r++) pthread_join(th[r], NULL);
    pthread_barrier_destroy(&g.barrier);
}

/* ---- the all-reduce ---- */

#define AR_N 4099
typedef struct ar_case {
    float in[4][AR_N];
    float out[4][AR_N];
} ar_case;

static void ar_rank(rank_job *j) {
    ar_case *c = j->user;
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    float *buf = c->out[j->comm.rank];
    memcpy(buf, c->in[j->comm.rank], sizeof(float) * AR_N);
    sd_error err = {0};
    j->rc = ops_comm_allreduce_sum(&j->comm, buf, AR_N, NULL, &ctx, &err);
    ops_ctx_free(&ctx);
}

static void test_allreduce_adds_in_rank_order_on_every_rank(void **state) {
    (void)state;
    static ar_case c;
    tu_seed(11);
    for (int P = 2; P <= 4; P++) {
        /* magnitudes from 1e-4 to 1e4: any other order of the adds would change low bits */
        for (int r = 0; r < P; r++)
            for (int i = 0; i < AR_N; i++)
                c.in[r][i] = (float)((tu_urand() - 0.5) * pow(10.0, tu_irand(-4, 4)));
        rank_job jobs[4];
        /* both ways (all-gather of everything; all-to-all then all-gather of sums, for 3+ ranks) */
        for (int rep = 0; rep < 4; rep++) {
            use_alltoall = rep % 2;
            run_ranks(P, ar_rank, &c, jobs);
            int two_step = use_alltoall && P > 2;
            size_t m = (AR_N + (size_t)P - 1) / (size_t)P;
            uint64_t want_bytes = two_step ? 2 * (uint64_t)m * sizeof(float) * (uint64_t)(P - 1)
                                           : (uint64_t)AR_N * sizeof(float) * (uint64_t)(P - 1);
            for (int r = 0; r < P; r++) {
                assert_int_equal(jobs[r].rc, 0);
                assert_int_equal(jobs[r].stats.calls, two_step ? 2 : 1);
                assert_true(jobs[r].stats.bytes_sent == want_bytes);
            }
            for (int i = 0; i < AR_N; i++) {
                float want = c.in[0][i];
                for (int r = 1; r < P; r++) want += c.in[r][i];
                for (int r = 0; r < P; r++)
                    if (memcmp(&c.out[r][i], &want, sizeof want))
                        fail_msg("P=%d rank %d element %d: %.9g, rank-ordered sum %.9g", P, r, i, c.out[r][i], want);
            }
        }
        use_alltoall = 0;
    }
}

/* ---- the all-reduce's epilogue: bias and residual once, in the one-rank layer's order ---- */

#define EP_C 6
#define EP_INNER 7
#define EP_N (3 * EP_C * EP_INNER) /* [3, 6, 7]: 126 elements, not a multiple of 4 ranks' slices */
typedef struct ep_case {
    int form; /* 0: sum + (residual + b2); 1: (sum + b1) + b2; 2: rows [21, 6], into the residual: (sum + b1) + residual */
    float in[4][EP_N], res[4][EP_N], out[4][EP_N];
    float b1[EP_C], b2[EP_C];
} ep_case;

static void ep_describe(ep_case *c, int r, float *buf, ops_reduce_epi *e) {
    *e = (ops_reduce_epi){.out = buf, .channels = EP_C, .inner = EP_INNER};
    if (c->form == 0) e->bias2 = c->b2, e->residual = c->res[r];
    if (c->form == 1) e->bias1 = c->b1, e->bias2 = c->b2;
    if (c->form == 2) e->out = c->res[r], e->bias1 = c->b1, e->residual = c->res[r], e->inner = 1;
}

static void ep_rank(rank_job *j) {
    ep_case *c = j->user;
    int r = j->comm.rank;
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    float *buf = c->out[r];
    memcpy(buf, c->in[r], sizeof c->in[r]);
    ops_reduce_epi e;
    ep_describe(c, r, buf, &e);
    sd_error err = {0};
    j->rc = ops_comm_allreduce_sum(&j->comm, buf, EP_N, &e, &ctx, &err);
    ops_ctx_free(&ctx);
}

static void test_allreduce_finishes_each_element_once(void **state) {
    (void)state;
    static ep_case c;
    static float res0[EP_N];
    tu_seed(12);
    for (int i = 0; i < EP_C; i++) c.b1[i] = (float)(tu_urand() * 100), c.b2[i] = (float)(tu_urand() - 0.5);
    for (int i = 0; i < EP_N; i++) res0[i] = (float)((tu_urand() - 0.5) * pow(10.0, tu_irand(-3, 3)));
    for (int P = 1; P <= 4; P++)
        for (int form = 0; form < 3; form++)
            for (int way = 0; way < 2; way++) {
                c.form = form;
                for (int r = 0; r < 4; r++) {
                    memcpy(c.res[r], res0, sizeof res0);
                    for (int i = 0; i < EP_N; i++) c.in[r][i] = (float)((tu_urand() - 0.5) * pow(10.0, tu_irand(-3, 3)));
                }
                rank_job jobs[4];
                if (P == 1) { /* no group: the epilogue alone */
                    ops_ctx ctx;
                    ops_ctx_init(&ctx, 0);
                    ops_reduce_epi e;
                    memcpy(c.out[0], c.in[0], sizeof c.in[0]);
                    ep_describe(&c, 0, c.out[0], &e);
                    assert_int_equal(ops_comm_allreduce_sum(NULL, c.out[0], EP_N, &e, &ctx, NULL), 0);
                    ops_ctx_free(&ctx);
                } else {
                    use_alltoall = way;
                    run_ranks(P, ep_rank, &c, jobs);
                    use_alltoall = 0;
                }
                for (int r = 0; r < P; r++) {
                    if (P > 1) assert_int_equal(jobs[r].rc, 0);
                    const float *got = form == 2 ? c.res[r] : c.out[r];
                    for (int i = 0; i < EP_N; i++) {
                        float sum = c.in[0][i];
                        for (int q = 1; q < P; q++) sum += c.in[q][i];
                        int ch = form == 2 ? i % EP_C : (i / EP_INNER) % EP_C;
                        float want = form == 0 ? sum + (res0[i] + c.b2[ch])
                                   : form == 1 ? (sum + c.b1[ch]) + c.b2[ch]
                                               : res0[i] + (sum + c.b1[ch]);
                        if (memcmp(&got[i], &want, sizeof want))
                            fail_msg("P=%d form %d way %d rank %d element %d: %.9g, expected %.9g", P, form, way, r, i,
                                     got[i], want);
                    }
                }
            }
}

/* ---- shards ---- */

static void test_shards_are_row_views_and_column_copies(void **state) {
    (void)state;
    /* t: [4, 3, 2] float32 holding 0..23 */
    float data[24];
    for (int i = 0; i < 24; i++) data[i] = (float)i;
    sd_tensor t = {.name = "t", .dtype = SD_F32, .ndim = 3, .shape = {4, 3, 2}, .data = data, .nbytes = sizeof data};
    shard_store s = {0};
    sd_error err = {0};
    const sd_tensor *rows, *cols, *two;
    assert_int_equal(shard_rows(&s, &t, 1, 3, &rows, &err), 0);
    assert_ptr_equal(rows->data, data + 6); /* a view */
    assert_int_equal(rows->shape[0], 2);
    assert_int_equal(rows->nbytes, 12 * sizeof(float));
    assert_int_equal(shard_cols(&s, &t, 1, 3, &cols, &err), 0);
    assert_int_equal(cols->shape[1], 2);
    const float *cv = cols->data;
    for (int r = 0; r < 4; r++)
        for (int k = 0; k < 4; k++) assert_true(cv[r * 4 + k] == data[r * 6 + 2 + k]);
    assert_int_equal(shard_rows2(&s, &t, 0, 1, 2, 4, &two, &err), 0);
    const float *tv = two->data;
    assert_int_equal(two->shape[0], 3);
    for (int k = 0; k < 6; k++) assert_true(tv[k] == data[k]);
    for (int k = 0; k < 12; k++) assert_true(tv[6 + k] == data[12 + k]);
    assert_int_equal(shard_cols(&s, &t, 2, 4, &cols, &err), SD_EINTERNAL);
    assert_non_null(strstr(err.msg, "t"));
    assert_int_equal((int)s.copied_bytes, (16 + 18) * (int)sizeof(float));
    shard_store_free(&s);
}

/* ---- the sharded U-Net ---- */

typedef struct unet_case {
    const char *model, *golden, *x, *out;
    float t;
    double tol;
    float *single; /* one rank's output */
    float *got[4];
} unet_case;

/* A rank job's U-Net: files opened (model, golden) and m loaded; 0, or the error (the caller closes files, and
 * frees m when it loaded). */
static int rank_unet_open(const char *model, const char *golden, tu_net_files *files, unet_config *cfg, unet_model *m,
                          sd_error *err) {
    tu_net_files_open(files, model, "unet", golden);
    int rc = unet_config_load(cfg, files->config, err);
    return rc < 0 ? rc : unet_load(m, cfg, &files->w, err);
}

static void unet_rank(rank_job *j) {
    unet_case *c = j->user;
    tu_net_files files;
    unet_config cfg;
    unet_model m;
    sd_error err = {0};
    if ((j->rc = rank_unet_open(c->model, c->golden, &files, &cfg, &m, &err)) == 0) {
        if ((j->rc = unet_shard(&m, &j->comm, &err)) == 0) {
            const sd_tensor *xt = tu_tensor(&files.golden, c->x);
            int B = (int)xt->shape[0], H = (int)xt->shape[2], W = (int)xt->shape[3];
            size_t nx, nctx;
            float *x = tu_f32(&files.golden, c->x, &nx), *ctx = tu_f32(&files.golden, "context", &nctx);
            float t[2] = {c->t, c->t};
            c->got[j->comm.rank] = malloc(nx * sizeof(float));
            j->rc = unet_forward(&m, x, t, ctx, 77, B, H, W, c->got[j->comm.rank], &err);
            free(x), free(ctx);
        }
        unet_free(&m);
    }
    snprintf(j->msg, sizeof j->msg, "%s", err.msg);
    tu_net_files_close(&files);
}

static void check_unet_tp(const char *model, const char *golden, int P) {
    unet_case c = {.model = model, .golden = golden, .x = "x_16x16", .out = "out_16x16_t500_int64", .t = 500,
                   .tol = 2e-5}; /* the README's tolerance for out_16x16 */
    rank_job jobs[4];
    run_ranks(1, unet_rank, &c, jobs);
    assert_int_equal(jobs[0].rc, 0);
    c.single = c.got[0];
    run_ranks(P, unet_rank, &c, jobs);
    tu_net_files files;
    tu_net_files_open(&files, model, "unet", golden);
    size_t nw;
    float *want = tu_f32(&files.golden, c.out, &nw);
    for (int r = 0; r < P; r++) {
        if (jobs[r].rc) fail_msg("rank %d: %s", r, jobs[r].msg);
        /* every rank holds the same bits */
        assert_memory_equal(c.got[r], c.got[0], nw * sizeof(float));
        /* the layers really were shared: one all-reduce per resnet, three per transformer block */
        assert_true(jobs[r].stats.calls >= 10);
    }
    char label[96];
    snprintf(label, sizeof label, "%s tp=%d vs diffusers", model, P);
    tu_expect_close(label, c.got[0], want, nw, c.tol);
    snprintf(label, sizeof label, "%s tp=%d vs one rank", model, P);
    tu_expect_close(label, c.got[0], c.single, nw, 1e-4);
    free(want);
    free(c.single);
    for (int r = 0; r < P; r++) free(c.got[r]);
    tu_net_files_close(&files);
}

static void test_unet_tp2_matches_reference_sd15(void **state) {
    (void)state;
    check_unet_tp("tiny-sd15", "unet_sd15", 2);
}

static void test_unet_tp2_matches_reference_sd2(void **state) {
    (void)state;
    check_unet_tp("tiny-sd2", "unet_sd2", 2);
}

/* The U-Net gives a batch entry the same bits alone or in a batch of 2, at every level size from 1x1 up:
 * what makes CFG-parallel ranks (one entry each) match one rank (the batch) byte for byte. */
static void test_unet_batch_entries_are_bit_identical_alone(void **state) {
    (void)state;
    static const char *models[][2] = {{"tiny-sd15", "unet_sd15"}, {"tiny-sd2", "unet_sd2"}};
    for (int mi = 0; mi < 2; mi++) {
        tu_net_files files;
        unet_config cfg;
        unet_model m;
        sd_error err = {0};
        tu_net_files_open(&files, models[mi][0], "unet", models[mi][1]);
        if (unet_config_load(&cfg, files.config, &err) < 0 || unet_load(&m, &cfg, &files.w, &err) < 0)
            fail_msg("%s", err.msg);
        size_t nctx;
        float *ctx = tu_f32(&files.golden, "context", &nctx);
        static const int sizes[][2] = {{1, 1}, {3, 5}, {8, 8}, {12, 12}, {16, 24}};
        for (int si = 0; si < 5; si++) {
            int H = sizes[si][0], W = sizes[si][1];
            size_t n = (size_t)cfg.in_channels * H * W, no = (size_t)cfg.out_channels * H * W;
            float *x = malloc(2 * n * sizeof(float)), *two = malloc(2 * no * sizeof(float));
            float *one = malloc(no * sizeof(float)), t[2] = {321.5f, 321.5f};
            for (size_t i = 0; i < 2 * n; i++) x[i] = (float)((i * 37) % 11) * 0.2f - 1.0f + (i >= n ? 0.05f : 0.0f);
            if (unet_forward(&m, x, t, ctx, 77, 2, H, W, two, &err) < 0) fail_msg("%s", err.msg);
            for (int k = 0; k < 2; k++) {
                if (unet_forward(&m, x + k * n, t, ctx + k * nctx / 2, 77, 1, H, W, one, &err) < 0)
                    fail_msg("%s", err.msg);
                if (memcmp(one, two + k * no, no * sizeof(float)))
                    fail_msg("%s %dx%d: entry %d alone differs from the batch", models[mi][0], H, W, k);
            }
            free(x), free(two), free(one);
        }
        free(ctx);
        unet_free(&m);
        tu_net_files_close(&files);
    }
}

/* ---- a CFG pair sharing its small convolutions ---- */

typedef struct conv_pair_case {
    ops_conv_desc d;   /* batch 2 */
    const float *x;    /* [2, C, H, W] */
    float *got[2];     /* each rank's image */
    size_t nin, nout;  /* per image */
} conv_pair_case;

static void conv_pair_rank(rank_job *j) {
    conv_pair_case *c = j->user;
    int r = j->comm.rank;
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    ctx.pair = &j->comm;
    ops_conv_desc e = c->d;
    e.batch = 1;
    int C = e.in_ch, M = e.out_ch;
    if (e.in_scale) e.in_scale += (size_t)r * C;
    if (e.in_shift) e.in_shift += (size_t)r * C;
    if (e.chan_add) e.chan_add += (size_t)r * M;
    if (e.residual) e.residual += (size_t)r * c->nout;
    c->got[r] = malloc(c->nout * sizeof(float));
    sd_error err = {0};
    j->rc = ops_conv2d(c->got[r], c->x + (size_t)r * c->nin, &e, &ctx, &err);
    snprintf(j->msg, sizeof j->msg, "%s", err.msg);
    ops_ctx_free(&ctx);
}

/* One convolution through the pair (each rank one image, half the output channels) against the batch of two. */
static void test_conv_pair_gives_each_image_the_batchs_bits(void **state) {
    (void)state;
    static const int cases[][8] = {
        /* C, H, W, M, k, stride, fused GroupNorm + SiLU, residual + time add */
        {64, 2, 2, 64, 3, 1, 0, 0},   /* 2x2: the few route, plain */
        {64, 2, 2, 64, 3, 1, 1, 0},   /* fused GroupNorm + SiLU */
        {64, 2, 2, 64, 3, 1, 0, 1},   /* residual and time add */
        {64, 2, 2, 64, 3, 1, 1, 1},   /* both */
        {64, 8, 8, 128, 3, 1, 0, 1},  /* 8x8 */
        {64, 12, 12, 64, 3, 1, 1, 0}, /* 12x12: Winograd */
        {64, 16, 16, 64, 3, 2, 0, 0}, /* stride 2 to 8x8 */
        {96, 6, 6, 64, 1, 1, 1, 1},   /* 1x1 shortcut */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int *k = cases[i];
        int C = k[0], H = k[1], W = k[2], M = k[3], K = k[4], S = k[5];
        ops_conv_desc d = {.batch = 2, .in_ch = C, .in_h = H, .in_w = W, .out_ch = M, .k_h = K, .k_w = K, .stride = S,
                           .pad_t = K / 2, .pad_l = K / 2, .pad_b = K / 2, .pad_r = K / 2};
        int oh, ow;
        ops_conv2d_out_size(&d, &oh, &ow);
        size_t nin = (size_t)C * H * W, nout = (size_t)M * oh * ow, nw = (size_t)M * C * K * K;
        uint16_t *wh = malloc(nw * sizeof *wh);
        float *x = malloc(2 * nin * sizeof(float)), *bias = malloc(M * sizeof(float));
        float *sc = malloc(4 * (size_t)C * sizeof(float)), *add = malloc(2 * (size_t)M * sizeof(float));
        float *res = malloc(2 * nout * sizeof(float)), *two = malloc(2 * nout * sizeof(float));
        for (size_t q = 0; q < nw; q++) wh[q] = sd_dtype_f32_to_f16((float)((q * 7919) % 201) / 1000.0f - 0.1f);
        for (size_t q = 0; q < 2 * nin; q++) x[q] = (float)((q * 37) % 23) / 11.0f - 1.0f;
        for (int q = 0; q < M; q++) bias[q] = 0.01f * (float)(q % 7);
        for (int q = 0; q < 4 * C; q++) sc[q] = 0.5f + 0.01f * (float)(q % 13);
        for (int q = 0; q < 2 * M; q++) add[q] = 0.02f * (float)(q % 5) - 0.04f;
        for (size_t q = 0; q < 2 * nout; q++) res[q] = (float)(q % 17) / 17.0f;
        sd_tensor w = {.name = "pair.weight", .dtype = SD_F16, .ndim = 4, .shape = {M, C, K, K}, .data = wh,
                       .nbytes = nw * 2};
        sd_tensor b = {.name = "pair.bias", .dtype = SD_F32, .ndim = 1, .shape = {M}, .data = bias, .nbytes = M * 4u};
        d.weight = &w, d.bias = &b;
        if (k[6]) d.in_scale = sc, d.in_shift = sc + 2 * C, d.in_silu = 1;
        if (k[7]) d.chan_add = add, d.residual = res;
        ops_ctx ctx;
        ops_ctx_init(&ctx, 0);
        sd_error err = {0};
        if (ops_conv2d(two, x, &d, &ctx, &err) < 0) fail_msg("%s", err.msg);
        ops_ctx_free(&ctx);
        conv_pair_case c = {.d = d, .x = x, .nin = nin, .nout = nout};
        rank_job jobs[2];
        run_ranks(2, conv_pair_rank, &c, jobs);
        for (int r = 0; r < 2; r++) {
            if (jobs[r].rc) fail_msg("rank %d: %s", r, jobs[r].msg);
            if (memcmp(c.got[r], two + (size_t)r * nout, nout * sizeof(float)))
                fail_msg("case %zu (%d ch %dx%d -> %d): the pair's image %d differs from the batch", i, C, H, W, M, r);
            assert_true(jobs[r].stats.calls >= 2);
            free(c.got[r]);
        }
        free(wh), free(x), free(bias), free(sc), free(add), free(res), free(two);
    }
}


/* ---- column- and row-parallel convolutions ---- */

typedef struct split_conv_case {
    ops_conv_desc d;       /* the whole layer, batch 2 */
    const float *x, *res;  /* [2, C, H, W], [2, M, oh, ow] or NULL */
    int row;               /* row-parallel (input channels) instead of column-parallel (output channels) */
    int batch;             /* the batch this run convolves: 2, or 1 (entry `entry` alone) */
    int entry;
    size_t nin, nout;      /* per image */
    float *got[4];         /* each rank's whole output */
} split_conv_case;

/* Rank r keeps its slice of the weights (output rows, or input columns copied) and runs the layer. */
static void split_conv_rank(rank_job *j) {
    split_conv_case *c = j->user;
    int r = j->comm.rank, P = j->comm.size;
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    ops_conv_desc e = c->d;
    const sd_tensor *w = e.weight, *b = e.bias;
    int M = (int)w->shape[0], C = (int)w->shape[1], KK = (int)(w->shape[2] * w->shape[3]), lo, hi;
    ops_comm_share(&j->comm, c->row ? C : M, &lo, &hi);
    sd_tensor ws = *w, bs = *b;
    uint16_t *cols = NULL;
    if (c->row) { /* [M, hi - lo, k, k]: a copy of the column range */
        cols = malloc((size_t)M * (hi - lo) * KK * sizeof *cols);
        for (int m = 0; m < M; m++)
            memcpy(cols + (size_t)m * (hi - lo) * KK, (const uint16_t *)w->data + ((size_t)m * C + lo) * KK,
                   (size_t)(hi - lo) * KK * sizeof *cols);
        ws.shape[1] = hi - lo, ws.data = cols, ws.nbytes = (size_t)M * (hi - lo) * KK * 2;
    } else { /* rows [lo, hi): views */
        ws.shape[0] = hi - lo, ws.data = (const uint16_t *)w->data + (size_t)lo * C * KK;
        ws.nbytes = (size_t)(hi - lo) * C * KK * 2;
        bs.shape[0] = hi - lo, bs.data = (const float *)b->data + lo, bs.nbytes = (size_t)(hi - lo) * 4;
    }
    e.weight = &ws, e.bias = &bs, e.batch = c->batch;
    const float *x = c->x + (size_t)c->entry * c->nin, *res = c->res ? c->res + (size_t)c->entry * c->nout : NULL;
    if (e.in_scale) e.in_scale += (size_t)c->entry * C, e.in_shift += (size_t)c->entry * C;
    c->got[r] = malloc((size_t)c->batch * c->nout * sizeof(float));
    sd_error err = {0};
    j->rc = c->row ? ops_conv2d_row_parallel(&j->comm, c->got[r], x, &e, lo, hi - lo, res, &ctx, &err)
                   : ops_conv2d_col_parallel(&j->comm, c->got[r], x, &e, res, &ctx, &err);
    snprintf(j->msg, sizeof j->msg, "%s", err.msg);
    (void)P;
    free(cols);
    ops_ctx_free(&ctx);
}

/*
 * A layer split over 2 or 4 ranks, against the whole layer on one: column-parallel (output channels,
 * then an all-gather per image) gives every rank the whole layer's bits; row-parallel (input channels,
 * then the rank-ordered all-reduce) its sums within float32 rounding, and each image of the batch the
 * same bits as that image alone (the batch's channel slices are packed into one convolution).
 */
static void test_split_convolutions_match_the_whole_layer(void **state) {
    (void)state;
    static const int cases[][7] = {
        /* C, H, W, M, k, fused GroupNorm (scale, shift), residual */
        {64, 8, 8, 64, 1, 1, 0},   /* proj_in: GroupNorm fused */
        {64, 8, 8, 64, 1, 0, 1},   /* proj_out: + the block's input */
        {64, 3, 3, 128, 1, 1, 1},  /* few positions */
        {32, 12, 12, 128, 3, 1, 1}, /* 3x3, Winograd (32 output channels a rank at least, as it needs) */
        {128, 4, 4, 64, 3, 0, 0},  /* 3x3, few positions */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int *k = cases[i];
        int C = k[0], H = k[1], W = k[2], M = k[3], K = k[4];
        ops_conv_desc d = {.batch = 2, .in_ch = C, .in_h = H, .in_w = W, .out_ch = M, .k_h = K, .k_w = K, .stride = 1,
                           .pad_t = K / 2, .pad_l = K / 2, .pad_b = K / 2, .pad_r = K / 2};
        size_t nin = (size_t)C * H * W, nout = (size_t)M * H * W, nw = (size_t)M * C * K * K;
        uint16_t *wh = malloc(nw * sizeof *wh);
        float *x = malloc(2 * nin * sizeof(float)), *bias = malloc(M * sizeof(float));
        float *sc = malloc(4 * (size_t)C * sizeof(float)), *res = malloc(2 * nout * sizeof(float));
        float *whole = malloc(2 * nout * sizeof(float));
        for (size_t q = 0; q < nw; q++) wh[q] = sd_dtype_f32_to_f16((float)((q * 7919) % 201) / 1000.0f - 0.1f);
        for (size_t q = 0; q < 2 * nin; q++) x[q] = (float)((q * 37) % 23) / 11.0f - 1.0f;
        for (int q = 0; q < M; q++) bias[q] = 0.01f * (float)(q % 7);
        for (int q = 0; q < 4 * C; q++) sc[q] = 0.5f + 0.01f * (float)(q % 13);
        for (size_t q = 0; q < 2 * nout; q++) res[q] = (float)(q % 17) / 17.0f;
        sd_tensor w = {.name = "split.weight", .dtype = SD_F16, .ndim = 4, .shape = {M, C, K, K}, .data = wh,
                       .nbytes = nw * 2};
        sd_tensor b = {.name = "split.bias", .dtype = SD_F32, .ndim = 1, .shape = {M}, .data = bias, .nbytes = M * 4u};
        d.weight = &w, d.bias = &b;
        if (k[5]) d.in_scale = sc, d.in_shift = sc + 2 * C;
        ops_conv_desc dw = d;
        if (k[6]) dw.residual = res;
        ops_ctx ctx;
        ops_ctx_init(&ctx, 0);
        sd_error err = {0};
        if (ops_conv2d(whole, x, &dw, &ctx, &err) < 0) fail_msg("%s", err.msg);
        ops_ctx_free(&ctx);
        for (int P = 2; P <= 4; P += 2) {
            for (int row = 0; row < 2; row++) {
                split_conv_case c = {.d = d, .x = x, .res = k[6] ? res : NULL, .row = row, .batch = 2, .nin = nin,
                                     .nout = nout};
                rank_job jobs[4];
                run_ranks(P, split_conv_rank, &c, jobs);
                float *alone[2] = {0};
                for (int e = 0; e < 2 && row; e++) { /* each image alone, through the same split */
                    split_conv_case one = c;
                    one.batch = 1, one.entry = e;
                    rank_job jo[4];
                    run_ranks(P, split_conv_rank, &one, jo);
                    for (int r = 0; r < P; r++) {
                        if (jo[r].rc) fail_msg("rank %d: %s", r, jo[r].msg);
                        if (r == 0) alone[e] = one.got[0];
                        else free(one.got[r]);
                    }
                }
                for (int r = 0; r < P; r++) {
                    if (jobs[r].rc) fail_msg("rank %d: %s", r, jobs[r].msg);
                    if (memcmp(c.got[r], c.got[0], 2 * nout * sizeof(float)))
                        fail_msg("case %zu, %d ranks, %s: rank %d's output differs from rank 0's", i, P,
                                 row ? "row" : "column", r);
                }
                if (!row && memcmp(c.got[0], whole, 2 * nout * sizeof(float)))
                    fail_msg("case %zu, %d ranks: the column-parallel layer is not the whole layer's bits", i, P);
                for (size_t q = 0; row && q < 2 * nout; q++)
                    if (fabsf(c.got[0][q] - whole[q]) > 1e-5f * (1.0f + fabsf(whole[q])))
                        fail_msg("case %zu, %d ranks: row-parallel output %zu is %g, the whole layer's %g", i, P, q,
                                 (double)c.got[0][q], (double)whole[q]);
                for (int e = 0; e < 2 && row; e++) {
                    if (memcmp(alone[e], c.got[0] + (size_t)e * nout, nout * sizeof(float)))
                        fail_msg("case %zu, %d ranks: row-parallel image %d differs alone and in the batch", i, P, e);
                    free(alone[e]);
                }
                for (int r = 0; r < P; r++) free(c.got[r]);
            }
        }
        free(wh), free(x), free(bias), free(sc), free(res), free(whole);
    }
}

typedef struct split_linear_case {
    int M, K, N;
    const float *x;
    const sd_tensor *w, *b;
    float *got[4];
} split_linear_case;

static void split_linear_rank(rank_job *j) {
    split_linear_case *c = j->user;
    int lo, hi;
    ops_comm_share(&j->comm, c->N, &lo, &hi);
    sd_tensor ws = *c->w, bs = *c->b; /* rows [lo, hi): views */
    ws.shape[0] = bs.shape[0] = hi - lo;
    ws.data = (const uint16_t *)c->w->data + (size_t)lo * c->K, ws.nbytes = (size_t)(hi - lo) * c->K * 2;
    bs.data = (const float *)c->b->data + lo, bs.nbytes = (size_t)(hi - lo) * 4;
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    sd_error err = {0};
    c->got[j->comm.rank] = malloc((size_t)c->M * c->N * sizeof(float));
    j->rc = ops_linear_col_parallel(&j->comm, c->got[j->comm.rank], c->x, c->M, c->K, &ws, &bs, c->N, &ctx, &err);
    snprintf(j->msg, sizeof j->msg, "%s", err.msg);
    ops_ctx_free(&ctx);
}

/* A Linear split by output features over 2 and 4 ranks (SD 2.x's proj_in/out) gives every rank the whole layer's bits. */
static void test_column_parallel_linear_is_the_whole_layer(void **state) {
    (void)state;
    const int M = 37, K = 64, N = 96;
    uint16_t *wh = malloc((size_t)N * K * sizeof *wh);
    float *x = malloc((size_t)M * K * sizeof(float)), *bias = malloc(N * sizeof(float));
    float *whole = malloc((size_t)M * N * sizeof(float));
    for (int q = 0; q < N * K; q++) wh[q] = sd_dtype_f32_to_f16((float)((q * 7919) % 201) / 1000.0f - 0.1f);
    for (int q = 0; q < M * K; q++) x[q] = (float)((q * 37) % 23) / 11.0f - 1.0f;
    for (int q = 0; q < N; q++) bias[q] = 0.01f * (float)(q % 7);
    sd_tensor w = {.name = "lin.weight", .dtype = SD_F16, .ndim = 2, .shape = {N, K}, .data = wh, .nbytes = (size_t)N * K * 2};
    sd_tensor b = {.name = "lin.bias", .dtype = SD_F32, .ndim = 1, .shape = {N}, .data = bias, .nbytes = N * 4u};
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    sd_error err = {0};
    if (ops_linear(whole, x, M, K, &w, &b, N, 0, &ctx, &err) < 0) fail_msg("%s", err.msg);
    ops_ctx_free(&ctx);
    for (int P = 2; P <= 4; P += 2) {
        split_linear_case c = {.M = M, .K = K, .N = N, .x = x, .w = &w, .b = &b};
        rank_job jobs[4];
        run_ranks(P, split_linear_rank, &c, jobs);
        for (int r = 0; r < P; r++) {
            if (jobs[r].rc) fail_msg("rank %d: %s", r, jobs[r].msg);
            if (memcmp(c.got[r], whole, (size_t)M * N * sizeof(float)))
                fail_msg("%d ranks: rank %d's column-parallel linear is not the whole layer's bits", P, r);
            free(c.got[r]);
        }
    }
    free(wh), free(x), free(bias), free(whole);
}

typedef struct pair_case {
    const char *model, *golden;
    int H, W;
    const float *x, *ctx; /* [2, C, H, W], [2, 77, D] */
    size_t nx, nctx;      /* per entry */
    float *got[2];
} pair_case;

/* Rank r runs the U-Net on entry r alone, its convolutions at 16x16 and below shared with the other rank. */
static void pair_rank(rank_job *j) {
    pair_case *c = j->user;
    tu_net_files files;
    unet_config cfg;
    unet_model m;
    sd_error err = {0};
    int r = j->comm.rank;
    if ((j->rc = rank_unet_open(c->model, c->golden, &files, &cfg, &m, &err)) == 0) {
        float t[2] = {321.5f, 321.5f};
        size_t no = (size_t)cfg.out_channels * c->H * c->W;
        c->got[r] = malloc(no * sizeof(float));
        m.ops.pair = &j->comm;
        j->rc = unet_forward(&m, c->x + (size_t)r * c->nx, t, c->ctx + (size_t)r * c->nctx, 77, 1, c->H, c->W,
                             c->got[r], &err);
        unet_free(&m);
    }
    snprintf(j->msg, sizeof j->msg, "%s", err.msg);
    tu_net_files_close(&files);
}

/*
 * CFG-parallel ranks split the output channels of their small images' convolutions (ops_conv_pair.c):
 * each rank's entry has the bits of the same entry in one rank's batch of two, and the ranks really
 * did exchange (the shared convolutions' all-gathers).
 */
static void test_unet_cfg_pair_shares_convolutions_with_the_batchs_bits(void **state) {
    (void)state;
    tu_net_files files;
    unet_config cfg;
    unet_model m;
    sd_error err = {0};
    tu_net_files_open(&files, "tiny-sd15", "unet", "unet_sd15");
    if (unet_config_load(&cfg, files.config, &err) < 0 || unet_load(&m, &cfg, &files.w, &err) < 0)
        fail_msg("%s", err.msg);
    size_t nctx;
    float *ctx = tu_f32(&files.golden, "context", &nctx);
    static const int sizes[][2] = {{12, 12}, {16, 24}};
    for (int si = 0; si < 2; si++) {
        int H = sizes[si][0], W = sizes[si][1];
        size_t n = (size_t)cfg.in_channels * H * W, no = (size_t)cfg.out_channels * H * W;
        float *x = malloc(2 * n * sizeof(float)), *two = malloc(2 * no * sizeof(float)), t[2] = {321.5f, 321.5f};
        for (size_t i = 0; i < 2 * n; i++) x[i] = (float)((i * 37) % 11) * 0.2f - 1.0f + (i >= n ? 0.05f : 0.0f);
        if (unet_forward(&m, x, t, ctx, 77, 2, H, W, two, &err) < 0) fail_msg("%s", err.msg);
        pair_case c = {.model = "tiny-sd15", .golden = "unet_sd15", .H = H, .W = W, .x = x, .ctx = ctx, .nx = n,
                       .nctx = nctx / 2};
        rank_job jobs[2];
        run_ranks(2, pair_rank, &c, jobs);
        for (int r = 0; r < 2; r++) {
            if (jobs[r].rc) fail_msg("rank %d: %s", r, jobs[r].msg);
            if (memcmp(c.got[r], two + (size_t)r * no, no * sizeof(float)))
                fail_msg("%dx%d: the pair's entry %d differs from the batch of two", H, W, r);
            assert_true(jobs[r].stats.calls >= 10); /* the 64-channel levels' convolutions went through the pair */
            free(c.got[r]);
        }
        free(x), free(two);
    }
    free(ctx);
    unet_free(&m);
    tu_net_files_close(&files);
}

static void test_unet_tp_refuses_uneven_split(void **state) {
    (void)state;
    /* tiny-sd15 has 2 heads per level: 4 ranks cannot share them */
    unet_case c = {.model = "tiny-sd15", .golden = "unet_sd15", .x = "x_16x16", .t = 500};
    rank_job jobs[4];
    run_ranks(4, unet_rank, &c, jobs);
    for (int r = 0; r < 4; r++) {
        assert_int_equal(jobs[r].rc, SD_EINPUT);
        assert_non_null(strstr(jobs[r].msg, "--tp 4"));
        assert_non_null(strstr(jobs[r].msg, "heads"));
        free(c.got[r]);
    }
}

int main(void) {
    ops_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allreduce_adds_in_rank_order_on_every_rank),
        cmocka_unit_test(test_allreduce_finishes_each_element_once),
        cmocka_unit_test(test_shards_are_row_views_and_column_copies),
        cmocka_unit_test(test_unet_tp2_matches_reference_sd15),
        cmocka_unit_test(test_unet_tp2_matches_reference_sd2),
        cmocka_unit_test(test_unet_batch_entries_are_bit_identical_alone),
        cmocka_unit_test(test_conv_pair_gives_each_image_the_batchs_bits),
        cmocka_unit_test(test_split_convolutions_match_the_whole_layer),
        cmocka_unit_test(test_column_parallel_linear_is_the_whole_layer),
        cmocka_unit_test(test_unet_cfg_pair_shares_convolutions_with_the_batchs_bits),
        cmocka_unit_test(test_unet_tp_refuses_uneven_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
