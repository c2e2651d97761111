/* Tests for core/clip: the tiny text encoders against the reference hidden states. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clip.h"
#include "config.h"
#include "weights.h"

typedef struct clip_fixture {
    st_file model, golden;
    sd_weights w;
    clip_config cfg;
    clip_text_model m;
    int ids[6 * 77];
    int probe_calls;     /* hidden states the probe compared */
    unsigned probe_seen; /* bit 0: embeddings, bit 1 + i: layer i */
} clip_fixture;

static void fixture_open(clip_fixture *f, const char *name) {
    char rel[256];
    sd_error err = {0};
    snprintf(rel, sizeof rel, "models/%s/text_encoder/model.safetensors", name);
    tu_open(&f->model, rel);
    snprintf(rel, sizeof rel, "models/%s/text_encoder/config.json", name);
    if (clip_config_load(&f->cfg, tu_path(rel), &err) < 0) fail_msg("%s", err.msg);
    if (sd_weights_from_st(&f->w, &f->model, "", "text_encoder", &err) < 0) fail_msg("%s", err.msg);
    if (clip_text_load(&f->m, &f->cfg, &f->w, &err) < 0) fail_msg("%s", err.msg);
    snprintf(rel, sizeof rel, "golden/text_encoder_%s.safetensors", strcmp(name, "tiny-sd2") ? "sd15" : "sd2");
    tu_open(&f->golden, rel);
    size_t n;
    float *ids = tu_f32(&f->golden, "input_ids", &n);
    assert_int_equal(n, 6 * 77);
    for (size_t i = 0; i < n; i++) f->ids[i] = (int)ids[i];
    free(ids);
}

static void fixture_close(clip_fixture *f) {
    clip_text_free(&f->m);
    sd_weights_free(&f->w);
    st_close(&f->model);
    st_close(&f->golden);
}

/* Probe that compares each emitted hidden state with the golden tensor of the same name. */
static void compare_probe(void *user, const char *name, const float *x, int ndim, const int64_t *shape) {
    clip_fixture *f = user;
    size_t n;
    int layer;
    f->probe_calls++;
    if (!strcmp(name, "hidden_states.embeddings")) f->probe_seen |= 1u;
    else if (sscanf(name, "hidden_states.layer%d", &layer) == 1 && layer >= 0 && layer < 31) f->probe_seen |= 2u << layer;
    float *want = tu_f32(&f->golden, name, &n);
    size_t got_n = 1;
    for (int i = 0; i < ndim; i++) got_n *= (size_t)shape[i];
    assert_int_equal(got_n, n);
    tu_expect_close(name, x, want, n, 2e-5);
    free(want);
}

static void check_model(const char *name) {
    clip_fixture f;
    fixture_open(&f, name);
    sd_error err = {0};
    sd_probe probe = {compare_probe, &f};
    f.m.probe = &probe;
    f.probe_calls = 0;
    f.probe_seen = 0;
    float *out = malloc(6 * 77 * 32 * sizeof(float));
    size_t n;
    /* all six prompts in one batch: embeddings, every block, last_hidden_state */
    if (clip_text_forward(&f.m, f.ids, 6, 77, 0, out, &err) < 0) fail_msg("%s", err.msg);
    /* the probe saw the embeddings and each of the 3 blocks (README section 1) once: a silent encoder
       would otherwise pass the per-layer comparison */
    assert_int_equal(f.cfg.layers, 3);
    assert_int_equal(f.probe_calls, 1 + f.cfg.layers);
    assert_int_equal(f.probe_seen, (2u << f.cfg.layers) - 1);
    float *want = tu_f32(&f.golden, "last_hidden_state", &n);
    tu_expect_close("last_hidden_state", out, want, n, 2e-5);
    free(want);
    /* clip skip: the final LayerNorm of the second-to-last block, prompt by prompt */
    f.m.probe = NULL;
    want = tu_f32(&f.golden, "penultimate_hidden_state", &n);
    for (int b = 0; b < 6; b++) {
        if (clip_text_forward(&f.m, f.ids + b * 77, 1, 77, 1, out, &err) < 0) fail_msg("%s", err.msg);
        tu_expect_close("penultimate_hidden_state", out, want + (size_t)b * 77 * 32, 77 * 32, 2e-5);
    }
    free(want);
    free(out);
    fixture_close(&f);
}

static void test_clip_sd15_matches_reference_hidden_states(void **state) {
    (void)state;
    check_model("tiny-sd15");
}

static void test_clip_sd2_gelu_matches_reference_hidden_states(void **state) {
    (void)state;
    check_model("tiny-sd2");
}

static void test_clip_is_causal_prefix_outputs_ignore_later_tokens(void **state) {
    (void)state;
    clip_fixture f;
    fixture_open(&f, "tiny-sd15");
    sd_error err = {0};
    float *a = malloc(77 * 32 * sizeof(float)), *b = malloc(77 * 32 * sizeof(float));
    int ids[77];
    memcpy(ids, f.ids, sizeof ids);
    assert_int_equal(clip_text_forward(&f.m, ids, 1, 77, 0, a, &err), 0);
    for (int t = 40; t < 77; t++) ids[t] = 320 + t; /* change only the tail */
    assert_int_equal(clip_text_forward(&f.m, ids, 1, 77, 0, b, &err), 0);
    assert_memory_equal(a, b, 40 * 32 * sizeof(float));
    assert_true(memcmp(a + 40 * 32, b + 40 * 32, 37 * 32 * sizeof(float)) != 0);
    free(a), free(b);
    fixture_close(&f);
}

static void test_clip_rejects_bad_ids_lengths_and_skips(void **state) {
    (void)state;
    clip_fixture f;
    fixture_open(&f, "tiny-sd15");
    sd_error err = {0};
    float *out = malloc(78 * 32 * sizeof(float));
    int ids[78] = {49406, 49408};
    assert_int_equal(clip_text_forward(&f.m, ids, 1, 2, 0, out, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "49408"));
    assert_int_equal(clip_text_forward(&f.m, ids, 1, 78, 0, out, &err), SD_EINPUT);
    assert_int_equal(clip_text_forward(&f.m, f.ids, 1, 77, 3, out, &err), SD_EINPUT);
    free(out);
    fixture_close(&f);
}

static void test_clip_load_names_missing_or_misshapen_tensor(void **state) {
    (void)state;
    clip_fixture f;
    fixture_open(&f, "tiny-sd15");
    sd_error err = {0};
    /* drop one tensor */
    const char *names[64];
    const sd_tensor *ts[64];
    int n = 0;
    const char *drop = "text_model.encoder.layers.1.mlp.fc2.weight";
    for (int i = 0; i < f.w.n && n < 64; i++) {
        if (!strcmp(f.w.tensors[i].name, drop)) continue;
        names[n] = f.w.tensors[i].name;
        ts[n++] = &f.w.tensors[i];
    }
    sd_weights w2;
    assert_int_equal(sd_weights_from_list(&w2, names, ts, n, "text_encoder", &err), 0);
    clip_text_model m;
    assert_int_equal(clip_text_load(&m, &f.cfg, &w2, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, drop));
    assert_non_null(strstr(err.msg, "[32, 64]"));
    sd_weights_free(&w2);
    /* a config whose intermediate size disagrees with the file */
    clip_config c = f.cfg;
    c.intermediate = 128;
    assert_int_equal(clip_text_load(&m, &c, &f.w, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "fc1.weight"));
    assert_non_null(strstr(err.msg, "[128, 32]"));
    fixture_close(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clip_sd15_matches_reference_hidden_states),
        cmocka_unit_test(test_clip_sd2_gelu_matches_reference_hidden_states),
        cmocka_unit_test(test_clip_is_causal_prefix_outputs_ignore_later_tokens),
        cmocka_unit_test(test_clip_rejects_bad_ids_lengths_and_skips),
        cmocka_unit_test(test_clip_load_names_missing_or_misshapen_tensor),
    };
    return cmocka_run_group_tests_name("clip", tests, NULL, NULL);
}
