/*
 * fuzz_pickle.c - the restricted unpickler (core/formats/pickle.c) on bytes in memory: every opcode,
 * memo, marks, nested and cyclic containers. Like the legacy .pth format, pickles are read one after
 * the other while they succeed; each tree is described (which walks it).
 */
#include "fuzzutil.h"
#include "pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t off = 0;
    for (int k = 0; k < 8 && off < size; k++) {
        pk_doc doc;
        size_t used = 0;
        sd_error err = {0};
        if (pk_load(&doc, data + off, size - off, "fuzz.pkl", &used, &err) < 0) break;
        if (used == 0 || used > size - off) fuzz_fail("pk_load consumed %zu of %zu bytes", used, size - off);
        char buf[256];
        (void)pk_describe(doc.root, buf, sizeof buf);
        (void)pk_dict_get(doc.root, "state_dict");
        pk_doc_free(&doc);
        off += used;
    }
    return 0;
}
