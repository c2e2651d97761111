/* Tests for jobs/jobdb: the job table's state machine, crash safety, migrations and errors. */
#include "testutil.h"

#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jobdb.h"
#include "sha256.h"

static const char *SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/* Removes a database and its WAL side files. */
static void remove_db(const char *path) {
    char side[1100];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-journal", path);
    unlink(side);
}

static jobdb *open_db(const char *path) {
    jobdb *db = NULL;
    sd_error err = {0};
    jobdb_open_options o = {.create = 1};
    if (jobdb_open(&db, path, &o, &err) < 0) fail_msg("open %s: %s", path, err.msg);
    return db;
}

static jobdb *fresh_db(const char *name) {
    const char *path = tu_tmp(name);
    remove_db(path);
    return open_db(path);
}

static void begin_run(jobdb *db, int max_attempts) {
    sd_error err = {0};
    jobdb_run_config c = {.model_path = "model.safetensors", .model_sha256 = SHA, .settings_json = "{\"x\": 1}",
                          .ranks = 4, .max_attempts = max_attempts};
    if (jobdb_run_begin(db, &c, &err) < 0) fail_msg("run_begin: %s", err.msg);
}

/* A plain text-to-image spec; the caller frees it. */
static void make_spec(sd_job *j, const char *prompt, int64_t seed) {
    memset(j, 0, sizeof *j);
    j->prompt = strdup(prompt);
    j->negative_prompt = strdup("blurry");
    j->seed = seed;
    j->steps = 20;
    j->cfg_scale = 7.5;
    j->sampler = SD_SAMPLER_PNDM;
    j->width = 512;
    j->height = 512;
    j->clip_skip = 1;
}

/* Enqueues n jobs "prompt 1".."prompt n" with derived seeds. */
static void add_jobs(jobdb *db, int n) {
    sd_job *specs = calloc((size_t)n, sizeof *specs);
    assert_non_null(specs);
    for (int i = 0; i < n; i++) {
        char p[32];
        snprintf(p, sizeof p, "prompt %d", i + 1);
        make_spec(&specs[i], p, -1);
    }
    sd_error err = {0};
    if (jobdb_enqueue(db, specs, (size_t)n, 1, 0, NULL, NULL, &err) < 0) fail_msg("enqueue: %s", err.msg);
    for (int i = 0; i < n; i++) sd_job_free(&specs[i]);
    free(specs);
}

static int64_t claim_one(jobdb *db, const char *who) {
    sd_job j;
    sd_error err = {0};
    int rc = jobdb_claim(db, who, &j, &err);
    if (rc < 0) fail_msg("claim: %s", err.msg);
    int64_t id = rc ? j.id : 0;
    sd_job_free(&j);
    return id;
}

static void finish_one(jobdb *db, int64_t id) {
    sd_error err = {0};
    char out[64];
    snprintf(out, sizeof out, "out/%06lld.png", (long long)id);
    if (jobdb_finish(db, id, out, SHA, 1.5, &err) < 0) fail_msg("finish %lld: %s", (long long)id, err.msg);
}

static sd_job get_job(jobdb *db, int64_t id) {
    sd_job j;
    sd_error err = {0};
    int rc = jobdb_job_get(db, id, &j, &err);
    if (rc != 1) fail_msg("job %lld: %s", (long long)id, rc == 0 ? "missing" : err.msg);
    return j;
}

static sd_job_status status_of(jobdb *db, int64_t id) {
    sd_job j = get_job(db, id);
    sd_job_status s = j.status;
    sd_job_free(&j);
    return s;
}

static jobdb_summary summary(jobdb *db) {
    jobdb_summary s;
    sd_error err = {0};
    if (jobdb_summary_get(db, 10, &s, &err) < 0) fail_msg("summary: %s", err.msg);
    return s;
}

/* Runs one SQL statement on the raw file (as an older sdrender or a user would) and returns
 * the first column of the first row as an integer (or -1 for no row). */
static long long raw_sql(const char *path, const char *sql) {
    sqlite3 *h;
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK) fail_msg("%s: %s", sql, sqlite3_errmsg(h));
    int s = sqlite3_step(st);
    long long v = -1;
    if (s == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    else if (s != SQLITE_DONE) fail_msg("%s: %s", sql, sqlite3_errmsg(h));
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

static void test_jobdb_new_database_has_the_latest_schema_and_passes_integrity_check(void **state) {
    (void)state;
    jobdb *db = fresh_db("new.db");
    sd_error err = {0};
    assert_int_equal(jobdb_schema_version(db), jobdb_schema_latest());
    assert_true(jobdb_schema_latest() >= 2);
    assert_int_equal(jobdb_check_integrity(db, &err), 0);
    assert_string_equal(jobdb_journal_mode(db), "wal");
    jobdb_close(db);
    /* reopening does not migrate again and keeps the version */
    db = open_db(tu_tmp("new.db"));
    assert_int_equal(jobdb_schema_version(db), jobdb_schema_latest());
    jobdb_close(db);
    assert_int_equal(raw_sql(tu_tmp("new.db"), "PRAGMA user_version"), jobdb_schema_latest());
    assert_int_equal(raw_sql(tu_tmp("new.db"), "PRAGMA application_id"), 0x53534452);
}

static void test_jobdb_ids_count_from_one_in_enqueue_order_and_seeds_are_fixed_at_enqueue(void **state) {
    (void)state;
    jobdb *db = fresh_db("seeds.db");
    sd_job specs[3];
    make_spec(&specs[0], "a", -1);
    make_spec(&specs[1], "b", 42);
    make_spec(&specs[2], "c", -1);
    sd_error err = {0};
    int64_t first, last;
    assert_int_equal(jobdb_enqueue(db, specs, 3, 2, 1000, &first, &last, &err), 0);
    assert_int_equal(first, 1);
    assert_int_equal(last, 6);
    /* derived: seed_base + id - 1; explicit: seed, seed + 1 for the copies */
    static const int64_t want[] = {1000, 1001, 42, 43, 1004, 1005};
    static const char *prompts[] = {"a", "a", "b", "b", "c", "c"};
    for (int i = 0; i < 6; i++) {
        sd_job j = get_job(db, i + 1);
        assert_int_equal(j.seed, want[i]);
        assert_string_equal(j.prompt, prompts[i]);
        assert_int_equal(j.status, SD_JOB_PENDING);
        assert_int_equal(j.attempts, 0);
        sd_job_free(&j);
    }
    /* a second enqueue continues the ids; its derived seeds follow the ids too */
    assert_int_equal(jobdb_enqueue(db, specs, 1, 1, 0, &first, &last, &err), 0);
    assert_int_equal(first, 7);
    sd_job j = get_job(db, 7);
    assert_int_equal(j.seed, 6);
    sd_job_free(&j);
    for (int i = 0; i < 3; i++) sd_job_free(&specs[i]);
    jobdb_close(db);
}

static void test_jobdb_enqueue_is_all_or_nothing(void **state) {
    (void)state;
    jobdb *db = fresh_db("atomic.db");
    add_jobs(db, 2);
    sd_job specs[3];
    make_spec(&specs[0], "ok", -1);
    make_spec(&specs[1], "ok too", -1);
    make_spec(&specs[2], "bad", -1);
    specs[2].steps = 0;
    specs[2].source = strdup("p.jsonl:3");
    sd_error err = {0};
    assert_int_equal(jobdb_enqueue(db, specs, 3, 1, 0, NULL, NULL, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "p.jsonl:3: steps"));
    jobdb_summary s = summary(db);
    assert_int_equal(s.total, 2);
    jobdb_summary_free(&s);
    for (int i = 0; i < 3; i++) sd_job_free(&specs[i]);
    jobdb_close(db);
}

static void test_jobdb_claim_takes_the_lowest_pending_id_and_returns_every_field(void **state) {
    (void)state;
    jobdb *db = fresh_db("claim.db");
    sd_job spec;
    make_spec(&spec, "a red fox", 7);
    spec.sampler = SD_SAMPLER_DPMPP_2M;
    spec.karras = 1;
    spec.cfg_scale = 5.5;
    spec.width = 640;
    spec.height = 384;
    spec.clip_skip = 2;
    spec.steps = 33;
    spec.init_image = strdup("/data/in.png");
    spec.mask = strdup("/data/mask.png");
    spec.strength = 0.75;
    spec.source = strdup("p.jsonl:1");
    sd_error err = {0};
    assert_int_equal(jobdb_enqueue(db, &spec, 1, 1, 0, NULL, NULL, &err), 0);
    add_jobs(db, 2);
    begin_run(db, 3);
    sd_job j;
    assert_int_equal(jobdb_claim(db, "node1:3", &j, &err), 1);
    assert_int_equal(j.id, 1);
    assert_int_equal(j.status, SD_JOB_RUNNING);
    assert_string_equal(j.claimed_by, "node1:3");
    assert_int_equal(j.run_id, jobdb_run_id(db));
    assert_true(j.claimed_at > 0 && j.enqueued_at > 0);
    assert_string_equal(j.prompt, "a red fox");
    assert_string_equal(j.negative_prompt, "blurry");
    assert_int_equal(j.seed, 7);
    assert_int_equal(j.steps, 33);
    assert_true(j.cfg_scale == 5.5);
    assert_int_equal(j.sampler, SD_SAMPLER_DPMPP_2M);
    assert_int_equal(j.karras, 1);
    assert_int_equal(j.width, 640);
    assert_int_equal(j.height, 384);
    assert_int_equal(j.clip_skip, 2);
    assert_string_equal(j.init_image, "/data/in.png");
    assert_string_equal(j.mask, "/data/mask.png");
    assert_true(j.strength == 0.75);
    assert_string_equal(j.source, "p.jsonl:1");
    assert_null(j.output_path);
    assert_string_equal(j.png_sha256, "");
    sd_job copy;
    assert_int_equal(sd_job_copy(&copy, &j, &err), 0);
    assert_string_equal(copy.prompt, j.prompt);
    assert_ptr_not_equal(copy.prompt, j.prompt);
    sd_job_free(&copy);
    sd_job_free(&j);
    assert_int_equal(claim_one(db, "node1:4"), 2);
    assert_int_equal(claim_one(db, "node1:5"), 3);
    assert_int_equal(claim_one(db, "node1:6"), 0); /* nothing pending */
    sd_job_free(&spec);
    jobdb_close(db);
}

static void test_jobdb_a_finished_job_is_never_rendered_twice(void **state) {
    (void)state;
    const char *path = tu_tmp("twice.db");
    jobdb *db = fresh_db("twice.db");
    add_jobs(db, 3);
    begin_run(db, 3);
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(claim_one(db, "n:1"), i);
        finish_one(db, i);
    }
    assert_int_equal(claim_one(db, "n:1"), 0);
    sd_error err = {0};
    assert_int_equal(jobdb_finish(db, 2, "other.png", SHA, 1, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "already done"));
    sd_job j = get_job(db, 2);
    assert_int_equal(j.status, SD_JOB_DONE);
    assert_string_equal(j.output_path, "out/000002.png");
    assert_string_equal(j.png_sha256, SHA);
    assert_true(j.render_seconds == 1.5);
    assert_true(j.finished_at > 0);
    sd_job_free(&j);
    assert_int_equal(jobdb_run_end(db, "complete", &err), 0);
    jobdb_close(db);
    /* a later run recovers nothing and finds nothing to claim */
    db = open_db(path);
    begin_run(db, 3);
    int requeued = -1, failed = -1;
    assert_int_equal(jobdb_recover(db, &requeued, &failed, &err), 0);
    assert_int_equal(requeued, 0);
    assert_int_equal(failed, 0);
    assert_int_equal(claim_one(db, "n:1"), 0);
    jobdb_close(db);
}

static void test_jobdb_finish_and_fail_are_refused_for_a_job_not_held_by_this_run(void **state) {
    (void)state;
    const char *path = tu_tmp("held.db");
    jobdb *a = fresh_db("held.db");
    add_jobs(a, 3);
    begin_run(a, 3);
    jobdb *b = open_db(path);
    begin_run(b, 3);
    assert_int_equal(claim_one(a, "a:1"), 1);
    sd_error err = {0};
    /* held by another run */
    assert_int_equal(jobdb_finish(b, 1, "x.png", SHA, 1, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "held by run"));
    assert_non_null(strstr(err.msg, jobdb_run_instance(a)));
    assert_int_equal(jobdb_fail(b, 1, "boom", 1, NULL, &err), SD_EINPUT);
    /* never claimed */
    assert_int_equal(jobdb_finish(a, 2, "x.png", SHA, 1, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "pending"));
    /* no such job */
    assert_int_equal(jobdb_finish(a, 99, "x.png", SHA, 1, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "no such job"));
    /* malformed results never reach the table */
    assert_int_equal(jobdb_finish(a, 1, "x.png", "not-a-hash", 1, &err), SD_EINPUT);
    assert_int_equal(jobdb_finish(a, 1, "", SHA, 1, &err), SD_EINPUT);
    assert_int_equal(jobdb_finish(a, 1, "x.png", SHA, NAN, &err), SD_EINPUT);
    /* nothing changed */
    sd_job j = get_job(a, 1);
    assert_int_equal(j.status, SD_JOB_RUNNING);
    assert_int_equal(j.attempts, 0);
    assert_int_equal(j.run_id, jobdb_run_id(a));
    sd_job_free(&j);
    assert_int_equal(status_of(a, 2), SD_JOB_PENDING);
    finish_one(a, 1);
    jobdb_close(b);
    jobdb_close(a);
}

static void test_jobdb_fail_retries_until_max_attempts_then_marks_failed(void **state) {
    (void)state;
    jobdb *db = fresh_db("fail.db");
    add_jobs(db, 2);
    begin_run(db, 3);
    sd_error err = {0};
    sd_job_status now;
    for (int attempt = 1; attempt <= 3; attempt++) {
        assert_int_equal(claim_one(db, "n:2"), 1); /* the retry is the lowest pending id again */
        char msg[32];
        snprintf(msg, sizeof msg, "out of memory #%d", attempt);
        assert_int_equal(jobdb_fail(db, 1, msg, 1, &now, &err), 0);
        assert_int_equal(now, attempt < 3 ? SD_JOB_PENDING : SD_JOB_FAILED);
        sd_job j = get_job(db, 1);
        assert_int_equal(j.attempts, attempt);
        assert_string_equal(j.error, msg);
        assert_true(attempt < 3 ? j.finished_at == 0 : j.finished_at > 0);
        sd_job_free(&j);
    }
    /* a failed job is not claimed again */
    assert_int_equal(claim_one(db, "n:2"), 2);
    /* retry = 0: an error another try cannot fix fails at once */
    assert_int_equal(jobdb_fail(db, 2, "init image unreadable", 0, &now, &err), 0);
    assert_int_equal(now, SD_JOB_FAILED);
    assert_int_equal(claim_one(db, "n:2"), 0);
    jobdb_summary s = summary(db);
    assert_int_equal(s.failed, 2);
    assert_int_equal(s.n_errors, 2);
    assert_int_equal(s.errors[0].job_id, 2);
    assert_string_equal(s.errors[0].error, "init image unreadable");
    jobdb_summary_free(&s);
    jobdb_close(db);
}

static void test_jobdb_recover_requeues_a_dead_runs_jobs_counting_the_attempt(void **state) {
    (void)state;
    const char *path = tu_tmp("recover.db");
    jobdb *dead = fresh_db("recover.db");
    add_jobs(dead, 4);
    begin_run(dead, 3);
    char dead_instance[JOBDB_INSTANCE_MAX];
    snprintf(dead_instance, sizeof dead_instance, "%s", jobdb_run_instance(dead));
    assert_int_equal(claim_one(dead, "nodeA:1"), 1);
    assert_int_equal(claim_one(dead, "nodeA:2"), 2);
    finish_one(dead, 2);
    assert_int_equal(claim_one(dead, "nodeA:3"), 3);
    jobdb_close(dead); /* the run vanishes without jobdb_run_end */

    jobdb *db = open_db(path);
    begin_run(db, 3);
    assert_int_equal(claim_one(db, "nodeB:1"), 4); /* our own running job must survive recovery */
    int requeued = 0, failed = 0;
    sd_error err = {0};
    assert_int_equal(jobdb_recover(db, &requeued, &failed, &err), 0);
    assert_int_equal(requeued, 2);
    assert_int_equal(failed, 0);
    sd_job j = get_job(db, 1);
    assert_int_equal(j.status, SD_JOB_PENDING);
    assert_int_equal(j.attempts, 1);
    assert_non_null(j.error);
    assert_non_null(strstr(j.error, dead_instance));
    assert_non_null(strstr(j.error, "nodeA:1"));
    sd_job_free(&j);
    assert_int_equal(status_of(db, 2), SD_JOB_DONE);
    assert_int_equal(status_of(db, 3), SD_JOB_PENDING);
    assert_int_equal(status_of(db, 4), SD_JOB_RUNNING);
    /* the dead run is marked lost, ours is not */
    jobdb_summary s = summary(db);
    assert_int_equal(s.pending, 2);
    assert_int_equal(s.running, 1);
    assert_int_equal(s.done, 1);
    assert_string_equal(s.last_run_end_status, "");
    jobdb_summary_free(&s);
    jobdb_close(db);
    assert_int_equal(raw_sql(path, "SELECT count(*) FROM runs WHERE end_status = 'lost'"), 1);
}

static void test_jobdb_recover_fails_a_job_that_keeps_killing_its_run(void **state) {
    (void)state;
    const char *path = tu_tmp("poison.db");
    remove_db(path);
    for (int run = 1; run <= 3; run++) {
        jobdb *db = open_db(path);
        if (run == 1) add_jobs(db, 1);
        begin_run(db, 2);
        int requeued = 0, failed = 0;
        sd_error err = {0};
        assert_int_equal(jobdb_recover(db, &requeued, &failed, &err), 0);
        assert_int_equal(requeued, run == 2 ? 1 : 0);
        assert_int_equal(failed, run == 3 ? 1 : 0);
        if (run < 3) assert_int_equal(claim_one(db, "n:1"), 1);
        else assert_int_equal(claim_one(db, "n:1"), 0);
        jobdb_close(db); /* dies while rendering */
    }
    jobdb *db = open_db(path);
    sd_job j = get_job(db, 1);
    assert_int_equal(j.status, SD_JOB_FAILED);
    assert_int_equal(j.attempts, 2);
    assert_non_null(strstr(j.error, "attempt 2 of 2"));
    sd_job_free(&j);
    jobdb_close(db);
}

static void test_jobdb_release_on_graceful_stop_returns_jobs_without_counting_an_attempt(void **state) {
    (void)state;
    const char *path = tu_tmp("release.db");
    jobdb *other = fresh_db("release.db");
    add_jobs(other, 5);
    begin_run(other, 3);
    assert_int_equal(claim_one(other, "o:1"), 1);
    jobdb *db = open_db(path);
    begin_run(db, 3);
    for (int i = 2; i <= 4; i++) assert_int_equal(claim_one(db, "n:1"), i);
    int released = 0;
    sd_error err = {0};
    assert_int_equal(jobdb_release(db, &released, &err), 0);
    assert_int_equal(released, 3);
    for (int i = 2; i <= 4; i++) {
        sd_job j = get_job(db, i);
        assert_int_equal(j.status, SD_JOB_PENDING);
        assert_int_equal(j.attempts, 0);
        sd_job_free(&j);
    }
    assert_int_equal(status_of(db, 1), SD_JOB_RUNNING); /* another run's job is not ours to release */
    assert_int_equal(jobdb_run_end(db, "stopped", &err), 0);
    /* after the run ended, state changes need a new run */
    assert_true(jobdb_claim(db, "n:1", &(sd_job){0}, &err) < 0);
    jobdb_close(db);
    jobdb_close(other);
}

/* A child process that claims two jobs, finishes one and is killed with SIGKILL mid-run. */
static void kill9_child(const char *path) {
    jobdb *db = NULL;
    sd_error err = {0};
    jobdb_open_options o = {.create = 0};
    if (jobdb_open(&db, path, &o, &err) < 0) _exit(3);
    jobdb_run_config c = {.ranks = 2};
    if (jobdb_run_begin(db, &c, &err) < 0) _exit(4);
    sd_job j;
    for (int k = 0; k < 2; k++) {
        if (jobdb_claim(db, "child:1", &j, &err) != 1) _exit(5);
        if (k == 0 && jobdb_finish(db, j.id, "a.png", SHA, 2.0, &err) < 0) _exit(6);
        sd_job_free(&j);
    }
    raise(SIGKILL);
    _exit(7);
}

static void test_jobdb_state_after_kill_9_is_the_last_committed_one_and_recoverable(void **state) {
    (void)state;
    const char *path = tu_tmp("kill9.db");
    jobdb *db = fresh_db("kill9.db");
    add_jobs(db, 5);
    jobdb_close(db);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) kill9_child(path);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

    db = open_db(path);
    sd_error err = {0};
    assert_int_equal(jobdb_check_integrity(db, &err), 0);
    begin_run(db, 3);
    int requeued = 0, failed = 0;
    assert_int_equal(jobdb_recover(db, &requeued, &failed, &err), 0);
    assert_int_equal(requeued, 1);
    assert_int_equal(status_of(db, 1), SD_JOB_DONE);
    sd_job j = get_job(db, 2);
    assert_int_equal(j.status, SD_JOB_PENDING);
    assert_int_equal(j.attempts, 1);
    sd_job_free(&j);
    /* the rest renders normally, job 1 is not rendered again */
    for (int64_t id; (id = claim_one(db, "n:1")) != 0;) {
        assert_true(id >= 2);
        finish_one(db, id);
    }
    jobdb_summary s = summary(db);
    assert_int_equal(s.done, 5);
    assert_int_equal(s.total, 5);
    jobdb_summary_free(&s);
    jobdb_close(db);
}

/* Waits for the start signal on go, then claims and finishes until nothing is
 * pending; writes each claimed id to fd. */
static void racer(const char *path, int go, int fd, const char *who) {
    jobdb *db = NULL;
    sd_error err = {0};
    jobdb_open_options o = {.create = 0};
    if (jobdb_open(&db, path, &o, &err) < 0) _exit(3);
    if (jobdb_run_begin(db, NULL, &err) < 0) _exit(4);
    char c;
    if (read(go, &c, 1) != 1) _exit(8);
    sd_job j;
    int rc;
    while ((rc = jobdb_claim(db, who, &j, &err)) == 1) {
        int64_t id = j.id;
        sd_job_free(&j);
        if (write(fd, &id, sizeof id) != (ssize_t)sizeof id) _exit(5);
        if (jobdb_finish(db, id, "x.png", SHA, 0.1, &err) < 0) _exit(6);
        /* a moment outside the lock (a render, in real life): SQLite's lock is not
         * fair, and without a gap one process may take every job while the other sleeps */
        usleep(1000);
    }
    jobdb_close(db);
    _exit(rc == 0 ? 0 : 7);
}

static void test_jobdb_two_processes_racing_to_claim_take_every_job_exactly_once(void **state) {
    (void)state;
    enum { N = 150, P = 2 };
    const char *path = tu_tmp("race.db");
    jobdb *db = fresh_db("race.db");
    add_jobs(db, N);
    jobdb_close(db);
    int fds[P][2], go[2];
    pid_t pids[P];
    assert_int_equal(pipe(go), 0);
    fflush(NULL);
    for (int p = 0; p < P; p++) {
        assert_int_equal(pipe(fds[p]), 0);
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            close(fds[p][0]);
            close(go[1]);
            racer(path, go[0], fds[p][1], p ? "racer:1" : "racer:0");
        }
        close(fds[p][1]);
    }
    /* both are connected and waiting: start them together */
    close(go[0]);
    assert_int_equal(write(go[1], "gg", 2), 2);
    close(go[1]);
    int seen[N + 1] = {0};
    int per[P] = {0};
    for (int p = 0; p < P; p++) {
        int64_t id;
        while (read(fds[p][0], &id, sizeof id) == (ssize_t)sizeof id) {
            assert_true(id >= 1 && id <= N);
            seen[id]++;
            per[p]++;
        }
        close(fds[p][0]);
        int st;
        assert_int_equal(waitpid(pids[p], &st, 0), pids[p]);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("racer %d exited with status %d", p, st);
    }
    for (int id = 1; id <= N; id++)
        if (seen[id] != 1) fail_msg("job %d was claimed %d times", id, seen[id]);
    assert_int_equal(per[0] + per[1], N);
    print_message("racers claimed %d and %d jobs\n", per[0], per[1]);
    assert_true(per[0] > 0 && per[1] > 0); /* they did race */
    db = open_db(path);
    jobdb_summary s = summary(db);
    assert_int_equal(s.done, N);
    jobdb_summary_free(&s);
    sd_error err = {0};
    assert_int_equal(jobdb_check_integrity(db, &err), 0);
    jobdb_close(db);
}

static void test_jobdb_migrates_a_version_1_database_keeping_its_rows(void **state) {
    (void)state;
    const char *path = tu_tmp("v1.db");
    remove_db(path);
    /* a database as the previous version made it: only 001_init.sql applied */
    jobdb *db = NULL;
    sd_error err = {0};
    jobdb_open_options o = {.create = 1, .schema_version = 1};
    assert_int_equal(jobdb_open(&db, path, &o, &err), 0);
    assert_int_equal(jobdb_schema_version(db), 1);
    add_jobs(db, 3);
    jobdb_close(db);
    assert_int_equal(raw_sql(path, "PRAGMA user_version"), 1);
    assert_int_equal(raw_sql(path, "SELECT count(*) FROM sqlite_master WHERE name = 'metrics'"), 0);
    /* rows the old version wrote: a run that died holding job 2, after finishing job 1 */
    raw_sql(path, "INSERT INTO runs (instance, host, ranks, started_at) VALUES ('old-run', 'h', 2, 1000)");
    raw_sql(path, "UPDATE jobs SET status = 'done', run_id = 1, claimed_by = 'h:1', output_path = 'o.png', "
                  "png_sha256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', "
                  "finished_at = 1010 WHERE id = 1");
    raw_sql(path, "UPDATE jobs SET status = 'running', run_id = 1, claimed_by = 'h:2' WHERE id = 2");

    db = open_db(path);
    assert_int_equal(jobdb_schema_version(db), jobdb_schema_latest());
    assert_int_equal(jobdb_check_integrity(db, &err), 0);
    for (int i = 1; i <= 3; i++) {
        sd_job j = get_job(db, i);
        char p[32];
        snprintf(p, sizeof p, "prompt %d", i);
        assert_string_equal(j.prompt, p);
        assert_int_equal(j.seed, i - 1);
        assert_int_equal(j.status, i == 1 ? SD_JOB_DONE : i == 2 ? SD_JOB_RUNNING : SD_JOB_PENDING);
        sd_job_free(&j);
    }
    /* the new schema works on the old rows */
    begin_run(db, 3);
    int requeued = 0;
    assert_int_equal(jobdb_recover(db, &requeued, NULL, &err), 0);
    assert_int_equal(requeued, 1);
    assert_int_equal(jobdb_metric_add(db, "fid", 12.5, "{\"n\": 3}", &err), 0);
    jobdb_summary s = summary(db);
    assert_int_equal(s.done, 1);
    assert_int_equal(s.pending, 2);
    jobdb_summary_free(&s);
    jobdb_close(db);
    assert_int_equal(raw_sql(path, "SELECT count(*) FROM metrics"), 1);
    assert_int_equal(raw_sql(path, "SELECT count(*) FROM sqlite_master WHERE name = 'jobs_run_status'"), 1);
    assert_int_equal(raw_sql(path, "SELECT count(*) FROM runs WHERE last_seen_at IS NULL"), 1); /* the old run */
}

static void test_jobdb_refuses_a_database_from_a_newer_sdrender(void **state) {
    (void)state;
    const char *path = tu_tmp("newer.db");
    jobdb_close(fresh_db("newer.db"));
    raw_sql(path, "PRAGMA user_version = 99");
    jobdb *db = NULL;
    sd_error err = {0};
    assert_int_equal(jobdb_open(&db, path, NULL, &err), SD_EUNSUPPORTED);
    assert_null(db);
    assert_non_null(strstr(err.msg, "newer sdrender"));
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void test_jobdb_rejects_missing_foreign_and_non_sqlite_files_with_a_clear_error(void **state) {
    (void)state;
    jobdb *db = NULL;
    sd_error err = {0};
    /* missing without create */
    remove_db(tu_tmp("missing.db"));
    assert_int_equal(jobdb_open(&db, tu_tmp("missing.db"), NULL, &err), SD_ENOTFOUND);
    assert_non_null(strstr(err.msg, "no such job database"));
    assert_false(sd_fs_is_file(tu_tmp("missing.db")));
    /* not SQLite at all */
    const char *text = tu_tmp("notes.db");
    write_text(text, "These are my notes, not a database. They go on for a while so that the file is longer than "
                     "SQLite's 100-byte header.\n");
    assert_int_equal(jobdb_open(&db, text, NULL, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "not an SQLite database"));
    assert_non_null(strstr(err.msg, text));
    /* SQLite, but somebody else's */
    const char *foreign = tu_tmp("foreign.db");
    remove_db(foreign);
    raw_sql(foreign, "CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)");
    assert_int_equal(jobdb_open(&db, foreign, NULL, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "not an sdrender job database"));
    assert_int_equal(raw_sql(foreign, "SELECT count(*) FROM sqlite_master WHERE name = 'jobs'"), 0);
    /* a directory */
    assert_int_equal(jobdb_open(&db, tu_tmpdir(), NULL, &err), SD_EINPUT);
    assert_null(db);
}

static void test_jobdb_corruption_is_reported_not_ignored(void **state) {
    (void)state;
    const char *path = tu_tmp("corrupt.db");
    jobdb *db = fresh_db("corrupt.db");
    add_jobs(db, 400); /* several pages of jobs */
    jobdb_close(db);
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    assert_true(size > 8 * 4096);
    /* scribble over the pages after the schema page */
    for (long off = 4096; off < size; off += 4096) {
        fseek(fp, off + 16, SEEK_SET);
        for (int i = 0; i < 64; i++) fputc(0xA5, fp);
    }
    fclose(fp);
    sd_error err = {0};
    int rc = jobdb_open(&db, path, NULL, &err);
    if (rc == 0) {
        rc = jobdb_check_integrity(db, &err);
        jobdb_close(db);
    }
    assert_int_equal(rc, SD_EINPUT);
    assert_true(strstr(err.msg, "corrupt") || strstr(err.msg, "integrity check failed"));
    assert_non_null(strstr(err.msg, path));
}

static void test_jobdb_journal_mode_follows_SDRENDER_DB_JOURNAL(void **state) {
    (void)state;
    const char *path = tu_tmp("journal.db");
    remove_db(path);
    setenv("SDRENDER_DB_JOURNAL", "delete", 1);
    jobdb *db = open_db(path);
    assert_string_equal(jobdb_journal_mode(db), "delete");
    add_jobs(db, 2);
    jobdb_close(db);
    sqlite3 *h;
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "delete");
    sqlite3_finalize(st);
    sqlite3_close(h);
    /* a reader that keeps the journal leaves it alone; a bad value is an error */
    jobdb_open_options keep = {.keep_journal = 1};
    sd_error err = {0};
    unsetenv("SDRENDER_DB_JOURNAL");
    assert_int_equal(jobdb_open(&db, path, &keep, &err), 0);
    assert_string_equal(jobdb_journal_mode(db), "delete");
    jobdb_close(db);
    setenv("SDRENDER_DB_JOURNAL", "nfs-please", 1);
    assert_int_equal(jobdb_open(&db, path, NULL, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "SDRENDER_DB_JOURNAL"));
    unsetenv("SDRENDER_DB_JOURNAL");
    db = open_db(path);
    assert_string_equal(jobdb_journal_mode(db), "wal");
    jobdb_close(db);
}

static void test_jobdb_summary_gives_counts_rate_eta_and_latest_errors(void **state) {
    (void)state;
    jobdb *db = fresh_db("summary.db");
    add_jobs(db, 10);
    jobdb_summary s = summary(db);
    assert_int_equal(s.pending, 10);
    assert_int_equal(s.total, 10);
    assert_true(s.images_per_minute == 0);
    assert_true(s.eta_seconds == -1);
    assert_int_equal(s.last_run_id, 0);
    jobdb_summary_free(&s);

    jobdb_set_time(db, 1000000.0);
    begin_run(db, 3);
    for (int i = 1; i <= 6; i++) assert_int_equal(claim_one(db, "n:1"), i);
    jobdb_set_time(db, 1000060.0);
    for (int i = 1; i <= 6; i++) finish_one(db, i);
    assert_int_equal(claim_one(db, "n:1"), 7);
    sd_error err = {0};
    assert_int_equal(jobdb_fail(db, 7, "first error", 1, NULL, &err), 0);
    jobdb_set_time(db, 1000070.0);
    assert_int_equal(claim_one(db, "n:2"), 7);
    assert_int_equal(jobdb_fail(db, 7, "second error", 0, NULL, &err), 0);
    assert_int_equal(claim_one(db, "n:2"), 8);

    s = summary(db);
    assert_int_equal(s.done, 6);
    assert_int_equal(s.failed, 1);
    assert_int_equal(s.running, 1);
    assert_int_equal(s.pending, 2);
    assert_int_equal(s.total, 10);
    assert_true(fabs(s.images_per_minute - 6.0) < 1e-9); /* 6 images in the 60 s since the run began */
    assert_true(fabs(s.eta_seconds - 30.0) < 1e-6);      /* 3 left at 6 per minute */
    assert_int_equal(s.rate_run_id, jobdb_run_id(db));
    assert_int_equal(s.last_run_id, jobdb_run_id(db));
    assert_string_equal(s.last_run_instance, jobdb_run_instance(db));
    assert_int_equal(s.last_run_ranks, 4);
    assert_true(s.last_run_started_at == 1000000.0);
    assert_true(s.last_run_last_seen_at == 1000070.0);
    assert_int_equal(s.n_errors, 1); /* one job, its latest error */
    assert_string_equal(s.errors[0].error, "second error");
    assert_int_equal(s.errors[0].job_id, 7);
    assert_int_equal(s.errors[0].attempts, 2);
    assert_int_equal(s.errors[0].status, SD_JOB_FAILED);
    assert_string_equal(s.errors[0].claimed_by, "n:2");
    jobdb_summary_free(&s);
    jobdb_close(db);
}

static void test_jobdb_iterates_done_jobs_with_prompt_and_output_path(void **state) {
    (void)state;
    jobdb *db = fresh_db("iter.db");
    add_jobs(db, 5);
    begin_run(db, 3);
    for (int i = 1; i <= 4; i++) assert_int_equal(claim_one(db, "n:1"), i);
    finish_one(db, 3);
    finish_one(db, 1);
    finish_one(db, 4);
    jobdb_iter *it;
    sd_error err = {0};
    assert_int_equal(jobdb_iter_begin(db, SD_JOB_DONE, &it, &err), 0);
    static const int64_t want[] = {1, 3, 4};
    sd_job j;
    int n = 0, rc;
    while ((rc = jobdb_iter_next(it, &j, &err)) == 1) {
        assert_true(n < 3);
        assert_int_equal(j.id, want[n]);
        char p[32], o[32];
        snprintf(p, sizeof p, "prompt %lld", (long long)j.id);
        snprintf(o, sizeof o, "out/%06lld.png", (long long)j.id);
        assert_string_equal(j.prompt, p);
        assert_string_equal(j.output_path, o);
        assert_string_equal(j.png_sha256, SHA);
        sd_job_free(&j);
        n++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(n, 3);
    jobdb_iter_end(it);
    jobdb_close(db);
}

static void test_jobdb_metrics_are_stored_with_their_run(void **state) {
    (void)state;
    const char *path = tu_tmp("metrics.db");
    jobdb *db = fresh_db("metrics.db");
    sd_error err = {0};
    assert_int_equal(jobdb_metric_add(db, "fid", 23.25, "{\"images\": 30000}", &err), 0); /* outside a run */
    begin_run(db, 3);
    assert_int_equal(jobdb_metric_add(db, "clip_score", NAN, NULL, &err), 0);
    assert_int_equal(jobdb_metric_add(db, "recall", 0.5, "{oops", &err), SD_EINPUT);
    assert_int_equal(jobdb_metric_add(db, "", 0.5, NULL, &err), SD_EINPUT);
    jobdb_close(db);
    assert_int_equal(raw_sql(path, "SELECT count(*) FROM metrics"), 2);
    assert_int_equal(raw_sql(path, "SELECT count(*) FROM metrics WHERE name = 'fid' AND value = 23.25 AND run_id IS "
                                   "NULL AND details_json = '{\"images\": 30000}'"),
                     1);
    assert_int_equal(raw_sql(path, "SELECT count(*) FROM metrics WHERE name = 'clip_score' AND value IS NULL AND "
                                   "run_id = 1"),
                     1);
}

/* Begins a run with the exclusive check; returns its code (0 or SD_EBUSY) and the message in msg. */
static int begin_exclusive(jobdb *db, const char *host, char msg[SD_ERRMSG_MAX]) {
    sd_error err = {0};
    jobdb_run_config c = {.host = host, .exclusive_s = 600};
    int rc = jobdb_run_begin(db, &c, &err);
    snprintf(msg, SD_ERRMSG_MAX, "%s", err.msg);
    return rc;
}

static void test_jobdb_a_second_run_is_refused_while_the_first_looks_alive(void **state) {
    (void)state;
    char msg[SD_ERRMSG_MAX];
    sd_error err = {0};
    /* on this host, with a live process (ours): refused, and nothing changes */
    jobdb *a = fresh_db("live.db");
    add_jobs(a, 2);
    begin_run(a, 3);
    assert_int_equal(claim_one(a, "n:1"), 1);
    jobdb *b = open_db(tu_tmp("live.db"));
    assert_int_equal(begin_exclusive(b, NULL, msg), SD_EBUSY);
    assert_non_null(strstr(msg, jobdb_run_instance(a)));
    assert_non_null(strstr(msg, "--takeover"));
    assert_int_equal(jobdb_run_id(b), 0);
    assert_int_equal(status_of(a, 1), SD_JOB_RUNNING);
    /* once it has ended, the next run starts */
    assert_int_equal(jobdb_release(a, NULL, &err), 0);
    assert_int_equal(jobdb_run_end(a, "stopped", &err), 0);
    assert_int_equal(begin_exclusive(b, NULL, msg), 0);
    jobdb_close(a);
    jobdb_close(b);

    /* on another host: alive while its heartbeat is fresh */
    const double t = 1.8e9;
    jobdb *c = fresh_db("live2.db");
    add_jobs(c, 2);
    jobdb_set_time(c, t);
    jobdb_run_config cc = {.host = "elsewhere"};
    assert_int_equal(jobdb_run_begin(c, &cc, &err), 0);
    assert_int_equal(claim_one(c, "elsewhere:1"), 1);
    jobdb_set_time(c, t + 500);
    assert_int_equal(jobdb_run_touch(c, &err), 0);
    jobdb_close(c); /* its node dies */
    jobdb *d = open_db(tu_tmp("live2.db"));
    jobdb_set_time(d, t + 700);
    assert_int_equal(begin_exclusive(d, NULL, msg), SD_EBUSY);
    assert_non_null(strstr(msg, "host elsewhere"));
    assert_non_null(strstr(msg, "last seen 200 s ago"));
    jobdb_set_time(d, t + 500 + 600);
    assert_int_equal(begin_exclusive(d, NULL, msg), 0);
    int requeued = 0;
    assert_int_equal(jobdb_recover(d, &requeued, NULL, &err), 0);
    assert_int_equal(requeued, 1);
    jobdb_close(d);

    /* on this host, a process that is gone: not alive however recent its heartbeat */
    const char *path = tu_tmp("live3.db");
    jobdb *e = fresh_db("live3.db");
    add_jobs(e, 2);
    jobdb_close(e);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        jobdb *x = NULL;
        jobdb_open_options o = {.create = 0};
        sd_job j;
        int ok = jobdb_open(&x, path, &o, &err) == 0 && jobdb_run_begin(x, NULL, &err) == 0 &&
                 jobdb_claim(x, "n:1", &j, &err) == 1;
        _exit(ok ? 0 : 1); /* no run_end, no close: the process just ends */
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    e = open_db(path);
    assert_int_equal(begin_exclusive(e, NULL, msg), 0);
    assert_int_equal(jobdb_recover(e, &requeued, NULL, &err), 0);
    assert_int_equal(requeued, 1);
    jobdb_close(e);
}

/* Begins a run of shard index/count with the exclusive check; returns its code. */
static int begin_shard(jobdb *db, int index, int count, char msg[SD_ERRMSG_MAX]) {
    sd_error err = {0};
    jobdb_run_config c = {.exclusive_s = 600, .shard_index = index, .shard_count = count};
    int rc = jobdb_run_begin(db, &c, &err);
    snprintf(msg, SD_ERRMSG_MAX, "%s", err.msg);
    return rc;
}

/* run --shard I/N: masters of different shards share the table at once, each claims only its jobs
 * (id % N == I), recovers only its own shard's interrupted jobs, and any overlapping run is refused. */
static void test_jobdb_shards_share_a_table_without_sharing_a_job(void **state) {
    (void)state;
    char msg[SD_ERRMSG_MAX];
    sd_error err = {0};
    const char *path = tu_tmp("shards.db");
    jobdb *a = fresh_db("shards.db");
    add_jobs(a, 7);
    jobdb *b = open_db(path), *c = open_db(path), *d = open_db(path);
    assert_int_equal(begin_shard(a, 0, 3, msg), 0);
    assert_int_equal(begin_shard(b, 1, 3, msg), 0);
    assert_int_equal(raw_sql(path, "SELECT count(*) FROM runs WHERE shard_count = 3"), 2);
    /* overlapping runs are refused while those look alive: no shard, the same shard, another count */
    assert_int_equal(begin_shard(c, 0, 0, msg), SD_EBUSY);
    assert_int_equal(begin_shard(c, 1, 3, msg), SD_EBUSY);
    assert_int_equal(begin_shard(c, 0, 2, msg), SD_EBUSY);
    assert_int_equal(begin_shard(c, 3, 3, msg), SD_EINPUT);
    assert_non_null(strstr(msg, "shard 3/3"));
    /* claims: 0/3 takes 3 and 6 (ids 1..7: id % 3 == 0), 1/3 takes 1, 4, 7 */
    int64_t want_a[] = {3, 6}, want_b[] = {1, 4, 7};
    for (int i = 0; i < 2; i++) assert_int_equal(claim_one(a, "a:1"), want_a[i]);
    assert_int_equal(claim_one(a, "a:1"), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(claim_one(b, "b:1"), want_b[i]);
    assert_int_equal(claim_one(b, "b:1"), 0);
    /* a third shard starts beside them; b dies holding 1, 4, 7 (its process "ends": a run on
       another host whose heartbeat goes stale) */
    assert_int_equal(begin_shard(d, 2, 3, msg), 0);
    int requeued = -1;
    assert_int_equal(jobdb_recover(d, &requeued, NULL, &err), 0);
    assert_int_equal(requeued, 0); /* shard 2 holds nothing of a's or b's */
    assert_int_equal(claim_one(d, "d:1"), 2);
    assert_int_equal(status_of(a, 3), SD_JOB_RUNNING);
    assert_int_equal(status_of(a, 1), SD_JOB_RUNNING);
    jobdb_close(d);
    jobdb_close(c);
    jobdb_close(b);
    /* a new master of shard 1/3 (b's pid is ours and alive, so take over explicitly: no exclusive
       check) recovers b's three jobs and leaves a's running ones alone */
    jobdb *e = open_db(path);
    jobdb_run_config ce = {.shard_index = 1, .shard_count = 3};
    assert_int_equal(jobdb_run_begin(e, &ce, &err), 0);
    assert_int_equal(jobdb_recover(e, &requeued, NULL, &err), 0);
    assert_int_equal(requeued, 3);
    assert_int_equal(status_of(e, 3), SD_JOB_RUNNING);
    assert_int_equal(status_of(e, 6), SD_JOB_RUNNING);
    assert_int_equal(status_of(e, 4), SD_JOB_PENDING);
    assert_int_equal(raw_sql(path, "SELECT count(*) FROM runs WHERE end_status = 'lost'"), 1);
    jobdb_close(e);
    jobdb_close(a);
}

static void test_jobdb_run_begin_records_the_run_and_rejects_bad_settings(void **state) {
    (void)state;
    const char *path = tu_tmp("runs.db");
    jobdb *db = fresh_db("runs.db");
    sd_error err = {0};
    jobdb_run_config bad = {.settings_json = "{not json"};
    assert_int_equal(jobdb_run_begin(db, &bad, &err), SD_EINPUT);
    jobdb_run_config bad_hash = {.model_sha256 = "ABC"};
    assert_int_equal(jobdb_run_begin(db, &bad_hash, &err), SD_EINPUT);
    assert_int_equal(jobdb_run_id(db), 0);
    begin_run(db, 3);
    char first[JOBDB_INSTANCE_MAX];
    snprintf(first, sizeof first, "%s", jobdb_run_instance(db));
    assert_true(strlen(first) > 10);
    assert_int_equal(jobdb_run_end(db, "complete", &err), 0);
    begin_run(db, 3);
    assert_string_not_equal(first, jobdb_run_instance(db)); /* instance ids are unique */
    jobdb_close(db);
    assert_int_equal(raw_sql(path, "SELECT count(*) FROM runs WHERE ranks = 4 AND model_path = 'model.safetensors' "
                                   "AND host <> '' AND pid > 0"),
                     2);
    assert_int_equal(raw_sql(path, "SELECT count(*) FROM runs WHERE end_status = 'complete' AND ended_at > 0"), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobdb_new_database_has_the_latest_schema_and_passes_integrity_check),
        cmocka_unit_test(test_jobdb_ids_count_from_one_in_enqueue_order_and_seeds_are_fixed_at_enqueue),
        cmocka_unit_test(test_jobdb_enqueue_is_all_or_nothing),
        cmocka_unit_test(test_jobdb_claim_takes_the_lowest_pending_id_and_returns_every_field),
        cmocka_unit_test(test_jobdb_a_finished_job_is_never_rendered_twice),
        cmocka_unit_test(test_jobdb_finish_and_fail_are_refused_for_a_job_not_held_by_this_run),
        cmocka_unit_test(test_jobdb_fail_retries_until_max_attempts_then_marks_failed),
        cmocka_unit_test(test_jobdb_recover_requeues_a_dead_runs_jobs_counting_the_attempt),
        cmocka_unit_test(test_jobdb_recover_fails_a_job_that_keeps_killing_its_run),
        cmocka_unit_test(test_jobdb_release_on_graceful_stop_returns_jobs_without_counting_an_attempt),
        cmocka_unit_test(test_jobdb_state_after_kill_9_is_the_last_committed_one_and_recoverable),
        cmocka_unit_test(test_jobdb_two_processes_racing_to_claim_take_every_job_exactly_once),
        cmocka_unit_test(test_jobdb_migrates_a_version_1_database_keeping_its_rows),
        cmocka_unit_test(test_jobdb_refuses_a_database_from_a_newer_sdrender),
        cmocka_unit_test(test_jobdb_rejects_missing_foreign_and_non_sqlite_files_with_a_clear_error),
        cmocka_unit_test(test_jobdb_corruption_is_reported_not_ignored),
        cmocka_unit_test(test_jobdb_journal_mode_follows_SDRENDER_DB_JOURNAL),
        cmocka_unit_test(test_jobdb_summary_gives_counts_rate_eta_and_latest_errors),
        cmocka_unit_test(test_jobdb_iterates_done_jobs_with_prompt_and_output_path),
        cmocka_unit_test(test_jobdb_metrics_are_stored_with_their_run),
        cmocka_unit_test(test_jobdb_run_begin_records_the_run_and_rejects_bad_settings),
        cmocka_unit_test(test_jobdb_a_second_run_is_refused_while_the_first_looks_alive),
        cmocka_unit_test(test_jobdb_shards_share_a_table_without_sharing_a_job),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
