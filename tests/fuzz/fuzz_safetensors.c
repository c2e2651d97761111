/*
 * fuzz_safetensors.c - the .safetensors reader (header length, JSON header, tensor table, data spans).
 * Input: a whole file. Property: every tensor st_open hands out lies inside the file, and its byte
 * span matches its shape and dtype; lookups by name find each tensor.
 */
#include <stdlib.h>

#include "fuzzutil.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file f;
    sd_error err = {0};
    if (st_open(&f, fuzz_file("in.safetensors", data, size), &err) < 0) return 0;
    for (int i = 0; i < f.n; i++) {
        const sd_tensor *t = &f.tensors[i];
        fuzz_sink += fuzz_touch_tensor(t);
        if ((const unsigned char *)t->data < f.data ||
            (t->nbytes && (const unsigned char *)t->data + t->nbytes > f.data + f.data_size))
            fuzz_fail("tensor '%s' outside the data area", t->name);
        if (st_find(&f, t->name) != t) fuzz_fail("st_find does not find '%s'", t->name);
    }
    (void)st_metadata(&f, "format");
    st_close(&f);
    return 0;
}
