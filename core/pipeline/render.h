/*
 * render.h - one image from settings to a PNG file: the unit of work of both
 * `sdrender generate` and the batch workers, so both write identical bytes.
 *
 * The PNG carries the AUTOMATIC1111 `parameters` text (prompt, negative
 * prompt, steps, sampler, CFG scale, seed, size, model hash and name) and is
 * written atomically (temporary file, fsync, rename).
 */
#ifndef SD_RENDER_H
#define SD_RENDER_H

#include "err.h"
#include "model.h"
#include "pipeline.h"
#include "settings.h"

/* Identifies the model in PNG metadata: first 10 hex digits of its SHA-256, and its name. */
typedef struct sd_render_id {
    char hash[65];  /* full SHA-256 hex of the checkpoint (diffusers: of the U-Net weights file) */
    char name[256]; /* file or folder name without extension */
} sd_render_id;

/*
 * Hashes the model's main weight file. The result is cached per file (path,
 * size, modification time) in $SDRENDER_CACHE or $XDG_CACHE_HOME/sdrender or
 * ~/.cache/sdrender, so a 4 GB checkpoint is read once, not per run.
 */
int sd_render_identify(const sd_model *m, sd_render_id *id, sd_error *err);
/* Only the name part (cheap), leaving id->hash as it is. */
void sd_render_identify_name(const sd_model *m, sd_render_id *id);

/* Generates s and writes it to out_path; sha256 gets the PNG file's hash. In a group (p->group),
 * every rank calls it and only the leader writes (members get sha256 ""). */
int sd_render_png(sd_pipeline *p, const sd_settings *s, const sd_render_id *id, const char *out_path, sd_pipeline_step_fn cb,
                  void *cb_ctx, char sha256[65], sd_error *err);

/*
 * 1 when out_path already holds the image of s (a PNG whose parameters text is
 * exactly what sd_render_png would write), filling sha256; else 0. Lets a
 * rerun skip work that a crash interrupted after the file was written.
 */
int sd_render_exists(const sd_settings *s, const sd_render_id *id, const char *out_path, char sha256[65]);

#endif
