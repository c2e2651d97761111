/*
 * pickletest.h - a tiny assembler of pickle streams and PyTorch zip
 * checkpoints for tests (tensors rebuilt by torch._utils._rebuild_tensor_v2
 * from persistent storage ids), so tests can write .pth files, broken ones
 * included, without Python. Needs cmocka (testutil.h) and ziptest.h.
 */
#ifndef SD_PICKLETEST_H
#define SD_PICKLETEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ziptest.h"

typedef struct pb {
    unsigned char *b;
    size_t n, cap;
} pb;

static inline void pb_put(pb *p, const void *d, size_t n) {
    if (p->n + n > p->cap) {
        p->cap = (p->n + n) * 2 + 256;
        p->b = realloc(p->b, p->cap);
        assert_non_null(p->b);
    }
    memcpy(p->b + p->n, d, n);
    p->n += n;
}
static inline void pb_op(pb *p, int op) {
    unsigned char c = (unsigned char)op;
    pb_put(p, &c, 1);
}
static inline void pb_proto(pb *p) {
    pb_op(p, 0x80);
    pb_op(p, 2);
}
static inline void pb_str(pb *p, const char *s) { /* BINUNICODE */
    uint32_t n = (uint32_t)strlen(s);
    unsigned char l[4] = {(unsigned char)n, (unsigned char)(n >> 8), (unsigned char)(n >> 16), (unsigned char)(n >> 24)};
    pb_op(p, 'X');
    pb_put(p, l, 4);
    pb_put(p, s, n);
}
static inline void pb_int(pb *p, int32_t v) { /* BININT */
    uint32_t u = (uint32_t)v;
    unsigned char l[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16), (unsigned char)(u >> 24)};
    pb_op(p, 'J');
    pb_put(p, l, 4);
}
static inline void pb_global(pb *p, const char *mod, const char *name) {
    pb_op(p, 'c');
    pb_put(p, mod, strlen(mod));
    pb_op(p, '\n');
    pb_put(p, name, strlen(name));
    pb_op(p, '\n');
}
static inline void pb_ints(pb *p, int n, const int64_t *v) { /* a tuple of ints */
    pb_op(p, '(');
    for (int i = 0; i < n; i++) pb_int(p, (int32_t)v[i]);
    pb_op(p, 't');
}
/* _rebuild_tensor_v2(('storage', torch.<stype>, key, 'cpu', numel), offset, shape, stride, False, OrderedDict()) */
static inline void pb_tensor2(pb *p, const char *stype, const char *key, int numel, int offset, int nsize,
                       const int64_t *shape, int nstride, const int64_t *stride) {
    pb_global(p, "torch._utils", "_rebuild_tensor_v2");
    pb_op(p, '(');
    pb_op(p, '(');
    pb_str(p, "storage");
    pb_global(p, "torch", stype);
    pb_str(p, key);
    pb_str(p, "cpu");
    pb_int(p, numel);
    pb_op(p, 't');
    pb_op(p, 'Q');
    pb_int(p, offset);
    pb_ints(p, nsize, shape);
    pb_ints(p, nstride, stride);
    pb_op(p, 0x89);
    pb_global(p, "collections", "OrderedDict");
    pb_op(p, ')');
    pb_op(p, 'R');
    pb_op(p, 't');
    pb_op(p, 'R');
}
static inline void pb_tensor(pb *p, const char *stype, const char *key, int numel, int offset, int ndim, const int64_t *shape,
                      const int64_t *stride) {
    pb_tensor2(p, stype, key, numel, offset, ndim, shape, ndim, stride);
}

/* A zip checkpoint "archive/data.pkl" + members "archive/data/<key>" (stored unless deflate). */
static inline void write_ckpt(const char *path, const pb *pkl, int nst, const char *const *keys, const void *const *data,
                       const size_t *len, int deflate) {
    tzip z = {0};
    tz_add(&z, "archive/data.pkl", pkl->b, pkl->n, 0);
    for (int i = 0; i < nst; i++) {
        char name[300];
        snprintf(name, sizeof name, "archive/data/%s", keys[i]);
        tz_add(&z, name, data[i], len[i], deflate);
    }
    tz_add(&z, "archive/version", "3\n", 2, 0);
    tz_finish(&z);
    tz_write(&z, path, z.n);
    tz_free(&z);
}

#endif
