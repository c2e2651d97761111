#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t sd_tensor_numel(const sd_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

char *sd_tensor_shape_str(char *buf, size_t size, const int64_t *shape, int ndim) {
    size_t used = 0;
    if (size == 0) return buf;
    buf[0] = 0;
    used += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}

int sd_tensor_has_shape(const sd_tensor *t, int ndim, const int64_t *shape) {
    if (t->ndim != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i]) return 0;
    return 1;
}

int sd_tensor_check_shape(const sd_tensor *t, int ndim, const int64_t *shape, sd_error *err) {
    if (sd_tensor_has_shape(t, ndim, shape)) return 0;
    char got[128], want[128];
    return sd_err(err, SD_EINPUT, "tensor '%s' has shape %s, expected %s", t->name,
                  sd_tensor_shape_str(got, sizeof got, t->shape, t->ndim), sd_tensor_shape_str(want, sizeof want, shape, ndim));
}

void sd_tensor_to_f32(const sd_tensor *t, float *dst) {
    sd_dtype_convert_to_f32(dst, t->data, t->dtype, (size_t)sd_tensor_numel(t));
}

float *sd_tensor_to_f32_alloc(const sd_tensor *t, sd_error *err) {
    size_t n = (size_t)sd_tensor_numel(t);
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) {
        sd_err(err, SD_ENOMEM, "out of memory converting tensor '%s' (%zu floats)", t->name, n);
        return NULL;
    }
    sd_tensor_to_f32(t, p);
    return p;
}

const float *sd_tensor_f32_view(const sd_tensor *t) {
    if (t->dtype != SD_F32 || ((uintptr_t)t->data & 3)) return NULL;
    return t->data;
}
