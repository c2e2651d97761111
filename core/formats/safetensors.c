#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const sd_tensor *)a)->name, ((const sd_tensor *)b)->name);
}

/* Reads a non-negative JSON integer; returns -1 when it is not one. */
static int64_t json_nonneg(const json_t *v) {
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    return x < 0 ? -1 : (int64_t)x;
}

/* Validates one header entry and fills t (name set by caller). */
static int parse_entry(st_file *f, const char *name, json_t *e, sd_tensor *t, size_t *begin_out,
                       sd_error *err) {
    if (!json_is_object(e)) return sd_err(err, SD_EINPUT, "tensor '%s': header entry is not an object", name);
    json_t *jd = json_object_get(e, "dtype"), *js = json_object_get(e, "shape"),
           *jo = json_object_get(e, "data_offsets");
    if (!json_is_string(jd)) return sd_err(err, SD_EINPUT, "tensor '%s': missing or non-string dtype", name);
    if (sd_dtype_parse(json_string_value(jd), &t->dtype) < 0)
        return sd_err(err, SD_EINPUT, "tensor '%s': unknown dtype '%s'", name, json_string_value(jd));
    if (!json_is_array(js)) return sd_err(err, SD_EINPUT, "tensor '%s': missing or non-array shape", name);
    if (json_array_size(js) > SD_MAX_DIMS)
        return sd_err(err, SD_EINPUT, "tensor '%s': %zu dimensions, at most %d supported", name,
                      json_array_size(js), SD_MAX_DIMS);
    t->ndim = (int)json_array_size(js);
    /* element count with overflow check: the product must fit the file anyway */
    uint64_t numel = 1;
    int overflow = 0;
    for (int i = 0; i < t->ndim; i++) {
        int64_t d = json_nonneg(json_array_get(js, (size_t)i));
        if (d < 0) return sd_err(err, SD_EINPUT, "tensor '%s': shape entry %d is not a non-negative integer", name, i);
        t->shape[i] = d;
        if (d && numel > UINT64_MAX / (uint64_t)d) overflow = 1;
        else numel *= (uint64_t)d;
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return sd_err(err, SD_EINPUT, "tensor '%s': data_offsets must be [begin, end]", name);
    int64_t b = json_nonneg(json_array_get(jo, 0)), en = json_nonneg(json_array_get(jo, 1));
    if (b < 0 || en < 0) return sd_err(err, SD_EINPUT, "tensor '%s': data_offsets are not non-negative integers", name);
    if (en < b) return sd_err(err, SD_EINPUT, "tensor '%s': data_offsets end %lld before begin %lld", name,
                              (long long)en, (long long)b);
    if ((uint64_t)en > f->data_size)
        return sd_err(err, SD_EINPUT,
                      "tensor '%s': data_offsets [%lld, %lld] outside the data area (%zu bytes); the file is truncated or corrupt",
                      name, (long long)b, (long long)en, f->data_size);
    size_t es = sd_dtype_size(t->dtype);
    if (overflow || numel > UINT64_MAX / es || numel * es != (uint64_t)(en - b)) {
        char sh[128];
        return sd_err(err, SD_EINPUT, "tensor '%s': shape %s of %s needs %llu bytes but data_offsets span %lld", name,
                      sd_tensor_shape_str(sh, sizeof sh, t->shape, t->ndim), sd_dtype_name(t->dtype),
                      overflow ? 0ULL : (unsigned long long)(numel * es), (long long)(en - b));
    }
    t->data = f->data + b;
    t->nbytes = (size_t)(en - b);
    *begin_out = (size_t)b;
    return 0;
}

typedef struct {
    size_t begin, end;
    int idx;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int parse_header(st_file *f, const char *json, size_t len, sd_error *err) {
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (strstr(je.text, "duplicate"))
            return sd_err(err, SD_EINPUT, "header names a tensor twice (%s)", je.text);
        return sd_err(err, SD_EINPUT, "header is not valid JSON: %s at byte %d", je.text, je.position);
    }
    int rc = 0;
    if (!json_is_object(root)) {
        rc = sd_err(err, SD_EINPUT, "header is not a JSON object");
        goto done;
    }
    size_t count = json_object_size(root), names_len = 0;
    json_t *meta = json_object_get(root, "__metadata__");
    if (meta) {
        count--;
        if (!json_is_object(meta)) {
            rc = sd_err(err, SD_EINPUT, "__metadata__ is not an object");
            goto done;
        }
        const char *k;
        json_t *v;
        json_object_foreach(meta, k, v) {
            if (!json_is_string(v)) {
                rc = sd_err(err, SD_EINPUT, "__metadata__ value of '%s' is not a string", k);
                goto done;
            }
        }
        f->metadata = json_incref(meta);
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) names_len += strlen(key) + 1;
    f->tensors = calloc(count ? count : 1, sizeof *f->tensors);
    f->names = malloc(names_len ? names_len : 1);
    span *spans = calloc(count ? count : 1, sizeof *spans);
    if (!f->tensors || !f->names || !spans) {
        free(spans);
        rc = sd_err(err, SD_ENOMEM, "out of memory reading header (%zu tensors)", count);
        goto done;
    }
    char *np = f->names;
    int n = 0;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) continue;
        sd_tensor *t = &f->tensors[n];
        size_t kl = strlen(key) + 1;
        memcpy(np, key, kl);
        t->name = np;
        np += kl;
        size_t begin = 0;
        rc = parse_entry(f, key, val, t, &begin, err);
        if (rc < 0) break;
        spans[n].begin = begin;
        spans[n].end = begin + t->nbytes;
        spans[n].idx = n;
        n++;
    }
    if (rc == 0) {
        qsort(spans, (size_t)n, sizeof *spans, cmp_span);
        for (int i = 1; i < n; i++) {
            if (spans[i].begin < spans[i - 1].end) {
                rc = sd_err(err, SD_EINPUT, "tensors '%s' and '%s' overlap in the data area",
                            f->tensors[spans[i - 1].idx].name, f->tensors[spans[i].idx].name);
                break;
            }
        }
    }
    free(spans);
    f->n = n;
    if (rc == 0) qsort(f->tensors, (size_t)n, sizeof *f->tensors, cmp_tensor_name);
done:
    json_decref(root);
    return rc;
}

int st_open(st_file *f, const char *path, sd_error *err) {
    memset(f, 0, sizeof *f);
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sd_err(err, errno == ENOENT ? SD_ENOTFOUND : SD_EIO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        rc = sd_err(err, SD_EIO, "%s: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return sd_err(err, SD_EINPUT, "%s: not a regular file", path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return sd_err(err, SD_EINPUT, "%s: %lld bytes is too small for a safetensors file (8-byte header length missing)",
                      path, (long long)sb.st_size);
    }
    f->map_size = (size_t)sb.st_size;
    f->map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        return sd_err(err, SD_EIO, "%s: cannot map file: %s", path, strerror(errno));
    }
    const unsigned char *p = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > ST_MAX_HEADER) {
        rc = sd_err(err, SD_EINPUT, "header length %llu exceeds the 100 MB limit; not a safetensors file?",
                    (unsigned long long)hlen);
    } else if (hlen > f->map_size - 8) {
        rc = sd_err(err, SD_EINPUT, "header length %llu is larger than the file (%zu bytes); the file is truncated or not safetensors",
                    (unsigned long long)hlen, f->map_size);
    } else {
        f->data = p + 8 + hlen;
        f->data_size = f->map_size - 8 - (size_t)hlen;
        rc = parse_header(f, (const char *)p + 8, (size_t)hlen, err);
    }
    if (rc == 0) f->path = strdup(path);
    if (rc == 0 && !f->path) rc = sd_err(err, SD_ENOMEM, "out of memory");
    if (rc < 0) {
        if (err) sd_err_prefix(err, "%s", path);
        st_close(f);
    }
    return rc;
}

void st_close(st_file *f) {
    if (f->map) munmap(f->map, f->map_size);
    free(f->tensors);
    free(f->names);
    free(f->path);
    if (f->metadata) json_decref(f->metadata);
    memset(f, 0, sizeof *f);
}

const sd_tensor *st_find(const st_file *f, const char *name) {
    sd_tensor key = {.name = name};
    if (!f->n) return NULL;
    return bsearch(&key, f->tensors, (size_t)f->n, sizeof key, cmp_tensor_name);
}

int st_get(const st_file *f, const char *name, const sd_tensor **out, sd_error *err) {
    *out = st_find(f, name);
    if (!*out) return sd_err(err, SD_ENOTFOUND, "%s: missing tensor '%s'", f->path ? f->path : "?", name);
    return 0;
}

const char *st_metadata(const st_file *f, const char *key) {
    if (!f->metadata) return NULL;
    return json_string_value(json_object_get(f->metadata, key));
}

int st_write(const char *path, const sd_tensor *ts, int n, const char *const *meta_keys,
             const char *const *meta_vals, int n_meta, sd_error *err) {
    json_t *root = json_object();
    if (!root) return sd_err(err, SD_ENOMEM, "out of memory");
    if (n_meta > 0) {
        json_t *m = json_object();
        for (int i = 0; i < n_meta; i++) json_object_set_new(m, meta_keys[i], json_string(meta_vals[i]));
        json_object_set_new(root, "__metadata__", m);
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        json_t *e = json_object(), *sh = json_array();
        for (int d = 0; d < ts[i].ndim; d++) json_array_append_new(sh, json_integer(ts[i].shape[d]));
        json_object_set_new(e, "dtype", json_string(sd_dtype_name(ts[i].dtype)));
        json_object_set_new(e, "shape", sh);
        json_object_set_new(e, "data_offsets", json_pack("[II]", (json_int_t)off, (json_int_t)(off + ts[i].nbytes)));
        json_object_set_new(root, ts[i].name, e);
        off += ts[i].nbytes;
    }
    char *hdr = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!hdr) return sd_err(err, SD_ENOMEM, "out of memory");
    size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    sd_fs_atomic_file af;
    int rc = sd_fs_atomic_open(&af, path, err);
    if (rc == 0) {
        rc = sd_fs_atomic_write(&af, len8, 8, err);
        if (rc == 0) rc = sd_fs_atomic_write(&af, hdr, hl, err);
        for (size_t i = hl; rc == 0 && i < padded; i++) rc = sd_fs_atomic_write(&af, " ", 1, err);
        for (int i = 0; rc == 0 && i < n; i++) rc = sd_fs_atomic_write(&af, ts[i].data, ts[i].nbytes, err);
        rc = rc == 0 ? sd_fs_atomic_commit(&af, err) : (sd_fs_atomic_abort(&af), rc);
    }
    free(hdr);
    return rc;
}
