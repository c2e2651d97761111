#include "tokenizer_text.h"

#include <stdlib.h>
#include <string.h>

#include "ftfy.h"
#include "html_unescape.h"
#include "unicode.h"

/* Python's str.strip(): the bounds [*a, *b) without leading/trailing isspace() characters. */
static void strip_pyspace(const uint32_t *s, size_t n, size_t *a, size_t *b) {
    size_t i = 0, j = n;
    while (i < j && (uni_class(s[i]) & UNI_PYSPACE)) i++;
    while (j > i && (uni_class(s[j - 1]) & UNI_PYSPACE)) j--;
    *a = i;
    *b = j;
}

int tokenizer_text_clean(const char *text, size_t len, uint32_t **out, size_t *n, size_t *n_bad, sd_error *err) {
    *out = NULL;
    *n = 0;
    /* lower-casing may lengthen the text (U+0130 -> "i\u0307"); 3 per code point is the table's bound */
    /* far beyond any prompt (the text encoder sees 75 tokens); bounds the working memory to ~30 bytes per byte */
    if (len > TOKENIZER_MAX_PROMPT_BYTES)
        return sd_err(err, SD_EINPUT, "tokenizer: prompt of %zu bytes is too long (the limit is %d bytes)", len,
                      TOKENIZER_MAX_PROMPT_BYTES);
    size_t cap = 3 * len + 1;
    uint32_t *a = malloc(cap * sizeof *a);
    uint32_t *b = malloc(cap * sizeof *b);
    if (!a || !b) {
        free(a);
        free(b);
        return sd_err(err, SD_ENOMEM, "tokenizer: out of memory for a prompt of %zu bytes", len);
    }
    size_t m = uni_utf8_decode_replace((const unsigned char *)text, len, a, n_bad);
    /* basic_clean: ftfy.fix_text (the subset in ftfy.h; m <= len, so its 3m fit), html.unescape twice */
    m = ftfy_fix_text(a, m, b);
    m = html_unescape(b, m, a);
    m = html_unescape(a, m, b);
    memcpy(a, b, m * sizeof *a);

    /* basic_clean's strip, then whitespace_clean: every regex-\s run -> one space, strip again */
    size_t lo, hi;
    strip_pyspace(a, m, &lo, &hi);
    size_t k = 0;
    for (size_t i = lo; i < hi;) {
        if (uni_class(a[i]) & UNI_RSPACE) {
            while (i < hi && (uni_class(a[i]) & UNI_RSPACE)) i++;
            b[k++] = ' ';
        } else {
            b[k++] = a[i++];
        }
    }
    strip_pyspace(b, k, &lo, &hi);

    m = uni_lower_str(b + lo, hi - lo, a);
    free(b);
    *out = a;
    *n = m;
    return 0;
}

/* 1 if cps[i..] starts with the ASCII pattern p under regex IGNORECASE. */
static int match_literal(const uint32_t *cps, size_t n, size_t i, const char *p) {
    size_t plen = strlen(p);
    if (n - i < plen) return 0;
    for (size_t k = 0; k < plen; k++)
        if (uni_ascii_fold(cps[i + k]) != (uint32_t)(unsigned char)p[k]) return 0;
    return 1;
}

/* Length of the contraction ('s 't 're 've 'm 'll 'd) at cps[i], or 0. */
static size_t match_contraction(const uint32_t *cps, size_t n, size_t i) {
    static const char *const forms[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    if (cps[i] != '\'') return 0;
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++)
        if (match_literal(cps, n, i, forms[f])) return strlen(forms[f]);
    return 0;
}

size_t tokenizer_text_split(const uint32_t *cps, size_t n, tokenizer_piece *pieces) {
    size_t np = 0, i = 0;
    while (i < n) {
        size_t len = 0;
        int kind = TOKENIZER_PIECE_WORD;
        unsigned c = uni_class(cps[i]);
        if (match_literal(cps, n, i, "<|startoftext|>")) {
            len = 15;
            kind = TOKENIZER_PIECE_BOS;
        } else if (match_literal(cps, n, i, "<|endoftext|>")) {
            len = 13;
            kind = TOKENIZER_PIECE_EOS;
        } else if ((len = match_contraction(cps, n, i)) > 0) {
        } else if (c & UNI_L) {
            while (i + len < n && (uni_class(cps[i + len]) & UNI_L)) len++;
        } else if (c & UNI_N) {
            len = 1;
        } else if (c & UNI_P) {
            while (i + len < n && (uni_class(cps[i + len]) & UNI_P)) len++;
        } else {
            i++; /* whitespace, or U+0345, which no alternative matches */
            continue;
        }
        /* SimpleTokenizer's cache short-cut only fires for the exact lower-case strings */
        if (kind != TOKENIZER_PIECE_WORD) {
            const char *exact = kind == TOKENIZER_PIECE_BOS ? "<|startoftext|>" : "<|endoftext|>";
            for (size_t k = 0; k < len; k++)
                if (cps[i + k] != (uint32_t)(unsigned char)exact[k]) kind = TOKENIZER_PIECE_WORD;
        }
        pieces[np].start = i;
        pieces[np].len = len;
        pieces[np].kind = kind;
        np++;
        i += len;
    }
    return np;
}
