#include "eval.h"

#include <stdio.h>
#include <string.h>

#include "cli.h"

void eval_progress_report(void *ctx, const char *what, int64_t done, int64_t total) {
    eval_progress *e = ctx;
    if (!e->active || e->phase != what) {
        eval_progress_finish(e);
        snprintf(e->label, sizeof e->label, "%s: %s", e->command, what);
        /* feature rows for the k-NN phases, images for the networks */
        const char *unit = strstr(what, "radii") || strstr(what, "recall") ? "rows" : "images";
        progress_start(&e->p, e->label, unit, (int)total, e->quiet);
        e->phase = what;
        e->active = 1;
    }
    progress_update(&e->p, (int)done);
    if (done >= total) eval_progress_finish(e);
}

void eval_progress_finish(eval_progress *e) {
    if (e->active) progress_end(&e->p);
    e->active = 0;
    e->phase = NULL;
}

void eval_common_set(sd_metrics_common *c, const cli_shared_opts *shared, eval_progress *e) {
    c->inception = shared->inception;
    c->batch = (int)shared->batch;
    c->threads = (int)shared->threads;
    c->threads_for = cli_threads_for;
    c->progress = eval_progress_report;
    c->progress_ctx = e;
    e->quiet = shared->quiet;
}

int eval_rank_exit(int root, int rc, const sd_error *err) {
    if (!root) return 0;
    return rc < 0 ? cli_fail(err) : -1;
}
