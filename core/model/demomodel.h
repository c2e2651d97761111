/*
 * demomodel.h - the demo model that ships inside the binary: a small SD 1.x
 * trained from scratch by scripts/train-demo-model.py on the pictures of
 * `sdrender shapes` (64x64, "a small red circle at the top left on a blue
 * background"). Its files live in scripts/demo-model/ (a diffusers folder, fp16);
 * the Makefile embeds them (scripts/embed-files.sh -> build/gen/demo_model.c).
 */
#ifndef SD_DEMOMODEL_H
#define SD_DEMOMODEL_H

#include "err.h"

typedef struct sd_embedded_file {
    const char *path;             /* relative to the model folder: "unet/config.json" */
    const unsigned char *start;   /* its bytes */
    const unsigned char *end;
} sd_embedded_file;

extern const sd_embedded_file sd_demo_model_files[];
extern const int sd_demo_model_file_count;

/* Writes the demo model into dir as a diffusers folder (created; its model files are replaced,
 * each atomically). */
int sd_demo_model_write(const char *dir, sd_error *err);

#endif
