#include "weights.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const sd_tensor *)a)->name, ((const sd_tensor *)b)->name);
}

int sd_weights_from_list(sd_weights *w, const char *const *names, const sd_tensor *const *ts, int n,
                         const char *label, sd_error *err) {
    memset(w, 0, sizeof *w);
    size_t len = 0;
    for (int i = 0; i < n; i++) len += strlen(names[i]) + 1;
    w->label = strdup(label ? label : "weights");
    w->tensors = calloc(n ? (size_t)n : 1, sizeof *w->tensors);
    w->names = malloc(len ? len : 1);
    if (!w->label || !w->tensors || !w->names) {
        sd_weights_free(w);
        return sd_err(err, SD_ENOMEM, "out of memory building the weight table of %s", label);
    }
    char *p = w->names;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(names[i]) + 1;
        memcpy(p, names[i], l);
        w->tensors[i] = *ts[i];
        w->tensors[i].name = p;
        p += l;
    }
    w->n = n;
    qsort(w->tensors, (size_t)n, sizeof *w->tensors, cmp_name);
    for (int i = 1; i < n; i++) {
        if (!strcmp(w->tensors[i].name, w->tensors[i - 1].name)) {
            int rc = sd_err(err, SD_EINPUT, "%s: tensor '%s' appears twice", w->label, w->tensors[i].name);
            sd_weights_free(w);
            return rc;
        }
    }
    return 0;
}

int sd_weights_from_st(sd_weights *w, const st_file *f, const char *prefix, const char *label, sd_error *err) {
    size_t pl = prefix ? strlen(prefix) : 0;
    const char **names = malloc((f->n ? (size_t)f->n : 1) * sizeof *names);
    const sd_tensor **ts = malloc((f->n ? (size_t)f->n : 1) * sizeof *ts);
    if (!names || !ts) {
        free(names);
        free(ts);
        return sd_err(err, SD_ENOMEM, "out of memory");
    }
    int n = 0;
    for (int i = 0; i < f->n; i++) {
        if (pl && strncmp(f->tensors[i].name, prefix, pl)) continue;
        names[n] = f->tensors[i].name + pl;
        ts[n] = &f->tensors[i];
        n++;
    }
    int rc = sd_weights_from_list(w, names, ts, n, label, err);
    free(names);
    free(ts);
    return rc;
}

void sd_weights_free(sd_weights *w) {
    free(w->label);
    free(w->tensors);
    free(w->names);
    memset(w, 0, sizeof *w);
}

const sd_tensor *sd_weights_find(const sd_weights *w, const char *name) {
    if (!w->n) return NULL;
    sd_tensor key = {.name = name};
    return bsearch(&key, w->tensors, (size_t)w->n, sizeof key, cmp_name);
}

int sd_weights_get(const sd_weights *w, const char *name, int ndim, const int64_t *shape, const sd_tensor **out,
                   sd_error *err) {
    char want[128];
    const sd_tensor *t = sd_weights_find(w, name);
    *out = NULL;
    if (!t && w->supply) return w->supply(w->supply_ctx, name, ndim, shape, out, err);
    if (!t)
        return sd_err(err, SD_EINPUT, "%s: missing tensor '%s' (expected shape %s)", w->label, name,
                      sd_tensor_shape_str(want, sizeof want, shape, ndim));
    if (!sd_dtype_is_float(t->dtype))
        return sd_err(err, SD_EINPUT, "%s: tensor '%s' has dtype %s, expected a float type", w->label, name,
                      sd_dtype_name(t->dtype));
    if (!sd_tensor_has_shape(t, ndim, shape)) {
        char got[128];
        return sd_err(err, SD_EINPUT, "%s: tensor '%s' has shape %s, expected %s", w->label, name,
                      sd_tensor_shape_str(got, sizeof got, t->shape, t->ndim), sd_tensor_shape_str(want, sizeof want, shape, ndim));
    }
    *out = t;
    return 0;
}

int sd_weights_getf(const sd_weights *w, const sd_tensor **out, sd_error *err, const int64_t *shape, int ndim,
                    const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return sd_weights_get(w, name, ndim, shape, out, err);
}

int64_t sd_weights_numel(const sd_weights *w) {
    int64_t n = 0;
    for (int i = 0; i < w->n; i++) n += sd_tensor_numel(&w->tensors[i]);
    return n;
}

int sd_weights_get_wb(const sd_weights *w, const sd_tensor **wt, const sd_tensor **bt, sd_error *err, int out, int in,
                      int k, const char *fmt, ...) {
    char name[200], full[220];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "%s.weight", name);
    int rc = k > 0 ? sd_weights_get(w, full, 4, (int64_t[]){out, in, k, k}, wt, err)
             : k == 0 ? sd_weights_get(w, full, 2, (int64_t[]){out, in}, wt, err)
                      : sd_weights_get(w, full, 1, (int64_t[]){out}, wt, err);
    if (rc < 0) return rc;
    snprintf(full, sizeof full, "%s.bias", name);
    return sd_weights_get(w, full, 1, (int64_t[]){out}, bt, err);
}
