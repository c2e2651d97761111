/* Opening the job database: identity checks, journal mode, migrations; shared helpers. */
#include "jobdb_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/vfs.h>
#include <time.h>

#include "fsutil.h"
#include "schema_files.h"

/* PRAGMA application_id written by schemas/001_init.sql ("SSDR"). */
#define JOBDB_APPLICATION_ID 0x53534452

double jobdb_now(const jobdb *db) {
    if (db && db->fixed_time > 0) return db->fixed_time;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void jobdb_set_time(jobdb *db, double unix_seconds) { db->fixed_time = unix_seconds; }

/* SD_EIO with the message, naming the errno of SQLite's last failed system call when there was one
 * (ENOSPC, EIO, ...: sd_err_is_env tells the run to stop). */
static int db_os_error(jobdb *db, sd_error *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int db_os_error(jobdb *db, sd_error *err, const char *fmt, ...) {
    char msg[SD_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int e = db && db->h ? sqlite3_system_errno(db->h) : 0;
    if (e) return sd_err_sys(err, e, "%s", msg);
    return sd_err(err, SD_EIO, "%s", msg);
}

int jobdb_sqlite_error(jobdb *db, int rc, const char *what, sd_error *err) {
    const char *msg = db && db->h ? sqlite3_errmsg(db->h) : sqlite3_errstr(rc);
    const char *path = db && db->path ? db->path : "job database";
    switch (rc & 0xff) {
    case SQLITE_NOTADB:
        return sd_err(err, SD_EINPUT, "%s: not an SQLite database (%s); is this the right file?", path, msg);
    case SQLITE_CORRUPT:
        return sd_err(err, SD_EINPUT,
                      "%s: the database is corrupt (%s while %s); restore a copy or try 'sqlite3 %s .recover'", path,
                      msg, what, path);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return sd_err(err, SD_EIO,
                      "%s: %s: the database stayed locked (%s); is another sdrender writing to it? On NFS/Lustre "
                      "set SDRENDER_DB_JOURNAL=delete",
                      path, what, msg);
    case SQLITE_NOMEM: return sd_err(err, SD_ENOMEM, "%s: out of memory while %s", path, what);
    case SQLITE_CONSTRAINT: return sd_err(err, SD_EINPUT, "%s: %s: %s", path, what, msg);
    case SQLITE_CANTOPEN: return sd_err(err, SD_EIO, "%s: cannot open the database: %s", path, msg);
    case SQLITE_READONLY: return db_os_error(db, err, "%s: %s: the database is read-only (%s)", path, what, msg);
    case SQLITE_FULL: return sd_err_sys(err, ENOSPC, "%s: %s: the disk is full", path, what); /* SQLite keeps no errno */
    default: return db_os_error(db, err, "%s: %s: %s", path, what, msg);
    }
}

/*
 * Statements are prepared once per connection and kept (a claim runs three, a master runs tens of
 * thousands of claims): jobdb_prepare hands out the cached statement for the same SQL text when it
 * is not in use, and jobdb_finalize resets it for the next call instead of freeing it.
 */
int jobdb_prepare(jobdb *db, const char *sql, sqlite3_stmt **st, sd_error *err) {
    int free_slot = -1;
    for (int i = 0; i < JOBDB_STMT_CACHE; i++) {
        if (!db->stmt_cache[i].st) {
            if (free_slot < 0) free_slot = i;
        } else if (!db->stmt_cache[i].in_use && !strcmp(db->stmt_cache[i].sql, sql)) {
            db->stmt_cache[i].in_use = 1;
            *st = db->stmt_cache[i].st;
            return 0;
        }
    }
    int rc = sqlite3_prepare_v3(db->h, sql, -1, free_slot >= 0 ? SQLITE_PREPARE_PERSISTENT : 0, st, NULL);
    if (rc != SQLITE_OK) {
        *st = NULL;
        return jobdb_sqlite_error(db, rc, "preparing a statement", err);
    }
    if (free_slot >= 0 && (db->stmt_cache[free_slot].sql = strdup(sql))) {
        db->stmt_cache[free_slot].st = *st;
        db->stmt_cache[free_slot].in_use = 1;
    }
    return 0;
}

void jobdb_finalize(jobdb *db, sqlite3_stmt *st) {
    if (!st) return;
    for (int i = 0; i < JOBDB_STMT_CACHE; i++) {
        if (db->stmt_cache[i].st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            db->stmt_cache[i].in_use = 0;
            return;
        }
    }
    sqlite3_finalize(st);
}

/* Frees every cached statement (before closing the connection). */
static void stmt_cache_free(jobdb *db) {
    for (int i = 0; i < JOBDB_STMT_CACHE; i++) {
        sqlite3_finalize(db->stmt_cache[i].st);
        free(db->stmt_cache[i].sql);
        db->stmt_cache[i].st = NULL;
        db->stmt_cache[i].sql = NULL;
    }
}

int jobdb_exec(jobdb *db, const char *sql, const char *what, sd_error *err) {
    int rc = sqlite3_exec(db->h, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : jobdb_sqlite_error(db, rc, what, err);
}

/*
 * One transaction-control statement (no results), prepared once and kept in the statement cache:
 * a master's batch runs two of them around every claim and finish, and sqlite3_exec parsed them each
 * time.
 */
static int exec_cached(jobdb *db, const char *sql, const char *what, sd_error *err) {
    sqlite3_stmt *st;
    int rc = jobdb_prepare(db, sql, &st, err);
    if (rc < 0) return rc;
    int s = sqlite3_step(st);
    rc = s == SQLITE_DONE || s == SQLITE_ROW ? 0 : jobdb_sqlite_error(db, s, what, err);
    jobdb_finalize(db, st);
    return rc;
}

/* Inside a batch (jobdb_batch_begin) each call's transaction is a savepoint of the batch's one
 * transaction: the call stays all-or-nothing, and the batch commits (and syncs) once. */
int jobdb_tx_write(jobdb *db, sd_error *err) {
    if (db->in_batch) return exec_cached(db, "SAVEPOINT call", "starting a change", err);
    return exec_cached(db, "BEGIN IMMEDIATE", "taking the write lock", err);
}
int jobdb_tx_read(jobdb *db, sd_error *err) {
    if (db->in_batch) return exec_cached(db, "SAVEPOINT call", "starting a read", err);
    return exec_cached(db, "BEGIN", "starting a read", err);
}
int jobdb_tx_commit(jobdb *db, sd_error *err) {
    if (db->in_batch) return exec_cached(db, "RELEASE call", "finishing a change", err);
    return exec_cached(db, "COMMIT", "committing", err);
}

void jobdb_tx_rollback(jobdb *db) {
    if (sqlite3_get_autocommit(db->h)) return;
    if (db->in_batch) sqlite3_exec(db->h, "ROLLBACK TO call; RELEASE call", NULL, NULL, NULL);
    else sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
    db->batch_touched = 0; /* the heartbeat may have been undone with the call */
}

int jobdb_batch_begin(jobdb *db, sd_error *err) {
    if (db->in_batch) return sd_err(err, SD_EINTERNAL, "%s: a batch is already open", db->path);
    int rc = exec_cached(db, "BEGIN IMMEDIATE", "taking the write lock", err);
    if (rc == 0) db->in_batch = 1, db->batch_touched = 0;
    return rc;
}

int jobdb_batch_commit(jobdb *db, sd_error *err) {
    if (!db->in_batch) return sd_err(err, SD_EINTERNAL, "%s: no batch is open", db->path);
    db->in_batch = 0;
    int rc = exec_cached(db, "COMMIT", "committing", err);
    if (rc < 0 && !sqlite3_get_autocommit(db->h)) sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int jobdb_bind_text(sqlite3_stmt *st, int i, const char *s) {
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
}

/* Runs a statement that yields one integer (a PRAGMA or a count). */
static int query_int(jobdb *db, const char *sql, int64_t *out, const char *what, sd_error *err) {
    sqlite3_stmt *st;
    int rc = jobdb_prepare(db, sql, &st, err);
    if (rc < 0) return rc;
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = 0;
    } else {
        rc = jobdb_sqlite_error(db, s, what, err);
    }
    jobdb_finalize(db, st);
    return rc;
}

/* Version a schema file migrates to: the number its name starts with. */
static int file_version(const jobdb_schema_file *f) { return atoi(f->name); }

int jobdb_schema_latest(void) { return file_version(&jobdb_schema_files[jobdb_schema_file_count - 1]); }
int jobdb_schema_version(const jobdb *db) { return db->schema_version; }
const char *jobdb_journal_mode(const jobdb *db) { return db->journal; }

/* Refuses files that are SQLite but not ours, or ours from a newer sdrender. */
static int check_identity(jobdb *db, int64_t *version, sd_error *err) {
    int64_t app = 0, tables = 0;
    int rc = query_int(db, "PRAGMA application_id", &app, "reading the header", err);
    if (rc == 0) rc = query_int(db, "PRAGMA user_version", version, "reading the schema version", err);
    if (rc == 0)
        rc = query_int(db, "SELECT count(*) FROM sqlite_master", &tables, "reading the list of tables", err);
    if (rc < 0) return rc;
    if (app != JOBDB_APPLICATION_ID && (app != 0 || *version != 0 || tables != 0))
        return sd_err(err, SD_EINPUT, "%s: an SQLite database, but not an sdrender job database (application_id %lld)",
                      db->path, (long long)app);
    if (*version > jobdb_schema_latest())
        return sd_err(err, SD_EUNSUPPORTED,
                      "%s: schema version %lld was made by a newer sdrender (this one knows up to %d); use that "
                      "version",
                      db->path, (long long)*version, jobdb_schema_latest());
    return 0;
}

/* 1 if path's directory is on a network filesystem, where WAL's shared memory does not work. */
static int on_network_fs(const char *path) {
    char *copy = strdup(path);
    if (!copy) return 0;
    struct statfs sf;
    int ok = statfs(dirname(copy), &sf) == 0;
    free(copy);
    if (!ok) return 0;
    switch ((unsigned long)sf.f_type) {
    case 0x6969UL:     /* NFS */
    case 0x517BUL:     /* SMB */
    case 0xFF534D42UL: /* CIFS */
    case 0xFE534D42UL: /* SMB2 */
    case 0x0BD00BD0UL: /* Lustre */
    case 0x47504653UL: /* GPFS / Spectrum Scale */
    case 0x19830326UL: /* BeeGFS */
    case 0x00C36400UL: /* CephFS */
    case 0x5346414FUL: /* AFS */
    case 0xAAD7AAEAUL: /* PanFS */
    case 0x01021997UL: /* 9p */
    case 0x65735546UL: /* FUSE (sshfs, ...) */
        return 1;
    default: return 0;
    }
}

static int set_journal(jobdb *db, const char *want, sd_error *err) {
    if (!want || !*want) want = getenv("SDRENDER_DB_JOURNAL");
    if (!want || !*want) want = "auto";
    if (!strcasecmp(want, "auto")) want = on_network_fs(db->path) ? "delete" : "wal";
    const char *sql;
    if (!strcasecmp(want, "wal")) sql = "PRAGMA journal_mode = WAL";
    else if (!strcasecmp(want, "delete")) sql = "PRAGMA journal_mode = DELETE";
    else
        return sd_err(err, SD_EINPUT, "SDRENDER_DB_JOURNAL: '%s' is not one of wal, delete, auto", want);
    sqlite3_stmt *st;
    int rc = jobdb_prepare(db, sql, &st, err);
    if (rc < 0) return rc;
    int s = sqlite3_step(st);
    const char *got = s == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    if (!got) rc = jobdb_sqlite_error(db, s, "setting the journal mode", err);
    else if (strcasecmp(got, want) != 0)
        rc = sd_err(err, SD_EIO,
                    "%s: cannot switch the journal mode to '%s' (it stays '%s'); another process may have the "
                    "database open",
                    db->path, want, got);
    else snprintf(db->journal, sizeof db->journal, "%s", strcasecmp(want, "wal") ? "delete" : "wal");
    jobdb_finalize(db, st);
    return rc;
}

static int read_journal(jobdb *db, sd_error *err) {
    sqlite3_stmt *st;
    int rc = jobdb_prepare(db, "PRAGMA journal_mode", &st, err);
    if (rc < 0) return rc;
    int s = sqlite3_step(st);
    const char *got = s == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    if (!got) rc = jobdb_sqlite_error(db, s, "reading the journal mode", err);
    else snprintf(db->journal, sizeof db->journal, "%s", got);
    jobdb_finalize(db, st);
    return rc;
}

/* Applies the schema files newer than the file's version, up to target, in one
 * transaction. The version is re-read under the write lock, so two processes
 * opening a new file at once do not both migrate it. */
static int migrate(jobdb *db, int target, sd_error *err) {
    int rc = jobdb_tx_write(db, err);
    if (rc < 0) return rc;
    int64_t version = 0;
    rc = query_int(db, "PRAGMA user_version", &version, "reading the schema version", err);
    /* versions increase but may have gaps (features developed apart take numbers of their own) */
    for (int i = 0, prev = 0; rc == 0 && i < jobdb_schema_file_count; i++) {
        const jobdb_schema_file *f = &jobdb_schema_files[i];
        int v = file_version(f);
        if (v <= prev) {
            rc = sd_err(err, SD_EINTERNAL, "schema file %s is out of sequence (after version %d)", f->name, prev);
            break;
        }
        prev = v;
        if (v <= version || v > target) continue;
        char what[128];
        snprintf(what, sizeof what, "applying schema %s", f->name);
        rc = jobdb_exec(db, f->sql, what, err);
        int64_t now_v = 0;
        if (rc == 0) rc = query_int(db, "PRAGMA user_version", &now_v, "reading the schema version", err);
        if (rc == 0 && now_v != v)
            rc = sd_err(err, SD_EINTERNAL, "schema file %s left user_version at %lld, not %d", f->name,
                        (long long)now_v, v);
        version = v;
    }
    if (rc == 0) rc = jobdb_tx_commit(db, err);
    if (rc < 0) {
        jobdb_tx_rollback(db);
        return rc;
    }
    db->schema_version = (int)version;
    return 0;
}

int jobdb_open(jobdb **out, const char *path, const jobdb_open_options *opt, sd_error *err) {
    static const jobdb_open_options defaults = {0};
    if (!opt) opt = &defaults;
    *out = NULL;
    if (sd_fs_is_dir(path)) return sd_err(err, SD_EINPUT, "%s: is a directory, not a job database", path);
    if (!opt->create && !sd_fs_is_file(path))
        return sd_err(err, SD_ENOTFOUND, "%s: no such job database (create one with 'sdrender enqueue --db %s FILE')",
                      path, path);
    int target = opt->schema_version > 0 ? opt->schema_version : jobdb_schema_latest();
    if (target > jobdb_schema_latest())
        return sd_err(err, SD_EINTERNAL, "schema version %d requested, newest is %d", target, jobdb_schema_latest());

    jobdb *db = calloc(1, sizeof *db);
    if (!db || !(db->path = strdup(path))) {
        free(db);
        return sd_err(err, SD_ENOMEM, "%s: out of memory", path);
    }
    db->max_attempts = JOBDB_DEFAULT_MAX_ATTEMPTS;
    /* one thread uses a jobdb: no SQLite mutexes (they were a tenth of a busy master's time) */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (opt->create ? SQLITE_OPEN_CREATE : 0);
    int rc = 0, s = sqlite3_open_v2(path, &db->h, flags, jobdb_stall_vfs());
    if (s != SQLITE_OK) rc = jobdb_sqlite_error(db, s, "opening", err);
    if (rc == 0) {
        const char *busy = getenv("SDRENDER_DB_BUSY_TIMEOUT_MS");
        int busy_ms = opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms : busy && atoi(busy) > 0 ? atoi(busy) : 60000;
        sqlite3_busy_timeout(db->h, busy_ms);
        int64_t version = 0;
        rc = check_identity(db, &version, err);
        if (rc == 0) rc = opt->keep_journal ? read_journal(db, err) : set_journal(db, opt->journal, err);
        /* FULL: a committed claim or finish survives a power cut, not only a process kill. */
        if (rc == 0) rc = jobdb_exec(db, "PRAGMA synchronous = FULL", "setting synchronous mode", err);
        if (rc == 0) rc = jobdb_exec(db, "PRAGMA foreign_keys = ON", "enabling foreign keys", err);
        /* Savepoint journals in memory: a master's batch wraps each claim and finish in a savepoint
         * (jobdb_tx_write), and on disk their journal cost two writes per page a call touches: 40,000
         * syscalls in 4 s of a --dry-run with 2 workers, more than the database's own. They only serve
         * to undo a call inside its batch; the WAL or rollback journal still makes commits durable. */
        if (rc == 0) rc = jobdb_exec(db, "PRAGMA temp_store = MEMORY", "keeping savepoint journals in memory", err);
        if (rc == 0 && version < target) rc = migrate(db, target, err);
        else if (rc == 0) db->schema_version = (int)version;
    }
    if (rc < 0) {
        jobdb_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

void jobdb_close(jobdb *db) {
    if (!db) return;
    stmt_cache_free(db);
    if (db->h) sqlite3_close_v2(db->h);
    free(db->path);
    free(db);
}

int jobdb_check_integrity(jobdb *db, sd_error *err) {
    sqlite3_stmt *st;
    int rc = jobdb_prepare(db, "PRAGMA integrity_check", &st, err);
    if (rc < 0) return rc;
    int s = sqlite3_step(st);
    if (s != SQLITE_ROW) rc = jobdb_sqlite_error(db, s, "checking integrity", err);
    else {
        const char *first = (const char *)sqlite3_column_text(st, 0);
        if (!first || strcmp(first, "ok") != 0) {
            /* one line: SQLite's report can span many; keep its start */
            char line[160];
            snprintf(line, sizeof line, "%s", first ? first : "?");
            for (char *c = line; *c; c++)
                if (*c == '\n' || *c == '\r') *c = ' ';
            rc = sd_err(err, SD_EINPUT,
                        "%s: integrity check failed (%s...); restore a copy or try 'sqlite3 %s .recover'", db->path,
                        line, db->path);
        }
    }
    jobdb_finalize(db, st);
    return rc;
}

/* Copies column i as a new string (NULL stays NULL); -1 when out of memory. */
static int column_dup(sqlite3_stmt *st, int i, char **out) {
    const unsigned char *t = sqlite3_column_text(st, i);
    *out = NULL;
    if (!t) return 0;
    *out = strdup((const char *)t);
    return *out ? 0 : -1;
}

int jobdb_prepare_jobs(jobdb *db, const char *where, sqlite3_stmt **st, sd_error *err) {
    char sql[1024];
    snprintf(sql, sizeof sql, "SELECT " JOBDB_JOB_COLUMNS "%s FROM jobs %s",
             db->schema_version >= JOBDB_SCHEMA_SDXL ? JOBDB_JOB_COLUMNS_SDXL : "", where);
    return jobdb_prepare(db, sql, st, err);
}

int jobdb_read_job(jobdb *db, sqlite3_stmt *st, sd_job *job, sd_error *err) {
    memset(job, 0, sizeof *job);
    job->id = sqlite3_column_int64(st, 0);
    int nomem = 0;
    nomem |= column_dup(st, 1, &job->prompt);
    nomem |= column_dup(st, 2, &job->negative_prompt);
    job->seed = sqlite3_column_int64(st, 3);
    job->steps = sqlite3_column_int(st, 4);
    job->cfg_scale = sqlite3_column_double(st, 5);
    const char *sampler = (const char *)sqlite3_column_text(st, 6);
    job->karras = sqlite3_column_int(st, 7);
    job->width = sqlite3_column_int(st, 8);
    job->height = sqlite3_column_int(st, 9);
    job->clip_skip = sqlite3_column_int(st, 10);
    nomem |= column_dup(st, 11, &job->init_image);
    nomem |= column_dup(st, 12, &job->mask);
    job->strength = sqlite3_column_double(st, 13);
    nomem |= column_dup(st, 14, &job->source);
    const char *status = (const char *)sqlite3_column_text(st, 15);
    job->attempts = sqlite3_column_int(st, 16);
    job->run_id = sqlite3_column_int64(st, 17);
    nomem |= column_dup(st, 18, &job->claimed_by);
    job->enqueued_at = sqlite3_column_double(st, 19);
    job->claimed_at = sqlite3_column_double(st, 20);
    job->finished_at = sqlite3_column_double(st, 21);
    nomem |= column_dup(st, 22, &job->output_path);
    const char *sha = (const char *)sqlite3_column_text(st, 23);
    snprintf(job->png_sha256, sizeof job->png_sha256, "%s", sha ? sha : "");
    job->render_seconds = sqlite3_column_double(st, 24);
    nomem |= column_dup(st, 25, &job->error);
    const char *task = (const char *)sqlite3_column_text(st, 26), *rng = (const char *)sqlite3_column_text(st, 27);
    job->upscale = task && !strcmp(task, "upscale");
    job->noise_level = sqlite3_column_int(st, 28);
    const char *syntax = (const char *)sqlite3_column_text(st, 29);
    if (syntax && sd_prompt_syntax_parse(syntax, &job->prompt_syntax) < 0) syntax = NULL;
    nomem |= column_dup(st, 30, &job->loras);
    nomem |= column_dup(st, 31, &job->lora_dir);
    nomem |= column_dup(st, 32, &job->lora_set);
    if (db->schema_version >= JOBDB_SCHEMA_SDXL) { /* after JOBDB_JOB_COLUMNS' 33 */
        int *cond[6] = {&job->orig_width, &job->orig_height, &job->crop_top, &job->crop_left, &job->target_width,
                        &job->target_height};
        for (int i = 0; i < 6; i++) *cond[i] = sqlite3_column_int(st, 33 + i);
    }
    int rc = 0;
    if (nomem) rc = sd_err(err, SD_ENOMEM, "%s: out of memory reading job %lld", db->path, (long long)job->id);
    else if (!job->prompt || !job->negative_prompt)
        rc = sd_err(err, SD_EINPUT, "%s: job %lld has no prompt", db->path, (long long)job->id);
    else if (!sampler || sampler_kind_parse(sampler, &job->sampler) < 0)
        rc = sd_err(err, SD_EINPUT, "%s: job %lld has unknown sampler '%s' (known: %s)", db->path,
                    (long long)job->id, sampler ? sampler : "", sampler_kind_list());
    else if (!task || (!job->upscale && strcmp(task, "generate")))
        rc = sd_err(err, SD_EINPUT, "%s: job %lld has unknown task '%s' (generate or upscale)", db->path,
                    (long long)job->id, task ? task : "");
    else if (!rng || sd_rng_kind_parse(rng, &job->rng) < 0)
        rc = sd_err(err, SD_EINPUT, "%s: job %lld has unknown rng '%s' (cpu or cuda)", db->path, (long long)job->id,
                    rng ? rng : "");
    else if (!syntax)
        rc = sd_err(err, SD_EINPUT, "%s: job %lld has an unknown prompt syntax", db->path, (long long)job->id);
    else if (!status || sd_job_status_parse(status, &job->status) < 0)
        rc = sd_err(err, SD_EINPUT, "%s: job %lld has unknown status '%s'", db->path, (long long)job->id,
                    status ? status : "");
    if (rc < 0) sd_job_free(job);
    return rc;
}
