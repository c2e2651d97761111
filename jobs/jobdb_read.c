/* Reading the job table: one job, the status summary, iterators; and storing metrics. */
#include "jobdb_internal.h"
#include "jobsel.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int jobdb_job_get(jobdb *db, int64_t job_id, sd_job *job, sd_error *err) {
    memset(job, 0, sizeof *job);
    sqlite3_stmt *st;
    int rc = jobdb_prepare_jobs(db, "WHERE id = ?1", &st, err);
    if (rc < 0) return rc;
    sqlite3_bind_int64(st, 1, job_id);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        rc = jobdb_read_job(db, st, job, err);
        if (rc == 0) rc = 1;
    }
    else if (s == SQLITE_DONE) rc = 0;
    else rc = jobdb_sqlite_error(db, s, "reading a job", err);
    jobdb_finalize(db, st);
    return rc;
}

static void copy_col(sqlite3_stmt *st, int i, char *dst, size_t n) {
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(dst, n, "%s", t ? (const char *)t : "");
}

static int summary_counts(jobdb *db, jobdb_summary *s, sd_error *err) {
    sqlite3_stmt *st;
    int rc = jobdb_prepare(db, "SELECT status, count(*) FROM jobs GROUP BY status", &st, err);
    if (rc < 0) return rc;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        int64_t n = sqlite3_column_int64(st, 1);
        sd_job_status js;
        if (!name || sd_job_status_parse(name, &js) < 0) continue; /* the CHECK makes this impossible */
        int64_t *slot[] = {&s->pending, &s->running, &s->done, &s->failed};
        *slot[js] = n;
        s->total += n;
    }
    if (r != SQLITE_DONE) rc = jobdb_sqlite_error(db, r, "counting jobs", err);
    jobdb_finalize(db, st);
    return rc;
}

static int summary_last_run(jobdb *db, jobdb_summary *s, sd_error *err) {
    sqlite3_stmt *st;
    int rc = jobdb_prepare(db,
                           "SELECT id, instance, host, ranks, started_at, ended_at, end_status, last_seen_at, group_size, parallel"
                           " FROM runs ORDER BY id DESC LIMIT 1",
                           &st, err);
    if (rc < 0) return rc;
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        s->last_run_id = sqlite3_column_int64(st, 0);
        copy_col(st, 1, s->last_run_instance, sizeof s->last_run_instance);
        copy_col(st, 2, s->last_run_host, sizeof s->last_run_host);
        s->last_run_ranks = sqlite3_column_int(st, 3);
        s->last_run_started_at = sqlite3_column_double(st, 4);
        s->last_run_ended_at = sqlite3_column_double(st, 5);
        copy_col(st, 6, s->last_run_end_status, sizeof s->last_run_end_status);
        s->last_run_last_seen_at = sqlite3_column_double(st, 7);
        s->last_run_group_size = sqlite3_column_int(st, 8);
        copy_col(st, 9, s->last_run_parallel, sizeof s->last_run_parallel);
    } else if (r != SQLITE_DONE) {
        rc = jobdb_sqlite_error(db, r, "reading the last run", err);
    }
    jobdb_finalize(db, st);
    return rc;
}

/* Images per minute of the latest run that finished a job: its done jobs over
 * the span from its start to its latest finish (model loading included, as a
 * user waiting for the next run will experience it). */
static int summary_rate(jobdb *db, jobdb_summary *s, sd_error *err) {
    sqlite3_stmt *st;
    int rc = jobdb_prepare(db,
                           "SELECT r.id, r.started_at, count(*), max(j.finished_at) FROM jobs j"
                           " JOIN runs r ON r.id = j.run_id WHERE j.status = 'done'"
                           " GROUP BY r.id ORDER BY r.id DESC LIMIT 1",
                           &st, err);
    if (rc < 0) return rc;
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        double span = sqlite3_column_double(st, 3) - sqlite3_column_double(st, 1);
        if (span > 0) {
            s->rate_run_id = sqlite3_column_int64(st, 0);
            s->images_per_minute = (double)sqlite3_column_int64(st, 2) * 60.0 / span;
        }
    } else if (r != SQLITE_DONE) {
        rc = jobdb_sqlite_error(db, r, "computing the rate", err);
    }
    jobdb_finalize(db, st);
    int64_t left = s->pending + s->running;
    if (left == 0) s->eta_seconds = 0;
    else if (s->images_per_minute > 0) s->eta_seconds = (double)left * 60.0 / s->images_per_minute;
    else s->eta_seconds = -1;
    return rc;
}

static int summary_errors(jobdb *db, int max_errors, jobdb_summary *s, sd_error *err) {
    if (max_errors <= 0) return 0;
    s->errors = calloc((size_t)max_errors, sizeof *s->errors);
    if (!s->errors) return sd_err(err, SD_ENOMEM, "out of memory");
    sqlite3_stmt *st;
    int rc = jobdb_prepare(db,
                           "SELECT id, status, attempts, error_at, claimed_by, error FROM jobs"
                           " WHERE error IS NOT NULL ORDER BY error_at DESC, id DESC LIMIT ?1",
                           &st, err);
    if (rc < 0) return rc;
    sqlite3_bind_int(st, 1, max_errors);
    int r = SQLITE_DONE;
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW) {
        jobdb_error_entry *e = &s->errors[s->n_errors++];
        e->job_id = sqlite3_column_int64(st, 0);
        const char *status = (const char *)sqlite3_column_text(st, 1);
        if (!status || sd_job_status_parse(status, &e->status) < 0) e->status = SD_JOB_FAILED;
        e->attempts = sqlite3_column_int(st, 2);
        e->at = sqlite3_column_double(st, 3);
        const char *by = (const char *)sqlite3_column_text(st, 4);
        e->claimed_by = by ? strdup(by) : NULL;
        e->error = strdup((const char *)sqlite3_column_text(st, 5));
        if ((by && !e->claimed_by) || !e->error) rc = sd_err(err, SD_ENOMEM, "out of memory");
    }
    if (rc == 0 && r != SQLITE_DONE) rc = jobdb_sqlite_error(db, r, "reading errors", err);
    jobdb_finalize(db, st);
    return rc;
}

static int summary_lora_sets(jobdb *db, jobdb_summary *s, sd_error *err) {
    enum { MAX_SETS = 32 };
    s->lora_sets = calloc(MAX_SETS, sizeof *s->lora_sets);
    if (!s->lora_sets) return sd_err(err, SD_ENOMEM, "out of memory");
    sqlite3_stmt *st;
    int rc = jobdb_prepare(db,
                           "SELECT lora_set, sum(status = 'running'), sum(status = 'pending') FROM jobs"
                           " WHERE status IN ('running', 'pending') GROUP BY lora_set"
                           " ORDER BY sum(status = 'running') DESC, lora_set LIMIT ?1",
                           &st, err);
    if (rc < 0) return rc;
    sqlite3_bind_int(st, 1, MAX_SETS);
    int r = SQLITE_DONE;
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW) {
        struct jobdb_lora_count *c = &s->lora_sets[s->n_lora_sets++];
        const char *set = (const char *)sqlite3_column_text(st, 0);
        c->lora_set = strdup(set ? set : "");
        c->running = sqlite3_column_int64(st, 1);
        c->pending = sqlite3_column_int64(st, 2);
        if (!c->lora_set) rc = sd_err(err, SD_ENOMEM, "out of memory");
    }
    if (rc == 0 && r != SQLITE_DONE) rc = jobdb_sqlite_error(db, r, "reading LoRA sets", err);
    jobdb_finalize(db, st);
    return rc;
}

int jobdb_summary_get(jobdb *db, int max_errors, jobdb_summary *s, sd_error *err) {
    memset(s, 0, sizeof *s);
    s->schema_version = db->schema_version;
    /* one read transaction: counts, rate and errors come from the same moment */
    int rc = jobdb_tx_read(db, err);
    if (rc == 0) rc = summary_counts(db, s, err);
    if (rc == 0) rc = summary_last_run(db, s, err);
    if (rc == 0) rc = summary_rate(db, s, err);
    if (rc == 0) rc = summary_errors(db, max_errors, s, err);
    if (rc == 0) rc = summary_lora_sets(db, s, err);
    if (rc == 0) rc = jobdb_tx_commit(db, err);
    if (rc < 0) {
        jobdb_tx_rollback(db);
        jobdb_summary_free(s);
    }
    return rc;
}

void jobdb_summary_free(jobdb_summary *s) {
    for (int i = 0; i < s->n_errors; i++) {
        free(s->errors[i].claimed_by);
        free(s->errors[i].error);
    }
    free(s->errors);
    for (int i = 0; i < s->n_lora_sets; i++) free(s->lora_sets[i].lora_set);
    free(s->lora_sets);
    memset(s, 0, sizeof *s);
}

struct jobdb_iter {
    jobdb *db;
    sqlite3_stmt *st;
};

int jobdb_iter_begin(jobdb *db, sd_job_status status, jobdb_iter **out, sd_error *err) {
    *out = NULL;
    jobdb_iter *it = calloc(1, sizeof *it);
    if (!it) return sd_err(err, SD_ENOMEM, "out of memory");
    it->db = db;
    int rc = jobdb_prepare_jobs(db, "WHERE status = ?1 ORDER BY id", &it->st, err);
    if (rc < 0) {
        free(it);
        return rc;
    }
    jobdb_bind_text(it->st, 1, sd_job_status_name(status));
    *out = it;
    return 0;
}

int jobdb_iter_begin_sel(jobdb *db, sd_job_status status, const jobsel *sel, jobdb_iter **out, sd_error *err) {
    if (!sel || sel->n == 0) return jobdb_iter_begin(db, status, out, err);
    *out = NULL;
    /* the keys are the whitelist's own column names (jobsel.c), never user text; values are bound */
    char where[1024];
    size_t len = (size_t)snprintf(where, sizeof where, "WHERE status = ?1");
    for (int i = 0; i < sel->n && len < sizeof where; i++)
        len += (size_t)snprintf(where + len, sizeof where - len,
                                sel->t[i].type == JOBSEL_TEXT ? " AND %s = ?%d" : " AND IFNULL(%s, 0) = ?%d",
                                sel->t[i].key, i + 2);
    if (len + 20 >= sizeof where) return sd_err(err, SD_EINPUT, "%s: selection too long", db->path);
    snprintf(where + len, sizeof where - len, " ORDER BY id");
    jobdb_iter *it = calloc(1, sizeof *it);
    if (!it) return sd_err(err, SD_ENOMEM, "out of memory");
    it->db = db;
    int rc = jobdb_prepare_jobs(db, where, &it->st, err);
    if (rc < 0) {
        free(it);
        return rc;
    }
    jobdb_bind_text(it->st, 1, sd_job_status_name(status));
    for (int i = 0; i < sel->n; i++) {
        const jobsel_term *t = &sel->t[i];
        if (t->type == JOBSEL_INT) sqlite3_bind_int64(it->st, i + 2, t->i);
        else if (t->type == JOBSEL_REAL) sqlite3_bind_double(it->st, i + 2, t->d);
        else jobdb_bind_text(it->st, i + 2, t->s);
    }
    *out = it;
    return 0;
}

int jobdb_iter_next(jobdb_iter *it, sd_job *job, sd_error *err) {
    memset(job, 0, sizeof *job);
    int s = sqlite3_step(it->st);
    if (s == SQLITE_DONE) return 0;
    if (s != SQLITE_ROW) return jobdb_sqlite_error(it->db, s, "reading jobs", err);
    int rc = jobdb_read_job(it->db, it->st, job, err);
    return rc < 0 ? rc : 1;
}

void jobdb_iter_end(jobdb_iter *it) {
    if (!it) return;
    jobdb_finalize(it->db, it->st);
    free(it);
}

int jobdb_metric_add(jobdb *db, const char *name, double value, const char *details_json, sd_error *err) {
    if (!name || !*name) return sd_err(err, SD_EINPUT, "a metric needs a name");
    if (details_json) {
        json_error_t jerr;
        json_t *j = json_loads(details_json, JSON_DECODE_ANY, &jerr);
        if (!j) return sd_err(err, SD_EINPUT, "metric '%s': details are not valid JSON: %s", name, jerr.text);
        json_decref(j);
    }
    sqlite3_stmt *st;
    int rc = jobdb_prepare(db,
                           "INSERT INTO metrics (run_id, name, value, details_json, created_at)"
                           " VALUES (?1, ?2, ?3, ?4, ?5)",
                           &st, err);
    if (rc < 0) return rc;
    if (db->run_id > 0) sqlite3_bind_int64(st, 1, db->run_id);
    else sqlite3_bind_null(st, 1);
    jobdb_bind_text(st, 2, name);
    if (isfinite(value)) sqlite3_bind_double(st, 3, value);
    else sqlite3_bind_null(st, 3);
    jobdb_bind_text(st, 4, details_json);
    sqlite3_bind_double(st, 5, jobdb_now(db));
    int s = sqlite3_step(st);
    if (s != SQLITE_DONE) rc = jobdb_sqlite_error(db, s, "storing a metric", err);
    jobdb_finalize(db, st);
    return rc;
}
