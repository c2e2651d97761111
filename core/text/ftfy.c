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

/* uncurl_quotes on one code point. */
static uint32_t uncurl(uint32_t c) {
    if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) return '\'';
    if (c >= 0x201C && c <= 0x201F) return '"';
    return c;
}

/* fix_c1_controls: a C1 control U+0080-U+009F becomes the Windows-1252 character of its byte (kept where
 * Windows-1252 defines none, as ftfy's sloppy codec does). */
static uint32_t fix_c1(uint32_t c) {
    if (c >= 0x80 && c <= 0x9F && cp1252_high[c - 0x80]) return cp1252_high[c - 0x80];
    return c;
}

/* fix_character_width beyond fullwidth ASCII (U+FF01-U+FF5E -> U+0021-U+007E) and U+3000 -> space: the NFKC
 * form of every other U+FF5F-U+FFEF character that has one (halfwidth katakana, hangul and symbols, Unicode
 * 14.0 as in the reference's Python 3.11; U+FFE3 becomes two code points). */
static const struct {
    uint32_t from;
    uint32_t to[2];
} width_map[] = {
    {0xFF5F, {0x2985, 0x0000}}, {0xFF60, {0x2986, 0x0000}}, {0xFF61, {0x3002, 0x0000}}, {0xFF62, {0x300C, 0x0000}},
    {0xFF63, {0x300D, 0x0000}}, {0xFF64, {0x3001, 0x0000}}, {0xFF65, {0x30FB, 0x0000}}, {0xFF66, {0x30F2, 0x0000}},
    {0xFF67, {0x30A1, 0x0000}}, {0xFF68, {0x30A3, 0x0000}}, {0xFF69, {0x30A5, 0x0000}}, {0xFF6A, {0x30A7, 0x0000}},
    {0xFF6B, {0x30A9, 0x0000}}, {0xFF6C, {0x30E3, 0x0000}}, {0xFF6D, {0x30E5, 0x0000}}, {0xFF6E, {0x30E7, 0x0000}},
    {0xFF6F, {0x30C3, 0x0000}}, {0xFF70, {0x30FC, 0x0000}}, {0xFF71, {0x30A2, 0x0000}}, {0xFF72, {0x30A4, 0x0000}},
    {0xFF73, {0x30A6, 0x0000}}, {0xFF74, {0x30A8, 0x0000}}, {0xFF75, {0x30AA, 0x0000}}, {0xFF76, {0x30AB, 0x0000}},
    {0xFF77, {0x30AD, 0x0000}}, {0xFF78, {0x30AF, 0x0000}}, {0xFF79, {0x30B1, 0x0000}}, {0xFF7A, {0x30B3, 0x0000}},
    {0xFF7B, {0x30B5, 0x0000}}, {0xFF7C, {0x30B7, 0x0000}}, {0xFF7D, {0x30B9, 0x0000}}, {0xFF7E, {0x30BB, 0x0000}},
    {0xFF7F, {0x30BD, 0x0000}}, {0xFF80, {0x30BF, 0x0000}}, {0xFF81, {0x30C1, 0x0000}}, {0xFF82, {0x30C4, 0x0000}},
    {0xFF83, {0x30C6, 0x0000}}, {0xFF84, {0x30C8, 0x0000}}, {0xFF85, {0x30CA, 0x0000}}, {0xFF86, {0x30CB, 0x0000}},
    {0xFF87, {0x30CC, 0x0000}}, {0xFF88, {0x30CD, 0x0000}}, {0xFF89, {0x30CE, 0x0000}}, {0xFF8A, {0x30CF, 0x0000}},
    {0xFF8B, {0x30D2, 0x0000}}, {0xFF8C, {0x30D5, 0x0000}}, {0xFF8D, {0x30D8, 0x0000}}, {0xFF8E, {0x30DB, 0x0000}},
    {0xFF8F, {0x30DE, 0x0000}}, {0xFF90, {0x30DF, 0x0000}}, {0xFF91, {0x30E0, 0x0000}}, {0xFF92, {0x30E1, 0x0000}},
    {0xFF93, {0x30E2, 0x0000}}, {0xFF94, {0x30E4, 0x0000}}, {0xFF95, {0x30E6, 0x0000}}, {0xFF96, {0x30E8, 0x0000}},
    {0xFF97, {0x30E9, 0x0000}}, {0xFF98, {0x30EA, 0x0000}}, {0xFF99, {0x30EB, 0x0000}}, {0xFF9A, {0x30EC, 0x0000}},
    {0xFF9B, {0x30ED, 0x0000}}, {0xFF9C, {0x30EF, 0x0000}}, {0xFF9D, {0x30F3, 0x0000}}, {0xFF9E, {0x3099, 0x0000}},
    {0xFF9F, {0x309A, 0x0000}}, {0xFFA0, {0x1160, 0x0000}}, {0xFFA1, {0x1100, 0x0000}}, {0xFFA2, {0x1101, 0x0000}},
    {0xFFA3, {0x11AA, 0x0000}}, {0xFFA4, {0x1102, 0x0000}}, {0xFFA5, {0x11AC, 0x0000}}, {0xFFA6, {0x11AD, 0x0000}},
    {0xFFA7, {0x1103, 0x0000}}, {0xFFA8, {0x1104, 0x0000}}, {0xFFA9, {0x1105, 0x0000}}, {0xFFAA, {0x11B0, 0x0000}},
    {0xFFAB, {0x11B1, 0x0000}}, {0xFFAC, {0x11B2, 0x0000}}, {0xFFAD, {0x11B3, 0x0000}}, {0xFFAE, {0x11B4, 0x0000}},
    {0xFFAF, {0x11B5, 0x0000}}, {0xFFB0, {0x111A, 0x0000}}, {0xFFB1, {0x1106, 0x0000}}, {0xFFB2, {0x1107, 0x0000}},
    {0xFFB3, {0x1108, 0x0000}}, {0xFFB4, {0x1121, 0x0000}}, {0xFFB5, {0x1109, 0x0000}}, {0xFFB6, {0x110A, 0x0000}},
    {0xFFB7, {0x110B, 0x0000}}, {0xFFB8, {0x110C, 0x0000}}, {0xFFB9, {0x110D, 0x0000}}, {0xFFBA, {0x110E, 0x0000}},
    {0xFFBB, {0x110F, 0x0000}}, {0xFFBC, {0x1110, 0x0000}}, {0xFFBD, {0x1111, 0x0000}}, {0xFFBE, {0x1112, 0x0000}},
    {0xFFC2, {0x1161, 0x0000}}, {0xFFC3, {0x1162, 0x0000}}, {0xFFC4, {0x1163, 0x0000}}, {0xFFC5, {0x1164, 0x0000}},
    {0xFFC6, {0x1165, 0x0000}}, {0xFFC7, {0x1166, 0x0000}}, {0xFFCA, {0x1167, 0x0000}}, {0xFFCB, {0x1168, 0x0000}},
    {0xFFCC, {0x1169, 0x0000}}, {0xFFCD, {0x116A, 0x0000}}, {0xFFCE, {0x116B, 0x0000}}, {0xFFCF, {0x116C, 0x0000}},
    {0xFFD2, {0x116D, 0x0000}}, {0xFFD3, {0x116E, 0x0000}}, {0xFFD4, {0x116F, 0x0000}}, {0xFFD5, {0x1170, 0x0000}},
    {0xFFD6, {0x1171, 0x0000}}, {0xFFD7, {0x1172, 0x0000}}, {0xFFDA, {0x1173, 0x0000}}, {0xFFDB, {0x1174, 0x0000}},
    {0xFFDC, {0x1175, 0x0000}}, {0xFFE0, {0x00A2, 0x0000}}, {0xFFE1, {0x00A3, 0x0000}}, {0xFFE2, {0x00AC, 0x0000}},
    {0xFFE3, {0x0020, 0x0304}}, {0xFFE4, {0x00A6, 0x0000}}, {0xFFE5, {0x00A5, 0x0000}}, {0xFFE6, {0x20A9, 0x0000}},
    {0xFFE8, {0x2502, 0x0000}}, {0xFFE9, {0x2190, 0x0000}}, {0xFFEA, {0x2191, 0x0000}}, {0xFFEB, {0x2192, 0x0000}},
    {0xFFEC, {0x2193, 0x0000}}, {0xFFED, {0x25A0, 0x0000}}, {0xFFEE, {0x25CB, 0x0000}},
};

/* Writes c's fix_character_width form at out[*k]. */
static void push_width(uint32_t c, uint32_t *out, size_t *k) {
    if (c == 0x3000) c = ' ';
    else if (c >= 0xFF01 && c <= 0xFF5E) c -= 0xFEE0;
    else if (c >= 0xFF5F && c <= 0xFFEF) {
        size_t lo = 0, hi = sizeof width_map / sizeof *width_map;
        while (lo < hi) { /* binary search: the table is sorted */
            size_t mid = (lo + hi) / 2;
            if (width_map[mid].from < c) lo = mid + 1;
            else hi = mid;
        }
        if (lo < sizeof width_map / sizeof *width_map && width_map[lo].from == c) {
            out[(*k)++] = width_map[lo].to[0];
            if (width_map[lo].to[1]) out[(*k)++] = width_map[lo].to[1];
            return;
        }
    }
    out[(*k)++] = c;
}

/* remove_terminal_escapes: drops every ESC '[' (digits and ';')* letter; in place, returns the new length. */
static size_t remove_terminal_escapes(uint32_t *x, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (x[i] == 0x1B && i + 1 < n && x[i + 1] == '[') {
            size_t j = i + 2;
            while (j < n && ((x[j] >= '0' && x[j] <= '9') || x[j] == ';')) j++;
            if (j < n && ((x[j] >= 'a' && x[j] <= 'z') || (x[j] >= 'A' && x[j] <= 'Z'))) {
                i = j + 1;
                continue;
            }
        }
        x[k++] = x[i++];
    }
    return k;
}

/* remove_control_chars: U+0000-U+0008, U+000B, U+000E-U+001F, U+007F, U+206A-U+206F, U+FEFF, U+FFF9-U+FFFC. */
static int is_removed_control(uint32_t c) {
    return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
           c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

size_t ftfy_fix_text(const uint32_t *in, size_t n, uint32_t *out) {
    /* step 1 writes at most n code points at the end of out's 3n; the per-character fixes expand from there to
       its start (at most 3 per code point, never past the one being read); the last two only remove */
    uint32_t *mid = out + 2 * n;
    size_t m = fix_mojibake(in, n, mid), k = 0;
    for (size_t i = 0; i < m; i++) {
        uint32_t c = fix_c1(mid[i]);
        size_t l = 0;
        while (l < sizeof ligatures / sizeof *ligatures && ligatures[l].from != c) l++;
        if (l == sizeof ligatures / sizeof *ligatures) {
            size_t k0 = k;
            push_width(c, out, &k);
            for (size_t j = k0; j < k; j++) out[j] = uncurl(out[j]);
            continue;
        }
        for (int j = 0; j < 3 && ligatures[l].to[j]; j++) out[k++] = uncurl(ligatures[l].to[j]);
    }
    k = remove_terminal_escapes(out, k);
    size_t r = 0;
    for (size_t i = 0; i < k; i++)
        if (!is_removed_control(out[i])) out[r++] = out[i];
    return r;
}
