/*
 * imgfit.h - an 8-bit RGB picture scaled to fit a box (Pillow's bicubic, core/eval/pil_resize.h),
 * keeping its aspect ratio: the report's thumbnails and the cells of `sdrender grid`.
 */
#ifndef SD_IMGFIT_H
#define SD_IMGFIT_H

#include <stdint.h>

#include "err.h"

/* src: [h, w, 3] -> *dst: [*oh, *ow, 3] (caller frees) whose longer side is box (shorter: rounded,
 * at least 1). upscale 0: a picture that already fits is copied at its size. */
int imgfit_scale(const uint8_t *src, int w, int h, int box, int upscale, uint8_t **dst, int *ow, int *oh,
                 sd_error *err);

/* Reads the PNG src, writes its thumbnail (longer side at most box, no upscaling) to dst as PNG. */
int imgfit_thumbnail(const char *src, const char *dst, int box, sd_error *err);

#endif
