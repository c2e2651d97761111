/*
 * jobdb_report.h - reading what a report shows besides the jobs: every run and every metrics row,
 * in id order. Strings are owned by the rows (NULL where the column is NULL).
 */
#ifndef SD_JOBDB_REPORT_H
#define SD_JOBDB_REPORT_H

#include <stdint.h>

#include "jobdb.h"

typedef struct jobdb_run_row {
    int64_t id;
    char *instance, *host, *model_path, *settings_json, *end_status, *parallel;
    int ranks, group_size;
    double started_at, ended_at; /* 0: unknown */
} jobdb_run_row;

typedef struct jobdb_metric_row {
    int64_t id, run_id; /* run_id 0: none */
    char *name, *details_json;
    int has_value;      /* 0: stored NULL (NaN) */
    double value, created_at;
} jobdb_metric_row;

/* Every run into *rows (free with jobdb_runs_free). */
int jobdb_runs_read(jobdb *db, jobdb_run_row **rows, int *n, sd_error *err);
void jobdb_runs_free(jobdb_run_row *rows, int n);

/* Every metrics row into *rows (free with jobdb_metrics_free). */
int jobdb_metrics_read(jobdb *db, jobdb_metric_row **rows, int *n, sd_error *err);
void jobdb_metrics_free(jobdb_metric_row *rows, int n);

#endif
