/*
 * ftfy.h - the part of ftfy.fix_text's default behaviour (ftfy 6) that CLIP
 * prompts meet, on code points. SimpleTokenizer's basic_clean runs
 * ftfy.fix_text before html.unescape; so does tokenizer_text_clean.
 *
 * Covered, in ftfy's order:
 *   1. fix_encoding, for the common mojibake of UTF-8 read as Windows-1252
 *      or Latin-1: a lead character U+00C2-U+00C5 (Â Ã Ä Å) followed by one
 *      continuation character, or U+00E2 (â) followed by two, where a
 *      continuation character is one whose Windows-1252 byte (Latin-1 for
 *      U+0080-U+009F and the five bytes Windows-1252 leaves undefined, as
 *      ftfy's "sloppy" codec) is 0x80-0xBF. The bytes are decoded as UTF-8:
 *      "cafÃ©" -> "café", "Â°" -> "°", "Å‚" -> "ł", "â€™" -> "’",
 *      "â€œ"/"â€\x9d" -> "“"/"”", "â‚¬" -> "€", "â„¢" -> "™". That is
 *      U+0080-U+017F and U+2000-U+2FFF; ftfy's wider repairs (whole-text
 *      re-decoding guided by its "badness" heuristic, MacRoman/cp437,
 *      3- and 4-byte sequences of other scripts, "Ã " with a plain space) are not.
 *   2. fix_latin_ligatures: ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ -> ff fi fl ffi ffl ſt st,
 *      Ĳ ĳ -> IJ ij, ŉ -> ʼn, Ǆ ǅ ǆ Ǉ ǈ ǉ Ǌ ǋ ǌ Ǳ ǲ ǳ -> DŽ Dž dž LJ Lj lj NJ Nj nj DZ Dz dz
 *      (ftfy's whole table).
 *   3. uncurl_quotes: U+02BC and U+2018-U+201B -> ', U+201C-U+201F -> "
 *      (ftfy's SINGLE_QUOTE_RE and DOUBLE_QUOTE_RE).
 * Not covered: fix_character_width (fullwidth forms), NFC normalization,
 * terminal escapes, C1 controls outside mojibake, line breaks, surrogates,
 * control-character removal and ftfy's own HTML unescaping (basic_clean
 * unescapes twice afterwards anyway).
 */
#ifndef SD_FTFY_H
#define SD_FTFY_H

#include <stddef.h>
#include <stdint.h>

/*
 * Fixes in[0..n) into out, which needs room for 3 * n code points (a
 * ligature becomes up to three letters); returns the output length. in and
 * out must not overlap.
 */
size_t ftfy_fix_text(const uint32_t *in, size_t n, uint32_t *out);

#endif
