/*
 * job.h - one row of the job table: what to render and how far it got.
 *
 * Plain data. Every char * is owned by the struct (NULL or a malloc'ed
 * NUL-terminated UTF-8 string) and released by sd_job_free(); copy a job with
 * sd_job_copy(). A zeroed struct is an empty job.
 *
 * Conventions:
 *   - seed is the torch.manual_seed value, fixed when the job is enqueued, so
 *     a job renders the same image on any rank, in any order, in any rerun.
 *     In a job *spec* given to jobdb_enqueue, seed = -1 means "derive it":
 *     seed = seed_base + id - 1 (see jobdb.h).
 *   - clip_skip follows AUTOMATIC1111: 1 = the last text-encoder layer (no
 *     skip), 2 = the penultimate layer (diffusers clip_skip = clip_skip - 1).
 *   - negative_prompt "" means none: SD 1.x/2.x encode "", SDXL uses zeros (as A1111 and
 *     diffusers without a negative prompt).
 *   - init_image / mask are absolute paths; strength is in (0, 1] when
 *     init_image is set (and not an upscale) and 0 otherwise. A mask implies an
 *     inpainting job.
 *   - an upscale job's width/height are its output size: 4x its init_image.
 *   - times are Unix seconds (UTC); 0 means "not yet".
 */
#ifndef SD_JOB_H
#define SD_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "sampler.h"
#include "settings.h"

typedef enum sd_job_status {
    SD_JOB_PENDING = 0, /* waiting to be claimed */
    SD_JOB_RUNNING,     /* claimed by a run; being rendered */
    SD_JOB_DONE,        /* image written; terminal */
    SD_JOB_FAILED,      /* gave up after max attempts; terminal */
} sd_job_status;

typedef struct sd_job {
    int64_t id; /* 1, 2, 3, ... in enqueue order */

    /* What to render: fixed at enqueue. */
    char *prompt;          /* "" only for an unconditional model (a pixel-space DDPM takes no prompt) */
    char *negative_prompt; /* "" for none */
    int64_t seed;          /* >= 0 */
    int steps;             /* 1..1000 */
    double cfg_scale;      /* classifier-free guidance scale */
    sampler_kind sampler;
    int karras;            /* Karras sigmas (only with a sigma-based sampler) */
    int width, height;     /* pixels, multiples of 8 */
    int clip_skip;         /* 1 = last layer (A1111 convention) */
    char *init_image;      /* NULL: text-to-image */
    char *mask;            /* NULL: no inpainting */
    double strength;       /* img2img strength in (0, 1]; 0 without init_image */
    int orig_width, orig_height;     /* SDXL size conditioning (sd_settings); 0 = the image size */
    int crop_top, crop_left;         /* 0 = no crop */
    int target_width, target_height; /* 0 = the image size */
    char *source;          /* "prompts.csv:17": the input row, for messages */
    int upscale;           /* task upscale: x4 super-resolution of init_image (width, height: the output) */
    int noise_level;       /* upscale: 0..350; 0 otherwise */
    sd_rng_kind rng;       /* noise source: SD_RNG_CPU, or SD_RNG_CUDA (A1111 "NV") */
    sd_prompt_syntax prompt_syntax; /* plain (diffusers) or a1111 */
    char *loras;           /* explicit LoRAs, "FILE:MULTIPLIER" per line (absolute paths); NULL: none */
    char *lora_dir;        /* folder of the prompt's <lora:NAME:M> tags (absolute); NULL: none */
    char *lora_set;        /* set by jobdb: the whole LoRA set, "name:0.8, other:0.5" ("" or NULL: none) */

    /* Where it is: changed by the runs. */
    sd_job_status status;
    int attempts;          /* failed or interrupted attempts so far */
    int64_t run_id;        /* run of the latest claim; 0 = never claimed */
    char *claimed_by;      /* "host:rank" of the latest claim; NULL = never */
    double enqueued_at, claimed_at, finished_at;
    char *output_path;     /* the PNG, once done */
    char png_sha256[65];   /* its SHA-256 in lowercase hex, once done; "" before */
    double render_seconds;
    char *error;           /* latest error text; NULL = none */
} sd_job;

/* The limits a job spec must meet are the renderer's (SD_MAX_* in core/pipeline/settings.h). */

/* The LoRA set of job j: its loras, then (A1111 syntax) its prompt's tags (core/pipeline/lora_set.h). */
struct sd_lora_set;
int sd_job_lora_set(const sd_job *j, struct sd_lora_set *set, sd_error *err);
/* The set's label as status shows it (caller frees; "" for none). */
int sd_job_lora_label(const sd_job *j, char **label, sd_error *err);

/* The settings job j renders with (strings borrowed from j). */
void sd_job_settings(const sd_job *j, sd_settings *s);

/* Checks the "what to render" fields of a spec (seed may be -1). On failure
 * err says what is wrong without a location, e.g. "steps must be in 1..1000,
 * got 0"; the caller prefixes FILE:LINE. */
int sd_job_spec_check(const sd_job *j, sd_error *err);
/* 1 if s[0..n) is well-formed UTF-8 (no overlong forms, surrogates or NUL bytes). */
int sd_job_utf8_valid(const char *s, size_t n);

/* Frees the owned strings and zeroes the struct (safe on a zeroed job). */
void sd_job_free(sd_job *j);
/* Deep copy of src into dst (dst is overwritten, not freed first). */
int sd_job_copy(sd_job *dst, const sd_job *src, sd_error *err);

/* "pending", "running", "done", "failed". */
const char *sd_job_status_name(sd_job_status s);
/* Inverse of sd_job_status_name; -1 when unknown. */
int sd_job_status_parse(const char *name, sd_job_status *out);

#endif
