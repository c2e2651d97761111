/*
 * End-to-end tests of `sdrender stats` and `sdrender metrics` against the
 * metrics goldens (../shared/testdata/metrics): random-weight FID Inception
 * features, prdc, FID math, tiny-CLIP score; a job database made by a run
 * that claims and finishes its jobs; 1 rank against mpirun -np 3; bad inputs.
 */
#include "testutil.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fid.h"
#include "jobdb.h"
#include "npz.h"
#include "pickletest.h"
#include "sha256.h"

#define MPIRUN "mpirun --allow-run-as-root --oversubscribe"
#define TOL_POOL3 5e-5       /* README §2 */
#define TOL_PRDC 1e-12       /* README §3 */
#define TOL_CLIP_SCORE 1e-3  /* README §4 */
#define TOL_FID_REL 1e-6     /* README §1 */

static const char *golden_images[8] = {"img0_64x64", "img1_32x48", "img2_299x299", "img3_17x23",
                                       "img4_150x100", "img5_400x320", "img6_8x8", "img7_300x298"};

/* Paths built once by the group setup (absolute, so symlinks and mpirun work from anywhere). */
static char inception_w[PATH_MAX], imgs8[PATH_MAX], ref_npz[PATH_MAX], clip_dir[PATH_MAX], jobs_db[PATH_MAX];
static json_t *clip_json;

static void abs_testdata(char *out, const char *rel) {
    if (!realpath(tu_path(rel), out)) fail_msg("missing test data %s", tu_path(rel));
}

/* Runs a shell command; fails the test with its output unless it exits 0. Returns stdout+stderr (caller frees). */
static char *sh_ok(const char *cmd) {
    char *out;
    int rc = tu_sh(&out, "%s 2>&1", cmd);
    if (rc != 0) fail_msg("exit %d: %s\n%s", rc, cmd, out);
    return out;
}

/* `[prefix] sdrender metrics ARGS --json OUT`: the JSON it wrote (OUT kept for byte comparisons). */
static json_t *metrics_json(const char *prefix, const char *args, const char *out) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s metrics -q %s --json %s", prefix, tu_bin(), args, out);
    free(sh_ok(cmd));
    json_error_t je;
    json_t *j = json_load_file(out, 0, &je);
    if (!j) fail_msg("%s: %s", out, je.text);
    return j;
}

static double jnum(const json_t *j, const char *key) {
    json_t *v = json_object_get(j, key);
    if (!json_is_number(v)) fail_msg("JSON key '%s' is not a number", key);
    return json_number_value(v);
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* An .npz as `sdrender stats` writes it, from a feature matrix x: [n, dim] (features optional). */
static void write_stats_npz(const char *path, const float *x, int64_t n, int dim, int with_features) {
    double *mu = malloc((size_t)dim * sizeof *mu), *sigma = malloc((size_t)dim * (size_t)dim * sizeof *sigma);
    sd_error err = {0};
    if (sd_fid_stats_from_features(x, n, dim, mu, sigma, &err) < 0 ||
        sd_fid_stats_save(path, mu, sigma, dim, n, with_features ? x : NULL, n, &err) < 0)
        fail_msg("%s: %s", path, err.msg);
    free(mu);
    free(sigma);
}

static const char *clip_config_json =
    "{\"projection_dim\": 16, \"logit_scale_init_value\": 2.6592,\n"
    " \"text_config\": {\"hidden_size\": 32, \"intermediate_size\": 128, \"num_hidden_layers\": 2,\n"
    "   \"num_attention_heads\": 2, \"max_position_embeddings\": 77, \"vocab_size\": 49408,\n"
    "   \"hidden_act\": \"quick_gelu\", \"layer_norm_eps\": 1e-05},\n"
    " \"vision_config\": {\"hidden_size\": 32, \"intermediate_size\": 128, \"num_hidden_layers\": 2,\n"
    "   \"num_attention_heads\": 2, \"image_size\": 32, \"patch_size\": 8,\n"
    "   \"hidden_act\": \"quick_gelu\", \"layer_norm_eps\": 1e-05}}\n";

/*
 * A job database whose 4 jobs (clip_score.json's prompts) are `done` the way
 * `sdrender run` makes them: a run claims each job and finishes it with its
 * PNG (a copy of images/clip<i>.png) and that file's SHA-256.
 */
static void make_done_db(const char *db_path, const char *out_dir) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", out_dir);
    free(sh_ok(cmd));
    sd_error err = {0};
    jobdb *db;
    jobdb_open_options oo = {.create = 1};
    if (jobdb_open(&db, db_path, &oo, &err) < 0) fail_msg("%s", err.msg);
    json_t *prompts = json_object_get(clip_json, "prompts"), *images = json_object_get(clip_json, "images");
    assert_int_equal(json_array_size(prompts), 4);
    sd_job specs[4];
    memset(specs, 0, sizeof specs);
    for (int i = 0; i < 4; i++) {
        specs[i].prompt = strdup(json_string_value(json_array_get(prompts, i)));
        specs[i].negative_prompt = strdup("");
        specs[i].seed = i;
        specs[i].steps = 2;
        specs[i].cfg_scale = 7.5;
        specs[i].width = specs[i].height = 64;
        specs[i].clip_skip = 1;
    }
    if (jobdb_enqueue(db, specs, 4, 1, 0, NULL, NULL, &err) < 0) fail_msg("%s", err.msg);
    for (int i = 0; i < 4; i++) sd_job_free(&specs[i]);
    jobdb_run_config rc = {.model_path = "tiny", .ranks = 1};
    if (jobdb_run_begin(db, &rc, &err) < 0) fail_msg("%s", err.msg);
    for (int i = 0; i < 4; i++) {
        sd_job j;
        assert_int_equal(jobdb_claim(db, "test:0", &j, &err), 1);
        assert_int_equal(j.id, i + 1);
        char png[PATH_MAX], src[128], sha[65];
        snprintf(png, sizeof png, "%s/%08d.png", out_dir, i + 1);
        json_t *im = json_array_get(images, i);
        const char *name = json_is_string(im) ? json_string_value(im)
                                              : json_string_value(json_object_get(im, "file"));
        assert_non_null(name);
        snprintf(src, sizeof src, "metrics/%s%s", strchr(name, '/') ? "" : "images/", name);
        snprintf(cmd, sizeof cmd, "cp %s %s", tu_path(src), png);
        free(sh_ok(cmd));
        if (sd_sha256_file(png, sha, &err) < 0) fail_msg("%s", err.msg);
        if (jobdb_finish(db, j.id, png, sha, 0.5, &err) < 0) fail_msg("%s", err.msg);
        sd_job_free(&j);
    }
    if (jobdb_run_end(db, "complete", &err) < 0) fail_msg("%s", err.msg);
    jobdb_close(db);
}

static int group_setup(void **state) {
    (void)state;
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    json_error_t je;
    clip_json = json_load_file(tu_path("metrics/clip_score.json"), 0, &je);
    if (!clip_json) fail_msg("clip_score.json: %s", je.text);
    abs_testdata(inception_w, "metrics/inception_random_fp16.safetensors");
    char cmd[8192], src[PATH_MAX];
    /* the 8 golden images, by link, in the golden order (their names sort that way) */
    snprintf(imgs8, sizeof imgs8, "%s", tu_tmp("imgs8"));
    snprintf(cmd, sizeof cmd, "mkdir -p %s", imgs8);
    free(sh_ok(cmd));
    for (int i = 0; i < 8; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "metrics/images/%s.png", golden_images[i]);
        abs_testdata(src, rel);
        snprintf(cmd, sizeof cmd, "ln -s %s %s/%s.png", src, imgs8, golden_images[i]);
        free(sh_ok(cmd));
    }
    /* their statistics, used by several tests (and checked by the first) */
    snprintf(ref_npz, sizeof ref_npz, "%s", tu_tmp("ref.npz"));
    snprintf(cmd, sizeof cmd, "%s stats -q --images %s -o %s --inception %s", tu_bin(), imgs8, ref_npz, inception_w);
    free(sh_ok(cmd));
    /* the tiny CLIP as a Hugging Face folder: weights, config.json, vocab.json + merges.txt */
    snprintf(clip_dir, sizeof clip_dir, "%s", tu_tmp("clip"));
    snprintf(cmd, sizeof cmd, "mkdir -p %s", clip_dir);
    free(sh_ok(cmd));
    abs_testdata(src, "metrics/clip_tiny_random_fp16.safetensors");
    snprintf(cmd, sizeof cmd, "ln -s %s %s/model.safetensors", src, clip_dir);
    free(sh_ok(cmd));
    for (int i = 0; i < 2; i++) {
        abs_testdata(src, i ? "models/tiny-sd15/tokenizer/merges.txt" : "models/tiny-sd15/tokenizer/vocab.json");
        snprintf(cmd, sizeof cmd, "ln -s %s %s/%s", src, clip_dir, i ? "merges.txt" : "vocab.json");
        free(sh_ok(cmd));
    }
    char cfg[PATH_MAX + 16];
    snprintf(cfg, sizeof cfg, "%s/config.json", clip_dir);
    write_text(cfg, clip_config_json);
    snprintf(jobs_db, sizeof jobs_db, "%s", tu_tmp("jobs.db"));
    make_done_db(jobs_db, tu_tmp("out"));
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    json_decref(clip_json);
    return 0;
}

/* ------------------------------------------------------------ stats */

static void load_stats(const char *path, sd_fid_stats *s) {
    sd_error err = {0};
    if (sd_fid_stats_load(path, s, &err) < 0) fail_msg("%s", err.msg);
}

static void test_stats_writes_golden_pool3_features_and_their_exact_mu_sigma(void **state) {
    (void)state;
    sd_fid_stats s;
    load_stats(ref_npz, &s);
    assert_int_equal(s.dim, 2048);
    assert_int_equal(s.n, 8);
    assert_int_equal(s.n_features, 8);
    st_file g;
    tu_open(&g, "metrics/inception_features.safetensors");
    for (int i = 0; i < 8; i++) {
        char key[64];
        snprintf(key, sizeof key, "pool3.%s", golden_images[i]);
        size_t n;
        float *want = tu_f32(&g, key, &n);
        assert_int_equal(n, 2048);
        tu_expect_close(key, s.features + (size_t)i * 2048, want, 2048, TOL_POOL3);
        free(want);
    }
    st_close(&g);
    /* mu and sigma as numpy's mean and cov of the stored features, two-pass in double */
    const int D = 2048, N = 8;
    double *mu = calloc(D, sizeof *mu), mu_peak = 0, sg_peak = 0, mu_err = 0, sg_err = 0;
    for (int i = 0; i < N; i++)
        for (int d = 0; d < D; d++) mu[d] += s.features[(size_t)i * D + d];
    for (int d = 0; d < D; d++) mu[d] /= N;
    for (int a = 0; a < D; a++) {
        mu_peak = fmax(mu_peak, fabs(mu[a]));
        mu_err = fmax(mu_err, fabs(mu[a] - s.mu[a]));
        for (int b = 0; b < D; b++) {
            double acc = 0;
            for (int i = 0; i < N; i++)
                acc += (s.features[(size_t)i * D + a] - mu[a]) * (s.features[(size_t)i * D + b] - mu[b]);
            acc /= N - 1;
            sg_peak = fmax(sg_peak, fabs(acc));
            sg_err = fmax(sg_err, fabs(acc - s.sigma[(size_t)a * D + b]));
        }
    }
    if (mu_err > 1e-10 * mu_peak || sg_err > 1e-10 * sg_peak)
        fail_msg("mu off by %g (peak %g), sigma off by %g (peak %g)", mu_err, mu_peak, sg_err, sg_peak);
    free(mu);
    sd_fid_stats_free(&s);
}

static void expect_same_stats(const char *a, const char *b) {
    sd_fid_stats x, y;
    load_stats(a, &x);
    load_stats(b, &y);
    assert_int_equal(x.n_features, y.n_features);
    assert_memory_equal(x.features, y.features, (size_t)x.n_features * 2048 * sizeof(float));
    assert_memory_equal(x.mu, y.mu, 2048 * sizeof(double));
    assert_memory_equal(x.sigma, y.sigma, (size_t)2048 * 2048 * sizeof(double));
    sd_fid_stats_free(&x);
    sd_fid_stats_free(&y);
}

static void test_stats_under_three_ranks_writes_bit_identical_statistics(void **state) {
    (void)state;
    char cmd[8192];
    const char *one = tu_tmp("b3_one.npz"), *three = tu_tmp("b3_three.npz");
    /* batches of 3: 8 images are 3 batches, one per rank */
    snprintf(cmd, sizeof cmd, "%s stats -q --batch 3 --images %s -o %s --inception %s", tu_bin(), imgs8, one,
             inception_w);
    free(sh_ok(cmd));
    snprintf(cmd, sizeof cmd, MPIRUN " -np 3 %s stats -q --batch 3 --images %s -o %s --inception %s", tu_bin(), imgs8,
             three, inception_w);
    free(sh_ok(cmd));
    expect_same_stats(one, three);
}

/*
 * pytorch-fid's weights are a PyTorch pickle: the same random network written
 * as a zip .pth with one float32 storage (all tensors at offsets in it) must
 * give the very features of the F16 safetensors file.
 */
static void test_stats_reads_inception_from_pytorch_pth_in_f32(void **state) {
    (void)state;
    st_file st;
    tu_open(&st, "metrics/inception_random_fp16.safetensors");
    int64_t total = 0;
    for (int i = 0; i < st.n; i++) total += sd_tensor_numel(&st.tensors[i]);
    float *all = malloc((size_t)total * sizeof *all);
    assert_non_null(all);
    pb p = {0};
    pb_proto(&p);
    pb_op(&p, '}');
    pb_op(&p, '(');
    int64_t off = 0;
    for (int i = 0; i < st.n; i++) {
        const sd_tensor *t = &st.tensors[i];
        int64_t n = sd_tensor_numel(t), stride[SD_MAX_DIMS];
        sd_tensor_to_f32(t, all + off);
        for (int d = t->ndim - 1, s = 1; d >= 0; d--) {
            stride[d] = s;
            s *= (int)t->shape[d];
        }
        pb_str(&p, t->name);
        pb_tensor(&p, "FloatStorage", "0", (int)total, (int)off, t->ndim, t->shape, stride);
        off += n;
    }
    pb_op(&p, 'u');
    pb_op(&p, '.');
    const char *pth = tu_tmp("pt_inception-f32.pth");
    const char *keys[] = {"0"};
    const void *data[] = {all};
    size_t len[] = {(size_t)total * sizeof *all};
    write_ckpt(pth, &p, 1, keys, data, len, 0);
    free(p.b);
    free(all);
    st_close(&st);

    char cmd[8192];
    const char *two = tu_tmp("two");
    snprintf(cmd, sizeof cmd, "mkdir -p %s && ln -sf %s/img3_17x23.png %s/img6_8x8.png %s/", two, imgs8, imgs8, two);
    free(sh_ok(cmd));
    const char *a = tu_tmp("two_st.npz"), *b = tu_tmp("two_pth.npz");
    snprintf(cmd, sizeof cmd, "%s stats -q --images %s -o %s --inception %s", tu_bin(), two, a, inception_w);
    free(sh_ok(cmd));
    snprintf(cmd, sizeof cmd, "%s stats -q --images %s -o %s --inception %s", tu_bin(), two, b, pth);
    free(sh_ok(cmd));
    expect_same_stats(a, b);
    unlink(pth);
}

/* ------------------------------------------------------------ metrics from .npz files */

static void test_metrics_from_npz_features_reproduce_prdc_goldens(void **state) {
    (void)state;
    static const char *cases[] = {"a_gaussian", "b_identical", "c_duplicates", "d_sizes"};
    st_file g;
    tu_open(&g, "metrics/prdc.safetensors");
    json_error_t je;
    json_t *gold = json_load_file(tu_path("metrics/prdc.json"), 0, &je);
    if (!gold) fail_msg("prdc.json: %s", je.text);
    for (int c = 0; c < 4; c++) {
        char name[64];
        const char *real = tu_tmp("prdc_real.npz"), *fake = tu_tmp("prdc_fake.npz");
        int64_t rows[2];
        for (int side = 0; side < 2; side++) {
            snprintf(name, sizeof name, "%s.%s", cases[c], side ? "fake" : "real");
            const sd_tensor *t = tu_tensor(&g, name);
            size_t n;
            float *x = tu_f32(&g, name, &n);
            rows[side] = t->shape[0];
            write_stats_npz(side ? fake : real, x, t->shape[0], (int)t->shape[1], 1);
            free(x);
        }
        for (int k = 3; k <= 5; k += 2) {
            char args[2048];
            snprintf(args, sizeof args, "--real %s --fake %s --k %d", real, fake, k);
            json_t *j = metrics_json("", args, tu_tmp("prdc.json"));
            snprintf(name, sizeof name, "k%d", k);
            json_t *want = json_object_get(json_object_get(json_object_get(gold, "cases"), cases[c]), name);
            static const char *keys[] = {"precision", "recall", "density", "coverage"};
            for (int q = 0; q < 4; q++) {
                double got = jnum(j, keys[q]), exp = jnum(want, keys[q]);
                if (fabs(got - exp) > TOL_PRDC) fail_msg("%s k=%d %s: %.17g, prdc gives %.17g", cases[c], k, keys[q], got, exp);
            }
            assert_int_equal((int)jnum(j, "k"), k);
            assert_int_equal((int64_t)jnum(j, "n_real"), rows[0]);
            assert_int_equal((int64_t)jnum(j, "n_fake"), rows[1]);
            assert_true(json_is_number(json_object_get(j, "fid")));
            assert_true(json_is_null(json_object_get(j, "clip_score")));
            json_decref(j);
        }
    }
    json_decref(gold);
    st_close(&g);
}

static void test_metrics_fid_from_mu_sigma_npz_matches_pytorch_fid_and_leaves_prdc_null(void **state) {
    (void)state;
    st_file g;
    tu_open(&g, "metrics/fid_math_64.safetensors");
    const char *paths[2] = {tu_tmp("fid_a.npz"), tu_tmp("fid_b.npz")};
    /* mu and sigma only, as pytorch-fid's np.savez(mu=, sigma=) writes them */
    for (int s = 0; s < 2; s++) {
        sd_tensor t[2] = {*tu_tensor(&g, s ? "mu_b" : "mu_a"), *tu_tensor(&g, s ? "sigma_b" : "sigma_a")};
        t[0].name = "mu";
        t[1].name = "sigma";
        sd_error err = {0};
        if (sd_npz_write(paths[s], t, 2, &err) < 0) fail_msg("%s", err.msg);
    }
    char args[2048];
    snprintf(args, sizeof args, "--real %s --fake %s", paths[0], paths[1]);
    json_t *j = metrics_json("", args, tu_tmp("fid.json"));
    json_error_t je;
    json_t *gold = json_load_file(tu_path("metrics/fid_math.json"), 0, &je);
    if (!gold) fail_msg("fid_math.json: %s", je.text);
    json_t *c64 = json_object_get(gold, "fid_math_64");
    assert_non_null(c64);
    double want = jnum(c64, "fid"), got = jnum(j, "fid");
    if (fabs(got - want) > TOL_FID_REL * fabs(want)) fail_msg("FID %.17g, pytorch-fid gives %.17g", got, want);
    static const char *nulls[] = {"precision", "recall", "density", "coverage", "clip_score", "n_real", "n_fake"};
    for (size_t q = 0; q < sizeof nulls / sizeof *nulls; q++)
        if (!json_is_null(json_object_get(j, nulls[q]))) fail_msg("'%s' should be null", nulls[q]);
    assert_int_equal(json_object_size(j), 9);
    json_decref(j);
    /* the text output says why precision/recall are missing */
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s metrics -q %s", tu_bin(), args);
    char *out = sh_ok(cmd);
    assert_non_null(strstr(out, "precision   n/a:"));
    assert_non_null(strstr(out, "no 'features' array"));
    free(out);
    json_decref(gold);
    st_close(&g);
}

/* ------------------------------------------------------------ metrics from a job database */

/* rows of the metrics table, newest first: "name=value run_id=..." lines, and the latest details */
static int metric_rows(const char *db, char names[8][32], double *values, int *null_run, char **details) {
    sqlite3 *h;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h, "SELECT name, value, run_id IS NULL, details_json FROM metrics ORDER BY id DESC"
                                           " LIMIT 8", -1, &st, NULL),
                     SQLITE_OK);
    int n = 0;
    *details = NULL;
    while (sqlite3_step(st) == SQLITE_ROW && n < 8) {
        snprintf(names[n], 32, "%s", (const char *)sqlite3_column_text(st, 0));
        values[n] = sqlite3_column_double(st, 1);
        null_run[n] = sqlite3_column_int(st, 2);
        if (!n) *details = strdup((const char *)sqlite3_column_text(st, 3));
        n++;
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    return n;
}

static void test_metrics_db_gives_clip_score_fid_prdc_and_stores_them(void **state) {
    (void)state;
    char args[4096];
    snprintf(args, sizeof args, "--db %s --real %s --inception %s --clip %s/model.safetensors", jobs_db, ref_npz,
             inception_w, clip_dir);
    json_t *j = metrics_json("", args, tu_tmp("db.json"));
    double want = json_number_value(json_object_get(clip_json, "clip_score_torchmetrics_fp64"));
    double clip = jnum(j, "clip_score");
    if (fabs(clip - want) > TOL_CLIP_SCORE) fail_msg("CLIP score %.10g, torchmetrics gives %.10g", clip, want);
    assert_int_equal((int)jnum(j, "n_real"), 8);
    assert_int_equal((int)jnum(j, "n_fake"), 4);
    assert_int_equal((int)jnum(j, "k"), 3);
    static const char *keys[] = {"fid", "precision", "recall", "density", "coverage", "clip_score"};
    /* one row per metric for no run (an evaluation is not a render run), with the details */
    char names[8][32], *details;
    double values[8];
    int null_run[8];
    int n = metric_rows(jobs_db, names, values, null_run, &details);
    assert_true(n >= 6);
    for (int q = 0; q < 6; q++) {
        int row = 5 - q; /* stored in key order, read newest first */
        assert_string_equal(names[row], keys[q]);
        assert_true(values[row] == jnum(j, keys[q]));
        assert_true(null_run[row]);
    }
    json_t *d = json_loads(details, 0, NULL);
    assert_non_null(d);
    assert_int_equal(json_integer_value(json_object_get(d, "n_fake")), 4);
    assert_int_equal(json_integer_value(json_object_get(d, "k")), 3);
    assert_int_equal(json_array_size(json_object_get(d, "render_runs")), 1);
    json_decref(d);
    free(details);

    /* the same images as statistics from `sdrender stats` give the same bits */
    char cmd[8192];
    const char *dir = tu_tmp("out"), *fake_npz = tu_tmp("fake4.npz");
    snprintf(cmd, sizeof cmd, "%s stats -q --images %s -o %s --inception %s", tu_bin(), dir, fake_npz, inception_w);
    free(sh_ok(cmd));
    snprintf(args, sizeof args, "--real %s --fake %s", ref_npz, fake_npz);
    json_t *j2 = metrics_json("", args, tu_tmp("npz4.json"));
    for (int q = 0; q < 5; q++) assert_true(jnum(j2, keys[q]) == jnum(j, keys[q]));
    json_decref(j);
    json_decref(j2);
}

static void test_metrics_clip_from_pth_weights_and_explicit_tokenizer_gives_the_same_score(void **state) {
    (void)state;
    char cmd[8192], src[PATH_MAX], tok[PATH_MAX];
    const char *dir = tu_tmp("clip_pth");
    abs_testdata(src, "checkpoints/clip_tiny_zip.pth");
    abs_testdata(tok, "models/tiny-sd15/tokenizer");
    snprintf(cmd, sizeof cmd, "mkdir -p %s && ln -sf %s %s/pytorch_model.bin && cp %s/config.json %s/", dir, src, dir,
             clip_dir, dir);
    free(sh_ok(cmd));
    char args[4096];
    snprintf(args, sizeof args, "--db %s --clip %s/pytorch_model.bin --clip-tokenizer %s", jobs_db, dir, tok);
    json_t *j = metrics_json("", args, tu_tmp("clip_pth.json"));
    double want = json_number_value(json_object_get(clip_json, "clip_score_torchmetrics_fp64"));
    if (fabs(jnum(j, "clip_score") - want) > TOL_CLIP_SCORE)
        fail_msg("CLIP score %.10g, torchmetrics gives %.10g", jnum(j, "clip_score"), want);
    assert_true(json_is_null(json_object_get(j, "fid")));
    assert_true(json_is_null(json_object_get(j, "n_real")));
    json_decref(j);
}

/* ------------------------------------------------------------ MPI */

static void expect_same_file(const char *a, const char *b) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cmp %s %s", a, b);
    free(sh_ok(cmd));
}

static void test_metrics_three_ranks_write_the_same_json_as_one(void **state) {
    (void)state;
    char args[4096];
    /* images on both sides, CLIP, batches of 2: 4 + 2 batches spread over 3 ranks */
    snprintf(args, sizeof args, "--db %s --real %s --inception %s --clip %s/model.safetensors --batch 2", jobs_db, imgs8,
             inception_w, clip_dir);
    json_decref(metrics_json("", args, tu_tmp("r1.json")));
    json_decref(metrics_json(MPIRUN " -np 3", args, tu_tmp("r3.json")));
    expect_same_file(tu_tmp("r1.json"), tu_tmp("r3.json"));
    /* 500 x 500 features: prdc rows split in 256-row blocks over the ranks */
    st_file g;
    tu_open(&g, "metrics/prdc.safetensors");
    const char *real = tu_tmp("mpi_real.npz"), *fake = tu_tmp("mpi_fake.npz");
    size_t n;
    float *x = tu_f32(&g, "a_gaussian.real", &n);
    write_stats_npz(real, x, 500, 64, 1);
    free(x);
    x = tu_f32(&g, "a_gaussian.fake", &n);
    write_stats_npz(fake, x, 500, 64, 1);
    free(x);
    st_close(&g);
    snprintf(args, sizeof args, "--real %s --fake %s --k 3", real, fake);
    json_decref(metrics_json("", args, tu_tmp("p1.json")));
    json_t *j = metrics_json(MPIRUN " -np 3", args, tu_tmp("p3.json"));
    expect_same_file(tu_tmp("p1.json"), tu_tmp("p3.json"));
    assert_true(fabs(jnum(j, "precision") - 0.418) <= TOL_PRDC && fabs(jnum(j, "coverage") - 0.59) <= TOL_PRDC);
    json_decref(j);
}

/* ------------------------------------------------------------ bad inputs */

/* Runs a command that must fail with `code`, printing exactly one "sdrender: " line that contains `want`. */
static void expect_failure(const char *cmd, int code, const char *want) {
    char *out;
    int rc = tu_sh(&out, "%s 2>&1", cmd);
    int lines = 0;
    const char *line = NULL;
    for (const char *p = out; (p = strstr(p, "sdrender: ")); p++)
        if (p == out || p[-1] == '\n') {
            lines++;
            line = p;
        }
    if (rc != code || lines != 1 || !strstr(line, want))
        fail_msg("%s\nexpected exit %d and one line with '%s'; got exit %d:\n%s", cmd, code, want, rc, out);
    free(out);
}

static void test_bad_inputs_fail_with_one_clear_line(void **state) {
    (void)state;
    char cmd[8192], p1[PATH_MAX + 64], p2[PATH_MAX + 64];
    const char *bin = tu_bin(), *t = tu_tmpdir();
    /* folders: empty, and with a file that is not a PNG */
    snprintf(cmd, sizeof cmd, "mkdir -p %s/empty %s/badpng && cp %s/img6_8x8.png %s/badpng/a.png && "
             "echo 'not a png' > %s/badpng/b.png", t, t, imgs8, t, t);
    free(sh_ok(cmd));
    snprintf(cmd, sizeof cmd, "%s stats -q --images %s/empty -o %s/x.npz --inception %s", bin, t, t, inception_w);
    expect_failure(cmd, 2, "no .png files");
    snprintf(cmd, sizeof cmd, "%s stats -q --images %s/badpng -o %s/x.npz --inception %s", bin, t, t, inception_w);
    expect_failure(cmd, 2, "badpng/b.png: not a PNG");
    /* the bad file on the last rank: still one line, from rank 0 */
    snprintf(cmd, sizeof cmd, MPIRUN " -np 3 %s stats -q --batch 1 --images %s/badpng -o %s/x.npz --inception %s", bin,
             t, t, inception_w);
    expect_failure(cmd, 2, "badpng/b.png: not a PNG");
    /* weights: missing, a .pth that is not PyTorch, a truncated safetensors */
    snprintf(cmd, sizeof cmd, "%s stats -q --images %s -o %s/x.npz --inception %s/none.pth", bin, imgs8, t, t);
    expect_failure(cmd, 2, "none.pth: no such file");
    snprintf(p1, sizeof p1, "%s/bad.pth", t);
    write_text(p1, "this is not a pickle");
    snprintf(cmd, sizeof cmd, "%s stats -q --images %s -o %s/x.npz --inception %s", bin, imgs8, t, p1);
    expect_failure(cmd, 2, "bad.pth");
    snprintf(cmd, sizeof cmd, "head -c 5000 %s > %s/cut.safetensors", inception_w, t);
    free(sh_ok(cmd));
    snprintf(cmd, sizeof cmd, "%s stats -q --images %s -o %s/x.npz --inception %s/cut.safetensors", bin, imgs8, t, t);
    expect_failure(cmd, 2, "cut.safetensors");
    /* .npz: not a zip; no mu/sigma; 64-d statistics against 2048-d Inception features */
    snprintf(p1, sizeof p1, "%s/bad.npz", t);
    write_text(p1, "PK but not really");
    snprintf(cmd, sizeof cmd, "%s metrics -q --real %s --fake %s", bin, p1, ref_npz);
    expect_failure(cmd, 2, "bad.npz");
    snprintf(p2, sizeof p2, "%s/features_only.npz", t);
    float f[4 * 3] = {0};
    sd_tensor ft = {.name = "features", .dtype = SD_F32, .ndim = 2, .shape = {4, 3}, .data = f, .nbytes = sizeof f};
    sd_error err = {0};
    if (sd_npz_write(p2, &ft, 1, &err) < 0) fail_msg("%s", err.msg);
    snprintf(cmd, sizeof cmd, "%s metrics -q --real %s --fake %s", bin, ref_npz, p2);
    expect_failure(cmd, 2, "'mu' and 'sigma'");
    write_stats_npz(tu_tmp("three_d.npz"), f, 4, 3, 1);
    snprintf(cmd, sizeof cmd, "%s metrics -q --real %s --fake %s --inception %s", bin, tu_tmp("three_d.npz"), imgs8,
             inception_w);
    expect_failure(cmd, 2, "dimension mismatch");
    /* what needs what */
    snprintf(cmd, sizeof cmd, "%s metrics -q --real %s --fake %s", bin, imgs8, imgs8);
    expect_failure(cmd, 2, "--inception is required");
    snprintf(cmd, sizeof cmd, "%s metrics -q --fake %s", bin, imgs8);
    expect_failure(cmd, 2, "--fake needs --real");
    snprintf(cmd, sizeof cmd, "%s metrics -q --real %s --fake %s --clip %s/model.safetensors", bin, ref_npz, ref_npz,
             clip_dir);
    expect_failure(cmd, 2, "--clip needs --db");
    /* CLIP weights without config.json: the head count cannot be known */
    snprintf(cmd, sizeof cmd, "mkdir -p %s/nocfg && ln -sf %s/model.safetensors %s/nocfg/", t, clip_dir, t);
    free(sh_ok(cmd));
    snprintf(cmd, sizeof cmd, "%s metrics -q --db %s --clip %s/nocfg/model.safetensors", bin, jobs_db, t);
    expect_failure(cmd, 2, "config.json");
    /* a database with nothing done */
    jobdb *db;
    jobdb_open_options oo = {.create = 1};
    snprintf(p1, sizeof p1, "%s/empty.db", t);
    if (jobdb_open(&db, p1, &oo, &err) < 0) fail_msg("%s", err.msg);
    jobdb_close(db);
    snprintf(cmd, sizeof cmd, "%s metrics -q --db %s --clip %s/model.safetensors", bin, p1, clip_dir);
    expect_failure(cmd, 2, "no done jobs");
}

int main(void) {
    tu_asan_full_stacks_for_children();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_writes_golden_pool3_features_and_their_exact_mu_sigma),
        cmocka_unit_test(test_stats_under_three_ranks_writes_bit_identical_statistics),
        cmocka_unit_test(test_stats_reads_inception_from_pytorch_pth_in_f32),
        cmocka_unit_test(test_metrics_from_npz_features_reproduce_prdc_goldens),
        cmocka_unit_test(test_metrics_fid_from_mu_sigma_npz_matches_pytorch_fid_and_leaves_prdc_null),
        cmocka_unit_test(test_metrics_db_gives_clip_score_fid_prdc_and_stores_them),
        cmocka_unit_test(test_metrics_clip_from_pth_weights_and_explicit_tokenizer_gives_the_same_score),
        cmocka_unit_test(test_metrics_three_ranks_write_the_same_json_as_one),
        cmocka_unit_test(test_bad_inputs_fail_with_one_clear_line),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
