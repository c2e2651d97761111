/*
 * bench-pngs: writes N deterministic 64x64 RGB PNGs for scripts/bench-metrics.sh,
 * much faster than rendering them: each image is a few coloured blobs on a
 * gradient, from an LCG seeded by (set, index). Set 1 ("fake") is drawn a
 * little differently from set 0 ("real"), so the metrics are not trivial.
 *
 *     cc -O2 -o bench-pngs scripts/bench-pngs.c $(pkg-config --cflags --libs libpng) -lm
 *     ./bench-pngs OUT_DIR N SET
 */
#include <math.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define S 64

static uint64_t lcg_state;
static double uniform(void) { /* [0, 1) */
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(lcg_state >> 11) / 9007199254740992.0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: bench-pngs OUT_DIR N SET\n");
        return 2;
    }
    int n = atoi(argv[2]), set = atoi(argv[3]);
    static unsigned char rgb[S * S * 3];
    for (int i = 0; i < n; i++) {
        lcg_state = 0x9E3779B97F4A7C15ULL * (uint64_t)(2 * i + set + 1);
        double base[3], grad[3];
        for (int c = 0; c < 3; c++) {
            base[c] = 40 + 120 * uniform();
            grad[c] = (uniform() - 0.5) * (set ? 160 : 100);
        }
        double img[S * S * 3];
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                for (int c = 0; c < 3; c++) img[(y * S + x) * 3 + c] = base[c] + grad[c] * (x + y) / (2.0 * S);
        int blobs = 2 + (int)(4 * uniform());
        for (int b = 0; b < blobs; b++) {
            double cx = S * uniform(), cy = S * uniform(), r = 4 + (set ? 14 : 10) * uniform(), col[3];
            for (int c = 0; c < 3; c++) col[c] = 255 * uniform() - 100;
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++) {
                    double w = exp(-((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (2 * r * r));
                    for (int c = 0; c < 3; c++) img[(y * S + x) * 3 + c] += w * col[c];
                }
        }
        for (int k = 0; k < S * S * 3; k++) {
            double v = img[k] + 12 * (uniform() - 0.5); /* a little pixel noise */
            rgb[k] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%06d.png", argv[1], i);
        png_image im = {.version = PNG_IMAGE_VERSION, .width = S, .height = S, .format = PNG_FORMAT_RGB};
        if (!png_image_write_to_file(&im, path, 0, rgb, 0, NULL)) {
            fprintf(stderr, "bench-pngs: %s: %s\n", path, im.message);
            return 1;
        }
    }
    return 0;
}
