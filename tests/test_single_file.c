/*
 * The networks loaded from the single-file fp16 checkpoint (tiny-sd15.safetensors
 * with its .yaml, and the .ckpt twin) give the reference outputs, as from the
 * diffusers folder: text encoder, U-Net and VAE decode/encode.
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "clip.h"
#include "model.h"
#include "pipeline.h"
#include "unet.h"
#include "vae.h"

/* The text encoder of m against golden_rel: last and penultimate hidden states of its six prompts. */
static void check_text_encoder(const sd_model *m, const char *golden_rel, const char *what) {
    st_file g;
    sd_error err = {0};
    char label[256];
    tu_open(&g, golden_rel);
    const sd_tensor *ids64 = tu_tensor(&g, "input_ids");
    int n_ids = (int)sd_tensor_numel(ids64);
    int *ids = malloc(sizeof(int) * (size_t)n_ids);
    for (int i = 0; i < n_ids; i++) {
        int64_t v;
        memcpy(&v, (const char *)ids64->data + 8 * (size_t)i, 8);
        ids[i] = (int)v;
    }
    clip_text_model clip;
    if (clip_text_load(&clip, &m->clip, &m->clip_w, &err) < 0) fail_msg("%s", err.msg);
    size_t n;
    float *want = tu_f32(&g, "last_hidden_state", &n), *got = malloc(sizeof(float) * n);
    assert_int_equal(clip_text_forward(&clip, ids, 6, 77, 0, got, &err), 0);
    snprintf(label, sizeof label, "%s text encoder last_hidden_state", what);
    tu_expect_close(label, got, want, n, 2e-5);
    free(want);
    want = tu_f32(&g, "penultimate_hidden_state", &n);
    assert_int_equal(clip_text_forward(&clip, ids, 6, 77, 1, got, &err), 0);
    snprintf(label, sizeof label, "%s text encoder penultimate_hidden_state", what);
    tu_expect_close(label, got, want, n, 2e-5);
    free(want);
    free(got);
    free(ids);
    clip_text_free(&clip);
    st_close(&g);
}

static void check_model(const char *rel) {
    sd_model m;
    sd_error err = {0};
    if (sd_model_open(&m, tu_path(rel), NULL, &err) < 0) fail_msg("%s", err.msg);
    char label[256];

    /* text encoder: last and penultimate hidden states of six prompts */
    check_text_encoder(&m, "golden/text_encoder_sd15.safetensors", rel);
    st_file g;
    size_t n;
    float *want, *got;

    /* U-Net at 16x16, t = 500 */
    tu_open(&g, "golden/unet_sd15.safetensors");
    unet_model unet;
    if (unet_load(&unet, &m.unet, &m.unet_w, &err) < 0) fail_msg("%s", err.msg);
    float *x = tu_f32(&g, "x_16x16", NULL), *ctx = tu_f32(&g, "context", NULL);
    want = tu_f32(&g, "out_16x16_t500_int64", &n);
    got = malloc(sizeof(float) * n);
    float t[2] = {500, 500};
    assert_int_equal(unet_forward(&unet, x, t, ctx, 77, 2, 16, 16, got, &err), 0);
    snprintf(label, sizeof label, "%s unet out_16x16_t500", rel);
    tu_expect_close(label, got, want, n, 2e-5);
    free(x);
    free(ctx);
    free(want);
    free(got);
    unet_free(&unet);
    st_close(&g);

    /* VAE decode 8x8 and encode 64x64 */
    tu_open(&g, "golden/vae_sd15.safetensors");
    vae_model vae;
    if (vae_load(&vae, &m.vae, &m.vae_w, &err) < 0) fail_msg("%s", err.msg);
    float *z = tu_f32(&g, "z_8x8", NULL);
    want = tu_f32(&g, "decode_8x8", &n);
    got = malloc(sizeof(float) * n);
    assert_int_equal(vae_decode(&vae, z, 1, 8, 8, got, &err), 0);
    snprintf(label, sizeof label, "%s vae decode_8x8", rel);
    tu_expect_close(label, got, want, n, 1e-4);
    free(got);
    free(want);
    free(z);
    float *img = tu_f32(&g, "image_64x64", NULL), *mean_want = tu_f32(&g, "encode_64x64_mean", &n);
    float *mean = malloc(sizeof(float) * n), *logvar = malloc(sizeof(float) * n);
    assert_int_equal(vae_encode(&vae, img, 1, 64, 64, mean, logvar, &err), 0);
    snprintf(label, sizeof label, "%s vae encode_64x64_mean", rel);
    tu_expect_close(label, mean, mean_want, n, 2e-4);
    free(img);
    free(mean_want);
    free(mean);
    free(logvar);
    vae_free(&vae);
    st_close(&g);
    sd_model_close(&m);
}

static void test_single_safetensors_checkpoint_networks_match_the_reference(void **state) {
    (void)state;
    check_model("models/tiny-sd15.safetensors");
}

static void test_ckpt_checkpoint_networks_match_the_reference(void **state) {
    (void)state;
    check_model("checkpoints/tiny-sd15.ckpt");
}

/* ---- SD 2.x: a single file in the original LDM / OpenCLIP layout, written here from tiny-sd2/ ---- */

/* The tensors of the file being built: names and copied data owned here. */
typedef struct ldm_file {
    sd_tensor *ts;
    int n, cap;
} ldm_file;

static void ldm_add(ldm_file *f, const char *name, const sd_tensor *t, const void *data, size_t nbytes) {
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 256;
        f->ts = realloc(f->ts, sizeof *f->ts * (size_t)f->cap);
        assert_non_null(f->ts);
    }
    sd_tensor *o = &f->ts[f->n++];
    *o = *t;
    o->name = strdup(name);
    void *copy = malloc(nbytes);
    assert_true(o->name && copy);
    memcpy(copy, data, nbytes);
    o->data = copy;
    o->nbytes = nbytes;
}

static void ldm_free(ldm_file *f) {
    for (int i = 0; i < f->n; i++) {
        free((void *)f->ts[i].name);
        free((void *)f->ts[i].data);
    }
    free(f->ts);
}

/* diffusers resnet part -> LDM (the inverse of model_ldm.c's table); NULL when s is no resnet part. */
static const char *ldm_resnet_part(const char *s, const char **rest) {
    static const char *const map[][2] = {{"norm1.", "in_layers.0."},   {"conv1.", "in_layers.2."},
                                         {"time_emb_proj.", "emb_layers.1."}, {"norm2.", "out_layers.0."},
                                         {"conv2.", "out_layers.3."}, {"conv_shortcut.", "skip_connection."}};
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (!strncmp(s, map[i][0], strlen(map[i][0]))) {
            *rest = s + strlen(map[i][0]);
            return map[i][1];
        }
    return NULL;
}

/* diffusers U-Net name -> LDM name (L resnets per down level), written independently of model_ldm.c. */
static void ldm_unet_name(const sd_weights *w, const char *s, int L, char *out, size_t size) {
    int i, j, used = 0;
    const char *rest, *part;
    char probe[128];
    if (!strncmp(s, "time_embedding.linear_1.", 24)) snprintf(out, size, "time_embed.0.%s", s + 24);
    else if (!strncmp(s, "time_embedding.linear_2.", 24)) snprintf(out, size, "time_embed.2.%s", s + 24);
    else if (!strncmp(s, "conv_norm_out.", 14)) snprintf(out, size, "out.0.%s", s + 14);
    else if (!strncmp(s, "conv_out.", 9)) snprintf(out, size, "out.2.%s", s + 9);
    else if (!strncmp(s, "conv_in.", 8)) snprintf(out, size, "input_blocks.0.0.%s", s + 8);
    else if (sscanf(s, "down_blocks.%d.resnets.%d.%n", &i, &j, &used) == 2 && used && (part = ldm_resnet_part(s + used, &rest)))
        snprintf(out, size, "input_blocks.%d.0.%s%s", 1 + i * (L + 1) + j, part, rest);
    else if (used = 0, sscanf(s, "down_blocks.%d.attentions.%d.%n", &i, &j, &used) == 2 && used)
        snprintf(out, size, "input_blocks.%d.1.%s", 1 + i * (L + 1) + j, s + used);
    else if (used = 0, sscanf(s, "down_blocks.%d.downsamplers.0.conv.%n", &i, &used) == 1 && used)
        snprintf(out, size, "input_blocks.%d.0.op.%s", (i + 1) * (L + 1), s + used);
    else if (used = 0, sscanf(s, "mid_block.resnets.%d.%n", &i, &used) == 1 && used && (part = ldm_resnet_part(s + used, &rest)))
        snprintf(out, size, "middle_block.%d.%s%s", 2 * i, part, rest);
    else if (!strncmp(s, "mid_block.attentions.0.", 23)) snprintf(out, size, "middle_block.1.%s", s + 23);
    else if (used = 0, sscanf(s, "up_blocks.%d.resnets.%d.%n", &i, &j, &used) == 2 && used && (part = ldm_resnet_part(s + used, &rest)))
        snprintf(out, size, "output_blocks.%d.0.%s%s", i * (L + 1) + j, part, rest);
    else if (used = 0, sscanf(s, "up_blocks.%d.attentions.%d.%n", &i, &j, &used) == 2 && used)
        snprintf(out, size, "output_blocks.%d.1.%s", i * (L + 1) + j, s + used);
    else if (used = 0, sscanf(s, "up_blocks.%d.upsamplers.0.conv.%n", &i, &used) == 1 && used) {
        /* the upsampler follows the level's last resnet (and its transformer, when the level has one) */
        snprintf(probe, sizeof probe, "up_blocks.%d.attentions.0.proj_in.weight", i);
        snprintf(out, size, "output_blocks.%d.%d.conv.%s", i * (L + 1) + L, sd_weights_find(w, probe) ? 2 : 1, s + used);
    } else fail_msg("no LDM name for U-Net tensor '%s'", s);
}

/* diffusers VAE name -> LDM name (n levels; decoder up blocks reversed); *conv1x1 set for mid.attn_1 q/k/v/proj_out
 * weights, which LDM stores as [C, C, 1, 1]. */
static void ldm_vae_name(const char *s, int n, char *out, size_t size, int *conv1x1) {
    int i, j, used = 0;
    *conv1x1 = 0;
    const char *side = !strncmp(s, "encoder.", 8) ? "encoder" : !strncmp(s, "decoder.", 8) ? "decoder" : NULL;
    if (!side) {
        snprintf(out, size, "%s", s); /* quant_conv, post_quant_conv */
        return;
    }
    const char *t = s + 8;
    char tail[160];
    if (!strncmp(t, "conv_in.", 8) || !strncmp(t, "conv_out.", 9)) snprintf(out, size, "%s", s);
    else if (!strncmp(t, "conv_norm_out.", 14)) snprintf(out, size, "%s.norm_out.%s", side, t + 14);
    else if (sscanf(t, "mid_block.resnets.%d.%n", &i, &used) == 1 && used) {
        const char *r = t + used;
        if (!strncmp(r, "conv_shortcut.", 14)) snprintf(out, size, "%s.mid.block_%d.nin_shortcut.%s", side, i + 1, r + 14);
        else snprintf(out, size, "%s.mid.block_%d.%s", side, i + 1, r);
    } else if (!strncmp(t, "mid_block.attentions.0.", 23)) {
        static const char *const map[][2] = {{"group_norm.", "norm."}, {"to_q.", "q."}, {"to_k.", "k."},
                                             {"to_v.", "v."},          {"to_out.0.", "proj_out."}};
        const char *r = t + 23;
        size_t a = 0;
        while (a < 5 && strncmp(r, map[a][0], strlen(map[a][0]))) a++;
        if (a == 5) fail_msg("no LDM name for VAE tensor '%s'", s);
        snprintf(out, size, "%s.mid.attn_1.%s%s", side, map[a][1], r + strlen(map[a][0]));
        *conv1x1 = a > 0 && !strcmp(r + strlen(map[a][0]), "weight");
    } else if (used = 0, sscanf(t, "%*[a-z]_blocks.%d.resnets.%d.%n", &i, &j, &used) == 2 && used) {
        const char *r = t + used;
        int level = side[0] == 'e' ? i : n - 1 - i;
        if (!strncmp(r, "conv_shortcut.", 14)) snprintf(tail, sizeof tail, "nin_shortcut.%s", r + 14);
        else snprintf(tail, sizeof tail, "%s", r);
        snprintf(out, size, "%s.%s.%d.block.%d.%s", side, side[0] == 'e' ? "down" : "up", level, j, tail);
    } else if (used = 0, sscanf(t, side[0] == 'e' ? "down_blocks.%d.downsamplers.0.conv.%n" : "up_blocks.%d.upsamplers.0.conv.%n",
                                &i, &used) == 1 && used) {
        int level = side[0] == 'e' ? i : n - 1 - i;
        snprintf(out, size, "%s.%s.%d.%s.conv.%s", side, side[0] == 'e' ? "down" : "up", level,
                 side[0] == 'e' ? "downsample" : "upsample", t + used);
    } else fail_msg("no LDM name for VAE tensor '%s'", s);
}

/* transformers CLIP text names -> OpenCLIP names under cond_stage_model.model. (q/k/v fused into in_proj). */
static void add_openclip_layer(ldm_file *f, const sd_weights *w, int src, int dst) {
    static const char *const map[][2] = {{"layer_norm1.", "ln_1."},      {"layer_norm2.", "ln_2."},
                                         {"self_attn.out_proj.", "attn.out_proj."}, {"mlp.fc1.", "mlp.c_fc."},
                                         {"mlp.fc2.", "mlp.c_proj."}};
    char a[256], b[256];
    for (size_t k = 0; k < sizeof map / sizeof *map; k++)
        for (int bias = 0; bias < 2; bias++) {
            snprintf(a, sizeof a, "text_model.encoder.layers.%d.%s%s", src, map[k][0], bias ? "bias" : "weight");
            snprintf(b, sizeof b, "cond_stage_model.model.transformer.resblocks.%d.%s%s", dst, map[k][1], bias ? "bias" : "weight");
            const sd_tensor *t = sd_weights_find(w, a);
            if (!t) fail_msg("tiny-sd2 text encoder lacks '%s'", a);
            ldm_add(f, b, t, t->data, t->nbytes);
        }
    for (int bias = 0; bias < 2; bias++) {
        const char *qkv[3] = {"q_proj", "k_proj", "v_proj"};
        const sd_tensor *p[3];
        for (int k = 0; k < 3; k++) {
            snprintf(a, sizeof a, "text_model.encoder.layers.%d.self_attn.%s.%s", src, qkv[k], bias ? "bias" : "weight");
            p[k] = sd_weights_find(w, a);
            if (!p[k]) fail_msg("tiny-sd2 text encoder lacks '%s'", a);
        }
        size_t nb = p[0]->nbytes;
        char *cat = malloc(3 * nb);
        assert_non_null(cat);
        for (int k = 0; k < 3; k++) memcpy(cat + (size_t)k * nb, p[k]->data, nb);
        sd_tensor t = *p[0];
        t.shape[0] *= 3;
        snprintf(b, sizeof b, "cond_stage_model.model.transformer.resblocks.%d.attn.in_proj_%s", dst, bias ? "bias" : "weight");
        ldm_add(f, b, &t, cat, 3 * nb);
        free(cat);
    }
}

/* models/tiny-sd2 as one .safetensors in the layout of Stability's SD 2.x files (plus its .yaml beside it). */
static void write_sd2_single_file(const char *path, const char *yaml_path) {
    static const char *const comps[3][2] = {{"unet", "unet/diffusion_pytorch_model.safetensors"},
                                            {"vae", "vae/diffusion_pytorch_model.safetensors"},
                                            {"text_encoder", "text_encoder/model.safetensors"}};
    ldm_file out = {0};
    sd_error err = {0};
    char rel[256], name[256];
    for (int c = 0; c < 3; c++) {
        st_file f;
        sd_weights w;
        snprintf(rel, sizeof rel, "models/tiny-sd2/%s", comps[c][1]);
        tu_open(&f, rel);
        if (sd_weights_from_st(&w, &f, "", comps[c][0], &err) < 0) fail_msg("%s", err.msg);
        int layers = 0;
        for (int i = 0; i < w.n; i++) {
            const sd_tensor *t = &w.tensors[i];
            char ldm[200];
            if (c == 0) {
                ldm_unet_name(&w, t->name, 2, ldm, sizeof ldm);
                snprintf(name, sizeof name, "model.diffusion_model.%s", ldm);
                ldm_add(&out, name, t, t->data, t->nbytes);
            } else if (c == 1) {
                int conv1x1;
                ldm_vae_name(t->name, 4, ldm, sizeof ldm, &conv1x1);
                snprintf(name, sizeof name, "first_stage_model.%s", ldm);
                sd_tensor v = *t;
                if (conv1x1) v.ndim = 4, v.shape[2] = v.shape[3] = 1;
                ldm_add(&out, name, &v, t->data, t->nbytes);
            } else {
                int l;
                const char *tail = t->name + strlen("text_model.");
                if (sscanf(t->name, "text_model.encoder.layers.%d.", &l) == 1) {
                    if (l + 1 > layers) layers = l + 1;
                    continue;
                }
                if (!strcmp(tail, "embeddings.token_embedding.weight")) snprintf(name, sizeof name, "token_embedding.weight");
                else if (!strcmp(tail, "embeddings.position_embedding.weight")) snprintf(name, sizeof name, "positional_embedding");
                else if (!strncmp(tail, "final_layer_norm.", 17)) snprintf(name, sizeof name, "ln_final.%s", tail + 17);
                else fail_msg("unexpected text-encoder tensor '%s'", t->name);
                char full[300];
                snprintf(full, sizeof full, "cond_stage_model.model.%s", name);
                ldm_add(&out, full, t, t->data, t->nbytes);
            }
        }
        if (c == 2) {
            assert_int_equal(layers, 3);
            /* OpenCLIP's tower has one more block than diffusers' SD 2 text encoder ("penultimate"): the
               loader must drop it, so it gets the weights of block 0 (a different result if used) */
            for (int l = 0; l < layers; l++) add_openclip_layer(&out, &w, l, l);
            add_openclip_layer(&out, &w, 0, layers);
        }
        sd_weights_free(&w);
        st_close(&f);
    }
    if (st_write(path, out.ts, out.n, NULL, NULL, 0, &err) < 0) fail_msg("%s", err.msg);
    ldm_free(&out);
    FILE *fp = fopen(yaml_path, "w");
    assert_non_null(fp);
    fputs("model:\n"
          "  params:\n"
          "    parameterization: \"v\"\n"
          "    linear_start: 0.00085\n"
          "    linear_end: 0.012\n"
          "    timesteps: 1000\n"
          "    scale_factor: 0.18215\n"
          "    unet_config:\n"
          "      params:\n"
          "        num_head_channels: 16\n"
          "        use_linear_in_transformer: true\n"
          "        context_dim: 32\n"
          "    cond_stage_config:\n"
          "      target: ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder\n"
          "      params:\n"
          "        layer: penultimate\n"
          "        num_attention_heads: 2\n",
          fp);
    fclose(fp);
}

/* Every weight the single file gives equals the folder's (names and values, as float32). */
static void expect_same_weights(const sd_weights *got, const char *model_rel, const char *component) {
    st_file f;
    sd_weights w;
    sd_error err = {0};
    char rel[256];
    snprintf(rel, sizeof rel, "models/tiny-sd2/%s", model_rel);
    tu_open(&f, rel);
    if (sd_weights_from_st(&w, &f, "", component, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(got->n, w.n);
    for (int i = 0; i < w.n; i++) {
        const sd_tensor *a = sd_weights_find(got, w.tensors[i].name);
        if (!a) fail_msg("single file: %s tensor '%s' missing", component, w.tensors[i].name);
        assert_int_equal(sd_tensor_numel(a), sd_tensor_numel(&w.tensors[i]));
        float *x = sd_tensor_to_f32_alloc(a, NULL), *y = sd_tensor_to_f32_alloc(&w.tensors[i], NULL);
        tu_expect_close(w.tensors[i].name, x, y, (size_t)sd_tensor_numel(a), 0);
        free(x);
        free(y);
    }
    sd_weights_free(&w);
    st_close(&f);
}

static void test_sd2_openclip_single_file_matches_the_text_encoder_and_pipeline_goldens(void **state) {
    (void)state;
    /* copies: tu_tmp and tu_path reuse their buffers */
    char *ckpt = strdup(tu_tmp("tiny-sd2.safetensors")), *yaml = strdup(tu_tmp("tiny-sd2.yaml"));
    char *tok = strdup(tu_path("models/tiny-sd2/tokenizer"));
    assert_true(ckpt && yaml && tok);
    write_sd2_single_file(ckpt, yaml);
    sd_model m;
    sd_error err = {0};
    sd_model_opts opts = {.tokenizer = tok};
    if (sd_model_open(&m, ckpt, &opts, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(m.clip.layers, 3);
    assert_int_equal(m.clip.act, CLIP_ACT_GELU);
    assert_int_equal(m.unet.use_linear_projection, 1);
    expect_same_weights(&m.clip_w, "text_encoder/model.safetensors", "text_encoder");
    expect_same_weights(&m.unet_w, "unet/diffusion_pytorch_model.safetensors", "unet");
    expect_same_weights(&m.vae_w, "vae/diffusion_pytorch_model.safetensors", "vae");

    /* text encoder: last and penultimate hidden states of the six golden prompts */
    check_text_encoder(&m, "golden/text_encoder_sd2.safetensors", "sd2 single file");
    st_file g;

    /* pipeline_sd2_ddim_vpred_96 (settings from its README table / sidecar) at the *_96 tolerances */
    sd_pipeline p;
    if (sd_pipeline_load(&p, &m, &err) < 0) fail_msg("%s", err.msg);
    tu_open(&g, "golden/pipeline_sd2_ddim_vpred_96.safetensors");
    sd_settings s;
    sd_settings_default(&s);
    s.prompt = "a photograph of an astronaut riding a horse";
    s.negative = "blurry, low quality";
    s.width = s.height = 96;
    s.steps = 10;
    s.cfg_scale = 7.5f;
    s.seed = 42;
    s.sampler = SD_SAMPLER_DDIM;
    size_t n_lat, n_img;
    float *want_fin = tu_f32(&g, "latents_final", &n_lat), *want_img = tu_f32(&g, "image", &n_img);
    float *fin = malloc(sizeof(float) * n_lat), *img = malloc(sizeof(float) * n_img);
    float *pe = malloc(sizeof(float) * 77 * 32), *want_pe = tu_f32(&g, "prompt_embeds", NULL);
    uint8_t *rgb = malloc(n_img);
    sd_pipeline_trace tr = {.prompt_embeds = pe, .latents_final = fin, .image = img};
    if (sd_pipeline_generate(&p, &s, rgb, NULL, NULL, &tr, &err) < 0) fail_msg("%s", err.msg);
    tu_expect_close("sd2 single file: prompt_embeds", pe, want_pe, 77 * 32, 2e-5);
    tu_expect_close("sd2 single file: latents_final", fin, want_fin, n_lat, 5e-5 * tu_peak(want_fin, n_lat));
    tu_expect_close("sd2 single file: image", img, want_img, n_img, 5e-5);
    const uint8_t *w8 = tu_tensor(&g, "image_u8")->data;
    for (size_t i = 0; i < n_img; i++)
        if (abs((int)rgb[i] - (int)w8[i]) > 1) fail_msg("sd2 single file: PNG byte %zu is %d, expected %d +-1", i, rgb[i], w8[i]);
    free(want_fin);
    free(want_img);
    free(fin);
    free(img);
    free(pe);
    free(want_pe);
    free(rgb);
    st_close(&g);
    sd_pipeline_free(&p);
    sd_model_close(&m);
    free(ckpt);
    free(yaml);
    free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_safetensors_checkpoint_networks_match_the_reference),
        cmocka_unit_test(test_ckpt_checkpoint_networks_match_the_reference),
        cmocka_unit_test(test_sd2_openclip_single_file_matches_the_text_encoder_and_pipeline_goldens),
    };
    return cmocka_run_group_tests_name("single_file", tests, NULL, NULL);
}
