/* shard.c - row views and column copies of weight tensors (see shard.h). */
#include "shard.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mapfile.h"

/* A new tensor struct (a copy of t's description) owned by s, with `copy` (may be NULL) owned too. */
static sd_tensor *store_add(shard_store *s, const sd_tensor *t, void *copy, sd_error *err) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        sd_tensor **nt = realloc(s->tensors, (size_t)cap * sizeof *nt);
        if (nt) s->tensors = nt;
        void **nc = nt ? realloc(s->copies, (size_t)cap * sizeof *nc) : NULL;
        if (nc) s->copies = nc;
        const sd_tensor **ns = nc ? realloc(s->sources, (size_t)cap * sizeof *ns) : NULL;
        if (ns) s->sources = ns;
        if (!nt || !nc || !ns) {
            free(copy);
            sd_err(err, SD_ENOMEM, "out of memory sharding %s", t->name);
            return NULL;
        }
        s->cap = cap;
    }
    sd_tensor *x = malloc(sizeof *x);
    if (!x) {
        free(copy);
        sd_err(err, SD_ENOMEM, "out of memory sharding %s", t->name);
        return NULL;
    }
    *x = *t;
    s->tensors[s->n] = x;
    s->copies[s->n] = copy;
    s->sources[s->n] = t;
    s->n++;
    return x;
}

/* Bytes of one index of t's first axis. */
static size_t row_bytes(const sd_tensor *t) {
    return t->shape[0] ? t->nbytes / (size_t)t->shape[0] : 0;
}

static int check_range(const sd_tensor *t, int axis, int64_t lo, int64_t hi, sd_error *err) {
    if (t->ndim <= axis || lo < 0 || hi <= lo || hi > t->shape[axis])
        return sd_err(err, SD_EINTERNAL, "shard of %s: range [%lld, %lld) of axis %d is out of its shape", t->name,
                      (long long)lo, (long long)hi, axis);
    return 0;
}

int shard_rows(shard_store *s, const sd_tensor *t, int64_t r0, int64_t r1, const sd_tensor **out, sd_error *err) {
    int rc = check_range(t, 0, r0, r1, err);
    if (rc < 0) return rc;
    sd_tensor *x = store_add(s, t, NULL, err);
    if (!x) return err ? err->code : SD_ENOMEM;
    x->shape[0] = r1 - r0;
    x->data = (const char *)t->data + (size_t)r0 * row_bytes(t);
    x->nbytes = (size_t)(r1 - r0) * row_bytes(t);
    *out = x;
    return 0;
}

int shard_rows2(shard_store *s, const sd_tensor *t, int64_t a0, int64_t a1, int64_t b0, int64_t b1,
                const sd_tensor **out, sd_error *err) {
    int rc = check_range(t, 0, a0, a1, err);
    if (rc == 0) rc = check_range(t, 0, b0, b1, err);
    if (rc < 0) return rc;
    size_t rb = row_bytes(t), na = (size_t)(a1 - a0) * rb, nb = (size_t)(b1 - b0) * rb;
    char *copy = malloc(na + nb ? na + nb : 1);
    if (!copy) return sd_err(err, SD_ENOMEM, "out of memory sharding %s", t->name);
    memcpy(copy, (const char *)t->data + (size_t)a0 * rb, na);
    memcpy(copy + na, (const char *)t->data + (size_t)b0 * rb, nb);
    sd_tensor *x = store_add(s, t, copy, err);
    if (!x) return err ? err->code : SD_ENOMEM;
    x->shape[0] = (a1 - a0) + (b1 - b0);
    x->data = copy;
    x->nbytes = na + nb;
    s->copied_bytes += na + nb;
    *out = x;
    return 0;
}

int shard_cols(shard_store *s, const sd_tensor *t, int64_t c0, int64_t c1, const sd_tensor **out, sd_error *err) {
    int rc = check_range(t, 1, c0, c1, err);
    if (rc < 0) return rc;
    size_t inner = row_bytes(t) / (size_t)t->shape[1]; /* bytes per index of axis 1 */
    size_t take = (size_t)(c1 - c0) * inner, rows = (size_t)t->shape[0];
    char *copy = malloc(rows * take > 0 ? rows * take : 1);
    if (!copy) return sd_err(err, SD_ENOMEM, "out of memory sharding %s", t->name);
    for (size_t r = 0; r < rows; r++)
        memcpy(copy + r * take, (const char *)t->data + r * row_bytes(t) + (size_t)c0 * inner, take);
    sd_tensor *x = store_add(s, t, copy, err);
    if (!x) return err ? err->code : SD_ENOMEM;
    x->shape[1] = c1 - c0;
    x->data = copy;
    x->nbytes = rows * take;
    s->copied_bytes += rows * take;
    *out = x;
    return 0;
}

/* The whole pages of [lo, hi) leave memory (nothing reads them again); the bytes released. */
static size_t release_range(uintptr_t lo, uintptr_t hi) { return hi > lo ? sd_map_release((const void *)lo, hi - lo) : 0; }

size_t shard_store_release_sources(shard_store *s) {
    size_t released = 0;
    for (int i = 0; i < s->n; i++) {
        const sd_tensor *src = s->sources[i], *x = s->tensors[i];
        uintptr_t lo = (uintptr_t)src->data, hi = lo + src->nbytes;
        if (s->copies[i]) {
            released += release_range(lo, hi);
        } else { /* a view: keep its rows */
            uintptr_t v0 = (uintptr_t)x->data, v1 = v0 + x->nbytes;
            released += release_range(lo, v0) + release_range(v1, hi);
        }
    }
    return released;
}

void shard_store_free(shard_store *s) {
    for (int i = 0; i < s->n; i++) {
        free(s->copies[i]);
        free(s->tensors[i]);
    }
    free(s->tensors);
    free(s->copies);
    free(s->sources);
    memset(s, 0, sizeof *s);
}
