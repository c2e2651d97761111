/*
 * tokenizer_impl.h - the insides of tokenizer_bpe, shared by the tokenizer's
 * own files (tokenizer.c: tables, BPE, encode/decode; tokenizer_files.c:
 * reading and writing the file formats; tokenizer_tiny.c: the built-in
 * vocabulary). Nothing else should include it.
 */
#ifndef SD_TOKENIZER_IMPL_H
#define SD_TOKENIZER_IMPL_H

#include <pthread.h>
#include <stdint.h>

#include "strmap.h"
#include "tokenizer.h"

/* One entry of the merge table: the pair (a, b) of token ids merges into `merged` with priority `rank`. */
typedef struct tok_merge_slot {
    uint64_t key; /* ((a + 1) << 32) | (b + 1); 0 = empty */
    int32_t rank, merged;
} tok_merge_slot;

/* The special tokens by string; index with TOK_SPECIAL_*. */
enum { TOK_BOS = 0, TOK_EOS = 1, TOK_UNK = 2, TOK_PAD = 3, TOK_NSPECIAL = 4 };

struct tokenizer_bpe {
    char *label;            /* where it came from, for messages */

    int n_vocab;
    char **tokens;          /* [n_vocab] id -> token string (into token_buf) */
    char *token_buf;
    strmap vocab;           /* token string -> id (later id wins for duplicate strings, as in Python) */

    int n_merges;           /* merge lines read, in rank order */
    int32_t *merge_parts;   /* [n_merges][2] the ids of "a" and "b" of each line */
    tok_merge_slot *merge_table;
    uint64_t merge_cap;     /* power of two */

    uint32_t byte_sym[256]; /* GPT-2 bytes_to_unicode: byte -> code point of its symbol */
    int32_t byte_id[256];   /* id of the symbol of byte b, and of the symbol + "</w>" */
    int32_t byte_end_id[256];
    int16_t sym_byte[512];  /* inverse of byte_sym (symbols are < 512), -1 elsewhere */

    char *special[TOK_NSPECIAL]; /* token strings */
    int32_t special_id[TOK_NSPECIAL];

    pthread_mutex_t cache_lock;
    strmap cache;           /* word bytes -> offset of [count, ids...] in cache_pool */
    int32_t *cache_pool;
    size_t cache_len, cache_cap;
    size_t cache_max_words;  /* past either limit the cache starts over (tests lower them) */
    size_t cache_max_ids;
};

/* The 256 byte symbols of GPT-2's bytes_to_unicode, in its order (the order of ids 0..255 in CLIP). */
void tokenizer_byte_symbols(uint32_t sym_of_byte[256], uint8_t byte_order[256]);

/*
 * Builds a tokenizer from token strings (id = index) and merge lines ("a b",
 * rank = index). merges_where(i) names merge i in messages as
 * "<merges_file> line <i + first_line>". Special tokens get the CLIP defaults (id -1 where the
 * vocabulary lacks one; see tokenizer_check_specials).
 */
int tokenizer_from_tables(tokenizer_bpe **out, const char *label, char *const *tokens, int n_tokens,
                          const char *vocab_file, char *const *merges, int n_merges, const char *merges_file,
                          int first_line, sd_error *err);

/* Sets special token `which` (TOK_*) to the token string s; fails when the vocabulary lacks it. */
int tokenizer_set_special(tokenizer_bpe *tok, int which, const char *s, const char *where, sd_error *err);

/* Fails unless bos, eos and pad are tokens of the vocabulary (call after the special tokens are final). */
int tokenizer_check_specials(const tokenizer_bpe *tok, const char *where, sd_error *err);

/* 1 if merge line `rank` is the one in force for its pair (a later duplicate line overrides an earlier one). */
int tokenizer_merge_in_force(const tokenizer_bpe *tok, int rank);

#endif
