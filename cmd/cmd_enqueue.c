/* sdrender enqueue: add prompt files to the job database. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "enqueue.h"
#include "fsutil.h"
#include "jobdb.h"
#include "lora_set.h"

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: sdrender enqueue --db FILE [OPTIONS] PROMPTS...\n"
            "\n"
            "Adds one job per prompt (times --repeat) to the job database, creating it if needed.\n"
            "All files go in as one transaction: if any row is bad, nothing is enqueued (see --skip-bad).\n"
            "\n"
            "PROMPTS:\n"
            "  *.txt    one prompt per line; blank lines are skipped\n"
            "  *.jsonl  one JSON object per line: prompt (or caption), and optionally negative_prompt,\n"
            "           seed, steps, cfg_scale, sampler, karras, width, height, clip_skip, init_image,\n"
            "           mask, strength, task, rng, noise_level, prompt_syntax, loras ([\"FILE:M\", ...] or\n"
            "           [{\"file\", \"multiplier\"}]), lora_dir, and SDXL's original_width, original_height,\n"
            "           crop_top, crop_left, target_width, target_height (0: the default); unknown keys are errors\n"
            "           task: txt2img, img2img, inpaint, unconditional (no prompt; pixel-space DDPM),\n"
            "           upscale (init_image is the low-res picture, the output 4x it; noise_level 0..350,\n"
            "           default 20); rng: cpu or cuda\n"
            "  *.csv    RFC 4180 with a header row: a prompt (or caption) column, optionally columns\n"
            "           with the names above; empty cells take the defaults; other columns are ignored\n"
            "  Image paths are relative to the prompt file's folder.\n"
            "\n"
            "options (defaults for what a row does not give):\n"
            "  --db FILE        the job database (created if missing)\n"
            "  --steps N        sampling steps, 1..1000 (20)\n"
            "  --cfg-scale X    classifier-free guidance scale, 0..100 (7.5)\n"
            "  --sampler NAME   %s (pndm)\n"
            "  --karras         Karras sigmas (for the sigma-based samplers)\n"
            "  -W, --width N    image width, a multiple of 8 (512)\n"
            "  -H, --height N   image height, a multiple of 8 (512)\n"
            "  --negative TEXT  negative prompt (none)\n"
            "  --clip-skip N    1 = last text-encoder layer, 2 = penultimate (AUTOMATIC1111 numbering) (1)\n"
            "  --strength X     img2img strength in (0, 1] for rows with an init_image (0.8; 1.0 with a mask)\n"
            "  --original-size WxH, --crop-top-left T,L, --target-size WxH\n"
            "                   SDXL size conditioning (the image size; 0,0; the image size)\n"
            "  --rng cpu|cuda   noise source: torch's CPU generator (cpu) or CUDA's Philox (cuda, A1111 NV)\n"
            "  --prompt-syntax S  plain (diffusers, 77 tokens) or a1111 (weights, BREAK, long prompts,\n"
            "                   <lora:NAME:M> tags) (plain)\n"
            "  --lora FILE[:M]  a LoRA for every row without a loras field (multiplier M, default 1);\n"
            "                   repeatable\n"
            "  --lora-dir DIR   where <lora:NAME:M> tags find NAME.safetensors\n"
            "  --seed-base N    a row without a seed gets seed = N + job_id - 1 (0), so every job has\n"
            "                   its seed from the start and renders the same image on any rank, any rerun\n"
            "  --repeat K       K jobs per prompt with consecutive ids (1); a row's own seed S gives\n"
            "                   S, S+1, ..., S+K-1\n"
            "  --skip-bad       report bad rows and enqueue the others\n"
            "  -h, --help       this text\n"
            "\n"
            "Bad rows are reported as FILE:LINE: what is wrong. Exit status: 0 ok, 2 bad input, 1 failure.\n"
            "\n"
            "environment:\n"
            "  SDRENDER_DB_JOURNAL=auto|wal|delete  journal mode of a database this command creates or\n"
            "                   opens: WAL on local disks; 'delete' (auto's choice on NFS, Lustre, GPFS, ...)\n"
            "                   where network filesystems break WAL (default auto)\n",
            sampler_kind_list());
}

typedef struct reporter {
    int printed, dropped;
} reporter;

enum { MAX_REPORTED = 50 };

static void report(void *ctx, const char *msg) {
    reporter *r = ctx;
    if (r->printed < MAX_REPORTED) {
        fprintf(stderr, "%s\n", msg);
        r->printed++;
    } else {
        r->dropped++;
    }
}

int cmd_enqueue(int argc, char **argv) {
    enqueue_options o;
    enqueue_options_init(&o);
    reporter rep = {0};
    o.report = report;
    o.report_ctx = &rep;
    const char *db_path = NULL;
    long repeat = 1, seed_base = 0;
    int karras = 0, nfiles = 0;
    char **files = calloc((size_t)argc, sizeof *files);
    if (!files) return cli_usage_error("out of memory");
    sd_error e = {0};
    int rc = 0;
    char *loras = NULL, *lora_dir = NULL;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i], *v;
        int missing = 0;
        long n, n2;
        double x;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(files);
            return 0;
        } else if (!strcmp(a, "--karras")) {
            karras = 1;
        } else if (!strcmp(a, "--skip-bad")) {
            o.skip_bad = 1;
        } else if ((v = cli_option_value(argc, argv, &i, "--db", NULL, &missing))) {
            db_path = v;
        } else if ((v = cli_option_value(argc, argv, &i, "--steps", NULL, &missing))) {
            rc = cli_parse_long("--steps", v, 1, SD_MAX_STEPS, &n, &e);
            o.defaults.steps = (int)n;
        } else if ((v = cli_option_value(argc, argv, &i, "--cfg-scale", NULL, &missing))) {
            rc = cli_parse_double("--cfg-scale", v, 0, SD_MAX_CFG, &x, &e);
            o.defaults.cfg_scale = x;
        } else if ((v = cli_option_value(argc, argv, &i, "--sampler", NULL, &missing))) {
            if (sampler_kind_parse(v, &o.defaults.sampler) < 0)
                rc = sd_err(&e, SD_EINPUT, "--sampler: unknown sampler '%s' (known: %s)", v, sampler_kind_list());
        } else if ((v = cli_option_value(argc, argv, &i, "--width", "-W", &missing))) {
            rc = cli_parse_long("--width", v, 8, SD_MAX_SIDE, &n, &e);
            if (rc == 0 && n % sd_settings_sd_vae_scale())
                rc = sd_err(&e, SD_EINPUT, "--width: %ld is not a multiple of %d", n, sd_settings_sd_vae_scale());
            o.defaults.width = (int)n;
        } else if ((v = cli_option_value(argc, argv, &i, "--height", "-H", &missing))) {
            rc = cli_parse_long("--height", v, 8, SD_MAX_SIDE, &n, &e);
            if (rc == 0 && n % sd_settings_sd_vae_scale())
                rc = sd_err(&e, SD_EINPUT, "--height: %ld is not a multiple of %d", n, sd_settings_sd_vae_scale());
            o.defaults.height = (int)n;
        } else if ((v = cli_option_value(argc, argv, &i, "--negative", NULL, &missing))) {
            o.defaults.negative_prompt = (char *)v;
        } else if ((v = cli_option_value(argc, argv, &i, "--clip-skip", NULL, &missing))) {
            rc = cli_parse_long("--clip-skip", v, 1, SD_MAX_CLIP_SKIP, &n, &e);
            o.defaults.clip_skip = (int)n;
        } else if ((v = cli_option_value(argc, argv, &i, "--strength", NULL, &missing))) {
            rc = cli_parse_double("--strength", v, 0, 1, &x, &e);
            if (rc == 0 && x <= 0) rc = sd_err(&e, SD_EINPUT, "--strength: must be in (0, 1], got %g", x);
            o.defaults.strength = x;
        } else if ((v = cli_option_value(argc, argv, &i, "--original-size", NULL, &missing))) {
            rc = cli_parse_pair("--original-size", v, 'x', 1, SD_MAX_COND_SIZE, &n, &n2, &e);
            o.defaults.orig_width = (int)n;
            o.defaults.orig_height = (int)n2;
        } else if ((v = cli_option_value(argc, argv, &i, "--crop-top-left", NULL, &missing))) {
            rc = cli_parse_pair("--crop-top-left", v, ',', 0, SD_MAX_COND_SIZE, &n, &n2, &e);
            o.defaults.crop_top = (int)n;
            o.defaults.crop_left = (int)n2;
        } else if ((v = cli_option_value(argc, argv, &i, "--target-size", NULL, &missing))) {
            rc = cli_parse_pair("--target-size", v, 'x', 1, SD_MAX_COND_SIZE, &n, &n2, &e);
            o.defaults.target_width = (int)n;
            o.defaults.target_height = (int)n2;
        } else if ((v = cli_option_value(argc, argv, &i, "--rng", NULL, &missing))) {
            if (sd_rng_kind_parse(v, &o.defaults.rng) < 0)
                rc = sd_err(&e, SD_EINPUT, "--rng: unknown noise source '%s'; choose cpu or cuda", v);
        } else if ((v = cli_option_value(argc, argv, &i, "--prompt-syntax", NULL, &missing))) {
            if (sd_prompt_syntax_parse(v, &o.defaults.prompt_syntax) < 0)
                rc = sd_err(&e, SD_EINPUT, "--prompt-syntax: '%s' is neither plain nor a1111", v);
        } else if ((v = cli_option_value(argc, argv, &i, "--lora-dir", NULL, &missing))) {
            free(lora_dir);
            lora_dir = realpath(v, NULL);
            if (!lora_dir || !sd_fs_is_dir(lora_dir)) rc = sd_err(&e, SD_EINPUT, "--lora-dir: '%s' is not a folder", v);
        } else if ((v = cli_option_value(argc, argv, &i, "--lora", NULL, &missing))) {
            sd_lora_use u;
            rc = sd_lora_use_parse(v, &u, &e);
            char cwd[4096], *abs = NULL;
            if (rc == 0) abs = u.path[0] == '/' ? strdup(u.path) : getcwd(cwd, sizeof cwd) ? sd_fs_path_join(cwd, u.path) : NULL;
            char *one = abs ? sd_lora_spec_format(abs, u.te) : NULL;
            size_t have = loras ? strlen(loras) : 0, need = (one ? strlen(one) : 0) + 2;
            char *g = one ? realloc(loras, have + need) : NULL;
            if (g) {
                loras = g;
                snprintf(g + have, need, "%s%s", have ? "\n" : "", one);
            } else if (rc == 0) {
                rc = sd_err(&e, SD_ENOMEM, "out of memory");
            }
            free(abs);
            free(one);
            sd_lora_use_free(&u);
        } else if ((v = cli_option_value(argc, argv, &i, "--seed-base", NULL, &missing))) {
            rc = cli_parse_long("--seed-base", v, 0, LONG_MAX, &seed_base, &e);
        } else if ((v = cli_option_value(argc, argv, &i, "--repeat", NULL, &missing))) {
            rc = cli_parse_long("--repeat", v, 1, 100000, &repeat, &e);
        } else if (missing) {
            rc = sd_err(&e, SD_EINPUT, "%s needs a value", a);
        } else if (a[0] == '-' && a[1]) {
            rc = sd_err(&e, SD_EINPUT, "enqueue: unknown option '%s'; see 'sdrender enqueue --help'", a);
        } else {
            files[nfiles++] = argv[i];
        }
    }
    if (rc == 0 && !db_path) rc = sd_err(&e, SD_EINPUT, "enqueue: --db FILE is required");
    if (rc == 0 && !nfiles) rc = sd_err(&e, SD_EINPUT, "enqueue: no prompt files given");
    if (rc == 0 && karras && !sampler_kind_has_sigmas(o.defaults.sampler))
        rc = sd_err(&e, SD_EINPUT, "--karras needs a sigma-based sampler; '%s' has none (try euler, dpm++2m)",
                    sampler_kind_name(o.defaults.sampler));
    o.defaults.karras = karras;
    o.defaults.loras = loras;
    o.defaults.lora_dir = lora_dir;
    if (rc < 0) {
        free(loras);
        free(lora_dir);
        free(files);
        return cli_fail(&e);
    }

    /* Read every file before touching the database: a problem anywhere enqueues nothing.
     * Each problem is printed as it is found ("FILE:LINE: ..."), then one summary line. */
    enqueue_batch batch = {0};
    int file_errors = 0;
    for (int i = 0; i < nfiles; i++) {
        sd_error fe = {0};
        size_t bad_before = batch.bad;
        int frc = enqueue_parse_file(files[i], &o, &batch, &fe);
        if (frc < 0 && !(frc == SD_EINPUT && batch.bad > bad_before)) {
            report(&rep, fe.msg); /* the file itself is unusable (missing, unknown format, bad header) */
            if (!file_errors++) rc = frc;
        }
    }
    if (rep.dropped) fprintf(stderr, "... and %d more messages\n", rep.dropped);
    jobdb *db = NULL;
    int64_t first = 0, last = 0;
    if (file_errors || (batch.bad && !o.skip_bad)) {
        if (!file_errors) rc = SD_EINPUT;
        char what[128] = "";
        if (batch.bad) snprintf(what, sizeof what, "%zu bad row%s", batch.bad, batch.bad == 1 ? "" : "s");
        if (file_errors)
            snprintf(what + strlen(what), sizeof what - strlen(what), "%s%d unusable file%s", batch.bad ? ", " : "",
                     file_errors, file_errors == 1 ? "" : "s");
        rc = sd_err(&e, rc, "nothing enqueued: %s; fix %s%s", what, batch.bad + file_errors == 1 ? "it" : "them",
                    batch.bad && !file_errors ? " or pass --skip-bad" : "");
    }
    if (rc == 0 && batch.n == 0) rc = sd_err(&e, SD_EINPUT, "nothing enqueued: no prompts in the given files");
    if (rc == 0) {
        jobdb_open_options oo = {.create = 1};
        rc = jobdb_open(&db, db_path, &oo, &e);
    }
    if (rc == 0) rc = jobdb_enqueue(db, batch.jobs, batch.n, (int)repeat, seed_base, &first, &last, &e);
    if (rc == 0) {
        printf("enqueued %lld job%s (ids %lld..%lld) from %d file%s into %s", (long long)(last - first + 1),
               last == first ? "" : "s", (long long)first, (long long)last, nfiles, nfiles == 1 ? "" : "s", db_path);
        if (batch.bad) printf("; skipped %zu bad row%s", batch.bad, batch.bad == 1 ? "" : "s");
        printf("\n");
    }
    jobdb_close(db);
    enqueue_batch_free(&batch);
    free(files);
    free(loras);
    free(lora_dir);
    return rc < 0 ? cli_fail(&e) : 0;
}
