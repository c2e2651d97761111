#include "zipread.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

/* Where the central directory is and how many entries it has. */
typedef struct cd_info {
    uint64_t offset, size, count;
    size_t eocd_pos; /* start of the (32-bit) end-of-central-directory record */
} cd_info;

/*
 * Finds the end-of-central-directory record: the last signature in the final
 * 64 KiB + 22 bytes whose comment length reaches exactly the end of the file
 * (so a comment that happens to contain the signature does not fool us), and
 * follows the ZIP64 locator when there is one.
 */
static int find_cd(const sd_zip *z, cd_info *cd, sd_error *err) {
    const unsigned char *d = z->data;
    if (z->size < 22) return sd_err(err, SD_EINPUT, "%s: %zu bytes is too small for a ZIP archive", z->label, z->size);
    size_t lo = z->size > 22 + 65535 ? z->size - 22 - 65535 : 0;
    size_t pos = (size_t)-1;
    for (size_t p = z->size - 22 + 1; p-- > lo;) {
        if (rd32(d + p) == SIG_EOCD && p + 22 + rd16(d + p + 20) == z->size) {
            pos = p;
            break;
        }
    }
    if (pos == (size_t)-1)
        return sd_err(err, SD_EINPUT,
                      "%s: no ZIP end-of-central-directory record (not a ZIP archive, or truncated)", z->label);
    const unsigned char *e = d + pos;
    if (rd16(e + 4) != 0 || rd16(e + 6) != 0)
        return sd_err(err, SD_EUNSUPPORTED, "%s: multi-disk ZIP archives are not supported", z->label);
    cd->eocd_pos = pos;
    cd->count = rd16(e + 10);
    cd->size = rd32(e + 12);
    cd->offset = rd32(e + 16);
    if (rd16(e + 8) != rd16(e + 10))
        return sd_err(err, SD_EINPUT, "%s: ZIP end record disagrees on the number of entries", z->label);
    if (pos >= 20 && rd32(d + pos - 20) == SIG_LOC64) {
        uint64_t off64 = rd64(d + pos - 20 + 8);
        if (off64 > pos - 20 || pos - 20 - off64 < 56 || rd32(d + off64) != SIG_EOCD64)
            return sd_err(err, SD_EINPUT, "%s: broken ZIP64 end-of-central-directory locator", z->label);
        const unsigned char *e64 = d + off64;
        cd->count = rd64(e64 + 32);
        cd->size = rd64(e64 + 40);
        cd->offset = rd64(e64 + 48);
        if (rd64(e64 + 24) != cd->count)
            return sd_err(err, SD_EINPUT, "%s: ZIP64 end record disagrees on the number of entries", z->label);
        pos = (size_t)off64; /* the central directory ends before the ZIP64 record */
    }
    if (cd->offset > pos || cd->size > pos - cd->offset)
        return sd_err(err, SD_EINPUT,
                      "%s: ZIP central directory (offset %llu, %llu bytes) lies outside the archive; the file is "
                      "truncated or corrupt",
                      z->label, (unsigned long long)cd->offset, (unsigned long long)cd->size);
    if (cd->count > cd->size / 46)
        return sd_err(err, SD_EINPUT, "%s: ZIP central directory is too small for %llu entries", z->label,
                      (unsigned long long)cd->count);
    return 0;
}

/* Reads the ZIP64 extra field (id 1) for whichever of the three values were saturated. */
static int parse_zip64_extra(const unsigned char *x, size_t xlen, int need_size, int need_comp, int need_off,
                             uint64_t *size, uint64_t *comp, uint64_t *off) {
    size_t i = 0;
    while (i + 4 <= xlen) {
        uint16_t id = rd16(x + i), len = rd16(x + i + 2);
        if (i + 4 + len > xlen) return -1;
        if (id == 1) {
            const unsigned char *p = x + i + 4;
            size_t o = 0;
            if (need_size) {
                if (o + 8 > len) return -1;
                *size = rd64(p + o);
                o += 8;
            }
            if (need_comp) {
                if (o + 8 > len) return -1;
                *comp = rd64(p + o);
                o += 8;
            }
            if (need_off) {
                if (o + 8 > len) return -1;
                *off = rd64(p + o);
            }
            return 0;
        }
        i += 4 + (size_t)len;
    }
    return need_size || need_comp || need_off ? -1 : 0;
}

static int cmp_idx(const void *a, const void *b, void *ctx) {
    const sd_zip *z = ctx;
    return strcmp(z->entries[*(const int *)a].name, z->entries[*(const int *)b].name);
}

static int parse_entries(sd_zip *z, const cd_info *cd, sd_error *err) {
    const unsigned char *d = z->data;
    size_t n = (size_t)cd->count;
    z->entries = calloc(n ? n : 1, sizeof *z->entries);
    z->sorted = malloc((n ? n : 1) * sizeof *z->sorted);
    z->names = malloc((size_t)cd->size + 1); /* names are shorter than the directory */
    if (!z->entries || !z->sorted || !z->names) return sd_err(err, SD_ENOMEM, "%s: out of memory", z->label);
    size_t p = (size_t)cd->offset, end = (size_t)(cd->offset + cd->size), np = 0;
    for (size_t i = 0; i < n; i++) {
        if (end - p < 46 || rd32(d + p) != SIG_CENTRAL)
            return sd_err(err, SD_EINPUT, "%s: ZIP central directory entry %zu is corrupt (bad signature or truncated)",
                          z->label, i);
        const unsigned char *h = d + p;
        uint16_t flags = rd16(h + 8), method = rd16(h + 10), nlen = rd16(h + 28), xlen = rd16(h + 30),
                 clen = rd16(h + 32);
        if (end - p - 46 < (size_t)nlen + xlen + clen)
            return sd_err(err, SD_EINPUT, "%s: ZIP central directory entry %zu runs past the directory", z->label, i);
        sd_zip_entry *e = &z->entries[i];
        e->crc32 = rd32(h + 16);
        e->comp_size = rd32(h + 20);
        e->size = rd32(h + 24);
        uint64_t lho = rd32(h + 42);
        e->method = method;
        e->encrypted = flags & 1;
        if (memchr(h + 46, 0, nlen))
            return sd_err(err, SD_EINPUT, "%s: ZIP entry %zu has a NUL byte in its name", z->label, i);
        memcpy(z->names + np, h + 46, nlen);
        z->names[np + nlen] = 0;
        e->name = z->names + np;
        np += (size_t)nlen + 1;
        int ns = e->size == 0xFFFFFFFFu, nc = e->comp_size == 0xFFFFFFFFu, no = lho == 0xFFFFFFFFu;
        if (parse_zip64_extra(h + 46 + nlen, xlen, ns, nc, no, &e->size, &e->comp_size, &lho) < 0)
            return sd_err(err, SD_EINPUT, "%s: ZIP entry '%s' has a missing or broken ZIP64 extra field", z->label,
                          e->name);
        /* The local header repeats the name and may carry different extra data (PyTorch pads with it). */
        if (lho > cd->offset || cd->offset - lho < 30 || rd32(d + lho) != SIG_LOCAL)
            return sd_err(err, SD_EINPUT, "%s: ZIP entry '%s': local header at offset %llu is missing or corrupt",
                          z->label, e->name, (unsigned long long)lho);
        uint64_t data = lho + 30 + rd16(d + lho + 26) + rd16(d + lho + 28);
        if (data > cd->offset || e->comp_size > cd->offset - data)
            return sd_err(err, SD_EINPUT,
                          "%s: ZIP entry '%s' (%llu bytes at offset %llu) runs past the end of the member data; the "
                          "file is truncated or corrupt",
                          z->label, e->name, (unsigned long long)e->comp_size, (unsigned long long)data);
        if (method == 0 && e->comp_size != e->size)
            return sd_err(err, SD_EINPUT, "%s: stored ZIP entry '%s' has compressed size %llu != size %llu", z->label,
                          e->name, (unsigned long long)e->comp_size, (unsigned long long)e->size);
        e->offset = data;
        z->sorted[i] = (int)i;
        p += 46 + (size_t)nlen + xlen + clen;
    }
    z->n = (int)n;
    qsort_r(z->sorted, n, sizeof *z->sorted, cmp_idx, z);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(z->entries[z->sorted[i]].name, z->entries[z->sorted[i - 1]].name))
            return sd_err(err, SD_EINPUT, "%s: ZIP entry '%s' appears twice", z->label, z->entries[z->sorted[i]].name);
    return 0;
}

int sd_zip_open(sd_zip *z, const void *data, size_t size, const char *label, sd_error *err) {
    memset(z, 0, sizeof *z);
    z->data = data;
    z->size = size;
    z->label = strdup(label ? label : "zip");
    if (!z->label) return sd_err(err, SD_ENOMEM, "out of memory");
    cd_info cd = {0};
    int rc = find_cd(z, &cd, err);
    if (rc == 0 && cd.count > (uint64_t)(1 << 30))
        rc = sd_err(err, SD_EUNSUPPORTED, "%s: too many ZIP entries (%llu)", z->label, (unsigned long long)cd.count);
    if (rc == 0) rc = parse_entries(z, &cd, err);
    if (rc < 0) sd_zip_close(z);
    return rc;
}

void sd_zip_close(sd_zip *z) {
    free(z->label);
    free(z->entries);
    free(z->sorted);
    free(z->names);
    memset(z, 0, sizeof *z);
}

const sd_zip_entry *sd_zip_find(const sd_zip *z, const char *name) {
    int lo = 0, hi = z->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const sd_zip_entry *e = &z->entries[z->sorted[mid]];
        int c = strcmp(name, e->name);
        if (c == 0) return e;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

static uint32_t crc_of(const void *p, uint64_t n) { return (uint32_t)crc32_z(0L, p, (z_size_t)n); }

/* Inflates a raw deflate stream of e->comp_size bytes into exactly e->size bytes. */
static int inflate_entry(const sd_zip *z, const sd_zip_entry *e, unsigned char *out, sd_error *err) {
    z_stream s;
    memset(&s, 0, sizeof s);
    if (inflateInit2(&s, -MAX_WBITS) != Z_OK)
        return sd_err(err, SD_ENOMEM, "%s: cannot start zlib for '%s'", z->label, e->name);
    const unsigned char *in = z->data + e->offset;
    uint64_t in_left = e->comp_size, out_left = e->size;
    int zr;
    s.next_out = out;
    /* zlib counts in uInt: feed input and offer output in chunks of at most 1 GiB. */
    do {
        if (s.avail_in == 0 && in_left) {
            uInt chunk = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
            s.next_in = (Bytef *)(uintptr_t)in;
            s.avail_in = chunk;
            in += chunk;
            in_left -= chunk;
        }
        if (s.avail_out == 0 && out_left) {
            uInt chunk = out_left > (1u << 30) ? (1u << 30) : (uInt)out_left;
            s.avail_out = chunk;
            out_left -= chunk;
        }
        zr = inflate(&s, Z_NO_FLUSH); /* Z_BUF_ERROR: no progress possible (input ended or output full) */
    } while (zr == Z_OK);
    uint64_t produced = (uint64_t)s.total_out;
    inflateEnd(&s);
    if (zr != Z_STREAM_END)
        return sd_err(err, SD_EINPUT, "%s: ZIP entry '%s': deflate data is corrupt or truncated (zlib: %s)", z->label,
                      e->name, zr == Z_DATA_ERROR ? "invalid data" : zr == Z_BUF_ERROR ? "unexpected end" : "error");
    if (produced != e->size)
        return sd_err(err, SD_EINPUT, "%s: ZIP entry '%s' inflates to %llu bytes, the directory says %llu", z->label,
                      e->name, (unsigned long long)produced, (unsigned long long)e->size);
    return 0;
}

int sd_zip_read(const sd_zip *z, const sd_zip_entry *e, int verify_crc, const void **out, void **owned,
                sd_error *err) {
    *out = NULL;
    *owned = NULL;
    if (e->encrypted) return sd_err(err, SD_EUNSUPPORTED, "%s: ZIP entry '%s' is encrypted", z->label, e->name);
    if (e->method == 0) {
        const unsigned char *p = z->data + e->offset;
        if (verify_crc && crc_of(p, e->size) != e->crc32)
            return sd_err(err, SD_EINPUT, "%s: ZIP entry '%s' fails its CRC-32 check; the file is corrupt", z->label,
                          e->name);
        *out = p;
        return 0;
    }
    if (e->method != 8)
        return sd_err(err, SD_EUNSUPPORTED,
                      "%s: ZIP entry '%s' uses compression method %d; only stored (0) and deflate (8) are supported",
                      z->label, e->name, e->method);
    if (e->size > ((uint64_t)1 << 40))
        return sd_err(err, SD_EUNSUPPORTED, "%s: ZIP entry '%s' is too large to inflate (%llu bytes)", z->label,
                      e->name, (unsigned long long)e->size);
    /* deflate expands at most 1032:1 (a 258-byte match per 2 bits), so a larger size is a lie; checked
     * before allocating, a few bytes of archive cannot ask for gigabytes */
    if (e->size / 1032 > e->comp_size + 64)
        return sd_err(err, SD_EINPUT,
                      "%s: ZIP entry '%s' claims %llu bytes from %llu compressed bytes, more than deflate can "
                      "produce; the file is corrupt",
                      z->label, e->name, (unsigned long long)e->size, (unsigned long long)e->comp_size);
    unsigned char *buf = malloc(e->size ? (size_t)e->size : 1);
    if (!buf)
        return sd_err(err, SD_ENOMEM, "%s: out of memory inflating '%s' (%llu bytes)", z->label, e->name,
                      (unsigned long long)e->size);
    int rc = inflate_entry(z, e, buf, err);
    if (rc == 0 && crc_of(buf, e->size) != e->crc32)
        rc = sd_err(err, SD_EINPUT, "%s: ZIP entry '%s' fails its CRC-32 check; the file is corrupt", z->label,
                    e->name);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *owned = buf;
    return 0;
}
