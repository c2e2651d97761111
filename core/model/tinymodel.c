#include "tinymodel.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clip.h"
#include "config.h"
#include "fsutil.h"
#include "randweights.h"
#include "tokenizer.h"
#include "unet.h"
#include "vae.h"

/* Writes j (stolen) as dir/name, creating dir. */
static int write_json(const char *dir, const char *name, json_t *j, sd_error *err) {
    int rc = j ? sd_fs_mkdirs(dir, err) : sd_err(err, SD_ENOMEM, "out of memory");
    char *path = rc == 0 ? sd_fs_path_join(dir, name) : NULL;
    char *text = rc == 0 ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    if (rc == 0 && (!path || !text)) rc = sd_err(err, SD_ENOMEM, "out of memory");
    if (rc == 0) {
        sd_fs_atomic_file af;
        rc = sd_fs_atomic_open(&af, path, err);
        if (rc == 0) rc = sd_fs_atomic_write(&af, text, strlen(text), err);
        if (rc == 0) rc = sd_fs_atomic_write(&af, "\n", 1, err);
        if (rc == 0) rc = sd_fs_atomic_commit(&af, err);
        else sd_fs_atomic_abort(&af);
    }
    free(path);
    free(text);
    json_decref(j);
    return rc;
}

/* Saves the tensors rw made for one component as dir/file. */
static int write_weights(const char *dir, const char *file, const sd_rand_weights *rw, int from, sd_error *err) {
    int n = rw->n - from;
    sd_tensor *ts = malloc((n ? (size_t)n : 1) * sizeof *ts);
    char *path = sd_fs_path_join(dir, file);
    int rc = ts && path ? sd_fs_mkdirs(dir, err) : sd_err(err, SD_ENOMEM, "out of memory");
    if (rc == 0) {
        for (int i = 0; i < n; i++) ts[i] = *rw->items[from + i];
        const char *k[] = {"format"}, *v[] = {"pt"};
        rc = st_write(path, ts, n, k, v, 1, err);
    }
    free(ts);
    free(path);
    return rc;
}

static json_t *int_list(const int *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

static json_t *str_list(const char *const *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_string(v[i]));
    return a;
}

int sd_tiny_model_write(const char *dir, sd_error *err) { return sd_random_model_write(dir, SD_RANDOM_TINY, err); }

int sd_random_model_write(const char *dir, sd_random_arch arch, sd_error *err) {
    const int full = arch == SD_RANDOM_SD15;
    char sub[4096];
    int rc = sd_fs_mkdirs(dir, err);
    if (rc < 0) return rc;

    /* tokenizer: the project's own byte-level BPE */
    tokenizer_bpe *tok = NULL;
    rc = tokenizer_build_tiny(&tok, 400, err);
    snprintf(sub, sizeof sub, "%s/tokenizer", dir);
    if (rc == 0) rc = tokenizer_save_dir(tok, sub, err);
    int vocab = tok ? tokenizer_vocab_size(tok) : 0;
    int bos = tok ? tokenizer_bos_id(tok) : 0, eos = tok ? tokenizer_eos_id(tok) : 0;
    if (tok) tokenizer_free(tok);
    if (rc < 0) return rc;

    /* architecture: SD 1.5's, with small widths for the tiny model (the full one keeps CLIP's 49408-token
     * embedding; the small vocabulary uses its first rows) */
    unet_config uc;
    unet_config_sd15(&uc);
    vae_config vc;
    vae_config_sd15(&vc);
    clip_config cc;
    clip_config_sd15(&cc);
    if (!full) {
        const int ubo[4] = {32, 64, 64, 64};
        for (int i = 0; i < 4; i++) {
            uc.block_out[i] = ubo[i];
            uc.heads[i] = 2;
            vc.block_out[i] = ubo[i];
        }
        uc.cross_attention_dim = 32;
        uc.time_embed_dim = 128;
        uc.sample_size = 8;
        vc.sample_size = 64;
        cc.vocab_size = vocab;
        cc.hidden = 32;
        cc.intermediate = 64;
        cc.layers = 3;
        cc.heads = 2;
        cc.projection_dim = 32;
    }

    const char *down[4] = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"};
    const char *up[4] = {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"};
    const char *vdown[4] = {"DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"};
    const char *vup[4] = {"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"};
    snprintf(sub, sizeof sub, "%s/unet", dir);
    rc = write_json(sub, "config.json",
                    json_pack("{s:s,s:s,s:o,s:i,s:o,s:i,s:o,s:i,s:b,s:i,s:i,s:s,s:f,s:i,s:i,s:o,s:b,s:b}",
                              "_class_name", "UNet2DConditionModel", "act_fn", "silu", "attention_head_dim",
                              int_list(uc.heads, 4), "cross_attention_dim", uc.cross_attention_dim, "block_out_channels",
                              int_list(uc.block_out, 4), "in_channels", 4, "down_block_types", str_list(down, 4),
                              "layers_per_block", 2, "flip_sin_to_cos", 1, "freq_shift", 0, "norm_num_groups", 32,
                              "mid_block_type", "UNetMidBlock2DCrossAttn", "norm_eps", 1e-5, "out_channels", 4,
                              "sample_size", uc.sample_size, "up_block_types", str_list(up, 4), "use_linear_projection",
                              0, "upcast_attention", 0),
                    err);
    snprintf(sub, sizeof sub, "%s/vae", dir);
    if (rc == 0)
        rc = write_json(sub, "config.json",
                        json_pack("{s:s,s:s,s:o,s:o,s:i,s:i,s:i,s:i,s:i,s:f,s:o,s:i}", "_class_name", "AutoencoderKL",
                                  "act_fn", "silu", "block_out_channels", int_list(vc.block_out, 4), "down_block_types",
                                  str_list(vdown, 4), "in_channels", 3, "out_channels", 3, "latent_channels", 4,
                                  "layers_per_block", 2, "norm_num_groups", 32, "scaling_factor", 0.18215,
                                  "up_block_types", str_list(vup, 4), "sample_size", vc.sample_size),
                        err);
    snprintf(sub, sizeof sub, "%s/text_encoder", dir);
    if (rc == 0)
        rc = write_json(sub, "config.json",
                        json_pack("{s:[s],s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:s,s:f,s:i,s:i,s:i,s:i}", "architectures",
                                  "CLIPTextModel", "model_type", "clip_text_model", "vocab_size", cc.vocab_size, "hidden_size",
                                  cc.hidden, "intermediate_size", cc.intermediate, "num_hidden_layers", cc.layers,
                                  "num_attention_heads", cc.heads, "max_position_embeddings", 77, "hidden_act",
                                  "quick_gelu", "layer_norm_eps", 1e-5, "projection_dim", cc.projection_dim,
                                  "pad_token_id", eos, "bos_token_id", bos, "eos_token_id", eos),
                        err);
    snprintf(sub, sizeof sub, "%s/scheduler", dir);
    if (rc == 0)
        rc = write_json(sub, "scheduler_config.json",
                        json_pack("{s:s,s:f,s:f,s:s,s:i,s:b,s:b,s:i,s:b,s:n}", "_class_name", "PNDMScheduler",
                                  "beta_start", 0.00085, "beta_end", 0.012, "beta_schedule", "scaled_linear",
                                  "num_train_timesteps", 1000, "set_alpha_to_one", 0, "skip_prk_steps", 1,
                                  "steps_offset", 1, "clip_sample", 0, "trained_betas"),
                        err);
    if (rc == 0)
        rc = write_json(dir, "model_index.json",
                        json_pack("{s:s,s:[s,s],s:[s,s],s:[s,s],s:[s,s],s:[s,s],s:b,s:s}", "_class_name",
                                  "StableDiffusionPipeline", "scheduler", "diffusers", "PNDMScheduler", "text_encoder",
                                  "transformers", "CLIPTextModel", "tokenizer", "transformers", "CLIPTokenizer", "unet",
                                  "diffusers", "UNet2DConditionModel", "vae", "diffusers", "AutoencoderKL",
                                  "requires_safety_checker", 0, "_sdrender_note",
                                  full ? "random weights made by 'sdrender init-model --random-sd15': images are noise"
                                       : "random weights made by 'sdrender init-model --tiny': images are noise"),
                        err);
    if (rc < 0) return rc;

    /* weights: let each network's loader ask for exactly the tensors it needs */
    sd_rand_weights rw = {.seed = 0x5d7e4de5};
    sd_weights cw = {0}, uw = {0}, vw = {0};
    clip_text_model clip;
    unet_model unet;
    vae_model vae;
    int c0 = 0, u0, v0;
    rc = sd_rand_weights_attach(&rw, &cw, "text_encoder (tiny)", err);
    if (rc == 0 && (rc = clip_text_load(&clip, &cc, &cw, err)) == 0) clip_text_free(&clip);
    u0 = rw.n;
    if (rc == 0) rc = sd_rand_weights_attach(&rw, &uw, "unet (tiny)", err);
    if (rc == 0 && (rc = unet_load(&unet, &uc, &uw, err)) == 0) unet_free(&unet);
    v0 = rw.n;
    if (rc == 0) rc = sd_rand_weights_attach(&rw, &vw, "vae (tiny)", err);
    if (rc == 0 && (rc = vae_load(&vae, &vc, &vw, err)) == 0) vae_free(&vae);
    /* write each component's share: [c0, u0) text encoder, [u0, v0) U-Net, [v0, n) VAE */
    sd_rand_weights part = rw;
    if (rc == 0) {
        part.n = u0;
        snprintf(sub, sizeof sub, "%s/text_encoder", dir);
        rc = write_weights(sub, "model.safetensors", &part, c0, err);
    }
    if (rc == 0) {
        part.n = v0;
        snprintf(sub, sizeof sub, "%s/unet", dir);
        rc = write_weights(sub, "diffusion_pytorch_model.safetensors", &part, u0, err);
    }
    if (rc == 0) {
        snprintf(sub, sizeof sub, "%s/vae", dir);
        rc = write_weights(sub, "diffusion_pytorch_model.safetensors", &rw, v0, err);
    }
    sd_weights_free(&cw);
    sd_weights_free(&uw);
    sd_weights_free(&vw);
    sd_rand_weights_free(&rw);
    return rc;
}
