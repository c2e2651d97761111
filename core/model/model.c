#include "model.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "tokenizer.h"
#include "yamlconf.h"

/* ---- a growable list of (name, tensor view) used to build weight tables ---- */

typedef struct {
    int n, cap;
    char **names;
    sd_tensor *ts;
} tlist;

static int tlist_add(tlist *l, const char *name, const sd_tensor *t) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        char **nn = realloc(l->names, (size_t)cap * sizeof *nn);
        if (nn) l->names = nn;
        sd_tensor *nt = realloc(l->ts, (size_t)cap * sizeof *nt);
        if (nt) l->ts = nt;
        if (!nn || !nt) return SD_ENOMEM;
        l->cap = cap;
    }
    l->names[l->n] = strdup(name);
    if (!l->names[l->n]) return SD_ENOMEM;
    l->ts[l->n] = *t;
    l->n++;
    return 0;
}

static void tlist_free(tlist *l) {
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    free(l->ts);
    memset(l, 0, sizeof *l);
}

static int tlist_to_weights(tlist *l, sd_weights *w, const char *label, sd_error *err) {
    const sd_tensor **ptrs = malloc((l->n ? (size_t)l->n : 1) * sizeof *ptrs);
    if (!ptrs) return sd_err(err, SD_ENOMEM, "out of memory");
    for (int i = 0; i < l->n; i++) ptrs[i] = &l->ts[i];
    int rc = sd_weights_from_list(w, (const char *const *)l->names, ptrs, l->n, label, err);
    free(ptrs);
    return rc;
}

/* ---- shared helpers ---- */

static const sd_tensor *wfind(const sd_weights *w, const char *fmt, int a, int b) {
    char name[256];
    snprintf(name, sizeof name, fmt, a, b);
    return sd_weights_find(w, name);
}

/* 1 when path names a PyTorch pickle checkpoint rather than safetensors. */
static int is_pickle_path(const char *path) {
    const char *dot = strrchr(path, '.');
    return dot && (!strcmp(dot, ".ckpt") || !strcmp(dot, ".pth") || !strcmp(dot, ".pt") || !strcmp(dot, ".bin"));
}

/* Opens a weight file (safetensors or PyTorch pickle) as source number m->n_files. */
static int add_file(sd_model *m, const char *path, const char *what, sd_error *err) {
    if (m->n_files == SD_MODEL_MAX_FILES) return sd_err(err, SD_EINTERNAL, "too many model files");
    int i = m->n_files, rc;
    m->is_ckpt[i] = is_pickle_path(path);
    if (m->is_ckpt[i]) {
        rc = sd_ckpt_open(&m->ckpts[i], path, err);
        if (rc == 0) m->file_size[i] = m->ckpts[i].map.size;
    } else {
        rc = st_open(&m->files[i], path, err);
        if (rc == 0) m->file_size[i] = m->files[i].map_size;
    }
    if (rc < 0) return rc;
    size_t n = strlen(what) + strlen(path) + 3;
    m->file_desc[i] = malloc(n);
    if (!m->file_desc[i]) {
        if (m->is_ckpt[i]) sd_ckpt_close(&m->ckpts[i]);
        else st_close(&m->files[i]);
        return sd_err(err, SD_ENOMEM, "out of memory");
    }
    snprintf(m->file_desc[i], n, "%s: %s", what, path);
    m->n_files++;
    return 0;
}

/* The tensors of source i. */
static const sd_tensor *file_tensors(const sd_model *m, int i, int *n) {
    if (m->is_ckpt[i]) {
        *n = m->ckpts[i].all.n;
        return m->ckpts[i].all.tensors;
    }
    *n = m->files[i].n;
    return m->files[i].tensors;
}

/* SD 2.x uses the OpenCLIP ViT-H text tower (gelu, 1024 wide) and linear projections. */
static int guess_sd_version(const sd_model *m) {
    if (m->unet.cross_attention_dim == 1024 || m->clip.hidden == 1024) return 2;
    if (m->unet.use_linear_projection || m->clip.act == CLIP_ACT_GELU) return 2;
    return 1;
}

/* ---- diffusers folder ---- */

static const char *weight_file_names[] = {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                                          "model.safetensors", "model.fp16.safetensors", "diffusion_pytorch_model.bin",
                                          "pytorch_model.bin", "diffusion_pytorch_model.fp16.bin", "pytorch_model.fp16.bin"};

/* Opens the weight file of component dir `sub` and builds its table. */
static int open_component(sd_model *m, const char *sub, sd_weights *w, sd_error *err) {
    char *dir = sd_fs_path_join(m->path, sub);
    if (!dir) return sd_err(err, SD_ENOMEM, "out of memory");
    int rc = SD_ENOTFOUND;
    for (size_t i = 0; i < sizeof weight_file_names / sizeof *weight_file_names && rc == SD_ENOTFOUND; i++) {
        char *p = sd_fs_path_join(dir, weight_file_names[i]);
        if (!p) {
            rc = sd_err(err, SD_ENOMEM, "out of memory");
            break;
        }
        if (sd_fs_is_file(p)) {
            rc = add_file(m, p, sub, err);
            if (rc == 0) {
                char label[600];
                snprintf(label, sizeof label, "%s (%s)", sub, p);
                int k = m->n_files - 1;
                rc = m->is_ckpt[k] ? sd_ckpt_to_weights(w, &m->ckpts[k], "", label, err)
                                   : sd_weights_from_st(w, &m->files[k], "", label, err);
            }
        }
        free(p);
    }
    if (rc == SD_ENOTFOUND)
        sd_err(err, SD_ENOTFOUND, "%s: no %s weights (expected %s/%s or .bin)", m->path, sub, sub, weight_file_names[0]);
    free(dir);
    return rc;
}

/* Old diffusers VAE folders name the attention query/key/value/proj_attn; rename in place. */
static void rename_legacy_vae_attention(sd_weights *w) {
    static const struct {
        const char *old, *new;
    } map[] = {{".query.", ".to_q."}, {".key.", ".to_k."}, {".value.", ".to_v."}, {".proj_attn.", ".to_out.0."}};
    int changed = 0;
    for (int i = 0; i < w->n; i++) {
        for (size_t k = 0; k < sizeof map / sizeof *map; k++) {
            const char *hit = strstr(w->tensors[i].name, map[k].old);
            if (hit && strstr(w->tensors[i].name, "attentions.")) changed = 1;
        }
    }
    if (!changed) return;
    /* rebuild the table with the new names */
    tlist l = {0};
    int ok = 1;
    for (int i = 0; i < w->n && ok; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s", w->tensors[i].name);
        for (size_t k = 0; k < sizeof map / sizeof *map; k++) {
            char *hit = strstr(name, map[k].old);
            if (hit && strstr(name, "attentions.")) {
                char tail[256];
                snprintf(tail, sizeof tail, "%s", hit + strlen(map[k].old));
                snprintf(hit, sizeof name - (size_t)(hit - name), "%s%s", map[k].new, tail);
            }
        }
        ok = tlist_add(&l, name, &w->tensors[i]) == 0;
    }
    sd_weights nw;
    if (ok && tlist_to_weights(&l, &nw, w->label, NULL) == 0) {
        sd_weights_free(w);
        *w = nw;
    }
    tlist_free(&l);
}

/* Linear VAE attention weights may be stored as [C, C, 1, 1] 1x1 convs; view them as [C, C]. */
static void squeeze_vae_attention(sd_weights *w) {
    for (int i = 0; i < w->n; i++) {
        sd_tensor *t = &w->tensors[i];
        if (t->ndim == 4 && t->shape[2] == 1 && t->shape[3] == 1 && strstr(t->name, "mid_block.attentions.0.to_"))
            t->ndim = 2;
    }
}

/* 1 when model_index.json names component `name` ("vae": ["diffusers", "AutoencoderKL"]); a pipeline
 * without it leaves the key out or writes [null, null]. */
static int index_names(json_t *idx, const char *name) {
    return json_is_string(json_array_get(json_object_get(idx, name), 1));
}

/* The pipelines sdrender refuses by name: other model families that a user may point it at. */
static int refuse_pipeline_class(const char *path, const char *cls, json_t *idx, sd_error *err) {
    if (strstr(cls, "StableDiffusion3"))
        return sd_err(err, SD_EUNSUPPORTED, "%s: a Stable Diffusion 3 model (%s, an MMDiT transformer) is not supported; "
                      "sdrender runs SD 1.x, 2.x and SDXL", path, cls);
    if (strstr(cls, "Flux"))
        return sd_err(err, SD_EUNSUPPORTED, "%s: a Flux model (%s) is not supported; sdrender runs SD 1.x, 2.x and SDXL",
                      path, cls);
    json_t *aes = json_object_get(idx, "requires_aesthetics_score");
    if (json_is_true(aes) || (!index_names(idx, "text_encoder") && index_names(idx, "text_encoder_2")))
        return sd_err(err, SD_EUNSUPPORTED, "%s: an SDXL refiner (one text encoder, aesthetic_score conditioning) is not "
                      "supported yet; use an SDXL base model", path);
    if (!index_names(idx, "unet") && index_names(idx, "transformer"))
        return sd_err(err, SD_EUNSUPPORTED, "%s: %s has a transformer instead of a U-Net: not supported", path, cls);
    return 0;
}

/* SDXL pipelines' force_zeros_for_empty_prompt (diffusers' default: true). */
static int force_zeros(json_t *idx) {
    json_t *v = json_object_get(idx, "force_zeros_for_empty_prompt");
    return v ? json_is_true(v) : 1;
}

/* Reads the config.json files of the parts m->parts names from the diffusers folder dir
 * (the model's own, or --config's for a single file). */
static int load_folder_configs(sd_model *m, const char *dir, sd_error *err) {
    static const char *cfg_names[] = {"unet/config.json", "vae/config.json", "text_encoder/config.json",
                                      "text_encoder_2/config.json", "scheduler/scheduler_config.json"};
    const unsigned cfg_part[] = {0, SD_PART_VAE, SD_PART_TEXT_ENCODER, SD_PART_TEXT_ENCODER_2, 0}; /* 0: always */
    int rc = 0;
    for (int i = 0; i < 5 && rc == 0; i++) {
        if (cfg_part[i] && !(m->parts & cfg_part[i])) continue;
        char *cp = sd_fs_path_join(dir, cfg_names[i]);
        if (!cp) return sd_err(err, SD_ENOMEM, "out of memory");
        if (!sd_fs_is_file(cp)) rc = sd_err(err, SD_ENOTFOUND, "%s: missing %s", dir, cfg_names[i]);
        else if (i == 0) rc = unet_config_load(&m->unet, cp, err);
        else if (i == 1) rc = vae_config_load(&m->vae, cp, err);
        else if (i == 2) rc = clip_config_load(&m->clip, cp, err);
        else if (i == 3) rc = clip_config_load(&m->clip2, cp, err);
        else rc = sched_config_load(&m->sched, cp, err);
        free(cp);
    }
    return rc;
}

/* model_index.json of folder dir (NULL with an error when unreadable). */
static json_t *load_model_index(const char *dir, sd_error *err) {
    char *p = sd_fs_path_join(dir, "model_index.json");
    if (!p) {
        sd_err(err, SD_ENOMEM, "out of memory");
        return NULL;
    }
    json_t *idx = NULL;
    if (!sd_fs_is_file(p)) {
        sd_err(err, SD_EINPUT,
               "%s: not a diffusers folder (no model_index.json); pass a folder with model_index.json or a single "
               ".safetensors checkpoint",
               dir);
    } else {
        json_error_t je;
        idx = json_load_file(p, 0, &je);
        if (!idx) sd_err(err, SD_EINPUT, "%s: invalid JSON: %s (line %d)", p, je.text, je.line);
    }
    free(p);
    return idx;
}

/* <m->path>/<sub> when that folder exists, else NULL. */
static char *sub_dir(const sd_model *m, const char *sub) {
    char *d = sd_fs_path_join(m->path, sub);
    if (d && !sd_fs_is_dir(d)) {
        free(d);
        d = NULL;
    }
    return d;
}

static int open_diffusers(sd_model *m, sd_error *err) {
    json_t *idx = load_model_index(m->path, err);
    if (!idx) return err ? err->code : SD_EINPUT;
    const char *cls = json_string_value(json_object_get(idx, "_class_name"));
    m->pipeline_class = strdup(cls ? cls : "unknown");
    int rc = m->pipeline_class ? refuse_pipeline_class(m->path, m->pipeline_class, idx, err)
                               : sd_err(err, SD_ENOMEM, "out of memory");
    m->parts = (index_names(idx, "vae") ? SD_PART_VAE : 0) | (index_names(idx, "text_encoder") ? SD_PART_TEXT_ENCODER : 0) |
               (index_names(idx, "text_encoder_2") ? SD_PART_TEXT_ENCODER_2 : 0);
    m->force_zeros_for_empty_prompt = force_zeros(idx);
    m->upscaler = !strcmp(m->pipeline_class ? m->pipeline_class : "", "StableDiffusionUpscalePipeline");
    json_t *mnl = json_object_get(idx, "max_noise_level");
    m->max_noise_level = json_is_integer(mnl) ? (int)json_integer_value(mnl) : 350;
    json_decref(idx);
    if (rc < 0) return rc;
    if ((rc = load_folder_configs(m, m->path, err)) < 0) return rc;
    if (rc == 0 && m->upscaler) {
        char *cp = sd_fs_path_join(m->path, "low_res_scheduler/scheduler_config.json");
        if (!cp) return sd_err(err, SD_ENOMEM, "out of memory");
        if (!sd_fs_is_file(cp)) rc = sd_err(err, SD_ENOTFOUND, "%s: missing low_res_scheduler/scheduler_config.json", m->path);
        else rc = sched_config_load(&m->low_res_sched, cp, err);
        free(cp);
    }
    if (rc == 0) rc = open_component(m, "unet", &m->unet_w, err);
    if (rc == 0 && (m->parts & SD_PART_VAE)) rc = open_component(m, "vae", &m->vae_w, err);
    if (rc == 0 && (m->parts & SD_PART_TEXT_ENCODER)) rc = open_component(m, "text_encoder", &m->clip_w, err);
    if (rc == 0 && (m->parts & SD_PART_TEXT_ENCODER_2)) rc = open_component(m, "text_encoder_2", &m->clip2_w, err);
    if (rc < 0) return rc;
    rename_legacy_vae_attention(&m->vae_w);
    squeeze_vae_attention(&m->vae_w);
    m->tokenizer_path = sub_dir(m, "tokenizer");
    if (m->parts & SD_PART_TEXT_ENCODER_2) m->tokenizer2_path = sub_dir(m, "tokenizer_2");
    return 0;
}

/* ---- single file ---- */

#define LDM_UNET "model.diffusion_model."
#define LDM_VAE "first_stage_model."
#define LDM_CLIP1 "cond_stage_model.transformer."
#define LDM_CLIP2 "cond_stage_model.model."
#define LDM_XL_CLIP1 "conditioner.embedders.0.transformer."
#define LDM_XL_CLIP2 "conditioner.embedders.1.model."
#define LDM_XL_REFINER "conditioner.embedders.0.model." /* the refiner's only encoder: OpenCLIP-bigG */

static int starts(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

/* Resnets per down level: input block (L+1) is the first downsampler. */
static int ldm_layers_per_block(const sd_tensor *ts, int n) {
    int best = -1, maxb = 0;
    for (int i = 0; i < n; i++) {
        int b, used = 0;
        const char *s = ts[i].name;
        if (!starts(s, LDM_UNET)) continue;
        s += strlen(LDM_UNET);
        if (sscanf(s, "input_blocks.%d.0.%n", &b, &used) == 1 && used > 0) {
            if (b > maxb) maxb = b;
            if (!strncmp(s + used, "op.", 3) && (best < 0 || b < best)) best = b;
        }
    }
    return best > 0 ? best - 1 : maxb;
}

static int ldm_vae_levels(const sd_tensor *ts, int nt) {
    int n = 0;
    for (int i = 0; i < nt; i++) {
        int k;
        if (sscanf(ts[i].name, LDM_VAE "decoder.up.%d.", &k) == 1 && k + 1 > n) n = k + 1;
    }
    return n;
}

/* OpenCLIP (SD 2.x) text tower names -> transformers names; the fused in_proj becomes three views. */
static int add_openclip(tlist *l, const char *s, const sd_tensor *t, int *max_layer) {
    char name[256];
    int layer, used = 0;
    static const struct {
        const char *oc, *tf;
    } map[] = {{"ln_1.", "layer_norm1."},         {"ln_2.", "layer_norm2."}, {"attn.out_proj.", "self_attn.out_proj."},
               {"mlp.c_fc.", "mlp.fc1."},         {"mlp.c_proj.", "mlp.fc2."}};
    if (!strcmp(s, "token_embedding.weight")) return tlist_add(l, "text_model.embeddings.token_embedding.weight", t);
    if (!strcmp(s, "positional_embedding")) {
        return tlist_add(l, "text_model.embeddings.position_embedding.weight", t);
    }
    if (starts(s, "ln_final.")) {
        snprintf(name, sizeof name, "text_model.final_layer_norm.%s", s + 9);
        return tlist_add(l, name, t);
    }
    if (sscanf(s, "transformer.resblocks.%d.%n", &layer, &used) == 1 && used > 0) {
        const char *tail = s + used;
        if (layer > *max_layer) *max_layer = layer;
        if (!strcmp(tail, "attn.in_proj_weight") || !strcmp(tail, "attn.in_proj_bias")) {
            int is_w = tail[13] == 'w';
            int64_t d = t->shape[0] / 3;
            if (t->shape[0] % 3) return SD_EINPUT;
            size_t part = t->nbytes / 3;
            const char *qkv[3] = {"q_proj", "k_proj", "v_proj"};
            for (int k = 0; k < 3; k++) {
                sd_tensor v = *t;
                v.shape[0] = d;
                v.nbytes = part;
                v.data = (const char *)t->data + (size_t)k * part;
                snprintf(name, sizeof name, "text_model.encoder.layers.%d.self_attn.%s.%s", layer, qkv[k],
                         is_w ? "weight" : "bias");
                int rc = tlist_add(l, name, &v);
                if (rc < 0) return rc;
            }
            return 0;
        }
        for (size_t k = 0; k < sizeof map / sizeof *map; k++) {
            size_t n = strlen(map[k].oc);
            if (!strncmp(tail, map[k].oc, n)) {
                snprintf(name, sizeof name, "text_model.encoder.layers.%d.%s%s", layer, map[k].tf, tail + n);
                return tlist_add(l, name, t);
            }
        }
    }
    return 1; /* not a text-tower tensor we use (text_projection, logit_scale, attn_mask) */
}

/* Drops layer `layer` of an OpenCLIP tower (SD 2.x uses the penultimate layer, as diffusers' 23-layer config). */
static void drop_clip_layer(tlist *l, int layer) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "text_model.encoder.layers.%d.", layer);
    int o = 0;
    for (int i = 0; i < l->n; i++) {
        if (starts(l->names[i], prefix)) {
            free(l->names[i]);
            continue;
        }
        l->names[o] = l->names[i];
        l->ts[o] = l->ts[i];
        o++;
    }
    l->n = o;
}

/* Single files of other families, named by a tensor only they have; 0 when none is. */
static int refuse_other_family(const char *path, const sd_tensor *ts, int nt, sd_error *err) {
    for (int i = 0; i < nt; i++) {
        const char *s = ts[i].name;
        if (strstr(s, "joint_blocks.") || starts(s, "text_encoders.t5xxl."))
            return sd_err(err, SD_EUNSUPPORTED, "%s: a Stable Diffusion 3 checkpoint (MMDiT '%s') is not supported; "
                          "sdrender runs SD 1.x, 2.x and SDXL", path, s);
        if (strstr(s, "double_blocks.") || strstr(s, "single_blocks."))
            return sd_err(err, SD_EUNSUPPORTED, "%s: a Flux checkpoint ('%s') is not supported; sdrender runs SD 1.x, "
                          "2.x and SDXL", path, s);
        if (starts(s, LDM_XL_REFINER))
            return sd_err(err, SD_EUNSUPPORTED, "%s: an SDXL refiner checkpoint (one text encoder, aesthetic_score "
                          "conditioning) is not supported yet; use an SDXL base model", path);
    }
    return 0;
}

/* SDXL's U-Net tensors outside SD 1.x/2.x's: label_emb.0.{0,2} = add_embedding.linear_{1,2}. */
static int ldm_xl_unet_name(const char *s, char *out, size_t size) {
    if (!strncmp(s, "label_emb.0.0.", 14)) return snprintf(out, size, "add_embedding.linear_1.%s", s + 14) < 0;
    if (!strncmp(s, "label_emb.0.2.", 14)) return snprintf(out, size, "add_embedding.linear_2.%s", s + 14) < 0;
    return -1;
}

/* The OpenCLIP tower's tensor s (under its prefix) into l; text_projection kept as it is (SDXL's pooled output). */
static int add_openclip_xl(tlist *l, const char *s, const sd_tensor *t, int *max_layer) {
    if (!strcmp(s, "text_projection")) return tlist_add(l, "text_projection", t);
    return add_openclip(l, s, t, max_layer);
}

/* The weight tables of a single file: U-Net, VAE and text encoder(s) renamed to diffusers names. SD 2.x's
 * OpenCLIP tower loses its last layer (*openclip_layers: how many it had); SDXL's keeps all of them. */
static int build_ldm_tables(sd_model *m, const sd_tensor *ts, int nt, int *openclip_layers, sd_error *err) {
    int L = ldm_layers_per_block(ts, nt), nv = ldm_vae_levels(ts, nt);
    tlist lu = {0}, lv = {0}, lc = {0}, lc2 = {0};
    int rc = refuse_other_family(m->path, ts, nt, err), max_layer = -1, max_layer2 = -1;
    char name[256];
    const char *path = m->path;
    for (int i = 0; i < nt && !m->xl; i++) m->xl = starts(ts[i].name, LDM_XL_CLIP1) || starts(ts[i].name, LDM_XL_CLIP2);
    for (int i = 0; i < nt && rc == 0; i++) {
        const sd_tensor *t = &ts[i];
        const char *s = t->name;
        if (starts(s, LDM_UNET)) {
            if (sd_model_ldm_unet_name(s + strlen(LDM_UNET), L, name, sizeof name) < 0 &&
                (!m->xl || ldm_xl_unet_name(s + strlen(LDM_UNET), name, sizeof name) < 0))
                rc = sd_err(err, SD_EUNSUPPORTED,
                            "%s: tensor '%s' does not belong to an SD 1.x/2.x/XL U-Net (other architectures are "
                            "not supported)",
                            path, s);
            else rc = tlist_add(&lu, name, t);
        } else if (starts(s, LDM_VAE)) {
            if (sd_model_ldm_vae_name(s + strlen(LDM_VAE), nv, name, sizeof name) < 0)
                rc = sd_err(err, SD_EUNSUPPORTED, "%s: unexpected VAE tensor '%s'", path, s);
            else rc = tlist_add(&lv, name, t);
        } else if (starts(s, LDM_CLIP1) || starts(s, LDM_XL_CLIP1)) {
            const char *tail = s + strlen(starts(s, LDM_CLIP1) ? LDM_CLIP1 : LDM_XL_CLIP1);
            if (strstr(tail, "position_ids")) continue;
            snprintf(name, sizeof name, "%s%s", starts(tail, "text_model.") ? "" : "text_model.", tail);
            rc = tlist_add(&lc, name, t);
        } else if (starts(s, LDM_CLIP2) || starts(s, LDM_XL_CLIP2)) {
            int xl2 = starts(s, LDM_XL_CLIP2);
            rc = xl2 ? add_openclip_xl(&lc2, s + strlen(LDM_XL_CLIP2), t, &max_layer2)
                     : add_openclip(&lc, s + strlen(LDM_CLIP2), t, &max_layer);
            if (rc == 1) rc = 0;
            else if (rc == SD_EINPUT) rc = sd_err(err, SD_EINPUT, "%s: tensor '%s' is not a fused q/k/v projection", path, s);
        }
    }
    if (rc == SD_ENOMEM) rc = sd_err(err, SD_ENOMEM, "out of memory");
    if (rc == 0 && max_layer >= 0) {
        /* diffusers' SD 2 text encoder has the OpenCLIP tower minus its last layer */
        drop_clip_layer(&lc, max_layer);
        *openclip_layers = max_layer + 1;
    }
    if (rc == 0 && (!lu.n || !lv.n || !lc.n))
        rc = sd_err(err, SD_EINPUT, "%s: not a Stable Diffusion checkpoint (needs %s*, %s* and cond_stage_model.* or "
                    "conditioner.* tensors)", path, LDM_UNET, LDM_VAE);
    if (rc == 0 && m->xl && !lc2.n)
        rc = sd_err(err, SD_EINPUT, "%s: an SDXL checkpoint without its second text encoder (%s*)", path, LDM_XL_CLIP2);
    char label[600];
    if (rc == 0) {
        snprintf(label, sizeof label, "unet (%s)", path);
        rc = tlist_to_weights(&lu, &m->unet_w, label, err);
    }
    if (rc == 0) {
        snprintf(label, sizeof label, "vae (%s)", path);
        rc = tlist_to_weights(&lv, &m->vae_w, label, err);
    }
    if (rc == 0) {
        snprintf(label, sizeof label, "text_encoder (%s)", path);
        rc = tlist_to_weights(&lc, &m->clip_w, label, err);
    }
    if (rc == 0 && m->xl) {
        snprintf(label, sizeof label, "text_encoder_2 (%s)", path);
        rc = tlist_to_weights(&lc2, &m->clip2_w, label, err);
    }
    tlist_free(&lu);
    tlist_free(&lv);
    tlist_free(&lc);
    tlist_free(&lc2);
    if (rc == 0) squeeze_vae_attention(&m->vae_w);
    return rc;
}

static int json_int_at(json_t *root, const char *path, int *out) {
    json_t *v = sd_yaml_json_path(root, path);
    if (!json_is_integer(v) || json_integer_value(v) < INT_MIN || json_integer_value(v) > INT_MAX) return 0;
    *out = (int)json_integer_value(v);
    return 1;
}

static int json_num_at(json_t *root, const char *path, float *out) {
    json_t *v = sd_yaml_json_path(root, path);
    if (!json_is_number(v)) return 0;
    *out = (float)json_number_value(v);
    return 1;
}

/* The text-encoder sizes a table records (hidden, vocabulary, positions, MLP, layers); heads: head dim 64. */
static int infer_clip(const sd_model *m, const sd_weights *c, clip_config *cc, const char *what, sd_error *err) {
    const sd_tensor *t;
    clip_config_sd15(cc);
    if (!(t = sd_weights_find(c, "text_model.embeddings.token_embedding.weight")) || t->ndim != 2)
        return sd_err(err, SD_EINPUT, "%s: %s has no token embedding", m->path, what);
    cc->vocab_size = (int)t->shape[0];
    cc->hidden = (int)t->shape[1];
    if ((t = sd_weights_find(c, "text_model.embeddings.position_embedding.weight"))) cc->max_positions = (int)t->shape[0];
    if ((t = sd_weights_find(c, "text_model.encoder.layers.0.mlp.fc1.weight"))) cc->intermediate = (int)t->shape[0];
    int nl = 0;
    while (wfind(c, "text_model.encoder.layers.%d.layer_norm1.weight", nl, 0)) nl++;
    cc->layers = nl;
    cc->projection_dim = cc->hidden; /* as in the configs diffusers writes for SD */
    cc->heads = cc->hidden % 64 == 0 ? cc->hidden / 64 : 1;
    return 0;
}

/*
 * SDXL's parts of a single file's architecture: the OpenCLIP-bigG encoder (gelu, with its
 * projection), the added embedding's sizes (6 time ids: its input is projection + 6 x the time-id
 * embedding size), the VAE's scaling factor and SDXL base's scheduler (Euler, "leading" spacing).
 */
static int infer_xl(sd_model *m, sd_error *err) {
    clip_config *c2 = &m->clip2;
    int rc = infer_clip(m, &m->clip2_w, c2, "text_encoder_2", err);
    if (rc < 0) return rc;
    c2->act = CLIP_ACT_GELU;
    c2->with_projection = 1;
    const sd_tensor *t = sd_weights_find(&m->clip2_w, "text_projection");
    if (!t || t->ndim != 2 || t->shape[0] != c2->hidden)
        return sd_err(err, SD_EINPUT, "%s: text_encoder_2 has no text_projection [%d, N]", m->path, c2->hidden);
    c2->projection_dim = (int)t->shape[1];
    unet_config *uc = &m->unet;
    if (!(t = sd_weights_find(&m->unet_w, "add_embedding.linear_1.weight")) || t->ndim != 2)
        return sd_err(err, SD_EINPUT, "%s: an SDXL U-Net without label_emb.0.0 (the added text/time embedding)", m->path);
    uc->addition_in_dim = (int)t->shape[1];
    int rest = uc->addition_in_dim - c2->projection_dim;
    if (rest > 0 && rest % 5 == 0 && rest % 6)
        return sd_err(err, SD_EUNSUPPORTED, "%s: an SDXL refiner U-Net (5 time ids with aesthetic_score) is not "
                      "supported yet; use an SDXL base model", m->path);
    if (rest <= 0 || rest % 6 || (rest / 6) % 2)
        return sd_err(err, SD_EINPUT, "%s: the added embedding takes %d inputs, not %d pooled + 6 time ids", m->path,
                      uc->addition_in_dim, c2->projection_dim);
    uc->addition_time_embed_dim = rest / 6;
    m->vae.scaling_factor = 0.13025f;
    m->force_zeros_for_empty_prompt = 1;
    strcpy(m->sched.class_name, "EulerDiscreteScheduler");
    m->sched.timestep_spacing = SCHED_SPACING_LEADING;
    return 0;
}

/* Architecture from the shapes of the renamed tensors (the same configs a diffusers folder would have). */
static int infer_configs(sd_model *m, json_t *yaml, int openclip_layers, sd_error *err) {
    const sd_weights *u = &m->unet_w, *v = &m->vae_w, *c = &m->clip_w;
    const sd_tensor *t;
    unet_config *uc = &m->unet;
    unet_config_sd15(uc);
    if (!(t = sd_weights_find(u, "conv_in.weight")) || t->ndim != 4)
        return sd_err(err, SD_EINPUT, "%s: U-Net has no 4-D conv_in weight", m->path);
    uc->in_channels = (int)t->shape[1];
    if ((t = sd_weights_find(u, "conv_out.weight"))) uc->out_channels = (int)t->shape[0];
    int n = 0;
    while (n < SD_MAX_LEVELS && (t = wfind(u, "down_blocks.%d.resnets.0.conv1.weight", n, 0))) uc->block_out[n++] = (int)t->shape[0];
    if (n == 0) return sd_err(err, SD_EINPUT, "%s: U-Net has no down blocks", m->path);
    uc->n_levels = n;
    int L = 0;
    while (wfind(u, "down_blocks.0.resnets.%d.conv1.weight", L, 0)) L++;
    uc->layers_per_block = L;
    sd_model_ldm_unet_attn(uc, u);
    int rc = unet_config_check_attn(uc, err);
    if (rc < 0) return sd_err_prefix(err, "%s", m->path);
    if ((t = sd_weights_find(u, "mid_block.attentions.0.proj_in.weight"))) uc->use_linear_projection = t->ndim == 2;
    if ((t = sd_weights_find(u, "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight")))
        uc->cross_attention_dim = (int)t->shape[1];
    /* transformer blocks per level (SDXL: 1, 2, 10); levels without attention keep 1, as diffusers' configs */
    for (int i = 0; i < n; i++) {
        int tl = 0;
        while (wfind(u, "down_blocks.%d.attentions.0.transformer_blocks.%d.norm1.weight", i, tl)) tl++;
        uc->transformer_layers[i] = tl ? tl : 1;
    }
    int tl = 0;
    while (wfind(u, "mid_block.attentions.0.transformer_blocks.%d.norm1.weight", tl, 0)) tl++;
    if (tl && uc->down_attn[n - 1] == UNET_ATTN_NONE) uc->transformer_layers[n - 1] = tl;
    if (tl && tl != uc->transformer_layers[n - 1])
        return sd_err(err, SD_EUNSUPPORTED, "%s: the mid block has %d transformer blocks, the last level %d (diffusers "
                      "gives both the same number)", m->path, tl, uc->transformer_layers[n - 1]);
    if ((t = sd_weights_find(u, "time_embedding.linear_1.weight"))) uc->time_embed_dim = (int)t->shape[0];
    uc->sample_size = m->xl ? 128 : 64;

    clip_config *cc = &m->clip;
    if ((rc = infer_clip(m, c, cc, "the text encoder", err)) < 0) return rc;
    /* SDXL's first encoder is CLIP-L (quick_gelu) */
    int sd2 = !m->xl && (openclip_layers > 0 || uc->use_linear_projection || uc->cross_attention_dim == 1024);
    cc->act = sd2 ? CLIP_ACT_GELU : CLIP_ACT_QUICK_GELU;

    vae_config *vc = &m->vae;
    vae_config_sd15(vc);
    int nv = 0;
    while (nv < SD_MAX_LEVELS && (t = wfind(v, "encoder.down_blocks.%d.resnets.0.conv1.weight", nv, 0)))
        vc->block_out[nv++] = (int)t->shape[0];
    if (nv == 0) return sd_err(err, SD_EINPUT, "%s: VAE has no encoder blocks", m->path);
    vc->n_levels = nv;
    int vl = 0;
    while (wfind(v, "encoder.down_blocks.0.resnets.%d.conv1.weight", vl, 0)) vl++;
    vc->layers_per_block = vl;
    if ((t = sd_weights_find(v, "post_quant_conv.weight"))) vc->latent_channels = (int)t->shape[0];
    if ((t = sd_weights_find(v, "encoder.conv_in.weight"))) vc->in_channels = (int)t->shape[1];
    if ((t = sd_weights_find(v, "decoder.conv_out.weight"))) vc->out_channels = (int)t->shape[0];

    sched_config_sd15(&m->sched);
    strcpy(m->sched.class_name, "PNDMScheduler");
    if (m->xl && (rc = infer_xl(m, err)) < 0) return rc;

    /* defaults for what the file does not record: real SD 1.x has 8 heads, SD 2.x and SDXL head dim 64 */
    for (int i = 0; i < n; i++) {
        uc->heads[i] = sd2 || m->xl ? (uc->block_out[i] % 64 == 0 ? uc->block_out[i] / 64 : 1) : 8;
        if (uc->block_out[i] % uc->heads[i]) uc->heads[i] = 1;
    }
    uc->upcast_attention = sd2;
    if (yaml) {
        int nh = -1, nhc = -1, x;
        float f;
        json_int_at(yaml, "model.params.unet_config.params.num_heads", &nh);
        json_int_at(yaml, "model.params.unet_config.params.num_head_channels", &nhc);
        /* SDXL's (sgm) layout names the U-Net network_config */
        json_int_at(yaml, "model.params.network_config.params.num_heads", &nh);
        json_int_at(yaml, "model.params.network_config.params.num_head_channels", &nhc);
        for (int i = 0; i < n; i++) {
            int h = nh > 0 ? nh : (nhc > 0 && uc->block_out[i] % nhc == 0 ? uc->block_out[i] / nhc : uc->heads[i]);
            if (h <= 0 || uc->block_out[i] % h)
                return sd_err(err, SD_EINPUT, "%s: %d heads do not divide %d channels", m->config_source, h, uc->block_out[i]);
            uc->heads[i] = h;
        }
        if (json_int_at(yaml, "model.params.image_size", &x)) uc->sample_size = x;
        if (json_num_at(yaml, "model.params.scale_factor", &f)) vc->scaling_factor = f;
        json_t *ls = sd_yaml_json_path(yaml, "model.params.linear_start"), *le = sd_yaml_json_path(yaml, "model.params.linear_end");
        if (json_is_number(ls)) m->sched.beta_start = json_number_value(ls);
        if (json_is_number(le)) m->sched.beta_end = json_number_value(le);
        if (json_int_at(yaml, "model.params.timesteps", &x)) m->sched.num_train_timesteps = x;
        if (json_int_at(yaml, "model.params.first_stage_config.params.ddconfig.resolution", &x)) vc->sample_size = x;
        const char *param = json_string_value(sd_yaml_json_path(yaml, "model.params.parameterization"));
        if (param && !strcmp(param, "v")) m->sched.prediction_type = SCHED_PRED_V;
        json_t *cs = sd_yaml_json_path(yaml, "model.params.cond_stage_config.params");
        if (json_int_at(cs, "num_attention_heads", &x) && x > 0) cc->heads = x;
        const char *act = json_string_value(json_object_get(cs, "hidden_act"));
        if (act && !strcmp(act, "gelu")) cc->act = CLIP_ACT_GELU;
        else if (act && !strcmp(act, "quick_gelu")) cc->act = CLIP_ACT_QUICK_GELU;
        /* An OpenCLIP tower with layer "penultimate" is already cut above; "last" keeps all layers. */
        const char *layer = json_string_value(sd_yaml_json_path(yaml, "model.params.cond_stage_config.params.layer"));
        if (layer && !strcmp(layer, "last") && openclip_layers > 0)
            return sd_err(err, SD_EUNSUPPORTED, "%s: OpenCLIP layer 'last' is not supported (SD 2.x uses 'penultimate')",
                          m->config_source);
    }
    if (cc->hidden % cc->heads) return sd_err(err, SD_EINPUT, "%s: %d text-encoder heads do not divide hidden size %d",
                                              m->path, cc->heads, cc->hidden);
    return 0;
}

/* <dir of file>/<name> if it exists, else NULL. */
static char *beside(const char *file, const char *name) {
    const char *slash = strrchr(file, '/');
    size_t dl = slash ? (size_t)(slash - file) : 1;
    char *dir = slash ? strndup(file, dl) : strdup(".");
    if (!dir) return NULL;
    char *p = sd_fs_path_join(dir, name);
    free(dir);
    if (p && !sd_fs_is_file(p) && !sd_fs_is_dir(p)) {
        free(p);
        p = NULL;
    }
    return p;
}

/* Where a single file's tokenizer comes from: --tokenizer, else vocab.json + merges.txt or the
 * OpenAI .gz beside the checkpoint, else a tokenizer/ folder beside it. */
static char *find_single_file_tokenizer(const char *ckpt, const char *opt) {
    if (opt) return strdup(opt);
    char *p = beside(ckpt, "vocab.json");
    if (p) {
        free(p);
        char *m = beside(ckpt, "merges.txt");
        if (m) {
            char *d = strdup(m);
            free(m);
            if (d) {
                char *slash = strrchr(d, '/');
                if (slash) *slash = 0;
                else strcpy(d, ".");
            }
            return d;
        }
    }
    if ((p = beside(ckpt, "bpe_simple_vocab_16e6.txt.gz"))) return p;
    if ((p = beside(ckpt, "tokenizer")) && sd_fs_is_dir(p)) return p;
    free(p);
    return NULL;
}

/* --config naming a diffusers folder: its config.json files replace the inferred architecture (the
 * networks check every tensor's shape against them when they load); its model_index.json's
 * force_zeros_for_empty_prompt applies. */
static int configs_from_folder(sd_model *m, sd_error *err) {
    json_t *idx = load_model_index(m->config_source, err);
    if (!idx) return err ? err->code : SD_EINPUT;
    int rc = refuse_pipeline_class(m->config_source, json_string_value(json_object_get(idx, "_class_name")) ?
                                   json_string_value(json_object_get(idx, "_class_name")) : "", idx, err);
    if (rc == 0 && m->xl != index_names(idx, "text_encoder_2"))
        rc = sd_err(err, SD_EINPUT, "%s: --config folder is %san SDXL model but %s is %s", m->config_source,
                    m->xl ? "not " : "", m->path, m->xl ? "SDXL" : "not");
    if (rc == 0) m->force_zeros_for_empty_prompt = force_zeros(idx);
    json_decref(idx);
    return rc == 0 ? load_folder_configs(m, m->config_source, err) : rc;
}

static int open_single(sd_model *m, const sd_model_opts *opts, sd_error *err) {
    const char *dot = strrchr(m->path, '.');
    if (!dot || (strcmp(dot, ".safetensors") && !is_pickle_path(m->path)))
        return sd_err(err, SD_EUNSUPPORTED,
                      "%s: unsupported checkpoint format; use a .safetensors or .ckpt file or a diffusers folder", m->path);
    int rc = add_file(m, m->path, "checkpoint", err);
    if (rc < 0) return rc;
    /* LDM config: --config, else <base>.yaml beside the checkpoint */
    json_t *yaml = NULL;
    if (opts && opts->config) {
        m->config_source = strdup(opts->config);
    } else {
        size_t base = (size_t)(dot - m->path);
        char *y = malloc(base + 6);
        if (y) {
            memcpy(y, m->path, base);
            strcpy(y + base, ".yaml");
            if (sd_fs_is_file(y)) m->config_source = y;
            else free(y);
        }
    }
    int folder = m->config_source && sd_fs_is_dir(m->config_source);
    if (m->config_source && !folder && (rc = sd_yaml_load(m->config_source, &yaml, err)) < 0) return rc;
    int openclip_layers = 0;
    int nt;
    const sd_tensor *ts = file_tensors(m, 0, &nt);
    rc = build_ldm_tables(m, ts, nt, &openclip_layers, err);
    /* build_ldm_tables required a VAE and a text encoder (SDXL: two) */
    m->parts = SD_PART_VAE | SD_PART_TEXT_ENCODER | (m->xl ? SD_PART_TEXT_ENCODER_2 : 0);
    if (rc == 0) rc = infer_configs(m, yaml, openclip_layers, err);
    if (rc == 0 && folder) rc = configs_from_folder(m, err);
    json_decref(yaml);
    if (rc < 0) return rc;
    m->tokenizer_path = find_single_file_tokenizer(m->path, opts ? opts->tokenizer : NULL);
    /* SDXL: the second encoder uses the same vocabulary (padded with "!", sd_model_open_tokenizer2) */
    if (m->xl && m->tokenizer_path && !(m->tokenizer2_path = strdup(m->tokenizer_path)))
        return sd_err(err, SD_ENOMEM, "out of memory");
    m->pipeline_class = strdup(m->xl ? "SGM single file (SDXL)"
                               : m->unet.in_channels == 9 ? "LDM single file (inpainting)" : "LDM single file");
    return m->pipeline_class ? 0 : sd_err(err, SD_ENOMEM, "out of memory");
}

/* An SDXL model's parts fit together: both text encoders (the second with its projection), their widths
 * adding up to the U-Net's context, and the added embedding taking the pooled embedding + 6 time ids. */
static int check_xl(const sd_model *m, sd_error *err) {
    const unet_config *u = &m->unet;
    const clip_config *c2 = &m->clip2;
    if ((m->parts & (SD_PART_TEXT_ENCODER | SD_PART_TEXT_ENCODER_2)) != (SD_PART_TEXT_ENCODER | SD_PART_TEXT_ENCODER_2))
        return sd_err(err, SD_EUNSUPPORTED, "%s: an SDXL U-Net needs both text encoders (text_encoder and "
                      "text_encoder_2); refiner-style models are not supported yet", m->path);
    if (!c2->with_projection || c2->projection_dim < 1)
        return sd_err(err, SD_EINPUT, "%s: text_encoder_2 must be a CLIPTextModelWithProjection (SDXL's pooled "
                      "embedding)", m->path);
    if (u->cross_attention_dim != m->clip.hidden + c2->hidden)
        return sd_err(err, SD_EINPUT, "%s: the U-Net expects %d-wide text embeddings but the two text encoders give "
                      "%d + %d", m->path, u->cross_attention_dim, m->clip.hidden, c2->hidden);
    int rest = u->addition_in_dim - c2->projection_dim, d = u->addition_time_embed_dim;
    if (rest == 5 * d)
        return sd_err(err, SD_EUNSUPPORTED, "%s: an SDXL refiner U-Net (aesthetic_score conditioning, 5 time ids) is "
                      "not supported yet; use an SDXL base model", m->path);
    if (rest != 6 * d)
        return sd_err(err, SD_EINPUT, "%s: the U-Net's added embedding takes %d inputs, not %d pooled + 6 x %d time-id "
                      "features", m->path, u->addition_in_dim, c2->projection_dim, d);
    return 0;
}

int sd_model_open(sd_model *m, const char *path, const sd_model_opts *opts, sd_error *err) {
    memset(m, 0, sizeof *m);
    m->path = strdup(path);
    if (!m->path) return sd_err(err, SD_ENOMEM, "out of memory");
    int rc;
    if (sd_fs_is_dir(path)) {
        m->layout = SD_LAYOUT_DIFFUSERS;
        rc = open_diffusers(m, err);
        if (rc == 0 && opts && opts->tokenizer) {
            free(m->tokenizer_path);
            m->tokenizer_path = strdup(opts->tokenizer);
        }
    } else if (sd_fs_is_file(path)) {
        m->layout = SD_LAYOUT_SINGLE_FILE;
        rc = open_single(m, opts, err);
    } else {
        rc = sd_err(err, SD_ENOTFOUND, "%s: no such model file or folder", path);
    }
    if (rc == 0) {
        m->inpaint = m->unet.in_channels == 9;
        m->sd_version = guess_sd_version(m);
        m->xl = m->unet.addition_time_embed_dim > 0;
        if (m->xl) rc = check_xl(m, err);
        else if ((m->parts & SD_PART_TEXT_ENCODER) && m->unet.cross_attention_dim != m->clip.hidden)
            rc = sd_err(err, SD_EINPUT, "%s: the U-Net expects %d-wide text embeddings but the text encoder gives %d",
                        path, m->unet.cross_attention_dim, m->clip.hidden);
    }
    if (rc < 0) sd_model_close(m);
    return rc;
}

/* 1 when [p, p + n) lies inside one of m's mapped files. */
static int in_mapped_file(const sd_model *m, const void *p, size_t n) {
    const unsigned char *a = p;
    for (int i = 0; i < m->n_files; i++) {
        const unsigned char *lo = m->is_ckpt[i] ? m->ckpts[i].map.data : (const unsigned char *)m->files[i].map;
        size_t size = m->is_ckpt[i] ? m->ckpts[i].map.size : m->files[i].map_size;
        if (lo && a >= lo && n <= size && (size_t)(a - lo) <= size - n) return 1;
    }
    return 0;
}

size_t sd_model_release_weights(const sd_model *m, const sd_weights *w) {
    size_t dropped = 0;
    for (int i = 0; i < w->n; i++) {
        const sd_tensor *t = &w->tensors[i];
        if (t->data && t->nbytes && in_mapped_file(m, t->data, t->nbytes)) dropped += sd_map_release(t->data, t->nbytes);
    }
    return dropped;
}

void sd_model_close(sd_model *m) {
    sd_weights_free(&m->unet_w);
    sd_weights_free(&m->vae_w);
    sd_weights_free(&m->clip_w);
    sd_weights_free(&m->clip2_w);
    for (int i = 0; i < m->n_files; i++) {
        if (m->is_ckpt[i]) sd_ckpt_close(&m->ckpts[i]);
        else st_close(&m->files[i]);
        free(m->file_desc[i]);
    }
    free(m->path);
    free(m->pipeline_class);
    free(m->config_source);
    free(m->tokenizer_path);
    free(m->tokenizer2_path);
    memset(m, 0, sizeof *m);
}

int sd_model_size_factor(const sd_model *m) {
    return (m->parts & SD_PART_VAE) ? vae_scale_factor(&m->vae) : 1 << (m->unet.n_levels - 1);
}

const char *sd_model_variant(const sd_model *m, char *buf, size_t size) {
    const char *v = m->sched.prediction_type == SCHED_PRED_V ? " (v-prediction)" : "";
    int f = vae_scale_factor(&m->vae);
    if (m->xl)
        snprintf(buf, size, "SDXL%s%s", m->inpaint ? " inpainting" : "", v);
    else if (!(m->parts & SD_PART_VAE))
        snprintf(buf, size, "pixel-space DDPM (%s, %s)", m->unet.unet2d ? "UNet2DModel" : "U-Net",
                 (m->parts & SD_PART_TEXT_ENCODER) ? "text-conditioned" : "unconditional");
    else if (m->upscaler)
        snprintf(buf, size, "SD x4 upscaler%s, f=%d VAE, noise levels up to %d", v, f, m->max_noise_level);
    else if (f != 8 || m->vae.latent_channels != 4)
        snprintf(buf, size, "LDM f=%d (%d latent channels), SD %d.x-style%s%s", f, m->vae.latent_channels,
                 m->sd_version, m->inpaint ? " inpainting" : "", v);
    else
        snprintf(buf, size, "SD %d.x%s%s", m->sd_version, m->inpaint ? " inpainting" : "", v);
    return buf;
}

/* SD 2.x pads prompts with "!" (id 0); a tokenizer folder says so itself, other sources do not. */
static int tokenizer_states_pad(const char *dir) {
    char *a = sd_fs_path_join(dir, "special_tokens_map.json"), *b = sd_fs_path_join(dir, "tokenizer_config.json");
    int r = (a && sd_fs_is_file(a)) || (b && sd_fs_is_file(b));
    free(a);
    free(b);
    return r;
}

int sd_model_require(const sd_model *m, unsigned parts, const char *purpose, sd_error *err) {
    static const struct {
        unsigned part;
        const char *what;
    } names[] = {{SD_PART_VAE, "VAE"}, {SD_PART_TEXT_ENCODER, "text encoder"},
                 {SD_PART_TEXT_ENCODER_2, "second text encoder (text_encoder_2)"}};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if ((parts & names[i].part) && !(m->parts & names[i].part))
            return sd_err(err, SD_EUNSUPPORTED, "%s: the model has no %s (its model_index.json names none), which %s needs",
                          m->path, names[i].what, purpose);
    return 0;
}

/* The tokenizer at path for a text encoder of vocab_size tokens; pad_bang 1: pad with "!" (id 0) unless
 * the tokenizer's own files say how it pads; 2: always (a single file's OpenCLIP encoder). */
static int open_tokenizer_at(const sd_model *m, const char *path, int pad_bang, int vocab_size, tokenizer_bpe **tok,
                             sd_error *err) {
    int rc;
    if (!path)
        return sd_err(err, SD_EINPUT,
                      "%s: no tokenizer found; pass --tokenizer DIR (vocab.json + merges.txt) or "
                      "bpe_simple_vocab_16e6.txt.gz, or put those files next to the checkpoint",
                      m->path);
    size_t l = strlen(path);
    int gz = l > 3 && !strcmp(path + l - 3, ".gz");
    rc = gz ? tokenizer_load_openai_gz(tok, path, err) : tokenizer_load_dir(tok, path, err);
    if (rc < 0) return rc;
    if (pad_bang == 2 || (pad_bang && (gz || !tokenizer_states_pad(path)))) rc = tokenizer_set_pad(*tok, "!", err);
    if (rc == 0 && tokenizer_vocab_size(*tok) > vocab_size)
        rc = sd_err(err, SD_EINPUT, "%s: the tokenizer has %d tokens but the text encoder only %d", path,
                    tokenizer_vocab_size(*tok), vocab_size);
    if (rc < 0 && *tok) {
        tokenizer_free(*tok);
        *tok = NULL;
    }
    return rc;
}

int sd_model_open_tokenizer(const sd_model *m, tokenizer_bpe **tok, sd_error *err) {
    *tok = NULL;
    int rc = sd_model_require(m, SD_PART_TEXT_ENCODER, "a tokenizer", err);
    if (rc < 0) return rc;
    /* SD 2.x's OpenCLIP pads with "!"; SDXL's first encoder is CLIP-L, padded with <|endoftext|> */
    return open_tokenizer_at(m, m->tokenizer_path, m->sd_version == 2 && !m->xl, m->clip.vocab_size, tok, err);
}

int sd_model_open_tokenizer2(const sd_model *m, tokenizer_bpe **tok, sd_error *err) {
    *tok = NULL;
    int rc = sd_model_require(m, SD_PART_TEXT_ENCODER_2, "a second tokenizer", err);
    if (rc < 0) return rc;
    return open_tokenizer_at(m, m->tokenizer2_path, m->layout == SD_LAYOUT_SINGLE_FILE ? 2 : 1, m->clip2.vocab_size, tok,
                             err);
}

int sd_model_text_projection(const sd_model *m, float **out, sd_error *err) {
    *out = NULL;
    const clip_config *c = &m->clip2;
    int P = c->projection_dim, D = c->hidden;
    const sd_tensor *t = sd_weights_find(&m->clip2_w, "text_projection.weight");
    int transposed = 0;
    if (!t && (t = sd_weights_find(&m->clip2_w, "text_projection"))) transposed = 1;
    int64_t want0 = transposed ? D : P, want1 = transposed ? P : D;
    if (!t || t->ndim != 2 || t->shape[0] != want0 || t->shape[1] != want1)
        return sd_err(err, SD_EINPUT, "%s: text_encoder_2 needs text_projection.weight [%d, %d]", m->path, P, D);
    float *raw = malloc(sizeof(float) * (size_t)P * D), *w = malloc(sizeof(float) * (size_t)P * D);
    if (!raw || !w) {
        free(raw);
        free(w);
        return sd_err(err, SD_ENOMEM, "out of memory");
    }
    sd_dtype_convert_to_f32(raw, t->data, t->dtype, (size_t)P * D);
    for (int p = 0; p < P; p++)
        for (int d = 0; d < D; d++) w[(size_t)p * D + d] = transposed ? raw[(size_t)d * P + p] : raw[(size_t)p * D + d];
    free(raw);
    *out = w;
    return 0;
}

