/*
 * sdrender bench - times the U-Net step, the VAE decode and the text encoder(s)
 * of the full SD 1.5 or SDXL base architecture at a chosen resolution, with deterministic
 * random f16 weights made on the spot (no checkpoint needed), and compares the
 * U-Net's throughput with an OpenBLAS sgemm measured on the same cores.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli.h"
#include "clip.h"
#include "commands.h"
#include "config.h"
#include "ops.h"
#include "pipeline.h"
#include "unet.h"
#include "vae.h"
#include "model.h"
#include "randweights.h"
#include "tokenizer.h"
#include "tp_group.h"
#include "bench_op.h"
#include "weights.h"

/* ---- the three networks, from random weights or a model ----------------- */

typedef struct bench_nets {
    unet_config ucfg;
    vae_config vcfg;
    clip_config ccfg;
    clip_config c2cfg;       /* SDXL's text_encoder_2 (xl) */
    int xl;                  /* SDXL: second text encoder, added text/time conditioning */
    sd_weights uw, vw, cw, c2w; /* empty tables whose supplier makes the tensors */
    sd_rand_weights rw;
    sd_model model;          /* with -m MODEL */
    int have_model;
    int release;             /* with -m: drop each network's mapped weights after its phase, as the pipeline */
    int ids[2 * 77];         /* with -m: the text encoder's CFG pair, from the model's own tokenizer */
    double weight_mb;
    unet_model unet;
    vae_model vae;
    clip_text_model clip, clip2;
    int have_unet, have_vae, have_clip, have_clip2;
} bench_nets;

/* Loads the three networks through their usual (shape-checking) loaders from b's configs and tables;
 * with random weights this is where they are made. */
static int nets_load(bench_nets *b, int unet_only, sd_error *err) {
    const sd_weights *uw = b->have_model ? &b->model.unet_w : &b->uw;
    const sd_weights *vw = b->have_model ? &b->model.vae_w : &b->vw;
    const sd_weights *cw = b->have_model ? &b->model.clip_w : &b->cw;
    int rc;
    if ((rc = unet_load(&b->unet, &b->ucfg, uw, err)) < 0) return rc;
    b->have_unet = 1;
    if (unet_only) return 0;
    if ((rc = vae_load(&b->vae, &b->vcfg, vw, err)) < 0) return rc;
    b->have_vae = 1;
    if ((rc = clip_text_load(&b->clip, &b->ccfg, cw, err)) < 0) return rc;
    b->have_clip = 1;
    if (b->xl) {
        if ((rc = clip_text_load(&b->clip2, &b->c2cfg, b->have_model ? &b->model.clip2_w : &b->c2w, err)) < 0) return rc;
        b->have_clip2 = 1;
    }
    if (!b->have_model) b->weight_mb = (double)b->rw.bytes / 1e6;
    return 0;
}

/* SD 1.5's (or, xl, SDXL base's) configs, and empty tables whose supplier makes random f16 weights as the
 * loaders ask for them. */
static int nets_open_random(bench_nets *b, int xl, sd_error *err) {
    b->xl = xl;
    if (xl) unet_config_sdxl(&b->ucfg);
    else unet_config_sd15(&b->ucfg);
    vae_config_sd15(&b->vcfg);
    if (xl) b->vcfg.scaling_factor = 0.13025f;
    clip_config_sd15(&b->ccfg);
    if (xl) clip_config_sdxl_bigg(&b->c2cfg);
    int rc = sd_rand_weights_attach(&b->rw, &b->uw, "unet (random)", err);
    if (rc == 0) rc = sd_rand_weights_attach(&b->rw, &b->vw, "vae (random)", err);
    if (rc == 0) rc = sd_rand_weights_attach(&b->rw, &b->cw, "text encoder (random)", err);
    if (rc == 0 && xl) rc = sd_rand_weights_attach(&b->rw, &b->c2w, "text encoder 2 (random)", err);
    return rc;
}

/* b->ids: a prompt and an empty negative prompt through the model's tokenizer (--tokenizer as for generate): ids
 * inside the model's vocabulary, however small, and a missing or wrong tokenizer fails here as in generate. */
static int model_prompt_ids(bench_nets *b, sd_error *err) {
    tokenizer_bpe *tok = NULL;
    int32_t ids[77];
    int rc = sd_model_open_tokenizer(&b->model, &tok, err);
    for (int k = 0; k < 2 && rc == 0; k++) {
        rc = tokenizer_encode_padded(tok, k ? "a photograph of an astronaut riding a horse" : "", ids, 77, NULL, err);
        for (int i = 0; i < 77 && rc == 0; i++) b->ids[k * 77 + i] = ids[i];
    }
    if (tok) tokenizer_free(tok);
    return rc;
}

/* A real model (diffusers folder or single checkpoint) through the model loader: its configs and tables. */
static int nets_open_model(bench_nets *b, const char *path, const sd_model_opts *opts, sd_error *err) {
    int rc = sd_model_open(&b->model, path, opts, err);
    if (rc < 0) return rc;
    b->have_model = 1;
    if ((rc = sd_model_require(&b->model, SD_PART_VAE | SD_PART_TEXT_ENCODER, "bench", err)) < 0) return rc;
    if ((rc = model_prompt_ids(b, err)) < 0) return rc;
    b->ucfg = b->model.unet;
    b->vcfg = b->model.vae;
    b->ccfg = b->model.clip;
    b->c2cfg = b->model.clip2;
    b->xl = b->model.xl;
    for (int i = 0; i < b->model.n_files; i++) b->weight_mb += (double)b->model.file_size[i] / 1e6;
    return 0;
}

static void nets_free(bench_nets *b) {
    if (b->have_unet) unet_free(&b->unet);
    if (b->have_vae) vae_free(&b->vae);
    if (b->have_clip) clip_text_free(&b->clip);
    if (b->have_clip2) clip_text_free(&b->clip2);
    sd_weights_free(&b->uw);
    sd_weights_free(&b->c2w);
    sd_weights_free(&b->vw);
    sd_weights_free(&b->cw);
    sd_rand_weights_free(&b->rw);
    if (b->have_model) sd_model_close(&b->model);
}

/* ---- timing ---------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *rand_buffer(size_t n, uint64_t seed) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) return NULL;
    for (size_t i = 0; i < n; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        p[i] = (float)(seed >> 40) * (1.0f / 8388608.0f) - 1.0f;
    }
    return p;
}

typedef struct bench_result {
    double sgemm_gflops;
    double peak_gflops; /* ops_gemm_peak_gflops: the networks' own GEMM on a 4096x320x1280 product */
    double unet_first_s, unet_step_s, unet_gflop;
    double vae_s, vae_gflop;
    double clip_s, clip_gflop;
    double peak_rss_mb;
    double unet_scratch_mb, vae_scratch_mb; /* arena peaks */
    double comm_s, comm_bytes;              /* per U-Net step in a group (this rank) */
} bench_result;

/*
 * Times `steps` U-Net CFG steps (batch 2, evaluated as the pipeline does: sd_group_unet_forward)
 * after one untimed warm-up step. With a group, every rank runs them; the caller takes the maximum.
 */
static int time_unet(bench_nets *b, const sd_group *g, int h, int w, int steps, bench_result *r, sd_error *err) {
    size_t nx = (size_t)2 * b->ucfg.in_channels * h * w, no = (size_t)2 * b->ucfg.out_channels * h * w;
    size_t nc = (size_t)2 * 77 * b->ucfg.cross_attention_dim;
    float *x = rand_buffer(nx, 11), *ctx = rand_buffer(nc, 12), *out = malloc(no * sizeof(float));
    /* SDXL: a random pooled embedding and 1024x1024's time ids for both CFG entries */
    float *pooled = rand_buffer((size_t)2 * (b->xl ? b->c2cfg.projection_dim : 1), 13);
    const float ids[12] = {1024, 1024, 0, 0, 1024, 1024, 1024, 1024, 0, 0, 1024, 1024};
    unet_added_cond ac = {.text_embeds = pooled, .n_text = b->c2cfg.projection_dim, .time_ids = ids, .n_time = 6};
    const unet_added_cond *added = b->xl ? &ac : NULL;
    float t[2] = {500, 500};
    int rc = 0;
    if (!x || !ctx || !out || !pooled) {
        rc = sd_err(err, SD_ENOMEM, "out of memory for the U-Net inputs");
        goto done;
    }
    double t0 = now_s();
    if ((rc = sd_group_unet_forward(&b->unet, g, x, t[0], ctx, 77, added, 2, h, w, out, err)) < 0) goto done;
    r->unet_first_s = now_s() - t0;
    ops_profile_reset();
    ops_comm_stats *cs = g && g->all ? g->all->stats : NULL;
    if (cs) memset(cs, 0, sizeof *cs);
    t0 = now_s();
    for (int s = 0; s < steps && rc == 0; s++) {
        t[0] = t[1] = 999.0f - 50.0f * (float)s;
        rc = sd_group_unet_forward(&b->unet, g, x, t[0], ctx, 77, added, 2, h, w, out, err);
    }
    r->unet_step_s = (now_s() - t0) / steps;
    if (cs) {
        r->comm_s = cs->seconds / steps;
        r->comm_bytes = (double)cs->bytes_sent / steps;
    }
    r->unet_gflop = unet_flops(&b->ucfg, 2, h, w, 77) / 1e9;
    r->unet_scratch_mb = (double)b->unet.ops.scratch.peak / 1e6;
    unet_release_scratch(&b->unet); /* as a pipeline does before decoding, with its mapped weights */
    if (b->release) sd_model_release_weights(&b->model, &b->model.unet_w);
done:
    free(x), free(ctx), free(out), free(pooled);
    return rc;
}

enum { BENCH_MAX_ROUNDS = 50 };

/* The group's measurements (bench --tp), for the JSON. */
typedef struct bench_tp {
    int tp;
    const char *parallel;
    const char *transport; /* of the tensor-parallel all-reduce */
    double step_s, comm_s, comm_bytes, peak_rss_mb; /* max over the ranks */
    double comm_s_min; /* the rank that spent least in collectives: about the transfer alone, the others also waited */
    double concurrent_step_s; /* the slowest rank's single-rank step while all K ran one at once (bench_concurrent) */
    /* --rounds R > 1: each round's group step, all-at-once step and rank 0's step alone, in that order */
    int rounds;
    double round_group[BENCH_MAX_ROUNDS], round_concurrent[BENCH_MAX_ROUNDS], round_single[BENCH_MAX_ROUNDS];
} bench_tp;

/* Times one decode of a [1, 4, h, w] latent (cold scratch: its first allocation is included). */
static int time_vae(bench_nets *b, int h, int w, bench_result *r, sd_error *err) {
    size_t f = (size_t)vae_scale_factor(&b->vcfg);
    size_t nz = (size_t)b->vcfg.latent_channels * h * w, ni = (size_t)b->vcfg.out_channels * h * w * f * f;
    float *z = rand_buffer(nz, 21), *img = malloc(ni * sizeof(float));
    int rc = 0;
    if (!z || !img) {
        rc = sd_err(err, SD_ENOMEM, "out of memory for the VAE input");
    } else {
        double t0 = now_s();
        rc = vae_decode(&b->vae, z, 1, h, w, img, err);
        r->vae_s = now_s() - t0;
        r->vae_gflop = vae_decode_flops(&b->vcfg, 1, h, w) / 1e9;
        r->vae_scratch_mb = (double)b->vae.ops.scratch.peak / 1e6;
        vae_release_scratch(&b->vae);
        if (b->release) sd_model_release_weights(&b->model, &b->model.vae_w);
    }
    free(z), free(img);
    return rc;
}

/* The text encoder(s) on ids [2, 77] into out / out2 (each [2, 77, hidden]): SD 1.5's last layer; SDXL's
 * penultimate hidden states of both encoders and the second's final LayerNorm, as the pipeline runs them. */
static int run_clip(bench_nets *b, const int *ids, float *out, float *out2, float *fin2, sd_error *err) {
    if (!b->xl) return clip_text_forward(&b->clip, ids, 2, 77, 0, out, err);
    int rc = clip_text_forward_hidden(&b->clip, ids, 2, 77, 1, out, NULL, err);
    return rc < 0 ? rc : clip_text_forward_hidden(&b->clip2, ids, 2, 77, 1, out2, fin2, err);
}

/* Times the text encoder(s) on a CFG pair of 77-token prompts (best of `reps` after a warm-up). */
static int time_clip(bench_nets *b, int reps, bench_result *r, sd_error *err) {
    int ids[2 * 77]; /* random weights: ids spread over CLIP's 49408 tokens; a model: its own tokenizer's */
    for (int i = 0; i < 2 * 77; i++) ids[i] = b->have_model ? b->ids[i] : i % 77 == 0 ? 49406 : (i * 7919) % 49406;
    size_t n2 = (size_t)2 * 77 * (b->xl ? b->c2cfg.hidden : 1);
    float *out = malloc((size_t)2 * 77 * b->ccfg.hidden * sizeof(float));
    float *out2 = malloc(n2 * sizeof(float)), *fin2 = malloc(n2 * sizeof(float));
    int rc = !out || !out2 || !fin2 ? sd_err(err, SD_ENOMEM, "out of memory for the text encoder output") : 0;
    if (rc == 0) rc = run_clip(b, ids, out, out2, fin2, err);
    r->clip_s = INFINITY;
    for (int i = 0; i < reps && rc == 0; i++) {
        double t0 = now_s();
        rc = run_clip(b, ids, out, out2, fin2, err);
        double dt = now_s() - t0;
        if (dt < r->clip_s) r->clip_s = dt;
    }
    clip_config c1 = b->ccfg;
    if (b->xl) c1.layers -= 1; /* SDXL's first encoder stops at its penultimate layer */
    r->clip_gflop = (clip_text_flops(&c1, 2, 77) + (b->xl ? clip_text_flops(&b->c2cfg, 2, 77) : 0)) / 1e9;
    free(out), free(out2), free(fin2);
    if (b->release) {
        sd_model_release_weights(&b->model, &b->model.clip_w);
        sd_model_release_weights(&b->model, &b->model.clip2_w);
    }
    return rc;
}

typedef struct bench_opts {
    int h, w, steps;      /* latent size, timed U-Net steps */
    int no_vae, no_text, profile;
} bench_opts;

/* The three networks' GEMMs compute in `precision` from now on. */
static void nets_set_precision(bench_nets *b, ops_precision precision) {
    b->unet.ops.precision = precision;
    b->vae.ops.precision = precision;
    b->clip.ops.precision = precision;
    b->clip2.ops.precision = precision;
}

/* Prints r's table (r->sgemm_gflops and r->peak_gflops already measured). */
static void print_results(const bench_result *r, const bench_opts *o, int b_xl) {
    printf("  %-26s %9s %9s %9s %9s\n", "component", "seconds", "GFLOP", "GFLOP/s", "vs sgemm");
    double ug = r->unet_gflop / r->unet_step_s;
    printf("  %-26s %9.3f %9.1f %9.1f %8.1f%%\n", "unet step (CFG batch 2)", r->unet_step_s, r->unet_gflop, ug,
           100 * ug / r->sgemm_gflops);
    printf("  %-26s %9.3f\n", "  (first step, cold)", r->unet_first_s);
    printf("  %-26s %9.1f%%\n", "  (unet vs peak GEMM)", 100 * ug / r->peak_gflops);
    if (!o->no_vae)
        printf("  %-26s %9.3f %9.1f %9.1f %8.1f%%\n", "vae decode", r->vae_s, r->vae_gflop, r->vae_gflop / r->vae_s,
               100 * r->vae_gflop / r->vae_s / r->sgemm_gflops);
    if (!o->no_text)
        printf("  %-26s %9.3f %9.1f %9.1f %8.1f%%\n", b_xl ? "text encoders (batch 2)" : "text encoder (batch 2)",
               r->clip_s, r->clip_gflop,
               r->clip_gflop / r->clip_s, 100 * r->clip_gflop / r->clip_s / r->sgemm_gflops);
}

/* The peak GEMM, then U-Net, VAE and text encoder with every GEMM in `precision`; prints the table. */
static int bench_precision(bench_nets *b, const bench_opts *o, ops_precision precision, bench_result *r,
                           sd_error *err) {
    const char *name = precision == OPS_PRECISION_BF16 ? "bf16" : "fp32";
    ops_ctx pctx;
    ops_ctx_init(&pctx, 0);
    pctx.precision = precision;
    r->peak_gflops = ops_gemm_peak_gflops(&pctx, 5);
    printf("  %s: peak GEMM 4096x320x1280 (ops_gemm, %s, kernel tiles): %.1f GFLOP/s; attention: %s\n", name,
           precision == OPS_PRECISION_BF16 ? "oneDNN bf16 matmul" : ops_gemm_backend(), r->peak_gflops,
           ops_attention_name(&pctx));
    ops_ctx_free(&pctx);
    fflush(stdout);
    nets_set_precision(b, precision);
    ops_profile_enable(o->profile);
    int rc = time_unet(b, NULL, o->h, o->w, o->steps, r, err);
    if (rc == 0 && o->profile) {
        printf("  U-Net kernels over %d timed steps:\n", o->steps);
        ops_profile_report(stdout);
        ops_profile_reset();
    }
    if (rc == 0 && !o->no_vae) rc = time_vae(b, o->h, o->w, r, err);
    if (rc == 0 && !o->no_vae && o->profile) {
        printf("  VAE decode kernels:\n");
        ops_profile_report(stdout);
    }
    ops_profile_enable(0);
    if (rc == 0 && !o->no_text) rc = time_clip(b, 3, r, err);
    if (rc == 0) print_results(r, o, b->xl);
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..n) (n >= 1; v is left as it was). */
static double median_of(const double *v, int n) {
    double t[BENCH_MAX_ROUNDS];
    memcpy(t, v, (size_t)n * sizeof *t);
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/* Round k's speed-up (rank 0 alone over the group) and ceiling (K x alone over all at once). */
static void round_ratios(const bench_tp *tp, double *speedup, double *scaling) {
    for (int k = 0; k < tp->rounds; k++) {
        speedup[k] = tp->round_single[k] / tp->round_group[k];
        scaling[k] = tp->tp * tp->round_single[k] / tp->round_concurrent[k];
    }
}

/* A JSON array of v[0..n). */
static json_t *json_doubles(const double *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_real(v[i]));
    return a;
}

/*
 * r: the run whose keys are the usual ones (its precision named by "precision"); bf: with
 * --precision both, the bf16 run, written as unet_step_s_bf16, vae_decode_s_bf16,
 * text_encoder_s_bf16, peak_gemm_gflops_bf16 and unet_vs_peak_bf16 (NULL otherwise).
 */
static int write_json(const char *path, const char *arch, const bench_result *r, const bench_result *bf,
                      const bench_tp *tp, const char *precision, int W, int H, int threads, int steps, sd_error *err) {
    json_t *o = json_object();
    char cpu[256];
    ops_ctx actx;
    ops_ctx_init(&actx, 0);
    json_object_set_new(o, "arch", json_string(arch));
    json_object_set_new(o, "cpu", json_string(ops_cpu_describe(cpu, sizeof cpu)));
    json_object_set_new(o, "attention_kernel", json_string(ops_attention_name(&actx)));
    actx.precision = OPS_PRECISION_BF16;
    if (bf || !strcmp(precision, "bf16"))
        json_object_set_new(o, "attention_kernel_bf16", json_string(ops_attention_name(&actx)));
    ops_ctx_free(&actx);
    json_object_set_new(o, "precision", json_string(precision));
    json_object_set_new(o, "width", json_integer(W));
    json_object_set_new(o, "height", json_integer(H));
    json_object_set_new(o, "threads", json_integer(threads));
    json_object_set_new(o, "steps", json_integer(steps));
    json_object_set_new(o, "sgemm_gflops", json_real(r->sgemm_gflops));
    json_object_set_new(o, "unet_first_step_s", json_real(r->unet_first_s));
    json_object_set_new(o, "unet_step_s", json_real(r->unet_step_s));
    json_object_set_new(o, "unet_gflop", json_real(r->unet_gflop));
    json_object_set_new(o, "unet_gflops", json_real(r->unet_gflop / r->unet_step_s));
    json_object_set_new(o, "unet_vs_sgemm", json_real(r->unet_gflop / r->unet_step_s / r->sgemm_gflops));
    json_object_set_new(o, "peak_gemm_gflops", json_real(r->peak_gflops));
    json_object_set_new(o, "unet_vs_peak", json_real(r->unet_gflop / r->unet_step_s / r->peak_gflops));
    if (r->vae_s > 0) {
        json_object_set_new(o, "vae_decode_s", json_real(r->vae_s));
        json_object_set_new(o, "vae_decode_gflop", json_real(r->vae_gflop));
        json_object_set_new(o, "vae_decode_gflops", json_real(r->vae_gflop / r->vae_s));
    }
    if (r->clip_s > 0) {
        json_object_set_new(o, "text_encoder_s", json_real(r->clip_s));
        json_object_set_new(o, "text_encoder_gflop", json_real(r->clip_gflop));
    }
    if (bf) {
        json_object_set_new(o, "unet_step_s_bf16", json_real(bf->unet_step_s));
        json_object_set_new(o, "peak_gemm_gflops_bf16", json_real(bf->peak_gflops));
        json_object_set_new(o, "unet_vs_peak_bf16", json_real(bf->unet_gflop / bf->unet_step_s / bf->peak_gflops));
        if (bf->vae_s > 0) json_object_set_new(o, "vae_decode_s_bf16", json_real(bf->vae_s));
        if (bf->clip_s > 0) json_object_set_new(o, "text_encoder_s_bf16", json_real(bf->clip_s));
    }
    json_object_set_new(o, "peak_rss_mb", json_real(tp ? tp->peak_rss_mb : r->peak_rss_mb));
    if (tp) {
        /* the group's step is the headline; one rank's stays beside it */
        json_object_set_new(o, "tp", json_integer(tp->tp));
        json_object_set_new(o, "parallel", json_string(tp->parallel));
        json_object_set_new(o, "unet_step_s", json_real(tp->step_s));
        json_object_set_new(o, "unet_step_s_single", json_real(r->unet_step_s));
        json_object_set_new(o, "speedup", json_real(r->unet_step_s / tp->step_s));
        json_object_set_new(o, "unet_step_s_concurrent", json_real(tp->concurrent_step_s));
        json_object_set_new(o, "compute_scaling", json_real(tp->tp * r->unet_step_s / tp->concurrent_step_s));
        json_object_set_new(o, "comm_s_per_step", json_real(tp->comm_s));
        json_object_set_new(o, "comm_s_per_step_min", json_real(tp->comm_s_min));
        json_object_set_new(o, "allreduce_transport", json_string(tp->transport));
        json_object_set_new(o, "comm_bytes_per_step", json_real(tp->comm_bytes));
        json_object_set_new(o, "peak_rss_mb_single", json_real(r->peak_rss_mb));
        if (tp->rounds > 1) {
            double sp[BENCH_MAX_ROUNDS], sc[BENCH_MAX_ROUNDS];
            round_ratios(tp, sp, sc);
            json_object_set_new(o, "rounds", json_integer(tp->rounds));
            json_object_set_new(o, "unet_step_s_rounds", json_doubles(tp->round_group, tp->rounds));
            json_object_set_new(o, "unet_step_s_concurrent_rounds", json_doubles(tp->round_concurrent, tp->rounds));
            json_object_set_new(o, "unet_step_s_single_rounds", json_doubles(tp->round_single, tp->rounds));
            json_object_set_new(o, "speedup_rounds", json_doubles(sp, tp->rounds));
            json_object_set_new(o, "compute_scaling_rounds", json_doubles(sc, tp->rounds));
            json_object_set_new(o, "speedup_median", json_real(median_of(sp, tp->rounds)));
            json_object_set_new(o, "compute_scaling_median", json_real(median_of(sc, tp->rounds)));
        }
    }
    json_object_set_new(o, "unet_scratch_mb", json_real(r->unet_scratch_mb));
    if (r->vae_s > 0) json_object_set_new(o, "vae_scratch_mb", json_real(r->vae_scratch_mb));
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    json_decref(o);
    if (!text) return sd_err(err, SD_ENOMEM, "out of memory writing %s", path);
    FILE *fp = fopen(path, "w");
    int rc = 0;
    if (!fp || fputs(text, fp) < 0 || fputc('\n', fp) < 0) rc = sd_err_sys(err, errno, "%s: cannot write", path);
    if (fp && fclose(fp) != 0 && rc == 0) rc = sd_err_sys(err, errno, "%s: cannot write", path);
    free(text);
    return rc;
}

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: sdrender bench [--arch sd15|sdxl] [-W PX] [-H PX] [--threads N] [--steps N] [--precision P]\n"
            "                      [--json OUT] [--no-vae] [--no-text]\n"
            "       sdrender bench --op KIND:SHAPE [--threads N] [--steps N] [--precision P] [--json OUT]\n"
            "\n"
            "Times one U-Net step (CFG batch 2), a VAE decode and the text encoder(s) of the full\n"
            "SD 1.5 or SDXL base architecture with random f16 weights (they stay f16 in memory), and\n"
            "compares the U-Net's GFLOP/s with\n"
            "an OpenBLAS sgemm on the same cores and with the peak of the networks' own GEMM\n"
            "(ops_gemm on a 4096x320x1280 product with the kernels' tiles and threads).\n"
            "\n"
            "  --arch A       sd15 (default; 860 M-parameter U-Net) or sdxl (SDXL base: 2.6 B-parameter U-Net,\n"
            "                 CLIP-L + OpenCLIP-bigG, added text/time conditioning)\n"
            "  -W, -H PX      image size, a multiple of the VAE's scale factor (8 for SD; default 512,\n"
            "                 sdxl 1024)\n"
            "  --threads N    threads (default: all cores)\n"
            "  --steps N      timed U-Net steps after one warm-up (default 3)\n"
            "  --json OUT     also write the results as JSON (with the CPU, \"cpu\", and the attention kernel of each\n"
            "                 precision, \"attention_kernel\" and \"attention_kernel_bf16\")\n"
            "  --no-vae, --no-text  skip the VAE decode / the text encoder\n"
            "  --profile      time per kind of kernel (timed U-Net steps, then the VAE decode; with --tp,\n"
            "                 rank 0's kernels in the group's steps first)\n"
            "  --precision P  fp32 (default), bf16 (linear, convolution and attention products on bf16\n"
            "                 inputs, fp32 sums; needs AVX512_BF16; attention on AMX tiles where the CPU\n"
            "                 has AMX-BF16)\n"
            "                 or both: fp32, then bf16 (JSON: the fp32 keys plus unet_step_s_bf16,\n"
            "                 vae_decode_s_bf16, text_encoder_s_bf16, peak_gemm_gflops_bf16, unet_vs_peak_bf16)\n"
            "  -m MODEL       time a real model (diffusers folder or checkpoint) instead of random weights\n"
            "  --tp K         under mpirun -np K: one CFG U-Net step on the K ranks as a group (--parallel\n"
            "                 auto|cfg|tensor, as for generate), then on every rank at once, each alone,\n"
            "                 then on rank 0 alone while the others sleep; same threads per rank (the group\n"
            "                 in bf16 with --precision bf16, else fp32);\n"
            "                 JSON adds tp, parallel, unet_step_s (group), unet_step_s_single (rank 0 alone),\n"
            "                 speedup, comm_s_per_step (comm_s_per_step_min: the rank that spent least),\n"
            "                 comm_bytes_per_step, allreduce_transport, peak_rss_mb (the largest rank's,\n"
            "                 group), unet_step_s_concurrent (the slowest rank's single step with all K at\n"
            "                 once) and compute_scaling (K x single / concurrent: the speed-up K independent\n"
            "                 ranks get on this CPU, the ceiling for the group's)\n"
            "  --rounds R     with --tp: the group, all-at-once and alone steps R times in turn (each round's\n"
            "                 ratios from one stretch of a noisy host's load); JSON adds rounds, *_rounds\n"
            "                 arrays, speedup_median and compute_scaling_median\n"
            "  --op KIND:SHAPE  time one kernel alone on random data and fp16 weights instead (best of --steps\n"
            "                 calls; with --threads, --precision, --json): conv:C,S[,B[,K[,T]]] (C channels,\n"
            "                 SxS images, batch B=2, KxK=3x3, Winograd output tile T=2 as the U-Net's, or 4\n"
            "                 as the VAE's), linear:M,K,N[,E] (E rows per batch entry, as a\n"
            "                 transformer's positions per image: up to 64 take the few-row kernel),\n"
            "                 attention:B,H,D,NQ[,NKV]; with --tp K under mpirun -np K, allreduce:N: the group's\n"
            "                 all-reduce of N floats as a row-parallel layer ends it (SDRENDER_TP_SHM=0: over\n"
            "                 MPI messages instead of the node's shared memory)\n"
            "  --tokenizer P, --config YAML  as for generate (a single file's tokenizer and LDM config), so\n"
            "                 a generate command line's model options work here unchanged\n");
}

/* What the command line asked for. */
typedef struct bench_args {
    const char *model, *json_path;
    sd_model_opts mopts;
    int W, H, steps, no_vae, no_text, profile, prec; /* prec: 0 fp32, 1 bf16, 2 both */
    int xl; /* --arch sdxl */
    int rounds; /* bench --tp: the group, all-at-once and alone phases repeated in turn */
} bench_args;

/* Opens the networks (random or -m) and checks the size; *h, *w: the latent size. */
static int bench_open(const bench_args *a, bench_nets *b, int unet_only, int *h, int *w, sd_error *err) {
    memset(b, 0, sizeof *b);
    int rc = a->model ? nets_open_model(b, a->model, &a->mopts, err) : nets_open_random(b, a->xl, err);
    int scale = vae_scale_factor(&b->vcfg);
    if (rc == 0 && (a->W % scale || a->H % scale))
        rc = sd_err(err, SD_EINPUT, "bench: -W and -H must be multiples of %d (got %dx%d)", scale, a->W, a->H);
    if (rc == 0) rc = nets_load(b, unet_only, err);
    *h = a->H / scale;
    *w = a->W / scale;
    return rc;
}

/* Peak resident memory of this process (since the last peak_rss_reset), MB. */
static double peak_rss_mb(void) {
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (fp && fgets(line, sizeof line, fp))
        if (sscanf(line, "VmHWM: %ld", &kb) == 1) break;
    if (fp) fclose(fp);
    if (kb >= 0) return (double)kb / 1024.0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/*
 * Starts a new peak (Linux: "5" to /proc/self/clear_refs resets VmHWM). bench --tp uses it after
 * sharding: the random weights are made whole before each rank keeps its share, a peak a mapped
 * checkpoint does not have (its pages are read only where a rank's shards lie, and column copies
 * release theirs).
 */
static void peak_rss_reset(void) {
    FILE *fp = fopen("/proc/self/clear_refs", "w");
    if (fp) {
        fputs("5", fp);
        fclose(fp);
    }
}

/*
 * The whole benchmark on this process alone: prints the table and writes the JSON (with tp's group
 * figures when given). Returns the exit status.
 */
static int bench_single(const bench_args *a, const bench_tp *tp) {
    bench_result r = {0}, rb = {0}; /* the fp32 run, the bf16 run */
    bench_nets b;
    sd_error err = {0};
    int h, w, prec = a->prec;
    double t0 = now_s();
    int rc = bench_open(a, &b, 0, &h, &w, &err);
    if (rc < 0) {
        nets_free(&b);
        return cli_fail(&err);
    }
    int nt = ops_get_threads();
    if (prec != 0 && !cli_bf16_usable()) prec = 0;
    r.sgemm_gflops = ops_sgemm_reference_gflops(2048, 3);
    printf("sdrender bench: %s, %dx%d (latent %dx%d), %d threads%s\n",
           a->model ? a->model : a->xl ? "SDXL base architecture, random f16 weights" : "SD 1.5 architecture, random f16 weights",
           a->W, a->H, h, w, nt,
           tp ? ", rank 0 alone" : "");
    char cpu[256];
    printf("  cpu: %s\n", ops_cpu_describe(cpu, sizeof cpu));
    printf("  weights: %.0f MB %s in %.1f s\n", b.weight_mb, a->model ? "mapped" : "made", now_s() - t0);
    printf("  sgemm 2048^3 (OpenBLAS, %d threads): %.1f GFLOP/s\n", nt, r.sgemm_gflops);
    fflush(stdout);
    bench_opts o = {h, w, a->steps, a->no_vae, a->no_text, a->profile};
    b.release = b.have_model && sd_pipeline_releases_memory(-1, a->W, a->H);
    rc = prec == 1 ? 0 : bench_precision(&b, &o, OPS_PRECISION_FP32, &r, &err);
    if (rc == 0 && prec != 0) {
        rb.sgemm_gflops = r.sgemm_gflops;
        rc = bench_precision(&b, &o, OPS_PRECISION_BF16, &rb, &err);
    }
    if (rc < 0) {
        nets_free(&b);
        return cli_fail(&err);
    }
    r.peak_rss_mb = rb.peak_rss_mb = peak_rss_mb();
    const bench_result *last = prec == 0 ? &r : &rb;
    printf("  peak RSS: %.0f MB (weights %.0f MB, %s; activations and scratch at most %.0f MB U-Net, %.0f MB VAE)\n",
           last->peak_rss_mb, b.weight_mb,
           !b.have_model ? "random: all resident"
           : b.release   ? "mapped: one network's resident at a time, as in generate and run"
                         : "mapped: all resident, as in generate and run below 512x512",
           last->unet_scratch_mb, last->vae_scratch_mb);
    if (tp) {
        const bench_result *alone = prec == 1 ? &rb : &r; /* the single run in the group's precision */
        double speedup = alone->unet_step_s / tp->step_s;
        printf("  group of %d ranks (%s-parallel, %s): U-Net step %.3f s vs %.3f s alone: %.2fx; communication "
               "%.3f s (largest rank; %.3f s the least) and %.1f MB sent per step (largest rank); peak RSS %.0f MB "
               "(largest rank); all-reduce through %s\n",
               tp->tp, tp->parallel, prec == 1 ? "bf16" : "fp32", tp->step_s, alone->unet_step_s, speedup,
               tp->comm_s, tp->comm_s_min, tp->comm_bytes / 1e6, tp->peak_rss_mb, tp->transport);
        double scaling = tp->tp * alone->unet_step_s / tp->concurrent_step_s;
        printf("  %d ranks each running that single step at once: %.3f s (slowest), so %d cores allow %.2fx; the "
               "group reached %.0f%% of that\n",
               tp->tp, tp->concurrent_step_s, tp->tp, scaling, 100.0 * speedup / scaling);
        if (tp->rounds > 1) {
            double sp[BENCH_MAX_ROUNDS], sc[BENCH_MAX_ROUNDS];
            round_ratios(tp, sp, sc);
            for (int k = 0; k < tp->rounds; k++)
                printf("  round %d: group %.3f s, all at once %.3f s, rank 0 alone %.3f s: %.2fx of %.2fx (%.0f%%)\n",
                       k + 1, tp->round_group[k], tp->round_concurrent[k], tp->round_single[k], sp[k], sc[k],
                       100.0 * sp[k] / sc[k]);
            printf("  median over %d rounds: speed-up %.2fx, ceiling %.2fx\n", tp->rounds, median_of(sp, tp->rounds),
                   median_of(sc, tp->rounds));
        }
    }
    if (a->json_path)
        rc = write_json(a->json_path, a->model ? a->model : a->xl ? "sdxl" : "sd15", prec == 1 ? &rb : &r, prec == 2 ? &rb : NULL, tp, prec == 1 ? "bf16" : "fp32",
                        a->W, a->H, nt, a->steps, &err);
    nets_free(&b);
    return rc < 0 ? cli_fail(&err) : 0;
}

/* A rank's own whole U-Net for the single-rank steps, in the group's precision (bf16 for --precision bf16). */
static int bench_open_whole_unet(const bench_args *a, bench_nets *b, int *h, int *w, sd_error *err) {
    int rc = bench_open(a, b, 1, h, w, err);
    if (rc == 0 && a->prec == 1 && cli_bf16_usable()) nets_set_precision(b, OPS_PRECISION_BF16);
    return rc;
}

/*
 * The ceiling of the group's speed-up on this machine: every rank runs rank 0's single-rank step (the
 * whole CFG batch, unsharded weights, same threads) at the same time; the slowest rank's step time is
 * returned in *step_s. K x rank 0's step alone over it is the speed-up K independent ranks would get, which
 * no split of one image can beat: cores that share caches, memory, clocks or a host slow down together (on
 * a 2-core Zen 1 VM every kernel of the U-Net ran 10-12% slower with both cores busy, while a register-only
 * FMA loop lost 2-5%, so only the real work measures it). have: the group's nets when they hold the whole
 * U-Net (cfg; latent have_h x have_w), else each rank opens its own. Collective.
 */
static int bench_concurrent(const bench_args *a, sd_tp_world *world, bench_nets *have, int have_h, int have_w,
                            double *step_s, sd_error *err) {
    const sd_group *g = sd_tp_group(world);
    bench_nets own, *b = have ? have : &own; /* have: the group's U-Net, whole on every rank (cfg) */
    bench_result r = {0};
    int h, w, rc = 0;
    if (have) {
        h = have_h, w = have_w;
    } else {
        rc = bench_open_whole_unet(a, &own, &h, &w, err);
    }
    rc = sd_group_agree(g, rc, err);
    if (rc == 0) {
        sd_tp_barrier(world);
        rc = time_unet(b, NULL, h, w, a->steps, &r, err);
        rc = sd_group_agree(g, rc, err);
    }
    *step_s = sd_tp_max(world, r.unet_step_s);
    if (!have) nets_free(&own);
    return rc;
}

/*
 * Rank 0's single-rank step (unsharded, as bench_concurrent's) while the other ranks sleep in sd_tp_wait;
 * *step_s: its time, on rank 0. have: as for bench_concurrent. Collective.
 */
static int bench_alone(const bench_args *a, sd_tp_world *world, bench_nets *have, int have_h, int have_w,
                       double *step_s, sd_error *err) {
    const sd_group *g = sd_tp_group(world);
    bench_result r = {0};
    int rc = 0;
    if (g->rank == 0) {
        bench_nets own, *b = have ? have : &own;
        int h = have_h, w = have_w;
        if (!have) rc = bench_open_whole_unet(a, &own, &h, &w, err);
        if (rc == 0) rc = time_unet(b, NULL, h, w, a->steps, &r, err);
        if (!have) nets_free(&own);
    }
    sd_tp_wait(world); /* the others asleep until rank 0 is done */
    *step_s = r.unet_step_s;
    return sd_group_agree(g, rc, err);
}

/*
 * bench --tp: every rank loads the U-Net, keeps its shards and times the group's CFG steps; then all
 * ranks time the single-rank step at once (bench_concurrent); then rank 0 runs the whole single-process
 * benchmark while the others sleep, and reports all three. With --rounds R > 1 the group, all-at-once and
 * alone steps repeat in turn R times before that (a tensor group then keeps its shards while the whole U-Net
 * is opened for the others), so that each round's ratios come from one stretch of the host's load. Collective.
 */
static int bench_group(const bench_args *a, sd_tp_world *world) {
    const sd_group *g = sd_tp_group(world);
    bench_nets b;
    bench_result gr = {0};
    sd_error err = {0};
    int h, w;
    int rc = bench_open(a, &b, 1, &h, &w, &err);
    if (rc == 0) rc = unet_shard(&b.unet, g->tp, &err);
    /* the group computes in the precision rank 0's single run compares it with: bf16 for --precision bf16
       (where usable), else fp32 (--precision both: the fp32 run) */
    if (rc == 0 && a->prec == 1 && cli_bf16_usable()) nets_set_precision(&b, OPS_PRECISION_BF16);
    peak_rss_reset();
    rc = sd_group_agree(g, rc, &err);
    if (rc == 0) {
        sd_tp_barrier(world);
        ops_profile_enable(a->profile);
        rc = time_unet(&b, g, h, w, a->steps, &gr, &err);
        if (rc == 0 && a->profile && g->rank == 0) { /* rank 0's share of the group's steps, before its single run */
            printf("  group of %d ranks (%s-parallel), rank 0's kernels over %d timed steps:\n", g->size,
                   sd_parallel_name(g->strategy), a->steps);
            ops_profile_report(stdout);
        }
        ops_profile_reset();
        ops_profile_enable(0);
        rc = sd_group_agree(g, rc, &err);
    }
    bench_tp tp = {.tp = g->size, .parallel = sd_parallel_name(g->strategy),
                   .transport = ops_comm_active(g->tp) && g->tp->transport ? g->tp->transport : "none (no layer split)"};
    tp.step_s = sd_tp_max(world, gr.unet_step_s);
    tp.comm_s = sd_tp_max(world, gr.comm_s);
    tp.comm_s_min = sd_tp_min(world, gr.comm_s);
    tp.comm_bytes = sd_tp_max(world, gr.comm_bytes);
    tp.peak_rss_mb = sd_tp_max(world, peak_rss_mb());
    if (rc == 0 && g->rank == 0) { /* now, in case the longer phases after it are cut short */
        printf("sdrender bench --tp %d (%s-parallel): the group's U-Net step %.3f s, communication %.3f s (largest "
               "rank; %.3f s the least), %.1f MB sent per step, all-reduce through %s; next: every rank's single "
               "step at once, then rank 0's alone\n",
               g->size, tp.parallel, tp.step_s, tp.comm_s, tp.comm_s_min, tp.comm_bytes / 1e6, tp.transport);
        fflush(stdout);
    }
    /* cfg: every rank holds the whole U-Net already; tensor: its shards, so the single steps open it again */
    int whole = rc == 0 && !ops_comm_active(b.unet.ops.comm), R = a->rounds > 1 ? a->rounds : 1;
    tp.rounds = R > 1 ? R : 0;
    if (!whole && R == 1) nets_free(&b);
    for (int k = 0; k < R && rc == 0; k++) {
        if (k > 0) { /* the group again */
            bench_result gk = {0};
            sd_tp_barrier(world);
            rc = time_unet(&b, g, h, w, a->steps, &gk, &err);
            rc = sd_group_agree(g, rc, &err);
            tp.round_group[k] = sd_tp_max(world, gk.unet_step_s);
        } else {
            tp.round_group[0] = tp.step_s;
        }
        if (rc == 0) rc = bench_concurrent(a, world, whole ? &b : NULL, h, w, &tp.round_concurrent[k], &err);
        if (k == 0) tp.concurrent_step_s = tp.round_concurrent[0];
        if (rc == 0 && R > 1) rc = bench_alone(a, world, whole ? &b : NULL, h, w, &tp.round_single[k], &err);
    }
    if (whole || R > 1) nets_free(&b);
    if (rc < 0) return g->rank == 0 ? cli_fail(&err) : sd_err_exit_code(rc);
    int code = 0;
    if (g->rank == 0) code = bench_single(a, &tp);
    sd_tp_wait(world); /* asleep: a polling rank would slow rank 0's single run */
    return code;
}

int cmd_bench(int argc, char **argv) {
    long W = 0, H = 0, threads = 0, steps = 3, tp = 1, rounds = 1;
    int xl = 0;
    sd_parallel parallel = SD_PARALLEL_AUTO;
    const char *json_path = NULL, *model = NULL, *op = NULL;
    sd_model_opts mopts = {0};
    int no_vae = 0, no_text = 0, profile = 0, prec = 0; /* prec: 0 fp32, 1 bf16, 2 both */
    sd_error err = {0};
    static const struct option opts[] = {
        {"threads", required_argument, 0, 't'}, {"steps", required_argument, 0, 's'},
        {"json", required_argument, 0, 'j'},    {"no-vae", no_argument, 0, 'V'},
        {"no-text", no_argument, 0, 'T'},       {"help", no_argument, 0, 'h'},
        {"profile", no_argument, 0, 'P'},       {"precision", required_argument, 0, 'p'},
        {"tokenizer", required_argument, 0, 'k'}, {"config", required_argument, 0, 'c'},
        {"tp", required_argument, 0, 'K'},      {"parallel", required_argument, 0, 'L'},
        {"arch", required_argument, 0, 'a'},   {"op", required_argument, 0, 'O'},
        {"rounds", required_argument, 0, 'R'},
        {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "W:H:m:", opts, NULL)) != -1) {
        switch (c) {
        case 'W': if (cli_parse_long("-W", optarg, 8, 16384, &W, &err) < 0) return cli_fail(&err); break;
        case 'H': if (cli_parse_long("-H", optarg, 8, 16384, &H, &err) < 0) return cli_fail(&err); break;
        case 't': if (cli_parse_long("--threads", optarg, 0, 4096, &threads, &err) < 0) return cli_fail(&err); break;
        case 's': if (cli_parse_long("--steps", optarg, 1, 1000, &steps, &err) < 0) return cli_fail(&err); break;
        case 'j': json_path = optarg; break;
        case 'O': op = optarg; break;
        case 'm': model = optarg; break;
        case 'V': no_vae = 1; break;
        case 'T': no_text = 1; break;
        case 'P': profile = 1; break;
        case 'k': mopts.tokenizer = optarg; break;
        case 'c': mopts.config = optarg; break;
        case 'p': if (cli_parse_precision(optarg, 1, &prec, &err) < 0) return cli_fail(&err); break;
        case 'K': if (cli_parse_long("--tp", optarg, 1, 1024, &tp, &err) < 0) return cli_fail(&err); break;
        case 'R':
            if (cli_parse_long("--rounds", optarg, 1, BENCH_MAX_ROUNDS, &rounds, &err) < 0) return cli_fail(&err);
            break;
        case 'L': if (sd_parallel_parse(optarg, &parallel, &err) < 0) return cli_fail(&err); break;
        case 'a':
            if (strcmp(optarg, "sd15") && strcmp(optarg, "sdxl"))
                return cli_usage_error("bench: --arch '%s': choose sd15 or sdxl", optarg);
            xl = !strcmp(optarg, "sdxl");
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) return cli_usage_error("bench: unexpected argument '%s'", argv[optind]);
    if (rounds > 1 && (tp < 2 || op))
        return cli_usage_error("bench: --rounds repeats a group's phases: it needs --tp K (under mpirun -np K)");
    int allreduce = op && !strncmp(op, "allreduce", 9);
    if (allreduce && (tp < 2 || model || xl || W || H || no_vae || no_text || profile || prec))
        return cli_usage_error("bench: --op allreduce:N times a group's all-reduce: it needs --tp K (under mpirun -np K) "
                               "and takes only --threads, --steps and --json");
    if (op && !allreduce && (model || xl || tp > 1 || W || H || no_vae || no_text || profile))
        return cli_usage_error("bench: --op times one kernel: it takes only --threads, --steps, --precision and --json");
    if (allreduce) {
        ops_set_threads((int)threads);
        sd_tp_world *world = NULL;
        if (sd_tp_start(&argc, &argv, (int)tp, SD_PARALLEL_TENSOR, 0, &world, &err) < 0) return cli_fail(&err);
        int code = bench_op_allreduce(op, sd_tp_group(world)->tp, (int)steps, json_path);
        sd_tp_end(world);
        return code;
    }
    if (op) {
        ops_set_threads((int)threads);
        return bench_op_run(op, (int)steps, prec, json_path);
    }
    if (!model && (mopts.tokenizer || mopts.config))
        return cli_usage_error("bench: --tokenizer and --config need -m MODEL");
    if (model && xl) return cli_usage_error("bench: --arch is for random weights; -m MODEL brings its own");
    if (!W) W = xl ? 1024 : 512;
    if (!H) H = xl ? 1024 : 512;
    ops_set_threads((int)threads);
    bench_args a = {.model = model, .mopts = mopts, .xl = xl, .W = (int)W, .H = (int)H, .steps = (int)steps, .no_vae = no_vae,
                    .no_text = no_text, .profile = profile, .prec = prec, .json_path = json_path, .rounds = (int)rounds};
    if (tp <= 1) return bench_single(&a, NULL);
    sd_tp_world *world = NULL;
    if (sd_tp_start(&argc, &argv, (int)tp, parallel, 1, &world, &err) < 0) return cli_fail(&err);
    int code = bench_group(&a, world);
    sd_tp_end(world);
    return code;
}
