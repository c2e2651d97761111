/*
 * The fault matrix of the batch runner (issue 16): `mpirun -np 3 sdrender run` (a master and two
 * workers, one thread each) on a small job table with the tiny SD 1.5 model, with a fault injected:
 *
 *   - kill -9 of the master, of a worker and of mpirun, each at a seeded random moment: after a
 *     random number of finished jobs, during a database commit (the master stalls in a journal
 *     write: SDRENDER_TEST_STALL=commit) or during a PNG write (a worker stalls with half a
 *     temporary file written: SDRENDER_TEST_STALL=png); SDRENDER_FAULT_TRIALS trials per target
 *     (default 1 in make check; the full matrix is SDRENDER_FAULT_TRIALS=20), seeds from
 *     SDRENDER_FAULT_SEED (default 16);
 *   - the output folder on a full tmpfs, the database's folder on a full tmpfs;
 *   - another process reading the database (an open read transaction) for the whole run, and
 *     another holding its write lock past the busy timeout mid-run;
 *   - the output folder removed mid-run (then `sdrender requeue --missing`);
 *   - a worker stopped (SIGSTOP) during a PNG write, past run --job-timeout.
 *
 * After each, the next run must finish every job: every job done once, PRAGMA integrity_check ok,
 * no temporary file left in the output folder, every PNG's SHA-256 the one in its row, no job
 * rendered twice within any run (SDRENDER_TEST_RENDER_LOG counts renders), and no job the earlier
 * runs had finished rendered again.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "jobdb.h"
#include "pngio.h"
#include "runner.h"
#include "sha256.h"

#define MPIRUN "mpirun --allow-run-as-root --oversubscribe"
#define MAX_JOBS 16

static const char *model(void) { return tu_path("models/tiny-sd15"); }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One case: its folder, database and output folder. */
typedef struct fx {
    char dir[512], db[600], out[600], mark[600];
    int njobs, runs;
} fx;

static void sh_ok(const char *cmd) {
    char *out;
    int rc = tu_sh(&out, "%s 2>&1", cmd);
    if (rc != 0) fail_msg("failed (exit %d): %s\n%s", rc, cmd, out);
    free(out);
}

static void mount_tmpfs(const char *dir, int size_kb);

/* A fresh case folder tu_tmp(name) with a database of njobs jobs of `steps` steps at 64x64; with
 * db_tmpfs_kb > 0 the database lies on a tmpfs of that size at name/dbfs. */
static void fx_new(fx *f, const char *name, int db_tmpfs_kb, int njobs, int steps) {
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s", tu_tmp(name));
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "umount -q %s/out %s/dbfs 2>/dev/null; rm -rf %s && mkdir -p %s", f->dir, f->dir, f->dir,
             f->dir);
    tu_sh(NULL, "%s", cmd);
    if (!sd_fs_is_dir(f->dir)) fail_msg("cannot make %s", f->dir);
    snprintf(f->db, sizeof f->db, "%s/jobs.db", f->dir);
    if (db_tmpfs_kb > 0) {
        snprintf(f->db, sizeof f->db, "%s/dbfs/jobs.db", f->dir);
        snprintf(cmd, sizeof cmd, "%s/dbfs", f->dir);
        mount_tmpfs(cmd, db_tmpfs_kb);
    }
    snprintf(f->out, sizeof f->out, "%s/out", f->dir);
    snprintf(f->mark, sizeof f->mark, "%s/mark", f->dir);
    f->njobs = njobs;
    char txt[700];
    snprintf(txt, sizeof txt, "%s/prompts.txt", f->dir);
    FILE *fp = fopen(txt, "w");
    assert_non_null(fp);
    for (int i = 0; i < njobs; i++) fprintf(fp, "a lighthouse on a cliff, picture %d\n", i);
    fclose(fp);
    snprintf(cmd, sizeof cmd, "%s enqueue --db %s --steps %d -W 64 -H 64 %s", tu_bin(), f->db, steps, txt);
    sh_ok(cmd);
}

/* Starts `mpirun -np 3 sdrender run` in the background (output to dir/runN.log, renders logged to
 * dir/runN.renders): env is "VAR=value ..." for every rank, args more run options. Returns mpirun's pid. */
static pid_t fx_start(fx *f, const char *env, const char *args) {
    f->runs++;
    char cmd[8192], log[700];
    snprintf(cmd, sizeof cmd,
             "SDRENDER_CACHE=%s SDRENDER_TEST_RENDER_LOG=%s/run%d.renders OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 %s "
             "exec " MPIRUN " -np 3 %s run --db %s -m %s --out %s --threads 1 --wait 60 %s",
             tu_tmpdir(), f->dir, f->runs, env ? env : "", tu_bin(), f->db, model(), f->out, args ? args : "");
    snprintf(log, sizeof log, "%s/run%d.log", f->dir, f->runs);
    unlink(f->mark);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* The exit status of a run started by fx_start (128 + signal when killed); fails the test after timeout_s. */
static int fx_wait(fx *f, pid_t pid, double timeout_s) {
    double t0 = now_s();
    int st = 0;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) break;
        if (now_s() - t0 > timeout_s) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fail_msg("run %d on %s did not end within %.0f s", f->runs, f->db, timeout_s);
        }
        usleep(20000);
    }
    /* the ranks of a killed mpirun go a moment later: the next run must not find them alive */
    for (int i = 0; i < 500 && tu_run_rank_pid(f->db, 1, 1) + tu_run_rank_pid(f->db, 0, 0); i++) usleep(20000);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* The log of run n (caller frees). */
static char *fx_log(const fx *f, int n) {
    char path[700], *text = NULL;
    snprintf(path, sizeof path, "%s/run%d.log", f->dir, n);
    sd_error err = {0};
    if (sd_fs_read_file(path, &text, NULL, &err) < 0) fail_msg("%s", err.msg);
    return text;
}

/* How often run n rendered each job (counts[1..njobs]); fails on a job rendered twice in that run. */
static void fx_renders(const fx *f, int n, int counts[MAX_JOBS + 1]) {
    memset(counts, 0, sizeof(int) * (MAX_JOBS + 1));
    char path[700];
    snprintf(path, sizeof path, "%s/run%d.renders", f->dir, n);
    FILE *fp = fopen(path, "r");
    if (!fp) return; /* nothing rendered */
    long long id, pid;
    while (fscanf(fp, "%lld %lld", &id, &pid) == 2) {
        if (id < 1 || id > f->njobs) fail_msg("run %d rendered job %lld, which does not exist", n, id);
        if (++counts[id] > 1) fail_msg("run %d rendered job %lld twice", n, id);
    }
    fclose(fp);
}

/* Which jobs are done now (done[1..njobs]); *failed / *running / attempts: what else the table says. */
static void fx_table(const fx *f, int done[MAX_JOBS + 1], int *failed, int *running, int attempts[MAX_JOBS + 1]) {
    jobdb *d;
    sd_error err = {0};
    jobdb_open_options oo = {.keep_journal = 1};
    if (jobdb_open(&d, f->db, &oo, &err) < 0) fail_msg("%s", err.msg);
    *failed = *running = 0;
    for (int id = 1; id <= f->njobs; id++) {
        sd_job j;
        assert_int_equal(jobdb_job_get(d, id, &j, &err), 1);
        done[id] = j.status == SD_JOB_DONE;
        *failed += j.status == SD_JOB_FAILED;
        *running += j.status == SD_JOB_RUNNING;
        if (attempts) attempts[id] = j.attempts;
        sd_job_free(&j);
    }
    jobdb_close(d);
}

/*
 * The next run after a fault: it exits 0 and completes; then every job is done (once: not rendered
 * again if an earlier run had finished it, nor twice in any run), the database passes its integrity
 * check, each PNG has the SHA-256 of its row and the output folder holds exactly one PNG per job and
 * nothing else (no temporary files).
 */
static void fx_finish_and_check(fx *f) {
    int before[MAX_JOBS + 1], counts[MAX_JOBS + 1], failed, running;
    for (int n = 1; n <= f->runs; n++) fx_renders(f, n, counts);
    fx_table(f, before, &failed, &running, NULL);
    assert_int_equal(failed, 0);
    pid_t pid = fx_start(f, NULL, "-q");
    int rc = fx_wait(f, pid, 600);
    char *log = fx_log(f, f->runs);
    if (rc != 0) fail_msg("the run after the fault exited %d:\n%s", rc, log);
    free(log);
    fx_renders(f, f->runs, counts);
    for (int id = 1; id <= f->njobs; id++)
        if (before[id] && counts[id]) fail_msg("job %d was done before the last run, which rendered it again", id);
    jobdb *d;
    sd_error err = {0};
    jobdb_open_options oo = {.keep_journal = 1};
    assert_int_equal(jobdb_open(&d, f->db, &oo, &err), 0);
    if (jobdb_check_integrity(d, &err) < 0) fail_msg("%s", err.msg);
    for (int id = 1; id <= f->njobs; id++) {
        sd_job j;
        assert_int_equal(jobdb_job_get(d, id, &j, &err), 1);
        if (j.status != SD_JOB_DONE) fail_msg("job %d is %s after the last run", id, sd_job_status_name(j.status));
        char *png = sd_run_output_path(f->out, id), sha[65];
        assert_string_equal(j.output_path, png);
        if (sd_sha256_file(png, sha, &err) < 0) fail_msg("%s", err.msg);
        assert_string_equal(sha, j.png_sha256);
        free(png);
        sd_job_free(&j);
    }
    jobdb_close(d);
    char *ls;
    tu_sh(&ls, "ls -A %s | grep -vc '^[0-9]\\{8\\}\\.png$'", f->out);
    if (atoi(ls) != 0) {
        free(ls);
        tu_sh(&ls, "ls -A %s", f->out);
        fail_msg("the output folder holds more than the PNGs:\n%s", ls);
    }
    free(ls);
    tu_sh(&ls, "ls -A %s | grep -c '^[0-9]\\{8\\}\\.png$'", f->out);
    assert_int_equal(atoi(ls), f->njobs);
    free(ls);
}

/* Waits until at least n jobs are done or the run ended; 1 if n were reached while it went on. */
static int fx_wait_done(const fx *f, pid_t run, int n, double timeout_s) {
    double t0 = now_s();
    while (now_s() - t0 < timeout_s) {
        siginfo_t si = {0};
        if (waitid(P_PID, (id_t)run, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == run) return 0;
        int done[MAX_JOBS + 1], failed, running, k = 0;
        fx_table(f, done, &failed, &running, NULL);
        for (int id = 1; id <= f->njobs; id++) k += done[id];
        if (k >= n) return 1;
        usleep(20000);
    }
    fail_msg("%d jobs were not done within %.0f s:\n%s", n, timeout_s, fx_log(f, f->runs));
    return 0;
}

/* Waits for the stall mark (the pid that stalls) while the run goes on; 0 when the run ended first. */
static int fx_wait_mark(const fx *f, pid_t run, double timeout_s) {
    double t0 = now_s();
    while (now_s() - t0 < timeout_s) {
        char *text = NULL;
        if (sd_fs_read_file(f->mark, &text, NULL, NULL) == 0) {
            int pid = atoi(text);
            free(text);
            if (pid > 0) return pid;
        }
        siginfo_t si = {0};
        if (waitid(P_PID, (id_t)run, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == run) return 0;
        usleep(10000);
    }
    return 0;
}

/* ---- kill -9 at seeded random moments ---- */

enum { TARGET_MASTER, TARGET_WORKER, TARGET_MPIRUN };
enum { AT_PROGRESS, AT_COMMIT, AT_PNG };
static const char *target_name[] = {"master", "worker", "mpirun"};
static const char *moment_name[] = {"after some jobs", "during a commit", "during a PNG write"};

static int trials(void) {
    const char *e = getenv("SDRENDER_FAULT_TRIALS");
    return e && atoi(e) > 0 ? atoi(e) : 1;
}

static uint64_t base_seed(void) {
    const char *e = getenv("SDRENDER_FAULT_SEED");
    return e ? strtoull(e, NULL, 10) : 16;
}

/* One trial: a run of 6 jobs, kill -9 of target at a moment drawn from seed, then the checks; 1 when the
 * kill landed (a kill "after some jobs" misses when the run ended first). */
static int kill_trial(int target, int trial) {
    uint64_t seed = base_seed() * 1000 + (uint64_t)target * 100 + (uint64_t)trial;
    tu_seed(seed);
    int moment = (trial + target + 1) % 3; /* the first trials of the three targets cover all three moments */
    fx f;
    char name[64];
    snprintf(name, sizeof name, "kill-%s-%d", target_name[target], trial);
    /* "after some jobs": jobs of 8 steps, so that the run is still going when the kill comes */
    fx_new(&f, name, 0, 6, moment == AT_PROGRESS ? 8 : 2);
    char env[1024] = "", what[128] = "";
    int at = 0;
    if (moment == AT_COMMIT) {
        at = tu_irand(1, 12); /* the Nth journal write of the master */
        snprintf(env, sizeof env, "SDRENDER_TEST_STALL=commit SDRENDER_TEST_STALL_AT=%d SDRENDER_TEST_STALL_S=2 "
                 "SDRENDER_TEST_STALL_MARK=%s", at, f.mark);
    } else if (moment == AT_PNG) {
        at = tu_irand(1, 2); /* the Nth PNG of a worker (the first to get there) */
        snprintf(env, sizeof env, "SDRENDER_TEST_STALL=png SDRENDER_TEST_STALL_AT=%d SDRENDER_TEST_STALL_S=2 "
                 "SDRENDER_TEST_STALL_MARK=%s", at, f.mark);
    }
    pid_t run = fx_start(&f, env, NULL);
    int reached, stalled = 0, rank_pid = 0;
    if (moment == AT_PROGRESS) {
        /* the victim's pid first (looking it up takes a while), then the moment */
        int rank = target == TARGET_MASTER ? 0 : tu_irand(1, 2);
        at = tu_irand(0, f.njobs - 2);
        for (int i = 0; i < 1500 && target != TARGET_MPIRUN && !rank_pid; i++) {
            siginfo_t si = {0};
            if (waitid(P_PID, (id_t)run, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == run) break;
            if (!(rank_pid = tu_run_rank_pid(f.db, rank, 0))) usleep(20000);
        }
        reached = fx_wait_done(&f, run, at, 300);
        if (reached) usleep((useconds_t)tu_irand(0, 200) * 1000);
    } else {
        stalled = fx_wait_mark(&f, run, 300);
        reached = stalled > 0;
    }
    int victim = 0;
    if (reached && target == TARGET_MPIRUN) victim = run;
    else if (reached && moment == AT_PROGRESS) victim = rank_pid;
    else if (reached && target == TARGET_MASTER) victim = moment == AT_COMMIT ? stalled : tu_run_rank_pid(f.db, 0, 0);
    else if (reached) victim = moment == AT_PNG ? stalled : tu_run_rank_pid(f.db, tu_irand(1, 2), 0);
    int killed = victim > 0 && kill(victim, SIGKILL) == 0;
    snprintf(what, sizeof what, "%s %d", moment_name[moment], at);
    int rc = fx_wait(&f, run, 600);
    fprintf(stderr, "faults: seed %llu: kill -9 of the %s %s: %s (run exit %d)\n", (unsigned long long)seed,
            target_name[target], what, killed ? "killed" : "missed (the run had ended)", rc);
    if (!killed && moment != AT_PROGRESS) fail_msg("the %s window was never reached:\n%s", moment_name[moment], fx_log(&f, 1));
    fx_finish_and_check(&f);
    return killed;
}

/* n trials; from 4 trials on, at most a quarter may miss (else the matrix would not test what it says). */
static void kill_trials(int target) {
    int n = trials(), killed = 0;
    for (int t = 0; t < n; t++) killed += kill_trial(target, t);
    fprintf(stderr, "faults: kill -9 of the %s: %d of %d trials killed it\n", target_name[target], killed, n);
    if (n >= 4 && (n - killed) * 4 > n) fail_msg("only %d of %d kills of the %s landed", killed, n, target_name[target]);
}

static void test_kill9_of_the_master(void **state) {
    (void)state;
    kill_trials(TARGET_MASTER);
}

static void test_kill9_of_a_worker(void **state) {
    (void)state;
    kill_trials(TARGET_WORKER);
}

static void test_kill9_of_mpirun(void **state) {
    (void)state;
    kill_trials(TARGET_MPIRUN);
}

/* ---- the environment's faults ---- */

/* Mounts a tmpfs of size_kb at dir (made if missing); skips the test loudly when that is impossible. */
static void mount_tmpfs(const char *dir, int size_kb) {
    char *out;
    int rc = tu_sh(&out, "mkdir -p %s && mount -t tmpfs -o size=%dk tmpfs %s 2>&1", dir, size_kb, dir);
    if (rc != 0) {
        fprintf(stderr, "\n*** faults: SKIPPED: cannot mount a tmpfs at %s (%s): the full-disk case did not run; "
                        "it needs root (mount) ***\n\n", dir, out);
        free(out);
        skip();
    }
    free(out);
}

/* After an environment fault: nothing failed, nothing is left running, and no job counted an attempt. */
static void expect_no_attempts(const fx *f) {
    int done[MAX_JOBS + 1], attempts[MAX_JOBS + 1], failed, running;
    fx_table(f, done, &failed, &running, attempts);
    assert_int_equal(failed, 0);
    assert_int_equal(running, 0);
    for (int id = 1; id <= f->njobs; id++)
        if (attempts[id]) fail_msg("job %d counted %d attempt(s) for a fault of the environment", id, attempts[id]);
}

/* A run's log names the environment's fault on one line with the path and the system's error. */
static void expect_env_line(const fx *f, int n, const char *path, const char *errname) {
    char *log = fx_log(f, n);
    const char *line = strstr(log, "stopping, the environment failed");
    const char *end = line ? strchr(line, '\n') : NULL;
    char want[64];
    snprintf(want, sizeof want, "(%s)", errname);
    if (!line || !end || !memmem(line, (size_t)(end - line), path, strlen(path)) ||
        !memmem(line, (size_t)(end - line), want, strlen(want)))
        fail_msg("run %d should stop on one line naming %s and %s:\n%s", n, path, want, log);
    free(log);
}

static void test_output_folder_fills_up(void **state) {
    (void)state;
    fx f;
    fx_new(&f, "outfull", 0, 4, 2);
    mount_tmpfs(f.out, 24); /* two of the ~10 KB PNGs */
    int rc = fx_wait(&f, fx_start(&f, NULL, "--max-attempts 10"), 600);
    assert_int_not_equal(rc, 0);
    expect_env_line(&f, 1, f.out, "ENOSPC");
    expect_no_attempts(&f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mount -o remount,size=4m %s", f.out); /* the disk grows */
    sh_ok(cmd);
    fx_finish_and_check(&f);
    snprintf(cmd, sizeof cmd, "umount %s", f.out);
    sh_ok(cmd);
}

static void test_database_disk_fills_up(void **state) {
    (void)state;
    fx f;
    fx_new(&f, "dbfull", 400, 6, 2);
    char dbfs[700];
    snprintf(dbfs, sizeof dbfs, "%s/dbfs", f.dir);
    /* leave ~120 KB: the run starts, then a commit finds the disk full */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "dd if=/dev/zero of=%s/filler bs=4k count=$(( $(df --output=avail -k %s | tail -1) / 4 - 30 )) "
             "2>/dev/null; true", dbfs, dbfs);
    sh_ok(cmd);
    int rc = fx_wait(&f, fx_start(&f, NULL, NULL), 600);
    assert_int_not_equal(rc, 0);
    char *log = fx_log(&f, 1);
    if (!strstr(log, f.db) || !strstr(log, "No space left on device (ENOSPC)"))
        fail_msg("run 1 should name %s and ENOSPC:\n%s", f.db, log);
    free(log);
    expect_no_attempts(&f);
    snprintf(cmd, sizeof cmd, "rm %s/filler", dbfs);
    sh_ok(cmd);
    fx_finish_and_check(&f);
    snprintf(cmd, sizeof cmd, "umount %s", dbfs);
    sh_ok(cmd);
}

/* A second process that opens db and holds a read transaction (writer = 0) or the write lock
 * (writer = 1) for hold_s seconds; returns its pid once it holds it. */
static pid_t hold_database(const char *db, int writer, double hold_s) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        sqlite3 *h = NULL;
        char ok = 'n';
        if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
            sqlite3_busy_timeout(h, 10000);
            int rc = sqlite3_exec(h, writer ? "BEGIN IMMEDIATE" : "BEGIN", NULL, NULL, NULL);
            if (rc == SQLITE_OK)
                rc = sqlite3_exec(h, writer ? "UPDATE runs SET pid = pid WHERE 0" : "SELECT count(*) FROM jobs", NULL,
                                  NULL, NULL);
            if (rc == SQLITE_OK) ok = 'y';
        }
        if (write(fds[1], &ok, 1) != 1) _exit(1);
        usleep((useconds_t)(hold_s * 1e6));
        sqlite3_exec(h, "COMMIT", NULL, NULL, NULL);
        sqlite3_close(h);
        _exit(0);
    }
    close(fds[1]);
    char ok = 0;
    if (read(fds[0], &ok, 1) != 1 || ok != 'y') fail_msg("the other process could not hold %s", db);
    close(fds[0]);
    return pid;
}

static void test_a_reader_holds_the_database_for_the_whole_run(void **state) {
    (void)state;
    fx f;
    fx_new(&f, "reader", 0, 4, 2);
    pid_t reader = hold_database(f.db, 0, 600);
    /* WAL: the reader's snapshot does not stop the master writing */
    int rc = fx_wait(&f, fx_start(&f, NULL, NULL), 600);
    char *log = fx_log(&f, 1);
    if (rc != 0 || !strstr(log, "complete: 4 done")) fail_msg("run with a reader: exit %d:\n%s", rc, log);
    free(log);
    kill(reader, SIGKILL);
    waitpid(reader, NULL, 0);
    fx_finish_and_check(&f);
}

static void test_a_writer_holds_the_lock_past_the_busy_timeout(void **state) {
    (void)state;
    fx f;
    fx_new(&f, "writer", 0, 6, 4);
    pid_t run = fx_start(&f, "SDRENDER_DB_BUSY_TIMEOUT_MS=400", NULL);
    fx_wait_done(&f, run, 2, 300);
    /* the lock is held until the master has given up on it (its next commit waits 0.4 s) */
    pid_t writer = hold_database(f.db, 1, 600);
    double t0 = now_s();
    char *log = NULL;
    for (;;) {
        free(log);
        log = fx_log(&f, 1);
        if (strstr(log, "stopping, the environment failed") || now_s() - t0 > 300) break;
        usleep(50000);
    }
    kill(writer, SIGKILL);
    waitpid(writer, NULL, 0);
    int rc = fx_wait(&f, run, 600);
    free(log);
    log = fx_log(&f, 1);
    if (rc == 0 || !strstr(log, "stayed locked")) fail_msg("a run locked out: exit %d:\n%s", rc, log);
    free(log);
    int done[MAX_JOBS + 1], failed, running;
    fx_table(&f, done, &failed, &running, NULL);
    assert_int_equal(failed, 0);
    fx_finish_and_check(&f);
}

static void test_output_folder_removed_mid_run(void **state) {
    (void)state;
    fx f;
    fx_new(&f, "removed", 0, 6, 4);
    pid_t run = fx_start(&f, NULL, NULL);
    if (!fx_wait_done(&f, run, 2, 300)) fail_msg("the run ended before 2 jobs were done:\n%s", fx_log(&f, 1));
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "mv %s %s.gone && rm -rf %s.gone", f.out, f.out, f.out); /* gone at once */
    sh_ok(cmd);
    int rc = fx_wait(&f, run, 600);
    assert_int_not_equal(rc, 0);
    expect_env_line(&f, 1, f.out, "ENOENT");
    expect_no_attempts(&f);
    /* the PNGs of the jobs done before are gone with the folder: requeue puts them back */
    int done[MAX_JOBS + 1], failed, running, ndone = 0;
    fx_table(&f, done, &failed, &running, NULL);
    for (int id = 1; id <= f.njobs; id++) ndone += done[id];
    char *out;
    rc = tu_sh(&out, "%s requeue --db %s --missing", tu_bin(), f.db);
    char want[128];
    snprintf(want, sizeof want, "requeued %d done job(s) whose PNG was missing or changed", ndone);
    if (rc != 0 || !strstr(out, want)) fail_msg("requeue --missing: exit %d, want '%s':\n%s", rc, want, out);
    free(out);
    fx_finish_and_check(&f);
}

static void test_a_stopped_worker_is_lost_after_the_job_timeout(void **state) {
    (void)state;
    fx f;
    fx_new(&f, "hang", 0, 4, 2);
    char env[800];
    snprintf(env, sizeof env, "SDRENDER_TEST_STALL=png SDRENDER_TEST_STALL_AT=1 SDRENDER_TEST_STALL_S=60 "
             "SDRENDER_TEST_STALL_MARK=%s", f.mark);
    pid_t run = fx_start(&f, env, "--job-timeout 20");
    int pid = fx_wait_mark(&f, run, 300);
    if (pid <= 0) fail_msg("no worker wrote a PNG:\n%s", fx_log(&f, 1));
    assert_int_equal(kill(pid, SIGSTOP), 0); /* hung with half a PNG written */
    int rc = fx_wait(&f, run, 600);
    char *log = fx_log(&f, 1);
    if (rc == 0 || !strstr(log, "no result within --job-timeout 20 s") || !strstr(log, "ending every rank"))
        fail_msg("a worker stopped past --job-timeout: exit %d:\n%s", rc, log);
    free(log);
    /* its job counted one attempt and is pending; the other worker finished the rest */
    int done[MAX_JOBS + 1], attempts[MAX_JOBS + 1], failed, running, lost = 0;
    fx_table(&f, done, &failed, &running, attempts);
    assert_int_equal(failed + running, 0);
    for (int id = 1; id <= f.njobs; id++) {
        if (done[id]) continue;
        assert_int_equal(attempts[id], 1);
        lost++;
    }
    assert_int_equal(lost, 1);
    fx_finish_and_check(&f);
}

/* ---- errno in write errors ---- */

/* libpng's failed write keeps errno: over RLIMIT_FSIZE the write fails with EFBIG, named in the message. */
static void test_a_failed_png_write_names_its_errno(void **state) {
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {1000, 1000};
        setrlimit(RLIMIT_FSIZE, &rl);
        enum { W = 64, H = 64 };
        static uint8_t rgb[W * H * 3];
        tu_seed(7);
        for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)tu_irand(0, 255); /* noise: ~12 KB compressed */
        sd_error err = {0};
        const char *path = tu_tmp("big.png");
        int rc = sd_png_write_rgb(path, rgb, W, H, NULL, 0, &err);
        int ok = rc == SD_EIO && err.sys_errno == EFBIG && strstr(err.msg, "File too large (EFBIG)") &&
                 strstr(err.msg, path) && !sd_err_is_env(&err) && !sd_fs_is_file(path);
        if (!ok) fprintf(stderr, "rc %d, errno %d: %s\n", rc, err.sys_errno, err.msg);
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* and the environment's errors are told apart from the others */
    sd_error e = {0};
    sd_err_sys(&e, ENOSPC, "%s: cannot write", "x.png");
    assert_string_equal(e.msg, "x.png: cannot write: No space left on device (ENOSPC)");
    assert_true(sd_err_is_env(&e));
    sd_err(&e, SD_EIO, "decoding failed");
    assert_false(sd_err_is_env(&e));
}

int main(void) {
    /* Processes that start MPI are checked by ASan and UBSan but not for leaks (see test_run.c). */
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    const char *only = getenv("SDRENDER_FAULT_ONLY"); /* e.g. "*kill9*": a part of the matrix */
    if (only) cmocka_set_test_filter(only);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_failed_png_write_names_its_errno),
        cmocka_unit_test(test_kill9_of_the_master),
        cmocka_unit_test(test_kill9_of_a_worker),
        cmocka_unit_test(test_kill9_of_mpirun),
        cmocka_unit_test(test_output_folder_fills_up),
        cmocka_unit_test(test_database_disk_fills_up),
        cmocka_unit_test(test_a_reader_holds_the_database_for_the_whole_run),
        cmocka_unit_test(test_a_writer_holds_the_lock_past_the_busy_timeout),
        cmocka_unit_test(test_output_folder_removed_mid_run),
        cmocka_unit_test(test_a_stopped_worker_is_lost_after_the_job_timeout),
    };
    return cmocka_run_group_tests_name("faults", tests, NULL, NULL);
}
