#include "randweights.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

static uint64_t hash_name(const char *s, uint64_t seed) {
    uint64_t h = 1469598103934665603ULL ^ seed; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h ? h : 1;
}

/* One tensor's memory: the view, its name and its data in one allocation. */
static sd_tensor *new_tensor(const char *name, int ndim, const int64_t *shape, size_t n) {
    size_t nl = strlen(name) + 1;
    sd_tensor *t = malloc(sizeof *t + nl + n * sizeof(uint16_t) + 2);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    char *nm = (char *)(t + 1);
    memcpy(nm, name, nl);
    uintptr_t d = ((uintptr_t)(nm + nl) + 1) & ~(uintptr_t)1; /* 2-byte aligned data */
    t->name = nm;
    t->dtype = SD_F16;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->data = (void *)d;
    t->nbytes = n * sizeof(uint16_t);
    return t;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int supply(void *ctx, const char *name, int ndim, const int64_t *shape, const sd_tensor **out, sd_error *err) {
    sd_rand_weights *rw = ctx;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    if (rw->n == rw->cap) {
        int cap = rw->cap ? 2 * rw->cap : 1024;
        sd_tensor **items = realloc(rw->items, (size_t)cap * sizeof *items);
        if (!items) return sd_err(err, SD_ENOMEM, "out of memory making random weights");
        rw->items = items;
        rw->cap = cap;
    }
    sd_tensor *t = new_tensor(name, ndim, shape, n);
    if (!t) return sd_err(err, SD_ENOMEM, "out of memory making random weight '%s' (%zu values)", name, n);
    uint16_t *data = (uint16_t *)t->data;
    /* norm scales, and BatchNorm's scale and running variance (a random Inception), sit near 1 */
    int is_norm_scale = ndim == 1 && ((strstr(name, "norm") && strstr(name, ".weight")) || ends_with(name, "bn.weight") ||
                                      ends_with(name, "running_var"));
    float center = is_norm_scale ? 1.0f : 0.0f;
    float amp = ndim >= 2 ? (rw->gain > 0 ? rw->gain : 1.0f) * sqrtf(3.0f * (float)shape[0] / (float)n) : 0.02f;
    /* 4096 evenly spaced f16 levels, picked by a xorshift stream (fast for 860M values) */
    uint16_t levels[4096];
    for (int i = 0; i < 4096; i++) levels[i] = sd_dtype_f32_to_f16(center + amp * ((float)i / 2047.5f - 1.0f));
    uint64_t seed = hash_name(name, rw->seed);
    const size_t chunk = 1u << 16;
    const long long nchunks = (long long)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) num_threads(ops_get_threads())
    for (long long ci = 0; ci < nchunks; ci++) {
        size_t c0 = (size_t)ci * chunk, end = c0 + chunk < n ? c0 + chunk : n;
        uint64_t s = seed ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(ci + 1));
        for (size_t i = c0; i < end; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            data[i] = levels[s >> 52];
        }
    }
    rw->items[rw->n++] = t;
    rw->bytes += n * sizeof(uint16_t);
    *out = t;
    return 0;
}

int sd_rand_weights_attach(sd_rand_weights *rw, sd_weights *w, const char *label, sd_error *err) {
    int rc = sd_weights_from_list(w, NULL, NULL, 0, label, err);
    if (rc < 0) return rc;
    w->supply = supply;
    w->supply_ctx = rw;
    return 0;
}

void sd_rand_weights_free(sd_rand_weights *rw) {
    for (int i = 0; i < rw->n; i++) free(rw->items[i]);
    free(rw->items);
    memset(rw, 0, sizeof *rw);
}
