/* prompt_a1111.c - A1111's prompt parser, chunker and extra-network tags (see prompt_a1111.h). */
#include "prompt_a1111.h"

#include <stdlib.h>
#include <string.h>

#include "unicode.h"

/* ---- a growable fragment list ------------------------------------------ */

typedef struct frag_list {
    a1111_frag *f;
    int n, cap;
} frag_list;

static int frags_push(frag_list *l, const char *s, size_t len, double w) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        a1111_frag *g = realloc(l->f, (size_t)cap * sizeof *g);
        if (!g) return SD_ENOMEM;
        l->f = g;
        l->cap = cap;
    }
    char *t = malloc(len + 1);
    if (!t) return SD_ENOMEM;
    memcpy(t, s, len);
    t[len] = 0;
    l->f[l->n++] = (a1111_frag){t, w};
    return 0;
}

void a1111_frags_free(a1111_frag *f, int n) {
    for (int i = 0; f && i < n; i++) free(f[i].text);
    free(f);
}

/* ---- code points at byte positions -------------------------------------- */

/* The code point starting at s[i] (s has n bytes); *len gets its byte length (1 for a bad byte). */
static uint32_t cp_at(const unsigned char *s, size_t n, size_t i, size_t *len) {
    size_t l = s[i] < 0x80 ? 1 : s[i] >= 0xF0 ? 4 : s[i] >= 0xE0 ? 3 : s[i] >= 0xC0 ? 2 : 1;
    if (i + l > n) l = 1;
    uint32_t cps[4], cp; /* an invalid sequence decodes to up to l code points, one per byte */
    if (uni_utf8_decode_replace(s + i, l, cps, NULL) != 1) cp = UNI_REPLACEMENT, l = 1;
    else cp = cps[0];
    *len = l;
    return cp;
}

/* The code point ending just before s[i]. */
static uint32_t cp_before(const unsigned char *s, size_t i, size_t *len) {
    size_t j = i - 1;
    while (j > 0 && i - j < 4 && (s[j] & 0xC0) == 0x80) j--;
    uint32_t cp = cp_at(s, i, j, len);
    if (j + *len != i) return *len = 1, s[i - 1];
    return cp;
}

/* Python's re \w (letters, digits, underscore) and \s. */
static int is_word(uint32_t cp) { return cp == '_' || (uni_class(cp) & (UNI_L | UNI_N)); }
static int is_space(uint32_t cp) { return (uni_class(cp) & UNI_PYSPACE) != 0; }

/*
 * re.split(r"\s*\bBREAK\b\s*", text) appended as A1111 does: the parts with
 * weight 1.0, a ["BREAK", -1] between each two.
 */
static int push_split_break(frag_list *l, const char *text, size_t n) {
    const unsigned char *s = (const unsigned char *)text;
    size_t start = 0, i = 0;
    int rc;
    while (i + 5 <= n) {
        size_t cl;
        int ok = !memcmp(s + i, "BREAK", 5) && (i == 0 || !is_word(cp_before(s, i, &cl))) &&
                 (i + 5 == n || !is_word(cp_at(s, n, i + 5, &cl)));
        if (!ok) {
            i++;
            continue;
        }
        size_t a = i, b = i + 5;
        while (a > start) {
            uint32_t cp = cp_before(s, a, &cl);
            if (!is_space(cp)) break;
            a -= cl;
        }
        while (b < n) {
            uint32_t cp = cp_at(s, n, b, &cl);
            if (!is_space(cp)) break;
            b += cl;
        }
        if ((rc = frags_push(l, text + start, a - start, 1.0)) < 0 || (rc = frags_push(l, "BREAK", 5, -1.0)) < 0)
            return rc;
        start = i = b;
    }
    return frags_push(l, text + start, n - start, 1.0);
}

/* ---- parse_prompt_attention --------------------------------------------- */

/* The length of a match of ":\s*([+-]?[.\d]+)\s*\)" at s (0: none); *num / *num_len get the group. */
static size_t match_weight(const char *s, const char **num, size_t *num_len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), i = 1, cl;
    if (s[0] != ':') return 0;
    while (i < n && is_space(cp_at(u, n, i, &cl))) i += cl;
    size_t a = i;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    size_t d = i;
    while (i < n && (s[i] == '.' || (s[i] >= '0' && s[i] <= '9'))) i++;
    if (i == d) return 0;
    *num = s + a;
    *num_len = i - a;
    while (i < n && is_space(cp_at(u, n, i, &cl))) i += cl;
    return i < n && s[i] == ')' ? i + 1 : 0;
}

/* Python's float() of a [+-]?[.\d]+ string: digits with at most one dot and at least one digit. */
static int py_float(const char *s, size_t n, double *out) {
    char buf[64];
    int dots = 0, digits = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') dots++;
        else if (s[i] >= '0' && s[i] <= '9') digits++;
    }
    if (dots > 1 || !digits || n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    *out = strtod(buf, NULL);
    return 0;
}

static void multiply_range(frag_list *l, int start, double m) {
    for (int p = start; p < l->n; p++) l->f[p].weight *= m;
}

/* A stack of positions in the result list. */
typedef struct pos_stack {
    int *v;
    int n, cap;
} pos_stack;

static int stack_push(pos_stack *s, int v) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        int *g = realloc(s->v, (size_t)cap * sizeof *g);
        if (!g) return SD_ENOMEM;
        s->v = g;
        s->cap = cap;
    }
    s->v[s->n++] = v;
    return 0;
}

int a1111_parse_attention(const char *text, a1111_frag **out, int *n, sd_error *err) {
    const double round_mult = 1.1, square_mult = 1 / 1.1;
    frag_list l = {0};
    pos_stack rnd = {0}, sq = {0};
    int rc = 0;
    size_t len = strlen(text), i = 0;
    *out = NULL;
    *n = 0;
    while (rc == 0 && i < len) {
        char c = text[i];
        const char *num;
        size_t num_len, m;
        if (c == '\\') {
            char d = text[i + 1];
            int pair = d == '(' || d == ')' || d == '[' || d == ']' || d == '\\';
            rc = frags_push(&l, text + i + 1, pair ? 1 : 0, 1.0);
            i += pair ? 2 : 1;
        } else if (c == '(') {
            rc = stack_push(&rnd, l.n);
            i++;
        } else if (c == '[') {
            rc = stack_push(&sq, l.n);
            i++;
        } else if (c == ':' && (m = match_weight(text + i, &num, &num_len)) > 0) {
            if (rnd.n) {
                double w;
                if (py_float(num, num_len, &w) < 0) {
                    rc = sd_err(err, SD_EINPUT, "prompt: '%.*s' is not a number (in '(...:%.*s)')", (int)num_len, num,
                                (int)num_len, num);
                    break;
                }
                multiply_range(&l, rnd.v[--rnd.n], w);
            } else {
                rc = push_split_break(&l, text + i, m);
            }
            i += m;
        } else if (c == ')' && rnd.n) {
            multiply_range(&l, rnd.v[--rnd.n], round_mult);
            i++;
        } else if (c == ']' && sq.n) {
            multiply_range(&l, sq.v[--sq.n], square_mult);
            i++;
        } else if (c == ')' || c == ']' || c == ':') {
            rc = push_split_break(&l, text + i, 1);
            i++;
        } else {
            size_t e = i + strcspn(text + i, "\\()[]:");
            rc = push_split_break(&l, text + i, e - i);
            i = e;
        }
    }
    for (int k = 0; rc == 0 && k < rnd.n; k++) multiply_range(&l, rnd.v[k], round_mult);
    for (int k = 0; rc == 0 && k < sq.n; k++) multiply_range(&l, sq.v[k], square_mult);
    if (rc == 0 && l.n == 0) rc = frags_push(&l, "", 0, 1.0);
    /* merge runs of identical weights */
    for (int k = 0; rc == 0 && k + 1 < l.n;) {
        if (l.f[k].weight != l.f[k + 1].weight) {
            k++;
            continue;
        }
        size_t a = strlen(l.f[k].text), b = strlen(l.f[k + 1].text);
        char *t = realloc(l.f[k].text, a + b + 1);
        if (!t) {
            rc = SD_ENOMEM;
            break;
        }
        memcpy(t + a, l.f[k + 1].text, b + 1);
        l.f[k].text = t;
        free(l.f[k + 1].text);
        memmove(l.f + k + 1, l.f + k + 2, (size_t)(l.n - k - 2) * sizeof *l.f);
        l.n--;
    }
    free(rnd.v);
    free(sq.v);
    if (rc < 0) {
        a1111_frags_free(l.f, l.n);
        if (rc == SD_ENOMEM) return sd_err(err, SD_ENOMEM, "out of memory parsing a prompt");
        return rc;
    }
    *out = l.f;
    *n = l.n;
    return 0;
}

/* ---- tokenize_line ------------------------------------------------------ */

typedef struct chunker {
    tokenizer_bpe *tok;
    int32_t comma;
    a1111_chunks *out;
    int cap;                   /* chunks allocated in out */
    int32_t cur[A1111_CHUNK + 1];
    double cur_m[A1111_CHUNK + 1];
    int n_cur;
    int last_comma;
} chunker;

/* next_chunk(): pads the current chunk with EOS to 75, wraps it in BOS/EOS and starts an empty one. */
static int next_chunk(chunker *c) {
    a1111_chunks *o = c->out;
    if (o->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 4;
        int32_t *ids = realloc(o->ids, (size_t)cap * A1111_CHUNK_IDS * sizeof *ids);
        if (ids) o->ids = ids;
        double *m = realloc(o->mult, (size_t)cap * A1111_CHUNK_IDS * sizeof *m);
        if (m) o->mult = m;
        if (!ids || !m) return SD_ENOMEM;
        c->cap = cap;
    }
    int32_t *ids = o->ids + (size_t)o->n * A1111_CHUNK_IDS;
    double *m = o->mult + (size_t)o->n * A1111_CHUNK_IDS;
    int32_t eos = tokenizer_eos_id(c->tok), pad = tokenizer_pad_id(c->tok);
    ids[0] = tokenizer_bos_id(c->tok);
    m[0] = 1.0;
    for (int i = 0; i < A1111_CHUNK; i++) {
        ids[1 + i] = i < c->n_cur ? c->cur[i] : eos;
        m[1 + i] = i < c->n_cur ? c->cur_m[i] : 1.0;
    }
    ids[A1111_CHUNK_IDS - 1] = eos;
    m[A1111_CHUNK_IDS - 1] = 1.0;
    /* SD 2.x: pad after the first end-of-text (process_tokens) */
    if (pad != eos) {
        int k = 0;
        while (k < A1111_CHUNK_IDS && ids[k] != eos) k++;
        for (k++; k < A1111_CHUNK_IDS; k++) ids[k] = pad;
    }
    o->n++;
    c->n_cur = 0;
    c->last_comma = -1;
    return 0;
}

/* Adds one token of a fragment of weight w to the current chunk. */
static int add_token(chunker *c, int32_t t, double w) {
    int rc;
    if (t == c->comma) {
        c->last_comma = c->n_cur;
    } else if (c->n_cur == A1111_CHUNK && c->last_comma != -1 &&
               c->n_cur - c->last_comma <= A1111_COMMA_BACKTRACK) {
        int at = c->last_comma + 1, nr = c->n_cur - at;
        int32_t rt[A1111_CHUNK];
        double rm[A1111_CHUNK];
        memcpy(rt, c->cur + at, (size_t)nr * sizeof *rt);
        memcpy(rm, c->cur_m + at, (size_t)nr * sizeof *rm);
        c->n_cur = at;
        if ((rc = next_chunk(c)) < 0) return rc;
        memcpy(c->cur, rt, (size_t)nr * sizeof *rt);
        memcpy(c->cur_m, rm, (size_t)nr * sizeof *rm);
        c->n_cur = nr;
    }
    if (c->n_cur == A1111_CHUNK && (rc = next_chunk(c)) < 0) return rc;
    c->cur[c->n_cur] = t;
    c->cur_m[c->n_cur] = w;
    c->n_cur++;
    return 0;
}

void a1111_chunks_free(a1111_chunks *c) {
    free(c->ids);
    free(c->mult);
    memset(c, 0, sizeof *c);
}

int a1111_tokenize_line(tokenizer_bpe *tok, const char *text, a1111_chunks *out, sd_error *err) {
    memset(out, 0, sizeof *out);
    a1111_frag *f;
    int nf, rc = a1111_parse_attention(text, &f, &nf, err);
    if (rc < 0) return rc;
    chunker c = {.tok = tok, .comma = tokenizer_token_id(tok, ",</w>"), .out = out, .last_comma = -1};
    for (int i = 0; rc == 0 && i < nf; i++) {
        if (!strcmp(f[i].text, "BREAK") && f[i].weight == -1) {
            rc = next_chunk(&c);
            continue;
        }
        int32_t *ids = NULL;
        int n = 0;
        rc = tokenizer_encode(tok, f[i].text, &ids, &n, err);
        for (int k = 0; rc == 0 && k < n; k++) rc = add_token(&c, ids[k], f[i].weight);
        free(ids);
    }
    if (rc == 0 && (c.n_cur || out->n == 0)) rc = next_chunk(&c);
    a1111_frags_free(f, nf);
    if (rc < 0) {
        a1111_chunks_free(out);
        if (rc == SD_ENOMEM) return sd_err(err, SD_ENOMEM, "out of memory splitting a prompt into chunks");
    }
    return rc;
}

/* ---- extra networks ------------------------------------------------------ */

void a1111_nets_free(a1111_net *nets, int n) {
    for (int i = 0; nets && i < n; i++) {
        free(nets[i].type);
        for (int k = 0; k < nets[i].n_args; k++) free(nets[i].args[k]);
        free(nets[i].args);
    }
    free(nets);
}

/* The length of a match of <(\w+):([^>]+)> at s[i] (0: none); *name_len gets the length of group 1. */
static size_t match_tag(const unsigned char *s, size_t n, size_t i, size_t *name_len) {
    size_t j = i + 1, cl;
    if (s[i] != '<') return 0;
    while (j < n && is_word(cp_at(s, n, j, &cl))) j += cl;
    if (j == i + 1 || j >= n || s[j] != ':') return 0;
    *name_len = j - i - 1;
    size_t k = j + 1;
    while (k < n && s[k] != '>') k++;
    if (k >= n || k == j + 1) return 0;
    return k + 1 - i;
}

/* Splits s[0..n) at ':' into a new net. */
static int net_make(a1111_net *net, const char *type, size_t tl, const char *s, size_t n) {
    memset(net, 0, sizeof *net);
    int parts = 1;
    for (size_t i = 0; i < n; i++) parts += s[i] == ':';
    net->type = strndup(type, tl);
    net->args = calloc((size_t)parts, sizeof *net->args);
    if (!net->type || !net->args) return SD_ENOMEM;
    size_t a = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != ':') continue;
        if (!(net->args[net->n_args] = strndup(s + a, i - a))) return SD_ENOMEM;
        net->n_args++;
        a = i + 1;
    }
    return 0;
}

int a1111_extract_networks(const char *text, char **stripped, a1111_net **nets, int *n_nets, sd_error *err) {
    const unsigned char *s = (const unsigned char *)text;
    size_t n = strlen(text), o = 0;
    char *res = malloc(n + 1);
    a1111_net *list = NULL;
    int count = 0, rc = 0;
    *stripped = NULL;
    *nets = NULL;
    *n_nets = 0;
    if (!res) return sd_err(err, SD_ENOMEM, "out of memory");
    for (size_t i = 0; i < n && rc == 0;) {
        size_t name_len, m = match_tag(s, n, i, &name_len);
        if (!m) {
            if (!strncmp(text + i, "<lora:", 6)) {
                rc = sd_err(err, SD_EINPUT, "prompt: malformed LoRA tag at '%.40s': write <lora:NAME:MULTIPLIER>",
                            text + i);
                break;
            }
            res[o++] = text[i++];
            continue;
        }
        a1111_net *g = realloc(list, (size_t)(count + 1) * sizeof *g);
        if (!g) {
            rc = SD_ENOMEM;
            break;
        }
        list = g;
        count++;
        if ((rc = net_make(&list[count - 1], text + i + 1, name_len, text + i + 2 + name_len, m - 3 - name_len)) < 0)
            break;
        i += m;
    }
    res[o] = 0;
    if (rc < 0) {
        free(res);
        a1111_nets_free(list, count);
        return rc == SD_ENOMEM ? sd_err(err, SD_ENOMEM, "out of memory") : rc;
    }
    *stripped = res;
    *nets = list;
    *n_nets = count;
    return 0;
}
