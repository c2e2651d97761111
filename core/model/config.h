/*
 * config.h - architecture of each Stable Diffusion component.
 *
 * Filled from a diffusers folder's config.json files (*_config_load) or, for
 * single-file checkpoints, inferred from tensor shapes plus the LDM .yaml
 * (core/model/model.c). Field names follow diffusers' config keys.
 */
#ifndef SD_CONFIG_H
#define SD_CONFIG_H

#include "err.h"

#define SD_MAX_LEVELS 6

/*
 * The attention block a U-Net level (or the mid block) has after each of its
 * resnets, from diffusers' block class names:
 *   UNET_ATTN_NONE   DownBlock2D, UpBlock2D                 resnets only
 *   UNET_ATTN_CROSS  CrossAttnDownBlock2D, CrossAttnUpBlock2D, UNetMidBlock2DCrossAttn
 *                    Transformer2DModel: self- and cross-attention, GEGLU (SD 1.x/2.x)
 *   UNET_ATTN_SELF   AttnDownBlock2D, AttnUpBlock2D, UNetMidBlock2D with add_attention
 *                    (UNet2DModel): a plain self-attention attnblock; not implemented yet,
 *                    configs that ask for it are refused
 */
typedef enum unet_attn_kind { UNET_ATTN_NONE = 0, UNET_ATTN_CROSS = 1, UNET_ATTN_SELF = 2 } unet_attn_kind;

/* UNet2DConditionModel (and, for its block layout, UNet2DModel) */
typedef struct unet_config {
    int in_channels;            /* 4, or 9 for inpainting */
    int out_channels;           /* 4 */
    int n_levels;               /* len(block_out_channels) */
    int block_out[SD_MAX_LEVELS];
    int layers_per_block;       /* resnets per down block; up blocks have one more */
    int norm_groups;            /* 32 */
    float norm_eps;             /* resnet and conv_norm_out GroupNorm eps (1e-5) */
    int cross_attention_dim;    /* 768 (SD1), 1024 (SD2) */
    int heads[SD_MAX_LEVELS];   /* attention heads per down level; up level i uses heads[n-1-i]; mid uses heads[n-1] */
    unet_attn_kind down_attn[SD_MAX_LEVELS]; /* per down block (down order) */
    unet_attn_kind up_attn[SD_MAX_LEVELS];   /* per up block (up order: up_attn[0] is the deepest level) */
    unet_attn_kind mid_attn;                 /* the mid block's */
    int transformer_layers;     /* transformer_layers_per_block (1 in SD 1.x/2.x) */
    int use_linear_projection;  /* SD2: Linear proj_in/proj_out */
    int upcast_attention;       /* SD2.1: compute attention scores in fp32 (no effect in fp32) */
    int flip_sin_to_cos;        /* 1: [cos, sin] */
    int freq_shift;             /* 0 */
    int time_embed_dim;         /* 4 * block_out[0] */
    int sample_size;            /* latent size the model was trained at (64 for SD1.5) */
} unet_config;

/* AutoencoderKL */
typedef struct vae_config {
    int in_channels;            /* 3 */
    int out_channels;           /* 3 */
    int latent_channels;        /* 4 */
    int n_levels;
    int block_out[SD_MAX_LEVELS];
    int layers_per_block;       /* encoder resnets per level; decoder has one more */
    int norm_groups;            /* 32 */
    float scaling_factor;       /* 0.18215 */
    int sample_size;
} vae_config;

enum { CLIP_ACT_QUICK_GELU = 0, CLIP_ACT_GELU = 1 };

/* CLIP text transformer (transformers' CLIPTextModel) */
typedef struct clip_config {
    int vocab_size;             /* 49408 */
    int hidden;                 /* 768 (SD1), 1024 (SD2) */
    int intermediate;           /* 3072 */
    int layers;                 /* 12 (SD1), 23 used of 24 (SD2) */
    int heads;
    int max_positions;          /* 77 */
    int act;                    /* CLIP_ACT_* */
    float eps;                  /* LayerNorm eps, 1e-5 */
    int projection_dim;         /* text_projection size (CLIPModel), 0 if none */
} clip_config;

enum { SCHED_BETA_SCALED_LINEAR = 0, SCHED_BETA_LINEAR = 1 };
enum { SCHED_PRED_EPSILON = 0, SCHED_PRED_V = 1, SCHED_PRED_SAMPLE = 2 };
enum { SCHED_SPACING_DEFAULT = 0, SCHED_SPACING_LEADING, SCHED_SPACING_LINSPACE, SCHED_SPACING_TRAILING };

/* The parts of scheduler_config.json every sampler derives from. */
typedef struct sched_config {
    char class_name[64];        /* "PNDMScheduler", ... */
    double beta_start, beta_end;/* 0.00085, 0.012 (double: diffusers takes their sqrt in float64) */
    int beta_schedule;          /* SCHED_BETA_* */
    int num_train_timesteps;    /* 1000 */
    int steps_offset;           /* 1 */
    int set_alpha_to_one;
    int skip_prk_steps;
    int clip_sample;
    int prediction_type;        /* SCHED_PRED_* */
    int timestep_spacing;       /* SCHED_SPACING_*; DEFAULT = the sampler's own default (also when
                                   the key is listed in "_use_default_values", as from_config does) */
} sched_config;

/* Each *_load reads a diffusers config.json; *_from_json parses its text. Missing keys get
 * diffusers' defaults; wrong types and unsupported features are errors naming the key. */
int unet_config_load(unet_config *c, const char *path, sd_error *err);
int unet_config_from_json(unet_config *c, const char *text, sd_error *err);
int vae_config_load(vae_config *c, const char *path, sd_error *err);
int vae_config_from_json(vae_config *c, const char *text, sd_error *err);
int clip_config_load(clip_config *c, const char *path, sd_error *err);
int clip_config_from_json(clip_config *c, const char *text, sd_error *err);
int sched_config_load(sched_config *c, const char *path, sd_error *err);
int sched_config_from_json(sched_config *c, const char *text, sd_error *err);

/*
 * How many pixels one latent pixel spans per side: 2^(n_levels - 1) (8 for SD's
 * 4-level VAE, 4 or 16 for 3 or 5 levels). Image sizes must be multiples of it.
 * A zeroed config (a model without a VAE, in pixel space) gives 1.
 */
int vae_scale_factor(const vae_config *c);

/* Defaults of real SD 1.5 (also the starting point of the parsers). */
void unet_config_sd15(unet_config *c);
void vae_config_sd15(vae_config *c);
void clip_config_sd15(clip_config *c);
void sched_config_sd15(sched_config *c);

/* Head dimension of down level `level` (channels / heads). */
int unet_config_head_dim(const unet_config *c, int level);

/* SD_EUNSUPPORTED naming the first block whose attention kind is not implemented (UNET_ATTN_SELF). */
int unet_config_check_attn(const unet_config *c, sd_error *err);

#endif
