#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int sd_verr(sd_error *e, int code, const char *fmt, va_list ap) {
    if (e) {
        e->code = code;
        e->sys_errno = 0;
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    }
    return code;
}

int sd_err(sd_error *e, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sd_verr(e, code, fmt, ap);
    va_end(ap);
    return code;
}

int sd_err_sys(sd_error *e, int errnum, const char *fmt, ...) {
    if (!e) return SD_EIO;
    va_list ap;
    va_start(ap, fmt);
    sd_verr(e, SD_EIO, fmt, ap);
    va_end(ap);
    size_t n = strlen(e->msg);
    snprintf(e->msg + n, sizeof e->msg - n, ": %s (%s)", strerror(errnum), sd_errno_name(errnum));
    e->sys_errno = errnum;
    return SD_EIO;
}

int sd_err_is_env(const sd_error *e) {
    if (!e || e->code != SD_EIO) return 0;
    switch (e->sys_errno) {
    case ENOSPC:
    case EDQUOT:
    case EROFS:
    case EIO:
    case ESTALE:
    case ENOENT:
    case ENOTDIR:
    case EACCES:
    case EPERM:
    case EMFILE:
    case ENFILE: return 1;
    default: return 0;
    }
}

const char *sd_errno_name(int errnum) {
    switch (errnum) {
    case ENOSPC: return "ENOSPC";
    case EDQUOT: return "EDQUOT";
    case EROFS: return "EROFS";
    case EIO: return "EIO";
    case ESTALE: return "ESTALE";
    case ENOENT: return "ENOENT";
    case ENOTDIR: return "ENOTDIR";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EEXIST: return "EEXIST";
    case EISDIR: return "EISDIR";
    case EFBIG: return "EFBIG";
    case EINTR: return "EINTR";
    case ENOMEM: return "ENOMEM";
    default: {
        static _Thread_local char buf[32];
        snprintf(buf, sizeof buf, "errno %d", errnum);
        return buf;
    }
    }
}

int sd_err_prefix(sd_error *e, const char *fmt, ...) {
    if (!e) return SD_EINTERNAL;
    char prefix[SD_ERRMSG_MAX], old[SD_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    snprintf(e->msg, sizeof e->msg, "%s: %s", prefix, old);
    return e->code;
}

int sd_err_exit_code(int code) {
    switch (code) {
    case SD_OK: return 0;
    case SD_EINPUT:
    case SD_ENOTFOUND:
    case SD_EUNSUPPORTED: return 2;
    default: return 1;
    }
}

const char *sd_err_name(int code) {
    switch (code) {
    case SD_OK: return "ok";
    case SD_EINPUT: return "bad input";
    case SD_ENOTFOUND: return "not found";
    case SD_EIO: return "I/O error";
    case SD_ENOMEM: return "out of memory";
    case SD_EUNSUPPORTED: return "unsupported";
    case SD_EINTERNAL: return "internal error";
    case SD_ECANCELED: return "cancelled";
    case SD_EBUSY: return "busy";
    default: return "unknown error";
    }
}
