/*
 * config.h - architecture of each Stable Diffusion component.
 *
 * Filled from a diffusers folder's config.json files (*_config_load) or, for
 * single-file checkpoints, inferred from tensor shapes plus the LDM .yaml
 * (core/model/model.c). Field names follow diffusers' config keys.
 */
#ifndef SD_CONFIG_H
#define SD_CONFIG_H

#include <stddef.h>

#include "err.h"

#define SD_MAX_LEVELS 6

/*
 * The attention block a U-Net level (or the mid block) has after each of its
 * resnets, from diffusers' block class names:
 *   UNET_ATTN_NONE   DownBlock2D, UpBlock2D                 resnets only
 *   UNET_ATTN_CROSS  CrossAttnDownBlock2D, CrossAttnUpBlock2D, UNetMidBlock2DCrossAttn
 *                    Transformer2DModel: self- and cross-attention, GEGLU (SD 1.x/2.x)
 *   UNET_ATTN_SELF   AttnDownBlock2D, AttnUpBlock2D, UNetMidBlock2D with add_attention
 *                    (UNet2DModel): a plain self-attention attnblock (one head; the
 *                    diffusers names group_norm, to_q, to_k, to_v, to_out.0)
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
    int transformer_layers[SD_MAX_LEVELS]; /* transformer_layers_per_block per down level (1 in SD 1.x/2.x;
                                   SDXL 1, 2, 10); up level i uses [n-1-i], the mid block [n-1] */
    int use_linear_projection;  /* SD2: Linear proj_in/proj_out */
    int upcast_attention;       /* SD2.1: compute attention scores in fp32 (no effect in fp32) */
    int flip_sin_to_cos;        /* 1: [cos, sin] */
    int freq_shift;             /* 0 */
    int time_embed_dim;         /* 4 * block_out[0] */
    int sample_size;            /* latent size the model was trained at (64 for SD1.5) */
    /* SDXL's added conditioning (addition_embed_type "text_time"; 0 when absent): each of the
     * time ids gets a sinusoidal embedding of addition_time_embed_dim; add_embedding maps
     * [pooled text, those] (addition_in_dim wide) to the time embedding's size */
    int addition_time_embed_dim;/* 256 (SDXL), 0 = no added conditioning */
    int addition_in_dim;        /* projection_class_embeddings_input_dim: 2816 = 1280 + 6 * 256 */
    int unet2d;                 /* UNet2DModel: no text conditioning (pixel-space DDPM) */
    int downsample_padding;     /* 1: stride-2 conv with padding 1; 0: pad right/bottom by one, no padding */
    int num_class_embeds;       /* > 0: class_embedding table [num_class_embeds, time_embed_dim] (x4 upscaler's
                                   noise level), added to the time embedding; 0: none */
    int only_cross[SD_MAX_LEVELS]; /* per down level: the transformer's attn1 attends to the context too
                                      (only_cross_attention); up level i mirrors down level n-1-i */
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
    int projection_dim;         /* text_projection size (CLIPModel, CLIPTextModelWithProjection), 0 if none */
    int with_projection;        /* CLIPTextModelWithProjection (SDXL's text_encoder_2): has text_projection.weight */
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
    int set_alpha_to_one;       /* -1: not in the file, the class's default (DDIM true, PNDM false) */
    int skip_prk_steps;
    int clip_sample;
    int prediction_type;        /* SCHED_PRED_* */
    int timestep_spacing;       /* SCHED_SPACING_*; DEFAULT = the sampler's own default (also when
                                   the key is listed in "_use_default_values", as from_config does) */
} sched_config;

/*
 * Which keys each config.json kind accepts (the tables in config_keys.c): those it reads,
 * those that make no difference ("ignored"), and those it does not implement but accepts
 * at their default value ("fixed"; any other value is refused).
 *
 * unet (UNet2DConditionModel, UNet2DModel)
 *   read:     _class_name act_fn add_attention addition_embed_type (null or "text_time")
 *             addition_time_embed_dim attention_head_dim block_out_channels
 *             cross_attention_dim down_block_types downsample_padding flip_sin_to_cos freq_shift
 *             in_channels layers_per_block mid_block_type norm_eps norm_num_groups
 *             num_attention_heads num_class_embeds only_cross_attention out_channels
 *             projection_class_embeddings_input_dim sample_size time_embedding_dim
 *             transformer_layers_per_block up_block_types upcast_attention use_linear_projection
 *   ignored:  _diffusers_version addition_embed_type_num_heads dropout
 *             mid_block_only_cross_attention num_train_timesteps
 *   fixed (only the default passes):
 *             attention_type attn_norm_num_groups center_input_sample class_embed_type
 *             class_embeddings_concat conv_in_kernel conv_out_kernel cross_attention_norm
 *             downsample_type dual_cross_attention encoder_hid_dim
 *             encoder_hid_dim_type mid_block_scale_factor
 *             resnet_out_scale_factor resnet_skip_time_act
 *             resnet_time_scale_shift reverse_transformer_layers_per_block time_cond_proj_dim
 *             time_embedding_act_fn time_embedding_type timestep_post_act upsample_type
 * vae (AutoencoderKL)
 *   read:     act_fn block_out_channels in_channels latent_channels layers_per_block
 *             norm_num_groups out_channels sample_size scaling_factor
 *   ignored:  _diffusers_version force_upcast
 *   fixed:    _class_name (AutoencoderKL) down_block_types (DownEncoderBlock2D)
 *             up_block_types (UpDecoderBlock2D) latents_mean latents_std mid_block_add_attention
 *             shift_factor use_post_quant_conv use_quant_conv
 * text encoder (transformers' CLIPTextConfig)
 *   read:     hidden_act hidden_size intermediate_size layer_norm_eps max_position_embeddings
 *             num_attention_heads num_hidden_layers projection_dim vocab_size
 *   ignored:  _name_or_path attention_dropout bos_token_id dropout eos_token_id
 *             initializer_factor initializer_range output_attentions output_hidden_states
 *             pad_token_id return_dict torch_dtype transformers_version use_cache
 *   fixed:    architectures (CLIPTextModel, CLIPTextModelWithProjection) model_type (clip_text_model)
 * scheduler (DDIM, PNDM, DDPM, Euler, Euler a, LMS, Heun, DPM-Solver++, UniPC)
 *   read:     _class_name _use_default_values beta_end beta_schedule beta_start clip_sample
 *             num_train_timesteps prediction_type set_alpha_to_one skip_prk_steps steps_offset
 *             timestep_spacing
 *   ignored:  _diffusers_version dynamic_thresholding_ratio sample_max_value
 *   fixed:    algorithm_type clip_sample_range disable_corrector euler_at_final
 *             final_sigmas_type interpolation_type lower_order_final predict_x0
 *             rescale_betas_zero_snr sigma_max sigma_min solver_order solver_p solver_type
 *             thresholding timestep_type trained_betas use_karras_sigmas use_lu_lambdas
 *             variance_type
 *
 * Any other key is refused ("unknown to sdrender"), except other '_' keys (diffusers' own
 * bookkeeping, which it drops before building a model). Refusals name the key and, from
 * *_load, the file: "unet/config.json: config key 'class_embed_type' = "timestep" is not supported yet".
 */
typedef enum { CONFIG_UNET, CONFIG_VAE, CONFIG_TEXT_ENCODER, CONFIG_SCHEDULER } config_kind;

#define CONFIG_KEY_MAX_VALUES 2

/* A key accepted only at certain values: anything else is not implemented. */
typedef struct config_fixed_key {
    const char *name;
    const char *values[CONFIG_KEY_MAX_VALUES]; /* JSON text ("null", "1", "\"conv\""); unused ones NULL */
} config_fixed_key;

/* What one config.json kind accepts: NULL-terminated lists (fixed ends with a NULL name). */
typedef struct config_table {
    const char *const *read;      /* implemented */
    const char *const *ignored;   /* no effect on fp32 inference */
    const config_fixed_key *fixed;/* not implemented: only their defaults pass */
} config_table;

const config_table *config_table_of(config_kind kind);

struct json_t;
/* SD_EUNSUPPORTED naming the first key of root that `kind` does not accept (see above). */
int config_check_keys(config_kind kind, struct json_t *root, sd_error *err);

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

/* SDXL base 1.0's (stabilityai/stable-diffusion-xl-base-1.0): its 2.6 B-parameter U-Net and OpenCLIP-bigG
 * text_encoder_2 (its text_encoder is clip_config_sd15's CLIP-L; its VAE vae_config_sd15's with
 * scaling_factor 0.13025). */
void unet_config_sdxl(unet_config *c);
void clip_config_sdxl_bigg(clip_config *c);

/* Head dimension of down level `level` (channels / heads). */
int unet_config_head_dim(const unet_config *c, int level);

/* SD_EUNSUPPORTED naming the first block with a plain self-attention block (UNET_ATTN_SELF): single LDM
 * files store those as AttentionBlock (norm, qkv, proj_out), which sdrender does not convert. */
int unet_config_check_attn(const unet_config *c, sd_error *err);

#endif
