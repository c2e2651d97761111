#include "runner.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "jobdb.h"
#include "runner_msg.h"
#include "tp_group_impl.h"

enum { TAG_READY = 1, TAG_JOB, TAG_RESULT, TAG_STOP, TAG_FATAL };

static volatile sig_atomic_t stop_signal = 0;
static double stop_seen_at = 0; /* when this rank first noticed stop_signal */

static void on_stop_signal(int sig) { stop_signal = sig; }

static double now_s(void);

double sd_run_stop_age(void) {
    if (!stop_signal) return -1;
    if (stop_seen_at == 0) stop_seen_at = now_s();
    return now_s() - stop_seen_at;
}

static void install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

char *sd_run_output_path(const char *out_dir, int64_t job_id) {
    char name[32];
    snprintf(name, sizeof name, "%08lld.png", (long long)job_id);
    return sd_fs_path_join(out_dir, name);
}

/* ---- messages: JSON text over MPI ---- */

static void send_json(json_t *j, int dest, int tag) {
    char *s = json_dumps(j, JSON_COMPACT);
    const char *txt = s ? s : "{}";
    MPI_Send(txt, (int)strlen(txt) + 1, MPI_CHAR, dest, tag, MPI_COMM_WORLD);
    free(s);
}

/* Receives the message st describes (already probed); NULL if it is not a JSON object. */
static json_t *recv_json(const MPI_Status *st) {
    int n = 0;
    MPI_Get_count(st, MPI_CHAR, &n);
    char *buf = malloc((size_t)n + 1);
    if (!buf) return NULL;
    MPI_Recv(buf, n, MPI_CHAR, st->MPI_SOURCE, st->MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    buf[n] = 0;
    json_t *j = json_loads(buf, 0, NULL);
    free(buf);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* ---- worker side ---- */

typedef struct {
    const sd_run_worker_ops *ops;
    void *state;
    int rank;
    char host[256];
    tp_group *grp; /* NULL: a group of one */
} worker;

static int render_one(worker *w, const sd_job *job, const char *model_sha, const char *out, json_t *res) {
    char sha[65] = "";
    double secs = 0;
    int retry = 1;
    sd_error err = {0};
    int rc = w->ops->render(w->state, job, model_sha, out, sha, &secs, &retry, &err);
    if (w->grp) {
        /* a member's error fails the job with its message; retry only if every rank may */
        int no_retry = !retry;
        rc = sd_group_agree(&w->grp->g, rc, &err);
        MPI_Allreduce(MPI_IN_PLACE, &no_retry, 1, MPI_INT, MPI_MAX, w->grp->all);
        retry = !no_retry;
    }
    if (rc == SD_ECANCELED) json_object_set_new(res, "cancelled", json_true());
    /* the machine refused the write (disk full, folder gone, ...): not the job's fault */
    if (rc < 0 && sd_err_is_env(&err)) json_object_set_new(res, "env", json_true());
    json_object_set_new(res, "id", json_integer(job->id));
    json_object_set_new(res, "ok", json_boolean(rc == 0));
    json_object_set_new(res, "seconds", json_real(secs));
    if (rc == 0) {
        json_object_set_new(res, "sha256", json_string(sha));
        json_object_set_new(res, "output", json_string(out));
    } else {
        json_object_set_new(res, "error", json_string(err.msg[0] ? err.msg : sd_err_name(rc)));
        json_object_set_new(res, "retry", json_boolean(retry));
    }
    return rc;
}

/* A leader's job text to its members (NULL: stop), or a member's copy of it (caller frees; NULL: stop). */
static char *group_share_text(const tp_group *g, const char *text) {
    int n = text ? (int)strlen(text) + 1 : 0;
    /* members wait here while their leader decodes, writes and talks to the master: asleep */
    MPI_Request req;
    MPI_Ibcast(&n, 1, MPI_INT, 0, g->all, &req);
    tp_wait_request(&req);
    if (n == 0) return NULL;
    char *buf = malloc((size_t)n);
    if (!buf) {
        fprintf(stderr, "sdrender: out of memory receiving a job from the group leader\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (text) memcpy(buf, text, (size_t)n);
    MPI_Bcast(buf, n, MPI_CHAR, 0, g->all);
    return buf;
}

/* A group member: renders what its leader shares until the leader says stop. */
static void member_loop(worker *w) {
    char *text;
    while ((text = group_share_text(w->grp, NULL)) != NULL) {
        json_t *msg = json_loads(text, 0, NULL);
        sd_job job;
        const char *out = NULL, *model_sha = NULL;
        sd_error err = {0};
        json_t *res = json_object();
        /* the leader parsed the same text first: it only shares jobs that parse */
        if (msg && runner_job_from_json(msg, &job, &out, &model_sha, &err) == 0) {
            render_one(w, &job, model_sha, out, res);
            sd_job_free(&job);
        }
        json_decref(res);
        json_decref(msg);
        free(text);
    }
}

static int worker_main(const sd_run_worker_ops *ops, int rank, int local_workers, tp_group *grp) {
    worker w = {.ops = ops, .rank = rank, .grp = grp};
    gethostname(w.host, sizeof w.host - 1);
    sd_error err = {0};
    int leader = !grp || grp->g.rank == 0;
    int rc = ops->setup(ops->ctx, local_workers, grp ? &grp->g : NULL, &w.state, &err);
    if (grp) rc = sd_group_agree(&grp->g, rc, &err); /* the whole group loads, or none of it works */
    if (rc < 0) {
        if (leader) {
            fprintf(stderr, "sdrender[rank %d]: %s\n", rank, err.msg);
            json_t *f = json_pack("{s:s}", "error", err.msg);
            send_json(f, 0, TAG_FATAL);
            json_decref(f);
            /* wait for the master's STOP so MPI shuts down in order */
            MPI_Status st;
            MPI_Probe(0, TAG_STOP, MPI_COMM_WORLD, &st);
            json_decref(recv_json(&st));
        }
        if (w.state) ops->teardown(w.state);
        return sd_err_exit_code(err.code);
    }
    /* the leader names its group's hosts in READY (where a group lies is the user's mpirun/srun layout) */
    char hosts[8192] = "";
    if (grp) {
        char *all = leader ? malloc((size_t)grp->g.size * 256) : NULL;
        char mine[256] = {0};
        snprintf(mine, sizeof mine, "%s", w.host);
        MPI_Gather(mine, 256, MPI_CHAR, all, 256, MPI_CHAR, 0, grp->all);
        for (int r = 0; all && r < grp->g.size; r++)
            snprintf(hosts + strlen(hosts), sizeof hosts - strlen(hosts), "%s%.255s", r ? ", " : "", all + (size_t)r * 256);
        free(all);
    }
    if (!leader) {
        member_loop(&w);
        ops->teardown(w.state);
        return 0;
    }
    json_t *ready = json_pack("{s:i,s:s,s:s}", "rank", rank, "host", w.host, "group_hosts", hosts);
    send_json(ready, 0, TAG_READY);
    json_decref(ready);
    for (;;) {
        MPI_Status st;
        MPI_Probe(0, MPI_ANY_TAG, MPI_COMM_WORLD, &st);
        json_t *msg = recv_json(&st);
        if (st.MPI_TAG == TAG_STOP || !msg) {
            json_decref(msg);
            break;
        }
        sd_job job;
        const char *out = NULL, *model_sha = NULL;
        json_t *res = json_object();
        if (runner_job_from_json(msg, &job, &out, &model_sha, &err) < 0) {
            json_object_set_new(res, "id", json_integer(json_integer_value(json_object_get(msg, "id"))));
            json_object_set_new(res, "ok", json_false());
            json_object_set_new(res, "error", json_string(err.msg));
            json_object_set_new(res, "retry", json_false());
        } else if (stop_signal) {
            /* a job queued behind the one that was rendering when the stop came: not started */
            json_object_set_new(res, "id", json_integer(job.id));
            json_object_set_new(res, "ok", json_false());
            json_object_set_new(res, "cancelled", json_true());
            sd_job_free(&job);
        } else {
            double t0 = now_s();
            if (grp) {
                char *text = json_dumps(msg, JSON_COMPACT);
                if (!text) {
                    fprintf(stderr, "sdrender[rank %d]: out of memory sharing a job\n", rank);
                    MPI_Abort(MPI_COMM_WORLD, 1);
                }
                free(group_share_text(grp, text));
                free(text);
            }
            render_one(&w, &job, model_sha, out, res);
            json_object_set_new(res, "wall", json_real(now_s() - t0)); /* for the master's queue depth */
            sd_job_free(&job);
        }
        if (stop_signal) json_object_set_new(res, "stopping", json_true());
        send_json(res, 0, TAG_RESULT);
        json_decref(res);
        json_decref(msg);
    }
    if (grp) group_share_text(grp, NULL); /* members: stop */
    ops->teardown(w.state);
    return 0;
}

/* ---- master side ---- */

typedef struct {
    jobdb *db;
    const sd_run_options *opt;
    char out_dir[4096]; /* absolute: the job table's output paths work from any folder */
    char model_sha[65];
    int64_t total_start; /* pending + running when the run started */
    int64_t done, failed, retried;
    double t0;
    const char *end_status; /* "complete", "stopped" or "error": how the runs table records the run */
    sd_parallel parallel;   /* the worker groups' strategy (resolved) */
    int exit_code;
    int lost_workers;       /* leaders that missed --job-timeout: the run must end with MPI_Abort */
} master;

static void log_result(master *m, const char *who, int64_t id, int ok, double secs, const char *error) {
    if (m->opt->quiet) return;
    double el = now_s() - m->t0;
    double rate = el > 0 ? (double)m->done / el * 60.0 : 0;
    int64_t left = m->total_start - m->done - m->failed;
    double eta = rate > 0 ? (double)left / rate * 60.0 : -1;
    if (ok)
        fprintf(stderr, "sdrender run: job %lld done by %s in %.1f s; %lld/%lld done, %lld failed, %.2f images/min, ETA %s%.0f s\n",
                (long long)id, who, secs, (long long)m->done, (long long)m->total_start, (long long)m->failed, rate,
                eta < 0 ? "? " : "", eta < 0 ? 0 : eta);
    else
        fprintf(stderr, "sdrender run: job %lld failed on %s: %s\n", (long long)id, who, error ? error : "?");
}

static void master_fail(master *m, int exit_code);

/* The environment failed (a full disk, a vanished folder, the database's I/O): no new jobs; what is in
 * flight may still report; the jobs the run holds go back to pending (no attempt) when it ends, and the
 * run exits 1. Says so once, on one line. */
static void master_halt(master *m, const char *what) {
    if (m->exit_code == 0)
        fprintf(stderr, "sdrender run: stopping, the environment failed (not the job): %s; the jobs stay pending "
                        "with no attempt counted: fix it and run again\n", what);
    if (!stop_signal) stop_signal = SIGTERM;
    master_fail(m, 1);
}

/* Records a worker's result in the table. */
static void master_record(master *m, json_t *res, const char *who) {
    sd_error err = {0};
    int64_t id = json_integer_value(json_object_get(res, "id"));
    double secs = json_number_value(json_object_get(res, "seconds"));
    if (json_is_true(json_object_get(res, "cancelled"))) {
        /* stopped by a signal: stays `running` until the run releases it (no attempt counted) */
        if (!m->opt->quiet) fprintf(stderr, "sdrender run: job %lld interrupted on %s\n", (long long)id, who);
        return;
    }
    if (json_is_true(json_object_get(res, "env"))) {
        /* the same: stays `running` until the run releases it, and the run stops */
        const char *e = json_string_value(json_object_get(res, "error"));
        char what[700];
        snprintf(what, sizeof what, "job %lld on %s: %s", (long long)id, who, e ? e : "?");
        master_halt(m, what);
        return;
    }
    if (json_is_true(json_object_get(res, "ok"))) {
        const char *out = json_string_value(json_object_get(res, "output"));
        const char *sha = json_string_value(json_object_get(res, "sha256"));
        int rc = jobdb_finish(m->db, id, out ? out : "", sha ? sha : "", secs, &err);
        if (rc == SD_EINPUT) fprintf(stderr, "sdrender run: %s\n", err.msg); /* e.g. a late result after a takeover */
        if (rc < 0 && rc != SD_EINPUT) master_halt(m, err.msg);
        if (rc < 0) return;
        m->done++;
        log_result(m, who, id, 1, secs, NULL);
    } else {
        const char *e = json_string_value(json_object_get(res, "error"));
        int retry = !json_is_false(json_object_get(res, "retry"));
        sd_job_status now = SD_JOB_PENDING;
        char msg[600];
        snprintf(msg, sizeof msg, "%s: %s", who, e ? e : "unknown error");
        int rc = jobdb_fail(m->db, id, msg, retry, &now, &err);
        if (rc == SD_EINPUT) fprintf(stderr, "sdrender run: %s\n", err.msg);
        if (rc < 0 && rc != SD_EINPUT) master_halt(m, err.msg);
        if (rc < 0) return;
        if (now == SD_JOB_FAILED) m->failed++;
        else m->retried++;
        log_result(m, who, id, 0, secs, msg);
    }
}

/* Claims the next job for a leader and builds its JOB message in *msg (sent once the claim is
 * committed); 0 when none is left. */
static int master_claim(master *m, const char *who, char **lora_set, json_t **msg, sd_error *err) {
    sd_job job;
    *msg = NULL;
    int got = jobdb_claim_prefer(m->db, who, *lora_set ? *lora_set : "", &job, err);
    if (got <= 0) return got;
    /* the leader will have this job's LoRA set merged: prefer it for its next claim */
    free(*lora_set);
    *lora_set = strdup(job.lora_set ? job.lora_set : "");
    char *out = sd_run_output_path(m->out_dir, job.id);
    *msg = out ? runner_job_to_json(&job, out, m->model_sha) : NULL;
    free(out);
    sd_job_free(&job);
    return *msg ? 1 : sd_err(err, SD_ENOMEM, "out of memory");
}

/* Removes "<8 digits>.png.tmp.<pid>" files a killed worker left behind. */
static void clean_stale_temp_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        int n = 0;
        if (sscanf(e->d_name, "%*8[0-9].png.tmp.%*d%n", &n) >= 0 && n > 0 && e->d_name[n] == 0) {
            char *p = sd_fs_path_join(dir, e->d_name);
            if (p) unlink(p);
            free(p);
        }
    }
    closedir(d);
}

/* The run ends "error" with this exit status (a worker or the database failed). */
static void master_fail(master *m, int exit_code) {
    m->end_status = "error";
    m->exit_code = exit_code;
}

/*
 * Start, 1: opens the database, names the model and begins the run (one master per database).
 * A run that was just stopped or killed may take some seconds to exit: it waits for that one
 * up to opt->wait_s.
 */
static int master_begin(master *m, const sd_run_worker_ops *ops, int world, sd_error *err) {
    const sd_run_options *opt = m->opt;
    jobdb_open_options oo = {.create = 0};
    int rc = jobdb_open(&m->db, opt->db_path, &oo, err);
    if (rc == 0 && ops->identify) rc = ops->identify(ops->ctx, m->model_sha, err);
    if (rc < 0) return rc;
    jobdb_run_config rcfg = {.model_path = opt->model_path,
                             .model_sha256 = m->model_sha[0] ? m->model_sha : NULL,
                             .settings_json = opt->settings_json,
                             .ranks = world,
                             .max_attempts = opt->max_attempts,
                             .exclusive_s = opt->takeover ? 0 : SD_RUN_STALE_S,
                             .shard_index = opt->shard_index,
                             .shard_count = opt->shard_count,
                             .group_size = opt->group_size,
                             .parallel = sd_parallel_name(m->parallel)};
    double t_wait = now_s();
    int said = 0;
    while ((rc = jobdb_run_begin(m->db, &rcfg, err)) == SD_EBUSY && now_s() - t_wait < opt->wait_s && !stop_signal) {
        if (!said++ && !opt->quiet)
            fprintf(stderr, "sdrender run: waiting up to %.0f s for the last run to exit: %s\n", opt->wait_s,
                    err->msg);
        sleep_ms(500);
    }
    return rc;
}

/*
 * Start, 2: puts the jobs that earlier runs left running back in the queue, makes the output
 * folder (and clears a killed worker's temporary files there) and says how much there is to do.
 */
static int master_recover(master *m, int workers, sd_error *err) {
    const sd_run_options *opt = m->opt;
    int requeued = 0, gave_up = 0;
    int rc = jobdb_recover(m->db, &requeued, &gave_up, err);
    if (rc == 0 && (requeued || gave_up) && !opt->quiet)
        fprintf(stderr, "sdrender run: recovered %d interrupted job(s) from earlier runs (%d given up as failed)\n",
                requeued, gave_up);
    int had_out = sd_fs_is_dir(opt->out_dir);
    if (rc == 0) rc = sd_fs_mkdirs(opt->out_dir, err);
    jobdb_summary sum;
    if (rc == 0 && !had_out && jobdb_summary_get(m->db, 0, &sum, err) == 0) {
        if (sum.done > 0)
            fprintf(stderr, "sdrender run: warning: the output folder %s was missing, and %lld job(s) are done; if "
                            "their PNGs were in it, 'sdrender requeue --db %s --missing' renders them again\n",
                    opt->out_dir, (long long)sum.done, opt->db_path);
        jobdb_summary_free(&sum);
    }
    if (rc == 0 && !realpath(opt->out_dir, m->out_dir))
        rc = sd_err(err, SD_EIO, "%s: %s", opt->out_dir, strerror(errno));
    if (rc < 0) return rc;
    clean_stale_temp_files(m->out_dir);
    int64_t pending = 0, running = 0;
    if (jobdb_run_open_jobs(m->db, &pending, &running, err) == 0) {
        m->total_start = pending + running;
        char shard[48] = "";
        if (opt->shard_count > 1) snprintf(shard, sizeof shard, " in shard %d/%d", opt->shard_index, opt->shard_count);
        if (!opt->quiet)
            fprintf(stderr, "sdrender run: %lld pending job(s)%s, %d worker(s), output in %s\n", (long long)pending,
                    shard, workers, m->out_dir);
    }
    return 0;
}

/* The start failed: says why and tells every leader to stop (they are loading or about to send
 * READY). Returns the exit status. */
static int master_abort_start(master *m, int world, int rc, const sd_error *err) {
    fprintf(stderr, "sdrender: %s\n", err->msg);
    int K = m->opt->group_size > 1 ? m->opt->group_size : 1;
    for (int r = 1; r < world; r += K) {
        json_t *stop = json_object();
        send_json(stop, r, TAG_STOP);
        json_decref(stop);
    }
    if (m->db) jobdb_close(m->db);
    return sd_err_exit_code(rc);
}

/* With one rank there are no workers: the master renders the jobs itself until none is left or
 * a stop signal comes. */
static void master_render_alone(master *m, const sd_run_worker_ops *ops, int local_workers) {
    sd_error err = {0};
    void *state = NULL;
    int rc = ops->setup(ops->ctx, local_workers, NULL, &state, &err);
    if (rc < 0) {
        fprintf(stderr, "sdrender: %s\n", err.msg);
        master_fail(m, sd_err_exit_code(rc));
    }
    char me[300];
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    snprintf(me, sizeof me, "%s:0", host);
    worker w = {.ops = ops, .state = state};
    char *set = NULL; /* the LoRA set of the last job: preferred next (fewer merges) */
    while (rc == 0 && !stop_signal) {
        sd_job job;
        int got = jobdb_claim_prefer(m->db, me, set ? set : "", &job, &err);
        if (got < 0) {
            master_halt(m, err.msg);
            break;
        }
        if (got == 0) break;
        free(set);
        set = strdup(job.lora_set ? job.lora_set : "");
        char *out = sd_run_output_path(m->out_dir, job.id);
        json_t *res = json_object();
        if (out) render_one(&w, &job, m->model_sha, out, res);
        master_record(m, res, me);
        json_decref(res);
        free(out);
        sd_job_free(&job);
    }
    free(set);
    if (state) ops->teardown(state);
}

/* The worker leaders, as the master sees them while it hands out jobs (arrays indexed by rank). */
typedef struct leaders {
    int *queued;        /* jobs sent to a leader and not answered yet */
    char (*who)[300];   /* "host:rank", from its READY */
    char **lora_set;    /* LoRA set of the last job claimed for it (NULL: none yet) */
    int *stopped;       /* sent STOP */
    int *heard;         /* spoke (READY or RESULT) in the current batch: answer it */
    double *since;      /* when a leader last spoke or was sent a job (--job-timeout counts from it) */
    int *lost;          /* missed --job-timeout: ignored from then on */
    double timeouts_at; /* last look for lost leaders */
    int active;         /* leaders not sent STOP yet */
    int busy;           /* jobs sent and not answered, over all leaders */
    double stop_at;     /* when the master saw the stop signal; 0 before */
    double beat_at;     /* last heartbeat in the runs table */
    double job_s;       /* running mean of a job's wall seconds on its worker (0 before the first) */
    json_t **outbox;    /* JOB messages claimed in the current batch, sent after its commit */
    int *outbox_to;     /* their leaders */
    int n_outbox, cap_outbox;
    MPI_Request *sending; /* JOB messages on their way (MPI_Isend), and their texts */
    char **sending_text;
    int *done_idx;        /* scratch of master_reap_sends */
    int n_sending, cap_sending;
} leaders;

/*
 * How many jobs a leader holds at once: one while jobs take long (a job queued behind a long render
 * would wait for nothing), more when they are so short that the round trip and the database commit
 * would leave workers idle: enough to cover ~50 ms of work, at most 128 (e.g. `run --dry-run`).
 */
static int leader_depth(const leaders *l) {
    if (l->job_s <= 0) return 1;
    double d = 0.05 / (l->job_s > 1e-5 ? l->job_s : 1e-5);
    return d < 1 ? 1 : d > 128 ? 128 : (int)d;
}

/*
 * After a stop signal: no new jobs, and jobs in flight get opt->grace seconds. Once those are over
 * with jobs still running, they go back to pending, the run ends "stopped" and MPI_Abort ends
 * every rank (the workers are in the middle of a render and would not read a STOP).
 */
static void master_watch_stop(master *m, leaders *l) {
    const sd_run_options *opt = m->opt;
    if (stop_signal && l->stop_at == 0) {
        l->stop_at = now_s();
        if (m->exit_code == 0) m->end_status = "stopped";
        if (!opt->quiet && m->exit_code == 0)
            fprintf(stderr, "sdrender run: signal %d: no new jobs; waiting up to %.0f s for %d in flight\n",
                    (int)stop_signal, opt->grace, l->busy);
        else if (!opt->quiet)
            fprintf(stderr, "sdrender run: no new jobs; waiting up to %.0f s for %d in flight\n", opt->grace, l->busy);
    }
    if (l->stop_at > 0 && l->busy > 0 && now_s() - l->stop_at > opt->grace) {
        sd_error err = {0};
        int released = 0;
        if (jobdb_release(m->db, &released, &err) < 0) fprintf(stderr, "sdrender: %s\n", err.msg);
        if (!opt->quiet) fprintf(stderr, "sdrender run: grace period over; %d job(s) back to pending\n", released);
        jobdb_run_end(m->db, m->end_status, &err);
        jobdb_close(m->db);
        MPI_Abort(MPI_COMM_WORLD, m->exit_code); /* 0 after a signal, 1 after a failure */
    }
}

/* Nothing to read: a heartbeat in the runs table every SD_RUN_HEARTBEAT_S (while every worker
 * renders), then a short sleep. */
static void master_idle(master *m, leaders *l) {
    if (now_s() - l->beat_at >= SD_RUN_HEARTBEAT_S) {
        sd_error err = {0};
        l->beat_at = now_s();
        if (jobdb_run_touch(m->db, &err) < 0) master_halt(m, err.msg);
    }
    sleep_ms(1);
}

/* Takes the message st announces (READY, RESULT or FATAL); returns 1 when its sender wants more. */
static int master_take_message(master *m, leaders *l, const MPI_Status *st) {
    int src = st->MPI_SOURCE;
    json_t *msg = recv_json(st);
    int idle = 0;
    if (l->lost[src]) {
        fprintf(stderr, "sdrender run: ignoring a late message from %s (lost after --job-timeout)\n", l->who[src]);
        json_decref(msg);
        return 0;
    }
    l->since[src] = now_s();
    if (st->MPI_TAG == TAG_READY) {
        const char *host = json_string_value(json_object_get(msg, "host"));
        snprintf(l->who[src], sizeof l->who[src], "%s:%d", host ? host : "?", src);
        const char *gh = json_string_value(json_object_get(msg, "group_hosts"));
        if (!m->opt->quiet && gh && gh[0])
            fprintf(stderr, "sdrender run: worker %s ready, leading a group of %d ranks on %s\n", l->who[src],
                    m->opt->group_size, gh);
        else if (!m->opt->quiet)
            fprintf(stderr, "sdrender run: worker %s ready\n", l->who[src]);
        idle = 1;
    } else if (st->MPI_TAG == TAG_RESULT) {
        if (msg) master_record(m, msg, l->who[src]);
        if (json_is_true(json_object_get(msg, "stopping")) && !stop_signal) stop_signal = SIGTERM;
        json_t *wall = json_object_get(msg, "wall");
        if (wall) {
            double secs = json_number_value(wall);
            l->job_s = l->job_s > 0 ? 0.8 * l->job_s + 0.2 * secs : secs;
        }
        l->queued[src]--;
        l->busy--;
        idle = 1;
    } else if (st->MPI_TAG == TAG_FATAL) {
        const char *e = json_string_value(json_object_get(msg, "error"));
        fprintf(stderr, "sdrender run: worker rank %d cannot render: %s\n", src, e ? e : "?");
        if (!stop_signal) stop_signal = SIGTERM;
        master_fail(m, 1);
        idle = 1;
    }
    json_decref(msg);
    return idle;
}

/* Claims jobs (inside the open batch) until leader src holds its depth; the messages wait in the
 * outbox for the commit. 0, or -1 when the database failed (the run then stops). */
static int master_top_up(master *m, leaders *l, int src) {
    int want = leader_depth(l) - l->queued[src];
    for (int k = 0; k < want && !stop_signal && m->exit_code == 0; k++) {
        sd_error err = {0};
        json_t *msg;
        int got = master_claim(m, l->who[src][0] ? l->who[src] : "?", &l->lora_set[src], &msg, &err);
        if (got == 0) return 0;
        if (got > 0 && l->n_outbox == l->cap_outbox) {
            int cap = l->cap_outbox ? 2 * l->cap_outbox : 64;
            json_t **o = realloc(l->outbox, sizeof *o * (size_t)cap);
            int *t = o ? realloc(l->outbox_to, sizeof *t * (size_t)cap) : NULL;
            if (o) l->outbox = o;
            if (t) l->outbox_to = t;
            if (!o || !t) got = sd_err(&err, SD_ENOMEM, "out of memory");
            else l->cap_outbox = cap;
            if (got < 0) json_decref(msg);
        }
        if (got < 0) {
            master_halt(m, err.msg);
            return -1;
        }
        l->outbox[l->n_outbox] = msg;
        l->outbox_to[l->n_outbox++] = src;
        l->queued[src]++;
        l->busy++;
    }
    return 0;
}

/* JOB texts still on their way to lost leaders when the hand-out ended (see master_hand_out). */
static char **abandoned_sends;

/* Frees the texts of the JOB messages that have left (all of them, waiting, when `all`). */
static void master_reap_sends(leaders *l, int all) {
    if (l->n_sending == 0) return;
    if (all) {
        MPI_Waitall(l->n_sending, l->sending, MPI_STATUSES_IGNORE);
        for (int i = 0; i < l->n_sending; i++) free(l->sending_text[i]);
        l->n_sending = 0;
        return;
    }
    int n_done = 0;
    MPI_Testsome(l->n_sending, l->sending, &n_done, l->done_idx, MPI_STATUSES_IGNORE);
    if (n_done <= 0 || n_done == MPI_UNDEFINED) return;
    for (int i = 0; i < n_done; i++) free(l->sending_text[l->done_idx[i]]), l->sending_text[l->done_idx[i]] = NULL;
    int k = 0;
    for (int i = 0; i < l->n_sending; i++) /* completed requests are MPI_REQUEST_NULL now */
        if (l->sending_text[i]) l->sending[k] = l->sending[i], l->sending_text[k++] = l->sending_text[i];
    l->n_sending = k;
}

/*
 * One JOB message, sent without waiting for it to leave (MPI_Isend; texts freed by master_reap_sends).
 * A blocking send stalls the master whenever the shared-memory queues to a worker are full, which at
 * 128 queued jobs per worker they were: in `run --dry-run` the master spent 68% of its time in MPI_Send
 * while the workers waited for jobs. Messages to one rank still arrive in the order they were sent.
 */
static void master_send_job(leaders *l, json_t *msg, int dest) {
    char *text = json_dumps(msg, JSON_COMPACT);
    if (text && l->n_sending == l->cap_sending) {
        int cap = l->cap_sending ? 2 * l->cap_sending : 256;
        MPI_Request *r = realloc(l->sending, sizeof *r * (size_t)cap);
        if (r) l->sending = r;
        char **t = r ? realloc(l->sending_text, sizeof *t * (size_t)cap) : NULL;
        if (t) l->sending_text = t;
        int *d = t ? realloc(l->done_idx, sizeof *d * (size_t)cap) : NULL;
        if (d) l->done_idx = d, l->cap_sending = cap;
    }
    if (!text || l->n_sending == l->cap_sending) { /* out of memory: the blocking send */
        free(text);
        send_json(msg, dest, TAG_JOB);
        return;
    }
    MPI_Isend(text, (int)strlen(text) + 1, MPI_CHAR, dest, TAG_JOB, MPI_COMM_WORLD, &l->sending[l->n_sending]);
    l->sending_text[l->n_sending++] = text;
}

/* After the batch's commit: sends the claimed jobs, and STOP to every leader that spoke, holds
 * nothing and got nothing (no job left, a stop signal or a failure). */
static void master_send_outbox(leaders *l, int world) {
    for (int i = 0; i < l->n_outbox; i++) {
        l->since[l->outbox_to[i]] = now_s();
        master_send_job(l, l->outbox[i], l->outbox_to[i]);
        json_decref(l->outbox[i]);
    }
    l->n_outbox = 0;
    for (int src = 1; src < world; src++) {
        if (!l->heard[src]) continue;
        l->heard[src] = 0;
        if (l->queued[src] > 0 || l->stopped[src]) continue;
        json_t *stop = json_object();
        send_json(stop, src, TAG_STOP);
        json_decref(stop);
        l->stopped[src] = 1;
        l->active--;
    }
}

/* A batch failed to commit: its claims never happened (their messages are dropped; its results go
 * back to pending when the run ends), and the run stops. */
static void master_drop_outbox(master *m, leaders *l, const sd_error *err) {
    master_halt(m, err->msg);
    for (int i = 0; i < l->n_outbox; i++) {
        l->queued[l->outbox_to[i]]--;
        l->busy--;
        json_decref(l->outbox[i]);
    }
    l->n_outbox = 0;
}

/*
 * --job-timeout: a leader holding jobs that has sent nothing for that long is lost. Its jobs count an
 * attempt but stay held by this run (no other worker renders them now; the run releases them at its
 * end) and it gets no more work.
 */
static void master_watch_timeouts(master *m, leaders *l, int world) {
    double t = m->opt->job_timeout, now = now_s();
    if (t <= 0 || now - l->timeouts_at < 0.1) return;
    l->timeouts_at = now;
    for (int src = 1; src < world; src++) {
        if (l->lost[src] || l->queued[src] == 0 || now - l->since[src] <= t) continue;
        sd_error err = {0};
        char why[400];
        snprintf(why, sizeof why, "%s: no result within --job-timeout %g s (worker hung or unreachable)", l->who[src], t);
        int held = 0, gave_up = 0;
        if (jobdb_time_out(m->db, l->who[src], why, &held, &gave_up, &err) < 0) master_halt(m, err.msg);
        fprintf(stderr, "sdrender run: %s; its %d job(s) count an attempt (%d of them given up as failed) and go "
                        "back to pending when this run ends; no more jobs for it\n", why, held, gave_up);
        l->lost[src] = 1;
        l->busy -= l->queued[src];
        l->queued[src] = 0;
        l->heard[src] = 0;
        if (!l->stopped[src]) l->active--;
        l->stopped[src] = 1;
        m->lost_workers++; /* the others go on; the run ends "error" (master_main) */
    }
}

/*
 * The hand-out loop, in batches: every message waiting (READY, RESULT, FATAL; up to 256) is taken
 * inside one database transaction, each leader that spoke is topped up with claims in the same
 * transaction, the transaction commits (one sync for all), and only then are the jobs sent. It ends
 * once every leader has been sent STOP (no job left, a stop signal, or a failure).
 */
static void master_hand_out(master *m, int world, int n_leaders) {
    leaders l = {.active = n_leaders, .beat_at = now_s()};
    l.queued = calloc((size_t)world, sizeof *l.queued);
    l.who = calloc((size_t)world, sizeof *l.who);
    l.stopped = calloc((size_t)world, sizeof *l.stopped);
    l.heard = calloc((size_t)world, sizeof *l.heard);
    l.lora_set = calloc((size_t)world, sizeof *l.lora_set);
    l.since = calloc((size_t)world, sizeof *l.since);
    l.lost = calloc((size_t)world, sizeof *l.lost);
    if (!l.queued || !l.who || !l.stopped || !l.heard || !l.lora_set || !l.since || !l.lost) {
        fprintf(stderr, "sdrender: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    while (l.active > 0) {
        master_reap_sends(&l, 0);
        master_watch_stop(m, &l);
        master_watch_timeouts(m, &l, world);
        if (l.active == 0) break;
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st);
        if (!flag) {
            master_idle(m, &l);
            continue;
        }
        /* without a batch (the database refused one) every call commits on its own, as it would */
        sd_error err = {0};
        int batched = jobdb_batch_begin(m->db, &err) == 0;
        for (int n = 0; flag && n < 256; n++) {
            if (master_take_message(m, &l, &st) && !l.stopped[st.MPI_SOURCE]) l.heard[st.MPI_SOURCE] = 1;
            MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st);
        }
        for (int src = 1; src < world; src++)
            if (l.heard[src] && master_top_up(m, &l, src) < 0) break;
        if (batched && jobdb_batch_commit(m->db, &err) < 0) master_drop_outbox(m, &l, &err);
        master_send_outbox(&l, world);
    }
    /* Every JOB message has left, unless a leader was lost: one that hangs may never read what was sent
     * to it, and waiting would hang the master too. The run then ends with MPI_Abort (master_main),
     * and the texts stay where MPI may still read them. */
    int any_lost = 0;
    for (int i = 0; i < world; i++) any_lost |= l.lost[i];
    master_reap_sends(&l, !any_lost);
    if (l.n_sending > 0) abandoned_sends = l.sending_text; /* reachable until the abort */
    else free(l.sending_text);
    free(l.sending);
    free(l.done_idx);
    free(l.queued);
    free(l.who);
    free(l.stopped);
    free(l.heard);
    for (int i = 0; i < world; i++) free(l.lora_set[i]);
    free(l.lora_set);
    free(l.since);
    free(l.lost);
    free(l.outbox);
    free(l.outbox_to);
}

/* Finish: releases jobs still marked running, ends the run in the table, prints the summary and
 * closes the database. Returns the exit status. */
static int master_finish(master *m) {
    sd_error err = {0};
    if (stop_signal && strcmp(m->end_status, "error")) m->end_status = "stopped";
    int released = 0;
    if (jobdb_release(m->db, &released, &err) < 0) fprintf(stderr, "sdrender: %s\n", err.msg);
    if (jobdb_run_end(m->db, m->end_status, &err) < 0) fprintf(stderr, "sdrender: %s\n", err.msg);
    if (!m->opt->quiet)
        fprintf(stderr, "sdrender run: %s: %lld done, %lld failed, %lld to retry%s\n", m->end_status,
                (long long)m->done, (long long)m->failed, (long long)m->retried,
                released ? " (released in-flight jobs)" : "");
    jobdb_close(m->db);
    return m->exit_code;
}

/* Rank 0: start (begin the run, recover), hand out the jobs (or render them alone), finish. */
static int master_main(const sd_run_options *opt, const sd_run_worker_ops *ops, int world, int local_workers,
                       sd_parallel parallel) {
    sd_error err = {0};
    master m = {.opt = opt, .t0 = now_s(), .end_status = "complete", .parallel = parallel};
    int n_leaders = (world - 1) / (opt->group_size > 0 ? opt->group_size : 1);
    int rc = master_begin(&m, ops, world, &err);
    if (rc == 0) rc = master_recover(&m, world > 1 ? n_leaders : 1, &err);
    if (rc < 0) return master_abort_start(&m, world, rc, &err);
    if (world == 1) master_render_alone(&m, ops, local_workers);
    else master_hand_out(&m, world, n_leaders);
    if (m.lost_workers) master_fail(&m, 1);
    rc = master_finish(&m);
    if (m.lost_workers) {
        /* a hung rank would keep mpirun (and MPI_Finalize) waiting for ever */
        fprintf(stderr, "sdrender run: %d worker(s) lost after --job-timeout: ending every rank\n", m.lost_workers);
        MPI_Abort(MPI_COMM_WORLD, rc ? rc : 1);
    }
    return rc;
}

int sd_run_batch(int *argc, char ***argv, const sd_run_options *opt, const sd_run_worker_ops *ops) {
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    int rank = 0, world = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    install_signals();
    /* rendering ranks on this node share its cores (the master, rank 0, mostly waits) */
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    int node_size = 1, masters_here = 0, is_master = rank == 0;
    MPI_Comm_size(node, &node_size);
    MPI_Allreduce(&is_master, &masters_here, 1, MPI_INT, MPI_SUM, node);
    MPI_Comm_free(&node);
    int local_workers = world == 1 ? 1 : node_size - masters_here;
    if (local_workers < 1) local_workers = 1;
    int rc = 0, K = opt->group_size > 1 ? opt->group_size : 1;
    sd_parallel parallel = SD_PARALLEL_TENSOR;
    sd_error err = {0};
    if (K > 1 && (world < 1 + K || (world - 1) % K))
        rc = sd_err(&err, SD_EINPUT, "--tp %d: the %d worker rank%s (all but the master, rank 0) must be a positive "
                    "multiple of %d; start mpirun with -np %d, %d, ...", K, world - 1, world - 1 == 1 ? "" : "s", K,
                    1 + K, 1 + 2 * K);
    /* jobs without guidance in a CFG-parallel group run on both halves alike (group.c) */
    if (rc == 0) rc = sd_parallel_resolve(opt->parallel, K, 1, &parallel, &err);
    if (rc < 0) {
        if (rank == 0) fprintf(stderr, "sdrender run: %s\n", err.msg);
        MPI_Finalize();
        return sd_err_exit_code(rc);
    }
    /* groups of K consecutive worker ranks */
    tp_group grp;
    MPI_Comm gcomm = MPI_COMM_NULL;
    if (K > 1) MPI_Comm_split(MPI_COMM_WORLD, rank == 0 ? MPI_UNDEFINED : (rank - 1) / K, rank, &gcomm);
    if (gcomm != MPI_COMM_NULL && tp_group_make(&grp, gcomm, parallel, &err) < 0) {
        fprintf(stderr, "sdrender[rank %d]: %s\n", rank, err.msg);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    if (rank == 0) rc = master_main(opt, ops, world, local_workers, parallel);
    else rc = worker_main(ops, rank, local_workers, gcomm != MPI_COMM_NULL ? &grp : NULL);
    if (gcomm != MPI_COMM_NULL) {
        tp_group_free(&grp);
        MPI_Comm_free(&gcomm);
    }
    MPI_Finalize();
    return rc;
}
