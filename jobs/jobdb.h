/*
 * jobdb.h - the SQLite job table: the single source of truth of a render.
 *
 * Only the MPI master (rank 0) opens the database; workers never touch it.
 *
 * State machine of a job (one row of `jobs`):
 *
 *     enqueue -> pending --claim--> running --finish--> done      (terminal)
 *                  ^                   |
 *                  |                   +--fail---------> pending  (attempts+1 < max_attempts)
 *                  |                   +--fail---------> failed   (attempts+1 >= max_attempts, or no retry)
 *                  |                   +--release------> pending  (graceful stop; no attempt counted)
 *                  +-------------------+--recover------> pending / failed (its run died; attempts+1)
 *
 * A run (one master process) calls, in order:
 *     jobdb_open -> jobdb_run_begin -> jobdb_recover -> { jobdb_claim -> jobdb_finish | jobdb_fail }*
 *     -> jobdb_run_end (or jobdb_release + jobdb_run_end on SIGTERM) -> jobdb_close
 *
 * Crash safety. Every state change is one SQLite transaction (claims take the
 * write lock up front with BEGIN IMMEDIATE), committed with synchronous=FULL,
 * so after a kill -9, a node failure or a power cut at any instant the table is
 * in the state of the last committed call, never between two. From there:
 *   - a job is never lost: the only way out of `pending` is a committed claim,
 *     and a `running` job whose run is gone is put back by the next run's
 *     jobdb_recover (every run other than the current one is dead, because only
 *     one master runs at a time: jobdb_run_begin's exclusive check refuses a
 *     second one; recovery counts the interrupted attempt, so a job that kills
 *     its renderer every time ends `failed` instead of looping);
 *   - a finished job is never rendered twice: `done` is terminal and claims
 *     take only `pending` rows, so once jobdb_finish has committed, no run
 *     hands that job out again. The one window left is a crash after a PNG is
 *     written but before its `done` commits: the job is still `running`, gets
 *     recovered and is rendered again, with the same seed and settings to the
 *     same path, so the rerun reproduces the same file rather than adding one
 *     (write PNGs atomically, core/base/fsutil.h);
 *   - jobdb_finish refuses a job that is not `running` under the calling run,
 *     so a result that arrives late (after a recovery handed the job to another
 *     run) cannot overwrite anything.
 *
 * Journal mode. Local disks use WAL (readers such as `sdrender status` never
 * block the master). WAL needs shared memory between processes, which network
 * filesystems (NFS, Lustre, GPFS, BeeGFS, CIFS, ...) do not provide, so the
 * default "auto" picks the rollback journal ("delete") when the database's
 * directory is on one of those. Force either with the environment variable
 *     SDRENDER_DB_JOURNAL=wal | delete | auto
 * or jobdb_open_options.journal. Busy waits (another process holding the lock)
 * last up to busy_timeout_ms (default 60 s) before an error.
 *
 * Schema: schemas/NNN_*.sql, compiled in; jobdb_open applies the missing ones
 * in one transaction (PRAGMA user_version is the version) and refuses a
 * database made by a newer sdrender.
 *
 * Errors: every function returns 0 (or a count, where documented) or a
 * negative SD_E* code with a message naming the database file in err.
 */
#ifndef SD_JOBDB_H
#define SD_JOBDB_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "job.h"

typedef struct jobdb jobdb;
struct jobsel;

#define JOBDB_DEFAULT_MAX_ATTEMPTS 3
#define JOBDB_INSTANCE_MAX 128

typedef struct jobdb_open_options {
    int create;          /* 1: create the file if it is missing; 0: it must exist */
    int keep_journal;    /* 1: leave the journal mode as the file has it (readers such as status) */
    const char *journal; /* "wal", "delete" or "auto"; NULL: $SDRENDER_DB_JOURNAL, else "auto" */
    int busy_timeout_ms; /* 0: $SDRENDER_DB_BUSY_TIMEOUT_MS, else 60000 */
    int schema_version;  /* 0: migrate to the newest; N > 0: stop at version N (migration tests) */
} jobdb_open_options;

/* Opens (and with create, makes) the database at path, checks that it is an
 * sdrender job database, sets the journal mode and applies missing migrations.
 * opt may be NULL (create = 0, defaults). *out is NULL on failure. */
int jobdb_open(jobdb **out, const char *path, const jobdb_open_options *opt, sd_error *err);
void jobdb_close(jobdb *db);

/* Schema version of the open database, and the newest this build knows. */
int jobdb_schema_version(const jobdb *db);
int jobdb_schema_latest(void);
/* Journal mode in effect ("wal" or "delete"). */
const char *jobdb_journal_mode(const jobdb *db);
/* PRAGMA integrity_check; SD_EINPUT with SQLite's first complaint if it is not "ok". */
int jobdb_check_integrity(jobdb *db, sd_error *err);

/* ---- runs ---- */

typedef struct jobdb_run_config {
    const char *model_path;    /* may be NULL */
    const char *model_sha256;  /* may be NULL */
    const char *settings_json; /* may be NULL; must be valid JSON otherwise */
    const char *host;          /* NULL: gethostname() */
    int ranks;                 /* MPI world size (>= 1); 0 means 1 */
    int max_attempts;          /* for jobdb_fail / jobdb_recover; 0: JOBDB_DEFAULT_MAX_ATTEMPTS */
    double exclusive_s;        /* > 0: refuse to begin while another run looks alive (see below) */
    int shard_index, shard_count; /* shard_count > 1: the run works only on jobs with id % count == index */
    int group_size;            /* ranks per worker group (run --tp); 0 means 1 */
    const char *parallel;      /* the groups' strategy, "cfg" or "tensor"; NULL for groups of 1 */
} jobdb_run_config;

/* Records a new run and makes it the current run of db: the state-changing
 * calls below act for it. Its instance id (unique, "host-pid-time-random")
 * is jobdb_run_instance(db).
 * With cfg->exclusive_s > 0 it first looks, in the same write transaction,
 * for a run that has not ended and still looks alive: on this host, its
 * process exists; on another host, it was seen (jobdb_run_touch, claims,
 * results) less than exclusive_s seconds ago. Then it fails with SD_EBUSY
 * naming that run: two masters would take each other's running jobs for
 * dead ones and render them twice. A run that is not alive is left for
 * jobdb_recover.
 * Shards: runs of the same shard count and different indexes share no job,
 * so they may run at once (one master per shard); any other live run (no
 * shard, the same shard, another count) is refused as above. Recovery, claims
 * and the end-of-work check of a sharded run see only its shard's jobs. */
int jobdb_run_begin(jobdb *db, const jobdb_run_config *cfg, sd_error *err);
/* Heartbeat: records that the current run is alive now (runs.last_seen_at). */
int jobdb_run_touch(jobdb *db, sd_error *err);
/* Id and instance id of the current run (0 / "" before jobdb_run_begin). */
int64_t jobdb_run_id(const jobdb *db);
const char *jobdb_run_instance(const jobdb *db);
/* Ends the current run with end_status ("complete", "stopped", "error").
 * Jobs it still holds stay `running` until the next run recovers them as
 * interrupted (attempts+1): on a graceful stop call jobdb_release first. */
int jobdb_run_end(jobdb *db, const char *end_status, sd_error *err);

/* Pending and running jobs the current run may work on (its shard's, or every job's). */
int jobdb_run_open_jobs(jobdb *db, int64_t *pending, int64_t *running, sd_error *err);

/* ---- state changes of the current run (each one transaction) ---- */

/*
 * Batches: between jobdb_batch_begin and jobdb_batch_commit, the calls below
 * (claims, finishes, fails, ...) share one write transaction, each still all
 * or nothing on its own (a savepoint), and the commit syncs once for all of
 * them: what a master serving many fast workers needs (one fsync costs
 * milliseconds). Until the commit nothing of the batch is durable, so act on
 * its claims (send the jobs) only after it: a crash before then loses only
 * state changes that nobody acted on. A failed commit rolls the whole batch back.
 */
int jobdb_batch_begin(jobdb *db, sd_error *err);
int jobdb_batch_commit(jobdb *db, sd_error *err);

/* Jobs left `running` by any other run go back to `pending` with attempts+1,
 * or to `failed` when that reaches max_attempts; the error text names the dead
 * run and rank. Unfinished other runs are marked end_status 'lost'.
 * Counts go to *requeued / *failed (either may be NULL). */
int jobdb_recover(jobdb *db, int *requeued, int *failed, sd_error *err);

/* Claims the pending job with the lowest id: it becomes `running`, claimed by
 * claimed_by ("host:rank") for the current run. Returns 1 and fills *job (the
 * caller frees it with sd_job_free), or 0 when no job is pending. */
int jobdb_claim(jobdb *db, const char *claimed_by, sd_job *job, sd_error *err);

/* The same, preferring the lowest pending id whose lora_set is lora_set (the set the claiming
 * worker has merged, "" for none): jobs of one LoRA set run back to back on a worker, so it merges
 * less often. Without such a job (or with lora_set NULL) the lowest pending id. */
int jobdb_claim_prefer(jobdb *db, const char *claimed_by, const char *lora_set, sd_job *job, sd_error *err);

/* Marks a job `done` with its PNG path, the PNG's SHA-256 (64 lowercase hex)
 * and the render time. Refused (SD_EINPUT, nothing changes) unless the job is
 * `running` under the current run. */
int jobdb_finish(jobdb *db, int64_t job_id, const char *output_path, const char *png_sha256,
                 double render_seconds, sd_error *err);

/* Records a failed attempt of a job held by the current run: attempts+1 and
 * back to `pending`, or `failed` when attempts reach max_attempts or retry is 0
 * (an error that another try cannot fix, e.g. an unreadable init image).
 * *now gets the new status (may be NULL). Refused like jobdb_finish. */
int jobdb_fail(jobdb *db, int64_t job_id, const char *error, int retry, sd_job_status *now, sd_error *err);

/* Graceful stop: every job the current run holds goes back to `pending`
 * without counting an attempt. *released gets the count (may be NULL). */
int jobdb_release(jobdb *db, int *released, sd_error *err);

/* run --job-timeout: the jobs of the current run held by claimed_by (a lost worker) count an attempt,
 * with error as their error; those that reach max_attempts become `failed`, the others stay `running`
 * under this run (no other worker of it renders them) until jobdb_release. *held / *failed get the
 * counts (may be NULL). */
int jobdb_time_out(jobdb *db, const char *claimed_by, const char *error, int *held, int *failed, sd_error *err);

/*
 * `sdrender requeue`: puts `failed` jobs back to `pending` with attempts 0 (a full set of
 * attempts again), keeping their last error for the record. Only jobs whose error matches
 * error_like (an SQL LIKE pattern, case-insensitive for ASCII; NULL: any) and whose id is in
 * first..last (0: no bound) are touched. Safe while a run is going: a failed job is held by no
 * run (that run claims it like any pending job). *count gets the number requeued.
 */
int jobdb_requeue_failed(jobdb *db, const char *error_like, int64_t first, int64_t last, int64_t *count,
                         sd_error *err);

/*
 * `sdrender requeue --missing`: `done` jobs (ids first..last, 0: no bound) whose PNG is gone or no
 * longer has the SHA-256 recorded for it (an output folder deleted or damaged) go back to `pending`
 * with attempts 0 and no output. The files are checked outside any transaction; a job that changed
 * meanwhile is left alone. *count gets the number requeued.
 */
int jobdb_requeue_missing(jobdb *db, int64_t first, int64_t last, int64_t *count, sd_error *err);

/* ---- enqueue ---- */

/* Inserts n job specs, each `repeat` times (>= 1) with consecutive ids, in ONE
 * transaction: all or nothing. Only the "what to render" fields of a spec are
 * used. Seeds: a spec with seed >= 0 gives copies seed, seed+1, ...; seed = -1
 * derives seed = seed_base + id - 1 from the job's own id. *first_id and
 * *last_id (may be NULL) get the id range inserted (0 when n is 0). */
int jobdb_enqueue(jobdb *db, const sd_job *specs, size_t n, int repeat, int64_t seed_base, int64_t *first_id,
                  int64_t *last_id, sd_error *err);

/* ---- reading ---- */

/* Reads job id into *job (caller frees). Returns 1, or 0 when there is no such job. */
int jobdb_job_get(jobdb *db, int64_t job_id, sd_job *job, sd_error *err);

typedef struct jobdb_error_entry {
    int64_t job_id;
    sd_job_status status;
    int attempts;
    double at;        /* when the error was recorded */
    char *claimed_by; /* may be NULL */
    char *error;
} jobdb_error_entry;

typedef struct jobdb_summary {
    int64_t pending, running, done, failed, total;
    /* Rate of the latest run that finished any job: its done jobs over the time
     * from its start to its latest finish. 0 when no run has finished a job. */
    double images_per_minute;
    int64_t rate_run_id;  /* the run that rate comes from; 0 if none */
    double eta_seconds;   /* (pending + running) at that rate; 0 when nothing is left, -1 unknown */
    /* The latest run (id 0 if there is none). */
    int64_t last_run_id;
    char last_run_instance[JOBDB_INSTANCE_MAX];
    char last_run_host[256];
    char last_run_end_status[32]; /* "" while it runs (or died without a trace) */
    int last_run_ranks;
    int last_run_group_size;       /* ranks per worker group */
    char last_run_parallel[16];    /* their strategy ("cfg", "tensor"), or "" */
    double last_run_started_at, last_run_ended_at, last_run_last_seen_at; /* 0 = unknown */
    /* The latest errors, newest first. */
    int n_errors;
    jobdb_error_entry *errors;
    int schema_version;
    /* LoRA sets of the running and pending jobs (up to 32, the most running first; "" = no LoRA). */
    int n_lora_sets;
    struct jobdb_lora_count {
        char *lora_set;
        int64_t running, pending;
    } *lora_sets;
} jobdb_summary;

/* Counts, rate, ETA, last run and the last max_errors errors. Free with jobdb_summary_free. */
int jobdb_summary_get(jobdb *db, int max_errors, jobdb_summary *s, sd_error *err);
void jobdb_summary_free(jobdb_summary *s);

/* Iterates the jobs with one status in id order (e.g. SD_JOB_DONE for the
 * metrics: prompt and output_path of every rendered image). While an iterator
 * is open it holds a read transaction: in "delete" journal mode that blocks
 * writers, so finish it before changing anything. */
typedef struct jobdb_iter jobdb_iter;
int jobdb_iter_begin(jobdb *db, sd_job_status status, jobdb_iter **it, sd_error *err);
/* The same, only the jobs that meet every term of sel (jobsel.h; NULL or empty: all of them). */
int jobdb_iter_begin_sel(jobdb *db, sd_job_status status, const struct jobsel *sel, jobdb_iter **it, sd_error *err);
/* Fills *job (caller frees) and returns 1, or returns 0 at the end. */
int jobdb_iter_next(jobdb_iter *it, sd_job *job, sd_error *err);
void jobdb_iter_end(jobdb_iter *it);

/* ---- metrics ---- */

/* Stores one metric (FID, CLIP score, ...) for the current run (or no run).
 * value NaN (or infinite) is stored as NULL; details_json may be NULL, else valid JSON. */
int jobdb_metric_add(jobdb *db, const char *name, double value, const char *details_json, sd_error *err);

/* ---- tests ---- */

/* Freezes the clock the database records (Unix seconds); 0 returns to the real clock. */
void jobdb_set_time(jobdb *db, double unix_seconds);

#endif
