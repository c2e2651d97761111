/*
 * enqueue.h - turns prompt files into job specs for jobdb_enqueue.
 *
 * Formats, chosen by the file's extension:
 *   .txt    one prompt per line; blank lines are skipped.
 *   .jsonl  one JSON object per line with any of the keys prompt (or caption),
 *           negative_prompt, seed, steps, cfg_scale, sampler, karras, width,
 *           height, clip_skip, init_image, mask, strength, task, rng,
 *           noise_level. Unknown keys, wrong types (steps: "20") and null are
 *           errors; blank lines are skipped.
 *   .csv    RFC 4180 with a header row naming the columns: prompt or caption,
 *           and optionally the other names above. Empty cells take the
 *           default. Other columns (image_id, ...) are ignored with a note.
 * A UTF-8 byte order mark at the start of a file is skipped.
 *
 * task: txt2img, img2img, inpaint (checked against the row's images; without
 * a task the images decide, as before), unconditional (no prompt: for a
 * pixel-space DDPM; stored with prompt ""), or upscale (init_image is the
 * low-res picture, at most 1024x1024; width/height become 4x its size;
 * noise_level 0..350, default 20). rng: cpu (torch's CPU generator) or cuda
 * (CUDA's Philox stream, A1111's NV).
 *
 * A field missing from a row takes the default from enqueue_options. Relative
 * init_image/mask paths are relative to the prompt file's folder and are
 * stored as absolute paths (the file must exist). Strength defaults to 0.8
 * for img2img and 1.0 for inpainting (a mask), as diffusers' pipelines do.
 * Karras applies by default only to rows whose sampler is sigma-based.
 *
 * A bad row is reported as "FILE:LINE: what is wrong" through the report
 * callback. Unless skip_bad is set, one bad row rejects its whole file: the
 * file's rows are taken out of the batch and enqueue_parse_file returns
 * SD_EINPUT. With skip_bad, bad rows are reported and left out.
 */
#ifndef SD_ENQUEUE_H
#define SD_ENQUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "job.h"

typedef void (*enqueue_report_fn)(void *ctx, const char *msg);

typedef struct enqueue_options {
    /* Defaults for fields a row does not give: negative_prompt (borrowed, may
     * be NULL), steps, cfg_scale, sampler, karras, width, height, clip_skip,
     * strength (0: 0.8, or 1.0 with a mask), rng. Other fields are ignored. */
    sd_job defaults;
    int skip_bad;            /* report bad rows and leave them out instead of rejecting the file */
    enqueue_report_fn report; /* bad rows and notes, one line each; may be NULL */
    void *report_ctx;
} enqueue_options;

/* The project's defaults: 20 steps, cfg 7.5, pndm, 512x512, clip_skip 1. */
void enqueue_options_init(enqueue_options *o);

/* Job specs read so far, in file order (seed = -1 where the row has none). */
typedef struct enqueue_batch {
    sd_job *jobs;
    size_t n, cap;
    size_t bad; /* bad rows seen (skipped or rejecting) */
} enqueue_batch;

/* Appends the rows of one file to b. Returns 0, SD_EINPUT when the file has
 * bad rows and skip_bad is off (err: the first bad row and how many more), or
 * another error when the file cannot be read or its format is unknown. */
int enqueue_parse_file(const char *path, const enqueue_options *o, enqueue_batch *b, sd_error *err);
void enqueue_batch_free(enqueue_batch *b);

#endif
