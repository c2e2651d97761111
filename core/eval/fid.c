#include "fid.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "npz.h"

/* LAPACK (from OpenBLAS), Fortran calling convention with the hidden lengths of character arguments. */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                    double *work, const int *lwork, int *iwork, const int *liwork, int *info, size_t jobz_len,
                    size_t uplo_len);

#define ACC_ROWS 256 /* rows converted to float64 per dsyrk call */

/* ------------------------------------------------------------ accumulation */

int sd_fid_accum_init(sd_fid_accum *a, int dim, const double *shift, sd_error *err) {
    memset(a, 0, sizeof *a);
    if (dim < 1 || dim > 65536) return sd_err(err, SD_EINPUT, "feature dimension %d is out of range", dim);
    a->dim = dim;
    a->shift = calloc((size_t)dim, sizeof *a->shift);
    a->sum = calloc((size_t)dim, sizeof *a->sum);
    a->outer = calloc((size_t)dim * (size_t)dim, sizeof *a->outer);
    if (!a->shift || !a->sum || !a->outer) {
        sd_fid_accum_free(a);
        return sd_err(err, SD_ENOMEM, "out of memory for %dx%d feature statistics", dim, dim);
    }
    if (shift) {
        memcpy(a->shift, shift, sizeof(double) * (size_t)dim);
        a->has_shift = 1;
    }
    return 0;
}

void sd_fid_accum_free(sd_fid_accum *a) {
    free(a->shift);
    free(a->sum);
    free(a->outer);
    memset(a, 0, sizeof *a);
}

static int check_finite_f32(const float *x, size_t n, const char *what, sd_error *err) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return sd_err(err, SD_EINPUT, "%s: element %zu is %g; features must be finite", what, i, x[i]);
    return 0;
}

int sd_fid_accum_add(sd_fid_accum *a, const float *x, int64_t n, sd_error *err) {
    if (n <= 0) return 0;
    size_t d = (size_t)a->dim;
    int rc = check_finite_f32(x, (size_t)n * d, "FID features", err);
    if (rc < 0) return rc;
    if (!a->has_shift) { /* centre on the first batch's mean */
        for (int64_t i = 0; i < n; i++)
            for (size_t j = 0; j < d; j++) a->shift[j] += (double)x[(size_t)i * d + j];
        for (size_t j = 0; j < d; j++) a->shift[j] /= (double)n;
        a->has_shift = 1;
    }
    int64_t rows = n < ACC_ROWS ? n : ACC_ROWS;
    double *xc = malloc((size_t)rows * d * sizeof *xc);
    if (!xc) return sd_err(err, SD_ENOMEM, "out of memory accumulating FID statistics");
    for (int64_t r0 = 0; r0 < n; r0 += rows) {
        int64_t m = n - r0 < rows ? n - r0 : rows;
        for (int64_t i = 0; i < m; i++) {
            const float *xi = x + (size_t)(r0 + i) * d;
            double *ci = xc + (size_t)i * d;
            for (size_t j = 0; j < d; j++) {
                ci[j] = (double)xi[j] - a->shift[j];
                a->sum[j] += ci[j];
            }
        }
        /* outer += xcᵀ xc (upper triangle) */
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, a->dim, (int)m, 1.0, xc, a->dim, 1.0, a->outer, a->dim);
    }
    a->n += n;
    free(xc);
    return 0;
}

int sd_fid_accum_merge(sd_fid_accum *dst, const sd_fid_accum *src, sd_error *err) {
    if (dst->dim != src->dim)
        return sd_err(err, SD_EINPUT, "cannot merge FID statistics of dimension %d into %d", src->dim, dst->dim);
    if (src->n == 0) return 0;
    size_t d = (size_t)dst->dim;
    if (!dst->has_shift) {
        memcpy(dst->shift, src->shift, d * sizeof(double));
        dst->has_shift = 1;
    }
    /* re-centre src on dst's shift: with e = c_src - c_dst,
       s' = s + n e,  S' = S + s eᵀ + e sᵀ + n e eᵀ */
    double *e = malloc(d * sizeof *e);
    if (!e) return sd_err(err, SD_ENOMEM, "out of memory merging FID statistics");
    double nn = (double)src->n;
    for (size_t j = 0; j < d; j++) e[j] = src->shift[j] - dst->shift[j];
    for (size_t i = 0; i < d; i++) {
        const double *so = src->outer + i * d;
        double *dout = dst->outer + i * d;
        double si = src->sum[i], ei = e[i];
        for (size_t j = i; j < d; j++) dout[j] += so[j] + si * e[j] + ei * src->sum[j] + nn * ei * e[j];
    }
    for (size_t j = 0; j < d; j++) dst->sum[j] += src->sum[j] + nn * e[j];
    dst->n += src->n;
    free(e);
    return 0;
}

int sd_fid_accum_stats(const sd_fid_accum *a, double *mu, double *sigma, sd_error *err) {
    if (a->n < 2)
        return sd_err(err, SD_EINPUT, "FID statistics need at least 2 feature vectors, got %lld", (long long)a->n);
    size_t d = (size_t)a->dim;
    double n = (double)a->n;
    for (size_t j = 0; j < d; j++) mu[j] = a->shift[j] + a->sum[j] / n;
    for (size_t i = 0; i < d; i++)
        for (size_t j = i; j < d; j++) {
            double v = (a->outer[i * d + j] - a->sum[i] * a->sum[j] / n) / (n - 1.0);
            sigma[i * d + j] = v;
            sigma[j * d + i] = v;
        }
    return 0;
}

int sd_fid_stats_from_features(const float *x, int64_t n, int dim, double *mu, double *sigma, sd_error *err) {
    if (n < 2) return sd_err(err, SD_EINPUT, "FID statistics need at least 2 feature vectors, got %lld", (long long)n);
    if (dim < 1) return sd_err(err, SD_EINPUT, "feature dimension %d is out of range", dim);
    double *mean = calloc((size_t)dim, sizeof *mean);
    if (!mean) return sd_err(err, SD_ENOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) mean[j] += (double)x[(size_t)i * (size_t)dim + (size_t)j];
    for (int j = 0; j < dim; j++) mean[j] /= (double)n;
    sd_fid_accum a;
    int rc = sd_fid_accum_init(&a, dim, mean, err);
    if (rc == 0) rc = sd_fid_accum_add(&a, x, n, err);
    if (rc == 0) rc = sd_fid_accum_stats(&a, mu, sigma, err);
    sd_fid_accum_free(&a);
    free(mean);
    return rc;
}

/* ------------------------------------------------------------ the distance */

/* Eigenvalues (ascending) and, with vectors, eigenvectors of the symmetric n x n matrix a (overwritten). */
static int sym_eig(double *a, int n, int vectors, double *w, int *info, sd_error *err) {
    const char jobz = vectors ? 'V' : 'N', uplo = 'U';
    int lwork = -1, liwork = -1, iwq = 0;
    double wq = 0;
    dsyevd_(&jobz, &uplo, &n, a, &n, w, &wq, &lwork, &iwq, &liwork, info, 1, 1);
    if (*info != 0) return sd_err(err, SD_EINTERNAL, "LAPACK dsyevd workspace query failed (info %d)", *info);
    lwork = (int)wq + 1;
    liwork = iwq + 1;
    double *work = malloc((size_t)lwork * sizeof *work);
    int *iwork = malloc((size_t)liwork * sizeof *iwork);
    if (!work || !iwork) {
        free(work);
        free(iwork);
        return sd_err(err, SD_ENOMEM, "out of memory for a %dx%d eigen-decomposition", n, n);
    }
    dsyevd_(&jobz, &uplo, &n, a, &n, w, work, &lwork, iwork, &liwork, info, 1, 1);
    free(work);
    free(iwork);
    if (*info < 0) return sd_err(err, SD_EINTERNAL, "LAPACK dsyevd rejected argument %d", -*info);
    return 0; /* info > 0: no convergence, the caller decides */
}

/*
 * tr sqrtm((Σ1 + eps I)(Σ2 + eps I)) via the eigenvalues of W Σ2 Wᵀ (see fid.h).
 * Returns 1 when LAPACK did not converge (the caller retries with eps).
 */
static int trace_sqrt_product(const double *s1, const double *s2, int dim, double eps, sd_fid_result *out,
                              sd_error *err) {
    size_t d = (size_t)dim;
    double *a = malloc(d * d * sizeof *a), *w = malloc(d * sizeof *w);
    double *s2e = NULL, *wm = NULL, *tmp = NULL, *t = NULL, *lam = NULL;
    int rc = 0, info = 0;
    if (!a || !w) rc = sd_err(err, SD_ENOMEM, "out of memory for FID (%dx%d)", dim, dim);
    if (rc == 0) {
        memcpy(a, s1, d * d * sizeof *a);
        for (size_t i = 0; i < d; i++) a[i * d + i] += eps;
        rc = sym_eig(a, dim, 1, w, &info, err);
    }
    if (rc == 0 && info > 0) rc = 1;
    int r = 0;
    if (rc == 0) {
        double wmax = w[d - 1];
        if (w[0] < -1e-6 * fabs(wmax))
            rc = sd_err(err, SD_EINPUT,
                        "sigma1 is not a covariance matrix: eigenvalue %g (largest %g); are the statistics corrupt?",
                        w[0], wmax);
        for (size_t j = 0; j < d; j++) r += w[j] > 0;
    }
    if (rc == 0 && r > 0) {
        /* a holds the eigenvectors as rows (LAPACK's columns, read row-major); W = diag(√w) Vᵀ, positive w only */
        wm = malloc((size_t)r * d * sizeof *wm);
        tmp = malloc((size_t)r * d * sizeof *tmp);
        t = malloc((size_t)r * (size_t)r * sizeof *t);
        lam = malloc((size_t)r * sizeof *lam);
        if (eps != 0) s2e = malloc(d * d * sizeof *s2e);
        if (!wm || !tmp || !t || !lam || (eps != 0 && !s2e)) rc = sd_err(err, SD_ENOMEM, "out of memory for FID");
    }
    if (rc == 0 && r > 0) {
        int k = 0;
        for (size_t j = 0; j < d; j++) {
            if (!(w[j] > 0)) continue;
            double sq = sqrt(w[j]);
            for (size_t i = 0; i < d; i++) wm[(size_t)k * d + i] = sq * a[j * d + i];
            k++;
        }
        const double *b = s2;
        if (eps != 0) {
            memcpy(s2e, s2, d * d * sizeof *s2e);
            for (size_t i = 0; i < d; i++) s2e[i * d + i] += eps;
            b = s2e;
        }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, dim, dim, 1.0, wm, dim, b, dim, 0.0, tmp, dim);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r, r, dim, 1.0, tmp, dim, wm, dim, 0.0, t, r);
        for (int i = 0; i < r; i++)
            for (int j = i + 1; j < r; j++) {
                double m = 0.5 * (t[(size_t)i * r + j] + t[(size_t)j * r + i]);
                t[(size_t)i * r + j] = t[(size_t)j * r + i] = m;
            }
        rc = sym_eig(t, r, 0, lam, &info, err);
        if (rc == 0 && info > 0) rc = 1;
    }
    if (rc == 0) {
        double tr = 0, lmax = r > 0 ? lam[r - 1] : 0, lmin = r > 0 ? lam[0] : 0;
        out->min_eig = lmin < 0 ? lmin : 0;
        out->rank1 = r;
        if (lmin < -1e-6 * fmax(1.0, lmax))
            rc = sd_err(err, SD_EINPUT,
                        "sigma1^1/2 sigma2 sigma1^1/2 has eigenvalue %g: the statistics are not covariance matrices "
                        "(pytorch-fid would fail with 'Imaginary component')",
                        lmin);
        for (int i = 0; i < r; i++) tr += lam[i] > 0 ? sqrt(lam[i]) : 0.0;
        out->tr_covmean = tr;
    }
    free(a);
    free(w);
    free(s2e);
    free(wm);
    free(tmp);
    free(t);
    free(lam);
    return rc;
}

static int check_finite_f64(const double *x, size_t n, const char *what, sd_error *err) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return sd_err(err, SD_EINPUT, "%s: element %zu is %g; statistics must be finite", what, i, x[i]);
    return 0;
}

int sd_fid_frechet(const double *mu1, const double *sigma1, const double *mu2, const double *sigma2, int dim,
                   sd_fid_result *out, sd_error *err) {
    memset(out, 0, sizeof *out);
    if (dim < 1) return sd_err(err, SD_EINPUT, "feature dimension %d is out of range", dim);
    size_t d = (size_t)dim;
    int rc = check_finite_f64(mu1, d, "mu1", err);
    if (rc == 0) rc = check_finite_f64(mu2, d, "mu2", err);
    if (rc == 0) rc = check_finite_f64(sigma1, d * d, "sigma1", err);
    if (rc == 0) rc = check_finite_f64(sigma2, d * d, "sigma2", err);
    if (rc < 0) return rc;
    for (size_t i = 0; i < d; i++) {
        double df = mu1[i] - mu2[i];
        out->diff_sq += df * df;
        out->trace1 += sigma1[i * d + i];
        out->trace2 += sigma2[i * d + i];
    }
    rc = trace_sqrt_product(sigma1, sigma2, dim, 0.0, out, err);
    if (rc == 1) { /* pytorch-fid's fallback: offset both diagonals by eps */
        out->eps_used = 1;
        rc = trace_sqrt_product(sigma1, sigma2, dim, 1e-6, out, err);
        if (rc == 1) rc = sd_err(err, SD_EINPUT, "FID: the eigen-solver did not converge even with eps = 1e-6");
    }
    if (rc < 0) return rc;
    out->fid = out->diff_sq + out->trace1 + out->trace2 - 2.0 * out->tr_covmean;
    return 0;
}

/* ------------------------------------------------------------ statistics files */

int sd_fid_stats_save(const char *path, const double *mu, const double *sigma, int dim, int64_t n,
                      const float *features, int64_t n_features, sd_error *err) {
    sd_tensor t[4];
    memset(t, 0, sizeof t);
    t[0] = (sd_tensor){.name = "mu", .dtype = SD_F64, .ndim = 1, .shape = {dim}, .data = mu,
                       .nbytes = (size_t)dim * 8};
    t[1] = (sd_tensor){.name = "sigma", .dtype = SD_F64, .ndim = 2, .shape = {dim, dim}, .data = sigma,
                       .nbytes = (size_t)dim * (size_t)dim * 8};
    t[2] = (sd_tensor){.name = "n", .dtype = SD_I64, .ndim = 0, .data = &n, .nbytes = 8};
    int k = 3;
    if (features)
        t[k++] = (sd_tensor){.name = "features", .dtype = SD_F32, .ndim = 2, .shape = {n_features, dim},
                             .data = features, .nbytes = (size_t)n_features * (size_t)dim * 4};
    return sd_npz_write(path, t, k, err);
}

/* A float array (F64 or F32) converted into a new float64 buffer. */
static double *to_f64(const sd_tensor *t) {
    size_t n = (size_t)sd_tensor_numel(t);
    double *p = malloc((n ? n : 1) * sizeof *p);
    if (p) sd_dtype_convert_to_f64(p, t->data, t->dtype, n);
    return p;
}

int sd_fid_stats_load(const char *path, sd_fid_stats *s, sd_error *err) {
    memset(s, 0, sizeof *s);
    s->n = -1;
    sd_npz z;
    int rc = sd_npz_open(&z, path, err);
    if (rc < 0) return rc;
    const sd_tensor *mu = sd_npz_find(&z, "mu"), *sg = sd_npz_find(&z, "sigma"), *n = sd_npz_find(&z, "n"),
                    *f = sd_npz_find(&z, "features");
    char sh[128];
    if (!mu || !sg) rc = sd_err(err, SD_EINPUT, "%s: FID statistics need arrays 'mu' and 'sigma'", path);
    else if ((mu->dtype != SD_F64 && mu->dtype != SD_F32) || (sg->dtype != SD_F64 && sg->dtype != SD_F32))
        rc = sd_err(err, SD_EINPUT, "%s: 'mu' and 'sigma' must be float64 or float32", path);
    else if (mu->ndim != 1 || mu->shape[0] < 1 || mu->shape[0] > 65536)
        rc = sd_err(err, SD_EINPUT, "%s: 'mu' has shape %s, expected [D]", path,
                    sd_tensor_shape_str(sh, sizeof sh, mu->shape, mu->ndim));
    else if (sg->ndim != 2 || sg->shape[0] != mu->shape[0] || sg->shape[1] != mu->shape[0])
        rc = sd_err(err, SD_EINPUT, "%s: 'sigma' has shape %s, expected [%lld, %lld] to match 'mu'", path,
                    sd_tensor_shape_str(sh, sizeof sh, sg->shape, sg->ndim), (long long)mu->shape[0],
                    (long long)mu->shape[0]);
    else if (f && (f->ndim != 2 || f->shape[1] != mu->shape[0] || (f->dtype != SD_F32 && f->dtype != SD_F64 &&
                                                                     f->dtype != SD_F16)))
        rc = sd_err(err, SD_EINPUT, "%s: 'features' has shape %s (%s), expected [N, %lld] floats", path,
                    sd_tensor_shape_str(sh, sizeof sh, f->shape, f->ndim), sd_dtype_name(f->dtype), (long long)mu->shape[0]);
    else if (n && (n->ndim != 0 || (n->dtype != SD_I64 && n->dtype != SD_I32)))
        rc = sd_err(err, SD_EINPUT, "%s: 'n' must be an integer scalar", path);
    if (rc == 0) {
        s->dim = (int)mu->shape[0];
        s->mu = to_f64(mu);
        s->sigma = to_f64(sg);
        if (f) {
            s->n_features = f->shape[0];
            s->features = sd_tensor_to_f32_alloc(f, err);
        }
        if (n && n->dtype == SD_I64) memcpy(&s->n, n->data, 8);
        else if (n) {
            int32_t v;
            memcpy(&v, n->data, 4);
            s->n = v;
        }
        if (!s->mu || !s->sigma || (f && !s->features)) rc = sd_err(err, SD_ENOMEM, "%s: out of memory", path);
    }
    sd_npz_close(&z);
    if (rc < 0) sd_fid_stats_free(s);
    return rc;
}

void sd_fid_stats_free(sd_fid_stats *s) {
    free(s->mu);
    free(s->sigma);
    free(s->features);
    memset(s, 0, sizeof *s);
}
