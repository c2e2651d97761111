/*
 * SDXL (testdata sdxl/README.md): the U-Net with its added text/time conditioning and both text
 * encoders against unet_textenc_sdxl, and the two public pipelines reproduced from their seeds,
 * from the diffusers folder and from the single file (sgm layout), through the library (every
 * traced intermediate) and through `sdrender generate` (pixels). Tolerances are the README's:
 * latents 2e-5 x peak, pixels within 1 level, U-Net out 2e-5, embeddings 1e-5.
 */
#include "testutil.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobdb.h"
#include "model.h"
#include "pipeline.h"
#include "pngio.h"
#include "safetensors.h"
#include "settings.h"
#include "unet.h"

#define FOLDER "sdxl/models/tiny-sdxl"
#define SINGLE "sdxl/models/tiny-sdxl.safetensors"

/* Opens the folder (single = 0) or the single file with the folder's tokenizer and, for the head
 * counts a single file does not record, the folder as --config. */
static void open_model(sd_model *m, int single) {
    sd_error err = {0};
    char tok[1024], cfg[1024];
    snprintf(tok, sizeof tok, "%s", tu_path(FOLDER "/tokenizer"));
    snprintf(cfg, sizeof cfg, "%s", tu_path(FOLDER));
    sd_model_opts o = {.tokenizer = tok, .config = cfg};
    if (sd_model_open(m, tu_path(single ? SINGLE : FOLDER), single ? &o : NULL, &err) < 0) fail_msg("%s", err.msg);
    assert_true(m->xl);
}

/* Golden I64 ids [1, 77] equal got. */
static void expect_ids(const char *label, const st_file *g, const char *name, const int32_t *got) {
    const sd_tensor *t = tu_tensor(g, name);
    assert_int_equal(t->dtype, SD_I64);
    assert_int_equal(sd_tensor_numel(t), 77);
    const int64_t *want = t->data;
    for (int i = 0; i < 77; i++)
        if (got[i] != want[i]) fail_msg("%s %s: id %d is %d, expected %lld", label, name, i, got[i], (long long)want[i]);
}

/* Golden float tensor `name` against got within atol + rtol * peak. */
static void expect(const char *label, const st_file *g, const char *name, const float *got, double atol, double rtol) {
    size_t n;
    float *want = tu_f32(g, name, &n);
    char l[256];
    snprintf(l, sizeof l, "%s %s", label, name);
    tu_expect_close(l, got, want, n, atol + rtol * tu_peak(want, n));
    free(want);
}

/* The unit golden: one U-Net call with two different size/crop conditionings, batch 2. */
static void check_unet(int single) {
    sd_model m;
    open_model(&m, single);
    st_file g;
    tu_open(&g, "sdxl/unet_textenc_sdxl.safetensors");
    size_t nx, nctx, nte, nti;
    float *x = tu_f32(&g, "x", &nx), *ctx = tu_f32(&g, "context", &nctx);
    float *te = tu_f32(&g, "text_embeds", &nte), *ti = tu_f32(&g, "time_ids", &nti);
    float *t = tu_f32(&g, "timesteps", NULL);
    assert_int_equal(nti, 12);
    unet_model u;
    sd_error err = {0};
    if (unet_load(&u, &m.unet, &m.unet_w, &err) < 0) fail_msg("%s", err.msg);
    float *out = malloc(sizeof(float) * nx);
    unet_added_cond ac = {.text_embeds = te, .n_text = (int)nte / 2, .time_ids = ti, .n_time = 6};
    if (unet_forward_cond(&u, x, t, ctx, 77, &ac, 2, 8, 12, out, &err) < 0) fail_msg("%s", err.msg);
    expect(single ? "single file unet" : "folder unet", &g, "out", out, 2e-5, 0);
    /* without its added conditioning the SDXL U-Net refuses to run */
    assert_true(unet_forward(&u, x, t, ctx, 77, 2, 8, 12, out, &err) < 0);
    assert_non_null(strstr(err.msg, "time ids"));
    unet_free(&u);
    free(out);
    free(x);
    free(ctx);
    free(te);
    free(ti);
    free(t);
    st_close(&g);
    sd_model_close(&m);
}

static void test_unet_golden_from_the_folder(void **state) {
    (void)state;
    check_unet(0);
}

static void test_unet_golden_from_the_single_file(void **state) {
    (void)state;
    check_unet(1);
}

/* Everything a trace holds of one pipeline case, compared with its golden. */
typedef struct xl_trace {
    int32_t ids[77], neg_ids[77], ids2[77], neg_ids2[77];
    float embeds[77 * 96], neg_embeds[77 * 96], pooled[32], neg_pooled[32], time_ids[6];
    double all_t[64];
} xl_trace;

/* One golden pipeline case `name` through the library from model m; returns nothing, fails on a mismatch. */
static void check_pipeline_case(sd_pipeline *p, const char *name, const char *label) {
    char rel[256], meta[64];
    snprintf(rel, sizeof rel, "sdxl/pipeline_%s.json", name);
    json_error_t je;
    json_t *j = json_load_file(tu_path(rel), 0, &je);
    assert_non_null(j);
    json_t *st = json_object_get(j, "settings");
    sd_settings s;
    sd_settings_default(&s);
    s.prompt = json_string_value(json_object_get(st, "prompt"));
    json_t *neg = json_object_get(st, "negative_prompt");
    s.negative = json_is_string(neg) ? json_string_value(neg) : NULL;
    s.width = (int)json_integer_value(json_object_get(st, "width"));
    s.height = (int)json_integer_value(json_object_get(st, "height"));
    s.steps = (int)json_integer_value(json_object_get(st, "num_inference_steps"));
    s.cfg_scale = (float)json_number_value(json_object_get(st, "guidance_scale"));
    s.seed = json_integer_value(json_object_get(st, "seed"));
    const char *sch = json_string_value(json_object_get(st, "scheduler"));
    /* "euler_sdxl": Euler with the model's own (leading) spacing */
    assert_int_equal(sampler_kind_parse(!strcmp(sch, "euler_sdxl") ? "euler" : sch, &s.sampler), 0);
    snprintf(rel, sizeof rel, "sdxl/pipeline_%s.safetensors", name);
    st_file g;
    tu_open(&g, rel);
    size_t n = (size_t)4 * (s.height / 8) * (s.width / 8), npix = (size_t)3 * s.width * s.height;
    xl_trace *x = calloc(1, sizeof *x);
    float *steps = malloc(sizeof(float) * 6 * n), *preds = malloc(sizeof(float) * 6 * n);
    float *init = malloc(sizeof(float) * n), *fin = malloc(sizeof(float) * n), *img = malloc(sizeof(float) * npix);
    uint8_t *rgb = malloc(npix);
    sd_pipeline_trace tr = {.prompt_ids = x->ids, .negative_ids = x->neg_ids, .prompt_ids_2 = x->ids2,
                            .negative_ids_2 = x->neg_ids2, .prompt_embeds = x->embeds,
                            .negative_embeds = x->neg_embeds, .pooled_prompt_embeds = x->pooled,
                            .negative_pooled_prompt_embeds = x->neg_pooled, .add_time_ids = x->time_ids,
                            .all_timesteps = x->all_t, .max_timesteps = 64, .latents_init = init,
                            .latents_steps = steps, .noise_pred_steps = preds, .max_steps = 6,
                            .latents_final = fin, .image = img};
    sd_error err = {0};
    if (sd_pipeline_generate(p, &s, rgb, NULL, NULL, &tr, &err) < 0) fail_msg("%s %s: %s", label, name, err.msg);
    snprintf(meta, sizeof meta, "%s %s", label, name);
    expect_ids(meta, &g, "prompt_ids", x->ids);
    expect_ids(meta, &g, "prompt_ids_2", x->ids2);
    expect(meta, &g, "prompt_embeds", x->embeds, 1e-5, 0);
    expect(meta, &g, "pooled_prompt_embeds", x->pooled, 1e-5, 0);
    expect(meta, &g, "negative_embeds", x->neg_embeds, 1e-5, 0);
    expect(meta, &g, "negative_pooled_prompt_embeds", x->neg_pooled, 1e-5, 0);
    if (s.negative) {
        expect_ids(meta, &g, "negative_ids", x->neg_ids);
        expect_ids(meta, &g, "negative_ids_2", x->neg_ids2);
    }
    expect(meta, &g, "add_time_ids", x->time_ids, 0, 0);
    float *ts = tu_f32(&g, "timesteps", NULL);
    assert_int_equal(tr.n_all_timesteps, 6);
    for (int i = 0; i < 6; i++)
        if (x->all_t[i] != ts[i]) fail_msg("%s: timestep %d is %g, expected %g", meta, i, x->all_t[i], ts[i]);
    free(ts);
    expect(meta, &g, "noise_pred_steps", preds, 0, 2e-5);
    expect(meta, &g, "latents_steps", steps, 0, 2e-5);
    expect(meta, &g, "latents_final", fin, 0, 2e-5);
    const sd_tensor *want_u8 = tu_tensor(&g, "image_u8");
    const uint8_t *w8 = want_u8->data;
    for (size_t i = 0; i < npix; i++)
        if (abs((int)rgb[i] - (int)w8[i]) > 1) fail_msg("%s: pixel value %zu is %d, expected %d", meta, i, rgb[i], w8[i]);
    free(x);
    free(steps);
    free(preds);
    free(init);
    free(fin);
    free(img);
    free(rgb);
    st_close(&g);
    json_decref(j);
}

static void check_pipelines(int single) {
    sd_model m;
    sd_pipeline p;
    sd_error err = {0};
    open_model(&m, single);
    if (sd_pipeline_load(&p, &m, &err) < 0) fail_msg("%s", err.msg);
    const char *label = single ? "single file" : "folder";
    check_pipeline_case(&p, "sdxl_euler_64", label);
    check_pipeline_case(&p, "sdxl_euler_a_nonegative_64x96", label);
    sd_pipeline_free(&p);
    sd_model_close(&m);
}

static void test_pipelines_from_the_folder(void **state) {
    (void)state;
    check_pipelines(0);
}

static void test_pipelines_from_the_single_file(void **state) {
    (void)state;
    check_pipelines(1);
}

/* `sdrender generate` from the folder and from the single file: the golden PNGs within one level. */
static void test_generate_matches_the_golden_pngs(void **state) {
    (void)state;
    const char *td = tu_testdata();
    char model[3][2048], args[8192];
    snprintf(model[0], sizeof model[0], "-m %s/" FOLDER, td);
    snprintf(model[1], sizeof model[1], "-m %s/" SINGLE " --tokenizer %s/" FOLDER "/tokenizer --config %s/" FOLDER, td,
             td, td);
    for (int k = 0; k < 2; k++) {
        const char *png = tu_tmp("euler.png");
        snprintf(args, sizeof args,
                 "%s -p 'a photograph of an astronaut riding a horse' -n 'blurry, low quality' --steps 6 "
                 "--cfg-scale 5 --seed 42 -W 64 -H 64 -o %s",
                 model[k], png);
        tu_generate_ok(args); /* the default sampler: the model's scheduler (Euler, leading spacing) */
        int d = tu_png_max_diff(png, tu_path("sdxl/pipeline_sdxl_euler_64.png"));
        if (d > 1) fail_msg("%s: euler: pixels differ by %d", model[k], d);
        png = tu_tmp("euler_a.png");
        snprintf(args, sizeof args,
                 "%s -p 'a watercolor of a lighthouse at dusk' --sampler euler_a --steps 6 --cfg-scale 7 --seed 7 "
                 "-W 96 -H 64 -o %s",
                 model[k], png);
        tu_generate_ok(args);
        d = tu_png_max_diff(png, tu_path("sdxl/pipeline_sdxl_euler_a_nonegative_64x96.png"));
        if (d > 1) fail_msg("%s: euler_a without negative prompt: pixels differ by %d", model[k], d);
    }
}

/* --original-size, --crop-top-left and --target-size: the add_time_ids diffusers builds from them
 * ([orig h, w, crop top, left, target h, w]), a different image, and the PNG parameters round-trip. */
static void test_size_conditioning(void **state) {
    (void)state;
    sd_model m;
    sd_pipeline p;
    sd_error err = {0};
    open_model(&m, 0);
    if (sd_pipeline_load(&p, &m, &err) < 0) fail_msg("%s", err.msg);
    sd_settings s;
    sd_settings_default(&s);
    s.prompt = "a cat";
    s.negative = NULL;
    s.steps = 2;
    s.width = 64;
    s.height = 48;
    s.sampler = SD_SAMPLER_EULER;
    float ids[6];
    uint8_t rgb[3][64 * 48 * 3];
    sd_pipeline_trace tr = {.add_time_ids = ids};
    if (sd_pipeline_generate(&p, &s, rgb[0], NULL, NULL, &tr, &err) < 0) fail_msg("%s", err.msg);
    const float want_default[6] = {48, 64, 0, 0, 48, 64};
    assert_memory_equal(ids, want_default, sizeof ids);
    s.orig_width = 1024;
    s.orig_height = 768;
    s.crop_top = 8;
    s.crop_left = 16;
    s.target_width = 96;
    s.target_height = 80;
    if (sd_pipeline_generate(&p, &s, rgb[1], NULL, NULL, &tr, &err) < 0) fail_msg("%s", err.msg);
    const float want[6] = {768, 1024, 8, 16, 80, 96};
    assert_memory_equal(ids, want, sizeof ids);
    assert_memory_not_equal(rgb[0], rgb[1], sizeof rgb[0]);
    sd_pipeline_free(&p);
    sd_model_close(&m);

    /* the same through generate, with the fields in the PNG parameters */
    char args[4096];
    const char *png = tu_tmp("cond.png");
    snprintf(args, sizeof args,
             "-m %s/" FOLDER " -p 'a cat' --sampler euler --steps 2 --seed 0 -W 64 -H 48 --original-size 1024x768 "
             "--crop-top-left 8,16 --target-size 96x80 -o %s",
             tu_testdata(), png);
    tu_generate_ok(args);
    uint8_t *got;
    int w, h;
    if (sd_png_read_rgb(png, &got, &w, &h, &err) < 0) fail_msg("%s", err.msg);
    assert_memory_equal(got, rgb[1], sizeof rgb[1]);
    free(got);
    sd_png_text *t;
    int nt;
    assert_int_equal(sd_png_read_text(png, &t, &nt, &err), 0);
    const char *params = sd_png_text_get(t, nt, "parameters");
    assert_non_null(strstr(params, "Original size: 1024x768, Crop top: 8, Crop left: 16, Target size: 96x80"));
    sd_settings_parsed ps;
    assert_int_equal(sd_settings_parse_a1111(params, &ps, &err), 0);
    assert_int_equal(ps.s.orig_width, 1024);
    assert_int_equal(ps.s.orig_height, 768);
    assert_int_equal(ps.s.crop_top, 8);
    assert_int_equal(ps.s.crop_left, 16);
    assert_int_equal(ps.s.target_width, 96);
    assert_int_equal(ps.s.target_height, 80);
    sd_settings_parsed_free(&ps);
    sd_png_text_free(t, nt);
    /* bad values and SD 1.x models: exit 2, one line */
    const char *bad[][2] = {{"-m %s/" FOLDER " --original-size 1024", "--original-size"},
                            {"-m %s/" FOLDER " --crop-top-left 8x16", "--crop-top-left"},
                            {"-m %s/models/tiny-sd15 --target-size 64x64", "SDXL models only"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char model[2048], *out;
        snprintf(model, sizeof model, bad[i][0], tu_testdata());
        int rc = tu_sh(&out, "%s generate -q %s -p x --steps 1 -W 64 -H 64 -o %s 2>&1", tu_bin(), model,
                       tu_tmp("bad.png"));
        if (rc != 2 || !strstr(out, bad[i][1])) fail_msg("'%s': exit %d, '%s'", model, rc, out);
        free(out);
    }
}

#define MPIRUN "mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1"

/* Runs a shell command; fails the test with its output unless it exits 0. */
static void sh_ok(const char *what, const char *cmd) {
    char *out;
    int rc = tu_sh(&out, "%s 2>&1", cmd);
    if (rc != 0) fprintf(stderr, "%s\n", out);
    free(out); /* before failing: fail_msg does not return */
    if (rc != 0) fail_msg("%s failed (exit %d): %s", what, rc, cmd);
}

/*
 * Six SDXL jobs (samplers, sizes, size conditioning, with and without a negative prompt, one img2img)
 * rendered by `mpirun -np 3 sdrender run`: each PNG byte-identical to `sdrender generate` with the job's
 * settings, and the size-conditioning fields stored per job.
 */
static void test_mpirun_jobs_are_identical_to_generate(void **state) {
    (void)state;
    char cmd[8192], db[1024], out[1024], ref[1024], jsonl[1024], init[1024];
    const char *td = tu_testdata();
    snprintf(db, sizeof db, "%s", tu_tmp("run/jobs.db"));
    snprintf(out, sizeof out, "%s", tu_tmp("run/out"));
    snprintf(ref, sizeof ref, "%s", tu_tmp("run/ref.png"));
    snprintf(jsonl, sizeof jsonl, "%s", tu_tmp("run/prompts.jsonl"));
    char *abs = realpath(tu_path("sdxl/pipeline_sdxl_euler_64.png"), NULL);
    assert_non_null(abs);
    snprintf(init, sizeof init, "%s", abs);
    free(abs);
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", tu_tmp("run"), tu_tmp("run"));
    sh_ok("mkdir", cmd);
    FILE *fp = fopen(jsonl, "w");
    assert_non_null(fp);
    fprintf(fp, "{\"prompt\": \"a red house\", \"sampler\": \"euler\"}\n"
                "{\"prompt\": \"a blue car\", \"sampler\": \"euler_a\", \"width\": 96, \"negative_prompt\": \"ugly\"}\n"
                "{\"prompt\": \"a green tree\", \"sampler\": \"dpm++2m\", \"karras\": true, \"original_width\": 1024, "
                "\"original_height\": 768, \"crop_top\": 8, \"crop_left\": 16}\n"
                "{\"prompt\": \"a yellow boat\", \"sampler\": \"ddim\", \"height\": 96, \"target_width\": 2048, "
                "\"target_height\": 2048}\n"
                "{\"prompt\": \"a cat\", \"sampler\": \"unipc\", \"cfg_scale\": 1}\n"
                "{\"prompt\": \"an astronaut\", \"sampler\": \"euler\", \"init_image\": \"%s\", \"strength\": 0.5}\n",
            init);
    fclose(fp);
    snprintf(cmd, sizeof cmd, "%s enqueue --db %s --steps 3 --cfg-scale 5 -W 64 -H 64 --seed-base 77 %s", tu_bin(), db,
             jsonl);
    sh_ok("enqueue", cmd);
    snprintf(cmd, sizeof cmd, "SDRENDER_CACHE=%s " MPIRUN " -np 3 %s run --db %s -m %s/" FOLDER " --out %s -q",
             tu_tmpdir(), tu_bin(), db, td, out);
    sh_ok("mpirun run", cmd);
    jobdb *d;
    sd_error err = {0};
    jobdb_open_options oo = {.keep_journal = 1};
    assert_int_equal(jobdb_open(&d, db, &oo, &err), 0);
    for (int id = 1; id <= 6; id++) {
        sd_job j;
        assert_int_equal(jobdb_job_get(d, id, &j, &err), 1);
        if (j.status != SD_JOB_DONE) fail_msg("job %d: %s", id, j.error ? j.error : "not done");
        if (id == 3) {
            assert_int_equal(j.orig_width, 1024);
            assert_int_equal(j.orig_height, 768);
            assert_int_equal(j.crop_top, 8);
            assert_int_equal(j.crop_left, 16);
        }
        if (id == 4) assert_int_equal(j.target_width, 2048);
        char neg[256] = "", cond[256] = "", img[2048] = "";
        if (*j.negative_prompt) snprintf(neg, sizeof neg, "-n '%s'", j.negative_prompt);
        if (j.orig_width) snprintf(cond, sizeof cond, "--original-size %dx%d ", j.orig_width, j.orig_height);
        if (j.crop_top || j.crop_left)
            snprintf(cond + strlen(cond), sizeof cond - strlen(cond), "--crop-top-left %d,%d ", j.crop_top, j.crop_left);
        if (j.target_width)
            snprintf(cond + strlen(cond), sizeof cond - strlen(cond), "--target-size %dx%d", j.target_width,
                     j.target_height);
        if (j.init_image) snprintf(img, sizeof img, "-i %s --strength %g", j.init_image, j.strength);
        snprintf(cmd, sizeof cmd,
                 "SDRENDER_CACHE=%s %s generate -q -m %s/" FOLDER " -p '%s' %s --steps %d --cfg-scale %g --sampler %s %s "
                 "--seed %lld -W %d -H %d %s %s -o %s && cmp %s %s",
                 tu_tmpdir(), tu_bin(), td, j.prompt, neg, j.steps, j.cfg_scale, sampler_kind_name(j.sampler),
                 j.karras ? "--karras" : "", (long long)j.seed, j.width, j.height, cond, img, ref, ref, j.output_path);
        sh_ok("generate and cmp", cmd);
        sd_job_free(&j);
    }
    jobdb_close(d);
}

/* generate --tp 2 under mpirun: CFG-parallel byte-identical to one rank, tensor-parallel within one level of
 * diffusers' image (each rank keeps half of every layer; the added embedding stays replicated). */
static void test_tensor_parallel_generate(void **state) {
    (void)state;
    char cmd[8192], one[1024];
    const char *td = tu_testdata();
    snprintf(one, sizeof one, "%s", tu_tmp("tp1.png"));
    const char *args = "-p 'a photograph of an astronaut riding a horse' -n 'blurry, low quality' --steps 6 "
                       "--cfg-scale 5 --seed 42 -W 64 -H 64";
    snprintf(cmd, sizeof cmd, "SDRENDER_CACHE=%s %s generate -q -m %s/" FOLDER " %s -o %s", tu_tmpdir(), tu_bin(), td,
             args, one);
    sh_ok("generate", cmd);
    static const char *modes[] = {"cfg", "tensor"};
    for (int i = 0; i < 2; i++) {
        char png[1024];
        snprintf(png, sizeof png, "%s/tp_%s.png", tu_tmpdir(), modes[i]);
        snprintf(cmd, sizeof cmd, "SDRENDER_CACHE=%s " MPIRUN " -np 2 %s generate -q --tp 2 --parallel %s -m %s/" FOLDER
                 " %s -o %s", tu_tmpdir(), tu_bin(), modes[i], td, args, png);
        sh_ok("mpirun generate --tp 2", cmd);
        if (i == 0) assert_int_equal(tu_png_max_diff(png, one), 0);
        int d = tu_png_max_diff(png, tu_path("sdxl/pipeline_sdxl_euler_64.png"));
        if (d > 1) fail_msg("--parallel %s: pixels differ from diffusers' by %d", modes[i], d);
    }
}

/* A one-tensor safetensors file at tmp/name whose only tensor is called tensor. */
static const char *write_one_tensor(const char *name, const char *tensor) {
    static float v[2] = {0, 0};
    sd_tensor t = {.name = tensor, .dtype = SD_F32, .ndim = 1, .shape = {2}, .data = v, .nbytes = sizeof v};
    const char *path = tu_tmp(name);
    sd_error err = {0};
    if (st_write(path, &t, 1, NULL, NULL, 0, &err) < 0) fail_msg("%s", err.msg);
    return path;
}

/* A diffusers folder tmp/name with only a model_index.json of the given text. */
static const char *write_index(const char *name, const char *json) {
    const char *dir = tu_tmp(name);
    char *out;
    assert_int_equal(tu_sh(&out, "mkdir -p %s && printf '%%s' '%s' > %s/model_index.json", dir, json, dir), 0);
    free(out);
    return dir;
}

/* SDXL refiners, SD3 and Flux: `info` and `generate` exit 2 with one line naming what the model is. */
static void test_refiner_sd3_and_flux_are_refused_by_name(void **state) {
    (void)state;
    struct {
        const char *path, *want;
    } cases[] = {
        {write_one_tensor("sd3.safetensors", "model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"),
         "Stable Diffusion 3"},
        {write_one_tensor("flux.safetensors", "double_blocks.0.img_attn.qkv.weight"), "Flux"},
        {write_one_tensor("refiner.safetensors", "conditioner.embedders.0.model.ln_final.weight"), "SDXL refiner"},
        {write_index("sd3", "{\"_class_name\": \"StableDiffusion3Pipeline\"}"), "Stable Diffusion 3"},
        {write_index("flux", "{\"_class_name\": \"FluxPipeline\"}"), "Flux"},
        {write_index("refiner", "{\"_class_name\": \"StableDiffusionXLImg2ImgPipeline\", "
                                "\"requires_aesthetics_score\": true, \"text_encoder\": [null, null], "
                                "\"text_encoder_2\": [\"transformers\", \"CLIPTextModelWithProjection\"]}"),
         "SDXL refiner"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        for (int cmd = 0; cmd < 2; cmd++) {
            char *out;
            int rc = tu_sh(&out, "%s %s -m %s %s 2>&1 >/dev/null", tu_bin(), cmd ? "generate -q" : "info",
                           cases[i].path, cmd ? "-p x -o /dev/null" : "");
            if (rc != 2) fail_msg("%s: exit %d, want 2 (%s)", cases[i].path, rc, out);
            if (!strstr(out, cases[i].want)) fail_msg("%s: '%s' does not say '%s'", cases[i].path, out, cases[i].want);
            char *nl = strchr(out, '\n');
            if (!nl || nl[1]) fail_msg("%s: want one line, got '%s'", cases[i].path, out);
            free(out);
        }
    }
}

/* `info` names SDXL, both text encoders and the added embedding, from the folder and the single file. */
static void test_info_names_sdxl_and_its_parts(void **state) {
    (void)state;
    const char *td = tu_testdata();
    for (int single = 0; single < 2; single++) {
        char *out;
        int rc = single ? tu_sh(&out, "%s info -m %s/" SINGLE " --tokenizer %s/" FOLDER "/tokenizer", tu_bin(), td, td)
                        : tu_sh(&out, "%s info -m %s/" FOLDER, tu_bin(), td);
        assert_int_equal(rc, 0);
        const char *want[] = {"variant:      SDXL", "text_encoder_2: CLIP, 3 layers, hidden 64", "projection 32",
                              "transformer depth [1, 2, 2]", "added text/time embedding (80 inputs",
                              "scaling factor 0.13025", "tokenizer_2:"};
        for (size_t k = 0; k < sizeof want / sizeof *want; k++)
            if (!strstr(out, want[k])) fail_msg("info (%s) lacks '%s':\n%s", single ? "single" : "folder", want[k], out);
        free(out);
    }
}

int main(void) {
    tu_asan_full_stacks_for_children(); /* the sdrender processes it starts load Open MPI */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unet_golden_from_the_folder),
        cmocka_unit_test(test_unet_golden_from_the_single_file),
        cmocka_unit_test(test_pipelines_from_the_folder),
        cmocka_unit_test(test_pipelines_from_the_single_file),
        cmocka_unit_test(test_generate_matches_the_golden_pngs),
        cmocka_unit_test(test_size_conditioning),
        cmocka_unit_test(test_mpirun_jobs_are_identical_to_generate),
        cmocka_unit_test(test_tensor_parallel_generate),
        cmocka_unit_test(test_refiner_sd3_and_flux_are_refused_by_name),
        cmocka_unit_test(test_info_names_sdxl_and_its_parts),
    };
    return cmocka_run_group_tests_name("sdxl", tests, NULL, NULL);
}
