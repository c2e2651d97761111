#include "csv.h"

#include <stdlib.h>
#include <string.h>

void csv_init(csv_reader *r, const char *data, size_t n) {
    r->p = data;
    r->end = data + n;
    r->line = 1;
}

static void clear_fields(csv_record *rec) {
    for (size_t i = 0; i < rec->n; i++) free(rec->fields[i]);
    rec->n = 0;
}

void csv_record_free(csv_record *rec) {
    clear_fields(rec);
    free(rec->fields);
    memset(rec, 0, sizeof *rec);
}

/* Length of the line end at p: 2 for CRLF, 1 for LF or a CR at the very end, else 0. */
static size_t eol_len(const csv_reader *r, const char *p) {
    if (p >= r->end) return 0;
    if (*p == '\n') return 1;
    if (*p == '\r') return p + 1 == r->end ? 1 : p[1] == '\n' ? 2 : 0;
    return 0;
}

/* Skips to just after the next line end (error recovery). */
static void skip_line(csv_reader *r) {
    while (r->p < r->end && *r->p != '\n') r->p++;
    if (r->p < r->end) {
        r->p++;
        r->line++;
    }
}

typedef struct {
    char *s;
    size_t n, cap;
} buf;

static int buf_put(buf *b, char c) {
    if (b->n + 1 >= b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        char *s = realloc(b->s, cap);
        if (!s) return -1;
        b->s = s;
        b->cap = cap;
    }
    b->s[b->n++] = c;
    return 0;
}

static int push_field(csv_record *rec, buf *b) {
    if (rec->n == rec->cap) {
        size_t cap = rec->cap ? rec->cap * 2 : 16;
        char **f = realloc(rec->fields, cap * sizeof *f);
        if (!f) return -1;
        rec->fields = f;
        rec->cap = cap;
    }
    char *s = malloc(b->n + 1);
    if (!s) return -1;
    if (b->n) memcpy(s, b->s, b->n);
    s[b->n] = 0;
    rec->fields[rec->n++] = s;
    b->n = 0;
    return 0;
}

/* Reads one field at r->p into b; stops at the comma or line end after it. */
static int read_field(csv_reader *r, buf *b, sd_error *err) {
    if (r->p < r->end && *r->p == '"') {
        long opened = r->line;
        r->p++;
        for (;;) {
            if (r->p >= r->end)
                return sd_err(err, SD_EINPUT, "unterminated quoted field (the quote opened on line %ld)", opened);
            char c = *r->p++;
            if (c == 0) return sd_err(err, SD_EINPUT, "contains a NUL byte");
            if (c == '"') {
                if (r->p < r->end && *r->p == '"') r->p++;
                else break;
            } else if (c == '\n') {
                r->line++;
            }
            if (buf_put(b, c) < 0) return sd_err(err, SD_ENOMEM, "out of memory");
        }
        if (r->p < r->end && *r->p != ',' && !eol_len(r, r->p))
            return sd_err(err, SD_EINPUT, "text after a closing quote (a quote inside a quoted field is written \"\")");
        return 0;
    }
    while (r->p < r->end && *r->p != ',' && !eol_len(r, r->p)) {
        char c = *r->p++;
        if (c == '"')
            return sd_err(err, SD_EINPUT,
                          "quote inside an unquoted field (quote the whole field and double inner quotes: \"a \"\"b\"\"\")");
        if (c == 0) return sd_err(err, SD_EINPUT, "contains a NUL byte");
        if (buf_put(b, c) < 0) return sd_err(err, SD_ENOMEM, "out of memory");
    }
    return 0;
}

int csv_next(csv_reader *r, csv_record *rec, sd_error *err) {
    clear_fields(rec);
    size_t e;
    while ((e = eol_len(r, r->p)) > 0) {
        r->p += e;
        r->line++;
    }
    if (r->p >= r->end) return 0;
    rec->line = r->line;
    buf b = {0};
    int rc = 0;
    for (;;) {
        rc = read_field(r, &b, err);
        if (rc == 0 && push_field(rec, &b) < 0) rc = sd_err(err, SD_ENOMEM, "out of memory");
        if (rc < 0) break;
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            continue;
        }
        e = eol_len(r, r->p);
        r->p += e;
        if (e) r->line++;
        rc = 1;
        break;
    }
    free(b.s);
    if (rc < 0) {
        clear_fields(rec);
        if (rc == SD_EINPUT) skip_line(r);
    }
    return rc;
}
