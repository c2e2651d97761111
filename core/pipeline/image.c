#include "image.h"

#include <math.h>
#include <stddef.h>

void image_u8_to_tensor(const uint8_t *rgb, int h, int w, float *out) {
    int hw = h * w;
    for (int i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++) {
            float v = (float)rgb[3 * i + c] / 255.0f;
            out[c * hw + i] = 2.0f * v - 1.0f;
        }
}

void image_tensor_to_u8_ex(const float *x, int h, int w, float *hwc, uint8_t *rgb) {
    int hw = h * w;
    for (int i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++) {
            float v = x[c * hw + i] / 2.0f + 0.5f;
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            if (hwc) hwc[3 * i + c] = v;
            rgb[3 * i + c] = (uint8_t)rintf(v * 255.0f); /* default rounding mode: half to even */
        }
}

void image_tensor_to_u8(const float *x, int h, int w, uint8_t *rgb) { image_tensor_to_u8_ex(x, h, w, NULL, rgb); }

void image_mask_binarize(const uint8_t *gray, int h, int w, float *mask) {
    for (int i = 0; i < h * w; i++) mask[i] = (float)gray[i] / 255.0f < 0.5f ? 0.0f : 1.0f;
}

void image_apply_mask(const float *img, const float *mask, int h, int w, float *out) {
    int hw = h * w;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < hw; i++) out[c * hw + i] = mask[i] < 0.5f ? img[c * hw + i] : 0.0f;
}

void image_resize_nearest(const float *in, int c, int h, int w, float *out, int oh, int ow) {
    for (int k = 0; k < c; k++)
        for (int y = 0; y < oh; y++) {
            int sy = (int)((int64_t)y * h / oh);
            for (int x = 0; x < ow; x++) {
                int sx = (int)((int64_t)x * w / ow);
                out[((int64_t)k * oh + y) * ow + x] = in[((int64_t)k * h + sy) * w + sx];
            }
        }
}
