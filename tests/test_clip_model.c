/* Tests for core/clip_model and core/pil_resize: the tiny random CLIP against the CLIP-score goldens. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clip_model.h"
#include "pil_resize.h"
#include "tokenizer.h"
#include "weights.h"

/* metrics/README.md section 4 */
#define TOL_PIXELS 1e-6
#define TOL_EMBED 2e-5
#define TOL_COS 1e-5
#define TOL_SCORE 1e-3

static const char *const images[4] = {"clip0_64x83", "clip1_20x27", "clip2_100x70", "clip3_32x32"};

/* Reads an 8-bit RGB PNG of the test data (caller frees); the other engineer's pngio is not here yet. */
typedef struct fixture {
    st_file model, golden;
    sd_weights w;
    clip_model_config cfg;
    clip_model m;
    json_t *json;
    int ids[4 * 77];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    sd_error err = {0};
    tu_open(&f->model, "metrics/clip_tiny_random_fp16.safetensors");
    tu_open(&f->golden, "metrics/clip_score.safetensors");
    if (sd_weights_from_st(&f->w, &f->model, "", "clip", &err) < 0) fail_msg("%s", err.msg);
    if (clip_model_config_derive(&f->cfg, &f->w, NULL, &err) < 0) fail_msg("%s", err.msg);
    f->cfg.text.heads = f->cfg.vision.heads = 2; /* the tiny model was built with 2 heads (width 32 // 64 = 0) */
    if (clip_model_load(&f->m, &f->cfg, &f->w, &err) < 0) fail_msg("%s", err.msg);
    json_error_t je;
    f->json = json_load_file(tu_path("metrics/clip_score.json"), 0, &je);
    if (!f->json) fail_msg("clip_score.json: %s", je.text);
    const sd_tensor *t = tu_tensor(&f->golden, "input_ids_openai");
    assert_int_equal(t->dtype, SD_I32);
    memcpy(f->ids, t->data, sizeof f->ids);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    clip_model_free(&f->m);
    sd_weights_free(&f->w);
    st_close(&f->model);
    st_close(&f->golden);
    json_decref(f->json);
    free(f);
    return 0;
}

static double json_num(json_t *root, const char *key) {
    json_t *v = json_object_get(root, key);
    if (!json_is_number(v)) fail_msg("clip_score.json: '%s' is not a number", key);
    return json_number_value(v);
}

static void test_clip_preprocess_matches_pillow_resize_and_round_half_even_crop(void **state) {
    fixture *f = *state;
    sd_error err = {0};
    const sd_tensor *want_u8 = tu_tensor(&f->golden, "images_uint8_resized_cropped"); /* [4, 32, 32, 3] */
    size_t n;
    float *want_px = tu_f32(&f->golden, "pixel_values", &n);
    assert_int_equal(f->cfg.image_size, 32);
    uint8_t crop[32 * 32 * 3];
    float px[3 * 32 * 32];
    for (int i = 0; i < 4; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "metrics/images/%s.png", images[i]);
        int h, w;
        uint8_t *rgb = tu_read_png_rgb(rel, &h, &w);
        if (clip_model_image_preprocess(rgb, h, w, 32, crop, px, &err) < 0) fail_msg("%s", err.msg);
        const uint8_t *want = (const uint8_t *)want_u8->data + (size_t)i * sizeof crop;
        for (size_t k = 0; k < sizeof crop; k++)
            if (crop[k] != want[k])
                fail_msg("%s: resized/cropped byte %zu (y %zu, x %zu, c %zu) is %d, Pillow gives %d", images[i], k,
                         k / 96, k / 3 % 32, k % 3, crop[k], want[k]);
        tu_expect_close(images[i], px, want_px + (size_t)i * 3 * 32 * 32, 3 * 32 * 32, TOL_PIXELS);
        free(rgb);
    }
    free(want_px);
    assert_int_equal(clip_model_image_resize_crop(crop, 0, 3, 32, crop, &err), SD_EINPUT);
}

static void test_pil_resize_keeps_same_size_and_skips_unchanged_axis(void **state) {
    (void)state;
    sd_error err = {0};
    uint8_t src[4 * 6], dst[4 * 6], h_only[4 * 3], one_pass[4 * 3];
    for (int i = 0; i < 24; i++) src[i] = (uint8_t)(i * 37 % 251);
    assert_int_equal(pil_resize_bicubic(dst, 4, 6, src, 4, 6, 1, &err), 0);
    assert_memory_equal(dst, src, sizeof src);
    /* a width-only resize is one horizontal pass: equal to resizing each row as a 1-row image */
    assert_int_equal(pil_resize_bicubic(h_only, 4, 3, src, 4, 6, 1, &err), 0);
    for (int y = 0; y < 4; y++) assert_int_equal(pil_resize_bicubic(one_pass + 3 * y, 1, 3, src + 6 * y, 1, 6, 1, &err), 0);
    assert_memory_equal(h_only, one_pass, sizeof h_only);
    /* constant images stay constant (weights sum to 1 in fixed point, rounding included) */
    uint8_t flat[9 * 7 * 3], out[5 * 13 * 3];
    memset(flat, 200, sizeof flat);
    assert_int_equal(pil_resize_bicubic(out, 5, 13, flat, 9, 7, 3, &err), 0);
    for (size_t i = 0; i < sizeof out; i++) assert_int_equal(out[i], 200);
    assert_int_equal(pil_resize_bicubic(out, 0, 3, flat, 9, 7, 3, &err), SD_EINPUT);
}

static void test_clip_config_derives_sizes_from_shapes_and_heads_from_config_json(void **state) {
    fixture *f = *state;
    sd_error err = {0};
    clip_model_config c;
    assert_int_equal(clip_model_config_derive(&c, &f->w, NULL, &err), 0);
    assert_int_equal(c.vision.hidden, 32);
    assert_int_equal(c.vision.layers, 2);
    assert_int_equal(c.vision.intermediate, 128);
    assert_int_equal(c.patch_size, 8);
    assert_int_equal(c.image_size, 32);
    assert_int_equal(c.text.vocab_size, 49408);
    assert_int_equal(c.text.max_positions, 77);
    assert_int_equal(c.text.layers, 2);
    assert_int_equal(c.projection_dim, 16);
    assert_int_equal(c.vision.heads, 0); /* OpenAI's 32 // 64 */
    clip_model m;
    assert_int_equal(clip_model_load(&m, &c, &f->w, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "heads"));
    /* a Hugging Face CLIPModel config.json supplies heads and activation */
    FILE *fp = fopen(tu_tmp("config.json"), "w");
    fputs("{\"projection_dim\": 16, \"text_config\": {\"hidden_size\": 32, \"num_attention_heads\": 2},"
          " \"vision_config_dict\": {\"num_attention_heads\": 4, \"hidden_act\": \"gelu\"}}", fp);
    fclose(fp);
    assert_int_equal(clip_model_config_derive(&c, &f->w, tu_tmp("config.json"), &err), 0);
    assert_int_equal(c.text.heads, 2);
    assert_int_equal(c.vision.heads, 4);
    assert_int_equal(c.vision.act, CLIP_ACT_GELU);
    assert_int_equal(c.text.act, CLIP_ACT_QUICK_GELU);
    fp = fopen(tu_tmp("config.json"), "w");
    fputs("{\"vision_config\": {\"hidden_size\": 768}}", fp);
    fclose(fp);
    assert_int_equal(clip_model_config_derive(&c, &f->w, tu_tmp("config.json"), &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "hidden_size"));
    assert_true(clip_model_config_derive(&c, &f->w, tu_tmp("missing.json"), &err) < 0);
}

static void test_clip_embeddings_and_cosines_match_openai_clip(void **state) {
    fixture *f = *state;
    sd_error err = {0};
    size_t n;
    float *px = tu_f32(&f->golden, "pixel_values", &n);
    float vpool[4 * 32], tpool[4 * 32], img[4 * 16], txt[4 * 16];
    if (clip_model_image_embeds(&f->m, px, 4, vpool, img, &err) < 0) fail_msg("%s", err.msg);
    if (clip_model_text_embeds(&f->m, f->ids, 4, 77, tpool, txt, &err) < 0) fail_msg("%s", err.msg);
    static const struct {
        const char *name;
        double tol;
    } checks[4] = {{"vision_pooled_post_layernorm", TOL_EMBED},
                   {"text_pooled_final_layer_norm", TOL_EMBED},
                   {"image_embeds", TOL_EMBED},
                   {"text_embeds", TOL_EMBED}};
    const float *got[4] = {vpool, tpool, img, txt};
    for (int i = 0; i < 4; i++) {
        float *want = tu_f32(&f->golden, checks[i].name, &n);
        tu_expect_close(checks[i].name, got[i], want, n, checks[i].tol);
        free(want);
    }
    /* cosines of every (image, prompt) pair from the unnormalised embeddings */
    float cm[16];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            double c;
            clip_model_pair_cosines(img + 16 * i, txt + 16 * j, 1, 16, &c);
            cm[4 * i + j] = (float)c;
        }
    float *want = tu_f32(&f->golden, "cosine_matrix", &n);
    tu_expect_close("cosine_matrix", cm, want, 16, TOL_COS);
    free(want);
    clip_model_normalize_rows(img, 4, 16);
    clip_model_normalize_rows(txt, 4, 16);
    want = tu_f32(&f->golden, "image_embeds_normalized", &n);
    tu_expect_close("image_embeds_normalized", img, want, n, TOL_COS);
    free(want);
    want = tu_f32(&f->golden, "text_embeds_normalized", &n);
    tu_expect_close("text_embeds_normalized", txt, want, n, TOL_COS);
    free(want);
    /* HF-style ids padded with EOT pool at the first EOT: the same embeddings */
    const sd_tensor *hf = tu_tensor(&f->golden, "input_ids_hf_eot_padded");
    int ids_hf[4 * 77];
    float txt_hf[4 * 16], txt_again[4 * 16];
    memcpy(ids_hf, hf->data, sizeof ids_hf);
    if (clip_model_text_embeds(&f->m, ids_hf, 4, 77, NULL, txt_hf, &err) < 0) fail_msg("%s", err.msg);
    if (clip_model_text_embeds(&f->m, f->ids, 4, 77, NULL, txt_again, &err) < 0) fail_msg("%s", err.msg);
    tu_expect_close("EOT-padded ids", txt_hf, txt_again, 64, 0);
    free(px);
}

static void test_clip_score_is_clamped_mean_of_pair_scores(void **state) {
    fixture *f = *state;
    sd_error err = {0};
    size_t n;
    float *px = tu_f32(&f->golden, "pixel_values", &n);
    double score[4];
    if (clip_model_pair_scores(&f->m, px, f->ids, 4, 77, score, &err) < 0) fail_msg("%s", err.msg);
    json_t *want = json_object_get(f->json, "pair_scores_100cos_fp64");
    double sum = 0;
    for (int i = 0; i < 4; i++) {
        double w = json_number_value(json_array_get(want, (size_t)i));
        if (fabs(score[i] - w) > TOL_SCORE) fail_msg("pair %d: score %.6f, want %.6f", i, score[i], w);
        sum += score[i];
    }
    double s = clip_model_score_from_sum(sum, 4), ref = json_num(f->json, "clip_score_torchmetrics_fp64");
    if (fabs(s - ref) > TOL_SCORE) fail_msg("CLIP score %.6f, want %.6f", s, ref);
    /* ranks merge by summing: two halves give the same score */
    assert_true(fabs(clip_model_score_from_sum((score[0] + score[1]) + (score[2] + score[3]), 2 + 2) - s) < 1e-12);
    /* image 2 with all four prompts: the mean is negative, torchmetrics clamps it to 0 */
    float px4[4 * 3 * 32 * 32];
    for (int i = 0; i < 4; i++) memcpy(px4 + i * 3 * 32 * 32, px + 2 * 3 * 32 * 32, 3 * 32 * 32 * sizeof(float));
    if (clip_model_pair_scores(&f->m, px4, f->ids, 4, 77, score, &err) < 0) fail_msg("%s", err.msg);
    double mean = (score[0] + score[1] + score[2] + score[3]) / 4;
    double ref_mean = json_num(f->json, "image2_with_all_prompts_mean_100cos_fp64");
    if (fabs(mean - ref_mean) > TOL_SCORE) fail_msg("image 2 vs all prompts: mean %.6f, want %.6f", mean, ref_mean);
    assert_true(clip_model_score_from_sum(score[0] + score[1] + score[2] + score[3], 4) == 0.0);
    assert_true(json_num(f->json, "image2_with_all_prompts_clip_score_torchmetrics_fp64") == 0.0);
    assert_true(clip_model_score_from_sum(5.0, 0) == 0.0);
    free(px);
}

static void test_clip_load_names_missing_tensor(void **state) {
    fixture *f = *state;
    sd_error err = {0};
    const st_file *src = &f->model;
    const char **names = calloc((size_t)src->n, sizeof *names);
    const sd_tensor **ts = calloc((size_t)src->n, sizeof *ts);
    int k = 0;
    for (int i = 0; i < src->n; i++) {
        if (!strcmp(src->tensors[i].name, "vision_model.encoder.layers.1.mlp.fc2.bias")) continue;
        names[k] = src->tensors[i].name;
        ts[k++] = &src->tensors[i];
    }
    sd_weights w;
    if (sd_weights_from_list(&w, names, ts, k, "clip", &err) < 0) fail_msg("%s", err.msg);
    clip_model m;
    assert_true(clip_model_load(&m, &f->cfg, &w, &err) < 0);
    assert_non_null(strstr(err.msg, "vision_model.encoder.layers.1.mlp.fc2.bias"));
    sd_weights_free(&w);
    free(names), free(ts);
}

/* The CLIP-score prompts through our tokenizer (zero padding, as clip.tokenize) give input_ids_openai:
 * prompt 3 has "&amp;", prompt 1 surrounding spaces, caps and a digit. */
static void test_clip_score_prompts_tokenize_to_openai_input_ids(void **state) {
    fixture *f = *state;
    sd_error err = {0};
    tokenizer_bpe *tok = NULL;
    if (tokenizer_load_dir(&tok, tu_path("models/tiny-sd15/tokenizer"), &err) < 0) fail_msg("%s", err.msg);
    if (tokenizer_set_pad(tok, "!", &err) < 0) fail_msg("%s", err.msg);
    json_t *prompts = json_object_get(f->json, "prompts");
    assert_int_equal(json_array_size(prompts), 4);
    for (int i = 0; i < 4; i++) {
        const char *text = json_string_value(json_array_get(prompts, (size_t)i));
        int32_t ids[77];
        int n = 0;
        if (tokenizer_encode_padded(tok, text, ids, 77, &n, &err) < 0) fail_msg("'%s': %s", text, err.msg);
        for (int k = 0; k < 77; k++)
            if (ids[k] != f->ids[i * 77 + k])
                fail_msg("'%s': id %d is %d, input_ids_openai has %d", text, k, (int)ids[k], f->ids[i * 77 + k]);
    }
    tokenizer_free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clip_preprocess_matches_pillow_resize_and_round_half_even_crop),
        cmocka_unit_test(test_pil_resize_keeps_same_size_and_skips_unchanged_axis),
        cmocka_unit_test(test_clip_config_derives_sizes_from_shapes_and_heads_from_config_json),
        cmocka_unit_test(test_clip_embeddings_and_cosines_match_openai_clip),
        cmocka_unit_test(test_clip_score_is_clamped_mean_of_pair_scores),
        cmocka_unit_test(test_clip_load_names_missing_tensor),
        cmocka_unit_test(test_clip_score_prompts_tokenize_to_openai_input_ids),
    };
    return cmocka_run_group_tests_name("clip_model", tests, setup, teardown);
}
