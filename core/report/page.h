/*
 * page.h - the report page of a job database (sdrender report): plain data in, files out.
 *
 * The folder gets index.html (runs, settings, metrics table, SVG plots, failed jobs: rendered here,
 * every database string HTML-escaped), data.js (the done images as one JSON array, loaded once),
 * report.js (the contact sheet: pages of REPORT_PAGE_SIZE lazy-loaded thumbnails, details on click,
 * a prompt filter and a per-prompt drill-down) and report.css. Nothing is loaded from the network.
 * The same data give the same bytes (no timestamps; times come from the database, as UTC).
 *
 * Plots: for each metric (fid, precision, recall, density, coverage, clip_score) and each key of
 * the metric rows' selections (details_json "where", written by `sdrender metrics --where`) that
 * takes two or more values, one plot of the metric against it; a text value (sampler) gives a
 * categorical axis. For a value scored more than once the latest row (highest id) counts.
 */
#ifndef SD_REPORT_PAGE_H
#define SD_REPORT_PAGE_H

#include <stdint.h>
#include <stdio.h>

#include "err.h"

#define REPORT_PAGE_SIZE 200

typedef struct report_image {
    int64_t id, seed, run_id;
    const char *prompt, *negative_prompt, *sampler;
    int steps, karras, width, height, clip_skip;
    double cfg_scale, render_seconds;
    const char *thumb; /* URL relative to the report folder */
    const char *href;  /* URL of the full PNG (relative when it can be) */
} report_image;

typedef struct report_failed {
    int64_t id, seed, run_id;
    const char *prompt, *sampler, *error, *claimed_by;
    int attempts, steps;
    double cfg_scale;
} report_failed;

typedef struct report_run {
    int64_t id;
    const char *instance, *host, *model_path, *settings_json, *end_status, *parallel;
    int ranks, group_size;
    double started_at, ended_at; /* Unix seconds; 0 unknown */
} report_run;

typedef struct report_metric {
    int64_t id, run_id;     /* run_id 0: none */
    const char *name;
    int has_value;
    double value;
    const char *details_json; /* may be NULL */
    double created_at;
} report_metric;

typedef struct report_data {
    const char *db_path;
    int64_t n_pending, n_running;
    const report_run *runs;
    int n_runs;
    const report_image *images; /* done jobs, in id order */
    int n_images;
    const report_failed *failed;
    int n_failed;
    const report_metric *metrics;
    int n_metrics;
} report_data;

/* index.html into fp. */
int report_write_html(FILE *fp, const report_data *d, sd_error *err);
/* data.js into fp: window.SDR = {"cols": [...], "prompts": [...], "samplers": [...], "images": [[...], ...]}. */
int report_write_data_js(FILE *fp, const report_data *d, sd_error *err);
/* Plots (as in the header comment) into fp; returns how many. */
int report_write_plots(FILE *fp, const report_data *d);

/* The static scripts and styles. */
extern const char report_js[];
extern const char report_css[];

/* Writes index.html, data.js, report.js and report.css into the folder dir (which must exist), each atomically. */
int report_write(const char *dir, const report_data *d, sd_error *err);

#endif
