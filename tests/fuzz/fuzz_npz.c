/*
 * fuzz_npz.c - NumPy .npz archives (sd_npz_open: the zip, each .npy header, dtypes, shapes) and, for
 * the input taken as one plain .npy image, sd_npz_parse_npy. Property: every array view matches
 * its shape and dtype and can be read whole.
 */
#include "fuzzutil.h"
#include "npz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sd_error err = {0};
    sd_tensor t;
    if (sd_npz_parse_npy(data, size, "fuzz.npy", &t, &err) == 0) fuzz_sink += fuzz_touch_tensor(&t);
    sd_npz z;
    if (sd_npz_open(&z, fuzz_file("in.npz", data, size), &err) < 0) return 0;
    for (int i = 0; i < z.n; i++) fuzz_sink += fuzz_touch_tensor(&z.arrays[i]);
    const sd_tensor *mu;
    int64_t any = -1;
    (void)sd_npz_get(&z, "mu", SD_F64, 1, &any, &mu, &err);
    sd_npz_close(&z);
    return 0;
}
