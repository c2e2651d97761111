/*
 * sdrender metrics: FID, precision/recall/density/coverage and CLIP score of
 * generated images, under mpirun or alone.
 *
 * JSON (--json): always the same nine keys, in this order:
 *   {"fid", "precision", "recall", "density", "coverage", "clip_score": number or null,
 *    "k": integer, "n_real", "n_fake": integer or null}
 * A metric the inputs do not allow is null (never absent), so readers need no
 * key checks; the human-readable output says why. n_real / n_fake are the
 * images (or feature rows) of each side, null without --real or for an .npz
 * that records neither n nor features (pytorch-fid's files).
 *
 * With --db the results also go to the job database's metrics table, one row
 * per computed metric, with run_id NULL: an evaluation is not a render run
 * (jobdb_run_begin would make it the database's "last run" in `sdrender
 * status` and a run for the next recovery to close), and the images it scores
 * may come from several runs; their ids are in details.render_runs, beside
 * n_real, n_fake, k, the input paths and the number of ranks.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "eval.h"
#include "fsutil.h"
#include "jobsel.h"
#include "metrics_mpi.h"

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: [mpirun -np N] sdrender metrics [--real DIR|REF.npz] (--fake DIR|FAKE.npz | --db JOBS.db)\n"
            "                        [--inception W] [--clip W] [options]\n\n"
            "Computes every metric the inputs allow:\n"
            "  FID                         --real and --fake/--db (images need --inception; an .npz gives mu/sigma)\n"
            "  precision, recall,          the same, with features on both sides (folders, or .npz files from\n"
            "  density, coverage           'sdrender stats'; pytorch-fid/clean-fid .npz files have none)\n"
            "  CLIP score                  --clip and --db: each done image against its job's prompt\n"
            "With --db the fakes are the database's done images and the results are stored in its metrics\n"
            "table. Under mpirun the ranks share the images; the numbers are the same for any number of ranks.\n\n"
            "  --real DIR|REF.npz   reference images, or statistics from 'sdrender stats' / pytorch-fid\n"
            "  --fake DIR|FAKE.npz  generated images, or their statistics\n"
            "  --db JOBS.db         job database: its done images and prompts (instead of --fake)\n"
            "  --where KEY=VALUE    with --db: score only the done jobs with this setting (repeatable, all\n"
            "                       must hold; cfg_scale=4 matches 4.0). Stored with the results, so\n"
            "                       'sdrender report' plots them against it. Keys: cfg_scale, steps,\n"
            "                       sampler, karras, width, height, seed, clip_skip, strength,\n"
            "                       negative_prompt, task, rng, noise_level, prompt_syntax, lora_set, prompt\n"
            "  --inception W        pytorch-fid weights (pt_inception-2015-12-05-*.pth or safetensors)\n"
            "  --clip W             CLIP weights with Hugging Face CLIPModel names (.safetensors or .pth;\n"
            "                       config.json beside them gives the head counts)\n"
            "  --clip-tokenizer P   tokenizer folder or bpe_simple_vocab_16e6.txt.gz (default: vocab.json +\n"
            "                       merges.txt, tokenizer/ or bpe_simple_vocab_16e6.txt.gz beside --clip)\n"
            "  --k N                nearest neighbours for precision/recall/density/coverage (default 3)\n"
            "  --json OUT           also write the results as JSON to OUT ('-': JSON on stdout instead of text)\n"
            "  --batch N            images per forward pass (default 8)\n"
            "  --threads T          threads per rank (default: the node's cores / its ranks)\n"
            "  -q, --quiet          no progress lines\n"
            "  -h, --help           this text\n\n"
            "JSON keys: fid, precision, recall, density, coverage, clip_score (null when the inputs do not\n"
            "allow them), k, n_real and n_fake (null when unknown).\n");
}

/*
 * The shortest of %.15g .. %.17g that reads back as v (0.418 prints as 0.418,
 * not 0.41799999999999998), with ".0" added to a whole real (1.0, not 1);
 * "null" when missing or not finite.
 */
static void fmt_number(char *buf, size_t n, int has, int real, double v) {
    if (!has || !isfinite(v)) {
        snprintf(buf, n, "null");
        return;
    }
    for (int p = 15; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (real && !strpbrk(buf, ".e")) strncat(buf, ".0", n - strlen(buf) - 1);
}

/* The results as the JSON object described at the top of this file (caller frees). */
static char *results_json(const sd_metrics_result *r) {
    const struct {
        const char *key;
        int has;
        double v;
    } vals[] = {{"fid", r->has_fid, r->fid},
                {"precision", r->has_prdc, r->prdc.precision},
                {"recall", r->has_prdc, r->prdc.recall},
                {"density", r->has_prdc, r->prdc.density},
                {"coverage", r->has_prdc, r->prdc.coverage},
                {"clip_score", r->has_clip, r->clip_score},
                {"k", 1, r->k},
                {"n_real", r->n_real >= 0, (double)r->n_real},
                {"n_fake", r->n_fake >= 0, (double)r->n_fake}};
    size_t cap = 1024, len = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    len += (size_t)snprintf(s + len, cap - len, "{\n");
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        char num[64];
        fmt_number(num, sizeof num, vals[i].has, i < 6, vals[i].v);
        len += (size_t)snprintf(s + len, cap - len, "  \"%s\": %s%s\n", vals[i].key, num,
                                i + 1 < sizeof vals / sizeof *vals ? "," : "");
    }
    snprintf(s + len, cap - len, "}\n");
    return s;
}

static void print_line(const char *name, int has, double v, const char *why, const char *extra) {
    if (has) printf("%-11s %.6f%s\n", name, v, extra);
    else printf("%-11s n/a: %s\n", name, why);
}

static void print_results(const sd_metrics_result *r) {
    char kk[32];
    snprintf(kk, sizeof kk, "   (k = %d)", r->k);
    print_line("FID", r->has_fid, r->fid, r->why_no_fid, "");
    print_line("precision", r->has_prdc, r->prdc.precision, r->why_no_prdc, kk);
    if (r->has_prdc) {
        print_line("recall", 1, r->prdc.recall, "", "");
        print_line("density", 1, r->prdc.density, "", "");
        print_line("coverage", 1, r->prdc.coverage, "", "");
    }
    print_line("CLIP score", r->has_clip, r->clip_score, r->why_no_clip, "");
    char nr[32] = "?", nf[32] = "?";
    if (r->n_real >= 0) snprintf(nr, sizeof nr, "%lld", (long long)r->n_real);
    if (r->n_fake >= 0) snprintf(nf, sizeof nf, "%lld", (long long)r->n_fake);
    printf("%-11s real %s, fake %s\n", "images", nr, nf);
}

/* Writes text to path ("-": stdout), atomically. */
static int write_json(const char *path, const char *text, sd_error *err) {
    if (!strcmp(path, "-")) {
        fputs(text, stdout);
        return 0;
    }
    sd_fs_atomic_file af;
    int rc = sd_fs_atomic_open(&af, path, err);
    if (rc < 0) return rc;
    if ((rc = sd_fs_atomic_write(&af, text, strlen(text), err)) < 0) {
        sd_fs_atomic_abort(&af);
        return rc;
    }
    return sd_fs_atomic_commit(&af, err);
}

enum { O_REAL = CLI_OPT_OWN, O_FAKE, O_DB, O_CLIP, O_CLIPTOK, O_K, O_JSON, O_WHERE };

/* What metrics' own options set. */
typedef struct metrics_args {
    sd_metrics_options o;
    long k;
    const char *json_out;
    jobsel where;
} metrics_args;

/* One of metrics' own options (cli.h reads the shared ones): ctx is a metrics_args. */
static int metrics_take_option(void *ctx, int opt, const char *arg, sd_error *err) {
    metrics_args *a = ctx;
    switch (opt) {
    case O_REAL: a->o.real = arg; break;
    case O_FAKE: a->o.fake = arg; break;
    case O_DB: a->o.db = arg; break;
    case O_CLIP: a->o.c.clip = arg; break;
    case O_CLIPTOK: a->o.c.clip_tokenizer = arg; break;
    case O_JSON: a->json_out = arg; break;
    case O_WHERE: return jobsel_add(&a->where, arg, err);
    case O_K: return cli_parse_long("--k", arg, 1, 1000, &a->k, err);
    }
    return 0;
}

/* metrics after its options are read: checks them, computes, prints and stores. */
static int metrics_main(int argc, char **argv, metrics_args *a, const cli_shared_opts *shared) {
    int code;
    sd_metrics_options o = a->o;
    const char *json_out = a->json_out;
    sd_error err = {0};
    if (o.fake && o.db) return cli_usage_error("metrics: give --fake or --db, not both");
    if (!o.fake && !o.db)
        return cli_usage_error("metrics: --fake DIR|FAKE.npz or --db JOBS.db is required (see 'sdrender metrics --help')");
    if (a->where.n > 0 && !o.db) return cli_usage_error("metrics: --where selects jobs of --db JOBS.db; give --db");
    if (o.fake && !o.real) return cli_usage_error("metrics: --fake needs --real (FID and precision/recall compare two sets)");
    if (o.c.clip && !o.db)
        return cli_usage_error("metrics: --clip needs --db (CLIP score pairs each image with its job's prompt)");
    if (o.c.clip_tokenizer && !o.c.clip) return cli_usage_error("metrics: --clip-tokenizer needs --clip");
    if (!o.real && !o.c.clip)
        return cli_usage_error("metrics: nothing to compute: give --real (FID, precision/recall) and/or --clip (CLIP score)");
    o.k = (int)a->k;
    if (a->where.n > 0) o.where = &a->where;
    eval_progress prog = {.command = "metrics"};
    eval_common_set(&o.c, shared, &prog);
    sd_metrics_result r;
    int rc = sd_metrics_mpi(&argc, &argv, &o, &r);
    eval_progress_finish(&prog);
    code = eval_rank_exit(r.root, rc, &r.err);
    if (code >= 0) return code;
    if (r.clip_truncated > 0)
        fprintf(stderr, "sdrender metrics: note: %lld prompt(s) longer than the CLIP context were cut to fit it\n",
                (long long)r.clip_truncated);
    if (r.db_rows > 0) fprintf(stderr, "sdrender metrics: %lld result(s) stored in %s\n", (long long)r.db_rows, o.db);
    if (!json_out || strcmp(json_out, "-")) print_results(&r);
    if (json_out) {
        char *text = results_json(&r);
        rc = text ? write_json(json_out, text, &err) : sd_err(&err, SD_ENOMEM, "out of memory");
        free(text);
        if (rc < 0) return cli_fail(&err);
    }
    return 0;
}

int cmd_metrics(int argc, char **argv) {
    static const struct option longopts[] = {{"real", required_argument, 0, O_REAL},
                                             {"fake", required_argument, 0, O_FAKE},
                                             {"db", required_argument, 0, O_DB},
                                             {"clip", required_argument, 0, O_CLIP},
                                             {"clip-tokenizer", required_argument, 0, O_CLIPTOK},
                                             {"k", required_argument, 0, O_K},
                                             {"json", required_argument, 0, O_JSON},
                                             {"where", required_argument, 0, O_WHERE},
                                             {0, 0, 0, 0}};
    static const cli_command_opts opts = {"metrics", "", longopts, 1, metrics_take_option, usage};
    metrics_args a = {.k = 3};
    cli_shared_opts shared;
    int code = cli_parse_options(argc, argv, &opts, &a, &shared);
    if (code < 0) code = metrics_main(argc, argv, &a, &shared);
    jobsel_free(&a.where);
    return code;
}