/*
 * runner.h - the batch renderer: an MPI master hands jobs from the SQLite
 * job table to workers on demand.
 *
 * Rank 0 is the master and the only process that opens the database. The
 * other ranks form worker groups of `group_size` consecutive ranks (ranks
 * 1..K, K+1..2K, ...) that render one image together (core/pipeline/group.h);
 * the first rank of each is its leader. The master talks to leaders only:
 *
 *   leader -> master  READY   {"rank", "host"}                 (model loaded, idle)
 *   master -> leader  JOB     {"id", "prompt", ..., "output"}   (one job; the leader shares it with its group)
 *   leader -> master  RESULT  {"id", "ok", "sha256", "seconds", "error", "retry"}   (and idle again)
 *   master -> leader  STOP    {}                                (no more work: exit)
 *   leader -> master  FATAL   {"error"}                         (cannot render at all, e.g. model load failed)
 *
 * Messages are JSON text (MPI_CHAR), probed for their length. A job is
 * claimed in the database (one transaction) before it is sent, and finished
 * or failed (one transaction) when its result arrives, so a kill -9 at any
 * moment leaves at most the in-flight jobs `running`; the next run's
 * jobdb_recover puts them back.
 *
 * Stopping: SIGTERM, SIGINT or SIGUSR1 (what mpirun and Slurm send) on any
 * rank stops the master handing out work; jobs in flight may finish within
 * `grace` seconds; whatever is still running is then released to `pending`
 * and the run ends "stopped". (mpirun kills ranks 1 s after forwarding
 * SIGTERM unless started with --mca odls_base_sigkill_timeout <seconds>.)
 *
 * With one rank (no mpirun, or -np 1) the master renders jobs itself.
 *
 * Faults of the environment: a worker whose PNG write fails for a reason of
 * the machine (sd_err_is_env: disk or quota full, read-only or failing disk,
 * output folder gone) reports RESULT {"env": true}; the master then hands out
 * no more jobs, the job stays held (no attempt counted) and goes back to
 * pending when the run ends, and the run exits 1 after one line naming the
 * path and the system's error. A failed write to the database does the same.
 *
 * --job-timeout S: a leader holding jobs that sends nothing for S seconds
 * (hung, stopped, unreachable) is lost: each job it holds counts an attempt
 * (failed if that was the last) but stays held by this run, so no other worker
 * renders it in this run; the leader gets no more work; the other workers
 * finish the queue; then the run releases those jobs to pending and ends every
 * rank with MPI_Abort (a hung rank never reaches MPI_Finalize), exit 1. The
 * next run renders them. Late messages from a lost leader are ignored.
 *
 * Groups: a leader shares each JOB's text with its members (MPI_Bcast on
 * the group's communicator; an empty text means stop), every rank of the
 * group renders it, and the leader reports one RESULT: a member's error
 * (sd_group_agree) fails the job with that member's message. A member that
 * dies takes the whole MPI job down (Open MPI aborts it): the next run puts
 * the running jobs back, as after any kill -9.
 */
#ifndef SD_RUNNER_H
#define SD_RUNNER_H

#include "err.h"
#include "group.h"
#include "job.h"

/* What a worker does, supplied by the command (mpi/ knows nothing of models). */
typedef struct sd_run_worker_ops {
    /* Master only, once (may be NULL): the model's SHA-256, recorded in the runs table and handed to
     * every render (so workers need not read the whole checkpoint to name it). */
    int (*identify)(void *ctx, char sha256[65], sd_error *err);
    /* Loads the model once per worker; local_workers = rendering ranks on this node (to split its cores).
     * group: the worker group this rank belongs to (NULL for groups of one rank; every rank of a group
     * calls setup and render, see sd_run_batch). *state is passed to render and teardown. */
    int (*setup)(void *ctx, int local_workers, const sd_group *group, void **state, sd_error *err);
    /* Renders job to out_path (atomically), filling its SHA-256 and seconds. *retry = 0 when another
     * attempt cannot help (e.g. a missing init image). May stop early when sd_run_stop_age() says so
     * (then it fails with SD_ECANCELED). */
    int (*render)(void *state, const sd_job *job, const char *model_sha256, const char *out_path, char sha256[65],
                  double *seconds, int *retry, sd_error *err);
    void (*teardown)(void *state);
    void *ctx;
} sd_run_worker_ops;

/* Seconds since this rank received a stop signal, or -1 when none came. */
double sd_run_stop_age(void);

typedef struct sd_run_options {
    const char *db_path;
    const char *out_dir;
    const char *model_path;   /* recorded in the runs table */
    const char *settings_json;/* recorded in the runs table; may be NULL */
    double grace;             /* seconds in-flight jobs may take after a stop signal */
    int max_attempts;         /* 0: JOBDB_DEFAULT_MAX_ATTEMPTS */
    int group_size;           /* ranks per worker group (run --tp K); 1 */
    sd_parallel parallel;     /* how a group shares the U-Net (auto: cfg for even groups) */
    int quiet;                /* no per-job progress lines */
    int takeover;             /* start even if another run on the database looks alive */
    double wait_s;            /* how long to wait for a live run to exit before refusing */
    int shard_index, shard_count; /* shard_count > 1: only jobs with id % count == index (run --shard) */
    double job_timeout;       /* > 0: a leader holding jobs that sends nothing for this many seconds is
                               * lost (run --job-timeout; see sd_run_batch) */
} sd_run_options;

/*
 * One master per database: a run does not start while another looks alive
 * (its process exists on this host, or, on another host, it was seen within
 * SD_RUN_STALE_S seconds; masters record a heartbeat every
 * SD_RUN_HEARTBEAT_S seconds while they wait on workers, and at every claim
 * and result). It waits up to wait_s (default SD_RUN_WAIT_S) for that run to
 * exit or go stale, then refuses. The default outlasts the stale time, so a
 * job requeued after its node died starts by itself. (A single-rank master
 * on another host beats only between images; if one takes longer than
 * SD_RUN_STALE_S, a new run takes it for dead: its in-flight job is then
 * rendered twice, to the same bytes, and its late result is refused.)
 */
#define SD_RUN_HEARTBEAT_S 30.0
#define SD_RUN_STALE_S 120.0
#define SD_RUN_WAIT_S 150.0

/* Output path of a job: OUT/<id, 8 digits>.png (caller frees). */
char *sd_run_output_path(const char *out_dir, int64_t job_id);

/*
 * Runs the whole batch: MPI_Init .. MPI_Finalize. Every rank calls it with
 * the same options. Returns the process exit status (0: no pending job left
 * or stopped cleanly; 1 runtime failure; 2 bad input) and prints errors on
 * stderr itself (prefixed with the rank).
 */
int sd_run_batch(int *argc, char ***argv, const sd_run_options *opt, const sd_run_worker_ops *ops);

#endif
