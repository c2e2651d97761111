#include "testhook.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void sd_test_stall(const char *where) {
    static int seen = 0;
    const char *want = getenv("SDRENDER_TEST_STALL");
    if (!want || strcmp(want, where) != 0) return;
    const char *at = getenv("SDRENDER_TEST_STALL_AT");
    if (++seen != (at ? atoi(at) : 1)) return;
    const char *mark = getenv("SDRENDER_TEST_STALL_MARK");
    if (mark) {
        /* only the first process to get here stalls (the ranks of a run share the variables) */
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.%ld", mark, (long)getpid());
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) return;
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
        int ok = write(fd, buf, (size_t)n) == n;
        close(fd);
        ok = ok && link(tmp, mark) == 0; /* atomic and exclusive: the mark appears whole, once */
        unlink(tmp);
        if (!ok) return;
    }
    const char *s = getenv("SDRENDER_TEST_STALL_S");
    double secs = s ? atof(s) : 30;
    struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

void sd_test_log_render(int64_t job_id) {
    const char *path = getenv("SDRENDER_TEST_RENDER_LOG");
    if (!path) return;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%lld %ld\n", (long long)job_id, (long)getpid());
    if (write(fd, buf, (size_t)n) != n) n = 0; /* O_APPEND: one line per write, whole */
    close(fd);
}
