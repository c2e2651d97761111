/*
 * fuzz_tokenizer.c - any bytes as a prompt: the CLIP tokenizer's text cleanup (UTF-8 repair, ftfy
 * subset, HTML unescape, whitespace), pre-tokenizer and BPE, padding and decoding, and the A1111
 * prompt syntax (attention weights, BREAK, <lora:...> tags, 75-token chunks). The tokenizer is the
 * project's built-in small vocabulary (no files needed). Properties: ids are in the vocabulary,
 * padded encodings start with BOS, and each A1111 chunk is BOS + 75 + EOS.
 */
#include <stdlib.h>

#include "fuzzutil.h"
#include "prompt_a1111.h"
#include "tokenizer.h"

static tokenizer_bpe *tok;

/* Learning the small vocabulary takes a second or two: done once, before the timed runs. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    sd_error err = {0};
    if (tokenizer_build_tiny(&tok, 400, &err) < 0) fuzz_fail("tokenizer_build_tiny: %s", err.msg);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sd_error err = {0};
    char *text = fuzz_strndup(data, size);
    int vocab = tokenizer_vocab_size(tok);
    int32_t *ids = NULL;
    int n = 0;
    if (tokenizer_encode(tok, text, &ids, &n, &err) == 0) {
        for (int i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= vocab) fuzz_fail("id %d outside the vocabulary (%d)", ids[i], vocab);
        char *back = NULL;
        if (tokenizer_decode(tok, ids, n, &back, &err) == 0) free(back);
        free(ids);
    }
    int32_t padded[77];
    int max_len = 2 + (size ? data[0] % 76 : 0);
    if (tokenizer_encode_padded(tok, text, padded, max_len, NULL, &err) == 0 && padded[0] != tokenizer_bos_id(tok))
        fuzz_fail("padded encoding does not start with BOS");

    char *stripped = NULL;
    a1111_net *nets = NULL;
    int n_nets = 0;
    if (a1111_extract_networks(text, &stripped, &nets, &n_nets, &err) == 0) {
        a1111_nets_free(nets, n_nets);
        a1111_chunks ch = {0};
        if (a1111_tokenize_line(tok, stripped, &ch, &err) == 0) {
            for (int c = 0; c < ch.n; c++)
                if (ch.ids[c * A1111_CHUNK_IDS] != tokenizer_bos_id(tok)) fuzz_fail("chunk %d without BOS", c);
            a1111_chunks_free(&ch);
        }
        free(stripped);
    }
    a1111_frag *frags = NULL;
    int nf = 0;
    if (a1111_parse_attention(text, &frags, &nf, &err) == 0) {
        if (nf < 1) fuzz_fail("parse_attention gave %d fragments", nf);
        a1111_frags_free(frags, nf);
    }
    free(text);
    return 0;
}
