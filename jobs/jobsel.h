/*
 * jobsel.h - a selection of jobs by their settings: `--where KEY=VALUE` (repeatable, all must hold).
 *
 * Keys are a whitelist of the job table's settings columns (jobsel_keys()); each value is read with
 * its column's type, so cfg_scale=4 matches 4.0, steps=20 must be an integer, sampler=dpmpp_2m is
 * the sampler dpm++2m, karras=true is 1. The selection is stored with the metrics it scored as
 * {"cfg_scale": 4.0, "sampler": "euler"} (jobsel_json), so a report can plot metrics against it.
 *
 *     jobsel sel = {0};
 *     if (jobsel_add(&sel, "cfg_scale=4", &err) < 0) ...   // err: what is wrong and which keys exist
 *     jobdb_iter_begin_sel(db, SD_JOB_DONE, &sel, &it, &err);
 *     jobsel_free(&sel);
 */
#ifndef SD_JOBSEL_H
#define SD_JOBSEL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "job.h"

typedef enum jobsel_type { JOBSEL_INT, JOBSEL_REAL, JOBSEL_TEXT } jobsel_type;

#define JOBSEL_MAX 16

typedef struct jobsel_term {
    const char *key;  /* the column name (a static string of the whitelist) */
    jobsel_type type;
    int64_t i;        /* JOBSEL_INT */
    double d;         /* JOBSEL_REAL */
    char *s;          /* JOBSEL_TEXT (owned) */
} jobsel_term;

typedef struct jobsel {
    int n;
    jobsel_term t[JOBSEL_MAX];
} jobsel;

/* The keys --where accepts, comma-separated ("cfg_scale, steps, sampler, ..."). */
const char *jobsel_keys(void);
/* The column type of key; -1 when key is not one of jobsel_keys(). "prompt" is known too (TEXT). */
int jobsel_key_type(const char *key, const char **canonical);

/* Adds "KEY=VALUE" to sel. SD_EINPUT with a message for an unknown key (listing the known ones), a value
 * that is not of the column's type, a key given twice or too many terms. */
int jobsel_add(jobsel *sel, const char *key_value, sd_error *err);
void jobsel_free(jobsel *sel);

/* The selection as a JSON object {"key": value, ...} in the order given (new reference). */
json_t *jobsel_json(const jobsel *sel);

/* "cfg_scale=4, sampler=euler" for messages, into buf. */
void jobsel_describe(const jobsel *sel, char *buf, size_t n);

/* 1 when job j meets every term of sel (the same test the database makes). */
int jobsel_match(const jobsel *sel, const sd_job *j);

/* Job j's value of key (a jobsel_keys() key or "prompt") as text: "4" for cfg 4.0, "7.5", "euler", "512".
 * Returns 0, or -1 for an unknown key. */
int jobsel_job_text(const sd_job *j, const char *key, char *buf, size_t n);
/* The same as a number (1), or 0 for a text column (sampler, prompt, ...), -1 for an unknown key. */
int jobsel_job_number(const sd_job *j, const char *key, double *out);

#endif
