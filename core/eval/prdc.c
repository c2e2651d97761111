#include "prdc.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_ROWS SD_PRDC_ROW_BLOCK /* rows of the left set per Gram block */
#define BLOCK_COLS 2048 /* rows of the right set per Gram block */

/* ------------------------------------------------------------ distances */

/* Squared norms in float64: out[i] = Σ x[i][k]². */
static void sq_norms(const float *x, int64_t n, int dim, double *out) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * (size_t)dim;
        double s = 0;
        for (int k = 0; k < dim; k++) s += (double)xi[k] * (double)xi[k];
        out[i] = s;
    }
}

/*
 * The float32 distance prdc would see for a pair with float64 Gram value g
 * (see prdc.h). The float64 Gram is off by at most about dim * 2^-53 * |a||b|,
 * so d² = |a|² + |b|² - 2g keeps ~1e-9 relative accuracy until d² is 1e4
 * times smaller than |a|² + |b|² (a near-duplicate); only then is it summed
 * directly (exactly 0 for duplicates).
 */
static inline float pair_dist(const float *a, const float *b, int dim, double aa, double bb, double g) {
    double d2 = aa + bb - 2.0 * g;
    if (d2 * 1e4 < aa + bb) {
        d2 = 0;
        for (int k = 0; k < dim; k++) {
            double t = (double)a[k] - (double)b[k];
            d2 += t * t;
        }
    }
    float f = (float)(d2 > 0 ? d2 : 0.0);
    return sqrtf(f);
}

/* Float64 scratch of one distance block: the two row blocks widened and their Gram matrix. */
typedef struct dist_scratch {
    double *a64; /* [BLOCK_ROWS, dim] */
    double *b64; /* [BLOCK_COLS, dim] */
    double *g64; /* [BLOCK_ROWS, BLOCK_COLS] */
} dist_scratch;

static int scratch_alloc(dist_scratch *s, int bi, int bj, int dim) {
    s->a64 = malloc((size_t)bi * (size_t)dim * sizeof(double));
    s->b64 = malloc((size_t)bj * (size_t)dim * sizeof(double));
    s->g64 = malloc((size_t)bi * (size_t)bj * sizeof(double));
    return s->a64 && s->b64 && s->g64 ? 0 : SD_ENOMEM;
}

static void scratch_free(dist_scratch *s) {
    free(s->a64);
    free(s->b64);
    free(s->g64);
}

static void widen(const float *x, size_t n, double *out) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = (double)x[i];
}

/*
 * Distances between rows [i0, i0+bi) of a and rows [j0, j0+bj) of b into
 * dist: [bi, bj] (row stride bj), via one float64 dgemm on widened copies, as
 * scikit-learn computes float32 distances (its float64 "upcast" path). same
 * != 0 means a and b are the same set: the diagonal is exactly 0, as
 * scikit-learn sets it.
 */
static void dist_block(const float *a, const double *aa, int64_t i0, int bi, const float *b, const double *bb,
                       int64_t j0, int bj, int dim, int same, dist_scratch *s, float *dist) {
    const float *ab = a + (size_t)i0 * (size_t)dim, *bbk = b + (size_t)j0 * (size_t)dim;
    widen(ab, (size_t)bi * (size_t)dim, s->a64);
    widen(bbk, (size_t)bj * (size_t)dim, s->b64);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bi, bj, dim, 1.0, s->a64, dim, s->b64, dim, 0.0, s->g64, bj);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < bi; i++) {
        float *row = dist + (size_t)i * (size_t)bj;
        const double *g = s->g64 + (size_t)i * (size_t)bj;
        const float *ai = ab + (size_t)i * (size_t)dim;
        for (int j = 0; j < bj; j++) {
            if (same && i0 + i == j0 + j) {
                row[j] = 0.0f;
                continue;
            }
            row[j] = pair_dist(ai, bbk + (size_t)j * (size_t)dim, dim, aa[i0 + i], bb[j0 + j], g[j]);
        }
    }
}

static int check_inputs(const float *x, int64_t n, int dim, int k, const char *what, sd_error *err) {
    if (dim < 1) return sd_err(err, SD_EINPUT, "%s: feature dimension %d is out of range", what, dim);
    if (k < 1) return sd_err(err, SD_EINPUT, "nearest_k must be at least 1, got %d", k);
    if (n <= k)
        return sd_err(err, SD_EINPUT, "%s: %lld feature vectors are too few for k = %d (need more than k)", what,
                      (long long)n, k);
    size_t total = (size_t)n * (size_t)dim;
    for (size_t i = 0; i < total; i++)
        if (!isfinite(x[i]))
            return sd_err(err, SD_EINPUT, "%s: feature %zu of row %zu is %g; features must be finite", what,
                          i % (size_t)dim, i / (size_t)dim, x[i]);
    return 0;
}

/* ------------------------------------------------------------ radii */

/* Keeps the m smallest values seen, sorted ascending, in best[0..m). */
static inline void keep_smallest(float *best, int m, float v) {
    if (!(v < best[m - 1])) return;
    int p = m - 1;
    while (p > 0 && best[p - 1] > v) {
        best[p] = best[p - 1];
        p--;
    }
    best[p] = v;
}

static int radii_rows(const float *x, const double *xx, int64_t n, int dim, int k, int64_t r0, int64_t r1, float *radii,
                      sd_error *err) {
    int m = k + 1; /* the point itself is one of them, at distance 0 */
    int64_t rows = r1 - r0;
    int bi = rows < BLOCK_ROWS ? (int)rows : BLOCK_ROWS;
    int bjmax = n < BLOCK_COLS ? (int)n : BLOCK_COLS;
    float *dist = malloc((size_t)bi * (size_t)bjmax * sizeof *dist);
    float *best = malloc((size_t)bi * (size_t)m * sizeof *best);
    dist_scratch sc;
    if (scratch_alloc(&sc, bi, bjmax, dim) < 0 || !dist || !best) {
        free(dist);
        free(best);
        scratch_free(&sc);
        return sd_err(err, SD_ENOMEM, "out of memory for k-NN radii");
    }
    for (int64_t i0 = r0; i0 < r1; i0 += bi) {
        int h = r1 - i0 < bi ? (int)(r1 - i0) : bi;
        for (size_t q = 0; q < (size_t)h * (size_t)m; q++) best[q] = INFINITY;
        for (int64_t j0 = 0; j0 < n; j0 += bjmax) {
            int w = n - j0 < bjmax ? (int)(n - j0) : bjmax;
            dist_block(x, xx, i0, h, x, xx, j0, w, dim, 1, &sc, dist);
#pragma omp parallel for schedule(static)
            for (int i = 0; i < h; i++) {
                const float *row = dist + (size_t)i * (size_t)w;
                float *b = best + (size_t)i * (size_t)m;
                for (int j = 0; j < w; j++) keep_smallest(b, m, row[j]);
            }
        }
        for (int i = 0; i < h; i++) radii[i0 + i] = best[(size_t)i * (size_t)m + (size_t)k];
    }
    free(dist);
    free(best);
    scratch_free(&sc);
    return 0;
}

int sd_prdc_radii_rows(const float *x, int64_t n, int dim, int k, int64_t r0, int64_t r1, float *radii,
                       sd_error *err) {
    int rc = check_inputs(x, n, dim, k, "prdc features", err);
    if (rc < 0) return rc;
    if (r0 < 0 || r1 > n || r0 > r1) return sd_err(err, SD_EINPUT, "row range [%lld, %lld) outside [0, %lld)",
                                                   (long long)r0, (long long)r1, (long long)n);
    double *xx = malloc((size_t)n * sizeof *xx);
    if (!xx) return sd_err(err, SD_ENOMEM, "out of memory");
    sq_norms(x, n, dim, xx);
    rc = r1 > r0 ? radii_rows(x, xx, n, dim, k, r0, r1, radii, err) : 0;
    free(xx);
    return rc;
}

int sd_prdc_radii(const float *x, int64_t n, int dim, int k, float *radii, sd_error *err) {
    return sd_prdc_radii_rows(x, n, dim, k, 0, n, radii, err);
}

/* ------------------------------------------------------------ real against fake */

int sd_prdc_compare(const float *real, int64_t n_real, const float *fake, int64_t n_fake, int dim,
                    const float *real_radii, const float *fake_radii, int64_t r0, int64_t r1, int64_t *fake_hits,
                    uint8_t *real_recall, uint8_t *real_cover, sd_error *err) {
    if (dim < 1 || n_real < 1 || n_fake < 1) return sd_err(err, SD_EINPUT, "prdc: empty feature sets");
    if (r0 < 0 || r1 > n_real || r0 > r1) return sd_err(err, SD_EINPUT, "prdc: row range outside the real set");
    double *rr = malloc((size_t)n_real * sizeof *rr), *ff = malloc((size_t)n_fake * sizeof *ff);
    int bi = BLOCK_ROWS, bjmax = n_fake < BLOCK_COLS ? (int)n_fake : BLOCK_COLS;
    float *dist = malloc((size_t)bi * (size_t)bjmax * sizeof *dist);
    float *mind = malloc((size_t)bi * sizeof *mind);
    dist_scratch sc;
    if (scratch_alloc(&sc, bi, bjmax, dim) < 0 || !rr || !ff || !dist || !mind) {
        free(rr);
        free(ff);
        free(dist);
        free(mind);
        scratch_free(&sc);
        return sd_err(err, SD_ENOMEM, "out of memory for prdc distances");
    }
    sq_norms(real, n_real, dim, rr);
    sq_norms(fake, n_fake, dim, ff);
    for (int64_t i0 = r0; i0 < r1; i0 += bi) {
        int h = r1 - i0 < bi ? (int)(r1 - i0) : bi;
        for (int i = 0; i < h; i++) {
            mind[i] = INFINITY;
            real_recall[i0 + i] = 0;
        }
        for (int64_t j0 = 0; j0 < n_fake; j0 += bjmax) {
            int w = n_fake - j0 < bjmax ? (int)(n_fake - j0) : bjmax;
            dist_block(real, rr, i0, h, fake, ff, j0, w, dim, 0, &sc, dist);
            /* per real row: nearest fake, and whether some fake ball contains it */
#pragma omp parallel for schedule(static)
            for (int i = 0; i < h; i++) {
                const float *row = dist + (size_t)i * (size_t)w;
                float mn = mind[i];
                int hit = real_recall[i0 + i];
                for (int j = 0; j < w; j++) {
                    float dv = row[j];
                    if (dv < mn) mn = dv;
                    hit |= dv < fake_radii[j0 + j];
                }
                mind[i] = mn;
                real_recall[i0 + i] = (uint8_t)hit;
            }
            /* per fake column: how many real balls contain it (columns split between threads) */
#pragma omp parallel for schedule(static)
            for (int j = 0; j < w; j += 64) {
                int je = j + 64 < w ? j + 64 : w;
                int64_t cnt[64] = {0};
                for (int i = 0; i < h; i++) {
                    const float *row = dist + (size_t)i * (size_t)w;
                    float r = real_radii[i0 + i];
                    for (int q = j; q < je; q++) cnt[q - j] += row[q] < r;
                }
                for (int q = j; q < je; q++) fake_hits[j0 + q] += cnt[q - j];
            }
        }
        for (int i = 0; i < h; i++) real_cover[i0 + i] = mind[i] < real_radii[i0 + i];
    }
    free(rr);
    free(ff);
    free(dist);
    free(mind);
    scratch_free(&sc);
    return 0;
}

void sd_prdc_finish(int64_t n_real, int64_t n_fake, int k, const int64_t *fake_hits, const uint8_t *real_recall,
                    const uint8_t *real_cover, sd_prdc *out) {
    int64_t prec = 0, hits = 0, rec = 0, cov = 0;
    for (int64_t j = 0; j < n_fake; j++) {
        prec += fake_hits[j] > 0;
        hits += fake_hits[j];
    }
    for (int64_t i = 0; i < n_real; i++) {
        rec += real_recall[i] != 0;
        cov += real_cover[i] != 0;
    }
    /* numpy: bool.mean() = count / n; density = (1. / k) * hits.sum(axis=0).mean() */
    out->precision = (double)prec / (double)n_fake;
    out->recall = (double)rec / (double)n_real;
    out->density = (1.0 / (double)k) * ((double)hits / (double)n_fake);
    out->coverage = (double)cov / (double)n_real;
}

int sd_prdc_compute(const float *real, int64_t n_real, const float *fake, int64_t n_fake, int dim, int k, sd_prdc *out,
                    sd_error *err) {
    memset(out, 0, sizeof *out);
    float *rr = malloc((size_t)n_real * sizeof *rr), *fr = malloc((size_t)n_fake * sizeof *fr);
    int64_t *hits = calloc((size_t)n_fake, sizeof *hits);
    uint8_t *rec = malloc((size_t)n_real), *cov = malloc((size_t)n_real);
    int rc = 0;
    if (!rr || !fr || !hits || !rec || !cov) rc = sd_err(err, SD_ENOMEM, "out of memory for prdc");
    if (rc == 0) rc = sd_prdc_radii(real, n_real, dim, k, rr, err);
    if (rc == 0) rc = sd_prdc_radii(fake, n_fake, dim, k, fr, err);
    if (rc == 0) rc = sd_prdc_compare(real, n_real, fake, n_fake, dim, rr, fr, 0, n_real, hits, rec, cov, err);
    if (rc == 0) sd_prdc_finish(n_real, n_fake, k, hits, rec, cov, out);
    free(rr);
    free(fr);
    free(hits);
    free(rec);
    free(cov);
    return rc;
}
