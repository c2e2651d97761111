/*
 * html_unescape.h - Python's html.unescape on code points.
 *
 * SimpleTokenizer runs html.unescape twice over every prompt, so "&amp;" is
 * "&", "caf&eacute;" is "café" and "&#39;s" becomes the contraction "'s".
 * This is a faithful port, tables included (core/text/html_entities.c, generated
 * from Python 3.11's html module by scripts/gen-unicode-tables.py):
 *   - every "&" followed by one of: "#" digits, "#x"/"#X" hex digits, or 1-32
 *     characters other than tab, LF, FF, space, "<", "&", "#", ";" - each
 *     optionally followed by ";" - is a reference candidate;
 *   - numeric: 0x00..0x9F use the Windows-1252 fixups (0x80 -> U+20AC, 0 ->
 *     U+FFFD, ...), surrogates and values above 0x10FFFF give U+FFFD, the
 *     noncharacters/controls of html._invalid_codepoints give nothing;
 *   - named: all 2231 HTML5 names; if the whole candidate is not a name, the
 *     longest prefix (>= 2 characters) that is a name is replaced and the
 *     rest kept ("&ampfoo" -> "&foo"); otherwise the text stays as it is.
 */
#ifndef SD_HTML_UNESCAPE_H
#define SD_HTML_UNESCAPE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Unescapes in[0..n) into out, which needs room for n code points (the
 * result is never longer than the input); returns the output length. in and
 * out must not overlap.
 */
size_t html_unescape(const uint32_t *in, size_t n, uint32_t *out);

/* Generated tables (core/text/html_entities.c). */
typedef struct html_entity {
    const char *name; /* with or without the trailing ';', exactly as in html.entities.html5 */
    uint32_t cp[2];   /* replacement; cp[1] == 0 when it is one code point */
} html_entity;
typedef struct html_cp_run {
    uint32_t first, last;
} html_cp_run;

extern const html_entity html_entities[];
extern const int html_entities_n;
extern const uint32_t html_charref_fixups[0xA0];
extern const unsigned char html_charref_fixed[0xA0];
extern const html_cp_run html_dropped_cps[];
extern const int html_dropped_cps_n;

#endif
