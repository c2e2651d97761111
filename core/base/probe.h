/*
 * probe.h - an optional look at a network's intermediate activations.
 *
 * Networks (CLIP, U-Net, VAE) call sd_probe_emit at fixed points with names
 * that match the reference dumps ("down_blocks.0", "hidden_states.layer1").
 * With no probe set this is one pointer test; tests and debugging tools set
 * one to compare or save tensors. The data is valid only during the call.
 */
#ifndef SD_PROBE_H
#define SD_PROBE_H

#include <stdint.h>

typedef struct sd_probe {
    void (*fn)(void *user, const char *name, const float *x, int ndim, const int64_t *shape);
    void *user;
} sd_probe;

static inline void sd_probe_emit(const sd_probe *p, const char *name, const float *x, int ndim,
                                 const int64_t *shape) {
    if (p && p->fn) p->fn(p->user, name, x, ndim, shape);
}

#endif
