/*
 * fid.h - Fréchet Inception Distance math, compatible with pytorch-fid 0.3.0.
 *
 * Statistics. pytorch-fid puts the float32 pool3 features into a float64
 * array and takes mu = mean(X, 0) and sigma = np.cov(X, rowvar=False) (two
 * pass, unbiased, N-1). Here the same is accumulated in float64 from float32
 * batches, so 50k images never need to be in memory at once:
 *
 *     sd_fid_accum acc;
 *     sd_fid_accum_init(&acc, 2048, NULL, &err);       // shift = first batch's mean
 *     for each batch: sd_fid_accum_add(&acc, feats, nb, &err);   // feats: [nb, 2048] float32
 *     sd_fid_accum_stats(&acc, mu, sigma, &err);       // mu: [2048], sigma: [2048, 2048]
 *     sd_fid_accum_free(&acc);
 *
 * The accumulator keeps a count n, a shift c, s = Σ(x - c) and the upper
 * triangle of S = Σ(x - c)(x - c)ᵀ; then mu = c + s/n and
 * sigma = (S - s sᵀ/n) / (n - 1). With c near the mean (the first batch's
 * mean by default) this is as accurate as the two-pass formula (the test
 * checks 1e-10 relative to max|sigma| against numpy).
 *
 * Merging (MPI): accumulators are mergeable. With equal shifts (give every
 * rank the same explicit shift, e.g. zeros or a reference mean), n, s and S
 * simply add, so the master can MPI_Reduce(MPI_SUM) the arrays `n`, `sum`
 * and `outer` directly. With different shifts, gather them and call
 * sd_fid_accum_merge, which re-centres exactly.
 *
 * Distance. FID = |mu1 - mu2|² + tr Σ1 + tr Σ2 - 2 tr sqrtm(Σ1 Σ2). Instead
 * of scipy's sqrtm, tr sqrtm(Σ1Σ2) = Σ √λ over the eigenvalues λ of the
 * symmetric matrix Σ1^½ Σ2 Σ1^½ (same spectrum as Σ1Σ2). With
 * Σ1 = V diag(w) Vᵀ (LAPACK dsyevd), W = diag(√w₊) Vᵀ keeping only rows with
 * w > 0, the eigenvalues of W Σ2 Wᵀ (r x r, r = rank) are those λ (plus
 * zeros). Negative rounding noise in w and λ is clamped to 0, as the real
 * part of scipy's result does. This reproduces pytorch-fid to ~1e-14
 * (64-d) and ~2.4e-8 (rank-deficient 2048-d) relative.
 *
 * pytorch-fid's special cases: it retries with eps = 1e-6 added to both
 * diagonals only when scipy's sqrtm returns non-finite values, which this
 * route never produces for finite input; the analogue here is a failed
 * eigen-solve (LAPACK info > 0), retried once with the same eps offset
 * (result.eps_used = 1). Never add eps unconditionally: it changes the
 * 2048-d golden from 339.538 to 339.434. pytorch-fid raises "Imaginary
 * component" when sqrtm's diagonal has |imag| > 1e-3; the analogue is a
 * clearly negative eigenvalue (λ < -1e-6·max(1, λmax)) or Σ1 eigenvalue,
 * i.e. statistics that are not covariance matrices: an error here.
 * FID of a set with itself may come out slightly negative (-1.2e-5 on the
 * rank-deficient golden); it is not clamped.
 */
#ifndef SD_FID_H
#define SD_FID_H

#include <stdint.h>

#include "err.h"

typedef struct sd_fid_accum {
    int dim;
    int64_t n;      /* vectors added */
    int has_shift;
    double *shift;  /* [dim] c */
    double *sum;    /* [dim] Σ (x - c) */
    double *outer;  /* [dim, dim] Σ (x - c)(x - c)ᵀ, upper triangle (row <= col) maintained */
} sd_fid_accum;

/* shift: [dim] or NULL to use the mean of the first batch added. */
int sd_fid_accum_init(sd_fid_accum *a, int dim, const double *shift, sd_error *err);
void sd_fid_accum_free(sd_fid_accum *a);

/* Adds n feature vectors x: [n, dim] float32. */
int sd_fid_accum_add(sd_fid_accum *a, const float *x, int64_t n, sd_error *err);

/* dst += src (same dim; any shifts). */
int sd_fid_accum_merge(sd_fid_accum *dst, const sd_fid_accum *src, sd_error *err);

/* mu: [dim], sigma: [dim, dim] (full, symmetric, unbiased); needs n >= 2. */
int sd_fid_accum_stats(const sd_fid_accum *a, double *mu, double *sigma, sd_error *err);

/* Two-pass statistics of a whole feature matrix x: [n, dim], exactly as numpy's mean and cov. */
int sd_fid_stats_from_features(const float *x, int64_t n, int dim, double *mu, double *sigma, sd_error *err);

typedef struct sd_fid_result {
    double fid;
    double diff_sq;    /* |mu1 - mu2|² */
    double trace1;     /* tr Σ1 */
    double trace2;     /* tr Σ2 */
    double tr_covmean; /* tr sqrtm(Σ1 Σ2) */
    double min_eig;    /* most negative eigenvalue of Σ1^½Σ2Σ1^½ before clamping (0 if none) */
    int rank1;         /* eigenvalues of Σ1 kept (> 0) */
    int eps_used;      /* 1 when the eps retry ran */
} sd_fid_result;

/* mu*: [dim], sigma*: [dim, dim] float64. */
int sd_fid_frechet(const double *mu1, const double *sigma1, const double *mu2, const double *sigma2, int dim,
                   sd_fid_result *out, sd_error *err);

/*
 * FID statistics files (.npz): mu float64 [D], sigma float64 [D, D], as
 * pytorch-fid and clean-fid write them; sdrender also stores n (int64 0-d,
 * the number of images) and optionally features float32 [N, D] for
 * precision/recall.
 */
typedef struct sd_fid_stats {
    int dim;
    int64_t n;         /* images, or -1 when the file does not say */
    double *mu;        /* [dim] */
    double *sigma;     /* [dim, dim] */
    float *features;   /* [n_features, dim] or NULL */
    int64_t n_features;
} sd_fid_stats;

/* features may be NULL (n_features ignored). */
int sd_fid_stats_save(const char *path, const double *mu, const double *sigma, int dim, int64_t n,
                      const float *features, int64_t n_features, sd_error *err);
/* Accepts mu/sigma stored as float64 or float32 (converted); everything is copied. */
int sd_fid_stats_load(const char *path, sd_fid_stats *s, sd_error *err);
void sd_fid_stats_free(sd_fid_stats *s);

#endif
