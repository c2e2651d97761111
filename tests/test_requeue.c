/* `sdrender requeue`: failed jobs (filtered by error text and id range) and done jobs whose PNG is gone
 * back to pending; what it leaves alone; its argument errors. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobdb.h"

/* SHA-256 of the empty file. */
static const char *EMPTY_SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static char db_path[1024], out_dir[1024];

static jobdb *open_db(void) {
    jobdb *db = NULL;
    sd_error err = {0};
    jobdb_open_options o = {.keep_journal = 1};
    if (jobdb_open(&db, db_path, &o, &err) < 0) fail_msg("open %s: %s", db_path, err.msg);
    return db;
}

static sd_job get_job(jobdb *db, int64_t id) {
    sd_job j;
    sd_error err = {0};
    assert_int_equal(jobdb_job_get(db, id, &j, &err), 1);
    return j;
}

static void claim(jobdb *db, int64_t want) {
    sd_job j;
    sd_error err = {0};
    assert_int_equal(jobdb_claim(db, "node:1", &j, &err), 1);
    assert_int_equal(j.id, want);
    sd_job_free(&j);
}

/*
 * Seven jobs, after one run: 1, 2 and 5 failed writing their PNG, 3 failed on a bad init image, 4 is
 * done with its PNG on disk, 6 is done but its PNG is gone, 7 is pending.
 */
static void make_table(void) {
    const char *dir = tu_tmp("rq");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s/out && printf 'p1\\np2\\np3\\np4\\np5\\np6\\np7\\n' > %s/p.txt && "
             "%s enqueue --db %s/jobs.db --steps 2 -W 64 -H 64 %s/p.txt", dir, dir, dir, tu_bin(), dir, dir);
    char *out;
    if (tu_sh(&out, "%s 2>&1", cmd) != 0) fail_msg("%s", out);
    free(out);
    snprintf(db_path, sizeof db_path, "%s/jobs.db", dir);
    snprintf(out_dir, sizeof out_dir, "%s/out", dir);
    jobdb *db = open_db();
    sd_error err = {0};
    jobdb_run_config c = {.max_attempts = 3};
    assert_int_equal(jobdb_run_begin(db, &c, &err), 0);
    static const char *errors[] = {NULL, "node:1: /o/1.png: cannot write PNG: Write Error", "node:1: /o/2.png: cannot write PNG: Write Error",
                                   "node:1: init image x.png: not a PNG", NULL, "node:1: /o/5.png: cannot write PNG: Write Error"};
    for (int id = 1; id <= 6; id++) {
        claim(db, id);
        if (id == 4 || id == 6) {
            char png[1100];
            snprintf(png, sizeof png, "%s/%08d.png", out_dir, id);
            if (id == 4) fclose(fopen(png, "w")); /* empty: its SHA-256 is EMPTY_SHA */
            assert_int_equal(jobdb_finish(db, id, png, EMPTY_SHA, 0.5, &err), 0);
        } else {
            sd_job_status now;
            assert_int_equal(jobdb_fail(db, id, errors[id], 0, &now, &err), 0);
            assert_int_equal(now, SD_JOB_FAILED);
        }
    }
    assert_int_equal(jobdb_run_end(db, "complete", &err), 0);
    jobdb_close(db);
}

/* Runs `sdrender requeue ARGS` and returns its exit status and output (caller frees). */
static int requeue(char **out, const char *args) {
    return tu_sh(out, "%s requeue --db %s %s 2>&1", tu_bin(), db_path, args);
}

static void expect_status(jobdb *db, int64_t id, sd_job_status want, int attempts) {
    sd_job j = get_job(db, id);
    if (j.status != want || j.attempts != attempts)
        fail_msg("job %lld is %s with %d attempt(s); want %s with %d", (long long)id, sd_job_status_name(j.status),
                 j.attempts, sd_job_status_name(want), attempts);
    sd_job_free(&j);
}

static void test_requeue_failed_by_error_text_and_ids(void **state) {
    (void)state;
    make_table();
    char *out;
    /* "write png" matches "cannot write PNG" anywhere, case-insensitively; 1 is outside 2-5 */
    int rc = requeue(&out, "--failed --error-like 'write png' --ids 2-5");
    if (rc != 0 || !strstr(out, "requeued 2 failed job(s) to pending (attempts reset to 0)")) fail_msg("exit %d: %s", rc, out);
    free(out);
    jobdb *db = open_db();
    expect_status(db, 1, SD_JOB_FAILED, 1);
    expect_status(db, 2, SD_JOB_PENDING, 0);
    expect_status(db, 3, SD_JOB_FAILED, 1);
    expect_status(db, 4, SD_JOB_DONE, 0);
    expect_status(db, 5, SD_JOB_PENDING, 0);
    sd_job j = get_job(db, 2);
    assert_non_null(strstr(j.error, "Write Error")); /* the last error stays on record */
    sd_job_free(&j);
    jobdb_close(db);
    /* a LIKE pattern with wildcards is used as it is: "init%" matches no error from its start */
    rc = requeue(&out, "--failed --error-like 'init%'");
    if (rc != 0 || !strstr(out, "requeued 0 failed job(s)")) fail_msg("exit %d: %s", rc, out);
    free(out);
    /* no filter: every failed job (1 and 3) */
    rc = requeue(&out, "--failed");
    if (rc != 0 || !strstr(out, "requeued 2 failed job(s)")) fail_msg("exit %d: %s", rc, out);
    free(out);
    db = open_db();
    expect_status(db, 1, SD_JOB_PENDING, 0);
    expect_status(db, 3, SD_JOB_PENDING, 0);
    jobdb_close(db);
}

/* Attempts start from 0 again: a requeued job that fails once more is retried, not failed at once. */
static void test_requeued_jobs_get_every_attempt_again(void **state) {
    (void)state;
    make_table();
    char *out;
    assert_int_equal(requeue(&out, "--failed --ids 1"), 0);
    free(out);
    jobdb *db = open_db();
    sd_error err = {0};
    jobdb_run_config c = {.max_attempts = 2};
    assert_int_equal(jobdb_run_begin(db, &c, &err), 0);
    claim(db, 1);
    sd_job_status now;
    assert_int_equal(jobdb_fail(db, 1, "node:1: again", 1, &now, &err), 0);
    assert_int_equal(now, SD_JOB_PENDING);
    jobdb_close(db);
}

/* A job a live run holds is not failed, so requeue leaves it to that run. */
static void test_requeue_leaves_running_jobs_alone(void **state) {
    (void)state;
    make_table();
    jobdb *db = open_db();
    sd_error err = {0};
    assert_int_equal(jobdb_run_begin(db, NULL, &err), 0);
    claim(db, 7);
    char *out;
    int rc = requeue(&out, "--failed");
    if (rc != 0 || !strstr(out, "requeued 4 failed job(s)")) fail_msg("exit %d: %s", rc, out);
    free(out);
    expect_status(db, 7, SD_JOB_RUNNING, 0);
    jobdb_close(db);
}

static void test_requeue_missing_pngs(void **state) {
    (void)state;
    make_table();
    char *out;
    /* 6's PNG never was on disk; 4's is there with its hash */
    int rc = requeue(&out, "--missing");
    if (rc != 0 || !strstr(out, "requeued 1 done job(s) whose PNG was missing or changed")) fail_msg("exit %d: %s", rc, out);
    free(out);
    jobdb *db = open_db();
    expect_status(db, 4, SD_JOB_DONE, 0);
    expect_status(db, 6, SD_JOB_PENDING, 0);
    sd_job j = get_job(db, 6);
    assert_null(j.output_path);
    assert_string_equal(j.png_sha256, "");
    sd_job_free(&j);
    jobdb_close(db);
    /* a changed PNG no longer matches its row */
    char png[1100];
    snprintf(png, sizeof png, "%s/00000004.png", out_dir);
    FILE *fp = fopen(png, "w");
    fputs("changed", fp);
    fclose(fp);
    rc = requeue(&out, "--missing --ids 4-");
    if (rc != 0 || !strstr(out, "requeued 1 done job(s)")) fail_msg("exit %d: %s", rc, out);
    free(out);
    db = open_db();
    expect_status(db, 4, SD_JOB_PENDING, 0);
    jobdb_close(db);
}

static void test_requeue_refuses_bad_arguments(void **state) {
    (void)state;
    make_table();
    static const char *bad[] = {"", "--ids 5-2 --failed", "--ids x --failed", "--error-like boom",
                                "--failed --ids", "--failed --what"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out;
        int rc = requeue(&out, bad[i]);
        if (rc != 2 || !strstr(out, "sdrender: ")) fail_msg("requeue %s: exit %d: %s", bad[i], rc, out);
        free(out);
    }
    char *out;
    int rc = tu_sh(&out, "%s requeue --failed 2>&1", tu_bin());
    if (rc != 2 || !strstr(out, "--db FILE is required")) fail_msg("no --db: exit %d: %s", rc, out);
    free(out);
    /* nothing changed */
    jobdb *db = open_db();
    expect_status(db, 1, SD_JOB_FAILED, 1);
    jobdb_close(db);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requeue_failed_by_error_text_and_ids),
        cmocka_unit_test(test_requeued_jobs_get_every_attempt_again),
        cmocka_unit_test(test_requeue_leaves_running_jobs_alone),
        cmocka_unit_test(test_requeue_missing_pngs),
        cmocka_unit_test(test_requeue_refuses_bad_arguments),
    };
    return cmocka_run_group_tests_name("requeue", tests, NULL, NULL);
}
