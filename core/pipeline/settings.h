/*
 * settings.h - everything that decides one generated image, and its
 * AUTOMATIC1111-style text form (the PNG `parameters` chunk).
 *
 * The same settings give the same image on any machine: the seed feeds the
 * torch-compatible generator (core/base/rng.h) exactly as diffusers does.
 */
#ifndef SD_SETTINGS_H
#define SD_SETTINGS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "rng.h"
#include "sampler.h"

#define SD_SEED_MAX INT64_MAX
#define SD_MAX_STEPS 1000
#define SD_MAX_CFG 100.0
#define SD_MAX_SIDE 8192
#define SD_MAX_CLIP_SKIP 12
#define SD_MAX_NOISE_LEVEL 350 /* the x4 upscaler's max_noise_level */

/* How prompt text is read: as diffusers (plain, 77 tokens) or as AUTOMATIC1111 (weights, chunks, BREAK, tags). */
typedef enum sd_prompt_syntax { SD_PROMPT_PLAIN = 0, SD_PROMPT_A1111 = 1 } sd_prompt_syntax;

/* "plain" / "a1111"; parse returns -1 for anything else. */
const char *sd_prompt_syntax_name(sd_prompt_syntax s);
int sd_prompt_syntax_parse(const char *name, sd_prompt_syntax *out);

typedef struct sd_settings {
    const char *prompt;     /* borrowed; UTF-8 */
    const char *negative;   /* borrowed; "" = empty negative prompt; NULL = none given (the same for SD 1.x/2.x;
                               SDXL with force_zeros_for_empty_prompt then uses zeros, as diffusers) */
    int steps;              /* inference steps (1..1000) */
    float cfg_scale;        /* classifier-free guidance; <= 1 runs the conditional branch only */
    sampler_kind sampler;
    int karras;             /* Karras sigmas (sigma-based samplers only) */
    float eta;              /* DDIM eta */
    int64_t seed;           /* 0..SD_SEED_MAX */
    int width, height;      /* pixels, multiples of the model's vae_scale_factor (8 for SD) */
    int clip_skip;          /* 1 = last layer; 2 = penultimate (A1111 numbering) */
    const char *init_image; /* img2img / inpaint input PNG, or NULL */
    const char *mask;       /* inpaint mask PNG (white = repaint), or NULL */
    double strength;        /* img2img strength in (0, 1]; double: 10 * 0.7f would truncate to 6 steps */
    /* SDXL's size conditioning (add_time_ids); 0 = diffusers' default: the image size, crop 0, 0 */
    int orig_width, orig_height;     /* --original-size */
    int crop_top, crop_left;         /* --crop-top-left */
    int target_width, target_height; /* --target-size */
    sd_rng_kind rng;        /* noise source: torch's CPU generator (default) or CUDA's Philox (A1111 "NV") */
    int upscale;            /* 1: x4 super-resolution of init_image (width, height = 4x its size) */
    int noise_level;        /* upscale: noise added to the low-res picture, 0..SD_MAX_NOISE_LEVEL (default 20) */
    sd_prompt_syntax prompt_syntax; /* SD_PROMPT_PLAIN (default) or SD_PROMPT_A1111 */
    int bf16;               /* 1: the networks' matrix products on bf16 inputs with fp32 sums (--precision bf16;
                               "Precision: bf16" in the parameters text); 0: fp32 */
    const char *lora_hashes; /* A1111's "Lora hashes" value ("name: 0123456789ab, ..."), or NULL; the LoRAs
                                themselves are merged into the model by the caller (core/pipeline/lora_set.h) */
} sd_settings;

#define SD_MAX_COND_SIZE 65536 /* largest original/target size and crop offset accepted */

/* SDXL's add_time_ids of s: [original h, w, crop top, left, target h, w], defaults filled in. */
void sd_settings_time_ids(const sd_settings *s, float ids[6]);

/* SD 1.5-style defaults: 20 steps, CFG 7.5, PNDM, 512x512, seed 0, clip skip 1, strength 0.8,
 * CPU noise, noise level 20. */
void sd_settings_default(sd_settings *s);

/* Checks ranges (width and height positive multiples of vae_scale, the model's vae_scale_factor;
 * steps 1..1000, karras only with sigma samplers...); the message names the offending setting. */
int sd_settings_check_for(const sd_settings *s, int vae_scale, sd_error *err);

/* The same before a model is chosen (job specs at enqueue): sizes multiples of SD's VAE scale factor
 * (sd_settings_sd_vae_scale); rendering checks them again against the model's own. */
int sd_settings_check(const sd_settings *s, sd_error *err);

/* vae_scale_factor of SD 1.x/2.x's VAE (8). */
int sd_settings_sd_vae_scale(void);

/*
 * The AUTOMATIC1111 `parameters` text:
 *   <prompt>
 *   Negative prompt: <negative>            (omitted when empty)
 *   Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 512x512, Model hash: 6ce0161689, Model: name
 * plus "Denoising strength" for img2img/inpaint, "Clip skip" when > 1, SDXL's "Original size",
 * "Crop top", "Crop left", "Target size" when set (not 0), "RNG: NV" for CUDA noise (as A1111 writes
 * its NV source), "Noise level: N" for an upscale and "Lora hashes" when set. Values containing
 * ',', ':' or a newline are JSON-quoted, as A1111 does. model_hash/model_name may be NULL.
 * Returns a new string (caller frees) or NULL when out of memory.
 */
char *sd_settings_format_a1111(const sd_settings *s, const char *model_hash, const char *model_name);

/* Parsed A1111 text: the settings plus owned copies of the strings they point to (negative is "" and
 * s.negative NULL when the text has no "Negative prompt:" line). */
typedef struct sd_settings_parsed {
    sd_settings s;
    char *prompt, *negative;
    char model_hash[65];
    char *model_name;
    char *lora_hashes;
} sd_settings_parsed;

/* Parses the text produced above (and A1111's own). Unknown keys are ignored. */
int sd_settings_parse_a1111(const char *text, sd_settings_parsed *out, sd_error *err);
void sd_settings_parsed_free(sd_settings_parsed *p);

#endif
