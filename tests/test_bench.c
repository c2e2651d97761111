/* Tests for `sdrender bench`: its command line (a run of the SD 1.5 architecture needs 2 GB of random weights,
 * see make bench) and a real run on the tiny single-file model with -m. */
#include "testutil.h"
#include "ops.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clip.h"
#include "model.h"
#include "unet.h"
#include "vae.h"

static void test_bench_rejects_sizes_that_are_not_multiples_of_8(void **state) {
    (void)state;
    char *out = NULL;
    int rc = tu_sh(&out, "%s bench -W 100 -H 64 2>&1", tu_bin());
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "multiples of 8"));
    assert_non_null(strstr(out, "sdrender: "));
    free(out);
    rc = tu_sh(&out, "%s bench --steps 0 2>&1", tu_bin());
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "--steps"));
    free(out);
}

static void test_bench_help_lists_the_json_option(void **state) {
    (void)state;
    char *out = NULL;
    assert_int_equal(tu_sh(&out, "%s bench --help", tu_bin()), 0);
    assert_non_null(strstr(out, "--json"));
    assert_non_null(strstr(out, "--threads"));
    free(out);
}

static void test_bench_model_option_fails_cleanly_until_wired(void **state) {
    (void)state;
    char *out = NULL;
    int rc = tu_sh(&out, "%s bench -m /nonexistent/model 2>&1", tu_bin());
    assert_true(rc == 2 || rc == 1);
    assert_non_null(strstr(out, "/nonexistent/model"));
    free(out);
}

static double num(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (!json_is_number(v)) fail_msg("bench JSON: '%s' is missing or not a number", key);
    return json_number_value(v);
}

/* Fails unless |got - want| <= 1e-5 |want| (the JSON keeps 6 significant digits). */
static void expect_rel(const char *key, double got, double want) {
    if (!(fabs(got - want) <= 1e-5 * fabs(want))) fail_msg("bench JSON: %s = %.9g, expected %.9g", key, got, want);
}

/* bench -m on the tiny single file with generate's --tokenizer (64x64, one timed step): every key is there,
 * sizes echo the options, times are positive and finite, and the GFLOP counts are the model's own. */
static void test_bench_times_a_tiny_model_with_generates_model_options(void **state) {
    (void)state;
    char ckpt[1024], tok[1024], json[1024];
    snprintf(ckpt, sizeof ckpt, "%s", tu_path("models/tiny-sd15.safetensors"));
    snprintf(tok, sizeof tok, "%s", tu_path("models/tiny-sd15/tokenizer"));
    snprintf(json, sizeof json, "%s", tu_tmp("bench.json"));
    char *out = NULL;
    int rc = tu_sh(&out, "%s bench -m %s --tokenizer %s -W 64 -H 64 --steps 1 --threads 1 --json %s 2>&1", tu_bin(),
                   ckpt, tok, json);
    if (rc != 0) fail_msg("bench -m exited %d: %s", rc, out);
    assert_non_null(strstr(out, "tiny-sd15.safetensors"));
    assert_non_null(strstr(out, "latent 8x8"));
    free(out);

    json_error_t je;
    json_t *o = json_load_file(json, 0, &je);
    if (!o) fail_msg("%s: %s", json, je.text);
    assert_int_equal(num(o, "width"), 64);
    assert_int_equal(num(o, "height"), 64);
    assert_int_equal(num(o, "steps"), 1);
    assert_int_equal(num(o, "threads"), 1);
    /* the machine and the kernels are named: results from different machines are told apart */
    const char *cpu = json_string_value(json_object_get(o, "cpu"));
    const char *attn = json_string_value(json_object_get(o, "attention_kernel"));
    if (!cpu || !strchr(cpu, '(') || !attn || !*attn) fail_msg("bench JSON: 'cpu' or 'attention_kernel' missing");
    static const char *const positive[] = {"sgemm_gflops", "unet_first_step_s", "unet_step_s", "unet_gflop",
                                           "unet_gflops", "unet_vs_sgemm", "vae_decode_s", "vae_decode_gflop",
                                           "vae_decode_gflops", "text_encoder_s", "text_encoder_gflop",
                                           "peak_rss_mb", "unet_scratch_mb", "vae_scratch_mb"};
    for (size_t i = 0; i < sizeof positive / sizeof *positive; i++) {
        double v = num(o, positive[i]);
        if (!(v > 0 && isfinite(v))) fail_msg("bench JSON: %s = %g, expected a positive finite number", positive[i], v);
    }
    /* a single step of an 8x8 latent: seconds, not minutes; the process fits in well under a GB */
    assert_true(num(o, "unet_step_s") < 60);
    assert_true(num(o, "peak_rss_mb") < 1024);
    expect_rel("unet_gflops", num(o, "unet_gflops"), num(o, "unet_gflop") / num(o, "unet_step_s"));
    expect_rel("vae_decode_gflops", num(o, "vae_decode_gflops"), num(o, "vae_decode_gflop") / num(o, "vae_decode_s"));
    expect_rel("unet_vs_sgemm", num(o, "unet_vs_sgemm"), num(o, "unet_gflops") / num(o, "sgemm_gflops"));

    /* the counts are the tiny model's (CFG batch 2, 77 tokens), not the SD 1.5 architecture's */
    sd_model m;
    sd_error err = {0};
    sd_model_opts opts = {.tokenizer = tok};
    if (sd_model_open(&m, ckpt, &opts, &err) < 0) fail_msg("%s", err.msg);
    expect_rel("unet_gflop", num(o, "unet_gflop"), unet_flops(&m.unet, 2, 8, 8, 77) / 1e9);
    expect_rel("vae_decode_gflop", num(o, "vae_decode_gflop"), vae_decode_flops(&m.vae, 1, 8, 8) / 1e9);
    expect_rel("text_encoder_gflop", num(o, "text_encoder_gflop"), clip_text_flops(&m.clip, 2, 77) / 1e9);
    sd_model_close(&m);
    json_decref(o);

    /* --tokenizer means nothing without a model */
    rc = tu_sh(&out, "%s bench --tokenizer %s 2>&1", tu_bin(), tok);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "--tokenizer"));
    free(out);
}

/* bench -m reads the model's tokenizer as generate does: a --tokenizer that does not exist fails with its
 * path (it was accepted and ignored), and a model whose vocabulary is smaller than CLIP's (init-model's
 * 871 tokens) is timed on ids of its own (fixed ids up to 49406 made bench fail on it). */
static void test_bench_model_uses_its_own_tokenizer(void **state) {
    (void)state;
    char ckpt[1024], dir[1024];
    snprintf(ckpt, sizeof ckpt, "%s", tu_path("models/tiny-sd15.safetensors"));
    snprintf(dir, sizeof dir, "%s", tu_tmp("tiny-own-vocab"));
    char *out = NULL;
    int rc = tu_sh(&out, "%s bench -m %s --tokenizer %s -W 64 -H 64 --steps 1 --threads 1 --no-vae 2>&1", tu_bin(),
                   ckpt, tu_tmp("no-such-tokenizer"));
    if (rc == 0 || !strstr(out, "no-such-tokenizer")) fail_msg("bench -m with a missing --tokenizer: exit %d: %s", rc, out);
    free(out);
    rc = tu_sh(&out, "%s init-model --tiny %s 2>&1", tu_bin(), dir);
    if (rc != 0) fail_msg("init-model exited %d: %s", rc, out);
    free(out);
    rc = tu_sh(&out, "%s bench -m %s -W 64 -H 64 --steps 1 --threads 1 --no-vae 2>&1", tu_bin(), dir);
    if (rc != 0) fail_msg("bench -m on init-model's tiny model exited %d: %s", rc, out);
    assert_non_null(strstr(out, "text encoder"));
    free(out);
}

/* bench -m on the tiny SDXL folder: both text encoders and the added conditioning are timed, with the
 * model's own counts; --arch takes sd15 or sdxl only, and not with -m. The SDXL base sizes themselves
 * (2.6 B-parameter U-Net) are checked by their flop count, not run (7 GB of random weights). */
static void test_bench_times_the_tiny_sdxl_model(void **state) {
    (void)state;
    char dir[1024], json[1024];
    snprintf(dir, sizeof dir, "%s", tu_path("sdxl/models/tiny-sdxl"));
    snprintf(json, sizeof json, "%s", tu_tmp("bench_xl.json"));
    char *out = NULL;
    int rc = tu_sh(&out, "%s bench -m %s -W 64 -H 48 --steps 1 --threads 1 --json %s 2>&1", tu_bin(), dir, json);
    if (rc != 0) fail_msg("bench -m exited %d: %s", rc, out);
    assert_non_null(strstr(out, "text encoders (batch 2)"));
    free(out);
    json_error_t je;
    json_t *o = json_load_file(json, 0, &je);
    if (!o) fail_msg("%s: %s", json, je.text);
    sd_model m;
    sd_error err = {0};
    if (sd_model_open(&m, dir, NULL, &err) < 0) fail_msg("%s", err.msg);
    expect_rel("unet_gflop", num(o, "unet_gflop"), unet_flops(&m.unet, 2, 6, 8, 77) / 1e9);
    clip_config c1 = m.clip;
    c1.layers -= 1; /* SDXL stops its first encoder at the penultimate layer */
    expect_rel("text_encoder_gflop", num(o, "text_encoder_gflop"),
               (clip_text_flops(&c1, 2, 77) + clip_text_flops(&m.clip2, 2, 77)) / 1e9);
    sd_model_close(&m);
    json_decref(o);
    rc = tu_sh(&out, "%s bench --arch sd3 2>&1", tu_bin());
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "choose sd15 or sdxl"));
    free(out);
    rc = tu_sh(&out, "%s bench --arch sdxl -m %s 2>&1", tu_bin(), dir);
    assert_int_equal(rc, 2);
    free(out);
    /* SDXL base at 1024x1024: about 6.7 TFLOP per image, 8x SD 1.5's at 512x512 */
    unet_config xl, sd;
    unet_config_sdxl(&xl);
    unet_config_sd15(&sd);
    double tf = unet_flops(&xl, 1, 128, 128, 77) / 1e12, ratio = tf / (unet_flops(&sd, 1, 64, 64, 77) / 1e12);
    if (!(tf > 6 && tf < 7.5 && ratio > 6 && ratio < 10))
        fail_msg("SDXL base U-Net at 1024x1024: %.2f TFLOP per image, %.1f x SD 1.5 at 512", tf, ratio);
}

/* bench --op times one kernel alone: each kind writes its JSON (bf16 too where the CPU has it); a bad spec or
 * an option of the whole-network bench exits 2 with one line naming the problem. */
static void test_bench_op_times_one_kernel(void **state) {
    (void)state;
    static const char *ops[] = {"conv:16,8,2", "conv:24,5,1,1", "conv:40,12,1,3,4", "linear:40,32,48", "attention:1,2,8,70,77"};
    int bf = ops_bf16_available();
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        char json[1024], *out = NULL;
        snprintf(json, sizeof json, "%s", tu_tmp("op.json"));
        remove(json);
        int rc = tu_sh(&out, "%s bench --op %s --steps 2 --threads 1 --precision %s --json %s 2>&1", tu_bin(), ops[i],
                       bf ? "both" : "fp32", json);
        if (rc != 0) fail_msg("bench --op %s exited %d: %s", ops[i], rc, out);
        free(out);
        json_error_t je;
        json_t *o = json_load_file(json, 0, &je);
        if (!o) fail_msg("%s: %s", json, je.text);
        assert_string_equal(json_string_value(json_object_get(o, "op")), ops[i]);
        for (int p = 0; p <= bf; p++) {
            char ms[32], gf[32];
            snprintf(ms, sizeof ms, "%s_ms", p ? "bf16" : "fp32");
            snprintf(gf, sizeof gf, "%s_gflops", p ? "bf16" : "fp32");
            if (!(num(o, ms) > 0 && num(o, gf) > 0)) fail_msg("bench --op %s: %s or %s not positive", ops[i], ms, gf);
        }
        json_decref(o);
    }
    static const char *bad[][2] = {{"--op conv:16", "conv:C,S"},          {"--op conv:16,8,2,5", "1 or 3"}, {"--op conv:16,8,2,3,3", "2 or 4"},
                                   {"--op linear:4,0,4", "positive"},     {"--op fft:8", "attention:B,H,D"},
                                   {"--op conv:16,8 -W 64", "only --threads"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *out = NULL;
        int rc = tu_sh(&out, "%s bench %s 2>&1", tu_bin(), bad[i][0]);
        if (rc != 2 || !strstr(out, bad[i][1])) fail_msg("bench %s: exit %d, want 2 and '%s': %s", bad[i][0], rc, bad[i][1], out);
        free(out);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bench_times_the_tiny_sdxl_model),
        cmocka_unit_test(test_bench_rejects_sizes_that_are_not_multiples_of_8),
        cmocka_unit_test(test_bench_help_lists_the_json_option),
        cmocka_unit_test(test_bench_op_times_one_kernel),
        cmocka_unit_test(test_bench_model_option_fails_cleanly_until_wired),
        cmocka_unit_test(test_bench_times_a_tiny_model_with_generates_model_options),
        cmocka_unit_test(test_bench_model_uses_its_own_tokenizer),
    };
    return cmocka_run_group_tests_name("bench", tests, NULL, NULL);
}
