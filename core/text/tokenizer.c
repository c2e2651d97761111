/*
 * tokenizer.c - CLIP's BPE: the tables, the merge loop, encode and decode.
 * File formats are in tokenizer_files.c, the built-in vocabulary in
 * tokenizer_tiny.c, text cleanup and splitting in tokenizer_text.c.
 */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer_text.h"
#include "unicode.h"

/* Default word cache limits: past either, the cache starts over (SimpleTokenizer's grows without bound). */
#define CACHE_MAX_WORDS 100000
#define CACHE_MAX_IDS (4u << 20)

static const char *const special_defaults[TOK_NSPECIAL] = {"<|startoftext|>", "<|endoftext|>", "<|endoftext|>",
                                                           "<|endoftext|>"};
static const char *const special_names[TOK_NSPECIAL] = {"bos_token", "eos_token", "unk_token", "pad_token"};

void tokenizer_byte_symbols(uint32_t sym_of_byte[256], uint8_t byte_order[256]) {
    /* printable Latin-1 bytes stand for themselves; the other 68 get 256, 257, ... in byte order */
    int k = 0, extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        if (printable) {
            sym_of_byte[b] = (uint32_t)b;
            byte_order[k++] = (uint8_t)b;
        }
    }
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        if (!printable) {
            sym_of_byte[b] = (uint32_t)(256 + extra++);
            byte_order[k++] = (uint8_t)b;
        }
    }
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t merge_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1); }

/* The slot of pair (a, b) in the merge table, or the empty slot where it would go. */
static tok_merge_slot *merge_slot(const tokenizer_bpe *t, uint64_t key) {
    uint64_t mask = t->merge_cap - 1;
    for (uint64_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        tok_merge_slot *s = &t->merge_table[i];
        if (s->key == key || s->key == 0) return s;
    }
}

int tokenizer_merge_in_force(const tokenizer_bpe *tok, int rank) {
    const int32_t *p = &tok->merge_parts[2 * (size_t)rank];
    const tok_merge_slot *s = merge_slot(tok, merge_key(p[0], p[1]));
    return s->key != 0 && s->rank == rank;
}

void tokenizer_free(tokenizer_bpe *tok) {
    if (!tok) return;
    free(tok->label);
    free(tok->tokens);
    free(tok->token_buf);
    strmap_free(&tok->vocab);
    free(tok->merge_parts);
    free(tok->merge_table);
    for (int i = 0; i < TOK_NSPECIAL; i++) free(tok->special[i]);
    pthread_mutex_destroy(&tok->cache_lock);
    strmap_free(&tok->cache);
    free(tok->cache_pool);
    free(tok);
}

int tokenizer_set_special(tokenizer_bpe *tok, int which, const char *s, const char *where, sd_error *err) {
    int32_t id;
    if (!strmap_get(&tok->vocab, s, strlen(s), &id))
        return sd_err(err, SD_EINPUT, "%s: %s '%s' is not in the vocabulary of %s", where, special_names[which], s,
                      tok->label);
    char *copy = strdup(s);
    if (!copy) return sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
    free(tok->special[which]);
    tok->special[which] = copy;
    tok->special_id[which] = id;
    return 0;
}

int tokenizer_check_specials(const tokenizer_bpe *tok, const char *where, sd_error *err) {
    for (int i = 0; i < TOK_NSPECIAL; i++) {
        if (i == TOK_UNK || tok->special_id[i] >= 0) continue; /* unk is never produced: every byte has a symbol */
        return sd_err(err, SD_EINPUT, "%s: %s '%s' is not in the vocabulary of %s", where, special_names[i],
                      tok->special[i], tok->label);
    }
    return 0;
}

int tokenizer_set_pad(tokenizer_bpe *tok, const char *token, sd_error *err) {
    return tokenizer_set_special(tok, TOK_PAD, token, "tokenizer_set_pad", err);
}

/* Copies the token strings into one buffer and indexes them (id -> string, string -> id). */
static int set_vocab(tokenizer_bpe *t, char *const *tokens, int n, const char *vocab_file, sd_error *err) {
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(tokens[i]);
        if (len == 0) return sd_err(err, SD_EINPUT, "%s: token %d is the empty string", vocab_file, i);
        if (!uni_utf8_is_valid((const unsigned char *)tokens[i], len))
            return sd_err(err, SD_EINPUT, "%s: token %d is not valid UTF-8", vocab_file, i);
        total += len + 1;
    }
    t->tokens = malloc((size_t)(n ? n : 1) * sizeof *t->tokens);
    t->token_buf = malloc(total ? total : 1);
    if (!t->tokens || !t->token_buf) return sd_err(err, SD_ENOMEM, "%s: out of memory for %d tokens", vocab_file, n);
    t->n_vocab = n;
    char *p = t->token_buf;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(tokens[i]);
        memcpy(p, tokens[i], len + 1);
        t->tokens[i] = p;
        p += len + 1;
        if (strmap_put(&t->vocab, t->tokens[i], len, i) < 0)
            return sd_err(err, SD_ENOMEM, "%s: out of memory for %d tokens", vocab_file, n);
    }
    return 0;
}

/* Finds the ids of the 512 byte symbols (with and without "</w>"), which every word starts from. */
static int set_byte_symbols(tokenizer_bpe *t, const char *vocab_file, sd_error *err) {
    uint8_t order[256];
    tokenizer_byte_symbols(t->byte_sym, order);
    for (int i = 0; i < 512; i++) t->sym_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        unsigned char s[16];
        int len = uni_utf8_encode_cp(t->byte_sym[b], s);
        t->sym_byte[t->byte_sym[b]] = (int16_t)b;
        if (!strmap_get(&t->vocab, s, (size_t)len, &t->byte_id[b]))
            return sd_err(err, SD_EINPUT, "%s: the byte symbol '%.*s' (byte 0x%02X) is missing; a CLIP vocabulary "
                          "has all 256 byte symbols", vocab_file, len, (const char *)s, b);
        memcpy(s + len, "</w>", 4);
        if (!strmap_get(&t->vocab, s, (size_t)len + 4, &t->byte_end_id[b]))
            return sd_err(err, SD_EINPUT, "%s: the byte symbol '%.*s' (byte 0x%02X) is missing; a CLIP vocabulary "
                          "has all 256 byte symbols, also with </w>", vocab_file, len + 4, (const char *)s, b);
    }
    return 0;
}

/* Splits a merge line "a b" (spaces, tabs or a trailing CR around them) into its two fields. */
static int split_merge(const char *line, const char **a, size_t *alen, const char **b, size_t *blen) {
    const char *f[3];
    size_t fl[3];
    int nf = 0;
    for (const char *p = line; *p;) {
        while (*p == ' ' || *p == '\t' || *p == '\r') p++;
        if (!*p) break;
        const char *s = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\r') p++;
        if (nf == 3) return 0;
        f[nf] = s;
        fl[nf++] = (size_t)(p - s);
    }
    if (nf != 2) return 0;
    *a = f[0], *alen = fl[0], *b = f[1], *blen = fl[1];
    return 1;
}

/* Builds the merge table: pair of ids -> (rank, id of the joined token); a later duplicate line wins. */
static int set_merges(tokenizer_bpe *t, char *const *merges, int n, const char *merges_file, int first_line,
                      sd_error *err) {
    t->n_merges = n;
    t->merge_cap = 16;
    while (t->merge_cap < 2 * (uint64_t)n) t->merge_cap *= 2;
    t->merge_parts = malloc(2 * (size_t)(n ? n : 1) * sizeof *t->merge_parts);
    t->merge_table = calloc(t->merge_cap, sizeof *t->merge_table);
    if (!t->merge_parts || !t->merge_table) return sd_err(err, SD_ENOMEM, "%s: out of memory for %d merges", merges_file, n);
    char *joined = NULL;
    size_t joined_cap = 0;
    int rc = 0;
    for (int r = 0; r < n && rc == 0; r++) {
        const char *a, *b;
        size_t alen, blen;
        int32_t ida, idb, idab;
        long line = (long)r + first_line;
        if (!split_merge(merges[r], &a, &alen, &b, &blen)) {
            rc = sd_err(err, SD_EINPUT, "%s line %ld: expected two tokens separated by a space, got '%.80s'",
                        merges_file, line, merges[r]);
        } else if (!strmap_get(&t->vocab, a, alen, &ida) || !strmap_get(&t->vocab, b, blen, &idb)) {
            int first_missing = !strmap_get(&t->vocab, a, alen, NULL);
            rc = sd_err(err, SD_EINPUT, "%s line %ld: '%.*s' is not in the vocabulary (%s)", merges_file, line,
                        (int)(first_missing ? alen : blen), first_missing ? a : b, t->label);
        } else {
            if (alen + blen > joined_cap) {
                joined_cap = 2 * (alen + blen);
                char *nj = realloc(joined, joined_cap);
                if (!nj) {
                    rc = sd_err(err, SD_ENOMEM, "%s: out of memory", merges_file);
                    break;
                }
                joined = nj;
            }
            memcpy(joined, a, alen);
            memcpy(joined + alen, b, blen);
            if (!strmap_get(&t->vocab, joined, alen + blen, &idab)) {
                rc = sd_err(err, SD_EINPUT, "%s line %ld: '%.*s %.*s' makes '%.*s', which is not in the vocabulary (%s)",
                            merges_file, line, (int)alen, a, (int)blen, b, (int)(alen + blen), joined, t->label);
            } else {
                t->merge_parts[2 * (size_t)r] = ida;
                t->merge_parts[2 * (size_t)r + 1] = idb;
                tok_merge_slot *s = merge_slot(t, merge_key(ida, idb));
                s->key = merge_key(ida, idb);
                s->rank = r;
                s->merged = idab;
            }
        }
    }
    free(joined);
    return rc;
}

int tokenizer_from_tables(tokenizer_bpe **out, const char *label, char *const *tokens, int n_tokens,
                          const char *vocab_file, char *const *merges, int n_merges, const char *merges_file,
                          int first_line, sd_error *err) {
    *out = NULL;
    tokenizer_bpe *t = calloc(1, sizeof *t);
    if (!t) return sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
    pthread_mutex_init(&t->cache_lock, NULL);
    strmap_init(&t->vocab);
    strmap_init(&t->cache);
    t->cache_max_words = CACHE_MAX_WORDS;
    t->cache_max_ids = CACHE_MAX_IDS;
    t->label = strdup(label);
    int rc = t->label ? 0 : sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
    if (rc == 0) rc = set_vocab(t, tokens, n_tokens, vocab_file, err);
    if (rc == 0) rc = set_byte_symbols(t, vocab_file, err);
    if (rc == 0) rc = set_merges(t, merges, n_merges, merges_file, first_line, err);
    /* CLIP's defaults where the vocabulary has them; a folder's own files may name others (tokenizer_check_specials) */
    for (int i = 0; i < TOK_NSPECIAL && rc == 0; i++) {
        t->special_id[i] = -1;
        if (strmap_get(&t->vocab, special_defaults[i], strlen(special_defaults[i]), NULL))
            rc = tokenizer_set_special(t, i, special_defaults[i], vocab_file, err);
        else if (!(t->special[i] = strdup(special_defaults[i])))
            rc = sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
    }
    if (rc < 0) {
        tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* Rank and result of merging ids a and b; 0 when the pair has no merge. */
static int merge_lookup(const tokenizer_bpe *t, int32_t a, int32_t b, int32_t *rank, int32_t *merged) {
    uint64_t key = merge_key(a, b);
    const tok_merge_slot *s = merge_slot(t, key);
    if (s->key != key) return 0;
    *rank = s->rank;
    *merged = s->merged;
    return 1;
}

/* Rank of the pair (a, b) and the id it merges into; INT32_MAX when the pair has no merge. */
static int32_t pair_rank(const tokenizer_bpe *t, int32_t a, int32_t b, int32_t *merged) {
    int32_t rank;
    return merge_lookup(t, a, b, &rank, merged) ? rank : INT32_MAX;
}

/*
 * BPE of one word: bytes[0..n) (n >= 1) -> ids in out (room for n); returns
 * the count. scratch has room for 3n ids. Each round merges every
 * occurrence of the lowest-ranked adjacent pair, left to right, exactly as
 * SimpleTokenizer.bpe does. rk[i] / mg[i] keep the rank and result of the
 * pair (sym[i], sym[i+1]) so that a round only looks up the pairs it changed:
 * a round costs O(length) integer compares, not O(length) hash lookups.
 */
static int bpe_word(const tokenizer_bpe *t, const unsigned char *bytes, int n, int32_t *out, int32_t *scratch) {
    int32_t *sym = scratch, *rk = scratch + n, *mg = scratch + 2 * (size_t)n;
    for (int i = 0; i < n; i++) sym[i] = i == n - 1 ? t->byte_end_id[bytes[i]] : t->byte_id[bytes[i]];
    for (int i = 0; i + 1 < n; i++) rk[i] = pair_rank(t, sym[i], sym[i + 1], &mg[i]);
    int m = n;
    while (m > 1) {
        int32_t best = INT32_MAX;
        for (int i = 0; i + 1 < m; i++)
            if (rk[i] < best) best = rk[i];
        if (best == INT32_MAX) break;
        /* in place: output k never passes input i, and rk/mg[k - 1] is written only once it is known */
        int k = 0, prev_copied = 0, prev_old = -1;
        for (int i = 0; i < m;) {
            int copied;
            int old = i;
            if (i + 1 < m && rk[i] == best) {
                sym[k] = mg[i];
                copied = 0;
                i += 2;
            } else {
                sym[k] = sym[i];
                copied = 1;
                i += 1;
            }
            if (k > 0) {
                if (prev_copied && copied) {
                    rk[k - 1] = rk[prev_old];
                    mg[k - 1] = mg[prev_old];
                } else {
                    rk[k - 1] = pair_rank(t, sym[k - 1], sym[k], &mg[k - 1]);
                }
            }
            prev_copied = copied;
            prev_old = old;
            k++;
        }
        m = k;
    }
    memcpy(out, sym, (size_t)m * sizeof *out);
    return m;
}

/* Caches the ids of a word; a full cache is emptied first. Called with cache_lock held. */
static void cache_store(tokenizer_bpe *t, const unsigned char *word, size_t len, const int32_t *ids, int n) {
    if (t->cache.count >= t->cache_max_words || t->cache_len + (size_t)n + 1 > t->cache_max_ids) {
        strmap_clear(&t->cache);
        t->cache_len = 0;
    }
    if (t->cache_len + (size_t)n + 1 > t->cache_cap) {
        size_t ncap = t->cache_cap ? t->cache_cap : 4096;
        while (ncap < t->cache_len + (size_t)n + 1) ncap *= 2;
        int32_t *np = realloc(t->cache_pool, ncap * sizeof *np);
        if (!np) return; /* caching is an optimisation: skip it */
        t->cache_pool = np;
        t->cache_cap = ncap;
    }
    if (strmap_put(&t->cache, word, len, (int32_t)t->cache_len) < 0) return;
    t->cache_pool[t->cache_len] = n;
    memcpy(t->cache_pool + t->cache_len + 1, ids, (size_t)n * sizeof *ids);
    t->cache_len += (size_t)n + 1;
}

/* A growable array of ids. */
typedef struct id_vec {
    int32_t *v;
    size_t n, cap;
} id_vec;

static int vec_reserve(id_vec *v, size_t extra) {
    if (v->n + extra <= v->cap) return 0;
    size_t ncap = v->cap ? v->cap : 64;
    while (ncap < v->n + extra) ncap *= 2;
    int32_t *nv = realloc(v->v, ncap * sizeof *nv);
    if (!nv) return SD_ENOMEM;
    v->v = nv;
    v->cap = ncap;
    return 0;
}

/* Appends the BPE ids of one word (its UTF-8 bytes), through the cache. */
static int encode_word(tokenizer_bpe *t, const unsigned char *word, int len, id_vec *out, int32_t *scratch) {
    int32_t off;
    pthread_mutex_lock(&t->cache_lock);
    if (strmap_get(&t->cache, word, (size_t)len, &off)) {
        int n = t->cache_pool[off];
        int rc = vec_reserve(out, (size_t)n);
        if (rc == 0) {
            memcpy(out->v + out->n, t->cache_pool + off + 1, (size_t)n * sizeof(int32_t));
            out->n += (size_t)n;
        }
        pthread_mutex_unlock(&t->cache_lock);
        return rc;
    }
    pthread_mutex_unlock(&t->cache_lock);
    if (vec_reserve(out, (size_t)len) < 0) return SD_ENOMEM;
    int n = bpe_word(t, word, len, out->v + out->n, scratch);
    pthread_mutex_lock(&t->cache_lock);
    cache_store(t, word, (size_t)len, out->v + out->n, n);
    pthread_mutex_unlock(&t->cache_lock);
    out->n += (size_t)n;
    return 0;
}

/* Encodes into a growable vector (the shared part of tokenizer_encode and tokenizer_encode_padded). */
static int encode_vec(tokenizer_bpe *tok, const char *text, id_vec *out, sd_error *err) {
    uint32_t *cps = NULL;
    size_t ncp = 0;
    int rc = tokenizer_text_clean(text, strlen(text), &cps, &ncp, NULL, err);
    if (rc < 0) return rc;
    tokenizer_piece *pieces = malloc((ncp ? ncp : 1) * sizeof *pieces);
    /* a piece of k code points has at most 4k bytes */
    unsigned char *word = malloc(4 * ncp + 1);
    int32_t *scratch = malloc(3 * (4 * ncp + 1) * sizeof *scratch);
    if (!pieces || !word || !scratch) rc = sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
    size_t np = rc == 0 ? tokenizer_text_split(cps, ncp, pieces) : 0;
    for (size_t p = 0; p < np && rc == 0; p++) {
        int len = 0;
        for (size_t k = 0; k < pieces[p].len; k++) len += uni_utf8_encode_cp(cps[pieces[p].start + k], word + len);
        int32_t id;
        if (pieces[p].kind != TOKENIZER_PIECE_WORD && strmap_get(&tok->vocab, word, (size_t)len, &id)) {
            /* "<|startoftext|>" / "<|endoftext|>" typed in the prompt are the special tokens themselves */
            if (vec_reserve(out, 1) == 0)
                out->v[out->n++] = id;
            else
                rc = SD_ENOMEM;
        } else {
            rc = encode_word(tok, word, len, out, scratch);
        }
        if (rc == SD_ENOMEM) sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
    }
    free(cps);
    free(pieces);
    free(word);
    free(scratch);
    return rc;
}

int tokenizer_encode(tokenizer_bpe *tok, const char *text, int32_t **ids, int *n, sd_error *err) {
    *ids = NULL;
    *n = 0;
    id_vec v = {0};
    int rc = encode_vec(tok, text, &v, err);
    if (rc == 0 && v.n > INT32_MAX) rc = sd_err(err, SD_EINPUT, "tokenizer: prompt gives more than 2^31 tokens");
    if (rc < 0) {
        free(v.v);
        return rc;
    }
    *ids = v.v;
    *n = (int)v.n;
    return 0;
}

int tokenizer_encode_padded(tokenizer_bpe *tok, const char *text, int32_t *ids, int max_len, int *n_tokens,
                            sd_error *err) {
    if (n_tokens) *n_tokens = 0;
    if (max_len < 2) return sd_err(err, SD_EINPUT, "tokenizer: max_len %d leaves no room for bos and eos", max_len);
    id_vec v = {0};
    int rc = encode_vec(tok, text, &v, err);
    if (rc < 0) {
        free(v.v);
        return rc;
    }
    size_t keep = v.n < (size_t)(max_len - 2) ? v.n : (size_t)(max_len - 2);
    ids[0] = tok->special_id[TOK_BOS];
    if (keep) memcpy(ids + 1, v.v, keep * sizeof *ids);
    ids[keep + 1] = tok->special_id[TOK_EOS];
    for (size_t i = keep + 2; i < (size_t)max_len; i++) ids[i] = tok->special_id[TOK_PAD];
    if (n_tokens) *n_tokens = v.n > INT32_MAX ? INT32_MAX : (int)v.n;
    free(v.v);
    return 0;
}

int tokenizer_decode(const tokenizer_bpe *tok, const int32_t *ids, int n, char **text, sd_error *err) {
    *text = NULL;
    size_t nbytes = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->n_vocab)
            return sd_err(err, SD_EINPUT, "tokenizer: id %d at position %d is outside the vocabulary (0..%d)",
                          (int)ids[i], i, tok->n_vocab - 1);
        nbytes += strlen(tok->tokens[ids[i]]);
    }
    /* symbols -> bytes (one byte per symbol, so at most nbytes) */
    unsigned char *raw = malloc(nbytes + 1);
    uint32_t *cps = malloc((nbytes + 1) * sizeof *cps);
    if (!raw || !cps) {
        free(raw);
        free(cps);
        return sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
    }
    size_t nraw = 0;
    for (int i = 0; i < n; i++) {
        const char *s = tok->tokens[ids[i]];
        size_t len = strlen(s);
        size_t m = uni_utf8_decode_replace((const unsigned char *)s, len, cps, NULL);
        for (size_t k = 0; k < m; k++) {
            if (cps[k] >= 512 || tok->sym_byte[cps[k]] < 0) {
                free(raw);
                free(cps);
                return sd_err(err, SD_EINPUT, "tokenizer: token %d ('%s') has a character that is not a byte symbol",
                              (int)ids[i], s);
            }
            raw[nraw++] = (unsigned char)tok->sym_byte[cps[k]];
        }
    }
    /* bytes -> text with U+FFFD for invalid UTF-8 (3 bytes each at most), then "</w>" -> " " */
    size_t ncp = uni_utf8_decode_replace(raw, nraw, cps, NULL);
    char *outs = malloc(4 * ncp + 1);
    if (!outs) {
        free(raw);
        free(cps);
        return sd_err(err, SD_ENOMEM, "tokenizer: out of memory");
    }
    size_t o = 0;
    for (size_t k = 0; k < ncp;) {
        if (k + 4 <= ncp && cps[k] == '<' && cps[k + 1] == '/' && cps[k + 2] == 'w' && cps[k + 3] == '>') {
            outs[o++] = ' ';
            k += 4;
        } else {
            o += (size_t)uni_utf8_encode_cp(cps[k++], (unsigned char *)outs + o);
        }
    }
    outs[o] = 0;
    free(raw);
    free(cps);
    *text = outs;
    return 0;
}

int tokenizer_vocab_size(const tokenizer_bpe *tok) { return tok->n_vocab; }

int tokenizer_merges_count(const tokenizer_bpe *tok) {
    int n = 0;
    for (int r = 0; r < tok->n_merges; r++) n += tokenizer_merge_in_force(tok, r);
    return n;
}

int32_t tokenizer_bos_id(const tokenizer_bpe *tok) { return tok->special_id[TOK_BOS]; }
int32_t tokenizer_eos_id(const tokenizer_bpe *tok) { return tok->special_id[TOK_EOS]; }
int32_t tokenizer_pad_id(const tokenizer_bpe *tok) { return tok->special_id[TOK_PAD]; }

const char *tokenizer_token(const tokenizer_bpe *tok, int32_t id) {
    return id >= 0 && id < tok->n_vocab ? tok->tokens[id] : NULL;
}

int32_t tokenizer_token_id(const tokenizer_bpe *tok, const char *token) {
    int32_t id;
    return strmap_get(&tok->vocab, token, strlen(token), &id) ? id : -1;
}
