/*
 * tokenizer_text.h - the text half of the CLIP tokenizer: cleanup and the
 * split into words ("pieces") that BPE then encodes one by one.
 *
 * It follows OpenAI's SimpleTokenizer.encode:
 *
 *   text = whitespace_clean(basic_clean(text)).lower()
 *   pieces = regex.findall(pat, text)
 *
 * basic_clean = ftfy.fix_text, html.unescape twice, str.strip();
 * whitespace_clean = regex.sub(r"\s+", " "), str.strip();
 * pat = <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * with IGNORECASE.
 *
 * Deliberate differences (documented choices, not oversights):
 *  - ftfy.fix_text is applied only in part (core/text/ftfy.h says exactly
 *    which): common UTF-8-as-Windows-1252 mojibake, C1 controls, Latin
 *    ligatures, fullwidth/halfwidth forms, curly quotes, terminal escapes and
 *    control characters are fixed as ftfy does ("don’t" is "don't"); NFC
 *    normalization and ftfy's heuristic repairs are not. Every prompt of the
 *    golden set is unaffected either way.
 *  - Input is UTF-8 bytes rather than a Python str: invalid UTF-8 is replaced
 *    by U+FFFD exactly as bytes.decode("utf-8", "replace") would, and a NUL
 *    byte ends the text.
 * Everything else (html.unescape's full HTML5 table, Python's isspace and
 * full lower-casing with the final-sigma rule, regex's \s and letter/number
 * classes including their IGNORECASE quirks) is reproduced exactly; the
 * tables come from scripts/gen-unicode-tables.py.
 */
#ifndef SD_TOKENIZER_TEXT_H
#define SD_TOKENIZER_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Longest prompt accepted, in bytes (1 MiB). */
#define TOKENIZER_MAX_PROMPT_BYTES (1 << 20)

/*
 * Cleans UTF-8 text as above, up to the lower-casing. *out (caller frees)
 * gets the code points, *n their number; *n_bad (may be NULL) the number of
 * invalid UTF-8 sequences that were replaced by U+FFFD.
 */
int tokenizer_text_clean(const char *text, size_t len, uint32_t **out, size_t *n, size_t *n_bad, sd_error *err);

enum { TOKENIZER_PIECE_WORD = 0, TOKENIZER_PIECE_BOS = 1, TOKENIZER_PIECE_EOS = 2 };

typedef struct tokenizer_piece {
    size_t start, len; /* code points [start, start + len) of the cleaned text */
    int kind;          /* TOKENIZER_PIECE_*: BOS/EOS when the piece is exactly "<|startoftext|>"/"<|endoftext|>" */
} tokenizer_piece;

/*
 * Splits cleaned text into SimpleTokenizer's pieces (regex.findall with the
 * pattern above). pieces needs room for n entries (a piece is never empty);
 * returns how many were found.
 */
size_t tokenizer_text_split(const uint32_t *cps, size_t n, tokenizer_piece *pieces);

#endif
