/*
 * The batch renderer with the extension models: `mpirun run` over job tables mixing tasks for one
 * model (txt2img and img2img with CPU and CUDA noise on the f = 4 LDM; unconditional DDPM and DDIM
 * jobs on the pixel-space DDPM; upscales on the x4 upscaler), each PNG byte-identical to the single
 * command (`generate`, `upscale`) with the job's settings; a prompt-less job fails on a
 * text-conditioned model with a clear error; and schema 005 keeps the ids of an older table.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobdb.h"
#include "runner.h"

#define MPIRUN "mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1"

/* testdata/rel as an absolute path (prompt files name images relative to their own folder). */
static const char *abs_path(const char *rel, char *buf) {
    if (!realpath(tu_path(rel), buf)) fail_msg("%s: not found", rel);
    return buf;
}

static char *sh_ok(const char *what, const char *cmd) {
    char *out;
    int rc = tu_sh(&out, "%s 2>&1", cmd);
    if (rc != 0) fail_msg("%s failed (exit %d): %s\n%s", what, rc, cmd, out);
    return out;
}

/* The single command that renders job j with model: generate, or upscale for an upscale job. */
static void single_cmd(char *buf, size_t n, const char *model, const sd_job *j, const char *out) {
    int k = snprintf(buf, n, "SDRENDER_CACHE=%s %s %s -q -m %s --steps %d --cfg-scale %g --sampler %s --seed %lld "
                             "--rng %s -o %s",
                     tu_tmpdir(), tu_bin(), j->upscale ? "upscale" : "generate", model, j->steps, j->cfg_scale,
                     sampler_kind_name(j->sampler), (long long)j->seed, sd_rng_kind_name(j->rng), out);
    if (*j->prompt) k += snprintf(buf + k, n - (size_t)k, " -p '%s' -n '%s'", j->prompt, j->negative_prompt);
    if (j->upscale) k += snprintf(buf + k, n - (size_t)k, " -i %s --noise-level %d", j->init_image, j->noise_level);
    else k += snprintf(buf + k, n - (size_t)k, " -W %d -H %d", j->width, j->height);
    if (!j->upscale && j->init_image) snprintf(buf + k, n - (size_t)k, " -i %s --strength %g", j->init_image, j->strength);
}

/*
 * Enqueues `rows` (a .jsonl text) into a fresh table under dir, renders it with `ranks` ranks and
 * model, and checks every done job's PNG against the single command; returns the run's log.
 */
static char *run_table(const char *dir, const char *rows, const char *model, int ranks, int want_done) {
    char cmd[8192], db[1024], out[1024], ref[1024], jsonl[1024];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", tu_tmp(dir), tu_tmp(dir));
    free(sh_ok("mkdir", cmd));
    snprintf(jsonl, sizeof jsonl, "%s/jobs.jsonl", tu_tmp(dir));
    snprintf(db, sizeof db, "%s/jobs.db", tu_tmp(dir));
    snprintf(out, sizeof out, "%s/out", tu_tmp(dir));
    snprintf(ref, sizeof ref, "%s/ref.png", tu_tmp(dir));
    FILE *fp = fopen(jsonl, "w");
    assert_non_null(fp);
    fputs(rows, fp);
    fclose(fp);
    snprintf(cmd, sizeof cmd, "%s enqueue --db %s --steps 3 --seed-base 500 %s", tu_bin(), db, jsonl);
    free(sh_ok("enqueue", cmd));
    snprintf(cmd, sizeof cmd, "SDRENDER_CACHE=%s " MPIRUN " -np %d %s run --db %s -m %s --out %s", tu_tmpdir(), ranks,
             tu_bin(), db, model, out);
    char *log;
    tu_sh(&log, "%s 2>&1", cmd);
    jobdb *d;
    sd_error err = {0};
    jobdb_open_options oo = {.keep_journal = 1};
    assert_int_equal(jobdb_open(&d, db, &oo, &err), 0);
    int done = 0;
    for (int id = 1;; id++) {
        sd_job j;
        int found = jobdb_job_get(d, id, &j, &err);
        assert_true(found >= 0);
        if (!found) break;
        if (j.status == SD_JOB_DONE) {
            done++;
            single_cmd(cmd, sizeof cmd, model, &j, ref);
            free(sh_ok("single command", cmd));
            snprintf(cmd, sizeof cmd, "cmp %s %s", j.output_path, ref);
            free(sh_ok("cmp with the single command", cmd));
        }
        sd_job_free(&j);
    }
    jobdb_close(d);
    if (done != want_done) fail_msg("%s: %d jobs done, want %d; log:\n%s", dir, done, want_done, log);
    return log;
}

static void test_mixed_ldm_f4_table_renders_identical_to_generate(void **state) {
    (void)state;
    char rows[4096];
    char buf[4096];
    const char *img = abs_path("golden/pipeline_sd15_img2img_ddim_96.input.png", buf); /* 96x96 */
    snprintf(rows, sizeof rows,
             "{\"prompt\": \"a red house\", \"width\": 64, \"height\": 64}\n"
             "{\"prompt\": \"a red house\", \"width\": 64, \"height\": 64, \"rng\": \"cuda\", \"sampler\": \"euler_a\"}\n"
             "{\"prompt\": \"a blue car\", \"task\": \"img2img\", \"init_image\": \"%s\", \"width\": 96, \"height\": 96, "
             "\"strength\": 0.7, \"sampler\": \"ddim\", \"negative_prompt\": \"ugly\"}\n"
             "{\"prompt\": \"a blue car\", \"init_image\": \"%s\", \"width\": 96, \"height\": 96, \"rng\": \"cuda\"}\n"
             "{\"task\": \"unconditional\", \"width\": 64, \"height\": 64}\n",
             img, img);
    char *log = run_table("f4", rows, tu_path("ext/models/tiny-ldm-f4"), 3, 4);
    free(log);
    /* the prompt-less job failed at once, saying why */
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s status --db %s", tu_bin(), tu_tmp("f4/jobs.db"));
    char *st = sh_ok("status", cmd);
    if (!strstr(st, "has no prompt, but") || !strstr(st, "text-conditioned")) fail_msg("status:\n%s", st);
    free(st);
}

static void test_ddpm_table_of_prompt_less_jobs_renders_identical_to_generate(void **state) {
    (void)state;
    const char *rows = "{\"task\": \"unconditional\", \"width\": 32, \"height\": 32, \"sampler\": \"ddpm\"}\n"
                       "{\"task\": \"unconditional\", \"width\": 32, \"height\": 32, \"sampler\": \"ddim\"}\n"
                       "{\"task\": \"unconditional\", \"width\": 32, \"height\": 32, \"sampler\": \"ddpm\", \"rng\": \"cuda\"}\n";
    free(run_table("ddpm", rows, tu_path("ext/models/tiny-ddpm"), 2, 3));
}

static void test_upscale_table_renders_identical_to_upscale(void **state) {
    (void)state;
    char rows[4096];
    char buf[4096];
    const char *img = abs_path("ext/golden/pipeline_upscale_x4.input.png", buf);
    snprintf(rows, sizeof rows,
             "{\"prompt\": \"a red cube\", \"task\": \"upscale\", \"init_image\": \"%s\", \"sampler\": \"ddim\", "
             "\"cfg_scale\": 9}\n"
             "{\"prompt\": \"a red cube\", \"task\": \"upscale\", \"init_image\": \"%s\", \"sampler\": \"ddim\", "
             "\"noise_level\": 50, \"rng\": \"cuda\"}\n",
             img, img);
    free(run_table("up", rows, tu_path("ext/models/tiny-sd-x4-upscaler"), 2, 2));
    /* the upscale rows were stored as 4x outputs */
    jobdb *d;
    sd_error err = {0};
    jobdb_open_options oo = {.keep_journal = 1};
    assert_int_equal(jobdb_open(&d, tu_tmp("up/jobs.db"), &oo, &err), 0);
    sd_job j;
    assert_int_equal(jobdb_job_get(d, 2, &j, &err), 1);
    assert_true(j.upscale);
    assert_int_equal(j.width, 128);
    assert_int_equal(j.noise_level, 50);
    assert_int_equal(j.rng, SD_RNG_CUDA);
    sd_job_free(&j);
    jobdb_close(d);
}

/* Bad rows of the new kinds are refused by enqueue with FILE:LINE and exit 2. */
static void test_enqueue_refuses_bad_task_rows(void **state) {
    (void)state;
    static const char *const cases[][2] = {
        {"{\"task\": \"unconditional\", \"prompt\": \"x\"}", "takes no prompt"},
        {"{\"prompt\": \"x\", \"task\": \"upscale\"}", "needs an init_image"},
        {"{\"prompt\": \"x\", \"task\": \"upscale\", \"init_image\": \"%s\", \"noise_level\": 351}", "noise_level"},
        {"{\"prompt\": \"x\", \"noise_level\": 20}", "noise_level is for task upscale"},
        {"{\"prompt\": \"x\", \"rng\": \"gpu\"}", "unknown rng 'gpu'"},
        {"{\"prompt\": \"x\", \"task\": \"paint\"}", "unknown task 'paint'"},
        {"{\"prompt\": \"x\", \"task\": \"upscale\", \"init_image\": \"%s\", \"width\": 64}", "leave out width"},
    };
    char buf[4096];
    const char *img = abs_path("ext/golden/pipeline_upscale_x4.input.png", buf);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char row[1024], cmd[4096];
        snprintf(row, sizeof row, cases[i][0], img);
        FILE *fp = fopen(tu_tmp("bad.jsonl"), "w");
        fprintf(fp, "%s\n", row);
        fclose(fp);
        char *out;
        snprintf(cmd, sizeof cmd, "rm -f %s; %s enqueue --db %s %s 2>&1", tu_tmp("bad.db"), tu_bin(), tu_tmp("bad.db"),
                 tu_tmp("bad.jsonl"));
        int rc = tu_sh(&out, "%s", cmd);
        if (rc != 2 || !strstr(out, cases[i][1]) || !strstr(out, "bad.jsonl:1"))
            fail_msg("%s: exit %d, want 2 and '%s':\n%s", row, rc, cases[i][1], out);
        free(out);
    }
    char *out;
    int rc = tu_sh(&out, "%s enqueue --db %s --rng philox %s 2>&1", tu_bin(), tu_tmp("bad.db"), tu_tmp("bad.jsonl"));
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "--rng"));
    free(out);
}

/* A version-4 table with rows migrates to 005 keeping ids, rows and the id sequence. */
static void test_schema_005_keeps_ids_and_the_sequence(void **state) {
    (void)state;
    const char *path = tu_tmp("v3.db");
    remove(path);
    jobdb *db = NULL;
    sd_error err = {0};
    jobdb_open_options o = {.create = 1, .schema_version = 4};
    assert_int_equal(jobdb_open(&db, path, &o, &err), 0);
    sd_job spec = {.prompt = "a cat", .negative_prompt = "", .seed = 1, .steps = 3, .cfg_scale = 7, .width = 64,
                   .height = 64, .clip_skip = 1, .sampler = SD_SAMPLER_DDIM};
    int64_t first, last;
    assert_int_equal(jobdb_enqueue(db, &spec, 1, 3, 0, &first, &last, &err), 0);
    assert_int_equal(last, 3);
    jobdb_close(db);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "sqlite3 %s 'DELETE FROM jobs WHERE id = 3'", path);
    free(sh_ok("sqlite3", cmd));
    jobdb_open_options o2 = {.create = 0};
    assert_int_equal(jobdb_open(&db, path, &o2, &err), 0);
    assert_int_equal(jobdb_schema_version(db), jobdb_schema_latest()); /* migrated through 5 and on */
    assert_int_equal(jobdb_check_integrity(db, &err), 0);
    sd_job spec2 = spec;
    spec2.prompt = "";
    spec2.width = spec2.height = 36; /* unconditional: no multiple of 8 needed */
    spec2.rng = SD_RNG_CUDA;
    assert_int_equal(jobdb_enqueue(db, &spec2, 1, 1, 0, &first, &last, &err), 0);
    assert_int_equal(first, 4); /* not 3: ids are never reused */
    sd_job j;
    assert_int_equal(jobdb_job_get(db, 2, &j, &err), 1);
    assert_string_equal(j.prompt, "a cat");
    assert_int_equal(j.rng, SD_RNG_CPU);
    assert_false(j.upscale);
    sd_job_free(&j);
    assert_int_equal(jobdb_job_get(db, 4, &j, &err), 1);
    assert_string_equal(j.prompt, "");
    assert_int_equal(j.rng, SD_RNG_CUDA);
    sd_job_free(&j);
    jobdb_close(db);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixed_ldm_f4_table_renders_identical_to_generate),
        cmocka_unit_test(test_ddpm_table_of_prompt_less_jobs_renders_identical_to_generate),
        cmocka_unit_test(test_upscale_table_renders_identical_to_upscale),
        cmocka_unit_test(test_enqueue_refuses_bad_task_rows),
        cmocka_unit_test(test_schema_005_keeps_ids_and_the_sequence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
