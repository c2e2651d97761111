/*
 * tensor.h - a named, typed view of stored tensor data.
 *
 * Layout: row-major (C order) like PyTorch, NCHW for images and activations.
 * An sd_tensor does not own its data: it points into a mapped checkpoint or
 * into a buffer whose owner is stated where the view is made. Names are owned
 * by the container (a safetensors file, a pickle checkpoint, a model).
 *
 *     const sd_tensor *w = st_find(&file, "conv_in.weight");   // [320, 4, 3, 3]
 *     float *wf = sd_tensor_to_f32_alloc(w, &err);             // caller frees
 */
#ifndef SD_TENSOR_H
#define SD_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "err.h"

#define SD_MAX_DIMS 8

typedef struct sd_tensor {
    const char *name;
    sd_dtype dtype;
    int ndim;
    int64_t shape[SD_MAX_DIMS];
    const void *data; /* nbytes bytes, little-endian, possibly unaligned */
    size_t nbytes;
} sd_tensor;

int64_t sd_tensor_numel(const sd_tensor *t);

/* Formats a shape as "[2, 4, 8, 8]" into buf; returns buf. */
char *sd_tensor_shape_str(char *buf, size_t size, const int64_t *shape, int ndim);

/* True when t has exactly the given shape. */
int sd_tensor_has_shape(const sd_tensor *t, int ndim, const int64_t *shape);

/* Fails with a message naming the tensor when its shape differs from `shape`. */
int sd_tensor_check_shape(const sd_tensor *t, int ndim, const int64_t *shape, sd_error *err);

/* Converts all elements to float32 into dst (numel floats). */
void sd_tensor_to_f32(const sd_tensor *t, float *dst);

/* Same, into a new buffer the caller frees; NULL and an error on allocation failure. */
float *sd_tensor_to_f32_alloc(const sd_tensor *t, sd_error *err);

/* The float32 data itself when t is F32 and suitably aligned, else NULL. */
const float *sd_tensor_f32_view(const sd_tensor *t);

#endif
