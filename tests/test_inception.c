/* Tests for core/inception: pytorch-fid's FID Inception against the reference features and activations. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inception.h"
#include "weights.h"

#define TOL 5e-5 /* metrics/README.md section 2: pool3, intermediates and resized inputs */

static const char *const images[8] = {"img0_64x64", "img1_32x48", "img2_299x299", "img3_17x23",
                                      "img4_150x100", "img5_400x320", "img6_8x8", "img7_300x298"};

/* Reads an 8-bit RGB PNG of the test data (caller frees); the other engineer's pngio is not here yet. */
typedef struct fixture {
    st_file weights_file, inter;
    sd_weights w;
    inception_model m;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    sd_error err = {0};
    tu_open(&f->weights_file, "metrics/inception_random_fp16.safetensors");
    tu_open(&f->inter, "metrics/inception_intermediates.safetensors");
    if (sd_weights_from_st(&f->w, &f->weights_file, "", "inception", &err) < 0) fail_msg("%s", err.msg);
    if (inception_load(&f->m, &f->w, &err) < 0) fail_msg("%s", err.msg);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    inception_free(&f->m);
    sd_weights_free(&f->w);
    st_close(&f->weights_file);
    st_close(&f->inter);
    free(f);
    return 0;
}

static void test_inception_resizes_like_torch_bilinear_without_antialias(void **state) {
    fixture *f = *state;
    sd_error err = {0};
    size_t n_in = (size_t)3 * 299 * 299, n;
    float *x = malloc(n_in * sizeof(float));
    for (int i = 0; i < 3; i++) {
        const char *name = i == 0 ? "img1_32x48" : i == 1 ? "img5_400x320" : "img2_299x299";
        char rel[128];
        snprintf(rel, sizeof rel, "metrics/images/%s.png", name);
        int h, w;
        uint8_t *rgb = tu_read_png_rgb(rel, &h, &w);
        assert_int_equal(inception_preprocess(rgb, h, w, x, i == 1 ? &f->m.ops : NULL, &err), 0);
        if (i < 2) {
            snprintf(rel, sizeof rel, "input.%s", name);
            float *want = tu_f32(&f->inter, rel, &n);
            assert_int_equal(n, n_in);
            tu_expect_close(rel, x, want, n, TOL);
            free(want);
        } else { /* 299x299 passes through: exactly 2 * png/255 - 1 */
            for (int c = 0; c < 3; c++)
                for (int p = 0; p < 299 * 299; p++)
                    assert_true(x[c * 299 * 299 + p] == 2.0f * ((float)rgb[3 * p + c] / 255.0f) - 1.0f);
        }
        free(rgb);
    }
    assert_int_equal(inception_preprocess(NULL, 0, 5, x, NULL, &err), SD_EINPUT);
    free(x);
}

/* Probe state: compares image 2 of the first pass with the stored activations of img2_299x299. */
typedef struct probe_ctx {
    fixture *f;
    int pass, checked;
} probe_ctx;

static void compare_probe(void *user, const char *name, const float *x, int ndim, const int64_t *shape) {
    probe_ctx *p = user;
    assert_int_equal(ndim, 4);
    if (!strcmp(name, "input")) p->pass++;
    if (p->pass != 1 || !strcmp(name, "input")) return;
    char key[96];
    snprintf(key, sizeof key, "%s.img2_299x299", name);
    size_t n, per = (size_t)(shape[1] * shape[2] * shape[3]);
    float *want = tu_f32(&p->f->inter, key, &n);
    assert_int_equal(n, per);
    tu_expect_close(key, x + 2 * per, want, n, TOL);
    free(want);
    p->checked++;
}

static void test_inception_pool3_and_intermediates_match_pytorch_fid_for_all_images(void **state) {
    fixture *f = *state;
    sd_error err = {0};
    st_file feats;
    tu_open(&feats, "metrics/inception_features.safetensors");
    const uint8_t *rgb[8];
    int h[8], w[8];
    for (int i = 0; i < 8; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "metrics/images/%s.png", images[i]);
        rgb[i] = tu_read_png_rgb(rel, &h[i], &w[i]);
    }
    /* two passes (5 + 3 images) of mixed sizes; image 2 of the first pass is the 299x299 one */
    probe_ctx pc = {f, 0, 0};
    sd_probe probe = {compare_probe, &pc};
    f->m.probe = &probe;
    f->m.max_batch = 5;
    float *out = malloc((size_t)8 * INCEPTION_DIM * sizeof(float));
    if (inception_features_batch(&f->m, rgb, h, w, 8, out, &err) < 0) fail_msg("%s", err.msg);
    f->m.probe = NULL;
    assert_int_equal(pc.pass, 2);
    assert_int_equal(pc.checked, 5); /* conv2d_1a_3x3, block0/1/2, mixed_7c */
    for (int i = 0; i < 8; i++) {
        char key[64];
        snprintf(key, sizeof key, "pool3.%s", images[i]);
        size_t n;
        float *want = tu_f32(&feats, key, &n);
        assert_int_equal(n, INCEPTION_DIM);
        tu_expect_close(key, out + (size_t)i * INCEPTION_DIM, want, n, TOL);
        free(want);
    }
    /* the one-image call agrees with the batch (the smallest image: cheapest resize) */
    float one[INCEPTION_DIM];
    if (inception_features(&f->m, rgb[6], h[6], w[6], one, &err) < 0) fail_msg("%s", err.msg);
    tu_expect_close("single vs batch", one, out + 6 * INCEPTION_DIM, INCEPTION_DIM, 1e-6);
    for (int i = 0; i < 8; i++) free((void *)rgb[i]);
    free(out);
    st_close(&feats);
}

/* A table with every tensor of the file, F32 copies of a few, and unrelated fc / counter tensors. */
static void test_inception_accepts_f32_weights_and_ignores_fc_and_counters(void **state) {
    fixture *f = *state;
    sd_error err = {0};
    const st_file *src = &f->weights_file;
    int n = src->n;
    const char **names = calloc((size_t)n + 2, sizeof *names);
    const sd_tensor **ts = calloc((size_t)n + 2, sizeof *ts);
    sd_tensor *copies = calloc((size_t)n, sizeof *copies);
    float **bufs = calloc((size_t)n, sizeof *bufs);
    for (int i = 0; i < n; i++) {
        names[i] = src->tensors[i].name;
        ts[i] = &src->tensors[i];
        if (strncmp(names[i], "Mixed_7c", 8) && strncmp(names[i], "Conv2d_1a", 9)) continue;
        bufs[i] = tu_f32(src, names[i], NULL); /* exact: the values are float16 */
        copies[i] = src->tensors[i];
        copies[i].dtype = SD_F32;
        copies[i].data = bufs[i];
        copies[i].nbytes = (size_t)sd_tensor_numel(&copies[i]) * 4;
        ts[i] = &copies[i];
    }
    static float fc_w[4];
    static int64_t counter = 7;
    sd_tensor fc = {.name = "fc.weight", .dtype = SD_F32, .ndim = 2, .shape = {2, 2}, .data = fc_w, .nbytes = 16};
    sd_tensor nbt = {.name = "Conv2d_1a_3x3.bn.num_batches_tracked", .dtype = SD_I64, .ndim = 0,
                     .data = &counter, .nbytes = 8};
    names[n] = fc.name, ts[n] = &fc;
    names[n + 1] = nbt.name, ts[n + 1] = &nbt;
    sd_weights w;
    if (sd_weights_from_list(&w, names, ts, n + 2, "inception (mixed)", &err) < 0) fail_msg("%s", err.msg);
    inception_model m;
    if (inception_load(&m, &w, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(m.n_params, f->m.n_params);
    assert_memory_equal(m.params, f->m.params, m.n_params * sizeof(float)); /* same folded weights, bit for bit */
    inception_free(&m);
    sd_weights_free(&w);
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs), free(copies), free(ts), free(names);
}

static void test_inception_load_names_missing_or_misshapen_tensor(void **state) {
    fixture *f = *state;
    sd_error err = {0};
    const st_file *src = &f->weights_file;
    int n = src->n;
    const char **names = calloc((size_t)n, sizeof *names);
    const sd_tensor **ts = calloc((size_t)n, sizeof *ts);
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!strcmp(src->tensors[i].name, "Mixed_6c.branch7x7dbl_3.bn.running_var")) continue;
        names[k] = src->tensors[i].name;
        ts[k++] = &src->tensors[i];
    }
    sd_weights w;
    inception_model m;
    if (sd_weights_from_list(&w, names, ts, k, "inception", &err) < 0) fail_msg("%s", err.msg);
    assert_true(inception_load(&m, &w, &err) < 0);
    assert_non_null(strstr(err.msg, "Mixed_6c.branch7x7dbl_3.bn.running_var"));
    assert_null(m.params);
    sd_weights_free(&w);
    /* a transposed 1x7 kernel is refused by name */
    sd_tensor bad = *st_find(src, "Mixed_6b.branch7x7_2.conv.weight"); /* [128, 128, 1, 7] */
    bad.shape[2] = 7, bad.shape[3] = 1;
    for (int i = 0; i < n; i++) {
        names[i] = src->tensors[i].name;
        ts[i] = strcmp(names[i], bad.name) ? &src->tensors[i] : &bad;
    }
    if (sd_weights_from_list(&w, names, ts, n, "inception", &err) < 0) fail_msg("%s", err.msg);
    assert_true(inception_load(&m, &w, &err) < 0);
    assert_non_null(strstr(err.msg, "Mixed_6b.branch7x7_2.conv.weight"));
    sd_weights_free(&w);
    free(names), free(ts);
}

static void test_inception_flops_count_the_convolutions(void **state) {
    fixture *f = *state;
    double g = inception_flops(&f->m, 1) / 1e9;
    /* 5.71 G multiply-adds x 2 in the 94 convolutions at 299x299 */
    assert_true(g > 11.0 && g < 12.0);
    assert_true(inception_flops(&f->m, 3) == 3 * inception_flops(&f->m, 1));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inception_resizes_like_torch_bilinear_without_antialias),
        cmocka_unit_test(test_inception_pool3_and_intermediates_match_pytorch_fid_for_all_images),
        cmocka_unit_test(test_inception_accepts_f32_weights_and_ignores_fc_and_counters),
        cmocka_unit_test(test_inception_load_names_missing_or_misshapen_tensor),
        cmocka_unit_test(test_inception_flops_count_the_convolutions),
    };
    return cmocka_run_group_tests_name("inception", tests, setup, teardown);
}
