#include "ftfy.h"

/* Windows-1252's characters for bytes 0x80-0x9F; 0 where it defines none (then the byte is the Latin-1 C1 control). */
static const uint16_t cp1252_high[32] = {
    0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0,      0x017D, 0,
    0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178,
};

/* The byte 0x80-0xBF that c stands for in sloppy Windows-1252 or Latin-1, or -1. */
static int continuation_byte(uint32_t c) {
    if (c >= 0x80 && c <= 0xBF) return (int)c; /* Latin-1 (C1 controls included) and Windows-1252 0xA0-0xBF */
    for (int i = 0; i < 32; i++)
        if (cp1252_high[i] && cp1252_high[i] == c) return 0x80 + i;
    return -1;
}

/* Step 1: UTF-8 mojibake of U+0080-U+017F (lead Â Ã Ä Å) and U+2000-U+2FFF (lead â). */
static size_t fix_mojibake(const uint32_t *in, size_t n, uint32_t *out) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c = in[i];
        if (c >= 0xC2 && c <= 0xC5 && i + 1 < n) {
            int b1 = continuation_byte(in[i + 1]);
            if (b1 >= 0) {
                out[k++] = ((c & 0x1F) << 6) | (uint32_t)(b1 & 0x3F);
                i += 2;
                continue;
            }
        }
        if (c == 0xE2 && i + 2 < n) {
            int b1 = continuation_byte(in[i + 1]), b2 = continuation_byte(in[i + 2]);
            if (b1 >= 0 && b2 >= 0) {
                out[k++] = (0x2u << 12) | ((uint32_t)(b1 & 0x3F) << 6) | (uint32_t)(b2 & 0x3F);
                i += 3;
                continue;
            }
        }
        out[k++] = c;
        i++;
    }
    return k;
}

/* ftfy's LIGATURES table (chardata.py). */
static const struct {
    uint32_t from;
    uint32_t to[3];
} ligatures[] = {
    {0x0132, {'I', 'J'}},         {0x0133, {'i', 'j'}},         {0x0149, {0x02BC, 'n'}},      {0x01C4, {'D', 0x017D}},
    {0x01C5, {'D', 0x017E}},      {0x01C6, {'d', 0x017E}},      {0x01C7, {'L', 'J'}},         {0x01C8, {'L', 'j'}},
    {0x01C9, {'l', 'j'}},         {0x01CA, {'N', 'J'}},         {0x01CB, {'N', 'j'}},         {0x01CC, {'n', 'j'}},
    {0x01F1, {'D', 'Z'}},         {0x01F2, {'D', 'z'}},         {0x01F3, {'d', 'z'}},         {0xFB00, {'f', 'f'}},
    {0xFB01, {'f', 'i'}},         {0xFB02, {'f', 'l'}},         {0xFB03, {'f', 'f', 'i'}},    {0xFB04, {'f', 'f', 'l'}},
    {0xFB05, {0x017F, 't'}},      {0xFB06, {'s', 't'}},
};

/* Step 3 on one code point. */
static uint32_t uncurl(uint32_t c) {
    if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) return '\'';
    if (c >= 0x201C && c <= 0x201F) return '"';
    return c;
}

size_t ftfy_fix_text(const uint32_t *in, size_t n, uint32_t *out) {
    /* step 1 writes at most n code points at the end of out's 3n, steps 2 and 3 expand from there to its start */
    uint32_t *mid = out + 2 * n;
    size_t m = fix_mojibake(in, n, mid), k = 0;
    for (size_t i = 0; i < m; i++) {
        uint32_t c = mid[i];
        size_t l = 0;
        while (l < sizeof ligatures / sizeof *ligatures && ligatures[l].from != c) l++;
        if (l == sizeof ligatures / sizeof *ligatures) {
            out[k++] = uncurl(c);
            continue;
        }
        for (int j = 0; j < 3 && ligatures[l].to[j]; j++) out[k++] = uncurl(ligatures[l].to[j]);
    }
    return k;
}
