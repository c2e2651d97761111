/* `sdrender requeue`: failed jobs back to pending. */
#include "jobdb_internal.h"

#include <stdlib.h>
#include <string.h>

#include "sha256.h"

int jobdb_requeue_failed(jobdb *db, const char *error_like, int64_t first, int64_t last, int64_t *count,
                         sd_error *err) {
    *count = 0;
    int rc = jobdb_tx_write(db, err);
    if (rc < 0) return rc;
    sqlite3_stmt *st;
    rc = jobdb_prepare(db,
                       "UPDATE jobs SET status = 'pending', attempts = 0, finished_at = NULL "
                       "WHERE status = 'failed' AND (?1 IS NULL OR coalesce(error, '') LIKE ?1) "
                       "AND (?2 = 0 OR id >= ?2) AND (?3 = 0 OR id <= ?3)",
                       &st, err);
    if (rc == 0) {
        jobdb_bind_text(st, 1, error_like);
        sqlite3_bind_int64(st, 2, first);
        sqlite3_bind_int64(st, 3, last);
        int s = sqlite3_step(st);
        if (s == SQLITE_DONE) *count = sqlite3_changes(db->h);
        else rc = jobdb_sqlite_error(db, s, "requeueing failed jobs", err);
        jobdb_finalize(db, st);
    }
    if (rc == 0) rc = jobdb_tx_commit(db, err);
    if (rc < 0) {
        jobdb_tx_rollback(db);
        *count = 0;
    }
    return rc;
}

/* One done job whose file is to be checked. */
typedef struct done_file {
    int64_t id;
    char *path, *sha;
    int bad; /* its file is missing or differs */
} done_file;

static void done_files_free(done_file *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(v[i].path);
        free(v[i].sha);
    }
    free(v);
}

/* The done jobs in first..last with their output path and hash (read in one snapshot). */
static int read_done(jobdb *db, int64_t first, int64_t last, done_file **out, size_t *n, sd_error *err) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st;
    int rc = jobdb_prepare(db,
                           "SELECT id, coalesce(output_path, ''), coalesce(png_sha256, '') FROM jobs WHERE status = 'done' "
                           "AND (?1 = 0 OR id >= ?1) AND (?2 = 0 OR id <= ?2) ORDER BY id",
                           &st, err);
    if (rc < 0) return rc;
    sqlite3_bind_int64(st, 1, first);
    sqlite3_bind_int64(st, 2, last);
    size_t cap = 0;
    done_file *v = NULL;
    int s = SQLITE_DONE;
    while (rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 256;
            done_file *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                rc = sd_err(err, SD_ENOMEM, "out of memory");
                break;
            }
            v = nv;
        }
        done_file *d = &v[*n];
        d->id = sqlite3_column_int64(st, 0);
        d->path = strdup((const char *)sqlite3_column_text(st, 1));
        d->sha = strdup((const char *)sqlite3_column_text(st, 2));
        (*n)++;
        if (!d->path || !d->sha) rc = sd_err(err, SD_ENOMEM, "out of memory");
    }
    if (rc == 0 && s != SQLITE_DONE) rc = jobdb_sqlite_error(db, s, "reading done jobs", err);
    jobdb_finalize(db, st);
    if (rc < 0) {
        done_files_free(v, *n);
        *n = 0;
        return rc;
    }
    *out = v;
    return 0;
}

int jobdb_requeue_missing(jobdb *db, int64_t first, int64_t last, int64_t *count, sd_error *err) {
    *count = 0;
    done_file *v;
    size_t n;
    int rc = read_done(db, first, last, &v, &n, err);
    if (rc < 0) return rc;
    /* hash outside the write lock: a live run goes on meanwhile */
    for (size_t i = 0; i < n; i++) {
        char sha[65];
        v[i].bad = !v[i].path[0] || sd_sha256_file(v[i].path, sha, NULL) < 0 || strcmp(sha, v[i].sha) != 0;
    }
    sqlite3_stmt *st = NULL;
    rc = jobdb_tx_write(db, err);
    if (rc == 0)
        rc = jobdb_prepare(db,
                           "UPDATE jobs SET status = 'pending', attempts = 0, finished_at = NULL, output_path = NULL, "
                           "png_sha256 = NULL, render_seconds = NULL, error = 'requeued: its PNG was missing or changed', "
                           "error_at = ?3 WHERE id = ?1 AND status = 'done' AND coalesce(png_sha256, '') = ?2",
                           &st, err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!v[i].bad) continue;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, v[i].id);
        jobdb_bind_text(st, 2, v[i].sha);
        sqlite3_bind_double(st, 3, jobdb_now(db));
        int s = sqlite3_step(st);
        if (s != SQLITE_DONE) rc = jobdb_sqlite_error(db, s, "requeueing a done job", err);
        else *count += sqlite3_changes(db->h);
    }
    jobdb_finalize(db, st);
    if (rc == 0) rc = jobdb_tx_commit(db, err);
    if (rc < 0) {
        jobdb_tx_rollback(db);
        *count = 0;
    }
    done_files_free(v, n);
    return rc;
}
