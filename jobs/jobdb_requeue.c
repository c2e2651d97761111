/* `sdrender requeue`: failed jobs back to pending. */
#include "jobdb_internal.h"

#include <stdlib.h>
#include <string.h>

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
