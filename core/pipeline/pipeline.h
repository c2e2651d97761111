/*
 * pipeline.h - prompt to pixels: txt2img, img2img and inpainting exactly as
 * diffusers 0.27.2's StableDiffusion{,Img2Img,Inpaint}Pipeline on CPU fp32,
 * and SDXL's txt2img and img2img as StableDiffusionXL{,Img2Img}Pipeline,
 * for VAEs of any factor f = 2^(levels-1) and latent width; unconditional
 * pixel-space sampling as DDPMPipeline (a UNet2DModel without VAE and text
 * encoder: no prompt, the sample is the picture); and the x4 super-resolution
 * of StableDiffusionUpscalePipeline (settings.upscale).
 *
 *     sd_pipeline p;
 *     sd_pipeline_load(&p, &model, &err);                 // tokenizer, CLIP, U-Net, VAE
 *     uint8_t *rgb = malloc(3 * W * H);
 *     sd_pipeline_generate(&p, &settings, rgb, NULL, NULL, NULL, &err);
 *     sd_pipeline_free(&p);
 *
 * Order of random draws from torch.Generator().manual_seed(seed), as diffusers:
 *   txt2img: initial noise, then whatever the sampler draws per step;
 *   img2img: VAE posterior sample of the init image, then the added noise;
 *   inpaint (9-channel U-Net): [init-image posterior sample if strength < 1],
 *            initial noise, masked-image posterior sample;
 *   upscale: the low-res picture's noise (added at noise_level with the
 *            low_res_scheduler), then the latents (at the low-res size).
 * settings.rng picks the generator: torch's CPU one or CUDA's Philox.
 * Classifier-free guidance runs the U-Net on the batch [negative, prompt]
 * when cfg_scale > 1, else on the prompt alone. With A1111 prompt syntax (settings.prompt_syntax,
 * core/pipeline/conditioning.h) the context is 77 tokens per chunk; a prompt
 * and a negative prompt of different chunk counts each get their own context
 * length, as in A1111. Clip skip applies to the
 * prompt and the negative prompt (as AUTOMATIC1111 and stable-diffusion.cpp;
 * diffusers 0.27 applies it to the prompt only).
 *
 * SDXL: the context is cat(penultimate hidden states, without the final LayerNorm,
 * of text_encoder and text_encoder_2) [77, D1 + D2]; the pooled embedding is
 * text_encoder_2's final-LayerNorm state at the first <|endoftext|> times its
 * text_projection; no negative prompt (settings.negative NULL) with
 * force_zeros_for_empty_prompt gives zero negative context and pooled embedding;
 * add_time_ids come from the settings' size conditioning (sd_settings_time_ids).
 */
#ifndef SD_PIPELINE_H
#define SD_PIPELINE_H

#include <stdint.h>

#include "clip.h"
#include "err.h"
#include "group.h"
#include "model.h"
#include "settings.h"
#include "tokenizer.h"
#include "unet.h"
#include "vae.h"

typedef struct sd_pipeline {
    const sd_model *model; /* borrowed: must outlive the pipeline */
    tokenizer_bpe *tok;
    clip_text_model clip;
    tokenizer_bpe *tok2;   /* SDXL's second tokenizer and text encoder; NULL / zeroed otherwise */
    clip_text_model clip2;
    float *text_proj;      /* SDXL: text_encoder_2's projection [projection_dim, hidden], float32, owned */
    unet_model unet;
    vae_model vae;
    int pixel;             /* pixel-space model (UNet2DModel alone): no tokenizer, text encoder or VAE */
    const sd_group *group; /* borrowed; NULL: this process renders alone */
    int release_memory;    /* after each network's phase, free its activations and drop its mapped weights'
                              pages (read again from the page cache next image, ~0.4 s per GB): 1 always,
                              0 never, -1 (default) for images of 512x512 pixels or more, where the peak
                              memory is at stake and the cost under 1%. SDRENDER_RELEASE_MEMORY=0|1 sets it. */
} sd_pipeline;

/* Whether an image of W x H pixels releases each network's memory after its phase, for a
 * release_memory setting (1, 0, -1 auto; see sd_pipeline). sdrender bench follows the same rule. */
int sd_pipeline_releases_memory(int release_memory, int W, int H);

/* What image sides must be multiples of: the VAE's factor, or 2^(levels-1) of a pixel-space U-Net. */
int sd_pipeline_size_factor(const sd_pipeline *p);

/* What the GEMMs of all three networks compute in (OPS_PRECISION_FP32 after sd_pipeline_load). */
void sd_pipeline_set_precision(sd_pipeline *p, ops_precision precision);

/* Called after each U-Net evaluation (done of total); a non-zero return cancels the generation. */
typedef int (*sd_pipeline_step_fn)(void *ctx, int done, int total);

/* Optional copies of intermediate tensors (each NULL or big enough), for tests and debugging. */
typedef struct sd_pipeline_trace {
    int max_chunks;          /* prompt chunks the buffers below hold (0: 1); A1111 prompts may have several */
    int32_t *prompt_ids;     /* [max_chunks, 77]: token ids of the prompt */
    int32_t *negative_ids;   /* [max_chunks, 77] (with CFG) */
    float *prompt_multipliers;   /* [max_chunks, 77]: A1111 emphasis (1 for plain prompts) */
    float *negative_multipliers; /* [max_chunks, 77] (with CFG) */
    int n_prompt_chunks, n_negative_chunks; /* set: chunks of each (only max_chunks of them are copied) */
    float *prompt_embeds;    /* [max_chunks * 77, D] */
    float *negative_embeds;  /* [max_chunks * 77, D] (with CFG) */
    int32_t *prompt_ids_2;   /* SDXL: [77] ids of the second tokenizer */
    int32_t *negative_ids_2; /* [77] (with CFG and an encoded negative prompt) */
    float *pooled_prompt_embeds;          /* SDXL: [projection_dim] */
    float *negative_pooled_prompt_embeds; /* [projection_dim] (with CFG) */
    float *add_time_ids;     /* SDXL: [6] */
    double *all_timesteps;   /* [max_timesteps]: the sampler's whole schedule, one entry per evaluation */
    int max_timesteps;
    int n_all_timesteps;     /* set: entries of the schedule (img2img starts part-way into it) */
    float *encoder_mean;     /* [4, h, w]: VAE posterior of the init image (img2img, inpaint with strength < 1) */
    float *encoder_logvar;   /* [4, h, w] */
    float *encoder_noise;    /* [4, h, w]: the noise of its posterior sample */
    float *masked_image_encoder_noise; /* [4, h, w]: inpaint: the noise of the masked image's posterior sample */
    float *masked_image_latents;       /* [4, h, w]: inpaint: scaling_factor * that sample */
    float *unet_input_step0; /* [B, Cin, h, w]: the first U-Net input (CFG batch [uncond, cond], scaled) */
    float *latents_init;     /* [4, h, w]: the latent entering the loop */
    float *latents_steps;    /* [max_steps, 4, h, w]: after each evaluation */
    float *noise_pred_steps; /* [max_steps, 4, h, w]: guided model output of each evaluation */
    int max_steps;
    int n_steps;             /* set: evaluations run */
    float *latents_final;    /* [4, h, w] */
    float *low_res_noise;    /* [3, h, w]: upscale: the low-res picture's noise */
    float *noisy_low_res_image; /* [3, h, w]: upscale: the U-Net's extra input */
    float *image;            /* [H, W, 3]: clamp(x / 2 + 0.5, 0, 1) */
} sd_pipeline_trace;

/* Loads the tokenizer and every network of m; shapes are checked up front. A model without a VAE
 * or a text encoder (sd_model.parts) is refused, naming the missing part, unless it is a pixel-space
 * UNet2DModel with neither. */
int sd_pipeline_load(sd_pipeline *p, const sd_model *m, sd_error *err);
void sd_pipeline_free(sd_pipeline *p);

/*
 * The same for one rank of group g (group.h; g must outlive p): the U-Net
 * keeps only this rank's shards. Every rank of the group then calls
 * sd_pipeline_generate with the same settings; only the leader (g->rank 0)
 * fills rgb. Errors of any rank (reading inputs, cancelling) end the call
 * on every rank with that rank's message.
 */
int sd_pipeline_load_group(sd_pipeline *p, const sd_model *m, const sd_group *g, sd_error *err);

/*
 * Generates one image for s into rgb: [height, width, 3] u8. Reads the init
 * image and mask PNGs named in s. cb (may be NULL) sees every evaluation;
 * trace (may be NULL) receives intermediates. SD_EINPUT for bad settings or
 * unreadable pictures, SD_ECANCELED when cb cancelled.
 */
int sd_pipeline_generate(sd_pipeline *p, const sd_settings *s, uint8_t *rgb, sd_pipeline_step_fn cb, void *cb_ctx,
                      sd_pipeline_trace *trace, sd_error *err);

/* The checks sd_pipeline_generate starts with: s's ranges against the model's size factor, and what the
 * model's kind allows (no prompt for an unconditional model, upscales only with an upscaler). */
int sd_pipeline_check(const sd_pipeline *p, const sd_settings *s, sd_error *err);

/* Number of U-Net evaluations s will run (for progress displays). */
int sd_pipeline_count_evals(const sd_pipeline *p, const sd_settings *s, sd_error *err);

#endif
