#include "npz.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fsutil.h"

/* ------------------------------------------------------------ .npy header */

static const struct {
    const char *descr; /* without the byte-order character */
    sd_dtype dtype;
} npy_types[] = {
    {"f2", SD_F16}, {"f4", SD_F32}, {"f8", SD_F64}, {"i2", SD_I16}, {"i4", SD_I32},
    {"i8", SD_I64}, {"i1", SD_I8},  {"u1", SD_U8},  {"b1", SD_BOOL},
};

/* A cursor over the header's Python literal. */
typedef struct lit {
    const char *p, *end;
} lit;

static void skip_ws(lit *l) {
    while (l->p < l->end && (*l->p == ' ' || *l->p == '\t' || *l->p == '\n' || *l->p == '\r')) l->p++;
}

static int eat(lit *l, char c) {
    skip_ws(l);
    if (l->p < l->end && *l->p == c) {
        l->p++;
        return 1;
    }
    return 0;
}

/* A quoted string ('..' or ".."), copied into buf. */
static int read_qstr(lit *l, char *buf, size_t size) {
    skip_ws(l);
    if (l->p >= l->end || (*l->p != '\'' && *l->p != '"')) return -1;
    char q = *l->p++;
    size_t n = 0;
    while (l->p < l->end && *l->p != q) {
        if (n + 1 >= size) return -1;
        buf[n++] = *l->p++;
    }
    if (l->p >= l->end) return -1;
    l->p++;
    buf[n] = 0;
    return 0;
}

static int read_word(lit *l, char *buf, size_t size) {
    skip_ws(l);
    size_t n = 0;
    while (l->p < l->end && (isalnum((unsigned char)*l->p) || *l->p == '_')) {
        if (n + 1 >= size) return -1;
        buf[n++] = *l->p++;
    }
    buf[n] = 0;
    return n ? 0 : -1;
}

/* "(a, b, c)" / "(a,)" / "()" with non-negative ints (a trailing L of Python 2 allowed). */
static int read_shape(lit *l, int64_t *shape, int *ndim) {
    if (!eat(l, '(')) return -1;
    *ndim = 0;
    for (;;) {
        if (eat(l, ')')) return 0;
        char w[32];
        if (read_word(l, w, sizeof w) < 0) return -1;
        size_t wl = strlen(w);
        if (wl > 1 && w[wl - 1] == 'L') w[--wl] = 0;
        char *endp;
        long long v = strtoll(w, &endp, 10);
        if (*endp || v < 0 || v > ((long long)1 << 50) || *ndim >= SD_MAX_DIMS) return -1;
        shape[(*ndim)++] = v;
        if (!eat(l, ',')) return eat(l, ')') ? 0 : -1;
    }
}

int sd_npz_parse_npy(const void *data, size_t len, const char *label, sd_tensor *out, sd_error *err) {
    const unsigned char *d = data;
    memset(out, 0, sizeof *out);
    if (len < 10 || memcmp(d, "\x93NUMPY", 6))
        return sd_err(err, SD_EINPUT, "%s: not a .npy array (magic string missing)", label);
    int major = d[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)d[8] | ((size_t)d[9] << 8);
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) return sd_err(err, SD_EINPUT, "%s: truncated .npy header", label);
        hlen = (size_t)d[8] | ((size_t)d[9] << 8) | ((size_t)d[10] << 16) | ((size_t)d[11] << 24);
        hstart = 12;
    } else {
        return sd_err(err, SD_EUNSUPPORTED, "%s: .npy format version %d.%d is not supported", label, major, d[7]);
    }
    if (hlen > len - hstart) return sd_err(err, SD_EINPUT, "%s: .npy header runs past the end of the data", label);
    lit l = {(const char *)d + hstart, (const char *)d + hstart + hlen};
    char descr[32] = "", key[32];
    int fortran = -1, ndim = -1, bad = !eat(&l, '{');
    int64_t shape[SD_MAX_DIMS];
    while (!bad && !eat(&l, '}')) {
        if (read_qstr(&l, key, sizeof key) < 0 || !eat(&l, ':')) {
            bad = 1;
            break;
        }
        if (!strcmp(key, "descr")) bad = read_qstr(&l, descr, sizeof descr) < 0;
        else if (!strcmp(key, "fortran_order")) {
            char w[16];
            bad = read_word(&l, w, sizeof w) < 0 || (strcmp(w, "True") && strcmp(w, "False"));
            fortran = !bad && !strcmp(w, "True");
        } else if (!strcmp(key, "shape")) bad = read_shape(&l, shape, &ndim) < 0;
        else bad = 1;
        if (!bad && !eat(&l, ',')) { /* the last item may lack its comma */
            bad = !eat(&l, '}');
            break;
        }
    }
    if (bad || !descr[0] || fortran < 0 || ndim < 0)
        return sd_err(err, SD_EINPUT,
                      "%s: malformed .npy header '%.*s' (needs 'descr', 'fortran_order' and 'shape')", label,
                      (int)(hlen > 120 ? 120 : hlen), (const char *)d + hstart);
    char order = descr[0];
    const char *code = descr + 1;
    int found = -1;
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (!strcmp(code, npy_types[i].descr)) found = (int)i;
    if (found < 0 || (order != '<' && order != '|' && order != '>' && order != '='))
        return sd_err(err, SD_EUNSUPPORTED, "%s: .npy dtype '%s' is not supported (use float16/32/64, int8-64, uint8, bool)",
                      label, descr);
    sd_dtype dt = npy_types[found].dtype;
    if (order == '>' && sd_dtype_size(dt) > 1)
        return sd_err(err, SD_EUNSUPPORTED, "%s: big-endian .npy dtype '%s' is not supported", label, descr);
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] && numel > ((int64_t)1 << 50) / shape[i])
            return sd_err(err, SD_EINPUT, "%s: .npy shape is absurdly large", label);
        numel *= shape[i];
    }
    int nontrivial = 0;
    for (int i = 0; i < ndim; i++) nontrivial += shape[i] > 1;
    if (fortran && nontrivial > 1)
        return sd_err(err, SD_EUNSUPPORTED, "%s: Fortran-ordered .npy arrays are not supported; save with "
                                            "np.ascontiguousarray", label);
    size_t nbytes = (size_t)numel * sd_dtype_size(dt), have = len - hstart - hlen;
    if (have != nbytes) {
        char sh[128];
        return sd_err(err, SD_EINPUT, "%s: .npy array of shape %s and dtype %s needs %zu bytes of data, found %zu",
                      label, sd_tensor_shape_str(sh, sizeof sh, shape, ndim), descr, nbytes, have);
    }
    out->dtype = dt;
    out->ndim = ndim;
    memcpy(out->shape, shape, sizeof(int64_t) * (size_t)ndim);
    out->data = d + hstart + hlen;
    out->nbytes = nbytes;
    return 0;
}

/* ------------------------------------------------------------ reading .npz */

int sd_npz_open(sd_npz *z, const char *path, sd_error *err) {
    memset(z, 0, sizeof *z);
    int rc = sd_mapfile_open(&z->map, path, err);
    if (rc == 0) rc = sd_zip_open(&z->zip, z->map.data, z->map.size, path, err);
    if (rc == 0) {
        z->arrays = calloc(z->zip.n ? (size_t)z->zip.n : 1, sizeof *z->arrays);
        z->owned = calloc(z->zip.n ? (size_t)z->zip.n : 1, sizeof *z->owned);
        size_t nl = 1;
        for (int i = 0; i < z->zip.n; i++) nl += strlen(z->zip.entries[i].name) + 1;
        z->names = malloc(nl);
        if (!z->arrays || !z->owned || !z->names) rc = sd_err(err, SD_ENOMEM, "%s: out of memory", path);
    }
    size_t np = 0;
    for (int i = 0; rc == 0 && i < z->zip.n; i++) {
        const sd_zip_entry *e = &z->zip.entries[i];
        size_t nl = strlen(e->name);
        if (nl < 4 || strcmp(e->name + nl - 4, ".npy")) continue; /* np.load ignores other members too */
        const void *p;
        void *owned;
        if ((rc = sd_zip_read(&z->zip, e, 0, &p, &owned, err)) < 0) break;
        if (owned) z->owned[z->nowned++] = owned;
        char label[600];
        snprintf(label, sizeof label, "%s: %s", path, e->name);
        sd_tensor *t = &z->arrays[z->n];
        if ((rc = sd_npz_parse_npy(p, (size_t)e->size, label, t, err)) < 0) break;
        memcpy(z->names + np, e->name, nl - 4);
        z->names[np + nl - 4] = 0;
        t->name = z->names + np;
        np += nl - 3;
        z->n++;
    }
    if (rc < 0) sd_npz_close(z);
    return rc;
}

void sd_npz_close(sd_npz *z) {
    for (int i = 0; i < z->nowned; i++) free(z->owned[i]);
    free(z->owned);
    free(z->arrays);
    free(z->names);
    sd_zip_close(&z->zip);
    sd_mapfile_close(&z->map);
    memset(z, 0, sizeof *z);
}

const sd_tensor *sd_npz_find(const sd_npz *z, const char *name) {
    for (int i = 0; i < z->n; i++)
        if (!strcmp(z->arrays[i].name, name)) return &z->arrays[i];
    return NULL;
}

int sd_npz_get(const sd_npz *z, const char *name, sd_dtype dtype, int ndim, const int64_t *shape,
               const sd_tensor **out, sd_error *err) {
    *out = NULL;
    const sd_tensor *t = sd_npz_find(z, name);
    char got[128], want[128];
    if (!t) return sd_err(err, SD_EINPUT, "%s: no array '%s'", z->map.path, name);
    if (t->dtype != dtype)
        return sd_err(err, SD_EINPUT, "%s: array '%s' has dtype %s, expected %s", z->map.path, name,
                      sd_dtype_name(t->dtype), sd_dtype_name(dtype));
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = shape[i] < 0 || shape[i] == t->shape[i];
    if (!ok)
        return sd_err(err, SD_EINPUT, "%s: array '%s' has shape %s, expected %s (-1: any size)", z->map.path, name,
                      sd_tensor_shape_str(got, sizeof got, t->shape, t->ndim), sd_tensor_shape_str(want, sizeof want, shape, ndim));
    *out = t;
    return 0;
}

/* ------------------------------------------------------------ writing .npz */

static const char *npy_descr(sd_dtype t) {
    switch (t) {
    case SD_F16: return "<f2";
    case SD_F32: return "<f4";
    case SD_F64: return "<f8";
    case SD_I16: return "<i2";
    case SD_I32: return "<i4";
    case SD_I64: return "<i8";
    case SD_I8: return "|i1";
    case SD_U8: return "|u1";
    case SD_BOOL: return "|b1";
    default: return NULL;
    }
}

/* The .npy preamble (magic, version 1.0, header) padded to a multiple of 64 bytes; returns its length. */
static size_t npy_header(const sd_tensor *t, char *buf, size_t size) {
    char shape[300];
    size_t o = 0;
    o += (size_t)snprintf(shape + o, sizeof shape - o, "(");
    for (int i = 0; i < t->ndim; i++)
        o += (size_t)snprintf(shape + o, sizeof shape - o, "%lld%s", (long long)t->shape[i],
                              t->ndim == 1 ? "," : i + 1 < t->ndim ? ", " : "");
    snprintf(shape + o, sizeof shape - o, ")");
    char dict[400];
    int dl = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                      npy_descr(t->dtype), shape);
    size_t total = 10 + (size_t)dl + 1; /* + '\n' */
    size_t padded = (total + 63) / 64 * 64;
    if (padded > size) return 0;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    size_t hlen = padded - 10;
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)dl);
    memset(buf + 10 + dl, ' ', padded - total);
    buf[padded - 1] = '\n';
    return padded;
}

static void put16(unsigned char *p, unsigned v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static void put32(unsigned char *p, uint32_t v) {
    put16(p, v & 0xffff);
    put16(p + 2, v >> 16);
}

typedef struct zrec {
    char name[300];
    uint32_t crc, size, offset;
} zrec;

int sd_npz_write(const char *path, const sd_tensor *arrays, int n, sd_error *err) {
    for (int i = 0; i < n; i++) {
        const sd_tensor *t = &arrays[i];
        if (!t->name || !t->name[0] || strlen(t->name) > 250)
            return sd_err(err, SD_EINPUT, "%s: array %d needs a name of 1-250 characters", path, i);
        if (!npy_descr(t->dtype))
            return sd_err(err, SD_EUNSUPPORTED, "%s: array '%s' has dtype %s, which .npy cannot hold", path, t->name,
                          sd_dtype_name(t->dtype));
        if (t->nbytes != (size_t)sd_tensor_numel(t) * sd_dtype_size(t->dtype))
            return sd_err(err, SD_EINTERNAL, "%s: array '%s' has %zu bytes for its shape", path, t->name, t->nbytes);
    }
    if (n < 0 || n > 65535) return sd_err(err, SD_EUNSUPPORTED, "%s: %d arrays do not fit a ZIP without ZIP64", path, n);
    zrec *recs = calloc(n ? (size_t)n : 1, sizeof *recs);
    if (!recs) return sd_err(err, SD_ENOMEM, "out of memory");
    sd_fs_atomic_file af;
    int rc = sd_fs_atomic_open(&af, path, err);
    if (rc < 0) {
        free(recs);
        return rc;
    }
    uint64_t pos = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        const sd_tensor *t = &arrays[i];
        char hdr[512];
        size_t hl = npy_header(t, hdr, sizeof hdr);
        zrec *r = &recs[i];
        snprintf(r->name, sizeof r->name, "%s.npy", t->name);
        uint64_t size = hl + t->nbytes;
        size_t nl = strlen(r->name);
        /* pad the local header with an extra field so the member's data starts on a 64-byte boundary */
        size_t xlen = (size_t)((64 - (pos + 30 + nl + 4) % 64) % 64) + 4;
        if (hl == 0 || size >= 0xFFFFFFFFu || pos + 30 + nl + xlen + size >= 0xFFFFFFFFu) {
            rc = sd_err(err, SD_EUNSUPPORTED, "%s: array '%s' makes the archive larger than 4 GiB (no ZIP64 writer)",
                        path, t->name);
            break;
        }
        uLong crc = crc32(0L, (const Bytef *)hdr, (uInt)hl);
        crc = crc32_z(crc, t->data, t->nbytes);
        r->crc = (uint32_t)crc;
        r->size = (uint32_t)size;
        r->offset = (uint32_t)pos;
        unsigned char lh[30 + 300 + 68];
        memset(lh, 0, sizeof lh);
        put32(lh, 0x04034b50u);
        put16(lh + 4, 20);
        put16(lh + 8, 0);            /* stored */
        put16(lh + 12, 0x21);        /* 1980-01-01 */
        put32(lh + 14, r->crc);
        put32(lh + 18, r->size);
        put32(lh + 22, r->size);
        put16(lh + 26, (unsigned)nl);
        put16(lh + 28, (unsigned)xlen);
        memcpy(lh + 30, r->name, nl);
        put16(lh + 30 + nl, 0x6473); /* a private padding field ("sd"); readers skip unknown ids */
        put16(lh + 30 + nl + 2, (unsigned)(xlen - 4));
        size_t lhl = 30 + nl + xlen;
        rc = sd_fs_atomic_write(&af, lh, lhl, err);
        if (rc == 0) rc = sd_fs_atomic_write(&af, hdr, hl, err);
        if (rc == 0) rc = sd_fs_atomic_write(&af, t->data, t->nbytes, err);
        pos += lhl + size;
    }
    uint64_t cd_off = pos, cd_size = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        const zrec *r = &recs[i];
        size_t nl = strlen(r->name);
        unsigned char ch[46 + 300];
        memset(ch, 0, sizeof ch);
        put32(ch, 0x02014b50u);
        put16(ch + 4, 20);
        put16(ch + 6, 20);
        put16(ch + 14, 0x21);
        put32(ch + 16, r->crc);
        put32(ch + 20, r->size);
        put32(ch + 24, r->size);
        put16(ch + 28, (unsigned)nl);
        put32(ch + 42, r->offset);
        memcpy(ch + 46, r->name, nl);
        rc = sd_fs_atomic_write(&af, ch, 46 + nl, err);
        cd_size += 46 + nl;
    }
    if (rc == 0) {
        unsigned char eo[22];
        memset(eo, 0, sizeof eo);
        put32(eo, 0x06054b50u);
        put16(eo + 8, (unsigned)n);
        put16(eo + 10, (unsigned)n);
        put32(eo + 12, (uint32_t)cd_size);
        put32(eo + 16, (uint32_t)cd_off);
        rc = sd_fs_atomic_write(&af, eo, sizeof eo, err);
    }
    free(recs);
    if (rc < 0) {
        sd_fs_atomic_abort(&af);
        return rc;
    }
    return sd_fs_atomic_commit(&af, err);
}
