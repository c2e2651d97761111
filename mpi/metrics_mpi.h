/*
 * metrics_mpi.h - `sdrender stats` and `sdrender metrics` on one or many MPI
 * ranks (MPI_Init .. MPI_Finalize happen inside; without mpirun it is one rank).
 *
 * Rank 0 alone lists folders, reads .npz files and the job database, and
 * writes results; the image list goes to every rank, each rank computes the
 * Inception features (and CLIP scores) of a contiguous share of whole
 * batches, and rank 0 gathers them in image order. Precision/recall/density/
 * coverage are split by rows over all ranks (every rank holds both feature
 * sets: 2 x N x 2048 x 4 bytes, 800 MB for 50k + 50k images). FID statistics
 * are computed by rank 0 from the gathered features.
 *
 * The numbers do not depend on the number of ranks: see mpi/metrics_mpi.c.
 *
 * Return value: 0, or a negative SD_E* code, the same on every rank; on rank
 * 0 (result->root) result->err holds the one-line message to print.
 */
#ifndef SD_METRICS_MPI_H
#define SD_METRICS_MPI_H

#include <stdint.h>

#include "err.h"
#include "prdc.h"

/* Rank 0's progress: `what` ("real images", "k-NN radii", ...), units done by all ranks, of total. */
typedef void (*sd_metrics_progress_fn)(void *ctx, const char *what, int64_t done, int64_t total);

typedef struct sd_metrics_common {
    const char *inception;           /* Inception weights (.pth or .safetensors) */
    const char *clip;                /* CLIP weights (HF CLIPModel names), or NULL */
    const char *clip_tokenizer;      /* NULL: beside the CLIP weights */
    int batch;                       /* images per forward pass (0: 8) */
    int threads;                     /* threads per rank; 0: threads_for(ranks on this node) */
    int (*threads_for)(int local_ranks);
    sd_metrics_progress_fn progress; /* called on rank 0; may be NULL */
    void *progress_ctx;
} sd_metrics_common;

typedef struct sd_metrics_stats_options {
    const char *images; /* folder of PNGs */
    const char *out;    /* .npz: mu, sigma, n, features */
    sd_metrics_common c;
} sd_metrics_stats_options;

typedef struct sd_metrics_stats_result {
    int root;           /* 1 on rank 0, whose fields are filled */
    int ranks;
    int64_t n;          /* images */
    sd_error err;
} sd_metrics_stats_result;

int sd_metrics_stats_mpi(int *argc, char ***argv, const sd_metrics_stats_options *o, sd_metrics_stats_result *r);

struct jobsel;
typedef struct sd_metrics_options {
    const char *real;   /* folder of PNGs or .npz statistics; NULL: no FID / prdc */
    const char *fake;   /* folder or .npz; NULL when db is given */
    const char *db;     /* job database: the fakes are its done images, with their prompts */
    const struct jobsel *where; /* with db: only the done jobs it selects (jobs/jobsel.h); NULL: all */
    int k;              /* prdc nearest_k */
    sd_metrics_common c;
} sd_metrics_options;

#define SD_METRICS_WHY_MAX 300

typedef struct sd_metrics_result {
    int root;           /* 1 on rank 0, whose fields are filled */
    int ranks;
    int has_fid, has_prdc, has_clip;
    double fid;
    sd_prdc prdc;
    double clip_score;
    int k;
    int64_t n_real, n_fake;   /* images or feature rows; -1 when unknown (an .npz without n) */
    int64_t clip_truncated;   /* prompts cut to the CLIP context */
    int64_t db_rows;          /* metrics rows written to the job database */
    /* why a metric is missing (empty when it was computed) */
    char why_no_fid[SD_METRICS_WHY_MAX], why_no_prdc[SD_METRICS_WHY_MAX], why_no_clip[SD_METRICS_WHY_MAX];
    sd_error err;
} sd_metrics_result;

int sd_metrics_mpi(int *argc, char ***argv, const sd_metrics_options *o, sd_metrics_result *r);

#endif
