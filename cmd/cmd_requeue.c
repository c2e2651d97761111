/* sdrender requeue: failed jobs of a job database back to pending (a way out after a mass failure). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "jobdb.h"

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: sdrender requeue --db FILE --failed [--error-like TEXT] [--ids A-B]\n"
            "       sdrender requeue --db FILE --missing [--ids A-B]\n"
            "\n"
            "Puts failed jobs back to pending, with their attempts reset to 0 (each gets the run's full\n"
            "--max-attempts again); their last error stays on record until they run. Prints how many.\n"
            "Safe while a run is going: a failed job is held by no run, and a live run picks it up.\n"
            "\n"
            "options:\n"
            "  --db FILE          the job database\n"
            "  --failed           requeue failed jobs\n"
            "  --missing          requeue done jobs whose PNG is missing or no longer matches its\n"
            "                     recorded SHA-256 (e.g. after the output folder was deleted)\n"
            "  --error-like TEXT  only jobs whose error matches TEXT, an SQL LIKE pattern (%% any text,\n"
            "                     _ one character; case-insensitive for ASCII); without %% or _ it\n"
            "                     matches TEXT anywhere in the error\n"
            "  --ids A-B          only job ids A..B (also A- or -B, or one id A)\n"
            "  -h, --help         this text\n");
}

/* "A-B", "A-", "-B" or "A": *first / *last (0: open). */
static int parse_ids(const char *s, int64_t *first, int64_t *last, sd_error *err) {
    long long a = 0, b = 0;
    int n = 0;
    const char *dash = strchr(s, '-');
    int ok;
    if (!dash) {
        ok = sscanf(s, "%lld%n", &a, &n) == 1 && !s[n];
        b = a;
    } else {
        ok = 1;
        if (dash > s) ok = sscanf(s, "%lld%n", &a, &n) == 1 && s + n == dash;
        if (ok && dash[1]) ok = sscanf(dash + 1, "%lld%n", &b, &n) == 1 && !dash[1 + n];
    }
    if (!ok || a < 0 || b < 0 || (a && b && a > b) || (!a && !b))
        return sd_err(err, SD_EINPUT, "--ids '%s': expected A-B with 1 <= A <= B (or A-, -B, A)", s);
    *first = a;
    *last = b;
    return 0;
}

int cmd_requeue(int argc, char **argv) {
    const char *path = NULL, *like = NULL;
    int failed = 0, missing_png = 0;
    int64_t first = 0, last = 0;
    sd_error e = {0};
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i], *v;
        int missing = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--failed")) {
            failed = 1;
        } else if (!strcmp(a, "--missing")) {
            missing_png = 1;
        } else if ((v = cli_option_value(argc, argv, &i, "--db", NULL, &missing))) {
            path = v;
        } else if ((v = cli_option_value(argc, argv, &i, "--error-like", NULL, &missing))) {
            like = v;
        } else if ((v = cli_option_value(argc, argv, &i, "--ids", NULL, &missing))) {
            rc = parse_ids(v, &first, &last, &e);
        } else if (missing) {
            rc = sd_err(&e, SD_EINPUT, "%s needs a value", a);
        } else {
            rc = sd_err(&e, SD_EINPUT, "requeue: unexpected argument '%s'; see 'sdrender requeue --help'", a);
        }
    }
    if (rc == 0 && !path) rc = sd_err(&e, SD_EINPUT, "requeue: --db FILE is required");
    if (rc == 0 && !failed && !missing_png) rc = sd_err(&e, SD_EINPUT, "requeue: say which jobs: --failed or --missing");
    if (rc == 0 && like && !failed) rc = sd_err(&e, SD_EINPUT, "requeue: --error-like goes with --failed");
    if (rc < 0) return cli_fail(&e);
    /* a pattern without wildcards matches anywhere in the error */
    char *pattern = NULL;
    if (like && !strpbrk(like, "%_")) {
        size_t n = strlen(like) + 3;
        pattern = malloc(n);
        if (!pattern) return cli_usage_error("out of memory");
        snprintf(pattern, n, "%%%s%%", like);
        like = pattern;
    }
    jobdb *db = NULL;
    jobdb_open_options oo = {.keep_journal = 1};
    int64_t count = 0, lost = 0;
    rc = jobdb_open(&db, path, &oo, &e);
    if (rc == 0 && failed) rc = jobdb_requeue_failed(db, like, first, last, &count, &e);
    if (rc == 0 && missing_png) rc = jobdb_requeue_missing(db, first, last, &lost, &e);
    jobdb_close(db);
    free(pattern);
    if (rc < 0) return cli_fail(&e);
    if (failed) printf("requeued %lld failed job(s) to pending (attempts reset to 0)\n", (long long)count);
    if (missing_png) printf("requeued %lld done job(s) whose PNG was missing or changed\n", (long long)lost);
    return 0;
}
