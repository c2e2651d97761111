#include "metrics_dist.h"

#include <cblas.h>
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "imagedir.h"
#include "inception.h"

#define BCAST_CHUNK (1 << 28)  /* bytes per MPI_Bcast: well inside MPI's int counts */
#define PRDC_CHUNK_BLOCKS 4    /* prdc row blocks between two progress reports */

/* ------------------------------------------------------------ agreement and broadcasts */

int md_agree(const md_world *w, int rc, sd_error *err) {
    if (rc < 0 && err->code == 0) err->code = rc;
    int mine = rc < 0 ? w->rank : w->size, first = w->size;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (first == w->size) return 0;
    MPI_Bcast(err, (int)sizeof *err, MPI_BYTE, first, MPI_COMM_WORLD);
    return err->code < 0 ? err->code : SD_EINTERNAL;
}

static void bcast_bytes(void *buf, size_t n) {
    for (size_t off = 0; off < n; off += BCAST_CHUNK) {
        size_t len = n - off < BCAST_CHUNK ? n - off : BCAST_CHUNK;
        MPI_Bcast((char *)buf + off, (int)len, MPI_BYTE, 0, MPI_COMM_WORLD);
    }
}

void md_bcast_i64(int64_t *v, int n) { MPI_Bcast(v, n, MPI_INT64_T, 0, MPI_COMM_WORLD); }

int md_bcast_strings(const md_world *w, char ***list, int *n, sd_error *err) {
    int64_t hdr[2] = {0, 0}; /* count, packed bytes */
    char *buf = NULL;
    int rc = 0;
    if (w->rank == 0) {
        hdr[0] = *n;
        for (int i = 0; i < *n; i++) hdr[1] += (int64_t)strlen((*list)[i]) + 1;
    }
    md_bcast_i64(hdr, 2);
    buf = malloc((size_t)hdr[1] + 1);
    if (!buf) rc = sd_err(err, SD_ENOMEM, "out of memory for %lld file names", (long long)hdr[0]);
    else if (w->rank == 0) {
        size_t off = 0;
        for (int i = 0; i < *n; i++) {
            size_t len = strlen((*list)[i]) + 1;
            memcpy(buf + off, (*list)[i], len);
            off += len;
        }
    }
    rc = md_agree(w, rc, err);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    bcast_bytes(buf, (size_t)hdr[1]);
    if (w->rank != 0) {
        char **out = calloc((size_t)(hdr[0] ? hdr[0] : 1), sizeof *out);
        const char *p = buf;
        for (int64_t i = 0; out && i < hdr[0]; i++) {
            out[i] = strdup(p);
            if (!out[i]) {
                sd_imagedir_free(out, (int)i);
                out = NULL;
                break;
            }
            p += strlen(p) + 1;
        }
        if (!out) rc = sd_err(err, SD_ENOMEM, "out of memory for %lld file names", (long long)hdr[0]);
        *list = out;
        *n = out ? (int)hdr[0] : 0;
    }
    free(buf);
    return md_agree(w, rc, err);
}

int md_bcast_matrix(const md_world *w, float **x, int64_t rows, int dim, sd_error *err) {
    size_t bytes = (size_t)rows * (size_t)dim * sizeof(float);
    int rc = 0;
    if (w->rank != 0) {
        *x = malloc(bytes ? bytes : 1);
        if (!*x) rc = sd_err(err, SD_ENOMEM, "out of memory for %lld x %d features", (long long)rows, dim);
    }
    rc = md_agree(w, rc, err);
    if (rc == 0) bcast_bytes(*x, bytes);
    return rc;
}

/* ------------------------------------------------------------ row ranges in chunks */

/* [*u0, *u1): rank r's share of `units` (contiguous, in rank order, sizes differing by at most one). */
static void share(int64_t units, int rank, int size, int64_t *u0, int64_t *u1) {
    *u0 = units * rank / size;
    *u1 = units * (rank + 1) / size;
}

/* Rows [r0, r1) of a set of n rows that rank `rank` owns when whole units of `unit` rows are shared. */
static void row_share(int64_t n, int64_t unit, int rank, int size, int64_t *r0, int64_t *r1) {
    int64_t u0, u1;
    share((n + unit - 1) / unit, rank, size, &u0, &u1);
    *r0 = u0 * unit < n ? u0 * unit : n;
    *r1 = u1 * unit < n ? u1 * unit : n;
}

/* Work on rows [r0, r1) of one task (one call per chunk). */
typedef int (*rows_fn)(void *ctx, int64_t r0, int64_t r1, sd_error *err);

typedef struct rows_task {
    rows_fn fn;
    void *ctx;
    int64_t r0, r1; /* this rank's rows */
} rows_task;

/*
 * Runs this rank's tasks in chunks of `chunk` rows (from each task's r0), all
 * ranks in step: after every chunk one allreduce tells everyone whether some
 * rank failed (then all stop) and how many of `total` rows are done (rank 0
 * reports it). Ranks with fewer chunks take part in the remaining steps idle.
 */
static int run_rows(const md_world *w, const char *label, int64_t total, rows_task *t, int nt, int64_t chunk,
                    sd_error *err) {
    int64_t mine = 0, steps = 0, done = 0;
    for (int i = 0; i < nt; i++) mine += (t[i].r1 - t[i].r0 + chunk - 1) / chunk;
    MPI_Allreduce(&mine, &steps, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    int rc = 0, ti = 0;
    int64_t next = nt > 0 ? t[0].r0 : 0;
    if (w->rank == 0 && w->progress) w->progress(w->progress_ctx, label, 0, total); /* starts the clock */
    for (int64_t s = 0; s < steps; s++) {
        while (ti < nt && next >= t[ti].r1) {
            ti++;
            next = ti < nt ? t[ti].r0 : 0;
        }
        if (rc == 0 && ti < nt) {
            int64_t end = next + chunk < t[ti].r1 ? next + chunk : t[ti].r1;
            rc = t[ti].fn(t[ti].ctx, next, end, err);
            done += end - next;
            next = end;
        }
        int64_t v[2] = {rc < 0, done}, g[2];
        MPI_Allreduce(v, g, 2, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
        if (g[0]) break;
        if (w->rank == 0 && w->progress) w->progress(w->progress_ctx, label, g[1], total);
    }
    return md_agree(w, rc, err);
}

/* Counts and displacements (in rows) of every rank's share for a gather. */
static int gather_layout(const md_world *w, int64_t n, int64_t unit, int **counts, int **displs, sd_error *err) {
    *counts = malloc((size_t)w->size * sizeof **counts);
    *displs = malloc((size_t)w->size * sizeof **displs);
    if (!*counts || !*displs) return sd_err(err, SD_ENOMEM, "out of memory");
    for (int r = 0; r < w->size; r++) {
        int64_t r0, r1;
        row_share(n, unit, r, w->size, &r0, &r1);
        (*counts)[r] = (int)(r1 - r0);
        (*displs)[r] = (int)r0;
    }
    return 0;
}

/* ------------------------------------------------------------ image evaluation */

typedef struct extract_ctx {
    sd_evaluator *ev;
    char *const *paths, *const *prompts;
    int64_t first;  /* this rank's first image */
    float *feats;   /* [mine, 2048] or NULL */
    double *scores; /* [mine] or NULL */
} extract_ctx;

static int extract_rows(void *vctx, int64_t r0, int64_t r1, sd_error *err) {
    extract_ctx *c = vctx;
    int64_t off = r0 - c->first;
    return sd_evaluator_images(c->ev, (const char *const *)c->paths + r0,
                               c->prompts ? (const char *const *)c->prompts + r0 : NULL, (int)(r1 - r0),
                               c->feats ? c->feats + (size_t)off * INCEPTION_DIM : NULL,
                               c->scores ? c->scores + off : NULL, err);
}

int md_extract(const md_world *w, sd_evaluator *ev, const char *label, char *const *paths, char *const *prompts, int n,
               int want_feats, int want_scores, float **feats, double **scores, sd_error *err) {
    *feats = NULL;
    *scores = NULL;
    int64_t B = ev->batch, r0, r1;
    row_share(n, B, w->rank, w->size, &r0, &r1);
    size_t mine = (size_t)(r1 - r0), all = w->rank == 0 ? (size_t)n : 0;
    extract_ctx c = {.ev = ev, .paths = paths, .prompts = prompts, .first = r0};
    float *all_f = NULL;
    double *all_s = NULL;
    int *counts = NULL, *displs = NULL;
    int rc = gather_layout(w, n, B, &counts, &displs, err);
    if (rc == 0 && want_feats) {
        c.feats = malloc((mine ? mine : 1) * INCEPTION_DIM * sizeof(float));
        all_f = all ? malloc(all * INCEPTION_DIM * sizeof(float)) : NULL;
        if (!c.feats || (all && !all_f)) rc = sd_err(err, SD_ENOMEM, "out of memory for %d x 2048 features", n);
    }
    if (rc == 0 && want_scores) {
        c.scores = malloc((mine ? mine : 1) * sizeof(double));
        all_s = all ? malloc(all * sizeof(double)) : NULL;
        if (!c.scores || (all && !all_s)) rc = sd_err(err, SD_ENOMEM, "out of memory for %d CLIP scores", n);
    }
    rc = md_agree(w, rc, err);
    rows_task t = {.fn = extract_rows, .ctx = &c, .r0 = r0, .r1 = r1};
    if (rc == 0) rc = run_rows(w, label, n, &t, 1, B, err);
    if (rc == 0 && want_feats) {
        MPI_Datatype row;
        MPI_Type_contiguous(INCEPTION_DIM, MPI_FLOAT, &row);
        MPI_Type_commit(&row);
        MPI_Gatherv(c.feats, (int)mine, row, all_f, counts, displs, row, 0, MPI_COMM_WORLD);
        MPI_Type_free(&row);
    }
    if (rc == 0 && want_scores)
        MPI_Gatherv(c.scores, (int)mine, MPI_DOUBLE, all_s, counts, displs, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    free(c.feats);
    free(c.scores);
    free(counts);
    free(displs);
    if (rc < 0) {
        free(all_f);
        free(all_s);
        return rc;
    }
    *feats = all_f;
    *scores = all_s;
    return 0;
}

/* ------------------------------------------------------------ precision / recall / density / coverage */

typedef struct radii_ctx {
    const float *x;
    int64_t n;
    int dim, k;
    float *radii; /* [n]; this rank fills its rows */
} radii_ctx;

static int radii_rows(void *vctx, int64_t r0, int64_t r1, sd_error *err) {
    radii_ctx *c = vctx;
    return sd_prdc_radii_rows(c->x, c->n, c->dim, c->k, r0, r1, c->radii, err);
}

typedef struct compare_ctx {
    const float *real, *fake;
    int64_t n_real, n_fake;
    int dim;
    const float *real_radii, *fake_radii;
    int64_t *hits;            /* [n_fake] this rank's counts */
    uint8_t *recall, *cover;  /* [n_real]; this rank fills its rows */
} compare_ctx;

static int compare_rows(void *vctx, int64_t r0, int64_t r1, sd_error *err) {
    compare_ctx *c = vctx;
    return sd_prdc_compare(c->real, c->n_real, c->fake, c->n_fake, c->dim, c->real_radii, c->fake_radii, r0, r1,
                           c->hits, c->recall, c->cover, err);
}

int md_prdc(const md_world *w, const float *real, int64_t n_real, const float *fake, int64_t n_fake, int dim, int k,
            sd_prdc *out, sd_error *err) {
    memset(out, 0, sizeof *out);
    const int64_t RB = SD_PRDC_ROW_BLOCK;
    int64_t a0, a1, f0, f1;
    row_share(n_real, RB, w->rank, w->size, &a0, &a1);
    row_share(n_fake, RB, w->rank, w->size, &f0, &f1);
    float *rr = malloc((size_t)n_real * sizeof *rr), *fr = malloc((size_t)n_fake * sizeof *fr);
    int64_t *hits = calloc((size_t)n_fake, sizeof *hits), *all_hits = NULL;
    uint8_t *rec = calloc((size_t)n_real, 1), *cov = calloc((size_t)n_real, 1);
    int *rcounts = NULL, *rdispls = NULL, *fcounts = NULL, *fdispls = NULL;
    int rc = rr && fr && hits && rec && cov ? 0 : sd_err(err, SD_ENOMEM, "out of memory for precision/recall");
    if (rc == 0 && w->rank == 0 && !(all_hits = calloc((size_t)n_fake, sizeof *all_hits)))
        rc = sd_err(err, SD_ENOMEM, "out of memory for precision/recall");
    if (rc == 0) rc = gather_layout(w, n_real, RB, &rcounts, &rdispls, err);
    if (rc == 0) rc = gather_layout(w, n_fake, RB, &fcounts, &fdispls, err);
    rc = md_agree(w, rc, err);
    /* the distance blocks are plain sgemm calls outside the kernels' OpenMP loops: let OpenBLAS thread them */
    openblas_set_num_threads(w->threads);
    radii_ctx rcx = {.x = real, .n = n_real, .dim = dim, .k = k, .radii = rr};
    radii_ctx fcx = {.x = fake, .n = n_fake, .dim = dim, .k = k, .radii = fr};
    rows_task radii[2] = {{radii_rows, &rcx, a0, a1}, {radii_rows, &fcx, f0, f1}};
    if (rc == 0) rc = run_rows(w, "k-NN radii", n_real + n_fake, radii, 2, PRDC_CHUNK_BLOCKS * RB, err);
    if (rc == 0)
        MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, fr, fcounts, fdispls, MPI_FLOAT, MPI_COMM_WORLD);
    compare_ctx cc = {.real = real, .fake = fake, .n_real = n_real, .n_fake = n_fake, .dim = dim, .real_radii = rr,
                      .fake_radii = fr, .hits = hits, .recall = rec, .cover = cov};
    rows_task cmp = {compare_rows, &cc, a0, a1};
    if (rc == 0) rc = run_rows(w, "precision/recall", n_real, &cmp, 1, PRDC_CHUNK_BLOCKS * RB, err);
    openblas_set_num_threads(1);
    if (rc == 0) {
        /* integer counts: the sum is exact in any order */
        MPI_Reduce(hits, all_hits, (int)n_fake, MPI_INT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
        /* each rank's flags are at their final place (rows a0..a1); rank 0's stay where they are */
        void *rbuf = w->rank == 0 ? MPI_IN_PLACE : rec + a0, *cbuf = w->rank == 0 ? MPI_IN_PLACE : cov + a0;
        MPI_Gatherv(rbuf, rcounts[w->rank], MPI_UINT8_T, rec, rcounts, rdispls, MPI_UINT8_T, 0, MPI_COMM_WORLD);
        MPI_Gatherv(cbuf, rcounts[w->rank], MPI_UINT8_T, cov, rcounts, rdispls, MPI_UINT8_T, 0, MPI_COMM_WORLD);
        if (w->rank == 0) sd_prdc_finish(n_real, n_fake, k, all_hits, rec, cov, out);
    }
    free(rr);
    free(fr);
    free(hits);
    free(all_hits);
    free(rec);
    free(cov);
    free(rcounts);
    free(rdispls);
    free(fcounts);
    free(fdispls);
    return rc;
}
