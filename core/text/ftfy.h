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
 *   2. fix_c1_controls: a C1 control U+0080-U+009F left over becomes its
 *      Windows-1252 character ("\u0085" -> "…"; the five bytes
 *      Windows-1252 leaves undefined stay).
 *   3. fix_latin_ligatures: ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ -> ff fi fl ffi ffl ſt st,
 *      Ĳ ĳ -> IJ ij, ŉ -> ʼn, Ǆ ǅ ǆ Ǉ ǈ ǉ Ǌ ǋ ǌ Ǳ ǲ ǳ -> DŽ Dž dž LJ Lj lj NJ Nj nj DZ Dz dz
 *      (ftfy's whole table).
 *   4. fix_character_width: U+3000 -> space, fullwidth ASCII U+FF01-U+FF5E
 *      -> U+0021-U+007E ("（masterpiece：１．２）" -> "(masterpiece:1.2)"), and
 *      every other U+FF5F-U+FFEF character to its NFKC form (halfwidth
 *      katakana and hangul to the standard ones): ftfy's whole WIDTH_MAP.
 *   5. uncurl_quotes: U+02BC and U+2018-U+201B -> ', U+201C-U+201F -> "
 *      (ftfy's SINGLE_QUOTE_RE and DOUBLE_QUOTE_RE).
 *   6. remove_terminal_escapes: ESC [ digits-and-semicolons letter.
 *   7. remove_control_chars: U+0000-U+0008, U+000B, U+000E-U+001F, U+007F,
 *      U+206A-U+206F, U+FEFF, U+FFF9-U+FFFC are dropped.
 * Not covered: NFC normalization (a decomposed "e\u0301" stays two code
 * points here, ftfy composes it to "é"), ftfy's wider encoding repairs
 * (see 1), its own HTML unescaping (which it repeats until nothing changes;
 * basic_clean unescapes twice afterwards anyway, so only text escaped three
 * or more times differs), and ftfy's repetition of all steps until the text
 * stops changing (this runs them once). fix_line_breaks and fix_surrogates
 * cannot change the tokens: line breaks are whitespace to the tokenizer,
 * and invalid UTF-8 (surrogates included) is already U+FFFD.
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
