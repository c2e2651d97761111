/*
 * fuzz_ckpt.c - PyTorch checkpoints as sd_ckpt_open reads them: the zip format (data.pkl + data/KEY
 * members) and the legacy .pth/.ckpt format (five pickles, then storages). Input: a whole file.
 * Property: every tensor handed out lies in its storage and matches its shape and dtype.
 */
#include "ckpt.h"
#include "fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)sd_ckpt_sniff(data, size);
    sd_ckpt c;
    sd_error err = {0};
    if (sd_ckpt_open(&c, fuzz_file("in.ckpt", data, size), &err) < 0) return 0;
    for (int i = 0; i < c.all.n; i++) {
        fuzz_sink += fuzz_touch_tensor(&c.all.tensors[i]);
        if (sd_ckpt_find(&c, c.all.tensors[i].name) != &c.all.tensors[i])
            fuzz_fail("sd_ckpt_find does not find '%s'", c.all.tensors[i].name);
    }
    sd_weights w;
    if (sd_ckpt_to_weights(&w, &c, "model.", "fuzz", &err) == 0) sd_weights_free(&w);
    sd_ckpt_close(&c);
    return 0;
}
