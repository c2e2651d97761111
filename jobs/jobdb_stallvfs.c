/*
 * A pass-through SQLite VFS for the fault tests: with SDRENDER_TEST_STALL=commit
 * every write to a journal (the WAL or the rollback journal, i.e. inside a
 * commit) goes through sd_test_stall, so a test can kill the process with a
 * commit half written (core/base/testhook.h). Without that variable jobdb_open
 * uses SQLite's default VFS and this file is not involved.
 */
#include "jobdb_internal.h"

#include <stdlib.h>
#include <string.h>

#include "testhook.h"

typedef struct stall_file {
    sqlite3_file base;
    sqlite3_file *real; /* the default VFS's file, allocated right after this struct */
    int journal;        /* a WAL or rollback journal: its writes are commits */
} stall_file;

static sqlite3_vfs *real_vfs;

#define REAL(f) (((stall_file *)(f))->real)

static int s_close(sqlite3_file *f) { return REAL(f)->pMethods->xClose(REAL(f)); }
static int s_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o) { return REAL(f)->pMethods->xRead(REAL(f), b, n, o); }
static int s_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o) {
    if (((stall_file *)f)->journal) sd_test_stall("commit");
    return REAL(f)->pMethods->xWrite(REAL(f), b, n, o);
}
static int s_truncate(sqlite3_file *f, sqlite3_int64 n) { return REAL(f)->pMethods->xTruncate(REAL(f), n); }
static int s_sync(sqlite3_file *f, int fl) { return REAL(f)->pMethods->xSync(REAL(f), fl); }
static int s_size(sqlite3_file *f, sqlite3_int64 *n) { return REAL(f)->pMethods->xFileSize(REAL(f), n); }
static int s_lock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xLock(REAL(f), l); }
static int s_unlock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xUnlock(REAL(f), l); }
static int s_reserved(sqlite3_file *f, int *r) { return REAL(f)->pMethods->xCheckReservedLock(REAL(f), r); }
static int s_fctl(sqlite3_file *f, int op, void *a) { return REAL(f)->pMethods->xFileControl(REAL(f), op, a); }
static int s_sector(sqlite3_file *f) { return REAL(f)->pMethods->xSectorSize(REAL(f)); }
static int s_devchar(sqlite3_file *f) { return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f)); }
static int s_shmmap(sqlite3_file *f, int i, int sz, int ext, void volatile **p) {
    return REAL(f)->pMethods->xShmMap(REAL(f), i, sz, ext, p);
}
static int s_shmlock(sqlite3_file *f, int o, int n, int fl) { return REAL(f)->pMethods->xShmLock(REAL(f), o, n, fl); }
static void s_shmbarrier(sqlite3_file *f) { REAL(f)->pMethods->xShmBarrier(REAL(f)); }
static int s_shmunmap(sqlite3_file *f, int del) { return REAL(f)->pMethods->xShmUnmap(REAL(f), del); }
static int s_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **p) { return REAL(f)->pMethods->xFetch(REAL(f), o, n, p); }
static int s_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p) { return REAL(f)->pMethods->xUnfetch(REAL(f), o, p); }

static const sqlite3_io_methods stall_io = {3,        s_close,  s_read,   s_write,   s_truncate,  s_sync,
                                            s_size,   s_lock,   s_unlock, s_reserved, s_fctl,     s_sector,
                                            s_devchar, s_shmmap, s_shmlock, s_shmbarrier, s_shmunmap, s_fetch,
                                            s_unfetch};

static int s_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags) {
    stall_file *p = (stall_file *)f;
    memset(p, 0, sizeof *p);
    p->real = (sqlite3_file *)(p + 1);
    p->journal = (flags & (SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_JOURNAL)) != 0;
    int rc = real_vfs->xOpen(real_vfs, name, p->real, flags, out_flags);
    /* the real file's methods must be set for xClose to run; ours only when it opened */
    p->base.pMethods = p->real->pMethods ? &stall_io : NULL;
    (void)vfs;
    return rc;
}

static int s_delete(sqlite3_vfs *v, const char *n, int sync) { return real_vfs->xDelete(real_vfs, n, sync); }
static int s_access(sqlite3_vfs *v, const char *n, int fl, int *r) { return real_vfs->xAccess(real_vfs, n, fl, r); }
static int s_fullpath(sqlite3_vfs *v, const char *n, int sz, char *out) {
    return real_vfs->xFullPathname(real_vfs, n, sz, out);
}
static int s_random(sqlite3_vfs *v, int n, char *out) { return real_vfs->xRandomness(real_vfs, n, out); }
static int s_sleep(sqlite3_vfs *v, int us) { return real_vfs->xSleep(real_vfs, us); }
static int s_time(sqlite3_vfs *v, sqlite3_int64 *t) { return real_vfs->xCurrentTimeInt64(real_vfs, t); }
static int s_lasterr(sqlite3_vfs *v, int n, char *b) { return real_vfs->xGetLastError(real_vfs, n, b); }

static sqlite3_vfs stall_vfs = {.iVersion = 2,
                                .zName = "sdrender-stall",
                                .xOpen = s_open,
                                .xDelete = s_delete,
                                .xAccess = s_access,
                                .xFullPathname = s_fullpath,
                                .xRandomness = s_random,
                                .xSleep = s_sleep,
                                .xCurrentTimeInt64 = s_time,
                                .xGetLastError = s_lasterr};

const char *jobdb_stall_vfs(void) {
    const char *want = getenv("SDRENDER_TEST_STALL");
    if (!want || strcmp(want, "commit") != 0) return NULL;
    if (!real_vfs) {
        real_vfs = sqlite3_vfs_find(NULL);
        if (!real_vfs) return NULL;
        stall_vfs.szOsFile = (int)sizeof(stall_file) + real_vfs->szOsFile;
        stall_vfs.mxPathname = real_vfs->mxPathname;
        if (sqlite3_vfs_register(&stall_vfs, 0) != SQLITE_OK) return NULL;
    }
    return stall_vfs.zName;
}
