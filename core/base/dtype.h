/*
 * dtype.h - element types of stored tensors and conversions to float32.
 *
 * Checkpoints store weights as F32, F16 or BF16; reference data also uses
 * F64, integer types and U8 images. sdrender computes in float32: 16-bit
 * weights stay 16-bit in memory (mapped from the file) and are widened with
 * sd_dtype_convert_to_f32 right before use (a few percent of a layer's time).
 */
#ifndef SD_DTYPE_H
#define SD_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum sd_dtype {
    SD_F32 = 0,
    SD_F16,
    SD_BF16,
    SD_F64,
    SD_I64,
    SD_I32,
    SD_I16,
    SD_I8,
    SD_U8,
    SD_BOOL,
    SD_DTYPE_COUNT
} sd_dtype;

/* Bytes per element. */
size_t sd_dtype_size(sd_dtype t);
/* safetensors spelling: "F32", "F16", ... */
const char *sd_dtype_name(sd_dtype t);
/* Parses a safetensors dtype string; returns 0 or -1 when unknown. */
int sd_dtype_parse(const char *s, sd_dtype *out);
/* True for F32/F16/BF16/F64. */
int sd_dtype_is_float(sd_dtype t);

float sd_dtype_f16_to_f32(uint16_t h);
uint16_t sd_dtype_f32_to_f16(float f); /* round to nearest even */
float sd_dtype_bf16_to_f32(uint16_t h);
uint16_t sd_dtype_f32_to_bf16(float f); /* round to nearest even */

/* dst[i] = (float)src[i] for n elements of type t; src may be unaligned. */
void sd_dtype_convert_to_f32(float *dst, const void *src, sd_dtype t, size_t n);
/* dst[i] = (double)src[i]; src may be unaligned. */
void sd_dtype_convert_to_f64(double *dst, const void *src, sd_dtype t, size_t n);

#endif
