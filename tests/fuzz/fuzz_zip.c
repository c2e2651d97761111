/*
 * fuzz_zip.c - the ZIP central-directory reader (core/formats/zipread.c) on bytes in memory: end
 * records, ZIP64, local headers, stored and deflated members. Every member is read with its CRC
 * checked; lookups by name must find each entry.
 */
#include <stdlib.h>

#include "fuzzutil.h"
#include "zipread.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sd_zip z;
    sd_error err = {0};
    if (sd_zip_open(&z, data, size, "fuzz.zip", &err) < 0) return 0;
    for (int i = 0; i < z.n; i++) {
        const sd_zip_entry *e = &z.entries[i];
        if (sd_zip_find(&z, e->name) != e) fuzz_fail("sd_zip_find does not find '%s'", e->name);
        const void *p;
        void *owned = NULL;
        if (sd_zip_read(&z, e, 1, &p, &owned, &err) < 0) continue;
        for (uint64_t k = 0; k < e->size; k++) fuzz_sink += ((const unsigned char *)p)[k];
        free(owned);
    }
    sd_zip_close(&z);
    return 0;
}
