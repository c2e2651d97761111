/*
 * tinymodel.h - a small SD 1.x-architecture model made from nothing, for
 * demos and smoke tests on machines without a real checkpoint: the diffusers
 * folder layout, deterministic random F16 weights, and a byte-level BPE
 * vocabulary learned from a text of the project's own. Its images are noise
 * with structure, not pictures; every command that takes a real checkpoint
 * takes this folder the same way.
 */
#ifndef SD_TINYMODEL_H
#define SD_TINYMODEL_H

#include "err.h"

/* Writes the model into dir (created; existing model files are replaced). */
int sd_tiny_model_write(const char *dir, sd_error *err);

typedef enum { SD_RANDOM_TINY, SD_RANDOM_SD15 } sd_random_arch;

/* The same with SD 1.5's full architecture for SD_RANDOM_SD15 (1.07 B parameters, 2.1 GB of F16
 * weights): to time and measure generate, run and bench -m at full size without a checkpoint. */
int sd_random_model_write(const char *dir, sd_random_arch arch, sd_error *err);

#endif
