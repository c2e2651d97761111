/*
 * err.h - how sdrender reports failure.
 *
 * Every function that can fail returns 0 on success or a negative SD_E* code,
 * and writes one human-readable line into a caller-owned `sd_error`. The
 * message names the file or tensor involved and, where possible, what to do.
 * The command line prints that line once and exits with sd_err_exit_code(code):
 * 2 for bad input (a file, a flag, a row), 1 for failures of the machine
 * (out of memory, I/O errors).
 *
 *     sd_error err = {0};
 *     if (st_open(&f, path, &err) < 0) { fprintf(stderr, "sdrender: %s\n", err.msg); ... }
 *
 * `err` may be NULL when the caller only wants the code.
 */
#ifndef SD_ERR_H
#define SD_ERR_H

#include <stdarg.h>

enum {
    SD_OK = 0,
    SD_EINPUT = -1,   /* malformed or inconsistent input: a file, a flag, a row */
    SD_ENOTFOUND = -2,/* a named file, tensor or key does not exist */
    SD_EIO = -3,      /* the operating system refused a read or write */
    SD_ENOMEM = -4,   /* an allocation failed */
    SD_EUNSUPPORTED = -5, /* valid input this build cannot handle */
    SD_EINTERNAL = -6,/* a broken invariant: a bug in sdrender */
    SD_ECANCELED = -7,/* stopped on request (a signal, a progress callback) */
    SD_EBUSY = -8,    /* another process holds what this one needs (a live run on a job table) */
};

#define SD_ERRMSG_MAX 512

typedef struct sd_error {
    int code;
    char msg[SD_ERRMSG_MAX];
    int sys_errno; /* errno of a failed write (sd_err_sys), else 0 */
} sd_error;

/* Records code and a printf-style message in e (if not NULL); returns code. */
int sd_err(sd_error *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int sd_verr(sd_error *e, int code, const char *fmt, va_list ap);

/*
 * A failed write of a file: code SD_EIO, the message fmt... followed by
 * ": <strerror(errnum)> (<ENAME>)", and e->sys_errno = errnum, so callers can
 * tell the environment's faults (sd_err_is_env) from a job's. Every place
 * that writes files reports through it.
 */
int sd_err_sys(sd_error *e, int errnum, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * 1 when e came from a write the machine refused for reasons of its own, not
 * of what was written: the disk or quota is full (ENOSPC, EDQUOT), the
 * filesystem is read-only or failing (EROFS, EIO, ESTALE), the folder is gone
 * or forbidden (ENOENT, ENOTDIR, EACCES, EPERM), no file handles are left
 * (EMFILE, ENFILE). Another attempt of the same job cannot help until someone
 * fixes the machine.
 */
int sd_err_is_env(const sd_error *e);

/* Symbolic name of an errno value ("ENOSPC"), or "errno N" in a static buffer for others. */
const char *sd_errno_name(int errnum);

/* Prefixes the existing message with "prefix: " (e.g. a file name); returns e->code. */
int sd_err_prefix(sd_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Process exit status for an error code: 2 for input errors, 1 otherwise. */
int sd_err_exit_code(int code);

/* Short fixed name of a code, e.g. "bad input". */
const char *sd_err_name(int code);

#endif
