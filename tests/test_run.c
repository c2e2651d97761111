/*
 * End-to-end tests of the batch renderer with the tiny SD 1.5 model:
 * enqueue -> mpirun -np 3 sdrender run -> status, a kill -9 in the middle of
 * a run, and byte-identity with `sdrender generate`.
 */
#include "testutil.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobdb.h"
#include "ops.h"
#include "pngio.h"
#include "runner.h"
#include "sha256.h"

#define MPIRUN "mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1"

static const char *model(void) { return tu_path("models/tiny-sd15"); }

/* Runs a shell command; fails the test with its output unless it exits 0. */
static char *sh_ok(const char *what, const char *cmd) {
    char *out;
    int rc = tu_sh(&out, "%s 2>&1", cmd);
    if (rc != 0) fail_msg("%s failed (exit %d): %s\n%s", what, rc, cmd, out);
    return out;
}

/* The `sdrender generate` command for a job's settings. */
static void generate_cmd(char *buf, size_t n, const sd_job *j, const char *out) {
    int k = snprintf(buf, n, "SDRENDER_CACHE=%s %s generate -q -m %s -p '%s' -n '%s' --steps %d --cfg-scale %g --sampler %s %s"
                             " --seed %lld -W %d -H %d --clip-skip %d -o %s",
                     tu_tmpdir(), tu_bin(), model(), j->prompt, j->negative_prompt, j->steps, j->cfg_scale,
                     sampler_kind_name(j->sampler), j->karras ? "--karras" : "", (long long)j->seed, j->width, j->height,
                     j->clip_skip, out);
    (void)k;
}

static void test_three_ranks_render_12_mixed_jobs_identical_to_generate(void **state) {
    (void)state;
    const char *dir = tu_tmp("e2e");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    free(sh_ok("mkdir", cmd));
    const char *jsonl = tu_tmp("e2e/prompts.jsonl");
    FILE *fp = fopen(jsonl, "w");
    static const char *samplers[] = {"pndm", "ddim", "euler", "euler_a", "lms", "heun", "dpm++2m", "unipc"};
    static const int sizes[][2] = {{64, 64}, {64, 96}, {96, 64}};
    for (int i = 0; i < 12; i++)
        fprintf(fp, "{\"prompt\": \"prompt number %d, a small red house\", \"sampler\": \"%s\", \"width\": %d, "
                    "\"height\": %d%s%s}\n",
                i, samplers[i % 8], sizes[i % 3][0], sizes[i % 3][1], i % 4 == 1 ? ", \"negative_prompt\": \"ugly\"" : "",
                i == 6 ? ", \"karras\": true, \"clip_skip\": 2" : "");
    fclose(fp);
    char db[1024], out[1024], ref[1024];
    snprintf(db, sizeof db, "%s", tu_tmp("e2e/jobs.db"));
    snprintf(out, sizeof out, "%s", tu_tmp("e2e/out"));
    snprintf(ref, sizeof ref, "%s", tu_tmp("e2e/ref.png"));
    snprintf(cmd, sizeof cmd, "%s enqueue --db %s --steps 3 --seed-base 1000 %s", tu_bin(), db, jsonl);
    free(sh_ok("enqueue", cmd));
    snprintf(cmd, sizeof cmd, "SDRENDER_CACHE=%s " MPIRUN " -np 3 %s run --db %s -m %s --out %s", tu_tmpdir(), tu_bin(),
             db, model(), out);
    char *log = sh_ok("mpirun run", cmd);
    assert_non_null(strstr(log, "complete: 12 done"));
    free(log);

    /* status agrees */
    snprintf(cmd, sizeof cmd, "%s status --db %s --json", tu_bin(), db);
    char *js = sh_ok("status", cmd);
    json_t *st = json_loads(js, 0, NULL);
    assert_non_null(st);
    assert_int_equal(json_integer_value(json_object_get(st, "done")), 12);
    assert_int_equal(json_integer_value(json_object_get(st, "pending")), 0);
    assert_int_equal(json_integer_value(json_object_get(st, "running")), 0);
    assert_int_equal(json_integer_value(json_object_get(st, "failed")), 0);
    json_decref(st);
    free(js);

    /* each PNG is byte-identical to `sdrender generate` with the job's settings, and its hash is recorded */
    jobdb *d;
    sd_error err = {0};
    jobdb_open_options oo = {.keep_journal = 1};
    assert_int_equal(jobdb_open(&d, db, &oo, &err), 0);
    for (int id = 1; id <= 12; id++) {
        sd_job j;
        assert_int_equal(jobdb_job_get(d, id, &j, &err), 1);
        assert_int_equal(j.status, SD_JOB_DONE);
        char *png = sd_run_output_path(out, id);
        assert_string_equal(j.output_path, png);
        char sha[65];
        assert_int_equal(sd_sha256_file(png, sha, &err), 0);
        assert_string_equal(sha, j.png_sha256);
        generate_cmd(cmd, sizeof cmd, &j, ref);
        free(sh_ok("generate", cmd));
        snprintf(cmd, sizeof cmd, "cmp %s %s", png, ref);
        free(sh_ok("cmp with generate", cmd));
        free(png);
        sd_job_free(&j);
    }
    assert_int_equal(jobdb_check_integrity(d, &err), 0);
    jobdb_close(d);
}

/* run --precision bf16: every PNG is byte-identical to `generate --precision bf16` with the job's settings,
 * says "Precision: bf16" in its parameters, differs from the fp32 picture, and the run's settings record it. */
static void test_precision_bf16_run_matches_generate_bf16(void **state) {
    (void)state;
    if (!ops_bf16_available()) skip();
    const char *dir = tu_tmp("bf16");
    char cmd[8192], db[1024], out[1024], ref[1024];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    free(sh_ok("mkdir", cmd));
    snprintf(db, sizeof db, "%s", tu_tmp("bf16/jobs.db"));
    snprintf(out, sizeof out, "%s", tu_tmp("bf16/out"));
    snprintf(ref, sizeof ref, "%s", tu_tmp("bf16/ref.png"));
    snprintf(cmd, sizeof cmd, "printf 'a red house\\na blue boat\\n' > %s/p.txt && %s enqueue --db %s --steps 3 -W 64 -H 64 "
             "--seed-base 50 %s/p.txt", dir, tu_bin(), db, dir);
    free(sh_ok("enqueue", cmd));
    snprintf(cmd, sizeof cmd, "SDRENDER_CACHE=%s " MPIRUN " -np 2 %s run --db %s -m %s --out %s --precision bf16 -q",
             tu_tmpdir(), tu_bin(), db, model(), out);
    free(sh_ok("mpirun run --precision bf16", cmd));
    jobdb *d;
    sd_error err = {0};
    jobdb_open_options oo = {.keep_journal = 1};
    assert_int_equal(jobdb_open(&d, db, &oo, &err), 0);
    for (int id = 1; id <= 2; id++) {
        sd_job j;
        assert_int_equal(jobdb_job_get(d, id, &j, &err), 1);
        assert_int_equal(j.status, SD_JOB_DONE);
        char *png = sd_run_output_path(out, id);
        generate_cmd(cmd, sizeof cmd, &j, ref);
        strcat(cmd, " --precision bf16");
        free(sh_ok("generate --precision bf16", cmd));
        snprintf(cmd, sizeof cmd, "cmp %s %s", png, ref);
        free(sh_ok("cmp with generate --precision bf16", cmd));
        sd_png_text *texts = NULL;
        int nt = 0;
        assert_int_equal(sd_png_read_text(png, &texts, &nt, &err), 0);
        const char *params = sd_png_text_get(texts, nt, "parameters");
        if (!params || !strstr(params, ", Precision: bf16"))
            fail_msg("no 'Precision: bf16' in %s's parameters: %s", png, params ? params : "(none)");
        sd_png_text_free(texts, nt);
        generate_cmd(cmd, sizeof cmd, &j, ref);
        free(sh_ok("generate (fp32)", cmd));
        snprintf(cmd, sizeof cmd, "cmp -s %s %s", png, ref);
        assert_int_not_equal(system(cmd), 0); /* bf16 is not fp32 */
        free(png);
        sd_job_free(&j);
    }
    jobdb_close(d);
    snprintf(cmd, sizeof cmd, "sqlite3 %s \"SELECT json_extract(settings_json, '$.precision') FROM runs\"", db);
    char *prec = sh_ok("sqlite3", cmd);
    assert_string_equal(prec, "bf16\n");
    free(prec);
}

static int64_t count_done(const char *db) {
    jobdb *d;
    sd_error err = {0};
    jobdb_open_options oo = {.keep_journal = 1};
    if (jobdb_open(&d, db, &oo, &err) < 0) return -1;
    jobdb_summary s;
    int64_t n = jobdb_summary_get(d, 0, &s, &err) == 0 ? s.done : -1;
    if (n >= 0) jobdb_summary_free(&s);
    jobdb_close(d);
    return n;
}

static void test_kill9_of_a_worker_then_rerun_loses_nothing(void **state) {
    (void)state;
    const char *dir = tu_tmp("kill");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    free(sh_ok("mkdir", cmd));
    char txt[1024], db[1024], out[1024];
    snprintf(txt, sizeof txt, "%s", tu_tmp("kill/prompts.txt"));
    snprintf(db, sizeof db, "%s", tu_tmp("kill/jobs.db"));
    snprintf(out, sizeof out, "%s", tu_tmp("kill/out"));
    FILE *fp = fopen(txt, "w");
    for (int i = 0; i < 20; i++) fprintf(fp, "a landscape painting number %d\n", i);
    fclose(fp);
    snprintf(cmd, sizeof cmd, "%s enqueue --db %s --steps 12 --sampler euler_a -W 128 -H 128 %s", tu_bin(), db, txt);
    free(sh_ok("enqueue", cmd));
    snprintf(cmd, sizeof cmd,
             "(SDRENDER_CACHE=%s " MPIRUN " -np 3 %s run --db %s -m %s --out %s > %s/run1.log 2>&1; echo done > %s/ended) &",
             tu_tmpdir(), tu_bin(), db, model(), out, dir, dir);
    assert_int_equal(system(cmd), 0);
    /* wait for some progress, then kill -9 one worker */
    int pid = 0;
    for (int i = 0; i < 600 && !pid; i++) {
        usleep(50000);
        if (count_done(db) >= 3) pid = tu_run_rank_pid(db, 1, 1);
    }
    if (!pid) fail_msg("no worker to kill (done: %lld)", (long long)count_done(db));
    assert_int_equal(kill(pid, SIGKILL), 0);
    char ended[600];
    snprintf(ended, sizeof ended, "%s/ended", dir);
    for (int i = 0; i < 1200 && !sd_fs_is_file(ended); i++) usleep(50000);
    assert_true(sd_fs_is_file(ended));
    int64_t done1 = count_done(db);
    assert_true(done1 >= 3 && done1 < 20);

    /* the second run recovers the dead run's jobs and finishes everything */
    snprintf(cmd, sizeof cmd, "SDRENDER_CACHE=%s " MPIRUN " -np 3 %s run --db %s -m %s --out %s", tu_tmpdir(), tu_bin(),
             db, model(), out);
    char *log = sh_ok("second run", cmd);
    assert_non_null(strstr(log, "recovered"));
    free(log);
    jobdb *d;
    sd_error err = {0};
    jobdb_open_options oo = {.keep_journal = 1};
    assert_int_equal(jobdb_open(&d, db, &oo, &err), 0);
    assert_int_equal(jobdb_check_integrity(d, &err), 0);
    for (int id = 1; id <= 20; id++) {
        sd_job j;
        assert_int_equal(jobdb_job_get(d, id, &j, &err), 1);
        if (j.status != SD_JOB_DONE) fail_msg("job %d is %s", id, sd_job_status_name(j.status));
        char sha[65];
        assert_int_equal(sd_sha256_file(j.output_path, sha, &err), 0);
        assert_string_equal(sha, j.png_sha256);
        sd_job_free(&j);
    }
    jobdb_close(d);
    /* exactly one image per job: 20 PNGs, no temporary leftovers */
    char *ls;
    tu_sh(&ls, "ls %s | grep -c .", out);
    assert_int_equal(atoi(ls), 20);
    free(ls);
    tu_sh(&ls, "ls %s | grep -c '^[0-9]\\{8\\}\\.png$'", out);
    assert_int_equal(atoi(ls), 20);
    free(ls);
}

/*
 * A fresh folder tu_tmp(name) with a job table of the given prompts (2 steps, 64x64) in db, and out
 * named for the output folder; returns the database opened by this process (keeping its journal),
 * which plays a master that is still going once the caller begins a run on it.
 */
static jobdb *table_with_prompts(const char *name, const char *prompts, char db[1024], char out[1024]) {
    const char *dir = tu_tmp(name);
    char cmd[8192], txt[1100];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    free(sh_ok("mkdir", cmd));
    snprintf(txt, sizeof txt, "%s/prompts.txt", dir);
    snprintf(db, 1024, "%s/jobs.db", dir);
    snprintf(out, 1024, "%s/out", dir);
    FILE *fp = fopen(txt, "w");
    fputs(prompts, fp);
    fclose(fp);
    snprintf(cmd, sizeof cmd, "%s enqueue --db %s --steps 2 -W 64 -H 64 %s", tu_bin(), db, txt);
    free(sh_ok("enqueue", cmd));
    jobdb *d;
    sd_error err = {0};
    jobdb_open_options oo = {.keep_journal = 1};
    assert_int_equal(jobdb_open(&d, db, &oo, &err), 0);
    return d;
}

static void test_a_second_run_waits_then_refuses_while_one_is_alive_unless_takeover(void **state) {
    (void)state;
    char cmd[8192], db[1024], out[1024];
    sd_error err = {0};
    /* this process plays a master that is still going */
    jobdb *d = table_with_prompts("live", "a red house\na blue boat\n", db, out);
    assert_int_equal(jobdb_run_begin(d, NULL, &err), 0);
    char *log;
    int rc = tu_sh(&log, "SDRENDER_CACHE=%s %s run --db %s -m %s --out %s --wait 1 2>&1", tu_tmpdir(), tu_bin(), db,
                   model(), out);
    if (rc != 1 || !strstr(log, "waiting up to 1 s") || !strstr(log, jobdb_run_instance(d)) ||
        !strstr(log, "--takeover"))
        fail_msg("expected a wait, then exit 1 naming the live run; got exit %d:\n%s", rc, log);
    free(log);
    assert_false(sd_fs_is_dir(out)); /* refused before anything was written */
    snprintf(cmd, sizeof cmd, "SDRENDER_CACHE=%s %s run --db %s -m %s --out %s --takeover", tu_tmpdir(), tu_bin(), db,
             model(), out);
    log = sh_ok("run --takeover", cmd);
    assert_non_null(strstr(log, "complete: 2 done"));
    free(log);
    jobdb_close(d);
}

/* run --shard I/N renders only its shard's jobs, runs beside a live master of another shard, and
 * refuses a malformed shard with exit 2. */
static void test_shards_render_only_their_jobs_beside_each_other(void **state) {
    (void)state;
    char cmd[8192], db[1024], out[1024];
    sd_error err = {0};
    /* this process plays the live master of shard 1/2 */
    jobdb *d = table_with_prompts("shard", "a red house\na blue boat\na green tree\na white cat\na black dog\n", db, out);
    jobdb_run_config rc1 = {.exclusive_s = 600, .shard_index = 1, .shard_count = 2};
    assert_int_equal(jobdb_run_begin(d, &rc1, &err), 0);
    snprintf(cmd, sizeof cmd, "%s run --db %s -m %s --out %s --shard 0/2 --wait 0", tu_bin(), db, model(), out);
    char *log = sh_ok("run --shard 0/2", cmd);
    if (!strstr(log, "2 pending job(s) in shard 0/2") || !strstr(log, "complete: 2 done"))
        fail_msg("shard 0/2 should render jobs 2 and 4:\n%s", log);
    free(log);
    jobdb_close(d);
    char *ls;
    tu_sh(&ls, "ls %s | tr '\\n' ' '", out);
    assert_string_equal(ls, "00000002.png 00000004.png ");
    free(ls);
    /* a run without a shard overlaps every shard: refused while 1/2 looks alive (its pid is ours,
       and closing the database did not end the run) */
    char *bad;
    int rc = tu_sh(&bad, "%s run --db %s -m %s --out %s --wait 0 2>&1", tu_bin(), db, model(), out);
    if (rc != 1 || !strstr(bad, "is still going")) fail_msg("a run without --shard: exit %d:\n%s", rc, bad);
    free(bad);
    rc = tu_sh(&bad, "%s run --db %s -m %s --out %s --shard 2/2 2>&1", tu_bin(), db, model(), out);
    if (rc != 2 || !strstr(bad, "--shard '2/2': expected I/N")) fail_msg("--shard 2/2: exit %d:\n%s", rc, bad);
    free(bad);
}

int main(void) {
    /* Processes that start MPI (the children) are checked by ASan and UBSan but not for leaks:
     * Open MPI and PMIx leave allocations behind at exit in plugins LSan cannot name. This test
     * program itself, which does not start MPI, is still leak-checked. */
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_ranks_render_12_mixed_jobs_identical_to_generate),
        cmocka_unit_test(test_kill9_of_a_worker_then_rerun_loses_nothing),
        cmocka_unit_test(test_a_second_run_waits_then_refuses_while_one_is_alive_unless_takeover),
        cmocka_unit_test(test_shards_render_only_their_jobs_beside_each_other),
        cmocka_unit_test(test_precision_bf16_run_matches_generate_bf16),
    };
    return cmocka_run_group_tests_name("run", tests, NULL, NULL);
}
