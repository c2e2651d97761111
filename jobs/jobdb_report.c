/* Reading the runs and metrics tables for `sdrender report`. */
#include "jobdb_report.h"

#include <stdlib.h>
#include <string.h>

#include "jobdb_internal.h"

/* Column i as a new string, or NULL for SQL NULL; *nomem set when strdup fails. */
static char *col_str(sqlite3_stmt *st, int i, int *nomem) {
    const unsigned char *t = sqlite3_column_text(st, i);
    if (!t) return NULL;
    char *s = strdup((const char *)t);
    if (!s) *nomem = 1;
    return s;
}

static int grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    int nc = *cap ? 2 * *cap : 64;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q) return -1;
    memset((char *)q + (size_t)*cap * elem, 0, (size_t)(nc - *cap) * elem);
    *p = q;
    *cap = nc;
    return 0;
}

int jobdb_runs_read(jobdb *db, jobdb_run_row **rows, int *n, sd_error *err) {
    *rows = NULL;
    *n = 0;
    sqlite3_stmt *st;
    int rc = jobdb_prepare(db,
                           "SELECT id, instance, host, model_path, settings_json, end_status, parallel, ranks,"
                           " group_size, started_at, ended_at FROM runs ORDER BY id",
                           &st, err);
    if (rc < 0) return rc;
    int cap = 0, s, nomem = 0;
    while (rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)rows, &cap, *n + 1, sizeof **rows) < 0) {
            rc = sd_err(err, SD_ENOMEM, "out of memory reading runs");
            break;
        }
        jobdb_run_row *r = &(*rows)[(*n)++];
        r->id = sqlite3_column_int64(st, 0);
        r->instance = col_str(st, 1, &nomem);
        r->host = col_str(st, 2, &nomem);
        r->model_path = col_str(st, 3, &nomem);
        r->settings_json = col_str(st, 4, &nomem);
        r->end_status = col_str(st, 5, &nomem);
        r->parallel = col_str(st, 6, &nomem);
        r->ranks = sqlite3_column_int(st, 7);
        r->group_size = sqlite3_column_int(st, 8);
        r->started_at = sqlite3_column_double(st, 9);
        r->ended_at = sqlite3_column_double(st, 10);
        if (nomem) rc = sd_err(err, SD_ENOMEM, "out of memory reading runs");
    }
    if (rc == 0 && s != SQLITE_DONE) rc = jobdb_sqlite_error(db, s, "reading runs", err);
    jobdb_finalize(db, st);
    if (rc < 0) {
        jobdb_runs_free(*rows, *n);
        *rows = NULL;
        *n = 0;
    }
    return rc;
}

void jobdb_runs_free(jobdb_run_row *rows, int n) {
    for (int i = 0; rows && i < n; i++) {
        free(rows[i].instance);
        free(rows[i].host);
        free(rows[i].model_path);
        free(rows[i].settings_json);
        free(rows[i].end_status);
        free(rows[i].parallel);
    }
    free(rows);
}

int jobdb_metrics_read(jobdb *db, jobdb_metric_row **rows, int *n, sd_error *err) {
    *rows = NULL;
    *n = 0;
    sqlite3_stmt *st;
    int rc = jobdb_prepare(db, "SELECT id, run_id, name, value, details_json, created_at FROM metrics ORDER BY id", &st,
                           err);
    if (rc < 0) return rc;
    int cap = 0, s, nomem = 0;
    while (rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)rows, &cap, *n + 1, sizeof **rows) < 0) {
            rc = sd_err(err, SD_ENOMEM, "out of memory reading metrics");
            break;
        }
        jobdb_metric_row *m = &(*rows)[(*n)++];
        m->id = sqlite3_column_int64(st, 0);
        m->run_id = sqlite3_column_int64(st, 1);
        m->name = col_str(st, 2, &nomem);
        m->has_value = sqlite3_column_type(st, 3) != SQLITE_NULL;
        m->value = sqlite3_column_double(st, 3);
        m->details_json = col_str(st, 4, &nomem);
        m->created_at = sqlite3_column_double(st, 5);
        if (nomem || !m->name) rc = sd_err(err, SD_ENOMEM, "out of memory reading metrics");
    }
    if (rc == 0 && s != SQLITE_DONE) rc = jobdb_sqlite_error(db, s, "reading metrics", err);
    jobdb_finalize(db, st);
    if (rc < 0) {
        jobdb_metrics_free(*rows, *n);
        *rows = NULL;
        *n = 0;
    }
    return rc;
}

void jobdb_metrics_free(jobdb_metric_row *rows, int n) {
    for (int i = 0; rows && i < n; i++) {
        free(rows[i].name);
        free(rows[i].details_json);
    }
    free(rows);
}
