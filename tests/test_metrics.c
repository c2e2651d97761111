/* Tests for core/eval/fid.c and core/eval/prdc.c against pytorch-fid and prdc goldens (metrics/README.md §1, §3). */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fid.h"
#include "npz.h"
#include "prdc.h"

static json_t *load_json(const char *rel) {
    json_error_t je;
    json_t *j = json_load_file(tu_path(rel), 0, &je);
    if (!j) fail_msg("%s: %s", rel, je.text);
    return j;
}

static double jnum(json_t *root, const char *obj, const char *key) {
    json_t *o = json_object_get(root, obj);
    json_t *v = o ? json_object_get(o, key) : NULL;
    if (!v || !json_is_number(v)) fail_msg("json: missing number %s.%s", obj, key);
    return json_number_value(v);
}

static double *f64_of(const st_file *f, const char *name, size_t *n) {
    const sd_tensor *t = tu_tensor(f, name);
    size_t k = (size_t)sd_tensor_numel(t);
    double *p = malloc(k * sizeof *p);
    assert_non_null(p);
    sd_dtype_convert_to_f64(p, t->data, t->dtype, k);
    if (n) *n = k;
    return p;
}

/* |got - want| <= rel * scale for every element, scale = max|want| (as README §1 states the tolerance). */
static void expect_rel_peak(const char *label, const double *got, const double *want, size_t n, double rel) {
    double peak = 0, worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) peak = fmax(peak, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs(got[i] - want[i]);
        if (d > worst || isnan(d)) {
            worst = d;
            wi = i;
        }
    }
    if (!(worst <= rel * peak))
        fail_msg("%s: max |got - want| = %.3g at %zu (got %.17g, want %.17g), tolerance %.3g x peak %.4g", label, worst,
                 wi, got[wi], want[wi], rel, peak);
}

static void expect_rel(const char *label, double got, double want, double rel) {
    if (!(fabs(got - want) <= rel * fabs(want)))
        fail_msg("%s: got %.17g, want %.17g (relative error %.3g > %.3g)", label, got, want, fabs(got - want) / fabs(want),
                 rel);
}

/* ------------------------------------------------------------ FID statistics */

static void test_fid_stats_match_numpy_mean_and_cov_batched_or_not(void **state) {
    (void)state;
    st_file f;
    tu_open(&f, "metrics/fid_math_64.safetensors");
    const char *sets[2][3] = {{"features_a", "mu_a", "sigma_a"}, {"features_b", "mu_b", "sigma_b"}};
    for (int s = 0; s < 2; s++) {
        const sd_tensor *ft = tu_tensor(&f, sets[s][0]);
        int64_t n = ft->shape[0];
        int d = (int)ft->shape[1];
        float *x = tu_f32(&f, sets[s][0], NULL);
        double *mu_want = f64_of(&f, sets[s][1], NULL), *sg_want = f64_of(&f, sets[s][2], NULL);
        double *mu = malloc((size_t)d * sizeof *mu), *sg = malloc((size_t)d * d * sizeof *sg);
        sd_error err = {0};
        /* whole matrix, two-pass */
        assert_int_equal(sd_fid_stats_from_features(x, n, d, mu, sg, &err), 0);
        expect_rel_peak("mu (two-pass)", mu, mu_want, (size_t)d, 1e-10);
        expect_rel_peak("sigma (two-pass)", sg, sg_want, (size_t)d * d, 1e-10);
        /* streaming, uneven batches, shift from the first batch */
        sd_fid_accum acc;
        assert_int_equal(sd_fid_accum_init(&acc, d, NULL, &err), 0);
        const int64_t cuts[] = {0, 1, 8, 58, 300, n};
        for (int c = 0; c + 1 < 6; c++) {
            int64_t a = cuts[c] < n ? cuts[c] : n, b = cuts[c + 1] < n ? cuts[c + 1] : n;
            assert_int_equal(sd_fid_accum_add(&acc, x + (size_t)a * d, b - a, &err), 0);
        }
        assert_int_equal(acc.n, n);
        assert_int_equal(sd_fid_accum_stats(&acc, mu, sg, &err), 0);
        expect_rel_peak("mu (streamed)", mu, mu_want, (size_t)d, 1e-10);
        expect_rel_peak("sigma (streamed)", sg, sg_want, (size_t)d * d, 1e-10);
        /* three "ranks" with different shifts (one explicit: zeros), merged */
        sd_fid_accum part[3];
        double *zeros = calloc((size_t)d, sizeof *zeros);
        assert_int_equal(sd_fid_accum_init(&part[0], d, NULL, &err), 0);
        assert_int_equal(sd_fid_accum_init(&part[1], d, zeros, &err), 0);
        assert_int_equal(sd_fid_accum_init(&part[2], d, NULL, &err), 0);
        int64_t third = n / 3;
        assert_int_equal(sd_fid_accum_add(&part[0], x, third, &err), 0);
        assert_int_equal(sd_fid_accum_add(&part[1], x + (size_t)third * d, third, &err), 0);
        assert_int_equal(sd_fid_accum_add(&part[2], x + (size_t)(2 * third) * d, n - 2 * third, &err), 0);
        sd_fid_accum all;
        assert_int_equal(sd_fid_accum_init(&all, d, NULL, &err), 0);
        for (int p = 2; p >= 0; p--) assert_int_equal(sd_fid_accum_merge(&all, &part[p], &err), 0);
        assert_int_equal(sd_fid_accum_stats(&all, mu, sg, &err), 0);
        expect_rel_peak("mu (merged)", mu, mu_want, (size_t)d, 1e-10);
        expect_rel_peak("sigma (merged)", sg, sg_want, (size_t)d * d, 1e-10);
        for (int p = 0; p < 3; p++) sd_fid_accum_free(&part[p]);
        sd_fid_accum_free(&all);
        sd_fid_accum_free(&acc);
        free(zeros);
        free(x);
        free(mu_want);
        free(sg_want);
        free(mu);
        free(sg);
    }
    st_close(&f);
}

static void test_fid_accum_refuses_too_few_vectors_and_nonfinite_features(void **state) {
    (void)state;
    sd_fid_accum acc;
    sd_error err = {0};
    assert_int_equal(sd_fid_accum_init(&acc, 2, NULL, &err), 0);
    double mu[2], sg[4];
    float x[4] = {1, 2, 3, NAN};
    assert_int_equal(sd_fid_accum_add(&acc, x, 1, &err), 0);
    assert_int_equal(sd_fid_accum_stats(&acc, mu, sg, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "at least 2"));
    assert_int_equal(sd_fid_accum_add(&acc, x, 2, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "finite"));
    sd_fid_accum other;
    assert_int_equal(sd_fid_accum_init(&other, 3, NULL, &err), 0);
    assert_int_equal(sd_fid_accum_merge(&acc, &other, &err), SD_EINPUT);
    sd_fid_accum_free(&other);
    sd_fid_accum_free(&acc);
}

/* ------------------------------------------------------------ Fréchet distance */

static void test_fid_matches_pytorch_fid_on_64d_statistics(void **state) {
    (void)state;
    json_t *j = load_json("metrics/fid_math.json");
    st_file f;
    tu_open(&f, "metrics/fid_math_64.safetensors");
    double *mu1 = f64_of(&f, "mu_a", NULL), *mu2 = f64_of(&f, "mu_b", NULL);
    double *s1 = f64_of(&f, "sigma_a", NULL), *s2 = f64_of(&f, "sigma_b", NULL);
    sd_fid_result r;
    sd_error err = {0};
    if (sd_fid_frechet(mu1, s1, mu2, s2, 64, &r, &err) < 0) fail_msg("%s", err.msg);
    expect_rel("fid 64-d", r.fid, jnum(j, "fid_math_64", "fid"), 1e-6);
    expect_rel("diff_sq", r.diff_sq, jnum(j, "fid_math_64", "diff_sq"), 1e-12);
    expect_rel("trace sigma1", r.trace1, jnum(j, "fid_math_64", "trace_sigma1"), 1e-12);
    expect_rel("trace sigma2", r.trace2, jnum(j, "fid_math_64", "trace_sigma2"), 1e-12);
    expect_rel("tr covmean", r.tr_covmean, jnum(j, "fid_math_64", "tr_covmean_scipy_sqrtm"), 1e-6);
    assert_int_equal(r.eps_used, 0);
    assert_int_equal(r.rank1, 64);
    /* symmetric in its arguments */
    sd_fid_result r2;
    assert_int_equal(sd_fid_frechet(mu2, s2, mu1, s1, 64, &r2, &err), 0);
    expect_rel("fid 64-d swapped", r2.fid, r.fid, 1e-9);
    /* a set against itself */
    assert_int_equal(sd_fid_frechet(mu1, s1, mu1, s1, 64, &r2, &err), 0);
    assert_true(fabs(r2.fid) < 1e-6);
    free(mu1);
    free(mu2);
    free(s1);
    free(s2);
    st_close(&f);
    json_decref(j);
}

/* 600 and 500 samples in 2048 dimensions: rank-deficient, as with few images. */
static void test_fid_matches_pytorch_fid_on_rank_deficient_2048d_features(void **state) {
    (void)state;
    json_t *j = load_json("metrics/fid_math.json");
    st_file f;
    tu_open(&f, "metrics/fid_math_2048.safetensors");
    const int d = 2048;
    sd_error err = {0};
    double *mu[2], *sg[2];
    const char *fn[2] = {"features_a", "features_b"}, *mn[2] = {"mu_a", "mu_b"};
    for (int s = 0; s < 2; s++) {
        const sd_tensor *t = tu_tensor(&f, fn[s]);
        float *x = tu_f32(&f, fn[s], NULL);
        mu[s] = malloc(d * sizeof(double));
        sg[s] = malloc((size_t)d * d * sizeof(double));
        sd_fid_accum acc;
        assert_int_equal(sd_fid_accum_init(&acc, d, NULL, &err), 0);
        for (int64_t i = 0; i < t->shape[0]; i += 100) {
            int64_t m = t->shape[0] - i < 100 ? t->shape[0] - i : 100;
            assert_int_equal(sd_fid_accum_add(&acc, x + (size_t)i * d, m, &err), 0);
        }
        assert_int_equal(sd_fid_accum_stats(&acc, mu[s], sg[s], &err), 0);
        sd_fid_accum_free(&acc);
        double *mw = f64_of(&f, mn[s], NULL);
        expect_rel_peak("mu 2048-d", mu[s], mw, d, 1e-10);
        free(mw);
        free(x);
    }
    sd_fid_result r;
    if (sd_fid_frechet(mu[0], sg[0], mu[1], sg[1], d, &r, &err) < 0) fail_msg("%s", err.msg);
    expect_rel("fid 2048-d", r.fid, jnum(j, "fid_math_2048", "fid"), 1e-6);
    expect_rel("diff_sq 2048-d", r.diff_sq, jnum(j, "fid_math_2048", "diff_sq"), 1e-10);
    expect_rel("trace sigma1 2048-d", r.trace1, jnum(j, "fid_math_2048", "trace_sigma1"), 1e-10);
    expect_rel("trace sigma2 2048-d", r.trace2, jnum(j, "fid_math_2048", "trace_sigma2"), 1e-10);
    expect_rel("tr covmean 2048-d", r.tr_covmean, jnum(j, "fid_math_2048", "tr_covmean_scipy_sqrtm"), 1e-6);
    assert_int_equal(r.eps_used, 0);
    assert_true(r.rank1 >= 599 && r.rank1 < d);
    /* adding eps unconditionally would be wrong: the golden is far from the eps variant */
    assert_true(fabs(r.fid - jnum(j, "fid_math_2048", "fid_eigh_with_eps_offset_always")) > 0.05);
    /* self-distance: tiny, possibly negative (pytorch-fid gives -1.2e-5) */
    assert_int_equal(sd_fid_frechet(mu[0], sg[0], mu[0], sg[0], d, &r, &err), 0);
    assert_true(fabs(r.fid) < 1e-3);
    for (int s = 0; s < 2; s++) {
        free(mu[s]);
        free(sg[s]);
    }
    st_close(&f);
    json_decref(j);
}

static void test_fid_rejects_non_covariance_and_nonfinite_statistics(void **state) {
    (void)state;
    double mu[2] = {0, 0}, good[4] = {1, 0, 0, 1}, bad[4] = {1, 0, 0, -2}, nan_mu[2] = {0, NAN};
    sd_fid_result r;
    sd_error err = {0};
    assert_int_equal(sd_fid_frechet(mu, good, mu, good, 2, &r, &err), 0);
    assert_true(fabs(r.fid) < 1e-12);
    assert_int_equal(sd_fid_frechet(mu, bad, mu, good, 2, &r, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "not a covariance"));
    assert_int_equal(sd_fid_frechet(mu, good, mu, bad, 2, &r, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "Imaginary component"));
    assert_int_equal(sd_fid_frechet(nan_mu, good, mu, good, 2, &r, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "finite"));
    /* a known closed form: N(0, I) vs N(m, 4I) in 2-d: |m|² + 2 + 8 - 2·2·2 */
    double m[2] = {3, 4}, four[4] = {4, 0, 0, 4};
    assert_int_equal(sd_fid_frechet(mu, good, m, four, 2, &r, &err), 0);
    expect_rel("closed form", r.fid, 25.0 + 2 + 8 - 8, 1e-12);
}

static void test_fid_stats_file_round_trip_and_foreign_layouts(void **state) {
    (void)state;
    double mu[3] = {1, 2, 3}, sg[9] = {2, 1, 0, 1, 2, 1, 0, 1, 2};
    float feats[4 * 3] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    sd_error err = {0};
    const char *path = tu_tmp("fid_stats.npz");
    assert_int_equal(sd_fid_stats_save(path, mu, sg, 3, 4, feats, 4, &err), 0);
    sd_fid_stats s;
    if (sd_fid_stats_load(path, &s, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(s.dim, 3);
    assert_int_equal(s.n, 4);
    assert_int_equal(s.n_features, 4);
    assert_memory_equal(s.mu, mu, sizeof mu);
    assert_memory_equal(s.sigma, sg, sizeof sg);
    assert_memory_equal(s.features, feats, sizeof feats);
    sd_fid_stats_free(&s);
    /* pytorch-fid layout (mu, sigma only), float32 variant */
    float mu32[3] = {1, 2, 3}, sg32[9] = {2, 1, 0, 1, 2, 1, 0, 1, 2};
    sd_tensor t[2] = {
        {.name = "mu", .dtype = SD_F32, .ndim = 1, .shape = {3}, .data = mu32, .nbytes = 12},
        {.name = "sigma", .dtype = SD_F32, .ndim = 2, .shape = {3, 3}, .data = sg32, .nbytes = 36},
    };
    assert_int_equal(sd_npz_write(path, t, 2, &err), 0);
    assert_int_equal(sd_fid_stats_load(path, &s, &err), 0);
    assert_int_equal(s.n, -1);
    assert_null(s.features);
    assert_memory_equal(s.sigma, sg, sizeof sg);
    sd_fid_stats_free(&s);
    /* sigma that does not match mu */
    t[1].shape[0] = 9;
    t[1].ndim = 1;
    assert_int_equal(sd_npz_write(path, t, 2, &err), 0);
    assert_int_equal(sd_fid_stats_load(path, &s, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "'sigma' has shape [9], expected [3, 3]"));
    assert_int_equal(sd_npz_write(path, t, 1, &err), 0);
    assert_int_equal(sd_fid_stats_load(path, &s, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "'mu' and 'sigma'"));
}

/* ------------------------------------------------------------ precision / recall / density / coverage */

static const char *cases[] = {"a_gaussian", "b_identical", "c_duplicates", "d_sizes"};

static void test_prdc_radii_equal_prdc_radii_bit_for_bit(void **state) {
    (void)state;
    st_file f;
    tu_open(&f, "metrics/prdc.safetensors");
    const char *sets[2] = {"real", "fake"};
    for (int s = 0; s < 2; s++) {
        char name[64];
        snprintf(name, sizeof name, "a_gaussian.%s", sets[s]);
        const sd_tensor *t = tu_tensor(&f, name);
        float *x = tu_f32(&f, name, NULL);
        for (int k = 3; k <= 5; k += 2) {
            float *r = malloc((size_t)t->shape[0] * sizeof *r);
            sd_error err = {0};
            assert_int_equal(sd_prdc_radii(x, t->shape[0], (int)t->shape[1], k, r, &err), 0);
            snprintf(name, sizeof name, "a_gaussian.%s_radii_k%d", sets[s], k);
            float *want = tu_f32(&f, name, NULL);
            for (int64_t i = 0; i < t->shape[0]; i++)
                if (memcmp(&r[i], &want[i], 4)) fail_msg("%s[%lld]: %.9g != %.9g", name, (long long)i, r[i], want[i]);
            free(want);
            free(r);
        }
        free(x);
    }
    st_close(&f);
}

static void test_prdc_matches_golden_for_every_case_and_k(void **state) {
    (void)state;
    st_file f;
    tu_open(&f, "metrics/prdc.safetensors");
    json_t *j = load_json("metrics/prdc.json");
    json_t *jc = json_object_get(j, "cases");
    for (int c = 0; c < 4; c++) {
        char rn[64], fn[64];
        snprintf(rn, sizeof rn, "%s.real", cases[c]);
        snprintf(fn, sizeof fn, "%s.fake", cases[c]);
        const sd_tensor *rt = tu_tensor(&f, rn), *ft = tu_tensor(&f, fn);
        float *real = tu_f32(&f, rn, NULL), *fake = tu_f32(&f, fn, NULL);
        int d = (int)rt->shape[1];
        for (int k = 3; k <= 5; k += 2) {
            sd_prdc p;
            sd_error err = {0};
            if (sd_prdc_compute(real, rt->shape[0], fake, ft->shape[0], d, k, &p, &err) < 0) fail_msg("%s", err.msg);
            char kk[8];
            snprintf(kk, sizeof kk, "k%d", k);
            json_t *g = json_object_get(json_object_get(jc, cases[c]), kk);
            const char *names[4] = {"precision", "recall", "density", "coverage"};
            double got[4] = {p.precision, p.recall, p.density, p.coverage};
            for (int m = 0; m < 4; m++) {
                double want = json_number_value(json_object_get(g, names[m]));
                if (!(fabs(got[m] - want) <= 1e-12))
                    fail_msg("%s k=%d %s: got %.17g, want %.17g", cases[c], k, names[m], got[m], want);
            }
            if (c == 2) { /* duplicates: zero radii, counted as prdc does */
                float *rr = malloc((size_t)rt->shape[0] * sizeof *rr), *fr = malloc((size_t)ft->shape[0] * sizeof *fr);
                assert_int_equal(sd_prdc_radii(real, rt->shape[0], d, k, rr, &err), 0);
                assert_int_equal(sd_prdc_radii(fake, ft->shape[0], d, k, fr, &err), 0);
                int zr = 0, zf = 0;
                for (int64_t i = 0; i < rt->shape[0]; i++) zr += rr[i] == 0.0f;
                for (int64_t i = 0; i < ft->shape[0]; i++) zf += fr[i] == 0.0f;
                char key[64];
                snprintf(key, sizeof key, "k%d_num_zero_real_radii", k);
                assert_int_equal(zr, (int)json_integer_value(json_object_get(json_object_get(jc, cases[c]), key)));
                snprintf(key, sizeof key, "k%d_num_zero_fake_radii", k);
                assert_int_equal(zf, (int)json_integer_value(json_object_get(json_object_get(jc, cases[c]), key)));
                free(rr);
                free(fr);
            }
        }
        free(real);
        free(fake);
    }
    json_decref(j);
    st_close(&f);
}

/* The row-split pieces (as MPI ranks would run them), merged, give the same numbers as one call. */
static void test_prdc_row_split_pieces_merge_to_the_same_result(void **state) {
    (void)state;
    st_file f;
    tu_open(&f, "metrics/prdc.safetensors");
    const sd_tensor *rt = tu_tensor(&f, "d_sizes.real"), *ft = tu_tensor(&f, "d_sizes.fake");
    float *real = tu_f32(&f, "d_sizes.real", NULL), *fake = tu_f32(&f, "d_sizes.fake", NULL);
    int64_t nr = rt->shape[0], nf = ft->shape[0];
    int d = (int)rt->shape[1], k = 5;
    sd_error err = {0};
    sd_prdc whole, split;
    assert_int_equal(sd_prdc_compute(real, nr, fake, nf, d, k, &whole, &err), 0);
    float *rr = malloc((size_t)nr * 4), *fr = malloc((size_t)nf * 4);
    const int64_t cut_r = 137, cut_f = 99;
    assert_int_equal(sd_prdc_radii_rows(real, nr, d, k, 0, cut_r, rr, &err), 0);
    assert_int_equal(sd_prdc_radii_rows(real, nr, d, k, cut_r, nr, rr, &err), 0);
    assert_int_equal(sd_prdc_radii_rows(fake, nf, d, k, 0, cut_f, fr, &err), 0);
    assert_int_equal(sd_prdc_radii_rows(fake, nf, d, k, cut_f, nf, fr, &err), 0);
    int64_t *h0 = calloc((size_t)nf, 8), *h1 = calloc((size_t)nf, 8);
    uint8_t *rec = malloc((size_t)nr), *cov = malloc((size_t)nr);
    assert_int_equal(sd_prdc_compare(real, nr, fake, nf, d, rr, fr, 0, cut_r, h0, rec, cov, &err), 0);
    assert_int_equal(sd_prdc_compare(real, nr, fake, nf, d, rr, fr, cut_r, nr, h1, rec, cov, &err), 0);
    for (int64_t j = 0; j < nf; j++) h0[j] += h1[j]; /* MPI_SUM */
    sd_prdc_finish(nr, nf, k, h0, rec, cov, &split);
    assert_true(split.precision == whole.precision && split.recall == whole.recall &&
                split.density == whole.density && split.coverage == whole.coverage);
    assert_true(whole.precision == 0.832 && whole.coverage == 0.9225);
    free(rr);
    free(fr);
    free(h0);
    free(h1);
    free(rec);
    free(cov);
    free(real);
    free(fake);
    st_close(&f);
}

static void test_prdc_rejects_too_few_points_bad_k_and_nonfinite_features(void **state) {
    (void)state;
    float x[4 * 2] = {0, 0, 1, 0, 0, 1, 1, 1};
    sd_prdc p;
    sd_error err = {0};
    assert_int_equal(sd_prdc_compute(x, 4, x, 3, 2, 3, &p, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "too few"));
    assert_int_equal(sd_prdc_compute(x, 4, x, 4, 2, 0, &p, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "nearest_k"));
    x[3] = INFINITY;
    assert_int_equal(sd_prdc_compute(x, 4, x, 4, 2, 1, &p, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "finite"));
    /* a tiny hand-checked case: unit square, k = 1: every radius is 1; fakes at the corners and far away */
    float sq[8] = {0, 0, 1, 0, 0, 1, 1, 1}, fk[8] = {0, 0, 0.5f, 0.5f, 9, 9, 9, 10};
    assert_int_equal(sd_prdc_compute(sq, 4, fk, 4, 2, 1, &p, &err), 0);
    /* fake (0,0): inside the balls of (0,0) only ((1,0) and (0,1) are at exactly 1: not inside);
       fake (.5,.5): inside all 4; the far ones: none */
    assert_true(p.precision == 0.5);
    assert_true(p.density == (1.0 + 4.0) / 4.0);
    assert_true(p.coverage == 1.0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fid_stats_match_numpy_mean_and_cov_batched_or_not),
        cmocka_unit_test(test_fid_accum_refuses_too_few_vectors_and_nonfinite_features),
        cmocka_unit_test(test_fid_matches_pytorch_fid_on_64d_statistics),
        cmocka_unit_test(test_fid_matches_pytorch_fid_on_rank_deficient_2048d_features),
        cmocka_unit_test(test_fid_rejects_non_covariance_and_nonfinite_statistics),
        cmocka_unit_test(test_fid_stats_file_round_trip_and_foreign_layouts),
        cmocka_unit_test(test_prdc_radii_equal_prdc_radii_bit_for_bit),
        cmocka_unit_test(test_prdc_matches_golden_for_every_case_and_k),
        cmocka_unit_test(test_prdc_row_split_pieces_merge_to_the_same_result),
        cmocka_unit_test(test_prdc_rejects_too_few_points_bad_k_and_nonfinite_features),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
