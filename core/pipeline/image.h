/*
 * image.h - conversions between 8-bit pictures and the float tensors the VAE
 * sees, done exactly as diffusers' VaeImageProcessor does in float32.
 *
 * Pictures are HWC uint8 (RGB, or one channel for masks); tensors NCHW float.
 */
#ifndef SD_IMAGE_H
#define SD_IMAGE_H

#include <stdint.h>

/* rgb: [H, W, 3] u8 -> out: [1, 3, H, W] in [-1, 1]: 2 * (u8 / 255) - 1. */
void image_u8_to_tensor(const uint8_t *rgb, int h, int w, float *out);

/* x: [1, 3, H, W] decoder output -> rgb: [H, W, 3]: round(clamp(x / 2 + 0.5, 0, 1) * 255), halves to even. */
void image_tensor_to_u8(const float *x, int h, int w, uint8_t *rgb);

/* Same, but first writes the float picture clamp(x / 2 + 0.5, 0, 1) as HWC into hwc (may be NULL). */
void image_tensor_to_u8_ex(const float *x, int h, int w, float *hwc, uint8_t *rgb);

/* gray: [H, W] u8 -> mask: [1, 1, H, W] in {0, 1}: u8 / 255 >= 0.5. */
void image_mask_binarize(const uint8_t *gray, int h, int w, float *mask);

/* img: [1, 3, H, W], mask: [1, 1, H, W] -> out = img * (mask < 0.5) (the region to repaint becomes 0). */
void image_apply_mask(const float *img, const float *mask, int h, int w, float *out);

/* Nearest-neighbour resize of [C, H, W] to [C, oh, ow] (source index floor(dst * in / out), as torch). */
void image_resize_nearest(const float *in, int c, int h, int w, float *out, int oh, int ow);

#endif
