/*
 * Tests for AUTOMATIC1111 prompts (core/text/prompt_a1111.h) and their
 * conditioning (core/pipeline/conditioning.h) against
 * ../shared/testdata/a1111/: parser results, chunk ids and multipliers and
 * extra-network tags exactly; conditioning within 1e-5.
 */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conditioning.h"
#include "lora.h"
#include "lora_set.h"
#include "pngio.h"
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

/* The PNG text carries "Lora hashes" JSON-quoted as A1111 writes it, and reads back. */
static void test_lora_hashes_round_trip_in_the_parameters(void **state) {
    (void)state;
    sd_settings s;
    sd_settings_default(&s);
    s.prompt = "a cat <lora:ink:0.5>";
    s.lora_hashes = "ink: 0123456789ab, style: ba9876543210";
    char *text = sd_settings_format_a1111(&s, "f8237e890a", "tiny");
    assert_non_null(strstr(text, ", Lora hashes: \"ink: 0123456789ab, style: ba9876543210\""));
    sd_settings_parsed back;
    sd_error err = {0};
    assert_int_equal(sd_settings_parse_a1111(text, &back, &err), 0);
    assert_string_equal(back.lora_hashes, s.lora_hashes);
    assert_string_equal(back.prompt, s.prompt);
    sd_settings_parsed_free(&back);
    free(text);
}

/* ---- the three pipelines --------------------------------------------------- */

typedef struct a1111_case {
    const char *name;
    const char *lora_file; /* NULL: the settings' own (the tag in the prompt) */
} a1111_case;

/* Golden I64 ids [k, 77] equal got; golden F32 multipliers equal mult exactly. */
static void expect_chunks(const char *label, const st_file *f, const char *ids_name, const char *mult_name,
                          const int32_t *ids, const float *mult, int n_chunks) {
    const sd_tensor *t = tu_tensor(f, ids_name);
    assert_int_equal(sd_tensor_numel(t), (int64_t)n_chunks * 77);
    for (int i = 0; i < n_chunks * 77; i++) {
        int64_t want; /* the data may be unaligned */
        memcpy(&want, (const char *)t->data + 8 * (size_t)i, 8);
        if (ids[i] != want) fail_msg("%s %s[%d] = %d, expected %lld", label, ids_name, i, (int)ids[i], (long long)want);
    }
    size_t n;
    float *wm = tu_f32(f, mult_name, &n);
    assert_int_equal(n, (size_t)n_chunks * 77);
    for (size_t i = 0; i < n; i++)
        if (mult[i] != wm[i]) fail_msg("%s %s[%zu] = %.9g, expected %.9g", label, mult_name, i, mult[i], wm[i]);
    free(wm);
}

/* Settings of a pipeline case from its .json (strings live in j). */
static void a1111_settings(json_t *j, sd_settings *s) {
    json_t *st = json_object_get(j, "settings");
    sd_settings_default(s);
    s->prompt = json_string_value(json_object_get(st, "prompt"));
    s->negative = json_string_value(json_object_get(st, "negative_prompt"));
    s->width = (int)json_integer_value(json_object_get(st, "width"));
    s->height = (int)json_integer_value(json_object_get(st, "height"));
    s->steps = (int)json_integer_value(json_object_get(st, "num_inference_steps"));
    s->cfg_scale = (float)json_number_value(json_object_get(st, "guidance_scale"));
    s->seed = json_integer_value(json_object_get(st, "seed"));
    s->clip_skip = (int)json_integer_value(json_object_get(st, "clip_skip_a1111"));
    s->prompt_syntax = SD_PROMPT_A1111;
    assert_int_equal(sampler_kind_parse(json_string_value(json_object_get(st, "scheduler")), &s->sampler), 0);
}

/* One case through the library: chunks exactly, embeddings 1e-5, latents 5e-5 x peak, pixels +-1. */
static void run_pipeline_case(sd_pipeline *p, sd_lora_ctx *lc, const a1111_case *c) {
    char rel[160], label[200];
    snprintf(rel, sizeof rel, "a1111/pipeline_%s.json", c->name);
    json_error_t je;
    json_t *j = json_load_file(tu_path(rel), 0, &je);
    if (!j) fail_msg("%s: %s", rel, je.text);
    sd_settings s;
    a1111_settings(j, &s);
    snprintf(label, sizeof label, "%s%s%s", c->name, c->lora_file ? " with " : "", c->lora_file ? c->lora_file : "");
    sd_lora_set set;
    sd_error err = {0};
    char specs[1024] = "", *hashes = NULL;
    const char *prompt = s.prompt;
    if (c->lora_file) {
        /* the same LoRA given as a file, with the tag taken out of the prompt */
        snprintf(specs, sizeof specs, "%s:0.8", tu_path(c->lora_file));
        prompt = "a portrait of a knight ";
    }
    if (sd_lora_set_build(&set, specs, prompt, SD_PROMPT_A1111, tu_path("a1111"), &err) < 0 ||
        sd_lora_ctx_apply(lc, &set, &hashes, &err) < 0)
        fail_msg("%s: %s", label, err.msg);
    assert_int_equal(set.n, json_array_size(json_object_get(json_object_get(j, "settings"), "loras")));
    s.lora_hashes = hashes;

    snprintf(rel, sizeof rel, "a1111/pipeline_%s.safetensors", c->name);
    st_file f;
    tu_open(&f, rel);
    size_t n_lat, n_steps_all, n_img, n_pe, n_ne;
    float *want_final = tu_f32(&f, "latents_final", &n_lat), *want_steps = tu_f32(&f, "latents_steps", &n_steps_all);
    float *want_img = tu_f32(&f, "image", &n_img), *want_pe = tu_f32(&f, "prompt_embeds", &n_pe);
    float *want_ne = tu_f32(&f, "negative_embeds", &n_ne);
    int kc = (int)(n_pe / (77 * 32)), ku = (int)(n_ne / (77 * 32)), evals = (int)(n_steps_all / n_lat);
    int32_t pid[8 * 77], nid[8 * 77];
    float pm[8 * 77], nm[8 * 77];
    float *pe = malloc(sizeof(float) * n_pe), *ne = malloc(sizeof(float) * n_ne), *fin = malloc(sizeof(float) * n_lat);
    float *steps = malloc(sizeof(float) * n_steps_all), *img = malloc(sizeof(float) * n_img);
    uint8_t *rgb = malloc(n_img);
    sd_pipeline_trace tr = {.max_chunks = 8, .prompt_ids = pid, .negative_ids = nid, .prompt_multipliers = pm,
                            .negative_multipliers = nm, .prompt_embeds = pe, .negative_embeds = ne,
                            .latents_final = fin, .latents_steps = steps, .max_steps = evals, .image = img};
    if (sd_pipeline_generate(p, &s, rgb, NULL, NULL, &tr, &err) < 0) fail_msg("%s: %s", label, err.msg);
    assert_int_equal(tr.n_prompt_chunks, kc);
    assert_int_equal(tr.n_negative_chunks, ku);
    expect_chunks(label, &f, "prompt_ids", "prompt_multipliers", pid, pm, kc);
    expect_chunks(label, &f, "negative_ids", "negative_multipliers", nid, nm, ku);
    char l2[240];
    snprintf(l2, sizeof l2, "%s prompt_embeds", label);
    tu_expect_close(l2, pe, want_pe, n_pe, 1e-5);
    snprintf(l2, sizeof l2, "%s negative_embeds", label);
    tu_expect_close(l2, ne, want_ne, n_ne, 1e-5);
    snprintf(l2, sizeof l2, "%s latents_steps", label);
    tu_expect_close(l2, steps, want_steps, n_steps_all, 5e-5 * tu_peak(want_steps, n_steps_all));
    snprintf(l2, sizeof l2, "%s latents_final", label);
    tu_expect_close(l2, fin, want_final, n_lat, 5e-5 * tu_peak(want_final, n_lat));
    snprintf(l2, sizeof l2, "%s image", label);
    tu_expect_close(l2, img, want_img, n_img, 5e-5);
    const uint8_t *w8 = tu_tensor(&f, "image_u8")->data;
    for (size_t i = 0; i < n_img; i++)
        if (abs((int)rgb[i] - (int)w8[i]) > 1) fail_msg("%s: pixel byte %zu is %d, expected %d (+-1)", label, i, rgb[i], w8[i]);
    free(pe);
    free(ne);
    free(fin);
    free(steps);
    free(img);
    free(rgb);
    free(want_final);
    free(want_steps);
    free(want_img);
    free(want_pe);
    free(want_ne);
    free(hashes);
    st_close(&f);
    sd_lora_set_free(&set);
    json_decref(j);
}

static void test_a1111_pipelines_reproduce_the_reference(void **state) {
    (void)state;
    static const a1111_case cases[] = {
        {"a1111_weights_euler_a_96", NULL},
        {"a1111_long_break_dpmpp_96", NULL},
        {"a1111_lora_0.8_euler_96", NULL},
        {"a1111_weights_euler_a_96", NULL}, /* after a LoRA: the base weights are back exactly */
        {"a1111_lora_0.8_euler_96", "a1111/lora_tiny_kohya.safetensors"},
        {"a1111_lora_0.8_euler_96", "a1111/lora_tiny_peft.safetensors"},
    };
    sd_model m;
    sd_pipeline p;
    sd_error err = {0};
    if (sd_model_open(&m, tu_path("models/tiny-sd15"), NULL, &err) < 0 || sd_pipeline_load(&p, &m, &err) < 0)
        fail_msg("%s", err.msg);
    sd_lora_ctx lc;
    sd_lora_ctx_init(&lc, &m);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_pipeline_case(&p, &lc, &cases[i]);
    /* two different LoRA sets were merged, and the tag and the kohya file at 0.8 are the same set */
    assert_int_equal(lc.merges, 3);
    sd_lora_ctx_free(&lc);
    sd_pipeline_free(&p);
    sd_model_close(&m);
}

/* Merging and unmerging leaves every weight table entry as it was, and the images bit for bit. */
static void test_unmerge_restores_the_base_weights_exactly(void **state) {
    (void)state;
    sd_model m;
    sd_pipeline p;
    sd_error err = {0};
    if (sd_model_open(&m, tu_path("models/tiny-sd15"), NULL, &err) < 0 || sd_pipeline_load(&p, &m, &err) < 0)
        fail_msg("%s", err.msg);
    size_t nu = sizeof(sd_tensor) * (size_t)m.unet_w.n, nc = sizeof(sd_tensor) * (size_t)m.clip_w.n;
    sd_tensor *u0 = malloc(nu), *c0 = malloc(nc);
    memcpy(u0, m.unet_w.tensors, nu);
    memcpy(c0, m.clip_w.tensors, nc);
    sd_settings s;
    sd_settings_default(&s);
    s.prompt = "a (red:1.3) fox";
    s.prompt_syntax = SD_PROMPT_A1111;
    s.steps = 2;
    s.width = s.height = 64;
    uint8_t before[64 * 64 * 3], merged[64 * 64 * 3], after[64 * 64 * 3];
    if (sd_pipeline_generate(&p, &s, before, NULL, NULL, NULL, &err) < 0) fail_msg("%s", err.msg);
    sd_lora_ctx lc;
    sd_lora_ctx_init(&lc, &m);
    for (int round = 0; round < 2; round++) {
        sd_lora_set set;
        char specs[2048];
        snprintf(specs, sizeof specs, "%s:0.9\n%s:-0.4", tu_path("a1111/lora_tiny_kohya.safetensors"),
                 tu_path("a1111/lora_tiny_peft.safetensors"));
        if (sd_lora_set_build(&set, specs, NULL, SD_PROMPT_PLAIN, NULL, &err) < 0 ||
            sd_lora_ctx_apply(&lc, &set, NULL, &err) < 0)
            fail_msg("%s", err.msg);
        assert_int_equal(lc.patch.n, 210); /* every module of the file, both LoRAs on the same ones */
        if (sd_pipeline_generate(&p, &s, merged, NULL, NULL, NULL, &err) < 0) fail_msg("%s", err.msg);
        assert_true(memcmp(before, merged, sizeof before) != 0);
        sd_lora_set_free(&set);
        sd_lora_set empty = {0};
        assert_int_equal(sd_lora_ctx_apply(&lc, &empty, NULL, &err), 0);
        assert_memory_equal(m.unet_w.tensors, u0, nu);
        assert_memory_equal(m.clip_w.tensors, c0, nc);
        if (sd_pipeline_generate(&p, &s, after, NULL, NULL, NULL, &err) < 0) fail_msg("%s", err.msg);
        assert_memory_equal(before, after, sizeof before);
    }
    assert_int_equal(lc.merges, 2);
    sd_lora_ctx_free(&lc);
    free(u0);
    free(c0);
    sd_pipeline_free(&p);
    sd_model_close(&m);
}

/* A LoCon module (3x3 down, 1x1 up, alpha) merges as W + multiplier * alpha / r * up @ down, reshaped. */
static void test_locon_conv_merge_follows_the_formula(void **state) {
    (void)state;
    sd_model m;
    sd_error err = {0};
    if (sd_model_open(&m, tu_path("models/tiny-sd15"), NULL, &err) < 0) fail_msg("%s", err.msg);
    const char *target = "down_blocks.1.resnets.0.conv1.weight"; /* [64, 32, 3, 3] */
    const sd_tensor *w = sd_weights_find(&m.unet_w, target);
    assert_non_null(w);
    enum { R = 2, OUT = 64, IN = 32 * 9 };
    static float down[R * IN], up[OUT * R], alpha = 1.5f;
    tu_seed(7);
    for (int i = 0; i < R * IN; i++) down[i] = (float)(tu_urand() - 0.5);
    for (int i = 0; i < OUT * R; i++) up[i] = (float)(tu_urand() - 0.5);
    const char *k = "lora_unet_down_blocks_1_resnets_0_conv1";
    char dn[128], un[128], an[128];
    snprintf(dn, sizeof dn, "%s.lora_down.weight", k);
    snprintf(un, sizeof un, "%s.lora_up.weight", k);
    snprintf(an, sizeof an, "%s.alpha", k);
    sd_tensor t[3] = {
        {.name = dn, .dtype = SD_F32, .ndim = 4, .shape = {R, 32, 3, 3}, .data = down, .nbytes = sizeof down},
        {.name = un, .dtype = SD_F32, .ndim = 4, .shape = {OUT, R, 1, 1}, .data = up, .nbytes = sizeof up},
        {.name = an, .dtype = SD_F32, .ndim = 0, .data = &alpha, .nbytes = sizeof alpha},
    };
    const char *path = tu_tmp("locon.safetensors");
    if (st_write(path, t, 3, NULL, NULL, 0, &err) < 0) fail_msg("%s", err.msg);
    float *base = sd_tensor_to_f32_alloc(w, &err);
    sd_lora l;
    if (sd_lora_open(&l, path, &m, &err) < 0) fail_msg("%s", err.msg);
    sd_lora_patch patch = {0};
    const sd_lora *ls[1] = {&l};
    if (sd_lora_merge(&patch, &m, ls, (double[]){1.0}, (double[]){1.3}, 1, &err) < 0) fail_msg("%s", err.msg);
    w = sd_weights_find(&m.unet_w, target);
    assert_int_equal(w->dtype, SD_F32);
    const float *merged = w->data;
    double worst = 0;
    for (int o = 0; o < OUT; o++)
        for (int j = 0; j < IN; j++) {
            double d = 0;
            for (int r = 0; r < R; r++) d += (double)up[o * R + r] * down[r * IN + j];
            double want = base[o * IN + j] + 1.3 * (1.5 / R) * d, diff = fabs(merged[o * IN + j] - want);
            if (!(diff <= worst)) worst = diff; /* NaN sticks */
        }
    if (!(worst <= 1e-6)) fail_msg("LoCon merge off by %g", worst);
    sd_lora_unmerge(&patch, &m);
    w = sd_weights_find(&m.unet_w, target);
    assert_int_equal(w->dtype, SD_F16);
    free(base);
    sd_lora_close(&l);
    sd_model_close(&m);
}

/* ---- through the command line --------------------------------------------- */

/* Runs sdrender generate with args; returns the exit status, *out its stderr + stdout (caller frees). */
static int generate(char **out, const char *png, const char *args) {
    return tu_sh(out, "SDRENDER_CACHE=%s %s generate -q -m %s/models/tiny-sd15 -W 96 -H 96 -o %s %s 2>&1", tu_tmpdir(),
                 tu_bin(), tu_testdata(), png, args);
}

/* The PNG at path is the golden image of case name within one level per byte. */
static void expect_png_near_golden(const char *path, const char *name) {
    uint8_t *got = NULL;
    int w, h, gw, gh;
    sd_error err = {0};
    if (sd_png_read_rgb(path, &got, &w, &h, &err) < 0) fail_msg("%s", err.msg);
    char rel[160];
    snprintf(rel, sizeof rel, "a1111/pipeline_%s.png", name);
    uint8_t *want = tu_read_png_rgb(rel, &gh, &gw);
    assert_int_equal(w, gw);
    assert_int_equal(h, gh);
    for (size_t i = 0; i < (size_t)3 * w * h; i++)
        if (abs((int)got[i] - (int)want[i]) > 1) fail_msg("%s: byte %zu is %d, golden %d", path, i, got[i], want[i]);
    free(got);
    free(want);
}

static void test_generate_reproduces_the_a1111_pngs(void **state) {
    (void)state;
    const char *td = tu_testdata();
    char args[2048], *out = NULL;
    struct {
        const char *name, *fmt;
    } runs[] = {
        {"a1111_weights_euler_a_96", "--prompt-syntax a1111 -p 'a (red:1.4) fox in a [[misty]] forest, ((golden light))' "
                                     "-n 'blurry, (low quality:1.2)' --sampler euler_a --steps 8 --cfg-scale 7 --seed 42"},
        {"a1111_long_break_dpmpp_96", NULL},
        {"a1111_lora_0.8_euler_96", "--prompt-syntax a1111 -p 'a portrait of a knight <lora:lora_tiny_kohya:0.8>' "
                                    "--lora-dir %s/a1111 -n blurry --sampler euler --steps 8 --cfg-scale 7.5 --seed 1234"},
        {"a1111_lora_0.8_euler_96", "--prompt-syntax a1111 -p 'a portrait of a knight ' --lora "
                                    "%s/a1111/lora_tiny_peft.safetensors:0.8 -n blurry --sampler euler --steps 8 "
                                    "--cfg-scale 7.5 --seed 1234"},
    };
    /* the long prompt comes from its .json (BREAK and 90 words) */
    json_error_t je;
    json_t *j = json_load_file(tu_path("a1111/pipeline_a1111_long_break_dpmpp_96.json"), 0, &je);
    assert_non_null(j);
    char long_args[4096];
    snprintf(long_args, sizeof long_args, "--prompt-syntax a1111 -p '%s' --sampler dpm++2m --steps 8 --cfg-scale 6 "
             "--seed 7 --clip-skip 2", json_string_value(json_object_get(json_object_get(j, "settings"), "prompt")));
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        if (runs[i].fmt) snprintf(args, sizeof args, runs[i].fmt, td);
        else snprintf(args, sizeof args, "%s", long_args);
        const char *png = tu_tmp("a1111.png");
        int rc = generate(&out, png, args);
        if (rc) fail_msg("%s: exit %d: %s", runs[i].name, rc, out);
        free(out);
        expect_png_near_golden(png, runs[i].name);
        sd_png_text *texts;
        int nt;
        sd_error err = {0};
        assert_int_equal(sd_png_read_text(png, &texts, &nt, &err), 0);
        const char *params = sd_png_text_get(texts, nt, "parameters");
        assert_non_null(params);
        /* A1111's hash of a LoRA: the first 12 hex digits of SHA-256 over the data after the header */
        if (strstr(runs[i].name, "lora"))
            assert_non_null(strstr(params, strstr(args, "peft") ? "Lora hashes: \"lora_tiny_peft: "
                                                                : "Lora hashes: \"lora_tiny_kohya: 79c150fb0d07\""));
        else
            assert_null(strstr(params, "Lora hashes"));
        sd_png_text_free(texts, nt);
    }
    json_decref(j);
}

/* Writes a kohya LoRA with one module `key` whose down is [4, in] and up [out, 4]. */
static void write_lora(const char *path, const char *key, int64_t in, int64_t out) {
    static float data[4 * 4096];
    char dn[256], un[256];
    snprintf(dn, sizeof dn, "%s.lora_down.weight", key);
    snprintf(un, sizeof un, "%s.lora_up.weight", key);
    sd_tensor t[2] = {{.name = dn, .dtype = SD_F32, .ndim = 2, .shape = {4, in}, .data = data, .nbytes = 16 * (size_t)in},
                      {.name = un, .dtype = SD_F32, .ndim = 2, .shape = {out, 4}, .data = data, .nbytes = 16 * (size_t)out}};
    sd_error err = {0};
    if (st_write(path, t, 2, NULL, NULL, 0, &err) < 0) fail_msg("%s", err.msg);
}

/* Bad LoRA input: one clear line on stderr, exit 2, no PNG. */
static void test_bad_lora_input_is_one_line_and_exit_2(void **state) {
    (void)state;
    const char *td = tu_testdata();
    char corrupt[1024], cmd[4096];
    snprintf(corrupt, sizeof corrupt, "%s", tu_tmp("corrupt.safetensors"));
    assert_int_equal(tu_sh(NULL, "head -c 100000 %s/a1111/lora_tiny_kohya.safetensors > %s", td, corrupt), 0);
    write_lora(tu_tmp("sd2.safetensors"), "lora_te_text_model_encoder_layers_0_mlp_fc1", 1024, 4096);
    write_lora(tu_tmp("sdxl.safetensors"), "lora_te1_text_model_encoder_layers_0_mlp_fc1", 32, 64);
    write_lora(tu_tmp("nomodule.safetensors"), "lora_unet_mid_block_attentions_7_proj_in", 32, 32);
    struct {
        const char *args, *says;
    } cases[] = {
        {"--prompt-syntax a1111 -p 'x <lora:nope:1>' --lora-dir %s/a1111", "unknown LoRA 'nope'"},
        {"--prompt-syntax a1111 -p 'x <lora:lora_tiny_kohya:strong>' --lora-dir %s/a1111", "malformed LoRA tag"},
        {"--prompt-syntax a1111 -p 'x <lora:lora_tiny_kohya:0.5' --lora-dir %s/a1111", "malformed LoRA tag"},
        {"--prompt-syntax a1111 -p 'x <lora:lora_tiny_kohya:0.5>'", "needs --lora-dir"},
        {"-p x --lora %s", "lora_te_text_model_encoder_layers_0_mlp_fc1"},
        {"-p x --lora %s", "SDXL"},
        {"-p x --lora %s", "matches no module"},
        {"-p x --lora %s", "corrupt.safetensors"},
    };
    const char *files[] = {td, td, td, "", tu_tmp("sd2.safetensors"), tu_tmp("sdxl.safetensors"),
                           tu_tmp("nomodule.safetensors"), corrupt};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char args[2048], *out = NULL;
        snprintf(args, sizeof args, cases[i].args, files[i]);
        snprintf(cmd, sizeof cmd, "%s --steps 1 --seed 1", args);
        const char *png = tu_tmp("bad.png");
        remove(png);
        int rc = generate(&out, png, cmd);
        if (rc != 2 || !strstr(out, cases[i].says) || strchr(out, '\n') != out + strlen(out) - 1)
            fail_msg("%s: exit %d, expected 2 and one line saying '%s'; got: %s", args, rc, cases[i].says, out);
        assert_false(sd_fs_is_file(png));
        free(out);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_attention_matches_a1111),
        cmocka_unit_test(test_bad_weight_is_an_input_error),
        cmocka_unit_test(test_chunks_match_a1111),
        cmocka_unit_test(test_extra_networks_match_a1111),
        cmocka_unit_test(test_unclosed_lora_tag_is_an_input_error),
        cmocka_unit_test(test_conditioning_matches_a1111),
        cmocka_unit_test(test_lora_hashes_round_trip_in_the_parameters),
        cmocka_unit_test(test_a1111_pipelines_reproduce_the_reference),
        cmocka_unit_test(test_unmerge_restores_the_base_weights_exactly),
        cmocka_unit_test(test_locon_conv_merge_follows_the_formula),
        cmocka_unit_test(test_generate_reproduces_the_a1111_pngs),
        cmocka_unit_test(test_bad_lora_input_is_one_line_and_exit_2),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
