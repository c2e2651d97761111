/*
 * pil_resize.h - Pillow's bicubic resize of 8-bit images, bit for bit.
 *
 * OpenAI's CLIP preprocessing (torchvision Resize on a PIL image) runs
 * Pillow 9.4's resampler, not a tensor interpolation; matching it exactly is
 * what makes CLIP-score inputs identical to the reference. The algorithm
 * (Pillow's libImaging/Resample.c, re-derived from its documented behaviour):
 *   - per axis, scale = in / out; the cubic kernel (a = -0.5) is stretched by
 *     max(scale, 1), so downscaling is antialiased (support 2 * max(scale, 1));
 *   - output pixel o takes inputs [lo, hi) with center = (o + 0.5) * scale,
 *     lo = max((int)(center - support + 0.5), 0),
 *     hi = min((int)(center + support + 0.5), in), weights
 *     K((i - center + 0.5) / max(scale, 1)) normalised to sum 1 in double;
 *   - weights become 22-bit fixed point, rounded half away from zero;
 *     each output is clamp((2^21 + sum(pixel * weight)) >> 22, 0, 255);
 *   - the horizontal pass runs first into a uint8 image, then the vertical
 *     pass; an axis whose size does not change is skipped, and an image that
 *     already has the target size is copied.
 *
 *     pil_resize_bicubic(dst, 32, 41, src, 64, 83, 3, &err);   // [64, 83, 3] -> [32, 41, 3]
 */
#ifndef SD_PIL_RESIZE_H
#define SD_PIL_RESIZE_H

#include <stdint.h>

#include "err.h"

/* src: [h, w, channels] uint8 -> dst: [oh, ow, channels] (1 to 4 channels; dst must not alias src). */
int pil_resize_bicubic(uint8_t *dst, int oh, int ow, const uint8_t *src, int h, int w, int channels, sd_error *err);

#endif
