/* Tests for core/ops_cnn: pooling, ReLU, batch-norm folding and bilinear resize against plain loops. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "ops_cnn.h"


static float *rand_floats(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = (float)(tu_urand() * 4 - 2);
    return p;
}

/* Plain pooling over the padded image: taps outside it are skipped (max) or counted per count_include_pad (avg). */
static double pool_naive(const float *x, int H, int W, int oy, int ox, int k, int s, int pad, int is_max, int cip) {
    double acc = is_max ? -INFINITY : 0;
    int n_in = 0, n_all = 0;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            int y = oy * s - pad + i, xx = ox * s - pad + j;
            int inside_padded = y < H + pad && xx < W + pad; /* PyTorch clips the window to the padded image */
            if (inside_padded) n_all++;
            if (y < 0 || y >= H || xx < 0 || xx >= W) continue;
            n_in++;
            double v = x[(size_t)y * W + xx];
            acc = is_max ? (v > acc ? v : acc) : acc + v;
        }
    return is_max ? acc : acc / (cip ? n_all : n_in);
}

static void test_pools_match_naive_for_sizes_strides_and_padding(void **state) {
    (void)state;
    for (int rep = 0; rep < 40; rep++) {
        int B = tu_irand(1, 3), C = tu_irand(1, 5), H = tu_irand(3, 40), W = tu_irand(3, 40);
        int k = tu_irand(1, 3) * 2 - 1 + (rep % 7 == 0), s = tu_irand(1, 3), pad = tu_irand(0, k / 2);
        if (H < k) H = k; /* the window must fit the image */
        if (W < k) W = k;
        ops_set_threads(1 + rep % 2);
        int oh = ops_pool_out_size(H, k, s, pad), ow = ops_pool_out_size(W, k, s, pad);
        assert_true(oh > 0 && ow > 0);
        float *x = rand_floats((size_t)B * C * H * W);
        float *y = malloc((size_t)B * C * oh * ow * sizeof(float));
        for (int mode = 0; mode < 3; mode++) { /* max, avg without pad counts, avg with */
            if (mode == 0) ops_maxpool2d(y, x, B, C, H, W, k, s, pad);
            else ops_avgpool2d(y, x, B, C, H, W, k, s, pad, mode == 2);
            for (int p = 0; p < B * C; p++)
                for (int oy = 0; oy < oh; oy++)
                    for (int ox = 0; ox < ow; ox++) {
                        double want = pool_naive(x + (size_t)p * H * W, H, W, oy, ox, k, s, pad, mode == 0, mode == 2);
                        double got = y[((size_t)p * oh + oy) * ow + ox];
                        if (fabs(got - want) > 1e-6)
                            fail_msg("pool mode %d k%d s%d p%d %dx%d: at (%d, %d, %d) got %.9g want %.9g", mode, k, s,
                                     pad, H, W, p, oy, ox, got, want);
                    }
        }
        free(x), free(y);
    }
    /* pytorch-fid's sizes */
    assert_int_equal(ops_pool_out_size(147, 3, 2, 0), 73);
    assert_int_equal(ops_pool_out_size(71, 3, 2, 0), 35);
    assert_int_equal(ops_pool_out_size(17, 3, 2, 0), 8);
    assert_int_equal(ops_pool_out_size(2, 3, 1, 0), 0);
}

static void test_avgpool_divides_corners_by_in_image_taps_only(void **state) {
    (void)state;
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, y[9];
    ops_avgpool2d(y, x, 1, 1, 3, 3, 3, 1, 1, 0);
    assert_true(y[0] == (1 + 2 + 4 + 5) / 4.0f);       /* corner: 4 taps */
    assert_true(y[1] == (1 + 2 + 3 + 4 + 5 + 6) / 6.0f); /* edge: 6 taps */
    assert_true(y[4] == 5.0f);                         /* inside: 9 taps */
    ops_avgpool2d(y, x, 1, 1, 3, 3, 3, 1, 1, 1);
    assert_true(y[0] == (1 + 2 + 4 + 5) / 9.0f);
    /* max pool: padding never wins, even over negative values; NaN propagates */
    float neg[4] = {-5, -6, -7, NAN}, m[4];
    ops_maxpool2d(m, neg, 1, 1, 2, 2, 3, 1, 1);
    assert_true(isnan(m[0]));
    neg[3] = -8;
    ops_maxpool2d(m, neg, 1, 1, 2, 2, 3, 1, 1);
    assert_true(m[0] == -5.0f && m[3] == -5.0f);
}

static void test_mean_planes_relu_and_batchnorm_fold_match_naive(void **state) {
    (void)state;
    int planes = 37, HW = 64;
    float *x = rand_floats((size_t)planes * HW), out[37];
    ops_mean_planes(out, x, planes, HW);
    for (int p = 0; p < planes; p++) {
        double s = 0;
        for (int i = 0; i < HW; i++) s += x[p * HW + i];
        assert_true(fabs(out[p] - s / HW) < 1e-7);
    }
    ops_relu(x, (size_t)planes * HW);
    for (int i = 0; i < planes * HW; i++) assert_true(x[i] >= 0.0f);
    free(x);
    /* conv(x, fold(w)) + fold(b) == BN(conv(x, w)) on a 1x1 "conv" of 5 inputs */
    int O = 6, K = 5;
    float *w = rand_floats((size_t)O * K), *wf = malloc((size_t)O * K * sizeof(float)), bias[6];
    float *xin = rand_floats((size_t)K), g[6], be[6], mu[6], var[6];
    for (int o = 0; o < O; o++) g[o] = 0.5f + (float)tu_urand(), be[o] = (float)tu_urand() - 0.5f,
                                mu[o] = (float)tu_urand() - 0.5f, var[o] = 0.5f + (float)tu_urand();
    memcpy(wf, w, (size_t)O * K * sizeof(float));
    ops_fold_batchnorm(wf, bias, O, (size_t)K, g, be, mu, var, 1e-3);
    for (int o = 0; o < O; o++) {
        double conv = 0, folded = bias[o];
        for (int k = 0; k < K; k++) conv += (double)w[o * K + k] * xin[k], folded += (double)wf[o * K + k] * xin[k];
        double bn = (conv - mu[o]) / sqrt(var[o] + 1e-3) * g[o] + be[o];
        assert_true(fabs(folded - bn) < 1e-6);
    }
    free(w), free(wf), free(xin);
}

/* The bilinear formula of ops_cnn.h, all in double: differs from the kernel only by float rounding. */
static double bilinear_naive(const float *x, int H, int W, int oh, int ow, int oy, int ox) {
    double sy = H == oh ? oy : fmax((oy + 0.5) * H / oh - 0.5, 0), sx = W == ow ? ox : fmax((ox + 0.5) * W / ow - 0.5, 0);
    int y0 = (int)sy, x0 = (int)sx, y1 = y0 < H - 1 ? y0 + 1 : y0, x1 = x0 < W - 1 ? x0 + 1 : x0;
    double ly = sy - y0, lx = sx - x0;
    double top = x[y0 * W + x0] * (1 - lx) + x[y0 * W + x1] * lx;
    double bot = x[y1 * W + x0] * (1 - lx) + x[y1 * W + x1] * lx;
    return top * (1 - ly) + bot * ly;
}

static void test_bilinear_resize_matches_naive_up_down_and_identity(void **state) {
    (void)state;
    ops_ctx ctx;
    ops_ctx_init(&ctx, 1 << 20);
    sd_error err = {0};
    for (int rep = 0; rep < 20; rep++) {
        int B = tu_irand(1, 2), C = tu_irand(1, 3), H = tu_irand(1, 60), W = tu_irand(1, 60);
        int oh = rep % 5 == 0 ? H : tu_irand(1, 80), ow = rep % 5 == 0 ? W : tu_irand(1, 80);
        float *x = rand_floats((size_t)B * C * H * W), *y = malloc((size_t)B * C * oh * ow * sizeof(float));
        assert_int_equal(ops_resize_bilinear(y, x, B, C, H, W, oh, ow, &ctx, &err), 0);
        for (int p = 0; p < B * C; p++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    double want = bilinear_naive(x + (size_t)p * H * W, H, W, oh, ow, oy, ox);
                    double got = y[((size_t)p * oh + oy) * ow + ox];
                    if (fabs(got - want) > 2e-5) /* float32 scale: ~1e-7 relative of the coordinate */
                        fail_msg("resize %dx%d -> %dx%d at (%d, %d, %d): got %.9g want %.9g", H, W, oh, ow, p, oy,
                                 ox, got, want);
                }
        if (oh == H && ow == W) assert_memory_equal(y, x, (size_t)B * C * H * W * sizeof(float));
        assert_true(ctx.scratch.in_use == 0);
        free(x), free(y);
    }
    /* a 2x upscale of [0, 1]: edges clamp, inner pixels at 1/4 and 3/4 */
    float two[2] = {0, 1}, four[4];
    assert_int_equal(ops_resize_bilinear(four, two, 1, 1, 1, 2, 1, 4, &ctx, &err), 0);
    assert_true(four[0] == 0.0f && four[1] == 0.25f && four[2] == 0.75f && four[3] == 1.0f);
    ops_ctx_free(&ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pools_match_naive_for_sizes_strides_and_padding),
        cmocka_unit_test(test_avgpool_divides_corners_by_in_image_taps_only),
        cmocka_unit_test(test_mean_planes_relu_and_batchnorm_fold_match_naive),
        cmocka_unit_test(test_bilinear_resize_matches_naive_up_down_and_identity),
    };
    return cmocka_run_group_tests_name("ops_cnn", tests, NULL, NULL);
}
