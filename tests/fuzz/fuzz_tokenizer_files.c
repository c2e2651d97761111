/*
 * fuzz_tokenizer_files.c - a tokenizer folder from strangers: vocab.json, merges.txt and the optional
 * special_tokens_map.json and tokenizer_config.json (tokenizer_load_dir), then a prompt through it.
 * Input: the files' texts separated by "\n%%\n", in that order, then the prompt; a file whose part
 * is missing is absent from the folder.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzzutil.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *names[] = {"vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"};
    const uint8_t *parts[5];
    size_t lens[5];
    int n = fuzz_split(data, size, parts, lens, 5);
    char path[1024];
    for (int i = 0; i < 4; i++) {
        if (i < n) {
            fuzz_file(names[i], parts[i], lens[i]);
        } else {
            snprintf(path, sizeof path, "%s/%s", fuzz_dir(), names[i]);
            unlink(path);
        }
    }
    tokenizer_bpe *tok = NULL;
    sd_error err = {0};
    if (tokenizer_load_dir(&tok, fuzz_dir(), &err) < 0) return 0;
    char *prompt = n == 5 ? fuzz_strndup(parts[4], lens[4]) : fuzz_strndup("a photo of a cat", 16);
    int32_t ids[77];
    int vocab = tokenizer_vocab_size(tok);
    if (tokenizer_encode_padded(tok, prompt, ids, 77, NULL, &err) == 0)
        for (int i = 0; i < 77; i++)
            if (ids[i] < 0 || ids[i] >= vocab) fuzz_fail("id %d outside the vocabulary (%d)", ids[i], vocab);
    free(prompt);
    tokenizer_free(tok);
    return 0;
}
