#include "progress.h"

#include <stdio.h>
#include <unistd.h>

#include "cli.h"

void progress_start(progress_bar *p, const char *label, const char *unit, int total, int quiet) {
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->done = 0;
    p->tty = isatty(2);
    p->quiet = quiet;
    p->t0 = cli_now();
    p->last_print = 0;
}

static void fmt_time(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.1fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

void progress_update(progress_bar *p, int done) {
    p->done = done;
    if (p->quiet) return;
    double now = cli_now(), el = now - p->t0;
    double rate = el > 0 ? done / el : 0;
    double eta = rate > 0 ? (p->total - done) / rate : -1;
    char e1[32], e2[32];
    fmt_time(e1, sizeof e1, el);
    fmt_time(e2, sizeof e2, eta);
    char rs[48];
    if (rate >= 1 || rate == 0) snprintf(rs, sizeof rs, "%.2f %s/s", rate, p->unit);
    else snprintf(rs, sizeof rs, "%.2f s/%s", 1 / rate, p->unit);
    if (p->tty) {
        int width = 30, fill = p->total ? done * width / p->total : width;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r%s [%s] %d/%d %s, %s, elapsed %s, ETA %s  ", p->label, bar, done, p->total, p->unit, rs, e1,
                e2);
        fflush(stderr);
    } else if (done == p->total || now - p->last_print >= 5.0 || done == 1) {
        fprintf(stderr, "%s: %d/%d %s, %s, elapsed %s, ETA %s\n", p->label, done, p->total, p->unit, rs, e1, e2);
        p->last_print = now;
    }
}

void progress_end(progress_bar *p) {
    if (!p->quiet && p->tty) fputc('\n', stderr);
}

int progress_step(void *ctx, int done, int total) {
    (void)total;
    progress_update(ctx, done);
    return 0;
}
