/*
 * Tests for mpi/runner: the master/worker protocol and its fault handling,
 * with a stand-in renderer (a few bytes per job) so scheduling is tested fast.
 * The same binary is the MPI program: `test_runner --child DB OUT MODE`.
 * The real renderer is tested end to end in tests/test_run.c.
 */
#include "testutil.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "jobdb.h"
#include "runner.h"
#include "sha256.h"

static const char *self_path;

#define MPIRUN "mpirun --allow-run-as-root --oversubscribe --mca odls_base_sigkill_timeout 2 -x OMP_NUM_THREADS=1"

/* ---- the child: an MPI program with a stand-in renderer ---- */

typedef struct {
    const char *out;
    const char *mode; /* "fast", "slow", "fail3" */
    int rank;
} fake_ctx;

static int fake_setup(void *ctx, int local_workers, const sd_group *group, void **state, sd_error *err) {
    (void)group;
    fake_ctx *c = ctx;
    /* leave our pid where the test can find it (to kill -9 a worker) */
    char p[512];
    snprintf(p, sizeof p, "%s/worker-%d.pid", c->out, (int)getpid());
    FILE *fp = fopen(p, "w");
    if (fp) fclose(fp);
    *state = c;
    return 0;
}

static int fake_render(void *state, const sd_job *job, const char *model_sha, const char *out_path, char sha[65],
                       double *secs, int *retry, sd_error *err) {
    fake_ctx *c = state;
    if (!strcmp(c->mode, "slow")) usleep(300000);
    if (!strcmp(c->mode, "fail3") && job->id == 3) {
        *retry = 1;
        return sd_err(err, SD_EINPUT, "job 3 always fails");
    }
    char body[256];
    int n = snprintf(body, sizeof body, "job %lld seed %lld %s\n", (long long)job->id, (long long)job->seed, job->prompt);
    sd_fs_atomic_file af;
    int rc = sd_fs_atomic_open(&af, out_path, err);
    if (rc < 0) return rc;
    if ((rc = sd_fs_atomic_write(&af, body, (size_t)n, err)) < 0) {
        sd_fs_atomic_abort(&af);
        return rc;
    }
    if ((rc = sd_fs_atomic_commit(&af, err)) < 0) return rc;
    sd_sha256_buffer(body, (size_t)n, sha);
    /* a log of every render, to check nothing is rendered twice */
    char log[512];
    snprintf(log, sizeof log, "%s/renders.log", c->out);
    int fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd >= 0) {
        char line[64];
        int l = snprintf(line, sizeof line, "%lld\n", (long long)job->id);
        if (write(fd, line, (size_t)l) != l) perror("write");
        close(fd);
    }
    *secs = 0.01;
    return 0;
}

static void fake_teardown(void *state) { (void)state; }

static int child_main(int argc, char **argv) {
    fake_ctx c = {.out = argv[3], .mode = argv[4]};
    sd_run_worker_ops ops = {.setup = fake_setup, .render = fake_render, .teardown = fake_teardown, .ctx = &c};
    sd_run_options o = {.db_path = argv[2], .out_dir = argv[3], .model_path = "fake", .grace = 30, .max_attempts = 2,
                        .group_size = 1, .quiet = 0, .wait_s = SD_RUN_WAIT_S};
    return sd_run_batch(&argc, &argv, &o, &ops);
}

/* ---- helpers for the tests ---- */

static void make_db(const char *db, int n) {
    unlink(db);
    jobdb *d;
    sd_error err = {0};
    jobdb_open_options oo = {.create = 1};
    assert_int_equal(jobdb_open(&d, db, &oo, &err), 0);
    sd_job *specs = calloc((size_t)n, sizeof *specs);
    for (int i = 0; i < n; i++) {
        char p[32];
        snprintf(p, sizeof p, "prompt %d", i + 1);
        specs[i].prompt = strdup(p);
        specs[i].negative_prompt = strdup("");
        specs[i].seed = -1;
        specs[i].steps = 2;
        specs[i].cfg_scale = 7.5;
        specs[i].sampler = SD_SAMPLER_DDIM;
        specs[i].width = specs[i].height = 64;
        specs[i].clip_skip = 1;
    }
    assert_int_equal(jobdb_enqueue(d, specs, (size_t)n, 1, 100, NULL, NULL, &err), 0);
    for (int i = 0; i < n; i++) sd_job_free(&specs[i]);
    free(specs);
    jobdb_close(d);
}

static jobdb_summary summary(const char *db) {
    jobdb *d;
    sd_error err = {0};
    jobdb_open_options oo = {.keep_journal = 1};
    if (jobdb_open(&d, db, &oo, &err) < 0) fail_msg("%s", err.msg);
    jobdb_summary s;
    assert_int_equal(jobdb_summary_get(d, 5, &s, &err), 0);
    assert_int_equal(jobdb_check_integrity(d, &err), 0);
    jobdb_close(d);
    return s;
}

/* Counts lines "id" in renders.log per id; returns the number of ids rendered more than once. */
static int count_renders(const char *out, int n, int *total) {
    char p[512];
    snprintf(p, sizeof p, "%s/renders.log", out);
    FILE *fp = fopen(p, "r");
    int *cnt = calloc((size_t)n + 1, sizeof *cnt), dup = 0;
    *total = 0;
    long id;
    while (fp && fscanf(fp, "%ld", &id) == 1) {
        if (id >= 1 && id <= n) cnt[id]++;
        (*total)++;
    }
    if (fp) fclose(fp);
    for (int i = 1; i <= n; i++) dup += cnt[i] > 1;
    free(cnt);
    return dup;
}

static void expect_all_outputs(const char *out, int n) {
    for (int i = 1; i <= n; i++) {
        char *p = sd_run_output_path(out, i);
        if (!sd_fs_is_file(p)) fail_msg("missing output %s", p);
        free(p);
    }
}

static void fresh_dir(const char *d) {
    tu_sh(NULL, "rm -rf '%s' && mkdir -p '%s'", d, d);
}

/* ---- tests ---- */

static void test_three_ranks_render_every_job_once(void **state) {
    (void)state;
    const char *db = tu_tmp("a.db"), *out = tu_tmp("out-a");
    fresh_dir(out);
    make_db(db, 12);
    char *log;
    int rc = tu_sh(&log, MPIRUN " -np 3 %s --child %s %s fast 2>&1", self_path, db, out);
    if (rc != 0) fail_msg("run failed (%d): %s", rc, log);
    assert_non_null(strstr(log, "worker"));
    free(log);
    jobdb_summary s = summary(db);
    assert_int_equal(s.done, 12);
    assert_int_equal(s.pending + s.running + s.failed, 0);
    assert_string_equal(s.last_run_end_status, "complete");
    jobdb_summary_free(&s);
    int total;
    assert_int_equal(count_renders(out, 12, &total), 0);
    assert_int_equal(total, 12);
    expect_all_outputs(out, 12);
}

static void test_single_rank_renders_without_workers(void **state) {
    (void)state;
    const char *db = tu_tmp("b.db"), *out = tu_tmp("out-b");
    fresh_dir(out);
    make_db(db, 4);
    char *log;
    int rc = tu_sh(&log, "%s --child %s %s fast 2>&1", self_path, db, out);
    if (rc != 0) fail_msg("run failed (%d): %s", rc, log);
    free(log);
    jobdb_summary s = summary(db);
    assert_int_equal(s.done, 4);
    jobdb_summary_free(&s);
    expect_all_outputs(out, 4);
}

static void test_a_job_failing_max_attempts_is_failed_and_the_run_goes_on(void **state) {
    (void)state;
    const char *db = tu_tmp("c.db"), *out = tu_tmp("out-c");
    fresh_dir(out);
    make_db(db, 6);
    char *log;
    int rc = tu_sh(&log, MPIRUN " -np 3 %s --child %s %s fail3 2>&1", self_path, db, out);
    if (rc != 0) fail_msg("run failed (%d): %s", rc, log);
    free(log);
    jobdb_summary s = summary(db);
    assert_int_equal(s.done, 5);
    assert_int_equal(s.failed, 1);
    assert_true(s.n_errors >= 1);
    assert_non_null(strstr(s.errors[0].error, "job 3 always fails"));
    jobdb_summary_free(&s);
}

/* kill -9 of one worker mid-run, then a second run: nothing lost, nothing rendered twice. */
static void test_kill9_of_a_worker_then_rerun_finishes_every_job_once(void **state) {
    (void)state;
    const char *db = tu_tmp("d.db"), *out = tu_tmp("out-d");
    fresh_dir(out);
    make_db(db, 20);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, MPIRUN " -np 3 %s --child %s %s slow > %s/run1.log 2>&1 &", self_path, db, out, out);
    assert_int_equal(system(cmd), 0);
    /* wait until a few jobs are done, then kill -9 one worker */
    int killed = 0;
    for (int i = 0; i < 200 && !killed; i++) {
        usleep(50000);
        int total;
        count_renders(out, 20, &total);
        if (total < 4) continue;
        char *pids;
        tu_sh(&pids, "ls %s | sed -n 's/^worker-\\([0-9]*\\)\\.pid$/\\1/p' | head -1", out);
        int pid = atoi(pids);
        free(pids);
        if (pid > 0 && kill(pid, SIGKILL) == 0) killed = 1;
    }
    assert_true(killed);
    /* mpirun tears the job down after a rank dies */
    for (int i = 0; i < 400; i++) {
        if (tu_sh(NULL, "pgrep -f '%s --child %s' >/dev/null", self_path, db) != 0) break;
        usleep(50000);
    }
    jobdb_summary s1 = summary(db);
    assert_true(s1.done < 20);
    jobdb_summary_free(&s1);
    char *log;
    int rc = tu_sh(&log, MPIRUN " -np 3 %s --child %s %s fast 2>&1", self_path, db, out);
    if (rc != 0) fail_msg("second run failed (%d): %s", rc, log);
    free(log);
    jobdb_summary s = summary(db);
    assert_int_equal(s.done, 20);
    assert_int_equal(s.pending + s.running + s.failed, 0);
    jobdb_summary_free(&s);
    expect_all_outputs(out, 20);
    /* no stale temporary files are left */
    char *tmp;
    tu_sh(&tmp, "ls %s | grep -c tmp", out);
    assert_int_equal(atoi(tmp), 0);
    free(tmp);
    /* a job finished in the first run was not rendered again by the second */
    jobdb *d;
    sd_error err = {0};
    jobdb_open_options oo = {.keep_journal = 1};
    assert_int_equal(jobdb_open(&d, db, &oo, &err), 0);
    int rerendered_done = 0;
    for (int id = 1; id <= 20; id++) {
        sd_job j;
        assert_int_equal(jobdb_job_get(d, id, &j, &err), 1);
        assert_int_equal(j.status, SD_JOB_DONE);
        sd_job_free(&j);
    }
    jobdb_close(d);
    int total, dups = count_renders(out, 20, &total);
    /* only the job(s) in flight on the killed worker (and any whose result was in transit) may render twice */
    assert_true(dups <= 2);
    assert_int_equal(rerendered_done, 0);
}

/* Starts a slow 3-rank run of 40 jobs in the background and waits until a few are rendered. */
static void start_slow_run(const char *db, const char *out) {
    fresh_dir(out);
    make_db(db, 40);
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "(" MPIRUN " -np 3 %s --child %s %s slow > %s/run.log 2>&1; echo $? > %s/rc) &", self_path,
             db, out, out, out);
    assert_int_equal(system(cmd), 0);
    for (int i = 0; i < 200; i++) {
        usleep(50000);
        int total;
        count_renders(out, 40, &total);
        if (total >= 3) break;
    }
}

/* Waits for the background run to end; checks it exited 0 and left no job running. */
static void expect_clean_stop(const char *db, const char *out) {
    char rcpath[600];
    snprintf(rcpath, sizeof rcpath, "%s/rc", out);
    for (int i = 0; i < 1200 && !sd_fs_is_file(rcpath); i++) usleep(50000);
    usleep(100000);
    char *rc, *log;
    tu_sh(&rc, "cat %s", rcpath);
    tu_sh(&log, "cat %s/run.log", out);
    if (atoi(rc) != 0) fail_msg("exit status %s after the stop signal: %s", rc, log);
    jobdb_summary s = summary(db);
    if (!(s.done >= 3 && s.done < 40)) fail_msg("%lld jobs done after the stop signal: %s", (long long)s.done, log);
    assert_int_equal(s.running, 0);
    assert_int_equal(s.done + s.pending, 40);
    assert_string_equal(s.last_run_end_status, "stopped");
    jobdb_summary_free(&s);
    free(rc);
    free(log);
}

/* SIGTERM to every rank (what Slurm sends to the tasks of a step): no new jobs,
 * in-flight ones finish, the rest stay pending, exit 0. */
static void test_sigterm_to_the_ranks_stops_cleanly_leaving_the_rest_pending(void **state) {
    (void)state;
    const char *db = tu_tmp("e.db"), *out = tu_tmp("out-e");
    start_slow_run(db, out);
    tu_sh(NULL, "pkill -TERM -f '^%s --child %s'", self_path, db);
    expect_clean_stop(db, out);
}

/* SIGUSR1 to mpirun (forwarded to every rank; mpirun itself keeps running) does the same. */
static void test_sigusr1_to_mpirun_stops_cleanly(void **state) {
    (void)state;
    const char *db = tu_tmp("f.db"), *out = tu_tmp("out-f");
    start_slow_run(db, out);
    tu_sh(NULL, "pkill -USR1 -f '^mpirun.*%s'", db);
    expect_clean_stop(db, out);
}

int main(int argc, char **argv) {
    /* Processes that start MPI (the children) are checked by ASan and UBSan but not for leaks:
     * Open MPI and PMIx leave allocations behind at exit in plugins LSan cannot name. This test
     * program itself, which does not start MPI, is still leak-checked. */
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
    if (argc >= 5 && !strcmp(argv[1], "--child")) return child_main(argc, argv);
    self_path = argv[0];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_ranks_render_every_job_once),
        cmocka_unit_test(test_single_rank_renders_without_workers),
        cmocka_unit_test(test_a_job_failing_max_attempts_is_failed_and_the_run_goes_on),
        cmocka_unit_test(test_kill9_of_a_worker_then_rerun_finishes_every_job_once),
        cmocka_unit_test(test_sigterm_to_the_ranks_stops_cleanly_leaving_the_rest_pending),
        cmocka_unit_test(test_sigusr1_to_mpirun_stops_cleanly),
    };
    return cmocka_run_group_tests_name("runner", tests, NULL, NULL);
}
