/* pil_resize.c - Pillow-compatible bicubic resampling of uint8 images (see pil_resize.h). */
#include "pil_resize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS 22 /* Pillow: 32 - 8 - 2 */
#define BICUBIC_SUPPORT 2.0

/* Pillow's bicubic kernel with a = -0.5. */
static double bicubic(double x) {
    const double a = -0.5;
    if (x < 0) x = -x;
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
}

/* Fixed-point taps of one axis: for output o, inputs lo[o] .. lo[o] + n[o] - 1 with weights k[o * ksize + i]. */
typedef struct pil_taps {
    int ksize;
    int *lo, *n;
    int32_t *k;
} pil_taps;

static void taps_free(pil_taps *t) {
    free(t->lo);
    free(t->n);
    free(t->k);
    memset(t, 0, sizeof *t);
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for resizing in -> out. */
static int taps_make(pil_taps *t, int in, int out, sd_error *err) {
    double scale = (double)in / out, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = BICUBIC_SUPPORT * filterscale, ss = 1.0 / filterscale;
    t->ksize = (int)ceil(support) * 2 + 1;
    t->lo = malloc(sizeof(int) * (size_t)out);
    t->n = malloc(sizeof(int) * (size_t)out);
    t->k = malloc(sizeof(int32_t) * (size_t)out * t->ksize);
    double *w = malloc(sizeof(double) * (size_t)t->ksize);
    if (!t->lo || !t->n || !t->k || !w) {
        free(w);
        taps_free(t);
        return sd_err(err, SD_ENOMEM, "out of memory resizing an image from %d to %d pixels", in, out);
    }
    for (int o = 0; o < out; o++) {
        double center = (o + 0.5) * scale;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        int n = hi - lo;
        double sum = 0;
        for (int i = 0; i < n; i++) {
            w[i] = bicubic((i + lo - center + 0.5) * ss);
            sum += w[i];
        }
        int32_t *k = t->k + (size_t)o * t->ksize;
        for (int i = 0; i < t->ksize; i++) {
            double v = i < n ? (sum != 0.0 ? w[i] / sum : w[i]) : 0.0;
            double f = v * (1 << PRECISION_BITS);
            k[i] = (int32_t)(v < 0 ? f - 0.5 : f + 0.5); /* truncation toward zero, as Pillow's (int) cast */
        }
        t->lo[o] = lo;
        t->n[o] = n;
    }
    free(w);
    return 0;
}

static uint8_t clip8(int64_t v) {
    v >>= PRECISION_BITS; /* arithmetic shift: negative sums stay negative */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* src: [h, w, C] -> dst: [h, ow, C] along x. */
static void pass_horizontal(uint8_t *dst, int ow, const uint8_t *src, int h, int w, int C, const pil_taps *t) {
    for (int y = 0; y < h; y++) {
        const uint8_t *row = src + (size_t)y * w * C;
        for (int o = 0; o < ow; o++) {
            const int32_t *k = t->k + (size_t)o * t->ksize;
            const uint8_t *p = row + (size_t)t->lo[o] * C;
            for (int c = 0; c < C; c++) {
                int64_t s = 1 << (PRECISION_BITS - 1);
                for (int i = 0; i < t->n[o]; i++) s += (int64_t)p[(size_t)i * C + c] * k[i];
                dst[((size_t)y * ow + o) * C + c] = clip8(s);
            }
        }
    }
}

/* src: [h, w, C] -> dst: [oh, w, C] along y. */
static void pass_vertical(uint8_t *dst, int oh, const uint8_t *src, int w, int C, const pil_taps *t) {
    size_t stride = (size_t)w * C;
    for (int o = 0; o < oh; o++) {
        const int32_t *k = t->k + (size_t)o * t->ksize;
        const uint8_t *p = src + (size_t)t->lo[o] * stride;
        for (size_t x = 0; x < stride; x++) {
            int64_t s = 1 << (PRECISION_BITS - 1);
            for (int i = 0; i < t->n[o]; i++) s += (int64_t)p[(size_t)i * stride + x] * k[i];
            dst[(size_t)o * stride + x] = clip8(s);
        }
    }
}

int pil_resize_bicubic(uint8_t *dst, int oh, int ow, const uint8_t *src, int h, int w, int channels, sd_error *err) {
    if (h <= 0 || w <= 0 || oh <= 0 || ow <= 0 || channels < 1 || channels > 4)
        return sd_err(err, SD_EINPUT, "resize: cannot resize a %dx%d image with %d channels to %dx%d", w, h,
                      channels, ow, oh);
    if (oh == h && ow == w) {
        memcpy(dst, src, (size_t)h * w * channels);
        return 0;
    }
    pil_taps th = {0}, tv = {0};
    uint8_t *mid = NULL;
    int rc = 0;
    if (ow != w && (rc = taps_make(&th, w, ow, err)) < 0) return rc;
    if (oh != h && (rc = taps_make(&tv, h, oh, err)) < 0) goto out;
    if (ow != w && oh != h) {
        mid = malloc((size_t)h * ow * channels);
        if (!mid) {
            rc = sd_err(err, SD_ENOMEM, "out of memory resizing a %dx%d image", w, h);
            goto out;
        }
        pass_horizontal(mid, ow, src, h, w, channels, &th);
        pass_vertical(dst, oh, mid, ow, channels, &tv);
    } else if (ow != w) {
        pass_horizontal(dst, ow, src, h, w, channels, &th);
    } else {
        pass_vertical(dst, oh, src, w, channels, &tv);
    }
out:
    free(mid);
    taps_free(&th);
    taps_free(&tv);
    return rc;
}
