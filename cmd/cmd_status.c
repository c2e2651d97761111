/* sdrender status: progress of a job database (counts, rate, ETA, last errors). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "commands.h"
#include "jobdb.h"

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: sdrender status --db FILE [--json] [--errors N] [--check]\n"
            "\n"
            "Shows how many jobs are pending, running, done and failed, the rate of the latest run\n"
            "that finished images, the time left at that rate, and the latest errors.\n"
            "\n"
            "options:\n"
            "  --db FILE    the job database\n"
            "  --json       one JSON object: pending, running, done, failed, total, images_per_minute,\n"
            "               eta_seconds (null if unknown), last_errors, last_run, schema_version, ...\n"
            "  --errors N   how many of the latest errors to show (5)\n"
            "  --check      also run SQLite's integrity check (exit 2 if it fails)\n"
            "  -h, --help   this text\n");
}

/* "2024-05-01 12:34:56" in local time, or "-" for 0. */
static const char *fmt_time(double t, char *buf, size_t n) {
    if (t <= 0) return "-";
    time_t s = (time_t)t;
    struct tm tm;
    localtime_r(&s, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

/* "3d 4h", "2h 13m", "5m 07s", "42s". */
static const char *fmt_duration(double sec, char *buf, size_t n) {
    long s = (long)(sec + 0.5);
    if (s >= 86400) snprintf(buf, n, "%ldd %ldh", s / 86400, s % 86400 / 3600);
    else if (s >= 3600) snprintf(buf, n, "%ldh %02ldm", s / 3600, s % 3600 / 60);
    else if (s >= 60) snprintf(buf, n, "%ldm %02lds", s / 60, s % 60);
    else snprintf(buf, n, "%lds", s);
    return buf;
}

static json_t *time_or_null(double t) { return t > 0 ? json_real(t) : json_null(); }

static int print_json(const char *path, const jobdb *db, const jobdb_summary *s, int checked) {
    json_t *o = json_object();
    json_object_set_new(o, "db", json_string(path));
    json_object_set_new(o, "schema_version", json_integer(s->schema_version));
    json_object_set_new(o, "journal_mode", json_string(jobdb_journal_mode(db)));
    json_object_set_new(o, "pending", json_integer(s->pending));
    json_object_set_new(o, "running", json_integer(s->running));
    json_object_set_new(o, "done", json_integer(s->done));
    json_object_set_new(o, "failed", json_integer(s->failed));
    json_object_set_new(o, "total", json_integer(s->total));
    json_object_set_new(o, "images_per_minute", json_real(s->images_per_minute));
    json_object_set_new(o, "rate_run_id", s->rate_run_id ? json_integer(s->rate_run_id) : json_null());
    json_object_set_new(o, "eta_seconds", s->eta_seconds >= 0 ? json_real(s->eta_seconds) : json_null());
    json_t *run = json_null();
    if (s->last_run_id) {
        run = json_object();
        json_object_set_new(run, "id", json_integer(s->last_run_id));
        json_object_set_new(run, "instance", json_string(s->last_run_instance));
        json_object_set_new(run, "host", json_string(s->last_run_host));
        json_object_set_new(run, "ranks", json_integer(s->last_run_ranks));
        json_object_set_new(run, "group_size", json_integer(s->last_run_group_size));
        json_object_set_new(run, "parallel", s->last_run_parallel[0] ? json_string(s->last_run_parallel) : json_null());
        json_object_set_new(run, "started_at", time_or_null(s->last_run_started_at));
        json_object_set_new(run, "ended_at", time_or_null(s->last_run_ended_at));
        json_object_set_new(run, "last_seen_at", time_or_null(s->last_run_last_seen_at));
        json_object_set_new(run, "end_status",
                            s->last_run_end_status[0] ? json_string(s->last_run_end_status) : json_null());
    }
    json_object_set_new(o, "last_run", run);
    json_t *errs = json_array();
    for (int i = 0; i < s->n_errors; i++) {
        const jobdb_error_entry *e = &s->errors[i];
        json_t *x = json_object();
        json_object_set_new(x, "job", json_integer(e->job_id));
        json_object_set_new(x, "status", json_string(sd_job_status_name(e->status)));
        json_object_set_new(x, "attempts", json_integer(e->attempts));
        json_object_set_new(x, "at", time_or_null(e->at));
        json_object_set_new(x, "claimed_by", e->claimed_by ? json_string(e->claimed_by) : json_null());
        json_object_set_new(x, "error", json_string(e->error));
        json_array_append_new(errs, x);
    }
    json_object_set_new(o, "last_errors", errs);
    json_t *sets = json_array();
    for (int i = 0; i < s->n_lora_sets; i++)
        json_array_append_new(sets, json_pack("{s:s,s:I,s:I}", "lora_set", s->lora_sets[i].lora_set, "running",
                                              (json_int_t)s->lora_sets[i].running, "pending",
                                              (json_int_t)s->lora_sets[i].pending));
    json_object_set_new(o, "lora_sets", sets);
    if (checked) json_object_set_new(o, "integrity", json_string("ok"));
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (!text) return -1;
    printf("%s\n", text);
    free(text);
    return 0;
}

static void print_human(const char *path, const jobdb_summary *s, int checked) {
    char t1[64], t2[64];
    double pct = s->total ? 100.0 * (double)s->done / (double)s->total : 0;
    printf("%s: %lld jobs: %lld done (%.1f%%), %lld running, %lld pending, %lld failed\n", path,
           (long long)s->total, (long long)s->done, pct, (long long)s->running, (long long)s->pending,
           (long long)s->failed);
    if (s->last_run_id) {
        const char *state = s->last_run_end_status[0] ? s->last_run_end_status : "running (or killed)";
        printf("last run: #%lld %s on %s, %d rank%s, started %s, %s", (long long)s->last_run_id,
               s->last_run_instance, s->last_run_host, s->last_run_ranks, s->last_run_ranks == 1 ? "" : "s",
               fmt_time(s->last_run_started_at, t1, sizeof t1), state);
        if (s->last_run_ended_at > 0) printf(" at %s", fmt_time(s->last_run_ended_at, t2, sizeof t2));
        else if (s->last_run_last_seen_at > 0)
            printf(", last seen %s", fmt_time(s->last_run_last_seen_at, t2, sizeof t2));
        if (s->last_run_group_size > 1)
            printf("; groups of %d ranks, %s-parallel", s->last_run_group_size, s->last_run_parallel);
        printf("\n");
    } else {
        printf("no run yet\n");
    }
    if (s->images_per_minute > 0)
        printf("rate: %.2f images/minute (run #%lld)", s->images_per_minute, (long long)s->rate_run_id);
    else printf("rate: unknown (no finished images yet)");
    if (s->eta_seconds == 0) printf("; all jobs are finished\n");
    else if (s->eta_seconds > 0) printf("; ETA %s\n", fmt_duration(s->eta_seconds, t1, sizeof t1));
    else printf("; ETA unknown\n");
    int any_lora = 0;
    for (int i = 0; i < s->n_lora_sets; i++) any_lora |= s->lora_sets[i].lora_set[0] != 0;
    if (any_lora) {
        printf("LoRA sets (running, pending):\n");
        for (int i = 0; i < s->n_lora_sets; i++)
            printf("  %s: %lld running, %lld pending\n", s->lora_sets[i].lora_set[0] ? s->lora_sets[i].lora_set : "(none)",
                   (long long)s->lora_sets[i].running, (long long)s->lora_sets[i].pending);
    }
    if (s->n_errors) {
        printf("last errors:\n");
        for (int i = 0; i < s->n_errors; i++) {
            const jobdb_error_entry *e = &s->errors[i];
            printf("  job %lld (%s, %d attempt%s) %s%s%s: %s\n", (long long)e->job_id, sd_job_status_name(e->status),
                   e->attempts, e->attempts == 1 ? "" : "s", fmt_time(e->at, t1, sizeof t1),
                   e->claimed_by ? " on " : "", e->claimed_by ? e->claimed_by : "", e->error);
        }
    }
    if (checked) printf("integrity: ok\n");
}

int cmd_status(int argc, char **argv) {
    const char *path = NULL;
    int as_json = 0, check = 0;
    long max_errors = 5;
    sd_error e = {0};
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i], *v;
        int missing = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            as_json = 1;
        } else if (!strcmp(a, "--check")) {
            check = 1;
        } else if ((v = cli_option_value(argc, argv, &i, "--db", NULL, &missing))) {
            path = v;
        } else if ((v = cli_option_value(argc, argv, &i, "--errors", NULL, &missing))) {
            rc = cli_parse_long("--errors", v, 0, 1000, &max_errors, &e);
        } else if (missing) {
            rc = sd_err(&e, SD_EINPUT, "%s needs a value", a);
        } else {
            rc = sd_err(&e, SD_EINPUT, "status: unexpected argument '%s'; see 'sdrender status --help'", a);
        }
    }
    if (rc == 0 && !path) rc = sd_err(&e, SD_EINPUT, "status: --db FILE is required");
    if (rc < 0) return cli_fail(&e);

    jobdb *db = NULL;
    jobdb_open_options oo = {.keep_journal = 1};
    jobdb_summary s = {0};
    rc = jobdb_open(&db, path, &oo, &e);
    if (rc == 0 && check) rc = jobdb_check_integrity(db, &e);
    if (rc == 0) rc = jobdb_summary_get(db, (int)max_errors, &s, &e);
    if (rc == 0) {
        if (as_json) {
            if (print_json(path, db, &s, check) < 0) rc = sd_err(&e, SD_ENOMEM, "out of memory writing JSON");
        } else {
            print_human(path, &s, check);
        }
    }
    jobdb_summary_free(&s);
    jobdb_close(db);
    return rc < 0 ? cli_fail(&e) : 0;
}
