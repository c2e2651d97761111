#include "html_unescape.h"

#include <string.h>

/* Compares the code points name[0..n) with the ASCII string s like strcmp on bytes. */
static int cmp_cps_ascii(const uint32_t *name, size_t n, const char *s) {
    for (size_t i = 0; i < n; i++) {
        uint32_t c = (unsigned char)s[i]; /* s[i] == 0 sorts first, as a shorter string should */
        if (name[i] != c) return name[i] < c ? -1 : 1;
    }
    return s[n] == 0 ? 0 : -1;
}

/* The HTML5 entity named exactly name[0..n), or NULL. */
static const html_entity *entity_find(const uint32_t *name, size_t n) {
    int lo = 0, hi = html_entities_n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = cmp_cps_ascii(name, n, html_entities[mid].name);
        if (c == 0) return &html_entities[mid];
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

static int is_dropped_cp(uint32_t cp) {
    for (int i = 0; i < html_dropped_cps_n; i++)
        if (cp >= html_dropped_cps[i].first && cp <= html_dropped_cps[i].last) return 1;
    return 0;
}

static int hex_value(uint32_t c) {
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
    return -1;
}

/* Excluded from the name part of a reference by Python's pattern [^\t\n\f <&#;]. */
static int is_name_stop(uint32_t c) {
    return c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';';
}

/*
 * A numeric reference at in[i] == '&', in[i+1] == '#': writes its replacement
 * (0 or 1 code point) and returns the input length consumed, or 0 when there
 * is no reference here.
 */
static size_t numeric_ref(const uint32_t *in, size_t n, size_t i, uint32_t *out, size_t *m) {
    size_t j = i + 2;
    int base = 10;
    if (j < n && (in[j] == 'x' || in[j] == 'X')) {
        base = 16;
        j++;
    }
    size_t start = j;
    uint64_t num = 0; /* saturates above 0x10FFFF: every such value gives U+FFFD */
    while (j < n) {
        int d = base == 16 ? hex_value(in[j]) : (in[j] >= '0' && in[j] <= '9' ? (int)(in[j] - '0') : -1);
        if (d < 0) break;
        if (num <= 0x10FFFF) num = num * (uint64_t)base + (uint64_t)d;
        j++;
    }
    if (j == start) return 0;
    if (j < n && in[j] == ';') j++;
    uint32_t cp;
    if (num < 0xA0 && html_charref_fixed[num]) {
        cp = html_charref_fixups[num];
    } else if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
        cp = 0xFFFD;
    } else if (is_dropped_cp((uint32_t)num)) {
        return j - i;
    } else {
        cp = (uint32_t)num;
    }
    out[(*m)++] = cp;
    return j - i;
}

/* A named reference at in[i] == '&' (as numeric_ref). */
static size_t named_ref(const uint32_t *in, size_t n, size_t i, uint32_t *out, size_t *m) {
    size_t s = i + 1, j = s;
    while (j < n && j - s < 32 && !is_name_stop(in[j])) j++;
    if (j == s) return 0;
    if (j < n && in[j] == ';') j++;
    size_t len = j - s; /* the candidate name, ';' included when present */
    const html_entity *e = entity_find(in + s, len);
    size_t keep_from = j;
    /* else the longest prefix of at least 2 characters that is a name */
    for (size_t x = len - 1; !e && x >= 2; x--) {
        e = entity_find(in + s, x);
        keep_from = s + x;
    }
    if (!e) return 0;
    out[(*m)++] = e->cp[0];
    if (e->cp[1]) out[(*m)++] = e->cp[1];
    for (size_t k = keep_from; k < j; k++) out[(*m)++] = in[k];
    return j - i;
}

size_t html_unescape(const uint32_t *in, size_t n, uint32_t *out) {
    size_t m = 0, i = 0;
    while (i < n) {
        if (in[i] == '&' && i + 1 < n) {
            size_t used = in[i + 1] == '#' ? numeric_ref(in, n, i, out, &m) : named_ref(in, n, i, out, &m);
            if (used) {
                i += used;
                continue;
            }
        }
        out[m++] = in[i++];
    }
    return m;
}
