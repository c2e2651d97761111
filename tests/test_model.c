/*
 * Tests for core/model: both checkpoint layouts give the same model; what each
 * config.json kind accepts, derives and refuses.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "model.h"
#include "pipeline.h"
#include "yamlconf.h"

static void open_or_fail(sd_model *m, const char *rel, const sd_model_opts *opts) {
    sd_error err = {0};
    if (sd_model_open(m, tu_path(rel), opts, &err) < 0) fail_msg("%s: %s", rel, err.msg);
}

/* Every tensor of a (renamed) table equals the tensor of the same name in the other table. */
static void expect_same_tables(const sd_weights *a, const sd_weights *b) {
    assert_int_equal(a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        const sd_tensor *x = &a->tensors[i];
        const sd_tensor *y = sd_weights_find(b, x->name);
        if (!y) fail_msg("tensor '%s' of %s missing from %s", x->name, a->label, b->label);
        if (!sd_tensor_has_shape(y, x->ndim, x->shape) || x->dtype != y->dtype)
            fail_msg("tensor '%s': shape or dtype differs", x->name);
        if (memcmp(x->data, y->data, x->nbytes)) fail_msg("tensor '%s': values differ", x->name);
    }
}

static void test_single_file_has_the_same_tensors_as_the_diffusers_folder(void **state) {
    (void)state;
    sd_model a, b;
    open_or_fail(&a, "models/tiny-sd15", NULL);
    open_or_fail(&b, "models/tiny-sd15.safetensors", NULL);
    expect_same_tables(&a.unet_w, &b.unet_w);
    expect_same_tables(&a.vae_w, &b.vae_w);
    expect_same_tables(&a.clip_w, &b.clip_w);
    sd_model_close(&a);
    sd_model_close(&b);
}

static void test_ckpt_checkpoint_has_the_same_tensors_and_architecture(void **state) {
    (void)state;
    sd_model a, b;
    open_or_fail(&a, "models/tiny-sd15", NULL);
    open_or_fail(&b, "checkpoints/tiny-sd15.ckpt", NULL);
    expect_same_tables(&a.unet_w, &b.unet_w);
    expect_same_tables(&a.vae_w, &b.vae_w);
    expect_same_tables(&a.clip_w, &b.clip_w);
    assert_memory_equal(&a.unet, &b.unet, sizeof a.unet);
    assert_memory_equal(&a.vae, &b.vae, sizeof a.vae);
    assert_memory_equal(&a.clip, &b.clip, sizeof a.clip);
    sd_model_close(&a);
    sd_model_close(&b);
}

static void test_single_file_architecture_equals_the_folder_configs(void **state) {
    (void)state;
    sd_model a, b;
    open_or_fail(&a, "models/tiny-sd15", NULL);
    open_or_fail(&b, "models/tiny-sd15.safetensors", NULL);
    assert_memory_equal(&a.unet, &b.unet, sizeof a.unet);
    assert_memory_equal(&a.vae, &b.vae, sizeof a.vae);
    assert_memory_equal(&a.clip, &b.clip, sizeof a.clip);
    assert_memory_equal(&a.sched, &b.sched, sizeof a.sched);
    assert_int_equal(b.unet.heads[0], 2); /* from tiny-sd15.yaml, not the SD 1.x default of 8 */
    assert_int_equal(a.sd_version, 1);
    assert_int_equal(b.sd_version, 1);
    assert_int_equal(b.layout, SD_LAYOUT_SINGLE_FILE);
    sd_model_close(&a);
    sd_model_close(&b);
}

static void test_variants_are_detected(void **state) {
    (void)state;
    sd_model m;
    char buf[64];
    open_or_fail(&m, "models/tiny-sd2", NULL);
    assert_int_equal(m.sd_version, 2);
    assert_int_equal(m.sched.prediction_type, SCHED_PRED_V);
    assert_true(m.unet.use_linear_projection);
    assert_int_equal(m.unet.heads[0], 2);
    assert_int_equal(m.unet.heads[3], 4);
    assert_int_equal(unet_config_head_dim(&m.unet, 3), 16);
    assert_int_equal(m.clip.act, CLIP_ACT_GELU);
    assert_string_equal(sd_model_variant(&m, buf, sizeof buf), "SD 2.x (v-prediction)");
    sd_model_close(&m);
    open_or_fail(&m, "models/tiny-inpaint", NULL);
    assert_true(m.inpaint);
    assert_int_equal(m.unet.in_channels, 9);
    assert_string_equal(sd_model_variant(&m, buf, sizeof buf), "SD 1.x inpainting");
    assert_string_equal(m.pipeline_class, "StableDiffusionInpaintPipeline");
    sd_model_close(&m);
}

/* Without a .yaml a single file gets real SD 1.x's 8 heads; --config overrides. */
static void test_single_file_heads_come_from_the_yaml(void **state) {
    (void)state;
    char cwd[1024];
    assert_non_null(getcwd(cwd, sizeof cwd));
    const char *link = tu_tmp("noyaml.safetensors");
    char target[2048];
    const char *td = tu_testdata();
    if (td[0] == '/') snprintf(target, sizeof target, "%s/models/tiny-sd15.safetensors", td);
    else snprintf(target, sizeof target, "%s/%s/models/tiny-sd15.safetensors", cwd, td);
    unlink(link);
    assert_int_equal(symlink(target, link), 0);
    sd_model m;
    sd_error err = {0};
    assert_int_equal(sd_model_open(&m, link, NULL, &err), 0);
    assert_null(m.config_source);
    assert_int_equal(m.unet.heads[0], 8);
    sd_model_close(&m);

    const char *yaml = tu_tmp("four.yaml");
    FILE *fp = fopen(yaml, "w");
    fprintf(fp, "model:\n  params:\n    scale_factor: 0.13025\n    parameterization: \"v\"\n"
                "    unet_config:\n      params:\n        num_heads: 4\n");
    fclose(fp);
    sd_model_opts opts = {.config = yaml};
    assert_int_equal(sd_model_open(&m, link, &opts, &err), 0);
    assert_int_equal(m.unet.heads[1], 4);
    assert_true(m.vae.scaling_factor == 0.13025f);
    assert_int_equal(m.sched.prediction_type, SCHED_PRED_V);
    sd_model_close(&m);

    fp = fopen(yaml, "w");
    fprintf(fp, "model:\n  params:\n    unet_config:\n      params:\n        num_heads: 3\n");
    fclose(fp);
    assert_int_equal(sd_model_open(&m, link, &opts, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "3 heads do not divide 32 channels"));
}

static void test_ldm_names_translate_to_diffusers_names(void **state) {
    (void)state;
    static const char *cases[][2] = {
        {"input_blocks.0.0.weight", "conv_in.weight"},
        {"input_blocks.1.0.in_layers.0.weight", "down_blocks.0.resnets.0.norm1.weight"},
        {"input_blocks.2.1.proj_in.bias", "down_blocks.0.attentions.1.proj_in.bias"},
        {"input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight"},
        {"input_blocks.4.0.skip_connection.bias", "down_blocks.1.resnets.0.conv_shortcut.bias"},
        {"input_blocks.11.0.out_layers.3.weight", "down_blocks.3.resnets.1.conv2.weight"},
        {"middle_block.2.emb_layers.1.weight", "mid_block.resnets.1.time_emb_proj.weight"},
        {"middle_block.1.transformer_blocks.0.attn2.to_k.weight", "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"},
        {"output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight"},
        {"output_blocks.5.2.conv.bias", "up_blocks.1.upsamplers.0.conv.bias"},
        {"output_blocks.5.1.norm.weight", "up_blocks.1.attentions.2.norm.weight"},
        {"time_embed.2.bias", "time_embedding.linear_2.bias"},
        {"out.0.weight", "conv_norm_out.weight"},
    };
    char out[256];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_int_equal(sd_model_ldm_unet_name(cases[i][0], 2, out, sizeof out), 0);
        assert_string_equal(out, cases[i][1]);
    }
    assert_int_equal(sd_model_ldm_unet_name("label_emb.0.0.weight", 2, out, sizeof out), -1);
    assert_int_equal(sd_model_ldm_vae_name("decoder.up.3.block.0.nin_shortcut.weight", 4, out, sizeof out), 0);
    assert_string_equal(out, "decoder.up_blocks.0.resnets.0.conv_shortcut.weight");
    assert_int_equal(sd_model_ldm_vae_name("decoder.up.1.upsample.conv.bias", 4, out, sizeof out), 0);
    assert_string_equal(out, "decoder.up_blocks.2.upsamplers.0.conv.bias");
    assert_int_equal(sd_model_ldm_vae_name("encoder.mid.attn_1.proj_out.weight", 4, out, sizeof out), 0);
    assert_string_equal(out, "encoder.mid_block.attentions.0.to_out.0.weight");
}

/* LDM files do not name their block classes: a level's attention is what its tensors are. */
static void test_single_file_attention_kinds_follow_the_tensors_present(void **state) {
    (void)state;
    float x = 0;
    sd_tensor t = {.dtype = SD_F32, .ndim = 1, .shape = {1}, .data = &x, .nbytes = 4};
    const char *names[3] = {"down_blocks.0.attentions.0.proj_in.weight", "down_blocks.1.attentions.0.norm.weight",
                            "mid_block.attentions.0.proj_in.weight"};
    const sd_tensor *ts[3] = {&t, &t, &t};
    sd_weights w;
    sd_error err = {0};
    assert_int_equal(sd_weights_from_list(&w, names, ts, 3, "unet", &err), 0);
    unet_config c;
    unet_config_sd15(&c);
    c.n_levels = 3;
    sd_model_ldm_unet_attn(&c, &w);
    assert_int_equal(c.down_attn[0], UNET_ATTN_CROSS);
    assert_int_equal(c.down_attn[1], UNET_ATTN_SELF); /* an LDM AttentionBlock: norm, qkv, no proj_in */
    assert_int_equal(c.down_attn[2], UNET_ATTN_NONE);
    for (int i = 0; i < 3; i++) assert_int_equal(c.up_attn[i], UNET_ATTN_NONE);
    assert_int_equal(c.mid_attn, UNET_ATTN_CROSS);
    assert_int_equal(unet_config_check_attn(&c, &err), SD_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "down block 1"));
    sd_weights_free(&w);
}

static void test_missing_or_misshapen_tensor_error_names_it_and_the_expected_shape(void **state) {
    (void)state;
    sd_model m;
    open_or_fail(&m, "models/tiny-sd15.safetensors", NULL);
    const sd_tensor *t;
    sd_error err = {0};
    int64_t shape[4] = {32, 4, 3, 3};
    assert_int_equal(sd_weights_get(&m.unet_w, "conv_in.weight", 4, shape, &t, &err), 0);
    shape[0] = 320;
    assert_int_equal(sd_weights_get(&m.unet_w, "conv_in.weight", 4, shape, &t, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "'conv_in.weight' has shape [32, 4, 3, 3], expected [320, 4, 3, 3]"));
    assert_int_equal(sd_weights_getf(&m.unet_w, &t, &err, shape, 4, "down_blocks.%d.nothing", 7), SD_EINPUT);
    assert_non_null(strstr(err.msg, "missing tensor 'down_blocks.7.nothing' (expected shape [320, 4, 3, 3])"));
    assert_non_null(strstr(err.msg, "tiny-sd15.safetensors"));
    sd_model_close(&m);
}

static void test_bad_model_paths_give_clear_errors(void **state) {
    (void)state;
    sd_model m;
    sd_error err = {0};
    assert_int_equal(sd_model_open(&m, tu_tmp("nothing-here"), NULL, &err), SD_ENOTFOUND);
    assert_int_equal(sd_model_open(&m, tu_path("models"), NULL, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "model_index.json"));
    /* a safetensors file that is not an SD checkpoint */
    float x = 1;
    sd_tensor t = {.name = "foo.weight", .dtype = SD_F32, .ndim = 1, .shape = {1}, .data = &x, .nbytes = 4};
    const char *p = tu_tmp("other.safetensors");
    assert_int_equal(st_write(p, &t, 1, NULL, NULL, 0, NULL), 0);
    assert_int_equal(sd_model_open(&m, p, NULL, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "not a Stable Diffusion checkpoint"));
}

static void test_yaml_scalars_resolve_like_pyyaml(void **state) {
    (void)state;
    const char *y = "a:\n  b: 4\n  c: 1.0e-4\n  d: true\n  e: \"7\"\n  f: [1, 2]\n  g: ~\n  h: text\n";
    json_t *j;
    sd_error err = {0};
    assert_int_equal(sd_yaml_parse(y, strlen(y), "t.yaml", &j, &err), 0);
    assert_int_equal(json_integer_value(sd_yaml_json_path(j, "a.b")), 4);
    assert_true(json_is_real(sd_yaml_json_path(j, "a.c")) && json_real_value(sd_yaml_json_path(j, "a.c")) == 1e-4);
    assert_true(json_is_true(sd_yaml_json_path(j, "a.d")));
    assert_string_equal(json_string_value(sd_yaml_json_path(j, "a.e")), "7");
    assert_int_equal(json_array_size(sd_yaml_json_path(j, "a.f")), 2);
    assert_true(json_is_null(sd_yaml_json_path(j, "a.g")));
    assert_string_equal(json_string_value(sd_yaml_json_path(j, "a.h")), "text");
    json_decref(j);
    const char *bad = "a: [1, 2\nb: 3\n";
    assert_int_equal(sd_yaml_parse(bad, strlen(bad), "bad.yaml", &j, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "bad.yaml:"));
}

/* Lines of `sdrender info` from "architecture:" to the end, minus the per-file details. */
static char *info_arch(const char *model) {
    char *out;
    int rc = tu_sh(&out, "%s info -m %s 2>&1", tu_bin(), model);
    if (rc != 0) fail_msg("sdrender info -m %s failed (%d): %s", model, rc, out);
    char *a = strstr(out, "architecture:");
    assert_non_null(a);
    char *r = strdup(a);
    free(out);
    return r;
}

static void test_info_prints_the_same_architecture_for_both_layouts(void **state) {
    (void)state;
    char *a = info_arch(tu_path("models/tiny-sd15"));
    char *b = info_arch(tu_path("models/tiny-sd15.safetensors"));
    assert_string_equal(a, b);
    assert_non_null(strstr(a, "heads [2, 2, 2, 2]"));
    assert_non_null(strstr(a, "unet:         3.223 M parameters"));
    free(a);
    free(b);
    char *out;
    assert_int_equal(tu_sh(&out, "%s info -m /no/such/model 2>&1", tu_bin()), 2);
    assert_non_null(strstr(out, "sdrender: /no/such/model: no such model"));
    free(out);
}

/* A pixel-space pipeline's folder names no VAE and no text encoder: it opens without them, and what
 * needs them says so instead of crashing. (The U-Net here is tiny-sd15's, which the code can run.) */
static void test_folder_without_vae_or_text_encoder_opens_and_the_pipeline_refuses_it(void **state) {
    (void)state;
    const char *dir = tu_tmp("unet-only");
    char abs_td[1024];
    assert_non_null(realpath(tu_testdata(), abs_td));
    int rc = tu_sh(NULL,
                   "set -e; rm -rf '%s'; mkdir -p '%s/unet' '%s/scheduler'; cd '%s';"
                   " cp '%s/models/tiny-sd15/unet/config.json' unet/;"
                   " ln -s '%s/models/tiny-sd15/unet/diffusion_pytorch_model.safetensors' unet/;"
                   " cp '%s/models/tiny-sd15/scheduler/scheduler_config.json' scheduler/;"
                   " printf '{\"_class_name\": \"DDPMPipeline\", \"unet\": [\"diffusers\", \"UNet2DConditionModel\"],"
                   " \"scheduler\": [\"diffusers\", \"PNDMScheduler\"], \"vae\": [null, null]}' > model_index.json",
                   dir, dir, dir, dir, abs_td, abs_td, abs_td);
    assert_int_equal(rc, 0);
    sd_model m;
    sd_error err = {0};
    if (sd_model_open(&m, dir, NULL, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(m.parts, 0);
    assert_int_equal(m.vae_w.n, 0);
    assert_int_equal(m.clip_w.n, 0);
    tokenizer_bpe *tok;
    assert_int_equal(sd_model_open_tokenizer(&m, &tok, &err), SD_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "no text encoder"));
    sd_pipeline p;
    assert_int_equal(sd_pipeline_load(&p, &m, &err), SD_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "no VAE"));
    assert_non_null(strstr(err.msg, "unet-only"));
    sd_model_close(&m);
    /* an SD folder and a single file have both */
    open_or_fail(&m, "models/tiny-sd15", NULL);
    assert_int_equal(m.parts, SD_PART_VAE | SD_PART_TEXT_ENCODER);
    sd_model_close(&m);
    open_or_fail(&m, "models/tiny-sd15.safetensors", NULL);
    assert_int_equal(m.parts, SD_PART_VAE | SD_PART_TEXT_ENCODER);
    sd_model_close(&m);
}

/* The latent size unit follows the VAE's depth instead of SD's fixed 8. */
static void test_vae_scale_factor_is_two_to_the_number_of_levels_minus_one(void **state) {
    (void)state;
    static const struct {
        const char *model;
        int factor;
    } cases[] = {{"models/tiny-sd15", 8}, {"ext/models/tiny-ldm-f4", 4}, {"ext/models/tiny-ldm-f16", 16}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sd_model m;
        open_or_fail(&m, cases[i].model, NULL);
        assert_int_equal(vae_scale_factor(&m.vae), cases[i].factor);
        sd_model_close(&m);
    }
    vae_config none = {0}; /* a model without a VAE works in pixels */
    assert_int_equal(vae_scale_factor(&none), 1);
    char *out;
    int rc = tu_sh(&out, "%s generate -q -m %s -p x -W 136 -H 128 -o %s 2>&1", tu_bin(),
                   tu_path("ext/models/tiny-ldm-f16"), tu_tmp("f16.png"));
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "must each be a multiple of 16"));
    free(out);
}

/* ---- config.json parsing ---- */

/* Writes text to <tmp>/<dir>/config.json; returns the path (valid until the 16th next tu_tmp call). */
static const char *write_config(const char *dir, const char *text) {
    sd_error err = {0};
    if (sd_fs_mkdirs(tu_tmp(dir), &err) < 0) fail_msg("%s", err.msg);
    char rel[128];
    snprintf(rel, sizeof rel, "%s/config.json", dir);
    const char *path = tu_tmp(rel);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    return path;
}

/* A U-Net config: SD 1.5's layout with 2 levels of 32 channels, plus `extra` (",\"key\": value" or ""). */
static int load_unet(unet_config *c, const char *down, const char *up, const char *extra, sd_error *err) {
    char text[2048];
    snprintf(text, sizeof text,
             "{\"_class_name\": \"UNet2DConditionModel\", \"block_out_channels\": [32, 32], \"attention_head_dim\": 2,"
             " \"down_block_types\": [%s], \"up_block_types\": [%s]%s}",
             down, up, extra);
    return unet_config_load(c, write_config("unet", text), err);
}

static void test_unet_attention_kind_per_level_comes_from_the_block_type_names(void **state) {
    (void)state;
    unet_config c;
    sd_error err = {0};
    if (unet_config_load(&c, tu_path("models/tiny-sd15/unet/config.json"), &err) < 0) fail_msg("%s", err.msg);
    const unet_attn_kind sd_down[4] = {UNET_ATTN_CROSS, UNET_ATTN_CROSS, UNET_ATTN_CROSS, UNET_ATTN_NONE};
    const unet_attn_kind sd_up[4] = {UNET_ATTN_NONE, UNET_ATTN_CROSS, UNET_ATTN_CROSS, UNET_ATTN_CROSS};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(c.down_attn[i], sd_down[i]);
        assert_int_equal(c.up_attn[i], sd_up[i]);
    }
    assert_int_equal(c.mid_attn, UNET_ATTN_CROSS);
    /* not SD's fixed layout: attention on the deep level only (as the x4 upscaler's first level has none) */
    if (load_unet(&c, "\"DownBlock2D\", \"CrossAttnDownBlock2D\"", "\"CrossAttnUpBlock2D\", \"UpBlock2D\"", "", &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(c.n_levels, 2);
    assert_int_equal(c.down_attn[0], UNET_ATTN_NONE);
    assert_int_equal(c.down_attn[1], UNET_ATTN_CROSS);
    assert_int_equal(c.up_attn[0], UNET_ATTN_CROSS);
    assert_int_equal(c.up_attn[1], UNET_ATTN_NONE);
    assert_int_equal(c.mid_attn, UNET_ATTN_CROSS);
}

static void test_unet_self_attention_blocks_load_and_unknown_blocks_are_refused(void **state) {
    (void)state;
    unet_config c;
    sd_error err = {0};
    if (load_unet(&c, "\"DownBlock2D\", \"AttnDownBlock2D\"", "\"AttnUpBlock2D\", \"UpBlock2D\"", "", &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(c.down_attn[1], UNET_ATTN_SELF);
    assert_int_equal(c.up_attn[0], UNET_ATTN_SELF);
    /* an unknown block class is named */
    assert_int_equal(load_unet(&c, "\"DownBlock2D\", \"KDownBlock2D\"", "\"UpBlock2D\", \"UpBlock2D\"", "", &err),
                     SD_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "'KDownBlock2D'"));
    /* UNet2DConditionModel without a mid block (mid_block_type null) */
    assert_int_equal(load_unet(&c, "\"DownBlock2D\", \"DownBlock2D\"", "\"UpBlock2D\", \"UpBlock2D\"",
                               ", \"mid_block_type\": null", &err),
                     SD_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "mid block type 'null'"));
}

/* Loads text as <tmp>/<kind>/config.json with the parser of `kind`. */
static int load_kind(config_kind kind, const char *text, sd_error *err) {
    static const char *dirs[] = {"unet", "vae", "text_encoder", "scheduler"};
    const char *path = write_config(dirs[kind], text);
    union {
        unet_config u;
        vae_config v;
        clip_config c;
        sched_config s;
    } cfg;
    switch (kind) {
    case CONFIG_UNET: return unet_config_load(&cfg.u, path, err);
    case CONFIG_VAE: return vae_config_load(&cfg.v, path, err);
    case CONFIG_TEXT_ENCODER: return clip_config_load(&cfg.c, path, err);
    case CONFIG_SCHEDULER: return sched_config_load(&cfg.s, path, err);
    }
    return SD_EINTERNAL;
}

/* `{"key": value}` is refused by kind's parser with an error naming the key, the file and "not supported yet". */
static void expect_refused(config_kind kind, const char *key, const char *value) {
    char text[512], want[128];
    snprintf(text, sizeof text, "{\"%s\": %s}", key, value);
    sd_error err = {0};
    int rc = load_kind(kind, text, &err);
    if (rc != SD_EUNSUPPORTED) fail_msg("%s: rc %d, want SD_EUNSUPPORTED (%s)", text, rc, err.msg);
    snprintf(want, sizeof want, "'%s'", key);
    if (!strstr(err.msg, want) || !strstr(err.msg, "not supported yet") || !strstr(err.msg, "config.json"))
        fail_msg("%s: the error '%s' does not name %s, the file and 'not supported yet'", text, err.msg, want);
}

/* Every key a table accepts only at its default: a different value is refused (the table is the list). */
static void test_every_refused_config_key_is_named_with_its_file(void **state) {
    (void)state;
    int checked = 0;
    for (int kind = CONFIG_UNET; kind <= CONFIG_SCHEDULER; kind++) {
        for (const config_fixed_key *k = config_table_of((config_kind)kind)->fixed; k->name; k++, checked++)
            expect_refused((config_kind)kind, k->name, "\"a value sdrender does not implement\"");
        expect_refused((config_kind)kind, "a_key_from_a_newer_diffusers", "false"); /* unknown keys */
    }
    assert_true(checked >= 50);
}

/* The non-default values real models carry, each refused by name: per kind, key and value pairs. */
static void test_real_unimplemented_config_values_are_refused(void **state) {
    (void)state;
    static const char *const unet[] = {
        "addition_embed_type", "\"text_image\"", /* Kandinsky */
        "class_embed_type", "\"timestep\"", "time_embedding_type", "\"fourier\"", "conv_in_kernel", "7",
        "resnet_time_scale_shift", "\"scale_shift\"", "mid_block_scale_factor", "1.414", NULL};
    static const char *const vae[] = {"_class_name", "\"AutoencoderTiny\"", "use_quant_conv", "false",
                                      "down_block_types", "[\"DownEncoderBlock2D\", \"DownBlock2D\"]",
                                      "latents_mean", "[0.1, 0.2, 0.3, 0.4]", NULL};
    static const char *const text[] = {"architectures", "[\"CLIPVisionModelWithProjection\"]", /* an image encoder */
                                       "model_type", "\"clip_vision_model\"", NULL};
    static const char *const sched[] = {
        "trained_betas", "[0.1, 0.2]", "thresholding", "true", "rescale_betas_zero_snr", "true",
        "algorithm_type", "\"sde-dpmsolver++\"", "variance_type", "\"fixed_large\"", "use_karras_sigmas", "true", NULL};
    const char *const *lists[4] = {unet, vae, text, sched};
    for (int kind = CONFIG_UNET; kind <= CONFIG_SCHEDULER; kind++)
        for (const char *const *kv = lists[kind]; *kv; kv += 2) expect_refused((config_kind)kind, kv[0], kv[1]);
}

/* Default values pass, also where diffusers writes them differently (1.0 for 1, a list of defaults). */
static void test_config_keys_at_their_defaults_are_accepted(void **state) {
    (void)state;
    for (int kind = CONFIG_UNET; kind <= CONFIG_SCHEDULER; kind++) {
        for (const config_fixed_key *k = config_table_of((config_kind)kind)->fixed; k->name; k++) {
            for (int v = 0; v < CONFIG_KEY_MAX_VALUES && k->values[v]; v++) {
                char text[512];
                snprintf(text, sizeof text, "{\"%s\": %s}", k->name, k->values[v]);
                sd_error err = {0};
                if (load_kind((config_kind)kind, text, &err) < 0) fail_msg("%s: %s", text, err.msg);
            }
        }
    }
    static const struct {
        config_kind kind;
        const char *text;
    } more[] = {
        {CONFIG_UNET, "{\"only_cross_attention\": [false, false, false, false], \"resnet_out_scale_factor\": 1.0}"},
        {CONFIG_UNET, "{\"_name_or_path\": \"x\", \"dropout\": 0.1, \"_sdrender_note\": \"bookkeeping\"}"},
        {CONFIG_TEXT_ENCODER, "{\"architectures\": [\"CLIPTextModel\"], \"torch_dtype\": \"float32\"}"},
        {CONFIG_SCHEDULER, "{\"solver_type\": \"bh2\", \"disable_corrector\": [], \"clip_sample_range\": 1.0}"},
    };
    for (size_t i = 0; i < sizeof more / sizeof *more; i++) {
        sd_error err = {0};
        if (load_kind(more[i].kind, more[i].text, &err) < 0) fail_msg("%s: %s", more[i].text, err.msg);
    }
}

/* Everything shipped as an SD model keeps opening under the stricter parsers. */
static void test_every_sd_test_model_still_opens(void **state) {
    (void)state;
    static const char *paths[] = {"models/tiny-sd15",       "models/tiny-sd2",           "models/tiny-inpaint",
                                  "models/tiny-sd15.safetensors", "checkpoints/tiny-sd15.ckpt", "ext/models/tiny-ldm-f4",
                                  "ext/models/tiny-ldm-f16"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        sd_model m;
        open_or_fail(&m, paths[i], NULL);
        sd_model_close(&m);
    }
}

/*
 * The ext models open (the x4 upscaler's num_class_embeds and only_cross_attention, the DDPM's
 * downsample_padding 0 are implemented); values beyond them are still refused naming the key.
 */
static void test_x4_upscaler_and_ddpm_open_and_their_keys_are_checked(void **state) {
    (void)state;
    const char *paths[2] = {"ext/models/tiny-sd-x4-upscaler", "ext/models/tiny-ddpm"};
    for (int i = 0; i < 2; i++) {
        sd_model m;
        open_or_fail(&m, paths[i], NULL);
        sd_model_close(&m);
    }
    unet_config c;
    sd_error err = {0};
    assert_int_equal(unet_config_from_json(&c, "{\"downsample_padding\": 2}", &err), SD_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "downsample_padding"));
    assert_int_equal(unet_config_from_json(&c, "{\"only_cross_attention\": [true]}", &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "only_cross_attention"));
    /* integers out of int's range are refused, not wrapped (a real one was undefined behaviour: fuzz_config) */
    const char *bad_ints[] = {"4.9494e9", "-4.9494e9", "4294967297", "1e300", "2.5", "\"4\""};
    for (int i = 0; i < 6; i++) {
        char json[64];
        snprintf(json, sizeof json, "{\"sample_size\": %s}", bad_ints[i]);
        memset(&err, 0, sizeof err);
        assert_int_equal(unet_config_from_json(&c, json, &err), SD_EINPUT);
        assert_non_null(strstr(err.msg, "sample_size"));
    }
    assert_int_equal(unet_config_from_json(&c, "{\"sample_size\": 64.0}", &err), 0);
    assert_int_equal(c.sample_size, 64);
    /* channel counts beyond any model's, whose 4x time embedding overflowed int (fuzz_config) */
    assert_int_equal(unet_config_from_json(&c, "{\"block_out_channels\": [643333333]}", &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "block_out_channels"));
    assert_int_equal(unet_config_from_json(&c, "{\"block_out_channels\": [320, 0]}", &err), SD_EINPUT);
    vae_config vc;
    assert_int_equal(vae_config_from_json(&vc, "{\"block_out_channels\": [128, -256]}", &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "block_out_channels"));
    expect_refused(CONFIG_UNET, "class_embed_type", "\"timestep\"");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_file_has_the_same_tensors_as_the_diffusers_folder),
        cmocka_unit_test(test_single_file_architecture_equals_the_folder_configs),
        cmocka_unit_test(test_ckpt_checkpoint_has_the_same_tensors_and_architecture),
        cmocka_unit_test(test_variants_are_detected),
        cmocka_unit_test(test_single_file_heads_come_from_the_yaml),
        cmocka_unit_test(test_ldm_names_translate_to_diffusers_names),
        cmocka_unit_test(test_single_file_attention_kinds_follow_the_tensors_present),
        cmocka_unit_test(test_missing_or_misshapen_tensor_error_names_it_and_the_expected_shape),
        cmocka_unit_test(test_bad_model_paths_give_clear_errors),
        cmocka_unit_test(test_yaml_scalars_resolve_like_pyyaml),
        cmocka_unit_test(test_info_prints_the_same_architecture_for_both_layouts),
        cmocka_unit_test(test_folder_without_vae_or_text_encoder_opens_and_the_pipeline_refuses_it),
        cmocka_unit_test(test_vae_scale_factor_is_two_to_the_number_of_levels_minus_one),
        cmocka_unit_test(test_unet_attention_kind_per_level_comes_from_the_block_type_names),
        cmocka_unit_test(test_unet_self_attention_blocks_load_and_unknown_blocks_are_refused),
        cmocka_unit_test(test_every_refused_config_key_is_named_with_its_file),
        cmocka_unit_test(test_real_unimplemented_config_values_are_refused),
        cmocka_unit_test(test_config_keys_at_their_defaults_are_accepted),
        cmocka_unit_test(test_every_sd_test_model_still_opens),
        cmocka_unit_test(test_x4_upscaler_and_ddpm_open_and_their_keys_are_checked),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
