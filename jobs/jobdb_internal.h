/*
 * jobdb_internal.h - what the jobdb_*.c files share: the handle, SQLite error
 * mapping, transactions and reading a job row. Not for use outside jobs/.
 */
#ifndef SD_JOBDB_INTERNAL_H
#define SD_JOBDB_INTERNAL_H

#include <sqlite3.h>

#include "jobdb.h"

#define JOBDB_STMT_CACHE 48

struct jobdb {
    sqlite3 *h;
    struct {
        char *sql;
        sqlite3_stmt *st;
        int in_use;
    } stmt_cache[JOBDB_STMT_CACHE]; /* jobdb_prepare / jobdb_finalize */
    char *path;
    int schema_version;
    char journal[8];           /* "wal" or "delete" */
    int64_t run_id;            /* current run; 0 before jobdb_run_begin */
    char instance[JOBDB_INSTANCE_MAX];
    int max_attempts;
    int shard_index, shard_count; /* of the current run; count 0: every job */
    int in_batch;              /* jobdb_batch_begin .. jobdb_batch_commit */
    int batch_touched;         /* the run's heartbeat was written in the open batch */
    double fixed_time;         /* jobdb_set_time; 0 = real clock */
};

/* Every column of a job, in the order jobdb_read_job expects. */
#define JOBDB_JOB_COLUMNS                                                                                      \
    "id, prompt, negative_prompt, seed, steps, cfg_scale, sampler, karras, width, height, clip_skip, "         \
    "init_image, mask, strength, source, status, attempts, run_id, claimed_by, enqueued_at, claimed_at, "      \
    "finished_at, output_path, png_sha256, render_seconds, error, task, rng, noise_level, prompt_syntax, loras, "   \
    "lora_dir, lora_set"

/* SQL condition: the job row is in the shard (count, index) given as parameters; count <= 1: every job. */
#define JOBDB_IN_SHARD(count, index) "(" count " <= 1 OR id % " count " = " index ")"

/* Unix seconds now (or the frozen test time). */
double jobdb_now(const jobdb *db);

/* Turns an SQLite result code into an SD_E* code and a message
 * "PATH: what: sqlite's message [hint]"; returns the SD_E* code. */
int jobdb_sqlite_error(jobdb *db, int rc, const char *what, sd_error *err);

/* Prepares a constant statement; on failure reports it via jobdb_sqlite_error. */
int jobdb_prepare(jobdb *db, const char *sql, sqlite3_stmt **st, sd_error *err);
/* Runs a constant SQL text with no result rows (BEGIN, COMMIT, a migration). */
int jobdb_exec(jobdb *db, const char *sql, const char *what, sd_error *err);
/* Gives a statement from jobdb_prepare back (reset for its next use; not freed). */
void jobdb_finalize(jobdb *db, sqlite3_stmt *st);

/* BEGIN IMMEDIATE (takes the write lock now, waiting up to the busy timeout). */
int jobdb_tx_write(jobdb *db, sd_error *err);
/* BEGIN (a read snapshot). */
int jobdb_tx_read(jobdb *db, sd_error *err);
int jobdb_tx_commit(jobdb *db, sd_error *err);
/* Rolls back if a transaction is open; never fails (an error already happened). */
void jobdb_tx_rollback(jobdb *db);

/* Binds text or NULL. */
int jobdb_bind_text(sqlite3_stmt *st, int i, const char *s);

/* Schema 006_sdxl.sql: the size-conditioning columns, read after JOBDB_JOB_COLUMNS when the file has them. */
#define JOBDB_SCHEMA_SDXL 6
/* Schema 007_a1111_lora.sql: prompt_syntax, loras, lora_dir, lora_set. */
#define JOBDB_SCHEMA_LORA 7
#define JOBDB_JOB_COLUMNS_SDXL ", orig_width, orig_height, crop_top, crop_left, target_width, target_height"

/* The fault tests' VFS name when SDRENDER_TEST_STALL=commit (jobdb_stallvfs.c), else NULL (SQLite's default). */
const char *jobdb_stall_vfs(void);

/* Prepares "SELECT <the job columns this file has> FROM jobs <where>" for jobdb_read_job. */
int jobdb_prepare_jobs(jobdb *db, const char *where, sqlite3_stmt **st, sd_error *err);

/* Reads JOBDB_JOB_COLUMNS (and, from schema 6, JOBDB_JOB_COLUMNS_SDXL) starting at column 0 of st's current
 * row into *job. */
int jobdb_read_job(jobdb *db, sqlite3_stmt *st, sd_job *job, sd_error *err);

#endif
