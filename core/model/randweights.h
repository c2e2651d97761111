/*
 * randweights.h - deterministic random weights for any network, made on
 * demand: attach a generator to an empty sd_weights table and every loader
 * (clip_text_load, unet_load, vae_load) gets each tensor it asks for, with
 * the shape it expects. Used by `sdrender bench` (full SD 1.5 without a
 * checkpoint) and `sdrender init-model --tiny` (which then saves them).
 *
 * Values are F16: uniform in +-sqrt(3 / fan_in) for matrices and kernels,
 * 1 +- 0.02 for norm scales, +-0.02 for biases, seeded by the tensor's name
 * (independent of load order and thread count).
 */
#ifndef SD_RANDWEIGHTS_H
#define SD_RANDWEIGHTS_H

#include <stddef.h>

#include "err.h"
#include "weights.h"

typedef struct sd_rand_weights {
    sd_tensor **items; /* every tensor made, in request order */
    int n, cap;
    size_t bytes;
    unsigned long long seed; /* mixed into every tensor's seed */
    float gain;              /* scales the matrices' and kernels' range; 0 means 1 (sqrt(2): He's, for ReLU nets) */
} sd_rand_weights;

/* Makes *w an empty table (labelled label) whose missing tensors rw supplies. */
int sd_rand_weights_attach(sd_rand_weights *rw, sd_weights *w, const char *label, sd_error *err);
/* Frees every tensor made (the tables that saw them must not be used afterwards). */
void sd_rand_weights_free(sd_rand_weights *rw);

#endif
