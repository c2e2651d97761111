/* Tests for core/settings: validation and the AUTOMATIC1111 parameters text. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "settings.h"

static void test_a1111_text_has_the_expected_lines(void **state) {
    (void)state;
    sd_settings s;
    sd_settings_default(&s);
    s.prompt = "a photograph of an astronaut riding a horse";
    s.negative = "blurry, low quality";
    s.steps = 10;
    s.sampler = SD_SAMPLER_EULER_A;
    s.seed = 42;
    s.width = 64;
    s.height = 96;
    char *t = sd_settings_format_a1111(&s, "0123456789", "tiny-sd15");
    assert_string_equal(t, "a photograph of an astronaut riding a horse\n"
                           "Negative prompt: blurry, low quality\n"
                           "Steps: 10, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 64x96, "
                           "Model hash: 0123456789, Model: tiny-sd15");
    free(t);
    s.negative = "";
    s.cfg_scale = 1;
    t = sd_settings_format_a1111(&s, NULL, NULL);
    assert_string_equal(t, "a photograph of an astronaut riding a horse\n"
                           "Steps: 10, Sampler: Euler a, CFG scale: 1, Seed: 42, Size: 64x96");
    free(t);
}

static void test_a1111_text_round_trips(void **state) {
    (void)state;
    sd_settings s;
    sd_settings_default(&s);
    s.prompt = "line one,\nline two: (emphasis:1.2) \"quoted\"";
    s.negative = "ugly\nbad hands";
    s.steps = 33;
    s.cfg_scale = 6.25f;
    s.sampler = SD_SAMPLER_DPMPP_2M;
    s.karras = 1;
    s.seed = 4294967295LL + 7;
    s.width = 768;
    s.height = 512;
    s.clip_skip = 2;
    s.init_image = "in.png";
    s.strength = 0.6;
    char *t = sd_settings_format_a1111(&s, "abc", "my, model: v2");
    sd_settings_parsed p;
    sd_error err = {0};
    assert_int_equal(sd_settings_parse_a1111(t, &p, &err), 0);
    assert_string_equal(p.prompt, s.prompt);
    assert_string_equal(p.negative, s.negative);
    assert_int_equal(p.s.steps, 33);
    assert_true(p.s.cfg_scale == 6.25f);
    assert_int_equal(p.s.sampler, SD_SAMPLER_DPMPP_2M);
    assert_int_equal(p.s.karras, 1);
    assert_true(p.s.seed == s.seed);
    assert_int_equal(p.s.width, 768);
    assert_int_equal(p.s.height, 512);
    assert_int_equal(p.s.clip_skip, 2);
    assert_true(p.s.strength == 0.6);
    assert_string_equal(p.model_hash, "abc");
    assert_string_equal(p.model_name, "my, model: v2");
    sd_settings_parsed_free(&p);
    free(t);
    assert_int_equal(sd_settings_parse_a1111("just a prompt", &p, &err), SD_EINPUT);
}

/* bf16 is written as "Precision: bf16" and reads back; fp32 (the default) writes nothing, so fp32 files keep
 * their bytes; an unknown precision is refused, naming it. */
static void test_a1111_text_carries_precision(void **state) {
    (void)state;
    sd_settings s;
    sd_settings_default(&s);
    s.prompt = "a cat";
    char *t = sd_settings_format_a1111(&s, NULL, NULL);
    assert_null(strstr(t, "Precision"));
    free(t);
    s.bf16 = 1;
    t = sd_settings_format_a1111(&s, NULL, NULL);
    assert_non_null(strstr(t, ", Precision: bf16"));
    sd_settings_parsed p;
    sd_error err = {0};
    assert_int_equal(sd_settings_parse_a1111(t, &p, &err), 0);
    assert_int_equal(p.s.bf16, 1);
    sd_settings_parsed_free(&p);
    free(t);
    assert_int_equal(sd_settings_parse_a1111("x\nSteps: 3, Precision: fp32", &p, &err), 0);
    assert_int_equal(p.s.bf16, 0);
    sd_settings_parsed_free(&p);
    assert_int_equal(sd_settings_parse_a1111("x\nSteps: 3, Precision: fp16", &p, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "fp16"));
}

/* CUDA noise is written as A1111 writes its NV source, an upscale with its noise level (and no denoising
 * strength); both read back. */
static void test_a1111_text_carries_rng_and_noise_level(void **state) {
    (void)state;
    sd_settings s;
    sd_settings_default(&s);
    s.prompt = "a cat";
    s.sampler = SD_SAMPLER_DDIM;
    s.rng = SD_RNG_CUDA;
    s.upscale = 1;
    s.noise_level = 50;
    s.init_image = "low.png";
    s.width = s.height = 128;
    char *t = sd_settings_format_a1111(&s, NULL, NULL);
    assert_non_null(strstr(t, ", RNG: NV, Noise level: 50"));
    assert_null(strstr(t, "Denoising strength"));
    sd_settings_parsed p;
    sd_error err = {0};
    assert_int_equal(sd_settings_parse_a1111(t, &p, &err), 0);
    assert_int_equal(p.s.rng, SD_RNG_CUDA);
    assert_true(p.s.upscale);
    assert_int_equal(p.s.noise_level, 50);
    sd_settings_parsed_free(&p);
    free(t);
    assert_int_equal(sd_settings_parse_a1111("x\nSteps: 3, RNG: CPU", &p, &err), 0);
    assert_int_equal(p.s.rng, SD_RNG_CPU);
    sd_settings_parsed_free(&p);
    assert_int_equal(sd_settings_parse_a1111("x\nSteps: 3, RNG: MPS", &p, &err), SD_EINPUT);
    /* the checks: an upscale needs its picture and a noise level in range */
    s.init_image = NULL;
    assert_int_equal(sd_settings_check_for(&s, 4, &err), SD_EINPUT);
    s.init_image = "low.png";
    s.noise_level = 351;
    assert_int_equal(sd_settings_check_for(&s, 4, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "noise_level"));
}

static void test_settings_check_rejects_bad_values_naming_them(void **state) {
    (void)state;
    sd_settings s;
    sd_error err = {0};
    sd_settings_default(&s);
    assert_int_equal(sd_settings_check(&s, &err), 0);
    s.width = 100;
    assert_int_equal(sd_settings_check(&s, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "multiple of 8"));
    /* the size unit is the model's VAE scale factor: 4 for a 3-level VAE, 16 for a 5-level one */
    assert_int_equal(sd_settings_check_for(&s, 4, &err), 0);
    s.width = 136;
    assert_int_equal(sd_settings_check(&s, &err), 0);
    assert_int_equal(sd_settings_check_for(&s, 16, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "width must be a positive multiple of 16"));
    sd_settings_default(&s);
    s.steps = 0;
    assert_int_equal(sd_settings_check(&s, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "steps must be in 1..1000, got 0"));
    sd_settings_default(&s);
    s.karras = 1;
    assert_int_equal(sd_settings_check(&s, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "karras"));
    sd_settings_default(&s);
    s.mask = "m.png";
    assert_int_equal(sd_settings_check(&s, &err), SD_EINPUT);
    sd_settings_default(&s);
    s.init_image = "i.png";
    s.strength = 0;
    assert_int_equal(sd_settings_check(&s, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "strength"));
}

static void test_sampler_names_parse_and_print(void **state) {
    (void)state;
    sampler_kind k;
    assert_int_equal(sampler_kind_parse("dpm++2m", &k), 0);
    assert_int_equal(k, SD_SAMPLER_DPMPP_2M);
    assert_int_equal(sampler_kind_parse("dpmpp_2m", &k), 0);
    assert_int_equal(sampler_kind_parse("euler_a", &k), 0);
    assert_string_equal(sampler_kind_a1111_name(k, 0), "Euler a");
    assert_int_equal(sampler_kind_parse("nope", &k), -1);
    for (int i = 0; i < SD_SAMPLER_COUNT; i++) {
        assert_int_equal(sampler_kind_parse(sampler_kind_name((sampler_kind)i), &k), 0);
        assert_int_equal(k, i);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a1111_text_has_the_expected_lines),
        cmocka_unit_test(test_a1111_text_round_trips),
        cmocka_unit_test(test_a1111_text_carries_rng_and_noise_level),
        cmocka_unit_test(test_a1111_text_carries_precision),
        cmocka_unit_test(test_settings_check_rejects_bad_values_naming_them),
        cmocka_unit_test(test_sampler_names_parse_and_print),
    };
    return cmocka_run_group_tests_name("settings", tests, NULL, NULL);
}
