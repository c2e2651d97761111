#include "cli.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cli_fail(const sd_error *e) {
    fprintf(stderr, "sdrender: %s\n", e->msg[0] ? e->msg : sd_err_name(e->code));
    return sd_err_exit_code(e->code ? e->code : SD_EINTERNAL);
}

int cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("sdrender: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

int cli_parse_long(const char *flag, const char *s, long min, long max, long *out, sd_error *e) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno)
        return sd_err(e, SD_EINPUT, "%s: '%s' is not an integer", flag, s);
    if (v < min || v > max) return sd_err(e, SD_EINPUT, "%s: %ld is out of range [%ld, %ld]", flag, v, min, max);
    *out = v;
    return 0;
}

int cli_parse_double(const char *flag, const char *s, double min, double max, double *out, sd_error *e) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v)) return sd_err(e, SD_EINPUT, "%s: '%s' is not a number", flag, s);
    if (v < min || v > max) return sd_err(e, SD_EINPUT, "%s: %g is out of range [%g, %g]", flag, v, min, max);
    *out = v;
    return 0;
}

const char *cli_option_value(int argc, char **argv, int *i, const char *name, const char *alias, int *missing) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (!strncmp(a, name, n) && a[n] == '=') return a + n + 1;
    if (strcmp(a, name) && (!alias || strcmp(a, alias))) return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_threads_for(int local_ranks) {
    cpu_set_t set;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)online;
    if (n >= online && local_ranks > 1) n /= local_ranks;
    return n < 1 ? 1 : n;
}
