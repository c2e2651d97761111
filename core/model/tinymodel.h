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

#endif
