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
} worker;

static int render_one(worker *w, const sd_job *job, const char *model_sha, const char *out, json_t *res) {
    char sha[65] = "";
    double secs = 0;
    int retry = 1;
    sd_error err = {0};
    int rc = w->ops->render(w->state, job, model_sha, out, sha, &secs, &retry, &err);
    if (rc == SD_ECANCELED) json_object_set_new(res, "cancelled", json_true());
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

static int worker_main(const sd_run_worker_ops *ops, int rank, int local_workers) {
    worker w = {.ops = ops, .rank = rank};
    gethostname(w.host, sizeof w.host - 1);
    sd_error err = {0};
    if (ops->setup(ops->ctx, local_workers, &w.state, &err) < 0) {
        fprintf(stderr, "sdrender[rank %d]: %s\n", rank, err.msg);
        json_t *f = json_pack("{s:s}", "error", err.msg);
        send_json(f, 0, TAG_FATAL);
        json_decref(f);
        /* wait for the master's STOP so MPI shuts down in order */
        MPI_Status st;
        MPI_Probe(0, TAG_STOP, MPI_COMM_WORLD, &st);
        json_decref(recv_json(&st));
        return sd_err_exit_code(err.code);
    }
    json_t *ready = json_pack("{s:i,s:s}", "rank", rank, "host", w.host);
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
        } else {
            render_one(&w, &job, model_sha, out, res);
            sd_job_free(&job);
        }
        if (stop_signal) json_object_set_new(res, "stopping", json_true());
        send_json(res, 0, TAG_RESULT);
        json_decref(res);
        json_decref(msg);
    }
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
    if (json_is_true(json_object_get(res, "ok"))) {
        const char *out = json_string_value(json_object_get(res, "output"));
        const char *sha = json_string_value(json_object_get(res, "sha256"));
        if (jobdb_finish(m->db, id, out ? out : "", sha ? sha : "", secs, &err) < 0) {
            fprintf(stderr, "sdrender run: %s\n", err.msg);
            return;
        }
        m->done++;
        log_result(m, who, id, 1, secs, NULL);
    } else {
        const char *e = json_string_value(json_object_get(res, "error"));
        int retry = !json_is_false(json_object_get(res, "retry"));
        sd_job_status now = SD_JOB_PENDING;
        char msg[600];
        snprintf(msg, sizeof msg, "%s: %s", who, e ? e : "unknown error");
        if (jobdb_fail(m->db, id, msg, retry, &now, &err) < 0) {
            fprintf(stderr, "sdrender run: %s\n", err.msg);
            return;
        }
        if (now == SD_JOB_FAILED) m->failed++;
        else m->retried++;
        log_result(m, who, id, 0, secs, msg);
    }
}

/* Claims the next job and sends it to leader `dest`; 0 when none is left. */
static int master_dispatch(master *m, int dest, const char *who, int64_t *in_flight, sd_error *err) {
    sd_job job;
    int got = jobdb_claim(m->db, who, &job, err);
    if (got <= 0) return got;
    char *out = sd_run_output_path(m->out_dir, job.id);
    json_t *j = out ? runner_job_to_json(&job, out, m->model_sha) : NULL;
    if (!j) {
        free(out);
        sd_job_free(&job);
        return sd_err(err, SD_ENOMEM, "out of memory");
    }
    send_json(j, dest, TAG_JOB);
    *in_flight = job.id;
    json_decref(j);
    free(out);
    sd_job_free(&job);
    return 1;
}

/* Removes "<8 digits>.png.tmp.<pid>" files a killed worker left behind. */
static void clean_stale_temp_files(const char *dir);

static int master_main(const sd_run_options *opt, const sd_run_worker_ops *ops, int world, int local_workers) {
    sd_error err = {0};
    master m = {.opt = opt, .t0 = now_s()};
    jobdb_open_options oo = {.create = 0};
    int rc = jobdb_open(&m.db, opt->db_path, &oo, &err);
    if (rc == 0 && ops->identify) rc = ops->identify(ops->ctx, m.model_sha, &err);
    int n_leaders = (world - 1) / (opt->group_size > 0 ? opt->group_size : 1);
    if (rc == 0) {
        jobdb_run_config rcfg = {.model_path = opt->model_path,
                                 .model_sha256 = m.model_sha[0] ? m.model_sha : NULL,
                                 .settings_json = opt->settings_json,
                                 .ranks = world,
                                 .max_attempts = opt->max_attempts,
                                 .exclusive_s = opt->takeover ? 0 : SD_RUN_STALE_S};
        /* a run that was just stopped or killed may take some seconds to exit: wait for it a while */
        double t_wait = now_s();
        int said = 0;
        while ((rc = jobdb_run_begin(m.db, &rcfg, &err)) == SD_EBUSY && now_s() - t_wait < opt->wait_s &&
               !stop_signal) {
            if (!said++ && !opt->quiet)
                fprintf(stderr, "sdrender run: waiting up to %.0f s for the last run to exit: %s\n", opt->wait_s,
                        err.msg);
            sleep_ms(500);
        }
    }
    int requeued = 0, gave_up = 0;
    if (rc == 0) rc = jobdb_recover(m.db, &requeued, &gave_up, &err);
    if (rc == 0 && (requeued || gave_up) && !opt->quiet)
        fprintf(stderr, "sdrender run: recovered %d interrupted job(s) from earlier runs (%d given up as failed)\n",
                requeued, gave_up);
    if (rc == 0) rc = sd_fs_mkdirs(opt->out_dir, &err);
    if (rc == 0 && !realpath(opt->out_dir, m.out_dir))
        rc = sd_err(&err, SD_EIO, "%s: %s", opt->out_dir, strerror(errno));
    if (rc == 0) {
        clean_stale_temp_files(m.out_dir);
        jobdb_summary s;
        if (jobdb_summary_get(m.db, 0, &s, &err) == 0) {
            m.total_start = s.pending + s.running;
            if (!opt->quiet)
                fprintf(stderr, "sdrender run: %lld pending job(s), %d worker(s), output in %s\n", (long long)s.pending,
                        world > 1 ? n_leaders : 1, m.out_dir);
            jobdb_summary_free(&s);
        }
    }
    if (rc < 0) {
        fprintf(stderr, "sdrender: %s\n", err.msg);
        /* tell every worker to stop (they are loading or about to send READY) */
        for (int r = 1; r < world; r++) {
            json_t *stop = json_object();
            send_json(stop, r, TAG_STOP);
            json_decref(stop);
        }
        if (m.db) jobdb_close(m.db);
        return sd_err_exit_code(rc);
    }

    const char *end_status = "complete";
    int exit_code = 0;
    if (world == 1) {
        /* no workers: render here */
        void *state = NULL;
        rc = ops->setup(ops->ctx, local_workers, &state, &err);
        if (rc < 0) {
            fprintf(stderr, "sdrender: %s\n", err.msg);
            end_status = "error";
            exit_code = sd_err_exit_code(rc);
        }
        char me[300];
        char host[256] = "";
        gethostname(host, sizeof host - 1);
        snprintf(me, sizeof me, "%s:0", host);
        while (rc == 0 && !stop_signal) {
            int64_t id = 0;
            sd_job job;
            int got = jobdb_claim(m.db, me, &job, &err);
            if (got < 0) {
                fprintf(stderr, "sdrender: %s\n", err.msg);
                exit_code = 1;
                end_status = "error";
                break;
            }
            if (got == 0) break;
            id = job.id;
            char *out = sd_run_output_path(m.out_dir, id);
            json_t *res = json_object();
            worker w = {.ops = ops, .state = state};
            if (out) render_one(&w, &job, m.model_sha, out, res);
            master_record(&m, res, me);
            json_decref(res);
            free(out);
            sd_job_free(&job);
        }
        if (state) ops->teardown(state);
    } else {
        int64_t *in_flight = calloc((size_t)world, sizeof *in_flight);
        char (*who)[300] = calloc((size_t)world, sizeof *who);
        int *stopped = calloc((size_t)world, sizeof *stopped);
        int active = n_leaders, busy = 0;
        double stop_at = 0, beat_at = now_s();
        if (!in_flight || !who || !stopped) {
            fprintf(stderr, "sdrender: out of memory\n");
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        while (active > 0) {
            if (stop_signal && stop_at == 0) {
                stop_at = now_s();
                end_status = "stopped";
                if (!opt->quiet)
                    fprintf(stderr, "sdrender run: signal %d: no new jobs; waiting up to %.0f s for %d in flight\n",
                            (int)stop_signal, opt->grace, busy);
            }
            if (stop_at > 0 && busy > 0 && now_s() - stop_at > opt->grace) {
                int released = 0;
                if (jobdb_release(m.db, &released, &err) < 0) fprintf(stderr, "sdrender: %s\n", err.msg);
                if (!opt->quiet)
                    fprintf(stderr, "sdrender run: grace period over; %d job(s) back to pending\n", released);
                jobdb_run_end(m.db, "stopped", &err);
                jobdb_close(m.db);
                MPI_Abort(MPI_COMM_WORLD, 0);
            }
            int flag = 0;
            MPI_Status st;
            MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st);
            if (!flag) {
                if (now_s() - beat_at >= SD_RUN_HEARTBEAT_S) { /* while every worker renders */
                    beat_at = now_s();
                    if (jobdb_run_touch(m.db, &err) < 0) fprintf(stderr, "sdrender: %s\n", err.msg);
                }
                sleep_ms(5);
                continue;
            }
            int src = st.MPI_SOURCE;
            json_t *msg = recv_json(&st);
            int idle = 0;
            if (st.MPI_TAG == TAG_READY) {
                const char *host = json_string_value(json_object_get(msg, "host"));
                snprintf(who[src], sizeof who[src], "%s:%d", host ? host : "?", src);
                if (!opt->quiet) fprintf(stderr, "sdrender run: worker %s ready\n", who[src]);
                idle = 1;
            } else if (st.MPI_TAG == TAG_RESULT) {
                if (msg) master_record(&m, msg, who[src]);
                if (json_is_true(json_object_get(msg, "stopping")) && !stop_signal) stop_signal = SIGTERM;
                in_flight[src] = 0;
                busy--;
                idle = 1;
            } else if (st.MPI_TAG == TAG_FATAL) {
                const char *e = json_string_value(json_object_get(msg, "error"));
                fprintf(stderr, "sdrender run: worker rank %d cannot render: %s\n", src, e ? e : "?");
                if (!stop_signal) stop_signal = SIGTERM;
                end_status = "error";
                exit_code = 1;
                idle = 1;
            }
            json_decref(msg);
            if (!idle || stopped[src]) continue;
            int sent = 0;
            if (!stop_signal && exit_code == 0) {
                int got = master_dispatch(&m, src, who[src][0] ? who[src] : "?", &in_flight[src], &err);
                if (got < 0) {
                    fprintf(stderr, "sdrender: %s\n", err.msg);
                    stop_signal = SIGTERM;
                    end_status = "error";
                    exit_code = 1;
                } else if (got > 0) {
                    sent = 1;
                    busy++;
                }
            }
            if (!sent) {
                json_t *stop = json_object();
                send_json(stop, src, TAG_STOP);
                json_decref(stop);
                stopped[src] = 1;
                active--;
            }
        }
        free(in_flight);
        free(who);
        free(stopped);
    }
    if (stop_signal && strcmp(end_status, "error")) end_status = "stopped";
    int released = 0;
    if (jobdb_release(m.db, &released, &err) < 0) fprintf(stderr, "sdrender: %s\n", err.msg);
    if (jobdb_run_end(m.db, end_status, &err) < 0) fprintf(stderr, "sdrender: %s\n", err.msg);
    if (!opt->quiet)
        fprintf(stderr, "sdrender run: %s: %lld done, %lld failed, %lld to retry%s\n", end_status, (long long)m.done,
                (long long)m.failed, (long long)m.retried, released ? " (released in-flight jobs)" : "");
    jobdb_close(m.db);
    return exit_code;
}

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
    int rc;
    if (opt->group_size != 1) {
        if (rank == 0) fprintf(stderr, "sdrender: worker groups larger than one rank are not supported yet\n");
        rc = 2;
    } else {
        rc = rank == 0 ? master_main(opt, ops, world, local_workers) : worker_main(ops, rank, local_workers);
    }
    MPI_Finalize();
    return rc;
}
