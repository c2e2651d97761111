#include "err.h"

#include <stdio.h>
#include <string.h>

int sd_verr(sd_error *e, int code, const char *fmt, va_list ap) {
    if (e) {
        e->code = code;
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
