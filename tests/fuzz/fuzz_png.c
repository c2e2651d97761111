/*
 * fuzz_png.c - PNG reading as init images (RGB), masks (gray) and --real folders (RGB) use it, and
 * the text chunks (A1111 `parameters`) read back. Input: a whole file. Property: a decoded image has
 * a positive size within SD_PNG_MAX_SIDE, and the RGB and gray decodes agree on it.
 */
#include <stdlib.h>

#include "fuzzutil.h"
#include "pngio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("in.png", data, size);
    sd_error err = {0};
    uint8_t *rgb = NULL, *gray = NULL;
    int w = 0, h = 0, gw = 0, gh = 0;
    int rc = sd_png_read_rgb(path, &rgb, &w, &h, &err);
    if (rc == 0) {
        if (w < 1 || h < 1 || w > SD_PNG_MAX_SIDE || h > SD_PNG_MAX_SIDE) fuzz_fail("decoded size %dx%d", w, h);
        for (size_t i = 0; i < (size_t)w * (size_t)h * 3; i++) fuzz_sink += rgb[i];
        free(rgb);
    }
    int rcg = sd_png_read_gray(path, &gray, &gw, &gh, &err);
    if (rcg == 0) {
        if (rc != 0 || gw != w || gh != h) fuzz_fail("gray decode %dx%d (rc %d) vs RGB %dx%d (rc %d)", gw, gh, rcg, w, h, rc);
        free(gray);
    } else if (rc == 0 && rcg != SD_ENOMEM) {
        fuzz_fail("RGB decode succeeded, gray failed: %s", err.msg);
    }
    sd_png_text *texts = NULL;
    int ntext = 0;
    if (sd_png_read_text(path, &texts, &ntext, &err) == 0) {
        (void)sd_png_text_get(texts, ntext, "parameters");
        sd_png_text_free(texts, ntext);
    }
    return 0;
}
