/*
 * csv.h - an RFC 4180 CSV reader over a buffer in memory.
 *
 * Fields are separated by commas, records by LF or CRLF. A field may be
 * quoted with '"'; inside quotes, "" is one quote and commas and newlines are
 * plain text. A quote inside an unquoted field, text after a closing quote,
 * a NUL byte and an unterminated quoted field are errors. Empty lines between
 * records are skipped.
 *
 *     csv_reader r;
 *     csv_record rec = {0};
 *     csv_init(&r, text, len);
 *     while ((rc = csv_next(&r, &rec, &err)) != 0) { if (rc < 0) ...; use rec.fields[0..rec.n) }
 *     csv_record_free(&rec);
 */
#ifndef SD_CSV_H
#define SD_CSV_H

#include <stddef.h>

#include "err.h"

typedef struct csv_reader {
    const char *p, *end;
    long line; /* 1-based line of p */
} csv_reader;

typedef struct csv_record {
    char **fields; /* n unescaped NUL-terminated fields, owned */
    size_t n, cap;
    long line;     /* line the record starts on */
} csv_record;

void csv_init(csv_reader *r, const char *data, size_t n);
/* Reads the next record into rec (replacing its fields). Returns 1, 0 at the
 * end, or SD_EINPUT on a syntax error: err says what (no location; rec->line
 * is the line) and the reader resumes at the following line. */
int csv_next(csv_reader *r, csv_record *rec, sd_error *err);
void csv_record_free(csv_record *rec);

#endif
