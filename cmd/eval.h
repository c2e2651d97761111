/*
 * eval.h - what `sdrender stats` and `metrics` share on the command line: their progress on
 * stderr (one progress_bar per phase reported by mpi/metrics_mpi.c), their common options and
 * the exit status of a rank.
 */
#ifndef SD_EVAL_H
#define SD_EVAL_H

#include <stdint.h>

#include "cli.h"
#include "metrics_mpi.h"
#include "progress.h"

typedef struct eval_progress {
    const char *command;  /* "stats", "metrics" */
    int quiet;
    int active;
    char label[128];
    const char *phase;    /* the phase shown now (a string constant of mpi/) */
    progress_bar p;
} eval_progress;

/* An sd_metrics_progress_fn: ctx is an eval_progress. */
void eval_progress_report(void *ctx, const char *what, int64_t done, int64_t total);
/* Ends the line of a phase still shown on a terminal. */
void eval_progress_finish(eval_progress *e);

/* The options stats and metrics share: Inception weights, batch and threads from the command line
 * (and -q for e), cores per rank from the node, progress reported through e. */
void eval_common_set(sd_metrics_common *c, const cli_shared_opts *shared, eval_progress *e);

/*
 * Exit status of a stats/metrics rank once the MPI work is done: every rank holds the same agreed
 * error; rank 0 prints it and sets the status. The others exit 0, or mpirun would abort the job
 * before rank 0 has printed its line. -1 on rank 0 without an error: the command goes on.
 */
int eval_rank_exit(int root, int rc, const sd_error *err);

#endif
