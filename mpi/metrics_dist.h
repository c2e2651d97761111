/*
 * metrics_dist.h - the collective pieces of `sdrender stats` / `metrics`
 * (internal to mpi/: mpi/metrics_mpi.c is the only user).
 *
 * Every function here is collective: all ranks of MPI_COMM_WORLD call it in
 * the same order, and all return the same code (md_agree). Work is split in
 * contiguous row ranges whose boundaries do not depend on the number of
 * ranks except at multiples of a fixed unit (the image batch, the prdc row
 * block), and results travel to rank 0 in row order, so rank 0 sees the same
 * bits whatever the world size (see mpi/metrics_mpi.c).
 */
#ifndef SD_METRICS_DIST_H
#define SD_METRICS_DIST_H

#include <stdint.h>

#include "err.h"
#include "evaluator.h"
#include "metrics_mpi.h"
#include "prdc.h"

typedef struct md_world {
    int rank, size;
    int threads;  /* OpenMP threads of this rank */
    sd_metrics_progress_fn progress; /* rank 0 only */
    void *progress_ctx;
} md_world;

/*
 * Called by every rank with its own rc: 0 when all succeeded, else the code of
 * the lowest failing rank, whose message is copied into every rank's err.
 */
int md_agree(const md_world *w, int rc, sd_error *err);

/* Rank 0's n strings (*list, *n) copied to every other rank (which must pass *list = NULL). */
int md_bcast_strings(const md_world *w, char ***list, int *n, sd_error *err);

/* Rank 0's int64 values to every rank. */
void md_bcast_i64(int64_t *v, int n);

/*
 * Rank 0's float matrix [rows, dim] to every rank; the others allocate *x
 * (freed by the caller). rows and dim must be known everywhere.
 */
int md_bcast_matrix(const md_world *w, float **x, int64_t rows, int dim, sd_error *err);

/*
 * Evaluates the n images paths[i] (with prompts[i] when scores are wanted):
 * each rank takes a contiguous range of whole batches of ev->batch images
 * (batch b = images [b*batch, (b+1)*batch), the same batches for any number
 * of ranks), then rank 0 gathers, in image order:
 *   *feats  [n, 2048] Inception features (want_feats), and
 *   *scores [n] CLIP pair scores (want_scores).
 * Progress ("label", images done by all ranks, n) goes to w->progress.
 */
int md_extract(const md_world *w, sd_evaluator *ev, const char *label, char *const *paths, char *const *prompts, int n,
               int want_feats, int want_scores, float **feats, double **scores, sd_error *err);

/*
 * prdc over all ranks: real [n_real, dim] and fake [n_fake, dim] must be on
 * every rank. Rows are split in whole SD_PRDC_ROW_BLOCK blocks; real rows
 * compute their radii and compare against every fake; fake radii are
 * exchanged; the per-fake hit counts (integers) are summed and the per-real
 * flags gathered on rank 0, which fills *out.
 */
int md_prdc(const md_world *w, const float *real, int64_t n_real, const float *fake, int64_t n_fake, int dim, int k,
            sd_prdc *out, sd_error *err);

#endif
