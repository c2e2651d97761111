/* The state changes of a run: begin/end, recover, claim, finish, fail, release, and enqueue. */
#include "jobdb_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sha256.h"

int64_t jobdb_run_id(const jobdb *db) { return db->run_id; }
const char *jobdb_run_instance(const jobdb *db) { return db->instance; }

static int need_run(jobdb *db, const char *what, sd_error *err) {
    if (db->run_id > 0) return 0;
    return sd_err(err, SD_EINTERNAL, "%s: %s before jobdb_run_begin", db->path, what);
}

/* Steps a statement that returns no rows; reports failure as "while what". */
static int step_done(jobdb *db, sqlite3_stmt *st, const char *what, sd_error *err) {
    int s = sqlite3_step(st);
    return s == SQLITE_DONE ? 0 : jobdb_sqlite_error(db, s, what, err);
}

static uint32_t random_u32(void) {
    uint32_t r = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &r, sizeof r) != (ssize_t)sizeof r) r = 0;
        close(fd);
    }
    if (!r) r = (uint32_t)getpid() * 2654435761u ^ (uint32_t)jobdb_now(NULL);
    return r;
}

static int touch_run(jobdb *db, double now, sd_error *err) {
    if (db->in_batch && db->batch_touched) return 0; /* once per batch: its calls commit together */
    sqlite3_stmt *st;
    int rc = jobdb_prepare(db, "UPDATE runs SET last_seen_at = ?1 WHERE id = ?2", &st, err);
    if (rc < 0) return rc;
    sqlite3_bind_double(st, 1, now);
    sqlite3_bind_int64(st, 2, db->run_id);
    rc = step_done(db, st, "recording the run's heartbeat", err);
    jobdb_finalize(db, st);
    if (rc == 0 && db->in_batch) db->batch_touched = 1;
    return rc;
}

int jobdb_run_touch(jobdb *db, sd_error *err) {
    int rc = need_run(db, "recording a heartbeat", err);
    return rc < 0 ? rc : touch_run(db, jobdb_now(db), err);
}

/* Whether a process with this pid exists on this machine (EPERM: it does, as another user's). */
static int pid_alive(int64_t pid) {
    if (pid <= 0 || pid != (pid_t)pid) return 0;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* Binds the current run's shard count and index to parameters i and i + 1 (JOBDB_IN_SHARD). */
static void bind_shard(jobdb *db, sqlite3_stmt *st, int i) {
    sqlite3_bind_int(st, i, db->shard_count);
    sqlite3_bind_int(st, i + 1, db->shard_index);
}

/*
 * SD_EBUSY when a run that has not ended looks alive (jobdb_run_begin's
 * exclusive check): on `host` (ours) its pid exists, elsewhere it was seen
 * within stale_s seconds. Runs that are dead are left to jobdb_recover.
 */
static int check_no_live_run(jobdb *db, const char *host, double now, double stale_s, int shard_index,
                             int shard_count, sd_error *err) {
    sqlite3_stmt *st;
    /* a run of another shard of the same count holds none of our jobs */
    int rc = jobdb_prepare(db,
                           "SELECT instance, host, pid, coalesce(last_seen_at, started_at) FROM runs "
                           "WHERE ended_at IS NULL AND end_status IS NULL "
                           "AND NOT (?1 > 1 AND shard_count = ?1 AND shard_index <> ?2) ORDER BY id",
                           &st, err);
    if (rc < 0) return rc;
    sqlite3_bind_int(st, 1, shard_count);
    sqlite3_bind_int(st, 2, shard_index);
    int s = SQLITE_DONE;
    while (rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *inst = (const char *)sqlite3_column_text(st, 0), *h = (const char *)sqlite3_column_text(st, 1);
        int64_t pid = sqlite3_column_int64(st, 2);
        double seen = sqlite3_column_double(st, 3), ago = now - seen;
        int here = h && strcmp(h, host) == 0;
        if (here ? !pid_alive(pid) : ago >= stale_s) continue;
        rc = sd_err(err, SD_EBUSY,
                    "%s: run %s is still going (host %s, pid %lld, last seen %.0f s ago); a second run would render "
                    "its jobs again. Wait for it, stop it, or if it is dead start with --takeover",
                    db->path, inst ? inst : "?", h ? h : "?", (long long)pid, ago > 0 ? ago : 0);
    }
    if (rc == 0 && s != SQLITE_DONE) rc = jobdb_sqlite_error(db, s, "looking for live runs", err);
    jobdb_finalize(db, st);
    return rc;
}

int jobdb_run_begin(jobdb *db, const jobdb_run_config *cfg, sd_error *err) {
    static const jobdb_run_config none = {0};
    if (!cfg) cfg = &none;
    if (db->run_id > 0) return sd_err(err, SD_EINTERNAL, "%s: a run is already in progress", db->path);
    if (cfg->settings_json) {
        json_error_t jerr;
        json_t *j = json_loads(cfg->settings_json, JSON_DECODE_ANY, &jerr);
        if (!j) return sd_err(err, SD_EINPUT, "run settings are not valid JSON: %s", jerr.text);
        json_decref(j);
    }
    if (cfg->model_sha256 && !sd_sha256_is_hex(cfg->model_sha256))
        return sd_err(err, SD_EINPUT, "model hash '%s' is not a SHA-256 in lowercase hex", cfg->model_sha256);
    int sharded = cfg->shard_count > 1;
    if (cfg->shard_count < 0 || (sharded && (cfg->shard_index < 0 || cfg->shard_index >= cfg->shard_count)))
        return sd_err(err, SD_EINPUT, "shard %d/%d: the index must be in 0..count-1", cfg->shard_index,
                      cfg->shard_count);
    char host[256] = "";
    if (cfg->host) snprintf(host, sizeof host, "%s", cfg->host);
    else if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "unknown");
    double now = jobdb_now(db);

    /* one write transaction: two masters starting at once cannot both pass the check */
    int64_t run_id = 0;
    int rc = jobdb_tx_write(db, err);
    if (rc < 0) return rc;
    if (cfg->exclusive_s > 0)
        rc = check_no_live_run(db, host, now, cfg->exclusive_s, cfg->shard_index, sharded ? cfg->shard_count : 0, err);
    sqlite3_stmt *st = NULL;
    if (rc == 0)
        rc = jobdb_prepare(db,
                           "INSERT INTO runs (instance, model_path, model_sha256, settings_json, host, pid, ranks, "
                           "started_at, last_seen_at, shard_index, shard_count, group_size, parallel) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10, ?11, ?12)",
                           &st, err);
    /* The UNIQUE constraint backs the random part: on the (unlikely) clash, draw again. */
    for (int attempt = 0; rc == 0 && attempt < 5; attempt++) {
        snprintf(db->instance, sizeof db->instance, "%.64s-%ld-%lld-%08x", host, (long)getpid(), (long long)now,
                 random_u32());
        sqlite3_reset(st);
        jobdb_bind_text(st, 1, db->instance);
        jobdb_bind_text(st, 2, cfg->model_path);
        jobdb_bind_text(st, 3, cfg->model_sha256);
        jobdb_bind_text(st, 4, cfg->settings_json);
        jobdb_bind_text(st, 5, host);
        sqlite3_bind_int64(st, 6, (sqlite3_int64)getpid());
        sqlite3_bind_int(st, 7, cfg->ranks > 0 ? cfg->ranks : 1);
        sqlite3_bind_double(st, 8, now);
        if (sharded) {
            sqlite3_bind_int(st, 9, cfg->shard_index);
            sqlite3_bind_int(st, 10, cfg->shard_count);
        } else {
            sqlite3_bind_null(st, 9);
            sqlite3_bind_null(st, 10);
        }
        sqlite3_bind_int(st, 11, cfg->group_size > 1 ? cfg->group_size : 1);
        jobdb_bind_text(st, 12, cfg->group_size > 1 ? cfg->parallel : NULL);
        int s = sqlite3_step(st);
        if (s == SQLITE_DONE) {
            run_id = sqlite3_last_insert_rowid(db->h);
            break;
        }
        if (sqlite3_extended_errcode(db->h) != SQLITE_CONSTRAINT_UNIQUE || attempt == 4)
            rc = jobdb_sqlite_error(db, s, "recording the run", err);
    }
    jobdb_finalize(db, st);
    if (rc == 0) rc = jobdb_tx_commit(db, err);
    if (rc < 0) {
        jobdb_tx_rollback(db);
        db->instance[0] = 0;
        return rc;
    }
    db->run_id = run_id;
    db->max_attempts = cfg->max_attempts > 0 ? cfg->max_attempts : JOBDB_DEFAULT_MAX_ATTEMPTS;
    db->shard_count = sharded ? cfg->shard_count : 0;
    db->shard_index = sharded ? cfg->shard_index : 0;
    return 0;
}

int jobdb_run_end(jobdb *db, const char *end_status, sd_error *err) {
    int rc = need_run(db, "ending a run", err);
    if (rc < 0) return rc;
    sqlite3_stmt *st;
    rc = jobdb_prepare(db, "UPDATE runs SET ended_at = ?1, last_seen_at = ?1, end_status = ?2 WHERE id = ?3", &st,
                       err);
    if (rc < 0) return rc;
    sqlite3_bind_double(st, 1, jobdb_now(db));
    jobdb_bind_text(st, 2, end_status ? end_status : "complete");
    sqlite3_bind_int64(st, 3, db->run_id);
    rc = step_done(db, st, "ending the run", err);
    jobdb_finalize(db, st);
    if (rc == 0) {
        db->run_id = 0;
        db->instance[0] = 0;
    }
    return rc;
}

int jobdb_recover(jobdb *db, int *requeued, int *failed, sd_error *err) {
    if (requeued) *requeued = 0;
    if (failed) *failed = 0;
    int rc = need_run(db, "recovering jobs", err);
    if (rc == 0) rc = jobdb_tx_write(db, err);
    if (rc < 0) return rc;
    double now = jobdb_now(db);
    sqlite3_stmt *count = NULL, *update = NULL, *runs = NULL;
    /* Count first (same transaction), then move them: the error text names the
     * dead run and the rank that was rendering. */
    rc = jobdb_prepare(db,
                       "SELECT count(*), coalesce(sum(attempts + 1 >= ?1), 0) FROM jobs "
                       "WHERE status = 'running' AND run_id IS NOT ?2 AND " JOBDB_IN_SHARD("?4", "?5"),
                       &count, err);
    if (rc == 0) {
        sqlite3_bind_int(count, 1, db->max_attempts);
        sqlite3_bind_int64(count, 2, db->run_id);
        bind_shard(db, count, 4);
        int s = sqlite3_step(count);
        if (s != SQLITE_ROW) rc = jobdb_sqlite_error(db, s, "counting interrupted jobs", err);
        else {
            int total = sqlite3_column_int(count, 0), nfail = sqlite3_column_int(count, 1);
            if (requeued) *requeued = total - nfail;
            if (failed) *failed = nfail;
        }
    }
    if (rc == 0)
        rc = jobdb_prepare(
            db,
            "UPDATE jobs SET attempts = attempts + 1,"
            " status = CASE WHEN attempts + 1 >= ?1 THEN 'failed' ELSE 'pending' END,"
            " finished_at = CASE WHEN attempts + 1 >= ?1 THEN ?3 ELSE NULL END,"
            " error = 'interrupted: run ' || coalesce((SELECT instance FROM runs WHERE runs.id = jobs.run_id), '?')"
            "   || ' stopped while ' || coalesce(claimed_by, '?') || ' was rendering it (attempt '"
            "   || (attempts + 1) || ' of ' || ?1 || ')',"
            " error_at = ?3 "
            "WHERE status = 'running' AND run_id IS NOT ?2 AND " JOBDB_IN_SHARD("?4", "?5"),
            &update, err);
    if (rc == 0) {
        sqlite3_bind_int(update, 1, db->max_attempts);
        sqlite3_bind_int64(update, 2, db->run_id);
        sqlite3_bind_double(update, 3, now);
        bind_shard(db, update, 4);
        rc = step_done(db, update, "recovering interrupted jobs", err);
    }
    if (rc == 0)
        rc = jobdb_prepare(db,
                           "UPDATE runs SET end_status = 'lost' WHERE ended_at IS NULL AND end_status IS NULL "
                           "AND id <> ?1 AND NOT (?2 > 1 AND shard_count = ?2 AND shard_index <> ?3)",
                           &runs, err);
    if (rc == 0) {
        sqlite3_bind_int64(runs, 1, db->run_id);
        bind_shard(db, runs, 2);
        rc = step_done(db, runs, "marking dead runs", err);
    }
    if (rc == 0) rc = touch_run(db, now, err);
    jobdb_finalize(db, count);
    jobdb_finalize(db, update);
    jobdb_finalize(db, runs);
    if (rc == 0) rc = jobdb_tx_commit(db, err);
    if (rc < 0) {
        jobdb_tx_rollback(db);
        if (requeued) *requeued = 0;
        if (failed) *failed = 0;
    }
    return rc;
}

int jobdb_run_open_jobs(jobdb *db, int64_t *pending, int64_t *running, sd_error *err) {
    *pending = *running = 0;
    int rc = need_run(db, "counting its jobs", err);
    sqlite3_stmt *st = NULL;
    if (rc == 0)
        rc = jobdb_prepare(db,
                           "SELECT coalesce(sum(status = 'pending'), 0), coalesce(sum(status = 'running'), 0) "
                           "FROM jobs WHERE status IN ('pending', 'running') AND " JOBDB_IN_SHARD("?1", "?2"),
                           &st, err);
    if (rc < 0) return rc;
    bind_shard(db, st, 1);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        *pending = sqlite3_column_int64(st, 0);
        *running = sqlite3_column_int64(st, 1);
    } else {
        rc = jobdb_sqlite_error(db, s, "counting the run's jobs", err);
    }
    jobdb_finalize(db, st);
    return rc;
}

int jobdb_claim(jobdb *db, const char *claimed_by, sd_job *job, sd_error *err) {
    return jobdb_claim_prefer(db, claimed_by, NULL, job, err);
}

/* The lowest pending id in the run's shard, of LoRA set `set` unless set is NULL (0 when none). */
static int pick_pending(jobdb *db, const char *set, int64_t *id, sd_error *err) {
    sqlite3_stmt *pick = NULL;
    *id = 0;
    int rc = jobdb_prepare(db,
                           set ? "SELECT id FROM jobs WHERE status = 'pending' AND lora_set = ?3 AND "
                                 JOBDB_IN_SHARD("?1", "?2") " ORDER BY id LIMIT 1"
                               : "SELECT id FROM jobs WHERE status = 'pending' AND " JOBDB_IN_SHARD("?1", "?2")
                                 " ORDER BY id LIMIT 1",
                           &pick, err);
    if (rc == 0) {
        bind_shard(db, pick, 1);
        if (set) jobdb_bind_text(pick, 3, set);
        int s = sqlite3_step(pick);
        if (s == SQLITE_ROW) *id = sqlite3_column_int64(pick, 0);
        else if (s != SQLITE_DONE) rc = jobdb_sqlite_error(db, s, "looking for a pending job", err);
    }
    jobdb_finalize(db, pick);
    return rc;
}

int jobdb_claim_prefer(jobdb *db, const char *claimed_by, const char *lora_set, sd_job *job, sd_error *err) {
    memset(job, 0, sizeof *job);
    int rc = need_run(db, "claiming a job", err);
    if (rc < 0) return rc;
    if (!claimed_by || !*claimed_by) return sd_err(err, SD_EINTERNAL, "claim without a 'host:rank'");
    rc = jobdb_tx_write(db, err);
    if (rc < 0) return rc;
    double now = jobdb_now(db);
    sqlite3_stmt *mark = NULL, *read = NULL;
    int64_t id = 0;
    if (lora_set) rc = pick_pending(db, lora_set, &id, err);
    if (rc == 0 && id == 0) rc = pick_pending(db, NULL, &id, err);
    if (rc == 0 && id > 0)
        rc = jobdb_prepare(db,
                           "UPDATE jobs SET status = 'running', run_id = ?1, claimed_by = ?2, claimed_at = ?3 "
                           "WHERE id = ?4 AND status = 'pending'",
                           &mark, err);
    if (mark) {
        sqlite3_bind_int64(mark, 1, db->run_id);
        jobdb_bind_text(mark, 2, claimed_by);
        sqlite3_bind_double(mark, 3, now);
        sqlite3_bind_int64(mark, 4, id);
        rc = step_done(db, mark, "claiming a job", err);
        if (rc == 0 && sqlite3_changes(db->h) != 1)
            rc = sd_err(err, SD_EINTERNAL, "%s: job %lld changed under the write lock", db->path, (long long)id);
        if (rc == 0) rc = touch_run(db, now, err);
        if (rc == 0) rc = jobdb_prepare_jobs(db, "WHERE id = ?1", &read, err);
    }
    if (read) {
        sqlite3_bind_int64(read, 1, id);
        int s = sqlite3_step(read);
        rc = s == SQLITE_ROW ? jobdb_read_job(db, read, job, err) : jobdb_sqlite_error(db, s, "reading a job", err);
    }
    jobdb_finalize(db, mark);
    jobdb_finalize(db, read);
    if (rc == 0) rc = jobdb_tx_commit(db, err);
    if (rc < 0) {
        jobdb_tx_rollback(db);
        sd_job_free(job);
        return rc;
    }
    return id > 0 ? 1 : 0;
}

/* Explains why a finish/fail for job_id matched no row (called inside the transaction). */
static int not_held(jobdb *db, int64_t job_id, const char *action, sd_error *err) {
    sqlite3_stmt *st;
    int rc = jobdb_prepare(
        db, "SELECT j.status, j.run_id, r.instance FROM jobs j LEFT JOIN runs r ON r.id = j.run_id WHERE j.id = ?1",
        &st, err);
    if (rc < 0) return rc;
    sqlite3_bind_int64(st, 1, job_id);
    int s = sqlite3_step(st);
    long long id = (long long)job_id;
    if (s == SQLITE_DONE) rc = sd_err(err, SD_EINPUT, "%s: cannot %s job %lld: no such job", db->path, action, id);
    else if (s != SQLITE_ROW) rc = jobdb_sqlite_error(db, s, "reading a job", err);
    else {
        const char *status = (const char *)sqlite3_column_text(st, 0);
        const char *owner = (const char *)sqlite3_column_text(st, 2);
        if (status && !strcmp(status, "done"))
            rc = sd_err(err, SD_EINPUT, "%s: cannot %s job %lld: it is already done (a finished job is final)",
                        db->path, action, id);
        else if (status && !strcmp(status, "running"))
            rc = sd_err(err, SD_EINPUT, "%s: cannot %s job %lld: it is held by run %s, not by this run (%s)",
                        db->path, action, id, owner ? owner : "?", db->instance);
        else
            rc = sd_err(err, SD_EINPUT, "%s: cannot %s job %lld: it is %s, not running under this run", db->path,
                        action, id, status ? status : "?");
    }
    jobdb_finalize(db, st);
    return rc;
}

int jobdb_finish(jobdb *db, int64_t job_id, const char *output_path, const char *png_sha256,
                 double render_seconds, sd_error *err) {
    int rc = need_run(db, "finishing a job", err);
    if (rc < 0) return rc;
    if (!output_path || !*output_path)
        return sd_err(err, SD_EINPUT, "job %lld: finished without an output path", (long long)job_id);
    if (!png_sha256 || !sd_sha256_is_hex(png_sha256))
        return sd_err(err, SD_EINPUT, "job %lld: '%s' is not a SHA-256 in lowercase hex", (long long)job_id,
                      png_sha256 ? png_sha256 : "");
    if (!isfinite(render_seconds) || render_seconds < 0)
        return sd_err(err, SD_EINPUT, "job %lld: render time %g is not a duration", (long long)job_id,
                      render_seconds);
    rc = jobdb_tx_write(db, err);
    if (rc < 0) return rc;
    double now = jobdb_now(db);
    sqlite3_stmt *st;
    rc = jobdb_prepare(db,
                       "UPDATE jobs SET status = 'done', finished_at = ?1, output_path = ?2, png_sha256 = ?3,"
                       " render_seconds = ?4 WHERE id = ?5 AND status = 'running' AND run_id = ?6",
                       &st, err);
    if (rc == 0) {
        sqlite3_bind_double(st, 1, now);
        jobdb_bind_text(st, 2, output_path);
        jobdb_bind_text(st, 3, png_sha256);
        sqlite3_bind_double(st, 4, render_seconds);
        sqlite3_bind_int64(st, 5, job_id);
        sqlite3_bind_int64(st, 6, db->run_id);
        rc = step_done(db, st, "recording a finished job", err);
        jobdb_finalize(db, st);
    }
    if (rc == 0 && sqlite3_changes(db->h) != 1) rc = not_held(db, job_id, "finish", err);
    if (rc == 0) rc = touch_run(db, now, err);
    if (rc == 0) rc = jobdb_tx_commit(db, err);
    if (rc < 0) jobdb_tx_rollback(db);
    return rc;
}

int jobdb_fail(jobdb *db, int64_t job_id, const char *error, int retry, sd_job_status *now_status, sd_error *err) {
    int rc = need_run(db, "failing a job", err);
    if (rc == 0) rc = jobdb_tx_write(db, err);
    if (rc < 0) return rc;
    double now = jobdb_now(db);
    sqlite3_stmt *st = NULL, *read = NULL;
    rc = jobdb_prepare(db,
                       "UPDATE jobs SET attempts = attempts + 1,"
                       " status = CASE WHEN ?1 = 0 OR attempts + 1 >= ?2 THEN 'failed' ELSE 'pending' END,"
                       " finished_at = CASE WHEN ?1 = 0 OR attempts + 1 >= ?2 THEN ?3 ELSE NULL END,"
                       " error = ?4, error_at = ?3 WHERE id = ?5 AND status = 'running' AND run_id = ?6",
                       &st, err);
    if (rc == 0) {
        sqlite3_bind_int(st, 1, retry ? 1 : 0);
        sqlite3_bind_int(st, 2, db->max_attempts);
        sqlite3_bind_double(st, 3, now);
        jobdb_bind_text(st, 4, error && *error ? error : "unknown error");
        sqlite3_bind_int64(st, 5, job_id);
        sqlite3_bind_int64(st, 6, db->run_id);
        rc = step_done(db, st, "recording a failed job", err);
    }
    if (rc == 0 && sqlite3_changes(db->h) != 1) rc = not_held(db, job_id, "fail", err);
    if (rc == 0) rc = jobdb_prepare(db, "SELECT status FROM jobs WHERE id = ?1", &read, err);
    if (rc == 0) {
        sqlite3_bind_int64(read, 1, job_id);
        int s = sqlite3_step(read);
        const char *status = s == SQLITE_ROW ? (const char *)sqlite3_column_text(read, 0) : NULL;
        sd_job_status js = SD_JOB_FAILED;
        if (!status || sd_job_status_parse(status, &js) < 0)
            rc = jobdb_sqlite_error(db, s, "reading a job's status", err);
        else if (now_status) *now_status = js;
    }
    if (rc == 0) rc = touch_run(db, now, err);
    jobdb_finalize(db, st);
    jobdb_finalize(db, read);
    if (rc == 0) rc = jobdb_tx_commit(db, err);
    if (rc < 0) jobdb_tx_rollback(db);
    return rc;
}

int jobdb_time_out(jobdb *db, const char *claimed_by, const char *error, int *held, int *failed, sd_error *err) {
    if (held) *held = 0;
    if (failed) *failed = 0;
    int rc = need_run(db, "timing out jobs", err);
    if (rc == 0) rc = jobdb_tx_write(db, err);
    if (rc < 0) return rc;
    double now = jobdb_now(db);
    sqlite3_stmt *count = NULL, *st = NULL;
    rc = jobdb_prepare(db,
                       "SELECT count(*), coalesce(sum(attempts + 1 >= ?1), 0) FROM jobs "
                       "WHERE status = 'running' AND run_id = ?2 AND claimed_by = ?3",
                       &count, err);
    if (rc == 0) {
        sqlite3_bind_int(count, 1, db->max_attempts);
        sqlite3_bind_int64(count, 2, db->run_id);
        jobdb_bind_text(count, 3, claimed_by);
        int s = sqlite3_step(count);
        if (s != SQLITE_ROW) rc = jobdb_sqlite_error(db, s, "counting a lost worker's jobs", err);
        else {
            if (held) *held = sqlite3_column_int(count, 0);
            if (failed) *failed = sqlite3_column_int(count, 1);
        }
    }
    if (rc == 0)
        rc = jobdb_prepare(db,
                           "UPDATE jobs SET attempts = attempts + 1,"
                           " status = CASE WHEN attempts + 1 >= ?1 THEN 'failed' ELSE 'running' END,"
                           " finished_at = CASE WHEN attempts + 1 >= ?1 THEN ?3 ELSE NULL END,"
                           " error = ?4, error_at = ?3 WHERE status = 'running' AND run_id = ?2 AND claimed_by = ?5",
                           &st, err);
    if (rc == 0) {
        sqlite3_bind_int(st, 1, db->max_attempts);
        sqlite3_bind_int64(st, 2, db->run_id);
        sqlite3_bind_double(st, 3, now);
        jobdb_bind_text(st, 4, error && *error ? error : "timed out");
        jobdb_bind_text(st, 5, claimed_by);
        rc = step_done(db, st, "timing out a lost worker's jobs", err);
    }
    jobdb_finalize(db, count);
    jobdb_finalize(db, st);
    if (rc == 0) rc = touch_run(db, now, err);
    if (rc == 0) rc = jobdb_tx_commit(db, err);
    if (rc < 0) {
        jobdb_tx_rollback(db);
        if (held) *held = 0;
        if (failed) *failed = 0;
    }
    return rc;
}

/* One try of jobdb_release. */
static int release_once(jobdb *db, int *released, sd_error *err) {
    int rc = jobdb_tx_write(db, err);
    if (rc < 0) return rc;
    sqlite3_stmt *st;
    rc = jobdb_prepare(db, "UPDATE jobs SET status = 'pending' WHERE status = 'running' AND run_id = ?1", &st, err);
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, db->run_id);
        rc = step_done(db, st, "releasing this run's jobs", err);
        if (rc == 0 && released) *released = sqlite3_changes(db->h);
        jobdb_finalize(db, st);
    }
    if (rc == 0) rc = touch_run(db, jobdb_now(db), err);
    if (rc == 0) rc = jobdb_tx_commit(db, err);
    if (rc < 0) {
        jobdb_tx_rollback(db);
        if (released) *released = 0;
    }
    return rc;
}

int jobdb_release(jobdb *db, int *released, sd_error *err) {
    if (released) *released = 0;
    int rc = need_run(db, "releasing jobs", err);
    if (rc < 0) return rc;
    rc = release_once(db, released, err);
    if (rc < 0 && !strcmp(db->journal, "wal") && sd_err_is_env(err)) {
        /* a full disk: copy the WAL into the database (overwriting pages it has) and restart the WAL
         * from its beginning, so this small change reuses the WAL's space instead of growing it */
        sqlite3_wal_checkpoint_v2(db->h, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
        rc = release_once(db, released, err);
    }
    return rc;
}

/*
 * Binds columns ?1..?15 of the insert except the seed (?3), which the caller binds, then the optional
 * groups the database's schema has (insert_sql): task, rng, noise_level (5), SDXL's size conditioning (6),
 * prompt_syntax, loras, lora_dir (7). Returns the parameter index of lora_set (0 without it), which the
 * caller binds.
 */
static int bind_spec(sqlite3_stmt *st, const sd_job *j, double now, int version) {
    jobdb_bind_text(st, 1, j->prompt);
    jobdb_bind_text(st, 2, j->negative_prompt ? j->negative_prompt : "");
    sqlite3_bind_int(st, 4, j->steps);
    sqlite3_bind_double(st, 5, j->cfg_scale);
    jobdb_bind_text(st, 6, sampler_kind_name(j->sampler));
    sqlite3_bind_int(st, 7, j->karras ? 1 : 0);
    sqlite3_bind_int(st, 8, j->width);
    sqlite3_bind_int(st, 9, j->height);
    sqlite3_bind_int(st, 10, j->clip_skip);
    jobdb_bind_text(st, 11, j->init_image);
    jobdb_bind_text(st, 12, j->mask);
    if (j->init_image && !j->upscale) sqlite3_bind_double(st, 13, j->strength);
    else sqlite3_bind_null(st, 13);
    jobdb_bind_text(st, 14, j->source);
    sqlite3_bind_double(st, 15, now);
    int p = 16;
    if (version >= 5) {
        jobdb_bind_text(st, p, j->upscale ? "upscale" : "generate");
        jobdb_bind_text(st, p + 1, sd_rng_kind_name(j->rng));
        if (j->upscale) sqlite3_bind_int(st, p + 2, j->noise_level);
        else sqlite3_bind_null(st, p + 2);
        p += 3;
    }
    if (version >= JOBDB_SCHEMA_SDXL) {
        const int cond[6] = {j->orig_width, j->orig_height, j->crop_top, j->crop_left, j->target_width, j->target_height};
        for (int i = 0; i < 6; i++) sqlite3_bind_int(st, p + i, cond[i]);
        p += 6;
    }
    if (version < JOBDB_SCHEMA_LORA) return 0;
    jobdb_bind_text(st, p, sd_prompt_syntax_name(j->prompt_syntax));
    jobdb_bind_text(st, p + 1, j->loras && *j->loras ? j->loras : NULL);
    jobdb_bind_text(st, p + 2, j->lora_dir);
    return p + 3;
}

/* The insert bind_spec fills for a database at schema `version` into sql (size bytes). */
static void insert_sql(char *sql, size_t size, int version) {
    int n = snprintf(sql, size, "INSERT INTO jobs (prompt, negative_prompt, seed, steps, cfg_scale, sampler, karras,"
                                " width, height, clip_skip, init_image, mask, strength, source, enqueued_at%s%s%s)"
                                " VALUES (?1",
                     version >= 5 ? ", task, rng, noise_level" : "",
                     version >= JOBDB_SCHEMA_SDXL ? JOBDB_JOB_COLUMNS_SDXL : "",
                     version >= JOBDB_SCHEMA_LORA ? ", prompt_syntax, loras, lora_dir, lora_set" : "");
    int params = 15 + (version >= 5 ? 3 : 0) + (version >= JOBDB_SCHEMA_SDXL ? 6 : 0) +
                 (version >= JOBDB_SCHEMA_LORA ? 4 : 0);
    for (int i = 2; i <= params; i++) n += snprintf(sql + n, size - (size_t)n, ", ?%d", i);
    snprintf(sql + n, size - (size_t)n, ")");
}

/* 1 when j sets SDXL's size conditioning (which only schema 6 can store). */
static int has_size_cond(const sd_job *j) {
    return j->orig_width || j->orig_height || j->crop_top || j->crop_left || j->target_width || j->target_height;
}

int jobdb_enqueue(jobdb *db, const sd_job *specs, size_t n, int repeat, int64_t seed_base, int64_t *first_id,
                  int64_t *last_id, sd_error *err) {
    if (first_id) *first_id = 0;
    if (last_id) *last_id = 0;
    if (repeat < 1) return sd_err(err, SD_EINPUT, "repeat must be >= 1, got %d", repeat);
    if (seed_base < 0) return sd_err(err, SD_EINPUT, "seed base must be >= 0, got %lld", (long long)seed_base);
    for (size_t i = 0; i < n; i++) {
        int rc = sd_job_spec_check(&specs[i], err);
        if (rc < 0) return sd_err_prefix(err, "%s", specs[i].source ? specs[i].source : "job spec");
    }
    if (n == 0) return 0;
    int rc = jobdb_tx_write(db, err);
    if (rc < 0) return rc;
    double now = jobdb_now(db);
    sqlite3_stmt *ins = NULL, *seed = NULL;
    /* a database held at an older schema (jobdb_open_options.schema_version, migration tests) has no task,
     * rng, noise_level (5), size-conditioning (6) or LoRA columns (7): rows go in as that version wrote them */
    int version = db->schema_version;
    for (size_t i = 0; version < 5 && i < n; i++)
        if (specs[i].upscale || specs[i].rng != SD_RNG_CPU)
            rc = sd_err(err, SD_EUNSUPPORTED, "%s: schema version %d has no upscale or rng columns", db->path,
                        db->schema_version);
    for (size_t i = 0; version < JOBDB_SCHEMA_SDXL && i < n && rc == 0; i++)
        if (has_size_cond(&specs[i]))
            rc = sd_err(err, SD_EINPUT, "%s: schema version %d has no SDXL size-conditioning columns", db->path,
                        db->schema_version);
    char sql[1024];
    insert_sql(sql, sizeof sql, version);
    if (rc == 0) rc = jobdb_prepare(db, sql, &ins, err);
    if (rc == 0) rc = jobdb_prepare(db, "UPDATE jobs SET seed = ?1 WHERE id = ?2", &seed, err);
    int64_t first = 0, id = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const sd_job *j = &specs[i];
        for (int k = 0; rc == 0 && k < repeat; k++) {
            if (j->seed >= 0 && j->seed > INT64_MAX - k) {
                rc = sd_err(err, SD_EINPUT, "%s: seed %lld + copy %d overflows", j->source ? j->source : "job",
                            (long long)j->seed, k);
                break;
            }
            sqlite3_reset(ins);
            int set_param = bind_spec(ins, j, now, version);
            char *label = NULL;
            if ((rc = sd_job_lora_label(j, &label, err)) < 0) break;
            if (!set_param && (*label || j->prompt_syntax != SD_PROMPT_PLAIN))
                rc = sd_err(err, SD_EINPUT, "%s: schema version %d has no LoRA or prompt-syntax columns", db->path,
                            db->schema_version);
            if (set_param) sqlite3_bind_text(ins, set_param, label, -1, SQLITE_TRANSIENT);
            free(label);
            if (rc < 0) break;
            sqlite3_bind_int64(ins, 3, j->seed >= 0 ? j->seed + k : 0);
            rc = step_done(db, ins, "inserting a job", err);
            if (rc < 0) break;
            id = sqlite3_last_insert_rowid(db->h);
            if (!first) first = id;
            if (j->seed >= 0) continue;
            /* derived seed: seed_base + id - 1, so it depends on the job alone */
            if (seed_base > INT64_MAX - (id - 1)) {
                rc = sd_err(err, SD_EINPUT, "seed base %lld + job id %lld - 1 overflows", (long long)seed_base,
                            (long long)id);
                break;
            }
            sqlite3_reset(seed);
            sqlite3_bind_int64(seed, 1, seed_base + id - 1);
            sqlite3_bind_int64(seed, 2, id);
            rc = step_done(db, seed, "setting a job's seed", err);
        }
    }
    jobdb_finalize(db, ins);
    jobdb_finalize(db, seed);
    if (rc == 0) rc = jobdb_tx_commit(db, err);
    if (rc < 0) {
        jobdb_tx_rollback(db);
        return rc;
    }
    if (first_id) *first_id = first;
    if (last_id) *last_id = id;
    return 0;
}
