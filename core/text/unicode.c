#include "unicode.h"

unsigned uni_class(uint32_t cp) {
    if (cp > 0x10FFFF) return 0;
    /* last range whose start <= cp (ranges cover 0..0x10FFFF, the first starts at 0) */
    int lo = 0, hi = uni_class_ranges_n - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (uni_class_ranges[mid].start <= cp)
            lo = mid;
        else
            hi = mid - 1;
    }
    return uni_class_ranges[lo].flags;
}

int uni_lower_cp(uint32_t cp, uint32_t out[3]) {
    if (cp < 0x80) {
        out[0] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
        return 1;
    }
    for (int i = 0; i < uni_lower_multis_n; i++) {
        if (uni_lower_multis[i].cp == cp) {
            for (int k = 0; k < uni_lower_multis[i].n; k++) out[k] = uni_lower_multis[i].out[k];
            return uni_lower_multis[i].n;
        }
    }
    /* runs are sorted by `first` and do not overlap */
    int lo = 0, hi = uni_lower_runs_n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const uni_lower_run *r = &uni_lower_runs[mid];
        if (cp < r->first) {
            hi = mid - 1;
        } else if (cp > r->last) {
            lo = mid + 1;
        } else {
            out[0] = ((cp - r->first) % (uint32_t)r->stride == 0) ? (uint32_t)((int32_t)cp + r->delta) : cp;
            return 1;
        }
    }
    out[0] = cp;
    return 1;
}

/*
 * CPython's final-sigma rule: U+03A3 at in[i] lowers to U+03C2 when a cased
 * character precedes it (case-ignorables skipped) and no cased character
 * follows it (case-ignorables skipped); otherwise to U+03C3.
 */
static uint32_t lower_capital_sigma(const uint32_t *in, size_t n, size_t i) {
    size_t j = i;
    unsigned f = 0;
    while (j > 0) {
        f = uni_class(in[--j]);
        if (!(f & UNI_CASE_IGN)) break;
        f = 0;
    }
    if (!(f & UNI_CASED)) return 0x3C3;
    for (j = i + 1; j < n; j++) {
        f = uni_class(in[j]);
        if (!(f & UNI_CASE_IGN)) return (f & UNI_CASED) ? 0x3C3 : 0x3C2;
    }
    return 0x3C2;
}

size_t uni_lower_str(const uint32_t *in, size_t n, uint32_t *out) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == 0x3A3) {
            out[m++] = lower_capital_sigma(in, n, i);
            continue;
        }
        uint32_t tmp[3];
        int k = uni_lower_cp(in[i], tmp);
        for (int t = 0; t < k; t++) out[m++] = tmp[t];
    }
    return m;
}

uint32_t uni_ascii_fold(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    for (int i = 0; i < uni_ascii_folds_n; i++)
        if (uni_ascii_folds[i].cp == cp) return (uint32_t)(unsigned char)uni_ascii_folds[i].letter;
    return cp;
}

/*
 * Length of the well-formed sequence starting at s (1..4), or 0 when s[0]
 * cannot start one; *valid_prefix gets how many leading bytes fit a
 * well-formed sequence (Unicode table 3-7), which is what one U+FFFD replaces.
 */
static int utf8_scan(const unsigned char *s, size_t n, uint32_t *cp, size_t *valid_prefix) {
    unsigned char b0 = s[0];
    int len;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (b0 < 0x80) {
        *cp = b0;
        *valid_prefix = 1;
        return 1;
    } else if (b0 >= 0xC2 && b0 <= 0xDF) {
        len = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        len = 3;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        len = 4;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    } else {
        *valid_prefix = 1;
        return 0;
    }
    uint32_t c = b0 & (0x7F >> len);
    for (int k = 1; k < len; k++) {
        unsigned char lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
        if ((size_t)k >= n || s[k] < lo_k || s[k] > hi_k) {
            *valid_prefix = (size_t)k;
            return 0;
        }
        c = (c << 6) | (s[k] & 0x3F);
    }
    *cp = c;
    *valid_prefix = (size_t)len;
    return len;
}

size_t uni_utf8_decode_replace(const unsigned char *s, size_t n, uint32_t *out, size_t *n_bad) {
    size_t i = 0, m = 0, bad = 0;
    while (i < n) {
        uint32_t cp;
        size_t prefix;
        int len = utf8_scan(s + i, n - i, &cp, &prefix);
        if (len > 0) {
            out[m++] = cp;
            i += (size_t)len;
        } else {
            out[m++] = UNI_REPLACEMENT;
            bad++;
            i += prefix;
        }
    }
    if (n_bad) *n_bad = bad;
    return m;
}

int uni_utf8_is_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t prefix;
        int len = utf8_scan(s + i, n - i, &cp, &prefix);
        if (len == 0) return 0;
        i += (size_t)len;
    }
    return 1;
}

int uni_utf8_encode_cp(uint32_t cp, unsigned char out[4]) {
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}
