/*
 * Tests for core/sampler: schedules, trajectories and add_noise against diffusers 0.27.2
 * (golden/schedulers.json, golden/schedulers.safetensors), the scheduler part of the
 * pipeline goldens, and the errors for requests diffusers does not offer.
 */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "rng.h"
#include "sampler.h"

/* ---- helpers ---------------------------------------------------------------------------- */

static json_t *load_json(const char *rel) {
    char *text = NULL;
    size_t len = 0;
    sd_error err = {0};
    if (sd_fs_read_file(tu_path(rel), &text, &len, &err) < 0) fail_msg("%s", err.msg);
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    free(text);
    if (!j) fail_msg("%s: %s", rel, je.text);
    return j;
}

static json_t *jget(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (!v) fail_msg("schedulers.json: missing key '%s'", key);
    return v;
}

/* The SD 1.5 scheduler config of the tiny model (PNDMScheduler, no timestep_spacing key). */
static sched_config sd15_config(void) {
    sched_config c;
    sd_error err = {0};
    if (sched_config_load(&c, tu_path("models/tiny-sd15/scheduler/scheduler_config.json"), &err) < 0)
        fail_msg("%s", err.msg);
    return c;
}

/* Golden scheduler name -> sampler kind and Karras flag. */
static void kind_of(const char *name, sampler_kind *kind, int *karras) {
    *karras = 0;
    if (!strcmp(name, "dpmpp_2m_karras")) {
        *kind = SD_SAMPLER_DPMPP_2M;
        *karras = 1;
        return;
    }
    if (!strcmp(name, "ddim_vpred")) name = "ddim";
    if (!strcmp(name, "euler_vpred")) name = "euler";
    if (sampler_kind_parse(name, kind) < 0) fail_msg("unknown scheduler name '%s' in the golden data", name);
}

static sampler_state *make(sampler_kind kind, const sched_config *cfg, int steps, int karras, float eta) {
    sampler_state *s = NULL;
    sd_error err = {0};
    if (sampler_create(&s, kind, cfg, steps, karras, eta, &err) < 0)
        fail_msg("sampler_create(%s, %d steps): %s", sampler_kind_name(kind), steps, err.msg);
    return s;
}

/* JSON number or "inf"/"-inf"/"nan" string. */
static double jnum(json_t *v) {
    if (json_is_number(v)) return json_number_value(v);
    const char *s = json_string_value(v);
    if (s && !strcmp(s, "inf")) return INFINITY;
    if (s && !strcmp(s, "-inf")) return -INFINITY;
    return NAN;
}

static void expect_rel(const char *label, int idx, double got, double want, double rtol) {
    double d = fabs(got - want);
    if (!(d <= rtol * fabs(want)) && !(want == 0 && d <= rtol))
        fail_msg("%s[%d]: got %.9g, want %.9g (relative tolerance %g)", label, idx, got, want, rtol);
}

/* Checks timesteps (exact), num_timesteps, order, init_noise_sigma and sigmas of one golden entry. */
static void expect_schedule(const char *label, const sampler_state *s, json_t *g) {
    json_t *ts = jget(g, "timesteps");
    int n = (int)json_array_size(ts);
    if (sampler_num_evals(s) != n) fail_msg("%s: %d evaluations, want %d", label, sampler_num_evals(s), n);
    json_t *nt = json_object_get(g, "num_timesteps");
    if (nt) assert_int_equal(json_integer_value(nt), n);
    const double *got = sampler_timesteps(s);
    for (int i = 0; i < n; i++) {
        double want = jnum(json_array_get(ts, i));
        if (got[i] != want) fail_msg("%s: timestep %d is %.9g, want %.9g", label, i, got[i], want);
    }
    const char *dtype = json_string_value(json_object_get(g, "timesteps_dtype"));
    if (dtype) assert_int_equal(sampler_timesteps_are_integers(s), !strcmp(dtype, "int64"));
    json_t *ord = json_object_get(g, "order");
    if (ord) assert_int_equal(sampler_order(s), json_integer_value(ord));
    expect_rel(label, -1, sampler_init_noise_sigma(s), jnum(jget(g, "init_noise_sigma")), 2e-6);
    json_t *sig = json_object_get(g, "sigmas");
    int ns = 0;
    const float *sg = sampler_sigmas(s, &ns);
    if (!sig) {
        assert_null(sg);
        return;
    }
    if (ns != (int)json_array_size(sig)) fail_msg("%s: %d sigmas, want %zu", label, ns, json_array_size(sig));
    for (int i = 0; i < ns; i++) expect_rel(label, i, sg[i], jnum(json_array_get(sig, i)), 2e-6);
}

/* ---- schedules -------------------------------------------------------------------------- */

static void test_sampler_betas_and_alphas_cumprod_equal_torch_float32(void **state) {
    (void)state;
    st_file f;
    tu_open(&f, "golden/schedulers.safetensors");
    sched_config cfg = sd15_config();
    sampler_state *s = make(SD_SAMPLER_DDIM, &cfg, 10, 0, 0.0f);
    const char *names[2] = {"betas", "alphas_cumprod"};
    const float *got[2];
    int n0, n1;
    got[0] = sampler_betas(s, &n0);
    got[1] = sampler_alphas_cumprod(s, &n1);
    assert_int_equal(n0, 1000);
    assert_int_equal(n1, 1000);
    for (int k = 0; k < 2; k++) {
        size_t n;
        float *want = tu_f32(&f, names[k], &n);
        assert_int_equal(n, 1000);
        /* computed in float32 the same way, so equal bit for bit */
        for (size_t i = 0; i < n; i++)
            if (got[k][i] != want[i])
                fail_msg("%s[%zu] = %.9g, want %.9g", names[k], i, got[k][i], want[i]);
        free(want);
    }
    sampler_free(s);
    st_close(&f);
}

/* Every scheduler of schedulers.json at 1, 2, 10, 20 and 50 steps, from the SD 1.5 config. */
static void test_sampler_timesteps_and_sigmas_match_diffusers_for_every_scheduler_and_step_count(void **state) {
    (void)state;
    json_t *root = load_json("golden/schedulers.json");
    json_t *scheds = jget(root, "schedulers");
    sched_config cfg = sd15_config();
    const char *name;
    json_t *entry;
    int checked = 0;
    json_object_foreach(scheds, name, entry) {
        sampler_kind kind;
        int karras;
        kind_of(name, &kind, &karras);
        const char *key;
        json_t *g;
        json_object_foreach(jget(entry, "steps"), key, g) {
            int steps = atoi(key);
            sampler_state *s = make(kind, &cfg, steps, karras, 0.0f);
            char label[96];
            snprintf(label, sizeof label, "%s, %d steps", name, steps);
            expect_schedule(label, s, g);
            sampler_free(s);
            checked++;
        }
    }
    assert_int_equal(checked, 9 * 5);
    json_decref(root);
}

/* spacing_variants: timestep_spacing set explicitly to leading, linspace or trailing. */
static void test_sampler_each_timestep_spacing_matches_diffusers(void **state) {
    (void)state;
    json_t *root = load_json("golden/schedulers.json");
    json_t *scheds = jget(root, "schedulers");
    const char *name;
    json_t *entry;
    int checked = 0;
    json_object_foreach(scheds, name, entry) {
        json_t *variants = json_object_get(entry, "spacing_variants");
        if (!variants) continue;
        sampler_kind kind;
        int karras;
        kind_of(name, &kind, &karras);
        const char *sp;
        json_t *v;
        json_object_foreach(variants, sp, v) {
            sched_config cfg = sd15_config();
            if (!strcmp(sp, "leading")) cfg.timestep_spacing = SCHED_SPACING_LEADING;
            else if (!strcmp(sp, "linspace")) cfg.timestep_spacing = SCHED_SPACING_LINSPACE;
            else if (!strcmp(sp, "trailing")) cfg.timestep_spacing = SCHED_SPACING_TRAILING;
            else fail_msg("unknown spacing '%s'", sp);
            const char *key;
            json_t *g;
            json_object_foreach(v, key, g) {
                sampler_state *s = make(kind, &cfg, atoi(key), karras, 0.0f);
                char label[96];
                snprintf(label, sizeof label, "%s, %s spacing, %s steps", name, sp, key);
                expect_schedule(label, s, g);
                sampler_free(s);
                checked++;
            }
        }
    }
    assert_int_equal(checked, 6 * 3 * 2);
    json_decref(root);
}

/* A config saved by diffusers lists defaulted keys in _use_default_values; from_config then
 * gives each class its own default spacing (here: Euler must use linspace, not leading). */
static void test_sampler_use_default_values_spacing_falls_back_to_the_class_default(void **state) {
    (void)state;
    json_t *root = load_json("golden/schedulers.json");
    char *text = json_dumps(jget(root, "base_config_sd15"), 0);
    assert_non_null(text);
    sched_config cfg;
    sd_error err = {0};
    assert_int_equal(sched_config_from_json(&cfg, text, &err), 0);
    assert_int_equal(cfg.timestep_spacing, SCHED_SPACING_DEFAULT);
    sampler_state *s = make(SD_SAMPLER_EULER, &cfg, 10, 0, 0.0f);
    assert_true(sampler_timesteps(s)[0] == 999.0);
    sampler_free(s);
    s = make(SD_SAMPLER_DDIM, &cfg, 10, 0, 0.0f);
    assert_true(sampler_timesteps(s)[0] == 901.0);
    sampler_free(s);
    free(text);
    json_decref(root);
}

/* With linspace spacing (and N > 1) the interpolated sigmas span the training range, so Euler, LMS,
 * Heun and UniPC with --karras must use the Karras sigmas of the dpmpp_2m_karras golden,
 * with timesteps whose rounding gives its integer timesteps. */
static void test_sampler_karras_sigmas_agree_with_the_dpmpp_golden_for_every_sampler(void **state) {
    (void)state;
    json_t *root = load_json("golden/schedulers.json");
    json_t *steps = jget(jget(jget(root, "schedulers"), "dpmpp_2m_karras"), "steps");
    sched_config cfg = sd15_config();
    const sampler_kind kinds[4] = {SD_SAMPLER_EULER, SD_SAMPLER_LMS, SD_SAMPLER_HEUN, SD_SAMPLER_UNIPC};
    const char *key;
    json_t *g;
    json_object_foreach(steps, key, g) {
        int N = atoi(key);
        if (N == 1) continue; /* one linspace step is t = 0 for Euler & co.: a different range */
        json_t *sig = jget(g, "sigmas"), *ts = jget(g, "timesteps");
        for (int k = 0; k < 4; k++) {
            sampler_state *s = make(kinds[k], &cfg, N, 1, 0.0f);
            int ns;
            const float *sg = sampler_sigmas(s, &ns);
            const double *t = sampler_timesteps(s);
            int heun = kinds[k] == SD_SAMPLER_HEUN;
            char label[64];
            snprintf(label, sizeof label, "%s karras, %d steps", sampler_kind_name(kinds[k]), N);
            for (int i = 0; i < N; i++) {
                int at = heun && i > 0 ? 2 * i - 1 : i; /* heun repeats all but the first */
                expect_rel(label, i, sg[at], jnum(json_array_get(sig, i)), 2e-6);
                double want_t = jnum(json_array_get(ts, i));
                if (nearbyint(t[at]) != want_t) fail_msg("%s: timestep %d is %.6f, want ~%g", label, i, t[at], want_t);
            }
            float last = sg[ns - 1];
            if (kinds[k] == SD_SAMPLER_UNIPC) assert_true(last == sg[ns - 2]); /* the last sigma repeated */
            else assert_true(last == 0.0f);
            sampler_free(s);
        }
    }
    json_decref(root);
}

/* ---- trajectories ----------------------------------------------------------------------- */

/* Runs trajectory `name` of schedulers.safetensors with the closed-form model and checks
 * scaled inputs, model outputs, every latent, the final latent and the drawn noise. */
static void run_trajectory(const char *name, json_t *info, const st_file *f) {
    char tn[128];
    sampler_kind kind;
    int karras;
    kind_of(name, &kind, &karras);
    sched_config cfg = sd15_config();
    const char *pred = json_string_value(jget(info, "prediction_type"));
    if (!strcmp(pred, "v_prediction")) cfg.prediction_type = SCHED_PRED_V;
    int steps = (int)json_integer_value(jget(info, "num_inference_steps"));
    sampler_state *s = make(kind, &cfg, steps, karras, 0.0f);
    int n_evals = (int)json_integer_value(jget(info, "num_model_evaluations"));
    assert_int_equal(sampler_num_evals(s), n_evals);
    expect_rel(name, -1, sampler_init_noise_sigma(s), jnum(jget(info, "init_noise_sigma")), 2e-6);

    size_t n, nn;
    snprintf(tn, sizeof tn, "traj.%s.noise_base", name);
    float *noise_base = tu_f32(f, tn, &n);
    float *x = malloc(n * sizeof *x), *in = malloc(n * sizeof *in), *mo = malloc(n * sizeof *mo);
    assert_true(x && in && mo);
    sd_rng gen;
    sd_rng_seed(&gen, (uint64_t)json_integer_value(jget(info, "noise_base_seed")));
    sd_rng_randn(&gen, x, n);
    snprintf(tn, sizeof tn, "%s noise_base", name);
    tu_expect_close(tn, x, noise_base, n, 0.0);
    float sigma0 = sampler_init_noise_sigma(s);
    for (size_t k = 0; k < n; k++) x[k] = x[k] * sigma0;
    snprintf(tn, sizeof tn, "traj.%s.x_T", name);
    float *want_xt = tu_f32(f, tn, NULL);
    tu_expect_close(tn, x, want_xt, n, 2e-6 * tu_peak(want_xt, n));

    snprintf(tn, sizeof tn, "traj.%s.timesteps", name);
    float *want_ts = tu_f32(f, tn, &nn);
    assert_int_equal(nn, (size_t)n_evals);
    snprintf(tn, sizeof tn, "traj.%s.scaled_inputs", name);
    float *want_in = tu_f32(f, tn, NULL);
    snprintf(tn, sizeof tn, "traj.%s.model_outputs", name);
    float *want_mo = tu_f32(f, tn, NULL);
    snprintf(tn, sizeof tn, "traj.%s.latents_after_step", name);
    float *want_lat = tu_f32(f, tn, &nn);
    double peak_in = tu_peak(want_in, nn), peak_mo = tu_peak(want_mo, nn), peak_lat = tu_peak(want_lat, nn);

    /* the step generator: torch.Generator().manual_seed(0) passed to every step that takes one */
    json_t *gseed = json_object_get(info, "step_generator_seed");
    sd_rng step_gen;
    sd_rng_seed(&step_gen, gseed && json_is_integer(gseed) ? (uint64_t)json_integer_value(gseed) : 0);
    for (int i = 0; i < n_evals; i++) {
        char label[128];
        float t = sampler_timestep(s, i);
        if (t != want_ts[i]) fail_msg("%s: timestep %d is %.9g, want %.9g", name, i, t, want_ts[i]);
        sampler_scale_model_input(s, i, x, in, n);
        snprintf(label, sizeof label, "%s scaled_inputs[%d]", name, i);
        tu_expect_close(label, in, want_in + (size_t)i * n, n, 1e-5 * peak_in);
        float c = (float)(0.05 * cos(sampler_timesteps(s)[i] / 100));
        for (size_t k = 0; k < n; k++) {
            float p = 0.1f * in[k];
            mo[k] = p + c;
        }
        snprintf(label, sizeof label, "%s model_outputs[%d]", name, i);
        tu_expect_close(label, mo, want_mo + (size_t)i * n, n, 1e-5 * peak_mo);
        sd_error err = {0};
        if (sampler_step(s, i, mo, x, n, &step_gen, &err) < 0) fail_msg("%s step %d: %s", name, i, err.msg);
        snprintf(label, sizeof label, "%s latents_after_step[%d]", name, i);
        tu_expect_close(label, x, want_lat + (size_t)i * n, n, 1e-5 * peak_lat);
    }
    snprintf(tn, sizeof tn, "traj.%s.final", name);
    float *want_final = tu_f32(f, tn, NULL);
    tu_expect_close(tn, x, want_final, n, 1e-5 * tu_peak(want_final, n));

    /* the noise the scheduler drew: same stream, same count (and nothing more) */
    int draws = (int)json_integer_value(jget(info, "num_noise_draws"));
    sd_rng ref;
    sd_rng_seed(&ref, 0);
    if (draws > 0) {
        snprintf(tn, sizeof tn, "traj.%s.drawn_noise", name);
        float *want_noise = tu_f32(f, tn, &nn);
        assert_int_equal(nn, (size_t)draws * n);
        for (int d = 0; d < draws; d++) {
            sd_rng_randn(&ref, mo, n);
            char label[128];
            snprintf(label, sizeof label, "%s drawn_noise[%d]", name, d);
            tu_expect_close(label, mo, want_noise + (size_t)d * n, n, 0.0);
        }
        free(want_noise);
    }
    for (int k = 0; k < 4; k++) assert_int_equal(sd_rng_u32(&step_gen), sd_rng_u32(&ref));

    free(want_final);
    free(want_lat);
    free(want_mo);
    free(want_in);
    free(want_ts);
    free(want_xt);
    free(noise_base);
    free(x);
    free(in);
    free(mo);
    sampler_free(s);
}

static void test_sampler_trajectories_follow_diffusers_for_every_scheduler(void **state) {
    (void)state;
    json_t *root = load_json("golden/schedulers.json");
    st_file f;
    tu_open(&f, "golden/schedulers.safetensors");
    const char *name;
    json_t *info;
    int checked = 0;
    json_object_foreach(jget(root, "trajectories"), name, info) {
        run_trajectory(name, info, &f);
        checked++;
    }
    assert_int_equal(checked, 11);
    st_close(&f);
    json_decref(root);
}

/* ---- add_noise -------------------------------------------------------------------------- */

static void test_sampler_add_noise_matches_ddim_and_euler(void **state) {
    (void)state;
    st_file f;
    tu_open(&f, "golden/schedulers.safetensors");
    size_t n;
    float *x0 = tu_f32(&f, "add_noise.x0", &n);
    float *noise = tu_f32(&f, "add_noise.noise", NULL);
    float *buf = malloc(n * sizeof *buf);
    assert_non_null(buf);
    sd_rng g;
    sd_rng_seed(&g, 11);
    sd_rng_randn(&g, buf, n);
    tu_expect_close("add_noise.x0 from seed 11", buf, x0, n, 0.0);
    sd_rng_randn(&g, buf, n);
    tu_expect_close("add_noise.noise from seed 11", buf, noise, n, 0.0);

    /* DDIM's add_noise depends on t only; 1000 trailing steps contain every t */
    sched_config cfg = sd15_config();
    cfg.timestep_spacing = SCHED_SPACING_TRAILING;
    sampler_state *s = make(SD_SAMPLER_DDIM, &cfg, 1000, 0, 0.0f);
    const int ts[3] = {1, 401, 999};
    for (int k = 0; k < 3; k++) {
        int idx = -1;
        for (int i = 0; i < sampler_num_evals(s); i++)
            if (sampler_timesteps(s)[i] == ts[k]) idx = i;
        assert_true(idx >= 0);
        char name[64];
        snprintf(name, sizeof name, "add_noise.ddim.t%d", ts[k]);
        float *want = tu_f32(&f, name, NULL);
        sampler_add_noise(s, idx, x0, noise, buf, n);
        tu_expect_close(name, buf, want, n, 1e-6 * tu_peak(want, n));
        free(want);
    }
    sampler_free(s);

    cfg = sd15_config();
    s = make(SD_SAMPLER_EULER, &cfg, 10, 0, 0.0f);
    assert_true(sampler_timesteps(s)[4] == 555.0);
    float *want = tu_f32(&f, "add_noise.euler.t_index4_of_10", NULL);
    sampler_add_noise(s, 4, x0, noise, buf, n);
    tu_expect_close("add_noise.euler.t_index4_of_10", buf, want, n, 1e-6 * tu_peak(want, n));
    free(want);
    sampler_free(s);
    free(buf);
    free(x0);
    free(noise);
    st_close(&f);
}

/* ---- the scheduler inside the pipeline goldens --------------------------------------------- */

/* Replays a pipeline golden's loop: the recorded guided U-Net outputs go into our steps,
 * starting from our own start latent (txt2img: seed's randn * init_noise_sigma; img2img:
 * add_noise at the strength's first timestep), and every latent must follow the reference. */
static void replay_pipeline(const char *cas) {
    char rel[128];
    snprintf(rel, sizeof rel, "golden/pipeline_%s.json", cas);
    json_t *j = load_json(rel);
    json_t *settings = jget(j, "settings");
    const char *sched = json_string_value(jget(settings, "scheduler"));
    const char *model = json_string_value(jget(settings, "model"));
    const char *task = json_string_value(jget(settings, "task"));
    int steps = (int)json_integer_value(jget(settings, "num_inference_steps"));
    snprintf(rel, sizeof rel, "models/%s/scheduler/scheduler_config.json", model);
    sched_config cfg;
    sd_error err = {0};
    if (sched_config_load(&cfg, tu_path(rel), &err) < 0) fail_msg("%s", err.msg);
    sampler_kind kind;
    int karras;
    kind_of(sched, &kind, &karras);
    sampler_state *s = make(kind, &cfg, steps, karras, 0.0f);

    st_file f;
    snprintf(rel, sizeof rel, "golden/pipeline_%s.safetensors", cas);
    tu_open(&f, rel);
    size_t n, nn;
    float *x = tu_f32(&f, "latents_init", &n);
    float *init = malloc(n * sizeof *init);
    assert_non_null(init);
    sd_rng gen;
    sd_rng_seed(&gen, (uint64_t)json_integer_value(jget(settings, "seed")));
    int first = 0;
    if (!strcmp(task, "img2img")) {
        assert_int_equal(sampler_set_strength(s, jnum(jget(settings, "strength")), &first, &err), 0);
        float *lat = tu_f32(&f, "image_latents", NULL);
        float *noise = tu_f32(&f, "add_noise", NULL);
        sampler_add_noise(s, first, lat, noise, init, n);
        free(lat);
        free(noise);
    } else {
        sd_rng_randn(&gen, init, n);
        float *want_noise = tu_f32(&f, "init_noise", NULL);
        tu_expect_close("init_noise", init, want_noise, n, 0.0);
        free(want_noise);
        for (size_t k = 0; k < n; k++) init[k] = init[k] * sampler_init_noise_sigma(s);
    }
    snprintf(rel, sizeof rel, "%s latents_init", cas);
    tu_expect_close(rel, init, x, n, 1e-6 * tu_peak(x, n));
    memcpy(x, init, n * sizeof *x);

    float *ts = tu_f32(&f, "timesteps", &nn);
    int n_evals = (int)nn;
    assert_int_equal(sampler_num_evals(s) - first, n_evals);
    float *eps = tu_f32(&f, "noise_pred_steps", NULL);
    float *want = tu_f32(&f, "latents_steps", &nn);
    double peak = tu_peak(want, nn);
    const sd_tensor *drawn = st_find(&f, "scheduler_noise");
    float *want_drawn = drawn ? tu_f32(&f, "scheduler_noise", NULL) : NULL;
    for (int e = 0; e < n_evals; e++) {
        int i = first + e;
        if (sampler_timestep(s, i) != ts[e])
            fail_msg("%s: timestep %d is %g, want %g", cas, e, sampler_timestep(s, i), ts[e]);
        if (want_drawn) { /* the draws must continue the seed's stream after init_noise */
            sd_rng peek = gen;
            sd_rng_randn(&peek, init, n);
            snprintf(rel, sizeof rel, "%s scheduler_noise[%d]", cas, e);
            tu_expect_close(rel, init, want_drawn + (size_t)e * n, n, 0.0);
        }
        if (sampler_step(s, i, eps + (size_t)e * n, x, n, &gen, &err) < 0) fail_msg("%s: %s", cas, err.msg);
        snprintf(rel, sizeof rel, "%s latents_steps[%d]", cas, e);
        tu_expect_close(rel, x, want + (size_t)e * n, n, 5e-5 * peak);
    }
    free(want_drawn);
    free(want);
    free(eps);
    free(ts);
    free(init);
    free(x);
    st_close(&f);
    sampler_free(s);
    json_decref(j);
}

static void test_sampler_replays_every_pipeline_golden_loop(void **state) {
    (void)state;
    static const char *cases[] = {"sd15_pndm_96",        "sd15_ddim_96",          "sd15_euler_96",
                                  "sd15_euler_a_96",     "sd15_dpmpp_2m_karras_96", "sd15_ddim_nocfg_96",
                                  "sd2_ddim_vpred_96",   "sd15_img2img_ddim_96",  "inpaint_pndm_96",
                                  "sd15_pndm_64x96"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) replay_pipeline(cases[i]);
}

/* ---- img2img ---------------------------------------------------------------------------- */

static void test_sampler_strength_skips_steps_like_the_img2img_pipeline(void **state) {
    (void)state;
    sched_config cfg = sd15_config();
    sd_error err = {0};
    int first = -1;
    sampler_state *s = make(SD_SAMPLER_DDIM, &cfg, 10, 0, 0.0f);
    assert_int_equal(sampler_set_strength(s, 0.6, &first, &err), 0);
    assert_int_equal(first, 4);
    assert_int_equal(sampler_first_eval(s), 4);
    assert_true(sampler_timestep(s, first) == 501.0f);
    sampler_free(s);
    /* int(10 * 0.7) = 7 in float64 (in float32 it would be 6) */
    s = make(SD_SAMPLER_EULER, &cfg, 10, 0, 0.0f);
    assert_int_equal(sampler_set_strength(s, 0.7, &first, &err), 0);
    assert_int_equal(first, 3);
    sampler_free(s);
    /* heun: order 2, so the loop starts at t_start * 2 */
    s = make(SD_SAMPLER_HEUN, &cfg, 10, 0, 0.0f);
    assert_int_equal(sampler_set_strength(s, 0.5, &first, &err), 0);
    assert_int_equal(first, 10);
    assert_true(sampler_timestep(s, first) == sampler_timestep(s, first - 1));
    sampler_free(s);
    /* strength 1 runs everything */
    s = make(SD_SAMPLER_PNDM, &cfg, 10, 0, 0.0f);
    assert_int_equal(sampler_set_strength(s, 1.0, &first, &err), 0);
    assert_int_equal(first, 0);
    sampler_free(s);
}

/* ---- DDIM with eta -------------------------------------------------------------------- */

/* eta > 0: DDIM (Song et al. eq. 12) adds sigma_t * noise with
 * sigma_t = eta * sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)), the noise being one
 * randn of the latent's size from the generator per step (diffusers draws it after the update). */
static void test_sampler_ddim_eta_draws_variance_noise_from_the_generator(void **state) {
    (void)state;
    sched_config cfg = sd15_config();
    const float eta = 0.8f;
    sampler_state *a = make(SD_SAMPLER_DDIM, &cfg, 10, 0, eta);
    assert_true(sampler_draws_noise(a));
    enum { N = 64 };
    float x[N], m[N], noise[N];
    double want[N];
    for (int k = 0; k < N; k++) {
        x[k] = (float)sin(k * 0.37) * 2.0f;
        m[k] = (float)cos(k * 0.11);
    }
    sd_rng g, ref;
    sd_rng_seed(&g, 5);
    sd_rng_seed(&ref, 5);
    sd_rng_randn(&ref, noise, N);
    const float *ac = sampler_alphas_cumprod(a, NULL);
    assert_true(sampler_timesteps(a)[0] == 901.0);
    double a_t = ac[901], a_prev = ac[801];
    double std_dev = eta * sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev));
    for (int k = 0; k < N; k++) {
        double x0 = (x[k] - sqrt(1 - a_t) * m[k]) / sqrt(a_t);
        want[k] = sqrt(a_prev) * x0 + sqrt(1 - a_prev - std_dev * std_dev) * m[k] + std_dev * noise[k];
    }
    sd_error err = {0};
    assert_int_equal(sampler_step(a, 0, m, x, N, &g, &err), 0);
    for (int k = 0; k < N; k++)
        if (fabs(x[k] - want[k]) > 1e-5 * (1 + fabs(want[k])))
            fail_msg("ddim eta: element %d is %.9g, want %.9g", k, x[k], want[k]);
    /* exactly one draw of N values */
    assert_int_equal(sd_rng_u32(&g), sd_rng_u32(&ref));
    /* a generator is required */
    assert_true(sampler_step(a, 1, m, x, N, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "generator"));
    sampler_free(a);
}

/* ---- errors ----------------------------------------------------------------------------- */

static void expect_create_error(sampler_kind kind, const sched_config *cfg, int steps, int karras, float eta,
                                int code, const char *needle) {
    sampler_state *s = (sampler_state *)1;
    sd_error err = {0};
    int rc = sampler_create(&s, kind, cfg, steps, karras, eta, &err);
    if (rc != code) fail_msg("%s: expected error %d, got %d (%s)", sampler_kind_name(kind), code, rc, err.msg);
    assert_null(s);
    if (!strstr(err.msg, needle)) fail_msg("error message '%s' lacks '%s'", err.msg, needle);
}

static void test_sampler_rejects_invalid_requests_with_clear_errors(void **state) {
    (void)state;
    sched_config cfg = sd15_config();
    expect_create_error(SD_SAMPLER_EULER, &cfg, 0, 0, 0.0f, SD_EINPUT, "0 steps");
    expect_create_error(SD_SAMPLER_EULER, &cfg, 1001, 0, 0.0f, SD_EINPUT, "1 to 1000");
    expect_create_error(SD_SAMPLER_DDIM, &cfg, 10, 1, 0.0f, SD_EINPUT, "--karras");
    expect_create_error(SD_SAMPLER_PNDM, &cfg, 10, 1, 0.0f, SD_EINPUT, "--karras");
    expect_create_error(SD_SAMPLER_EULER_A, &cfg, 10, 1, 0.0f, SD_EUNSUPPORTED, "Karras");
    expect_create_error(SD_SAMPLER_EULER, &cfg, 10, 0, 0.5f, SD_EINPUT, "eta");
    expect_create_error(SD_SAMPLER_DDIM, &cfg, 10, 0, -1.0f, SD_EINPUT, "eta");
    expect_create_error(SD_SAMPLER_COUNT, &cfg, 10, 0, 0.0f, SD_EINPUT, "unknown");
    sched_config c2 = cfg;
    c2.skip_prk_steps = 0;
    expect_create_error(SD_SAMPLER_PNDM, &c2, 10, 0, 0.0f, SD_EUNSUPPORTED, "skip_prk_steps");
    c2 = cfg;
    c2.prediction_type = SCHED_PRED_SAMPLE;
    expect_create_error(SD_SAMPLER_EULER_A, &c2, 10, 0, 0.0f, SD_EUNSUPPORTED, "sample");
    c2 = cfg;
    c2.timestep_spacing = SCHED_SPACING_TRAILING; /* np.arange gives 62 values, the last -1 */
    expect_create_error(SD_SAMPLER_DDIM, &c2, 61, 0, 0.0f, SD_EUNSUPPORTED, "trailing");
    c2 = cfg;
    c2.timestep_spacing = SCHED_SPACING_LEADING; /* 999 * 1 + steps_offset 1 = 1000 */
    expect_create_error(SD_SAMPLER_DDIM, &c2, 1000, 0, 0.0f, SD_EUNSUPPORTED, "past the 1000");

    sampler_state *s = make(SD_SAMPLER_DPMPP_2M, &cfg, 10, 0, 0.0f);
    sd_error err = {0};
    int first;
    assert_int_equal(sampler_set_strength(s, 1.5, &first, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "[0, 1]"));
    assert_int_equal(sampler_set_strength(s, 0.05, &first, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "no step"));
    float x[16] = {0}, m[16] = {0};
    assert_true(sampler_step(s, 1, m, x, 16, NULL, &err) < 0); /* out of order */
    assert_non_null(strstr(err.msg, "expected step 0"));
    assert_int_equal(sampler_step(s, 0, m, x, 16, NULL, &err), 0);
    assert_true(sampler_step(s, 1, m, x, 8, NULL, &err) < 0); /* latent size changed */
    assert_non_null(strstr(err.msg, "changed"));
    sampler_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sampler_betas_and_alphas_cumprod_equal_torch_float32),
        cmocka_unit_test(test_sampler_timesteps_and_sigmas_match_diffusers_for_every_scheduler_and_step_count),
        cmocka_unit_test(test_sampler_each_timestep_spacing_matches_diffusers),
        cmocka_unit_test(test_sampler_use_default_values_spacing_falls_back_to_the_class_default),
        cmocka_unit_test(test_sampler_karras_sigmas_agree_with_the_dpmpp_golden_for_every_sampler),
        cmocka_unit_test(test_sampler_trajectories_follow_diffusers_for_every_scheduler),
        cmocka_unit_test(test_sampler_add_noise_matches_ddim_and_euler),
        cmocka_unit_test(test_sampler_replays_every_pipeline_golden_loop),
        cmocka_unit_test(test_sampler_strength_skips_steps_like_the_img2img_pipeline),
        cmocka_unit_test(test_sampler_ddim_eta_draws_variance_noise_from_the_generator),
        cmocka_unit_test(test_sampler_rejects_invalid_requests_with_clear_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
