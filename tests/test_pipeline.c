/*
 * Tests for core/pipeline: every golden diffusers pipeline run, reproduced
 * from its seed (not from stored noise), within the tolerances of section 8
 * of the testdata README.
 */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "pipeline.h"
#include "pngio.h"

typedef struct {
    const char *name;
    int tight;   /* *_96: latents 5e-5 x peak, pixels +-1; else the loose 64-pixel tolerances */
    int smoke;   /* sd2_ddim_vpred at 64x64: image within 0.25 only */
} pipe_case;

static const pipe_case cases[] = {
    {"sd15_pndm_96", 1, 0},           {"sd15_ddim_96", 1, 0},      {"sd15_euler_96", 1, 0},
    {"sd15_euler_a_96", 1, 0},        {"sd15_dpmpp_2m_karras_96", 1, 0}, {"sd15_ddim_nocfg_96", 1, 0},
    {"sd2_ddim_vpred_96", 1, 0},      {"sd15_img2img_ddim_96", 1, 0}, {"inpaint_pndm_96", 1, 0},
    {"sd15_pndm", 0, 0},              {"sd15_ddim", 0, 0},         {"sd15_euler", 0, 0},
    {"sd15_euler_a", 0, 0},           {"sd15_dpmpp_2m_karras", 0, 0}, {"sd15_pndm_64x96", 0, 0},
    {"sd15_ddim_nocfg", 0, 0},        {"sd2_ddim_vpred", 0, 1},    {"sd15_img2img_ddim", 0, 0},
    {"inpaint_pndm", 0, 0},
};

static sd_model models[3];
static sd_pipeline pipes[3];
static const char *model_names[3] = {"tiny-sd15", "tiny-sd2", "tiny-inpaint"};

static int setup(void **state) {
    (void)state;
    for (int i = 0; i < 3; i++) {
        char rel[64];
        sd_error err = {0};
        snprintf(rel, sizeof rel, "models/%s", model_names[i]);
        if (sd_model_open(&models[i], tu_path(rel), NULL, &err) < 0 || sd_pipeline_load(&pipes[i], &models[i], &err) < 0) {
            fprintf(stderr, "%s\n", err.msg);
            return -1;
        }
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < 3; i++) {
        sd_pipeline_free(&pipes[i]);
        sd_model_close(&models[i]);
    }
    return 0;
}

static sd_pipeline *pipe_for(const char *model) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(model, model_names[i])) return &pipes[i];
    fail_msg("unknown model %s", model);
    return NULL;
}

/* Settings of a golden case from its .json sidecar (strings live in j). */
static void settings_from_json(json_t *j, const char *name, sd_settings *s, char *init, char *mask, size_t sz) {
    json_t *st = json_object_get(j, "settings");
    sd_settings_default(s);
    s->prompt = json_string_value(json_object_get(st, "prompt"));
    json_t *neg = json_object_get(st, "negative_prompt");
    s->negative = json_is_string(neg) ? json_string_value(neg) : "";
    s->width = (int)json_integer_value(json_object_get(st, "width"));
    s->height = (int)json_integer_value(json_object_get(st, "height"));
    s->steps = (int)json_integer_value(json_object_get(st, "num_inference_steps"));
    s->cfg_scale = (float)json_number_value(json_object_get(st, "guidance_scale"));
    s->seed = json_integer_value(json_object_get(st, "seed"));
    const char *sch = json_string_value(json_object_get(st, "scheduler"));
    if (!strcmp(sch, "dpmpp_2m_karras")) {
        s->sampler = SD_SAMPLER_DPMPP_2M;
        s->karras = 1;
    } else {
        assert_int_equal(sampler_kind_parse(sch, &s->sampler), 0);
    }
    const char *task = json_string_value(json_object_get(st, "task"));
    if (strcmp(task, "txt2img")) {
        snprintf(init, sz, "%s", tu_path(""));
        snprintf(init, sz, "%s/golden/pipeline_%s.input.png", tu_testdata(), name);
        s->init_image = init;
        json_t *str = json_object_get(st, "strength");
        s->strength = json_is_number(str) ? json_number_value(str) : 1.0;
    }
    if (!strcmp(task, "inpaint")) {
        snprintf(mask, sz, "%s/golden/pipeline_%s.mask.png", tu_testdata(), name);
        s->mask = mask;
    }
}

/* The trace's inputs and side products that the main comparison does not cover: ids and schedule here,
 * the float tensors carved from one block. */
typedef struct extra_trace {
    int32_t prompt_ids[77], negative_ids[77];
    double all_timesteps[64];
    float *block;
} extra_trace;

static float *carve(float **next, size_t n) {
    float *p = *next;
    *next += n;
    return p;
}

/* Points tr's extra fields at x's storage: latents of n_lat floats, the first U-Net input of n_unet_in. */
static void extra_trace_attach(extra_trace *x, sd_pipeline_trace *tr, size_t n_lat, size_t n_unet_in) {
    memset(x, 0, sizeof *x);
    for (int i = 0; i < 77; i++) x->prompt_ids[i] = x->negative_ids[i] = -1;
    x->block = malloc(sizeof(float) * (77 * 32 + 5 * n_lat + n_unet_in));
    assert_non_null(x->block);
    float *next = x->block;
    *tr = (sd_pipeline_trace){
        .prompt_ids = x->prompt_ids,
        .negative_ids = x->negative_ids,
        .all_timesteps = x->all_timesteps,
        .max_timesteps = 64,
        .negative_embeds = carve(&next, 77 * 32),
        .encoder_mean = carve(&next, n_lat),
        .encoder_logvar = carve(&next, n_lat),
        .encoder_noise = carve(&next, n_lat),
        .masked_image_encoder_noise = carve(&next, n_lat),
        .masked_image_latents = carve(&next, n_lat),
        .unet_input_step0 = carve(&next, n_unet_in),
    };
}

/* Golden I64 ids [1, 77] equal got (token ids are exact everywhere, README section 8). */
static void expect_golden_ids(const char *cname, const st_file *f, const char *name, const int32_t *got) {
    const sd_tensor *t = tu_tensor(f, name);
    assert_int_equal(t->dtype, SD_I64);
    assert_int_equal(sd_tensor_numel(t), 77);
    const int64_t *want = t->data;
    for (int i = 0; i < 77; i++)
        if (got[i] != want[i]) fail_msg("%s %s: id %d is %d, expected %lld", cname, name, i, (int)got[i], (long long)want[i]);
}

/* One golden float tensor (when the case has it) against the trace's copy, within atol + rtol * peak. */
static void expect_optional(const char *cname, const st_file *f, const char *name, const float *got, double atol,
                            double rtol) {
    const sd_tensor *t = st_find(f, name);
    if (!t) return;
    size_t n;
    float *want = tu_f32(f, name, &n);
    char label[160];
    snprintf(label, sizeof label, "%s %s", cname, name);
    tu_expect_close(label, got, want, n, atol + rtol * tu_peak(want, n));
    free(want);
}

/*
 * Token ids, the negative embeddings, the random draws of the VAE posteriors, the encoder's mean and
 * log-variance, the masked image's latents, the first U-Net input and the whole timestep schedule,
 * each at README section 8's tolerance: ids, noise and integer timesteps exact; text encoder 2e-5;
 * VAE encode mean / logvar 2e-4 (masked_image_latents = 0.18215 * (mean + std * noise) inherits it).
 * The first U-Net input is the start latent scaled (txt2img: noise * sigma, float rounding only,
 * 2e-6 relative as the scheduler values) and, for img2img and inpainting, built from VAE posteriors (2e-4).
 */
static void expect_extra_trace(const char *cname, const st_file *f, const sd_pipeline_trace *tr, int cfg) {
    expect_golden_ids(cname, f, "prompt_ids", tr->prompt_ids);
    if (cfg) {
        expect_golden_ids(cname, f, "negative_ids", tr->negative_ids);
        expect_optional(cname, f, "negative_embeds", tr->negative_embeds, 2e-5, 0);
        assert_non_null(st_find(f, "negative_embeds"));
    } else {
        assert_null(st_find(f, "negative_ids"));
    }
    expect_optional(cname, f, "encoder_noise", tr->encoder_noise, 0, 0);
    expect_optional(cname, f, "masked_image_encoder_noise", tr->masked_image_encoder_noise, 0, 0);
    expect_optional(cname, f, "encoder_mean", tr->encoder_mean, 2e-4, 0);
    expect_optional(cname, f, "encoder_logvar", tr->encoder_logvar, 2e-4, 0);
    expect_optional(cname, f, "masked_image_latents", tr->masked_image_latents, 2e-4, 0);
    int encoded = st_find(f, "encoder_mean") || st_find(f, "masked_image_latents");
    expect_optional(cname, f, "unet_input_step0", tr->unet_input_step0, encoded ? 2e-4 : 0, encoded ? 0 : 2e-6);

    /* the whole schedule (img2img: all_timesteps) and its tail, the evaluations that ran (timesteps) */
    const sd_tensor *all = st_find(f, "all_timesteps"), *run = tu_tensor(f, "timesteps");
    int n_all = (int)(all ? sd_tensor_numel(all) : sd_tensor_numel(run)), n_run = (int)sd_tensor_numel(run);
    float *want_all = all ? tu_f32(f, "all_timesteps", NULL) : tu_f32(f, "timesteps", NULL);
    float *want_run = tu_f32(f, "timesteps", NULL);
    assert_int_equal(tr->n_all_timesteps, n_all);
    assert_true(n_all <= 64);
    for (int i = 0; i < n_all; i++)
        if (fabs(tr->all_timesteps[i] - want_all[i]) > 2e-6 * fabs(want_all[i]))
            fail_msg("%s: timestep %d of the schedule is %.9g, expected %.9g", cname, i, tr->all_timesteps[i], want_all[i]);
    for (int i = 0; i < n_run; i++)
        if (fabs(tr->all_timesteps[n_all - n_run + i] - want_run[i]) > 2e-6 * fabs(want_run[i]))
            fail_msg("%s: looped timestep %d is %.9g, expected %.9g", cname, i, tr->all_timesteps[n_all - n_run + i],
                     want_run[i]);
    free(want_all);
    free(want_run);
}

/* A golden case's sidecar (the caller frees it; s's strings live in it), its settings and pipeline. */
static json_t *case_open(const pipe_case *c, sd_settings *s, char *init, char *mask, size_t sz, sd_pipeline **p) {
    char rel[128];
    snprintf(rel, sizeof rel, "golden/pipeline_%s.json", c->name);
    json_error_t je;
    json_t *j = json_load_file(tu_path(rel), 0, &je);
    if (!j) fail_msg("%s: %s", rel, je.text);
    settings_from_json(j, c->name, s, init, mask, sz);
    *p = pipe_for(json_string_value(json_object_get(json_object_get(j, "settings"), "model")));
    return j;
}

static void run_case(const pipe_case *c) {
    char rel[128], init[1024], mask[1024];
    sd_settings s;
    sd_pipeline *p;
    json_t *j = case_open(c, &s, init, mask, sizeof init, &p);

    snprintf(rel, sizeof rel, "golden/pipeline_%s.safetensors", c->name);
    st_file f;
    tu_open(&f, rel);
    size_t n_lat, n_steps_all, n_img;
    float *want_final = tu_f32(&f, "latents_final", &n_lat);
    float *want_steps = tu_f32(&f, "latents_steps", &n_steps_all);
    float *want_img = tu_f32(&f, "image", &n_img);
    float *want_pe = tu_f32(&f, "prompt_embeds", NULL);
    const sd_tensor *u8 = tu_tensor(&f, "image_u8");
    int n_evals = (int)(n_steps_all / n_lat);

    float *pe = malloc(sizeof(float) * 77 * 32), *fin = malloc(sizeof(float) * n_lat);
    float *steps = malloc(sizeof(float) * n_steps_all), *img = malloc(sizeof(float) * n_img);
    uint8_t *rgb = malloc(n_img);
    size_t n_unet_in = (size_t)sd_tensor_numel(tu_tensor(&f, "unet_input_step0"));
    extra_trace x;
    sd_pipeline_trace tr;
    extra_trace_attach(&x, &tr, n_lat, n_unet_in);
    tr.prompt_embeds = pe;
    tr.latents_final = fin;
    tr.latents_steps = steps;
    tr.max_steps = n_evals;
    tr.image = img;
    sd_error err = {0};
    if (sd_pipeline_generate(p, &s, rgb, NULL, NULL, &tr, &err) < 0) fail_msg("%s: %s", c->name, err.msg);
    assert_int_equal(tr.n_steps, n_evals);
    expect_extra_trace(c->name, &f, &tr, s.cfg_scale > 1.0f);
    free(x.block);
    char label[160];
    snprintf(label, sizeof label, "%s prompt_embeds", c->name);
    tu_expect_close(label, pe, want_pe, 77 * 32, 2e-5);
    double peak = tu_peak(want_final, n_lat);
    if (c->smoke) {
        snprintf(label, sizeof label, "%s image (smoke)", c->name);
        tu_expect_close(label, img, want_img, n_img, 0.25);
    } else {
        double lat_tol = c->tight ? 5e-5 : 2e-2, img_tol = c->tight ? 5e-5 : 2e-2;
        snprintf(label, sizeof label, "%s latents_final", c->name);
        tu_expect_close(label, fin, want_final, n_lat, lat_tol * peak);
        if (c->tight) {
            snprintf(label, sizeof label, "%s latents_steps", c->name);
            tu_expect_close(label, steps, want_steps, n_steps_all, 5e-5 * tu_peak(want_steps, n_steps_all));
        }
        snprintf(label, sizeof label, "%s image", c->name);
        tu_expect_close(label, img, want_img, n_img, img_tol);
        int max_px = c->tight ? 1 : 5, worst = 0;
        const uint8_t *w8 = u8->data;
        for (size_t i = 0; i < n_img; i++) {
            int d = abs((int)rgb[i] - (int)w8[i]);
            if (d > worst) worst = d;
        }
        const char *report = getenv("SDRENDER_TEST_REPORT");
        if (report && *report && *report != '0')
            fprintf(stderr, "report: %s: PNG pixels off by at most %d (allowed %d)\n", c->name, worst, max_px);
        if (worst > max_px) fail_msg("%s: a PNG pixel is off by %d (allowed %d)", c->name, worst, max_px);
    }
    /* SDRENDER_TEST_PNG_DIR keeps each case's pixels as DIR/NAME.png, so a refactoring can be
       checked byte for byte against the PNGs of the commit before it (scripts/snapshot-outputs.sh). */
    const char *dump = getenv("SDRENDER_TEST_PNG_DIR");
    if (dump && *dump) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.png", dump, c->name);
        if (sd_png_write_rgb(path, rgb, s.width, s.height, NULL, 0, &err) < 0) fail_msg("%s", err.msg);
    }
    free(pe);
    free(fin);
    free(steps);
    free(img);
    free(rgb);
    free(want_final);
    free(want_steps);
    free(want_img);
    free(want_pe);
    st_close(&f);
    json_decref(j);
}

static void test_pipelines_reproduce_diffusers_from_the_seed(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(&cases[i]);
}

static int cancel_at_3(void *ctx, int done, int total) {
    (void)ctx;
    (void)total;
    return done == 3;
}

static void test_pipeline_rejects_bad_requests_and_can_be_cancelled(void **state) {
    (void)state;
    sd_settings s;
    sd_settings_default(&s);
    s.prompt = "x";
    s.width = s.height = 64;
    s.steps = 5;
    uint8_t *rgb = malloc(64 * 64 * 3);
    sd_error err = {0};
    assert_int_equal(sd_pipeline_generate(&pipes[0], &s, rgb, cancel_at_3, NULL, NULL, &err), SD_ECANCELED);
    assert_string_equal(err.msg, "cancelled");
    s.mask = "m.png";
    s.init_image = "i.png";
    assert_int_equal(sd_pipeline_generate(&pipes[0], &s, rgb, NULL, NULL, NULL, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "inpainting model"));
    s.mask = NULL;
    s.init_image = tu_path("golden/pipeline_sd15_img2img_ddim_96.input.png");
    assert_int_equal(sd_pipeline_generate(&pipes[0], &s, rgb, NULL, NULL, NULL, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "is 96x96 but the image size is 64x64"));
    s.init_image = tu_path("golden/nope.png");
    assert_int_equal(sd_pipeline_generate(&pipes[0], &s, rgb, NULL, NULL, NULL, &err), SD_ENOTFOUND);
    free(rgb);
}

/* A job must render the same bytes on a 1-thread worker as in a 2- or 3-thread `generate`. */
static void test_images_do_not_depend_on_the_thread_count(void **state) {
    (void)state;
    sd_settings s;
    sd_settings_default(&s);
    s.prompt = "a small red house";
    s.width = 96;
    s.height = 64;
    s.steps = 3;
    s.seed = 1000;
    uint8_t *ref = malloc(96 * 64 * 3), *rgb = malloc(96 * 64 * 3);
    sd_error err = {0};
    int counts[3] = {1, 2, 3};
    for (int k = 0; k < 3; k++) {
        ops_set_threads(counts[k]);
        if (sd_pipeline_generate(&pipes[0], &s, k ? rgb : ref, NULL, NULL, NULL, &err) < 0) fail_msg("%s", err.msg);
        if (k && memcmp(ref, rgb, 96 * 64 * 3)) fail_msg("%d threads give other pixels than 1 thread", counts[k]);
    }
    ops_set_threads(0);
    free(ref);
    free(rgb);
}

/* Resident kB of this process's mapping of the file whose path ends with `suffix` (summed over its
 * mappings, from /proc/self/smaps); -1 when it is not mapped. */
static long mapped_rss_kb(const char *suffix) {
    FILE *fp = fopen("/proc/self/smaps", "r");
    assert_non_null(fp);
    char line[4096], first[128];
    long total = -1;
    int in = 0;
    size_t ns = strlen(suffix);
    while (fgets(line, sizeof line, fp)) {
        size_t n = strcspn(line, "\n");
        line[n] = 0;
        if (sscanf(line, "%127s", first) != 1) continue;
        if (first[strlen(first) - 1] != ':') { /* a mapping's header: "lo-hi perms offset dev inode path" */
            in = n >= ns && !strcmp(line + n - ns, suffix);
            if (in && total < 0) total = 0;
        } else if (in && !strcmp(first, "Rss:")) {
            total += strtol(line + 4, NULL, 10);
        }
    }
    fclose(fp);
    return total;
}

/*
 * After an image, each network's activations (scratch arenas) are freed and its weights' pages leave
 * the resident set (they come back from the page cache on the next use): measured here on the mapping
 * of the tiny U-Net's file in /proc/self/smaps, which the denoising loop reads whole. The next image is
 * the same pixels (the weights came back intact). By default only images of 512x512 or more release
 * (small ones would pay the refault on every image): after a 64x64 one the weights stay resident.
 */
static void test_networks_leave_memory_after_their_phase(void **state) {
    (void)state;
    sd_settings s;
    sd_settings_default(&s);
    s.prompt = "a small red house";
    s.width = s.height = 64;
    s.steps = 2;
    s.seed = 5;
    uint8_t *a = malloc(64 * 64 * 3), *b = malloc(64 * 64 * 3);
    sd_error err = {0};
    const char *unet_file = "tiny-sd15/unet/diffusion_pytorch_model.safetensors";
    long whole = (long)(pipes[0].model->file_size[0] / 1024);
    for (int i = 0; i < pipes[0].model->n_files; i++)
        if (strstr(pipes[0].model->file_desc[i], unet_file)) whole = (long)(pipes[0].model->file_size[i] / 1024);
    assert_int_equal(pipes[0].release_memory, -1);
    if (sd_pipeline_generate(&pipes[0], &s, a, NULL, NULL, NULL, &err) < 0) fail_msg("%s", err.msg);
    long kept = mapped_rss_kb(unet_file); /* 64x64: the weights stay for the next image */
    assert_true(kept * 2 > whole);
    pipes[0].release_memory = 1;
    if (sd_pipeline_generate(&pipes[0], &s, a, NULL, NULL, NULL, &err) < 0) fail_msg("%s", err.msg);
    long after = mapped_rss_kb(unet_file);
    print_message("U-Net file %ld kB, resident after an image: %ld kB\n", whole, after);
    assert_true(after >= 0);
    /* tensors smaller than a page stay: the tiny U-Net's biases and norms, a small share of the file */
    assert_true(after * 4 < whole);
    assert_int_equal(pipes[0].unet.ops.scratch.n_blocks, 0);
    assert_int_equal(pipes[0].vae.ops.scratch.n_blocks, 0);
    assert_int_equal(pipes[0].clip.ops.scratch.n_blocks, 0);
    if (sd_pipeline_generate(&pipes[0], &s, b, NULL, NULL, NULL, &err) < 0) fail_msg("%s", err.msg);
    assert_memory_equal(a, b, 64 * 64 * 3);
    pipes[0].release_memory = -1;
    free(a);
    free(b);
}

/* PSNR in dB of 8-bit pixels a against b (n bytes); 99 when they are equal. */
static double psnr_u8(const uint8_t *a, const uint8_t *b, size_t n) {
    double se = 0;
    for (size_t i = 0; i < n; i++) se += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return se == 0 ? 99.0 : 10.0 * log10(255.0 * 255.0 / (se / (double)n));
}

/*
 * --precision bf16 (every GEMM, including the Winograd convolutions' products of
 * transformed filters and inputs, and attention's two products, on bf16-rounded
 * inputs with fp32 sums) keeps the 96-pixel golden pipelines within
 * PSNR_BF16_MIN dB of diffusers' fp32 PNGs, and each step's latent within
 * LATENT_BF16_MAX (relative L2) of the fp32 run's. Measured on the AVX-512 EPYC
 * (oneDNN 2.6), 2026-12-02, with bf16 attention: 41.7 dB (sd2_ddim_vpred_96),
 * 45.5 (img2img), 48.4-50.8 (the others), 53.7 (no CFG); per-step latent error
 * (worst step) 0.24% (no CFG), 1.2-1.9% (the other SD 1.5 cases), 2.3%
 * (sd2_ddim_vpred_96), each printed; attention in fp32 had given 41.8-53.7 dB.
 * Before the
 * Winograd products went bf16 (only direct GEMMs were) the same cases gave
 * 45.8-56.1 dB; a PyTorch emulation of bf16 weights and inputs for every
 * linear and convolution lands 49-52 dB: the Winograd transforms widen the
 * rounded values' range, which costs 1-3 dB. The PSNR bound is issue 13's
 * 40 dB floor, 1.7 dB under the worst case, the latent bound 4%, 1.7x the
 * worst; a real fault (an fp32 value read as bf16, a wrong transpose) costs
 * tens of dB and latents off by tens of percent.
 * Skipped without a bf16 GEMM.
 */
#define PSNR_BF16_MIN 40.0
#define LATENT_BF16_MAX 0.04
static void test_bf16_pipelines_stay_close_to_the_fp32_goldens(void **state) {
    (void)state;
    if (!ops_bf16_available()) {
        printf("  (no bf16 GEMM here: skipped)\n");
        return;
    }
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const pipe_case *c = &cases[i];
        if (!c->tight) continue;
        char rel[128], init[1024], mask[1024];
        sd_settings s;
        sd_pipeline *p;
        json_t *j = case_open(c, &s, init, mask, sizeof init, &p);
        snprintf(rel, sizeof rel, "golden/pipeline_%s.png", c->name);
        uint8_t *want = NULL, *rgb = malloc((size_t)3 * s.width * s.height);
        int w, h;
        sd_error err = {0};
        assert_non_null(rgb);
        if (sd_png_read_rgb(tu_path(rel), &want, &w, &h, &err) < 0) fail_msg("%s", err.msg);
        assert_true(w == s.width && h == s.height);
        /* each step's latent in fp32, then in bf16 */
        size_t n_lat = (size_t)4 * (s.width / 8) * (s.height / 8);
        enum { MAX_STEPS = 64 };
        float *lat[2];
        sd_pipeline_trace tr[2];
        for (int k = 0; k < 2; k++) {
            lat[k] = malloc(sizeof(float) * n_lat * MAX_STEPS);
            memset(&tr[k], 0, sizeof tr[k]);
            tr[k].latents_steps = lat[k];
            tr[k].max_steps = MAX_STEPS;
        }
        int rc = sd_pipeline_generate(p, &s, rgb, NULL, NULL, &tr[0], &err);
        sd_pipeline_set_precision(p, OPS_PRECISION_BF16);
        if (rc == 0) rc = sd_pipeline_generate(p, &s, rgb, NULL, NULL, &tr[1], &err);
        sd_pipeline_set_precision(p, OPS_PRECISION_FP32);
        if (rc < 0) fail_msg("%s: %s", c->name, err.msg);
        int n_steps = tr[0].n_steps < MAX_STEPS ? tr[0].n_steps : MAX_STEPS;
        assert_true(n_steps > 0 && tr[1].n_steps == tr[0].n_steps);
        double worst = 0;
        for (int st = 0; st < n_steps; st++) {
            double d2 = 0, r2 = 0;
            for (size_t i = 0; i < n_lat; i++) {
                double r = lat[0][st * n_lat + i], d = lat[1][st * n_lat + i] - r;
                d2 += d * d, r2 += r * r;
            }
            double rel = sqrt(d2 / (r2 > 0 ? r2 : 1));
            if (!(rel <= worst)) worst = rel; /* NaN sticks */
        }
        double db = psnr_u8(rgb, want, (size_t)3 * w * h);
        printf("  %s: bf16 PSNR %.1f dB against the fp32 golden PNG; latent error vs fp32, worst of %d steps %.3f%%\n",
               c->name, db, n_steps, 100 * worst);
        if (db < PSNR_BF16_MIN) fail_msg("%s: bf16 PSNR %.1f dB, below %.1f", c->name, db, PSNR_BF16_MIN);
        if (!(worst <= LATENT_BF16_MAX))
            fail_msg("%s: bf16 latent error %.3g relative to fp32, above %.3g", c->name, worst, LATENT_BF16_MAX);
        free(lat[0]);
        free(lat[1]);
        free(want);
        free(rgb);
        json_decref(j);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipelines_reproduce_diffusers_from_the_seed),
        cmocka_unit_test(test_pipeline_rejects_bad_requests_and_can_be_cancelled),
        cmocka_unit_test(test_images_do_not_depend_on_the_thread_count),
        cmocka_unit_test(test_networks_leave_memory_after_their_phase),
        cmocka_unit_test(test_bf16_pipelines_stay_close_to_the_fp32_goldens),
    };
    return cmocka_run_group_tests_name("pipeline", tests, setup, teardown);
}
