/*
 * model.h - opening the Stable Diffusion checkpoints users have.
 *
 * Two layouts:
 *  - a diffusers folder: model_index.json, unet/, vae/, text_encoder/,
 *    tokenizer/, scheduler/ with their config.json files;
 *  - a single original (LDM) checkpoint file (.safetensors, or a PyTorch
 *    .ckpt/.pth read without executing anything): model.diffusion_model.*,
 *    first_stage_model.*, cond_stage_model.* tensors (SDXL: conditioner.embedders.0.transformer.*
 *    for CLIP-L, conditioner.embedders.1.model.* for OpenCLIP-bigG). Its architecture is
 *    inferred from tensor shapes; head counts (not recorded in the file) come
 *    from an LDM .yaml with the same base name beside it (v1-inference.yaml
 *    format), else real SD defaults (SD 1.x: 8 heads; SD 2.x and SDXL: head dim 64).
 *    --config may instead name a diffusers folder: its config.json files then give
 *    the whole architecture (as diffusers' from_single_file(config=...)).
 *
 * Either way the result is the same: one config per component and a weight
 * table per component with diffusers / transformers tensor names, pointing
 * into the mapped files (no copies). Networks load from these.
 */
#ifndef SD_MODEL_H
#define SD_MODEL_H

#include "ckpt.h"
#include "config.h"
#include "err.h"
#include "safetensors.h"
#include "weights.h"

typedef enum { SD_LAYOUT_DIFFUSERS = 0, SD_LAYOUT_SINGLE_FILE = 1 } sd_model_layout;

typedef struct sd_model_opts {
    const char *tokenizer; /* --tokenizer: folder with vocab.json + merges.txt, or bpe_simple_vocab_16e6.txt.gz */
    const char *config;    /* --config: LDM .yaml or diffusers folder for a single file (default: <checkpoint base>.yaml) */
} sd_model_opts;

#define SD_MODEL_MAX_FILES 8

/*
 * Components a model may lack. A diffusers folder has the ones its
 * model_index.json names (a pixel-space DDPM names neither a VAE nor a text
 * encoder); a single LDM file always has both. The U-Net and the scheduler
 * are always there. The config and weight table of a missing part stay zeroed.
 */
enum { SD_PART_VAE = 1, SD_PART_TEXT_ENCODER = 2, SD_PART_TEXT_ENCODER_2 = 4 /* SDXL's OpenCLIP-bigG */ };

typedef struct sd_model {
    char *path;
    sd_model_layout layout;
    int sd_version;          /* 1 or 2 (SDXL: 2, with xl set) */
    int xl;                  /* SDXL: two text encoders, added text/time conditioning (unet.addition_time_embed_dim) */
    int force_zeros_for_empty_prompt; /* SDXL: no negative prompt -> zero negative conditioning (model_index.json) */
    int inpaint;             /* 9-channel U-Net */
    char *pipeline_class;    /* model_index.json _class_name, or a description for single files */
    char *config_source;     /* the .yaml used for a single file, or NULL */
    char *tokenizer_path;    /* folder or .gz the tokenizer loads from; NULL when none was found */
    char *tokenizer2_path;   /* SDXL: text_encoder_2's (tokenizer_2/, or the same vocabulary padded with "!") */
    unsigned parts;          /* SD_PART_* this model has */
    unet_config unet;
    vae_config vae;
    clip_config clip;
    clip_config clip2;       /* SDXL's text_encoder_2 (SD_PART_TEXT_ENCODER_2) */
    sched_config sched;
    int upscaler;            /* StableDiffusionUpscalePipeline: low-res image + noise level conditioning */
    sched_config low_res_sched; /* upscaler: low_res_scheduler/scheduler_config.json (its add_noise) */
    int max_noise_level;     /* upscaler: model_index.json max_noise_level (350) */
    sd_weights unet_w, vae_w, clip_w, clip2_w;
    /* files backing the weight tables: safetensors, or PyTorch pickles (.ckpt/.pth/.bin) */
    int n_files;
    st_file files[SD_MODEL_MAX_FILES];
    sd_ckpt ckpts[SD_MODEL_MAX_FILES];
    int is_ckpt[SD_MODEL_MAX_FILES];
    size_t file_size[SD_MODEL_MAX_FILES];
    char *file_desc[SD_MODEL_MAX_FILES]; /* "unet: path" */
} sd_model;

/* Opens a diffusers folder or a single checkpoint file. opts may be NULL. */
int sd_model_open(sd_model *m, const char *path, const sd_model_opts *opts, sd_error *err);
void sd_model_close(sd_model *m);

/*
 * Lets the tensors of w (one of m's tables) leave the resident set: the whole
 * pages of each tensor that lies in one of m's mapped files are dropped and
 * read again from the page cache on the next use. Tensors elsewhere (LoRA
 * merges, shard copies, random weights) are left alone. The pipeline calls
 * this for each network when its phase ends, so at most one network's
 * weights are resident at a time. Returns the bytes dropped.
 */
size_t sd_model_release_weights(const sd_model *m, const sd_weights *w);

/* 0 when m has every part in `parts` (SD_PART_*); else SD_EUNSUPPORTED naming the first missing one
 * and `purpose`, the thing that needs it ("the Stable Diffusion pipeline"). */
int sd_model_require(const sd_model *m, unsigned parts, const char *purpose, sd_error *err);

struct tokenizer_bpe;
/* The model's tokenizer (m->tokenizer_path: a folder or OpenAI's .gz), padding as the model expects;
 * refused for a model without a text encoder. */
int sd_model_open_tokenizer(const sd_model *m, struct tokenizer_bpe **tok, sd_error *err);

/* SDXL: text_encoder_2's tokenizer (tokenizer2_path; pads with "!", id 0, unless its files say otherwise). */
int sd_model_open_tokenizer2(const sd_model *m, struct tokenizer_bpe **tok, sd_error *err);

/* SDXL: text_encoder_2's projection as float32 [projection_dim, hidden] (caller frees), from a folder's
 * text_projection.weight or a single file's OpenCLIP text_projection [hidden, projection_dim] (transposed). */
int sd_model_text_projection(const sd_model *m, float **out, sd_error *err);

/* What image sides must be multiples of: the VAE's factor 2^(levels-1), or for a pixel-space model
 * (no VAE) 2^(U-Net levels - 1). */
int sd_model_size_factor(const sd_model *m);

/* "SD 1.x", "SD 2.x (v-prediction)", "SD 1.x inpainting", "SDXL", "pixel-space DDPM (unconditional)",
 * "SD x4 upscaler (v-prediction)", "LDM f=4 (4 latent channels)", ... into buf. */
const char *sd_model_variant(const sd_model *m, char *buf, size_t size);

/* Single-file (LDM) name conversion, exposed for tests: writes the diffusers name of an LDM
 * U-Net / VAE tensor name (without the model prefix) into out; returns 0, or -1 if unknown.
 * layers_per_block is the number of resnets per down block. */
int sd_model_ldm_unet_name(const char *ldm, int layers_per_block, char *out, size_t size);
int sd_model_ldm_vae_name(const char *ldm, int n_levels, char *out, size_t size);

/* The attention kind of every U-Net block of a renamed single-file U-Net table u (c->n_levels set). */
void sd_model_ldm_unet_attn(unet_config *c, const sd_weights *u);

#endif
