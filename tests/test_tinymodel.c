/* Tests for `sdrender init-model --tiny`: a usable, deterministic model made from nothing. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "pipeline.h"
#include "sha256.h"
#include "tinymodel.h"

static const char *files[] = {"model_index.json",
                              "unet/config.json",
                              "unet/diffusion_pytorch_model.safetensors",
                              "vae/config.json",
                              "vae/diffusion_pytorch_model.safetensors",
                              "text_encoder/config.json",
                              "text_encoder/model.safetensors",
                              "scheduler/scheduler_config.json",
                              "tokenizer/vocab.json",
                              "tokenizer/merges.txt"};

static void test_tiny_model_is_deterministic_and_loads_like_a_real_one(void **state) {
    (void)state;
    char *out;
    const char *a = tu_tmp("tiny-a"), *b = tu_tmp("tiny-b");
    assert_int_equal(tu_sh(&out, "%s init-model --tiny %s 2>&1", tu_bin(), a), 0);
    free(out);
    sd_error err = {0};
    assert_int_equal(sd_tiny_model_write(b, &err), 0);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char pa[1024], pb[1024], ha[65], hb[65];
        snprintf(pa, sizeof pa, "%s/%s", a, files[i]);
        snprintf(pb, sizeof pb, "%s/%s", b, files[i]);
        if (sd_sha256_file(pa, ha, &err) < 0 || sd_sha256_file(pb, hb, &err) < 0) fail_msg("%s", err.msg);
        if (strcmp(ha, hb)) fail_msg("%s differs between two runs", files[i]);
    }
    sd_model m;
    assert_int_equal(sd_model_open(&m, a, NULL, &err), 0);
    assert_int_equal(m.sd_version, 1);
    assert_false(m.inpaint);
    assert_true(m.clip.vocab_size < 49408); /* its own vocabulary, not CLIP's */
    sd_pipeline p;
    if (sd_pipeline_load(&p, &m, &err) < 0) fail_msg("%s", err.msg);
    sd_settings s;
    sd_settings_default(&s);
    s.prompt = "a lighthouse on a cliff";
    s.width = s.height = 64;
    s.steps = 3;
    uint8_t rgb[64 * 64 * 3];
    assert_int_equal(sd_pipeline_generate(&p, &s, rgb, NULL, NULL, NULL, &err), 0);
    int distinct = 0;
    for (int i = 1; i < 64 * 64 * 3; i++) distinct += rgb[i] != rgb[0];
    assert_true(distinct > 1000); /* not a blank picture */
    sd_pipeline_free(&p);
    sd_model_close(&m);
    /* its tokenizer handles any text */
    assert_int_equal(tu_sh(&out, "%s tokenize -m %s -p 'Ünïcödé & emoji 🐱'", tu_bin(), a), 0);
    assert_non_null(strstr(out, " "));
    free(out);
}

/* init-model makes exactly one kind of model per call: --demo, --tiny or --random-sd15. */
static void test_init_model_needs_tiny(void **state) {
    (void)state;
    char *out;
    assert_int_equal(tu_sh(&out, "%s init-model 2>&1", tu_bin()), 2);
    assert_non_null(strstr(out, "give one of --demo DIR, --tiny DIR or --random-sd15 DIR"));
    free(out);
    assert_int_equal(tu_sh(&out, "%s init-model --tiny %s --demo %s 2>&1", tu_bin(), tu_tmp("a"), tu_tmp("b")), 2);
    assert_non_null(strstr(out, "give one of"));
    free(out);
    assert_int_equal(tu_sh(&out, "%s init-model --random-sd15 %s --tiny %s 2>&1", tu_bin(), tu_tmp("a"), tu_tmp("b")), 2);
    assert_non_null(strstr(out, "give one of"));
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_model_is_deterministic_and_loads_like_a_real_one),
        cmocka_unit_test(test_init_model_needs_tiny),
    };
    return cmocka_run_group_tests_name("tinymodel", tests, NULL, NULL);
}
