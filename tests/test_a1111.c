/*
 * Tests for AUTOMATIC1111 prompts (core/text/prompt_a1111.h) and their
 * conditioning (core/pipeline/conditioning.h) against
 * ../shared/testdata/a1111/: parser results, chunk ids and multipliers and
 * extra-network tags exactly; conditioning within 1e-5.
 */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conditioning.h"
#include "model.h"
#include "pipeline.h"
#include "prompt_a1111.h"

static json_t *prompts;

static int setup(void **state) {
    (void)state;
    json_error_t je;
    prompts = json_load_file(tu_path("a1111/a1111_prompts.json"), 0, &je);
    if (!prompts) fprintf(stderr, "a1111_prompts.json: %s\n", je.text);
    return prompts ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    json_decref(prompts);
    return 0;
}

static void test_parse_attention_matches_a1111(void **state) {
    (void)state;
    json_t *cases = json_object_get(prompts, "parse_prompt_attention"), *c;
    size_t i;
    assert_true(json_array_size(cases) >= 20);
    json_array_foreach(cases, i, c) {
        const char *text = json_string_value(json_object_get(c, "text"));
        json_t *want = json_object_get(c, "result");
        a1111_frag *f;
        int n;
        sd_error err = {0};
        if (a1111_parse_attention(text, &f, &n, &err) < 0) fail_msg("'%s': %s", text, err.msg);
        if ((size_t)n != json_array_size(want)) fail_msg("'%s': %d fragments, expected %zu", text, n, json_array_size(want));
        for (int k = 0; k < n; k++) {
            json_t *w = json_array_get(want, (size_t)k);
            const char *wt = json_string_value(json_array_get(w, 0));
            double ww = json_number_value(json_array_get(w, 1));
            if (strcmp(f[k].text, wt) || f[k].weight != ww)
                fail_msg("'%s' fragment %d: ['%s', %.17g], expected ['%s', %.17g]", text, k, f[k].text, f[k].weight, wt,
                         ww);
        }
        a1111_frags_free(f, n);
    }
}

static void test_bad_weight_is_an_input_error(void **state) {
    (void)state;
    a1111_frag *f;
    int n;
    sd_error err = {0};
    assert_int_equal(a1111_parse_attention("a (b:1.2.3) c", &f, &n, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "1.2.3"));
    /* without an open bracket the same text is literal, as in A1111 */
    assert_int_equal(a1111_parse_attention("a :1.2.3) c", &f, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(f[0].text, "a :1.2.3) c");
    a1111_frags_free(f, n);
}

static tokenizer_bpe *open_tokenizer(void) {
    tokenizer_bpe *tok;
    sd_error err = {0};
    if (tokenizer_load_dir(&tok, tu_path("models/tiny-sd15/tokenizer"), &err) < 0) fail_msg("%s", err.msg);
    return tok;
}

static void test_chunks_match_a1111(void **state) {
    (void)state;
    tokenizer_bpe *tok = open_tokenizer();
    json_t *cases = json_object_get(prompts, "chunks"), *c;
    size_t i;
    assert_true(json_array_size(cases) >= 6);
    json_array_foreach(cases, i, c) {
        const char *text = json_string_value(json_object_get(c, "text"));
        json_t *want = json_object_get(c, "chunks");
        a1111_chunks ch;
        sd_error err = {0};
        if (a1111_tokenize_line(tok, text, &ch, &err) < 0) fail_msg("case %zu: %s", i, err.msg);
        if ((size_t)ch.n != json_array_size(want)) fail_msg("case %zu: %d chunks, expected %zu", i, ch.n, json_array_size(want));
        for (int k = 0; k < ch.n; k++) {
            json_t *ids = json_object_get(json_array_get(want, (size_t)k), "ids");
            json_t *mult = json_object_get(json_array_get(want, (size_t)k), "multipliers");
            assert_int_equal(json_array_size(ids), 77);
            for (int t = 0; t < 77; t++) {
                long long wi = json_integer_value(json_array_get(ids, (size_t)t));
                double wm = json_number_value(json_array_get(mult, (size_t)t));
                if (ch.ids[k * 77 + t] != wi || ch.mult[k * 77 + t] != wm)
                    fail_msg("case %zu chunk %d token %d: id %d x %.17g, expected %lld x %.17g", i, k, t,
                             (int)ch.ids[k * 77 + t], ch.mult[k * 77 + t], wi, wm);
            }
        }
        a1111_chunks_free(&ch);
    }
    tokenizer_free(tok);
}

static void test_extra_networks_match_a1111(void **state) {
    (void)state;
    json_t *cases = json_object_get(prompts, "extra_networks"), *c;
    size_t i;
    assert_true(json_array_size(cases) >= 3);
    json_array_foreach(cases, i, c) {
        const char *text = json_string_value(json_object_get(c, "text"));
        json_t *want = json_object_get(c, "networks");
        char *stripped;
        a1111_net *nets;
        int n;
        sd_error err = {0};
        if (a1111_extract_networks(text, &stripped, &nets, &n, &err) < 0) fail_msg("'%s': %s", text, err.msg);
        assert_string_equal(stripped, json_string_value(json_object_get(c, "prompt")));
        assert_int_equal(n, (int)json_array_size(want));
        for (int k = 0; k < n; k++) {
            json_t *w = json_array_get(want, (size_t)k), *args = json_array_get(w, 1);
            assert_string_equal(nets[k].type, json_string_value(json_array_get(w, 0)));
            assert_int_equal(nets[k].n_args, (int)json_array_size(args));
            for (int a = 0; a < nets[k].n_args; a++)
                assert_string_equal(nets[k].args[a], json_string_value(json_array_get(args, (size_t)a)));
        }
        free(stripped);
        a1111_nets_free(nets, n);
    }
}

static void test_unclosed_lora_tag_is_an_input_error(void **state) {
    (void)state;
    const char *bad[] = {"a cat <lora:tiny:0.8", "a cat <lora:>", "<lora:"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *stripped = NULL;
        a1111_net *nets = NULL;
        int n = 0;
        sd_error err = {0};
        assert_int_equal(a1111_extract_networks(bad[i], &stripped, &nets, &n, &err), SD_EINPUT);
        assert_non_null(strstr(err.msg, "malformed LoRA tag"));
        assert_null(stripped);
    }
}

/* Every case of a1111_cond.safetensors at both clip skips, through the tiny text encoder. */
static void test_conditioning_matches_a1111(void **state) {
    (void)state;
    sd_model m;
    sd_pipeline p;
    sd_error err = {0};
    if (sd_model_open(&m, tu_path("models/tiny-sd15"), NULL, &err) < 0 || sd_pipeline_load(&p, &m, &err) < 0)
        fail_msg("%s", err.msg);
    st_file f;
    tu_open(&f, "a1111/a1111_cond.safetensors");
    json_t *cases = json_object_get(prompts, "chunks");
    int compared = 0;
    for (size_t i = 0; i < json_array_size(cases); i++) {
        const char *text = json_string_value(json_object_get(json_array_get(cases, i), "text"));
        for (int skip = 1; skip <= 2; skip++) {
            char name[64];
            snprintf(name, sizeof name, "case%zu_clipskip%d", i, skip);
            size_t n;
            float *want = tu_f32(&f, name, &n);
            sd_cond c;
            if (sd_cond_encode(p.tok, &p.clip, text, SD_PROMPT_A1111, skip, &c, &err) < 0) fail_msg("%s", err.msg);
            assert_int_equal((size_t)c.n_chunks * 77 * 32, n);
            tu_expect_close(name, c.emb, want, n, 1e-5);
            /* a prompt without weights or chunks is the plain embedding bit for bit */
            if (c.n_chunks == 1 && !strpbrk(text, "()[]")) {
                sd_cond plain;
                if (sd_cond_encode(p.tok, &p.clip, text, SD_PROMPT_PLAIN, skip, &plain, &err) < 0) fail_msg("%s", err.msg);
                assert_memory_equal(plain.emb, c.emb, sizeof(float) * n);
                sd_cond_free(&plain);
            }
            sd_cond_free(&c);
            free(want);
            compared++;
        }
    }
    assert_int_equal(compared, 12);
    st_close(&f);
    sd_pipeline_free(&p);
    sd_model_close(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_attention_matches_a1111),
        cmocka_unit_test(test_bad_weight_is_an_input_error),
        cmocka_unit_test(test_chunks_match_a1111),
        cmocka_unit_test(test_extra_networks_match_a1111),
        cmocka_unit_test(test_unclosed_lora_tag_is_an_input_error),
        cmocka_unit_test(test_conditioning_matches_a1111),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
