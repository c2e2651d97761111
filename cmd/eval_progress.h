/* Progress of `sdrender stats` / `metrics` on stderr: one cli_progress per phase reported by mpi/metrics_mpi.c. */
#ifndef SD_EVAL_PROGRESS_H
#define SD_EVAL_PROGRESS_H

#include <stdint.h>

#include "progress.h"

typedef struct eval_progress {
    const char *command;  /* "stats", "metrics" */
    int quiet;
    int active;
    char label[128];
    const char *phase;    /* the phase shown now (a string constant of mpi/) */
    cli_progress p;
} eval_progress;

/* An sd_eval_progress_fn: ctx is an eval_progress. */
void eval_progress_report(void *ctx, const char *what, int64_t done, int64_t total);
/* Ends the line of a phase still shown on a terminal. */
void eval_progress_finish(eval_progress *e);

#endif
