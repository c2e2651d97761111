/*
 * Tests for the extension pipelines (testdata ext/, README sections 2-5) against the goldens' whole
 * trajectories: pixel-space DDPM with the ddpm sampler, the f = 4 LDM with Euler, the x4 upscaler, and
 * CUDA (Philox) noise as the start latent. Tolerances: ext README section 6.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "pipeline.h"
#include "settings.h"

/* A model of ext/models with its pipeline. */
typedef struct ext_pipe {
    sd_model m;
    sd_pipeline p;
} ext_pipe;

static void pipe_open(ext_pipe *e, const char *model) {
    char rel[128];
    sd_error err = {0};
    snprintf(rel, sizeof rel, "ext/models/%s", model);
    if (sd_model_open(&e->m, tu_path(rel), NULL, &err) < 0) fail_msg("%s", err.msg);
    if (sd_pipeline_load(&e->p, &e->m, &err) < 0) fail_msg("%s", err.msg);
}

static void pipe_close(ext_pipe *e) {
    sd_pipeline_free(&e->p);
    sd_model_close(&e->m);
}

/* Golden float tensor `name` against got, within atol + rtol * peak (of the reference). */
static void expect_tensor(const char *cname, const st_file *f, const char *name, const float *got, size_t n,
                          double atol, double rtol) {
    size_t nw;
    float *want = tu_f32(f, name, &nw);
    if (nw != n) fail_msg("%s %s: %zu values, expected %zu", cname, name, n, nw);
    char label[160];
    snprintf(label, sizeof label, "%s %s", cname, name);
    tu_expect_close(label, got, want, n, atol + rtol * tu_peak(want, n));
    free(want);
}

/* Largest difference of rgb from the golden image_u8. */
static int worst_pixel(const st_file *f, const uint8_t *rgb, size_t n) {
    const sd_tensor *u8 = tu_tensor(f, "image_u8");
    assert_int_equal((size_t)sd_tensor_numel(u8), n);
    const uint8_t *w8 = u8->data;
    int worst = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)rgb[i] - (int)w8[i]);
        if (d > worst) worst = d;
    }
    return worst;
}

/* The trace buffers one case fills. */
typedef struct case_trace {
    sd_pipeline_trace tr;
    float *init, *steps, *preds, *fin, *img, *unet0, *pe, *ne, *lrn, *lri;
    int32_t ids[77], nids[77];
    uint8_t *rgb;
} case_trace;

static void trace_alloc(case_trace *c, size_t n_lat, int n_steps, size_t n_img, size_t n_unet0, size_t n_lr) {
    memset(c, 0, sizeof *c);
    c->init = malloc(n_lat * sizeof(float));
    c->steps = malloc(n_lat * n_steps * sizeof(float));
    c->preds = malloc(n_lat * n_steps * sizeof(float));
    c->fin = malloc(n_lat * sizeof(float));
    c->img = malloc(n_img * sizeof(float));
    c->unet0 = malloc((n_unet0 ? n_unet0 : 1) * sizeof(float));
    c->pe = malloc(77 * 16 * sizeof(float));
    c->ne = malloc(77 * 16 * sizeof(float));
    c->lrn = malloc((n_lr ? n_lr : 1) * sizeof(float));
    c->lri = malloc((n_lr ? n_lr : 1) * sizeof(float));
    c->rgb = malloc(n_img);
    c->tr = (sd_pipeline_trace){.latents_init = c->init, .latents_steps = c->steps, .noise_pred_steps = c->preds,
                                .max_steps = n_steps, .latents_final = c->fin, .image = c->img,
                                .unet_input_step0 = c->unet0, .prompt_embeds = c->pe, .negative_embeds = c->ne,
                                .prompt_ids = c->ids, .negative_ids = c->nids, .low_res_noise = c->lrn,
                                .noisy_low_res_image = c->lri};
}

static void trace_free(case_trace *c) {
    free(c->init), free(c->steps), free(c->preds), free(c->fin), free(c->img), free(c->unet0);
    free(c->pe), free(c->ne), free(c->lrn), free(c->lri), free(c->rgb);
}

static void expect_ids(const char *cname, const st_file *f, const char *name, const int32_t *got) {
    const sd_tensor *t = tu_tensor(f, name);
    const int64_t *want = t->data;
    for (int i = 0; i < 77; i++)
        if (got[i] != want[i]) fail_msg("%s %s: id %d is %d, expected %lld", cname, name, i, got[i], (long long)want[i]);
}

/* DDPMPipeline, DDPMScheduler, 20 steps: the start noise exactly, every step's model output, sample
 * and the picture at 2e-5, all PNG pixels within 1. */
static void test_ddpm_pipeline_reproduces_diffusers_ddpm20(void **state) {
    (void)state;
    ext_pipe e;
    pipe_open(&e, "tiny-ddpm");
    assert_true(e.p.pixel);
    assert_int_equal(sd_pipeline_size_factor(&e.p), 2);
    st_file f;
    tu_open(&f, "ext/golden/pipeline_ddpm_ddpm20.safetensors");
    sd_settings s;
    sd_settings_default(&s);
    s.sampler = SD_SAMPLER_DDPM;
    s.steps = 20;
    s.seed = 42;
    s.width = s.height = 32;
    size_t n = 3 * 32 * 32;
    case_trace c;
    trace_alloc(&c, n, 20, n, 0, 0);
    c.tr.unet_input_step0 = NULL;
    double ts_got[32];
    c.tr.all_timesteps = ts_got;
    c.tr.max_timesteps = 32;
    sd_error err = {0};
    if (sd_pipeline_generate(&e.p, &s, c.rgb, NULL, NULL, &c.tr, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(c.tr.n_steps, 20);
    assert_int_equal(c.tr.n_all_timesteps, 20);
    expect_tensor("ddpm20", &f, "init_noise", c.init, n, 0, 0);
    expect_tensor("ddpm20", &f, "model_output_steps", c.preds, 20 * n, 2e-5, 0);
    expect_tensor("ddpm20", &f, "latents_steps", c.steps, 20 * n, 2e-5, 0);
    expect_tensor("ddpm20", &f, "latents_final", c.fin, n, 2e-5, 0);
    expect_tensor("ddpm20", &f, "image", c.img, n, 2e-5, 0);
    assert_true(worst_pixel(&f, c.rgb, n) <= 1);
    /* the timesteps: 950, 900, ..., 0 */
    const sd_tensor *ts = tu_tensor(&f, "timesteps");
    for (int i = 0; i < 20; i++) assert_true(ts_got[i] == (double)((const int64_t *)ts->data)[i]);
    trace_free(&c);

    /* a prompt, an init image and sigma samplers are refused for a pixel-space DDPM */
    uint8_t rgb[3 * 32 * 32];
    s.prompt = "a cat";
    assert_int_equal(sd_pipeline_generate(&e.p, &s, rgb, NULL, NULL, NULL, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "unconditional"));
    s.prompt = "";
    s.sampler = SD_SAMPLER_EULER;
    assert_int_equal(sd_pipeline_generate(&e.p, &s, rgb, NULL, NULL, NULL, &err), SD_EINPUT);
    s.sampler = SD_SAMPLER_DDPM;
    s.width = 33;
    assert_int_equal(sd_pipeline_generate(&e.p, &s, rgb, NULL, NULL, NULL, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "multiple of 2"));
    st_close(&f);
    pipe_close(&e);
}

/* DDIM from the DDPM config (set_alpha_to_one true by DDIM's default, clip_sample, steps_offset 0):
 * 10 steps 900 .. 0, the first steps tight (ext README 6: the ODE expands differences threefold per
 * step), the end within 10 x the measured fp32 noise. The golden's outputs are withheld when absent. */
static void test_ddim_from_a_ddpm_config_keeps_its_defaults(void **state) {
    (void)state;
    ext_pipe e;
    pipe_open(&e, "tiny-ddpm");
    sd_error err = {0};
    sampler_state *smp;
    assert_int_equal(sampler_create(&smp, SD_SAMPLER_DDIM, &e.m.sched, 10, 0, 0.0f, &err), 0);
    for (int i = 0; i < 10; i++) assert_true(sampler_timesteps(smp)[i] == 900 - 100 * i);
    sampler_free(smp);
    assert_int_equal(e.m.sched.steps_offset, 0);
    assert_int_equal(e.m.sched.set_alpha_to_one, -1);
    assert_true(e.m.sched.clip_sample);
    const char *rel = "ext/golden/pipeline_ddpm_ddim10.safetensors";
    if (sd_fs_is_file(tu_path(rel))) {
        st_file f;
        tu_open(&f, rel);
        sd_settings s;
        sd_settings_default(&s);
        s.sampler = SD_SAMPLER_DDIM;
        s.steps = 10;
        s.seed = 42;
        s.width = s.height = 32;
        size_t n = 3 * 32 * 32;
        case_trace c;
        trace_alloc(&c, n, 10, n, 0, 0);
        c.tr.unet_input_step0 = NULL;
        if (sd_pipeline_generate(&e.p, &s, c.rgb, NULL, NULL, &c.tr, &err) < 0) fail_msg("%s", err.msg);
        expect_tensor("ddim10", &f, "latents_final", c.fin, n, 1.5e-2, 0);
        expect_tensor("ddim10", &f, "image", c.img, n, 1e-2, 0);
        assert_true(worst_pixel(&f, c.rgb, n) <= 3);
        trace_free(&c);
        st_close(&f);
    }
    pipe_close(&e);
}

/* StableDiffusionPipeline on an LDM golden: Euler, 8 steps, CFG 6, seed 42, W x W (latent [C, W/f, W/f]). */
static void check_ldm_euler(const char *model, const char *golden, int W, int f, int C) {
    ext_pipe e;
    pipe_open(&e, model);
    assert_int_equal(sd_pipeline_size_factor(&e.p), f);
    st_file g;
    tu_open(&g, golden);
    sd_settings s;
    sd_settings_default(&s);
    s.prompt = "a photograph of an astronaut riding a horse";
    s.negative = "blurry, low quality";
    s.sampler = SD_SAMPLER_EULER;
    s.steps = 8;
    s.cfg_scale = 6;
    s.seed = 42;
    s.width = s.height = W;
    size_t n = (size_t)C * (W / f) * (W / f), ni = (size_t)W * W * 3;
    case_trace c;
    trace_alloc(&c, n, 8, ni, 2 * n, 0);
    sd_error err = {0};
    if (sd_pipeline_generate(&e.p, &s, c.rgb, NULL, NULL, &c.tr, &err) < 0) fail_msg("%s", err.msg);
    expect_ids(model, &g, "prompt_ids", c.ids);
    expect_ids(model, &g, "negative_ids", c.nids);
    expect_tensor(model, &g, "prompt_embeds", c.pe, 77 * 16, 1e-5, 0);
    expect_tensor(model, &g, "negative_embeds", c.ne, 77 * 16, 1e-5, 0);
    expect_tensor(model, &g, "latents_init", c.init, n, 0, 2e-6);
    expect_tensor(model, &g, "unet_input_step0", c.unet0, 2 * n, 0, 2e-6);
    expect_tensor(model, &g, "noise_pred_steps", c.preds, 8 * n, 0, 2e-5);
    expect_tensor(model, &g, "latents_steps", c.steps, 8 * n, 0, 2e-5);
    expect_tensor(model, &g, "latents_final", c.fin, n, 0, 2e-5);
    expect_tensor(model, &g, "image", c.img, ni, 2e-5, 0);
    assert_true(worst_pixel(&g, c.rgb, ni) <= 1);
    trace_free(&c);
    st_close(&g);
    pipe_close(&e);
}

static void test_ldm_f4_pipeline_reproduces_diffusers_euler(void **state) {
    (void)state;
    check_ldm_euler("tiny-ldm-f4", "ext/golden/pipeline_f4_euler.safetensors", 64, 4, 4);
}

/* The f = 16 LDM's latent has 16 channels at 1/16 of the size. Its golden is held back for acceptance:
 * compared in full when present; always: the shapes, the start latent (init_noise * sigma, the same
 * 1024 values as f4's) and the size rule. */
static void test_ldm_f16_pipeline_runs_with_16_latent_channels(void **state) {
    (void)state;
    if (sd_fs_is_file(tu_path("ext/golden/pipeline_f16_euler.safetensors")))
        check_ldm_euler("tiny-ldm-f16", "ext/golden/pipeline_f16_euler.safetensors", 128, 16, 16);
    ext_pipe e;
    pipe_open(&e, "tiny-ldm-f16");
    assert_int_equal(sd_pipeline_size_factor(&e.p), 16);
    sd_settings s;
    sd_settings_default(&s);
    s.prompt = "a photograph of an astronaut riding a horse";
    s.sampler = SD_SAMPLER_EULER;
    s.steps = 2;
    s.seed = 42;
    s.width = s.height = 128;
    size_t n = 16 * 8 * 8, ni = 128 * 128 * 3;
    case_trace c;
    trace_alloc(&c, n, 2, ni, 2 * n, 0);
    sd_error err = {0};
    if (sd_pipeline_generate(&e.p, &s, c.rgb, NULL, NULL, &c.tr, &err) < 0) fail_msg("%s", err.msg);
    st_file f;
    tu_open(&f, "ext/golden/pipeline_f4_euler.safetensors");
    expect_tensor("f16", &f, "latents_init", c.init, n, 0, 2e-6); /* the same flat sequence of 1024 values */
    st_close(&f);
    s.width = 136; /* diffusers would floor 8.5 latent rows; sdrender asks for a multiple of 16 */
    assert_int_equal(sd_pipeline_generate(&e.p, &s, c.rgb, NULL, NULL, NULL, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "multiple of 16"));
    trace_free(&c);
    pipe_close(&e);
}

/* StableDiffusionUpscalePipeline: 32x32 -> 128x128, noise level 20, 10 DDIM v-prediction steps, CFG 9. */
static void test_upscale_pipeline_reproduces_diffusers_x4(void **state) {
    (void)state;
    ext_pipe e;
    pipe_open(&e, "tiny-sd-x4-upscaler");
    st_file f;
    tu_open(&f, "ext/golden/pipeline_upscale_x4.safetensors");
    sd_settings s;
    sd_settings_default(&s);
    s.prompt = "a red cube on top of a blue sphere, studio lighting";
    s.negative = "blurry, low quality";
    s.sampler = SD_SAMPLER_DDIM;
    s.steps = 10;
    s.cfg_scale = 9;
    s.seed = 5;
    s.upscale = 1;
    s.noise_level = 20;
    s.init_image = tu_path("ext/golden/pipeline_upscale_x4.input.png");
    s.width = s.height = 128;
    size_t n = 4 * 32 * 32, ni = 128 * 128 * 3, nl = 3 * 32 * 32;
    case_trace c;
    trace_alloc(&c, n, 10, ni, 2 * 7 * 32 * 32, nl);
    sd_error err = {0};
    if (sd_pipeline_generate(&e.p, &s, c.rgb, NULL, NULL, &c.tr, &err) < 0) fail_msg("%s", err.msg);
    expect_ids("x4", &f, "prompt_ids", c.ids);
    expect_ids("x4", &f, "negative_ids", c.nids);
    expect_tensor("x4", &f, "prompt_embeds", c.pe, 77 * 16, 1e-5, 0);
    expect_tensor("x4", &f, "negative_embeds", c.ne, 77 * 16, 1e-5, 0);
    expect_tensor("x4", &f, "low_res_noise", c.lrn, nl, 0, 0);
    expect_tensor("x4", &f, "noisy_low_res_image", c.lri, nl, 1e-6, 0);
    expect_tensor("x4", &f, "init_noise", c.init, n, 0, 0);
    expect_tensor("x4", &f, "unet_input_step0", c.unet0, 2 * 7 * 32 * 32, 1e-6, 0);
    expect_tensor("x4", &f, "noise_pred_steps", c.preds, 10 * n, 0, 5e-5);
    expect_tensor("x4", &f, "latents_steps", c.steps, 10 * n, 0, 5e-5);
    expect_tensor("x4", &f, "latents_final", c.fin, n, 0, 5e-5);
    expect_tensor("x4", &f, "image", c.img, ni, 5e-5, 0);
    assert_true(worst_pixel(&f, c.rgb, ni) <= 1);
    trace_free(&c);
    /* an upscaler only upscales; a noise level past max_noise_level is refused */
    uint8_t *rgb = malloc(ni);
    s.noise_level = 351;
    assert_int_equal(sd_pipeline_generate(&e.p, &s, rgb, NULL, NULL, NULL, &err), SD_EINPUT);
    s.noise_level = 20;
    s.upscale = 0;
    s.init_image = NULL;
    assert_int_equal(sd_pipeline_generate(&e.p, &s, rgb, NULL, NULL, NULL, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "upscale"));
    free(rgb);
    st_close(&f);
    pipe_close(&e);
}

/* --rng cuda: the start latent is A1111's NV noise for the seed (randn_philox golden), and the CPU
 * generator's differs. */
static void test_cuda_rng_draws_the_philox_start_latent(void **state) {
    (void)state;
    ext_pipe e;
    pipe_open(&e, "tiny-ldm-f4");
    st_file f;
    tu_open(&f, "ext/golden/randn_philox.safetensors");
    sd_settings s;
    sd_settings_default(&s);
    s.prompt = "a cat";
    s.sampler = SD_SAMPLER_DDIM; /* init_noise_sigma 1: the latent is the noise itself */
    s.steps = 2;
    s.seed = 42;
    s.width = s.height = 32;
    s.rng = SD_RNG_CUDA;
    size_t n = 4 * 8 * 8, ni = 32 * 32 * 3;
    case_trace c;
    trace_alloc(&c, n, 2, ni, 2 * n, 0);
    sd_error err = {0};
    if (sd_pipeline_generate(&e.p, &s, c.rgb, NULL, NULL, &c.tr, &err) < 0) fail_msg("%s", err.msg);
    expect_tensor("philox", &f, "seed42_shape1x4x8x8", c.init, n, 0, 0);
    float *nv = tu_f32(&f, "seed42_shape1x4x8x8", NULL);
    s.rng = SD_RNG_CPU;
    if (sd_pipeline_generate(&e.p, &s, c.rgb, NULL, NULL, &c.tr, &err) < 0) fail_msg("%s", err.msg);
    assert_true(memcmp(c.init, nv, n * sizeof(float)) != 0);
    free(nv);
    trace_free(&c);
    st_close(&f);
    pipe_close(&e);
}

/*
 * The schedulers alone, fed the goldens' own model outputs: the tables (betas, alphas_cumprod) and every
 * step's sample. DDPM 20 steps (its variance noise drawn from the same generator after the start noise,
 * which also checks scheduler_noise's order), and the upscaler's v-prediction DDIM 10 steps.
 */
/* start_draw: the start noise came from g (advance past it, as the pipeline did). */
static void run_scheduler(const char *golden, sampler_kind kind, const sched_config *cfg, int steps, sd_rng *g,
                          int start_draw, const char *outputs, double tol) {
    st_file f;
    tu_open(&f, golden);
    sd_error err = {0};
    sampler_state *smp;
    if (sampler_create(&smp, kind, cfg, steps, 0, 0.0f, &err) < 0) fail_msg("%s", err.msg);
    int nt;
    const float *ac = sampler_alphas_cumprod(smp, &nt);
    expect_tensor(golden, &f, "alphas_cumprod", ac, (size_t)nt, 0, 1e-7);
    if (st_find(&f, "betas")) expect_tensor(golden, &f, "betas", sampler_betas(smp, NULL), (size_t)nt, 0, 1e-7);
    size_t n, nm;
    float *x = tu_f32(&f, "init_noise", &n);
    float *m = tu_f32(&f, outputs, &nm);
    float *want = tu_f32(&f, "latents_steps", NULL);
    float *tmp = malloc(n * sizeof(float));
    if (start_draw) sd_rng_randn(g, tmp, n);
    assert_int_equal(sampler_num_evals(smp), steps);
    for (int i = 0; i < steps; i++) {
        if (sampler_step(smp, i, m + (size_t)i * n, x, n, g, &err) < 0) fail_msg("%s", err.msg);
        char label[96];
        snprintf(label, sizeof label, "%s step %d", golden, i);
        tu_expect_close(label, x, want + (size_t)i * n, n, tol);
    }
    free(x), free(m), free(want), free(tmp);
    sampler_free(smp);
    st_close(&f);
}

static void test_ddpm_and_upscaler_schedulers_step_like_diffusers(void **state) {
    (void)state;
    ext_pipe e;
    pipe_open(&e, "tiny-ddpm");
    sd_rng g;
    sd_rng_seed(&g, 42);
    /* the start noise is the generator's first draw; the 19 variance draws follow (none at t = 0) */
    run_scheduler("ext/golden/pipeline_ddpm_ddpm20.safetensors", SD_SAMPLER_DDPM, &e.m.sched, 20, &g, 1,
                  "model_output_steps", 2e-6);
    st_file f;
    tu_open(&f, "ext/golden/pipeline_ddpm_ddpm20.safetensors");
    size_t nn;
    float *all = tu_f32(&f, "scheduler_noise", &nn), *again = malloc(nn * sizeof(float));
    sd_rng h;
    sd_rng_seed(&h, 42);
    sd_rng_randn(&h, again, 3072); /* init noise */
    for (int k = 0; k < 19; k++) sd_rng_randn(&h, again + (size_t)k * 3072, 3072);
    tu_expect_close("scheduler_noise", again, all, nn, 0);
    free(all), free(again);
    st_close(&f);
    pipe_close(&e);

    pipe_open(&e, "tiny-sd-x4-upscaler");
    sd_rng_seed(&g, 5); /* DDIM eta 0 draws nothing */
    run_scheduler("ext/golden/pipeline_upscale_x4.safetensors", SD_SAMPLER_DDIM, &e.m.sched, 10, &g, 0,
                  "noise_pred_steps", 2e-6);
    pipe_close(&e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ddpm_pipeline_reproduces_diffusers_ddpm20),
        cmocka_unit_test(test_ddim_from_a_ddpm_config_keeps_its_defaults),
        cmocka_unit_test(test_ldm_f4_pipeline_reproduces_diffusers_euler),
        cmocka_unit_test(test_ldm_f16_pipeline_runs_with_16_latent_channels),
        cmocka_unit_test(test_upscale_pipeline_reproduces_diffusers_x4),
        cmocka_unit_test(test_cuda_rng_draws_the_philox_start_latent),
        cmocka_unit_test(test_ddpm_and_upscaler_schedulers_step_like_diffusers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
