/*
 * ziptest.h - a tiny ZIP builder for tests (stored or deflated members), so
 * tests can craft archives, including broken ones, without Python. It is
 * independent of core/formats/zipread.c on purpose: a reader bug is not mirrored by
 * the writer that made its test input.
 */
#ifndef SD_ZIPTEST_H
#define SD_ZIPTEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct tz_entry {
    char name[256];
    uint32_t crc;
    uint32_t csize, size, off;
    int method;
    int zip64_central; /* write 0xFFFFFFFF sizes and a ZIP64 extra field in the central directory */
} tz_entry;

typedef struct tzip {
    unsigned char *b;
    size_t n, cap;
    tz_entry e[128];
    int ne;
    size_t cd_off, cd_size;
} tzip;

static inline void tz_put(tzip *z, const void *p, size_t n) {
    if (z->n + n > z->cap) {
        z->cap = (z->n + n) * 2 + 1024;
        z->b = realloc(z->b, z->cap);
        if (!z->b) abort();
    }
    memcpy(z->b + z->n, p, n);
    z->n += n;
}

static inline void tz_u16(tzip *z, unsigned v) {
    unsigned char b[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
    tz_put(z, b, 2);
}

static inline void tz_u32(tzip *z, uint32_t v) {
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    tz_put(z, b, 4);
}

/*
 * Adds a member; compress != 0 compresses it with raw deflate (method 8).
 * zip64 != 0 writes the sizes as 0xFFFFFFFF plus a ZIP64 extra field in the
 * local header and the central directory, the way np.savez (force_zip64) and
 * large PyTorch files do.
 */
static inline void tz_add64(tzip *z, const char *name, const void *data, size_t len, int compress, int zip64) {
    tz_entry *e = &z->e[z->ne++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->crc = (uint32_t)crc32(0L, data, (uInt)len);
    e->size = (uint32_t)len;
    e->method = compress ? 8 : 0;
    e->off = (uint32_t)z->n;
    unsigned char *payload = (unsigned char *)data;
    size_t plen = len;
    unsigned char *tmp = NULL;
    if (compress) {
        z_stream s;
        memset(&s, 0, sizeof s);
        if (deflateInit2(&s, 9, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
        size_t cap = deflateBound(&s, (uLong)len) + 16;
        tmp = malloc(cap);
        s.next_in = (Bytef *)data;
        s.avail_in = (uInt)len;
        s.next_out = tmp;
        s.avail_out = (uInt)cap;
        if (deflate(&s, Z_FINISH) != Z_STREAM_END) abort();
        plen = s.total_out;
        deflateEnd(&s);
        payload = tmp;
    }
    e->csize = (uint32_t)plen;
    e->zip64_central = zip64;
    tz_u32(z, 0x04034b50u);
    tz_u16(z, zip64 ? 45 : 20);
    tz_u16(z, 0);
    tz_u16(z, (unsigned)e->method);
    tz_u16(z, 0);
    tz_u16(z, 0x21);
    tz_u32(z, e->crc);
    tz_u32(z, zip64 ? 0xFFFFFFFFu : e->csize);
    tz_u32(z, zip64 ? 0xFFFFFFFFu : e->size);
    tz_u16(z, (unsigned)strlen(name));
    tz_u16(z, zip64 ? 20 : 0);
    tz_put(z, name, strlen(name));
    if (zip64) {
        tz_u16(z, 1);
        tz_u16(z, 16);
        tz_u32(z, e->size);
        tz_u32(z, 0);
        tz_u32(z, e->csize);
        tz_u32(z, 0);
    }
    tz_put(z, payload, plen);
    free(tmp);
}

static inline void tz_add(tzip *z, const char *name, const void *data, size_t len, int compress) {
    tz_add64(z, name, data, len, compress, 0);
}

/* Writes the central directory and the end record. */
static inline void tz_finish(tzip *z) {
    z->cd_off = z->n;
    for (int i = 0; i < z->ne; i++) {
        tz_entry *e = &z->e[i];
        tz_u32(z, 0x02014b50u);
        tz_u16(z, 20);
        tz_u16(z, 20);
        tz_u16(z, 0);
        tz_u16(z, (unsigned)e->method);
        tz_u16(z, 0);
        tz_u16(z, 0x21);
        tz_u32(z, e->crc);
        tz_u32(z, e->zip64_central ? 0xFFFFFFFFu : e->csize);
        tz_u32(z, e->zip64_central ? 0xFFFFFFFFu : e->size);
        tz_u16(z, (unsigned)strlen(e->name));
        tz_u16(z, e->zip64_central ? 20 : 0);
        tz_u16(z, 0);
        tz_u16(z, 0);
        tz_u16(z, 0);
        tz_u32(z, 0);
        tz_u32(z, e->off);
        tz_put(z, e->name, strlen(e->name));
        if (e->zip64_central) { /* order: uncompressed size, then compressed size */
            tz_u16(z, 1);
            tz_u16(z, 16);
            tz_u32(z, e->size);
            tz_u32(z, 0);
            tz_u32(z, e->csize);
            tz_u32(z, 0);
        }
    }
    z->cd_size = z->n - z->cd_off;
    tz_u32(z, 0x06054b50u);
    tz_u16(z, 0);
    tz_u16(z, 0);
    tz_u16(z, (unsigned)z->ne);
    tz_u16(z, (unsigned)z->ne);
    tz_u32(z, (uint32_t)z->cd_size);
    tz_u32(z, (uint32_t)z->cd_off);
    tz_u16(z, 0);
}

static inline void tz_write(const tzip *z, const char *path, size_t nbytes) {
    FILE *fp = fopen(path, "wb");
    if (!fp) abort();
    if (nbytes && fwrite(z->b, 1, nbytes, fp) != nbytes) abort();
    fclose(fp);
}

static inline void tz_free(tzip *z) {
    free(z->b);
    memset(z, 0, sizeof *z);
}

#endif
