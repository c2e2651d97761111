/*
 * Tests for the networks of the extension set (testdata ext/, README sections 2-4) against their
 * golden tensors and debug intermediates: the VAEs with 3 and 5 levels (f = 4 with 4 latent channels,
 * f = 16 with 16), the pixel-space DDPM UNet2DModel, and the x4 upscaler's U-Net (7 input channels,
 * noise-level class embedding, only-cross-attention blocks). Tolerances: ext README section 6.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "unet.h"
#include "vae.h"
#include "weights.h"

/* The weights of ext/models/<model>/<component>, its config path and ext/golden/<golden>.safetensors. */
static void ext_files_open(tu_net_files *f, const char *model, const char *component, const char *golden) {
    char m[128], g[128];
    snprintf(m, sizeof m, "../ext/models/%s", model);
    snprintf(g, sizeof g, "../ext/golden/%s", golden);
    tu_net_files_open(f, m, component, g);
}

/* ---- VAE f = 4 / f = 16 ---- */

typedef struct probe_ctx {
    const st_file *golden;
    const char *debug_case; /* "decode_16x16": compares with debug.<case>.<name> */
    double rtol;
    int probed;
} probe_ctx;

static void compare_probe(void *user, const char *name, const float *x, int ndim, const int64_t *shape) {
    probe_ctx *p = user;
    char full[160];
    snprintf(full, sizeof full, "debug.%s.%s", p->debug_case, name);
    p->probed += tu_expect_golden(p->golden, full, x, ndim, shape, 0, p->rtol, 1);
}

/* Decodes z_<hw> and encodes image_<HW> of one VAE golden; f: the factor, C: latent channels. */
static void check_vae(const char *model, const char *golden, int f, int C, const char *z0, const char *z1,
                      const char *i0, const char *i1, double dec_tol, double enc_tol, int debug_decode) {
    tu_net_files nf;
    ext_files_open(&nf, model, "vae", golden);
    vae_config cfg;
    vae_model m;
    sd_error err = {0};
    if (vae_config_load(&cfg, nf.config, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(vae_scale_factor(&cfg), f);
    assert_int_equal(cfg.latent_channels, C);
    if (vae_load(&m, &cfg, &nf.w, &err) < 0) fail_msg("%s", err.msg);
    const char *zs[2] = {z0, z1}, *is[2] = {i0, i1};
    for (int k = 0; k < 2; k++) {
        char name[64], dbg[64];
        const sd_tensor *zt = tu_tensor(&nf.golden, zs[k]);
        int h = (int)zt->shape[2], w = (int)zt->shape[3];
        assert_int_equal(zt->shape[1], C);
        size_t nz, nw;
        float *z = tu_f32(&nf.golden, zs[k], &nz);
        snprintf(name, sizeof name, "decode_%s", zs[k] + 2);
        float *want = tu_f32(&nf.golden, name, &nw);
        assert_int_equal(nw, (size_t)3 * h * f * w * f);
        float *img = malloc(nw * sizeof(float));
        snprintf(dbg, sizeof dbg, "decode_%s", zs[k] + 2);
        probe_ctx pc = {&nf.golden, dbg, 1e-5, 0};
        sd_probe probe = {compare_probe, &pc};
        m.probe = k == 0 ? &probe : NULL;
        if (vae_decode(&m, z, 1, h, w, img, &err) < 0) fail_msg("%s: %s", name, err.msg);
        tu_expect_close(name, img, want, nw, dec_tol);
        if (k == 0) assert_int_equal(pc.probed, debug_decode);
        free(z), free(want), free(img);

        /* encode: posterior mean and clamped log-variance at H/f x W/f */
        const sd_tensor *it = tu_tensor(&nf.golden, is[k]);
        int H = (int)it->shape[2], W = (int)it->shape[3], lh, lw;
        vae_latent_size(&cfg, H, W, &lh, &lw);
        assert_int_equal(lh, H / f);
        assert_int_equal(lw, W / f);
        size_t ni, nm;
        float *im = tu_f32(&nf.golden, is[k], &ni);
        float *mean = malloc((size_t)C * lh * lw * sizeof(float)), *logvar = malloc((size_t)C * lh * lw * sizeof(float));
        snprintf(dbg, sizeof dbg, "encode_%s", is[k] + 6);
        probe_ctx pe = {&nf.golden, dbg, 1e-5, 0};
        sd_probe eprobe = {compare_probe, &pe};
        m.probe = &eprobe;
        if (vae_encode(&m, im, 1, H, W, mean, logvar, &err) < 0) fail_msg("%s: %s", is[k], err.msg);
        m.probe = NULL;
        snprintf(name, sizeof name, "encode_%s_mean", is[k] + 6);
        float *wm = tu_f32(&nf.golden, name, &nm);
        assert_int_equal(nm, (size_t)C * lh * lw);
        tu_expect_close(name, mean, wm, nm, enc_tol);
        snprintf(name, sizeof name, "encode_%s_logvar", is[k] + 6);
        float *wl = tu_f32(&nf.golden, name, &nm);
        tu_expect_close(name, logvar, wl, nm, enc_tol);
        free(im), free(mean), free(logvar), free(wm), free(wl);
    }
    vae_free(&m);
    tu_net_files_close(&nf);
}

static void test_vae_f4_decodes_and_encodes_like_diffusers(void **state) {
    (void)state;
    check_vae("tiny-ldm-f4", "vae_f4", 4, 4, "z_16x16", "z_16x24", "image_64x64", "image_64x96", 5e-5, 4e-4, 3);
}

static void test_vae_f16_with_16_latent_channels_decodes_and_encodes_like_diffusers(void **state) {
    (void)state;
    check_vae("tiny-ldm-f16", "vae_f16", 16, 16, "z_8x8", "z_4x6", "image_128x128", "image_64x96", 1e-4, 7e-4, 4);
}

/* ---- U-Nets ---- */

typedef struct unet_case {
    const char *x, *out;
    float t0, t1;
    int label0, label1;
} unet_case;

/* Runs golden input x (timesteps t0, t1; class labels when the model has them) and compares with out. */
static void run_unet_case(unet_model *m, const st_file *g, const unet_case *c, int labels, double tol) {
    const sd_tensor *xt = tu_tensor(g, c->x);
    int B = (int)xt->shape[0], H = (int)xt->shape[2], W = (int)xt->shape[3];
    size_t nx, nw, nc = 0;
    float *x = tu_f32(g, c->x, &nx), *want = tu_f32(g, c->out, &nw);
    float *ctx = st_find(g, "context") ? tu_f32(g, "context", &nc) : NULL;
    float *out = malloc(nw * sizeof(float));
    float t[2] = {c->t0, c->t1};
    int lab[2] = {c->label0, c->label1};
    sd_error err = {0};
    if (unet_forward_labels(m, x, t, labels ? lab : NULL, ctx, ctx ? 77 : 0, B, H, W, out, &err) < 0)
        fail_msg("%s: %s", c->out, err.msg);
    tu_expect_close(c->out, out, want, nw, tol);
    free(x), free(ctx), free(want), free(out);
}

static void test_unet_ddpm_matches_diffusers_unet2dmodel(void **state) {
    (void)state;
    tu_net_files nf;
    ext_files_open(&nf, "tiny-ddpm", "unet", "unet_ddpm");
    unet_config cfg;
    unet_model m;
    sd_error err = {0};
    if (unet_config_load(&cfg, nf.config, &err) < 0) fail_msg("%s", err.msg);
    assert_true(cfg.unet2d);
    assert_int_equal(cfg.downsample_padding, 0);
    assert_int_equal(cfg.norm_groups, 8);
    assert_int_equal(cfg.down_attn[1], UNET_ATTN_SELF);
    assert_int_equal(cfg.mid_attn, UNET_ATTN_SELF);
    if (unet_load(&m, &cfg, &nf.w, &err) < 0) fail_msg("%s", err.msg);
    static const unet_case cases[] = {
        {"x_32x32", "out_32x32_t999_int64", 999, 999, 0, 0},
        {"x_32x32", "out_32x32_t500_int64", 500, 500, 0, 0},
        {"x_32x32", "out_32x32_t0_int64", 0, 0, 0, 0},
        {"x_32x32", "out_32x32_tbatch_999_0_int64", 999, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_unet_case(&m, &nf.golden, &cases[i], 0, 2e-5);
    probe_ctx pc = {&nf.golden, "out_16x24_t250_int64", 1e-5, 0};
    sd_probe probe = {compare_probe, &pc};
    m.probe = &probe;
    unet_case nonsquare = {"x_16x24", "out_16x24_t250_int64", 250, 250, 0, 0};
    run_unet_case(&m, &nf.golden, &nonsquare, 0, 2e-5);
    assert_int_equal(pc.probed, 9); /* time_proj .. conv_norm_out: every block-level intermediate */
    m.probe = NULL;
    /* sizes the stride-2 convs without padding cannot halve are refused, not guessed */
    float x[3 * 6 * 6] = {0}, out[3 * 6 * 6], t = 1;
    assert_int_equal(unet_forward(&m, x, &t, NULL, 0, 1, 6, 6, out, &err), 0);
    assert_int_equal(unet_forward(&m, x, &t, NULL, 0, 1, 5, 6, out, &err), SD_EINPUT);
    unet_free(&m);
    tu_net_files_close(&nf);
}

static void test_unet_x4_upscaler_matches_diffusers_with_noise_level_labels(void **state) {
    (void)state;
    tu_net_files nf;
    ext_files_open(&nf, "tiny-sd-x4-upscaler", "unet", "unet_x4_upscaler");
    unet_config cfg;
    unet_model m;
    sd_error err = {0};
    if (unet_config_load(&cfg, nf.config, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(cfg.in_channels, 7);
    assert_int_equal(cfg.num_class_embeds, 1000);
    assert_int_equal(cfg.only_cross[1], 1);
    assert_int_equal(cfg.only_cross[3], 0);
    if (unet_load(&m, &cfg, &nf.w, &err) < 0) fail_msg("%s", err.msg);
    static const unet_case cases[] = {
        {"x_32x32", "out_32x32_t901_nl20_int64", 901, 901, 20, 20},
        {"x_32x32", "out_32x32_t1_nl20_int64", 1, 1, 20, 20},
        {"x_32x32", "out_32x32_t501_nl0_350_int64", 501, 501, 0, 350},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_unet_case(&m, &nf.golden, &cases[i], 1, 2e-5);
    probe_ctx pc = {&nf.golden, "out_16x24_t501_nl20_int64", 1e-5, 0};
    sd_probe probe = {compare_probe, &pc};
    m.probe = &probe;
    unet_case nonsquare = {"x_16x24", "out_16x24_t501_nl20_int64", 501, 501, 20, 20};
    run_unet_case(&m, &nf.golden, &nonsquare, 1, 2e-5);
    assert_int_equal(pc.probed, 14); /* incl. class_embedding */
    m.probe = NULL;
    /* labels are required and range-checked */
    size_t nx;
    float *x = tu_f32(&nf.golden, "x_16x24", &nx), *ctx = tu_f32(&nf.golden, "context", NULL);
    float *out = malloc(nx * sizeof(float)), t[2] = {1, 1};
    int bad[2] = {20, 1000};
    assert_int_equal(unet_forward(&m, x, t, ctx, 77, 2, 16, 24, out, &err), SD_EINPUT);
    assert_int_equal(unet_forward_labels(&m, x, t, bad, ctx, 77, 2, 16, 24, out, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "1000"));
    free(x), free(ctx), free(out);
    unet_free(&m);
    tu_net_files_close(&nf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vae_f4_decodes_and_encodes_like_diffusers),
        cmocka_unit_test(test_vae_f16_with_16_latent_channels_decodes_and_encodes_like_diffusers),
        cmocka_unit_test(test_unet_ddpm_matches_diffusers_unet2dmodel),
        cmocka_unit_test(test_unet_x4_upscaler_matches_diffusers_with_noise_level_labels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
