/* sdrender run: render every pending job of a job database, under mpirun or alone. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "fsutil.h"
#include "ops.h"
#include "pngio.h"
#include "lora_set.h"
#include "render.h"
#include "runner.h"
#include "sha256.h"
#include "testhook.h"

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: [mpirun -np N] sdrender run --db JOBS.db -m MODEL --out DIR [options]\n"
            "       [mpirun -np N] sdrender run --db JOBS.db --out DIR --dry-run\n\n"
            "Renders every pending job of JOBS.db (see 'sdrender enqueue') into DIR/<job id, 8 digits>.png.\n"
            "Rank 0 is the master: it alone opens the database and hands jobs to the other ranks as they\n"
            "become idle; with one rank it renders itself. A killed run loses nothing: run it again and it\n"
            "resumes, first putting the dead run's unfinished jobs back in the queue. A fault of the machine\n"
            "(output or database disk full, read-only or failing, output folder gone) is not the job's:\n"
            "the run stops handing out jobs, leaves them pending without counting an attempt, names the\n"
            "path and the system's error, and exits 1; run it again once that is fixed.\n\n"
            "  --db FILE            job database (made by 'sdrender enqueue')\n"
            "  -m, --model PATH     diffusers folder or single .safetensors/.ckpt checkpoint\n"
            "  --out DIR            output folder (created if missing)\n"
            "  --grace S            after SIGTERM/SIGINT/SIGUSR1, let jobs in flight finish for S seconds\n"
            "                       (default 60); unfinished ones go back to pending\n"
            "  --max-attempts N     a job failing N times is marked failed (default 3)\n"
            "  --wait S             if another run on JOBS.db looks alive (its process exists on this\n"
            "                       host, or another host's heartbeat is under 2 min old), wait up to S\n"
            "                       seconds for it to end or go stale, then refuse (default 150)\n"
            "  --job-timeout S      a worker that reports no job for S seconds (hung, stopped) is lost:\n"
            "                       its jobs count an attempt, no other worker renders them in this run,\n"
            "                       the others finish the queue, then the run ends every rank (exit 1)\n"
            "                       and the next run renders them (default 0: wait for ever)\n"
            "  --takeover           start at once even so: only when you know it is dead, or its\n"
            "                       running jobs get rendered twice\n"
            "  --shard I/N          only the jobs whose id %% N == I (0 <= I < N): N runs, e.g. the tasks of\n"
            "                       a Slurm job array, share JOBS.db, one master per shard\n"
            "  --dry-run            load no model and render nothing: each job gets a placeholder PNG\n"
            "                       (written without fsync) and completes as usual, to measure how many\n"
            "                       completions per second the master and the database sustain\n"
            "  --lora FILE[:M]      merge this LoRA (multiplier M, default 1) for every job, after the\n"
            "                       job's own; repeatable. A worker keeps a merged set while consecutive\n"
            "                       jobs use it (claims prefer jobs of the set it has) and goes back to\n"
            "                       the base weights exactly when the set changes\n"
            "  --lora-dir DIR       where <lora:NAME:M> tags find NAME.safetensors for jobs enqueued\n"
            "                       without --lora-dir\n"
            "  --tp K               worker groups of K consecutive ranks render each image together\n"
            "                       (ranks 1..K, K+1..2K, ...; the worker count, -np minus 1, must be a\n"
            "                       multiple of K); see README, Tensor parallelism\n"
            "  --parallel S         how a group shares the U-Net: auto (default: cfg for even K, else\n"
            "                       tensor), cfg (CFG halves on the two halves of the group; jobs without\n"
            "                       guidance then run on both halves alike) or tensor (every layer split)\n"
            "  --precision P        fp32 (default) or bf16: the networks' linear, convolution and attention\n"
            "                       products on bf16 inputs with fp32 sums (CPUs with AVX512_BF16;\n"
            "                       elsewhere a worker says so and renders fp32). Stored in the run's\n"
            "                       settings and each PNG's parameters\n"
            "  --threads T          threads per rendering rank (default: the node's cores / its ranks)\n"
            "  --tokenizer P        tokenizer folder or bpe_simple_vocab_16e6.txt.gz (single files)\n"
            "  --config YAML|DIR    LDM config of a single file, or a diffusers folder giving its architecture\n"
            "  -q, --quiet          no per-job progress lines\n"
            "  -h, --help           this text\n\n"
            "Under mpirun, signal the run with SIGUSR1 (mpirun forwards it), or start mpirun with\n"
            "'--mca odls_base_sigkill_timeout S' so a SIGTERM leaves the ranks S seconds before SIGKILL.\n");
}

typedef struct {
    const char *model_path;
    sd_model_opts mopts;
    long threads;
    double grace;
    int quiet;
    int dry_run;
    int bf16;             /* --precision bf16 (cleared by a worker whose CPU cannot) */
    char loras[8192];     /* --lora entries, one per line */
    const char *lora_dir; /* --lora-dir */
} run_ctx;

typedef struct {
    run_ctx *ctx;
    const sd_group *group; /* NULL: this rank renders alone */
    sd_model model;
    sd_pipeline pipe;
    sd_render_id id;
    sd_lora_ctx lora;  /* the LoRA set merged into model now */
    char *placeholder; /* --dry-run: the PNG every job gets, and its SHA-256 */
    size_t placeholder_len;
    char placeholder_sha[65];
} worker_state;

/* --dry-run: one 8x8 gray PNG made with the normal writer, kept in memory for every job. */
static int dry_run_setup(worker_state *w, sd_error *err) {
    char tmp[] = "/tmp/sdrender-dry-run-XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0) return sd_err_sys(err, errno, "%s: cannot create", tmp);
    close(fd);
    uint8_t gray[8 * 8 * 3];
    memset(gray, 128, sizeof gray);
    sd_png_text t = {.key = "parameters", .value = "sdrender run --dry-run placeholder"};
    int rc = sd_png_write_rgb(tmp, gray, 8, 8, &t, 1, err);
    if (rc == 0) rc = sd_fs_read_file(tmp, &w->placeholder, &w->placeholder_len, err);
    unlink(tmp);
    if (rc == 0) sd_sha256_buffer(w->placeholder, w->placeholder_len, w->placeholder_sha);
    return rc;
}

/* --dry-run: writes the placeholder to out_path (temporary name, rename; no fsync: nothing of value). */
static int dry_run_write(const worker_state *w, const char *out_path, char sha[65], sd_error *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out_path, (long)getpid());
    FILE *fp = fopen(tmp, "wb");
    if (!fp) return sd_err_sys(err, errno, "%s: cannot create", tmp);
    size_t n = fwrite(w->placeholder, 1, w->placeholder_len, fp);
    int e = n != w->placeholder_len ? errno : 0;
    if (fclose(fp) != 0 && !e) e = errno;
    if (!e && rename(tmp, out_path) != 0) e = errno;
    if (e) {
        unlink(tmp);
        return sd_err_sys(err, e, "%s: cannot write", out_path);
    }
    memcpy(sha, w->placeholder_sha, 65);
    return 0;
}

static int run_identify(void *vctx, char sha[65], sd_error *err) {
    run_ctx *c = vctx;
    if (c->dry_run) return 0; /* no model */
    sd_model m;
    int rc = sd_model_open(&m, c->model_path, &c->mopts, err);
    if (rc < 0) return rc;
    sd_render_id id;
    rc = sd_render_identify(&m, &id, err);
    if (rc == 0) memcpy(sha, id.hash, 65);
    sd_model_close(&m);
    return rc;
}

static int run_setup(void *vctx, int local_workers, const sd_group *group, void **state, sd_error *err) {
    run_ctx *c = vctx;
    worker_state *w = calloc(1, sizeof *w);
    if (!w) return sd_err(err, SD_ENOMEM, "out of memory");
    w->ctx = c;
    w->group = group;
    if (c->dry_run) {
        int rc = dry_run_setup(w, err);
        if (rc < 0) free(w);
        else *state = w;
        return rc;
    }
    if (c->bf16 && !cli_bf16_usable()) c->bf16 = 0;
    ops_set_threads(c->threads > 0 ? (int)c->threads : cli_threads_for(local_workers));
    int rc = sd_model_open(&w->model, c->model_path, &c->mopts, err);
    if (rc == 0) {
        rc = sd_pipeline_load_group(&w->pipe, &w->model, group, err);
        if (rc < 0) sd_model_close(&w->model);
    }
    if (rc == 0) sd_lora_ctx_init(&w->lora, &w->model);
    if (rc < 0) {
        free(w);
        return rc;
    }
    *state = w;
    return 0;
}

static int stop_requested(void *vctx, int done, int total) {
    (void)done;
    (void)total;
    double age = sd_run_stop_age();
    return age >= 0 && age > *(const double *)vctx;
}

static int run_render(void *vstate, const sd_job *job, const char *model_sha, const char *out_path, char sha[65],
                      double *seconds, int *retry, sd_error *err) {
    worker_state *w = vstate;
    if (w->ctx->dry_run) {
        *seconds = 0;
        if (w->group && w->group->rank != 0) return 0; /* the leader writes */
        return dry_run_write(w, out_path, sha, err);
    }
    sd_settings s;
    sd_job_settings(job, &s);
    s.bf16 = w->ctx->bf16;
    if (!*s.prompt && (w->model.parts & SD_PART_TEXT_ENCODER)) {
        *retry = 0;
        return sd_err(err, SD_EINPUT, "job %lld has no prompt, but %s is text-conditioned (only an unconditional "
                      "model, e.g. a pixel-space DDPM, renders prompt-less jobs)", (long long)job->id, w->model.path);
    }
    /* the job's LoRAs, the run's, then the prompt's tags; merged unless the model carries them already */
    char specs[16384], *hashes = NULL;
    snprintf(specs, sizeof specs, "%s%s%s", job->loras ? job->loras : "", job->loras && *w->ctx->loras ? "\n" : "",
             w->ctx->loras);
    sd_lora_set set;
    int merges = w->lora.merges;
    int rc = sd_lora_set_build(&set, specs, job->prompt, job->prompt_syntax,
                               job->lora_dir ? job->lora_dir : w->ctx->lora_dir, err);
    if (rc == 0 && set.n && w->pipe.unet.shards.n)
        rc = sd_err(err, SD_EUNSUPPORTED, "LoRAs cannot be merged into a tensor-parallel (sharded) U-Net yet; run LoRA "
                    "jobs without --tp, or with --tp 2 --parallel cfg");
    if (rc == 0) rc = sd_lora_ctx_apply(&w->lora, &set, &hashes, err);
    if (rc == 0 && w->lora.merges != merges && !w->ctx->quiet && (!w->group || w->group->rank == 0)) {
        char *label = sd_lora_set_label(&set);
        fprintf(stderr, "sdrender run: job %lld: merged LoRA set '%s' (pid %ld)\n", (long long)job->id,
                label ? label : "?", (long)getpid());
        free(label);
    }
    sd_lora_set_free(&set);
    if (rc < 0) {
        *seconds = 0;
        *retry = rc != SD_EINPUT && rc != SD_ENOTFOUND && rc != SD_EUNSUPPORTED;
        return rc;
    }
    s.lora_hashes = hashes;
    sd_render_identify_name(&w->model, &w->id);
    snprintf(w->id.hash, sizeof w->id.hash, "%s", model_sha ? model_sha : "");
    double t0 = cli_now();
    /* a crash after the PNG was written but before the master recorded it: keep the file (the
     * leader looks; its group follows) */
    int exists = (!w->group || w->group->rank == 0) && sd_render_exists(&s, &w->id, out_path, sha);
    rc = sd_group_bcast_int(w->group, &exists, err);
    if (rc < 0) {
        free(hashes);
        return rc;
    }
    if (exists) {
        *seconds = 0;
        free(hashes);
        return 0;
    }
    if (!w->group || w->group->rank == 0) sd_test_log_render(job->id);
    rc = sd_render_png(&w->pipe, &s, &w->id, out_path, stop_requested, &w->ctx->grace, sha, err);
    *seconds = cli_now() - t0;
    /* bad settings or pictures will not get better on another try */
    *retry = !(rc == SD_EINPUT || rc == SD_ENOTFOUND || rc == SD_EUNSUPPORTED);
    free(hashes);
    return rc;
}

static void run_teardown(void *vstate) {
    worker_state *w = vstate;
    if (!w) return;
    if (!w->ctx->dry_run) {
        sd_lora_ctx_free(&w->lora);
        sd_pipeline_free(&w->pipe);
        sd_model_close(&w->model);
    }
    free(w->placeholder);
    free(w);
}

enum { O_DB = CLI_OPT_OWN, O_OUT, O_GRACE, O_MAXATT, O_TOK, O_CONFIG, O_TAKEOVER, O_WAIT, O_SHARD, O_DRY, O_TP,
       O_PARALLEL, O_LORA, O_LORA_DIR, O_JOB_TIMEOUT, O_PRECISION };

/* --shard I/N: 1 <= N <= 1e6, 0 <= I < N. */
static int parse_shard(const char *arg, int *index, int *count, sd_error *err) {
    long i = -1, n = 0;
    int used = 0;
    if (sscanf(arg, "%ld/%ld%n", &i, &n, &used) != 2 || arg[used] || n < 1 || n > 1000000 || i < 0 || i >= n)
        return sd_err(err, SD_EINPUT, "--shard '%s': expected I/N with 0 <= I < N (e.g. 3/16)", arg);
    *index = (int)i;
    *count = (int)n;
    return 0;
}

/* What run's own options set: the workers' context and the runner's options. */
typedef struct run_args {
    run_ctx ctx;
    sd_run_options o;
    long max_attempts;
    long tp;
} run_args;

/* One of run's own options (cli.h reads the shared ones): ctx is a run_args. */
static int run_take_option(void *ctx, int opt, const char *arg, sd_error *err) {
    run_args *a = ctx;
    switch (opt) {
    case O_DB: a->o.db_path = arg; break;
    case 'm': a->ctx.model_path = arg; break;
    case O_OUT: a->o.out_dir = arg; break;
    case O_TOK: a->ctx.mopts.tokenizer = arg; break;
    case O_CONFIG: a->ctx.mopts.config = arg; break;
    case O_TAKEOVER: a->o.takeover = 1; break;
    case O_DRY: a->ctx.dry_run = 1; break;
    case O_LORA_DIR: a->ctx.lora_dir = arg; break;
    case O_LORA: {
        sd_lora_use u;
        int rc = sd_lora_use_parse(arg, &u, err);
        if (rc < 0) return rc;
        sd_lora_use_free(&u);
        size_t have = strlen(a->ctx.loras);
        if (have + strlen(arg) + 2 > sizeof a->ctx.loras) return sd_err(err, SD_EINPUT, "--lora: too many LoRAs");
        snprintf(a->ctx.loras + have, sizeof a->ctx.loras - have, "%s%s", have ? "\n" : "", arg);
        break;
    }
    case O_GRACE: return cli_parse_double("--grace", arg, 0, 1e6, &a->ctx.grace, err);
    case O_WAIT: return cli_parse_double("--wait", arg, 0, 1e6, &a->o.wait_s, err);
    case O_JOB_TIMEOUT: return cli_parse_double("--job-timeout", arg, 0, 1e7, &a->o.job_timeout, err);
    case O_SHARD: return parse_shard(arg, &a->o.shard_index, &a->o.shard_count, err);
    case O_MAXATT: return cli_parse_long("--max-attempts", arg, 1, 1000, &a->max_attempts, err);
    case O_TP: return cli_parse_long("--tp", arg, 1, 1024, &a->tp, err);
    case O_PARALLEL: return sd_parallel_parse(arg, &a->o.parallel, err);
    case O_PRECISION: return cli_parse_precision(arg, 0, &a->ctx.bf16, err);
    }
    return 0;
}

int cmd_run(int argc, char **argv) {
    static const struct option longopts[] = {{"db", required_argument, 0, O_DB},
                                             {"model", required_argument, 0, 'm'},
                                             {"out", required_argument, 0, O_OUT},
                                             {"grace", required_argument, 0, O_GRACE},
                                             {"max-attempts", required_argument, 0, O_MAXATT},
                                             {"takeover", no_argument, 0, O_TAKEOVER},
                                             {"wait", required_argument, 0, O_WAIT},
                                             {"job-timeout", required_argument, 0, O_JOB_TIMEOUT},
                                             {"shard", required_argument, 0, O_SHARD},
                                             {"dry-run", no_argument, 0, O_DRY},
                                             {"lora", required_argument, 0, O_LORA},
                                             {"lora-dir", required_argument, 0, O_LORA_DIR},
                                             {"tokenizer", required_argument, 0, O_TOK},
                                             {"config", required_argument, 0, O_CONFIG},
                                             {"tp", required_argument, 0, O_TP},
                                             {"parallel", required_argument, 0, O_PARALLEL},
                                             {"precision", required_argument, 0, O_PRECISION},
                                             {0, 0, 0, 0}};
    static const cli_command_opts opts = {"run", "m:", longopts, 0, run_take_option, usage};
    run_args a = {.ctx = {.grace = 60}, .o = {.group_size = 1, .wait_s = SD_RUN_WAIT_S}, .max_attempts = 3, .tp = 1};
    cli_shared_opts shared;
    int code = cli_parse_options(argc, argv, &opts, &a, &shared);
    if (code >= 0) return code;
    run_ctx ctx = a.ctx;
    sd_run_options o = a.o;
    long max_attempts = a.max_attempts;
    ctx.threads = shared.threads;
    ctx.quiet = shared.quiet;
    if (!o.db_path || (!ctx.model_path && !ctx.dry_run) || !o.out_dir)
        return cli_usage_error("run: --db, -m and --out are required (see 'sdrender run --help')");
    o.model_path = ctx.dry_run ? "(dry run)" : ctx.model_path;
    o.grace = ctx.grace;
    o.max_attempts = (int)max_attempts;
    o.quiet = ctx.quiet;
    o.group_size = (int)a.tp;
    json_t *settings = json_pack("{s:s,s:f,s:I,s:I}", "out", o.out_dir, "grace", ctx.grace, "threads",
                                 (json_int_t)ctx.threads, "max_attempts", (json_int_t)max_attempts);
    if (settings && o.job_timeout > 0) json_object_set_new(settings, "job_timeout", json_real(o.job_timeout));
    if (settings && o.shard_count > 1)
        json_object_set_new(settings, "shard", json_sprintf("%d/%d", o.shard_index, o.shard_count));
    if (settings && ctx.dry_run) json_object_set_new(settings, "dry_run", json_true());
    if (settings) json_object_set_new(settings, "precision", json_string(ctx.bf16 ? "bf16" : "fp32"));
    if (settings && a.tp > 1) {
        json_object_set_new(settings, "tp", json_integer(a.tp));
        json_object_set_new(settings, "parallel", json_string(sd_parallel_name(o.parallel)));
    }
    char *sj = settings ? json_dumps(settings, JSON_COMPACT) : NULL;
    json_decref(settings);
    o.settings_json = sj;
    sd_run_worker_ops ops = {.identify = run_identify,
                             .setup = run_setup,
                             .render = run_render,
                             .teardown = run_teardown,
                             .ctx = &ctx};
    int rc = sd_run_batch(&argc, &argv, &o, &ops);
    free(sj);
    return rc;
}
