/* Scaling pictures into a box, and thumbnails as PNG files. */
#include "imgfit.h"

#include <stdlib.h>
#include <string.h>

#include "pil_resize.h"
#include "pngio.h"

int imgfit_scale(const uint8_t *src, int w, int h, int box, int upscale, uint8_t **dst, int *ow, int *oh,
                 sd_error *err) {
    *dst = NULL;
    if (w <= 0 || h <= 0 || box <= 0) return sd_err(err, SD_EINPUT, "cannot scale a %dx%d picture into %d px", w, h, box);
    int tw = w, th = h;
    if (upscale || w > box || h > box) {
        if (w >= h) tw = box, th = (int)((double)h * box / w + 0.5);
        else th = box, tw = (int)((double)w * box / h + 0.5);
        if (tw < 1) tw = 1;
        if (th < 1) th = 1;
    }
    uint8_t *out = malloc((size_t)tw * (size_t)th * 3);
    if (!out) return sd_err(err, SD_ENOMEM, "out of memory");
    int rc = 0;
    if (tw == w && th == h) memcpy(out, src, (size_t)w * (size_t)h * 3);
    else rc = pil_resize_bicubic(out, th, tw, src, h, w, 3, err);
    if (rc < 0) {
        free(out);
        return rc;
    }
    *dst = out;
    *ow = tw;
    *oh = th;
    return 0;
}

int imgfit_thumbnail(const char *src, const char *dst, int box, sd_error *err) {
    uint8_t *rgb = NULL, *small = NULL;
    int w, h, tw, th;
    int rc = sd_png_read_rgb(src, &rgb, &w, &h, err);
    if (rc == 0) rc = imgfit_scale(rgb, w, h, box, 0, &small, &tw, &th, err);
    if (rc == 0) rc = sd_png_write_rgb(dst, small, tw, th, NULL, 0, err);
    free(rgb);
    free(small);
    return rc;
}
