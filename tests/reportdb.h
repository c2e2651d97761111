/*
 * reportdb.h - a small job database for the report tests (test_report_cli.c, test_report_browser.c),
 * made the way `sdrender run` leaves one: REPORTDB_DONE done jobs (2 prompts x 3 CFG scales x 2
 * seeds) whose PNGs are drawn here (32x32: a background by prompt, a square whose size follows the
 * CFG scale, a few pixels by seed), and one failed job whose error holds HTML markup. Prompts hold
 * markup and quotes too, so the page's escaping is exercised. Header-only (static functions).
 */
#ifndef SD_TEST_REPORTDB_H
#define SD_TEST_REPORTDB_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobdb.h"
#include "pngio.h"
#include "sha256.h"
#include "testutil.h"

#define REPORTDB_DONE 12
#define REPORTDB_SIDE 32

static const char *const reportdb_prompts[2] = {"a red <b>circle</b> on a \"blue\" & green background",
                                                "a small yellow square at the top left"};
static const double reportdb_cfgs[3] = {1, 4, 8};
static const char reportdb_error[] = "<script>alert(1)</script> the U-Net produced NaN";

/* The picture of job i (0-based): [32, 32, 3]. */
static void reportdb_draw(int i, uint8_t *rgb) {
    int p = (i / 6) % 2, c = (i / 2) % 3, seed = i % 2 + 2 * (i / 12);
    static const uint8_t bg[2][3] = {{40, 60, 200}, {20, 160, 60}};
    static const uint8_t fg[2][3] = {{220, 30, 30}, {240, 220, 40}};
    int half = 4 + 4 * c; /* square size grows with the CFG scale */
    for (int y = 0; y < REPORTDB_SIDE; y++)
        for (int x = 0; x < REPORTDB_SIDE; x++) {
            uint8_t *px = rgb + (y * REPORTDB_SIDE + x) * 3;
            int in = abs(x - 16) < half && abs(y - 16) < half;
            for (int k = 0; k < 3; k++) px[k] = in ? fg[p][k] : bg[p][k];
            if ((x * 7 + y * 13 + seed * 5) % 17 == 0) px[0] ^= 0x3f;
        }
}

/* Makes db_path (new) with n_done done jobs (REPORTDB_DONE for the set described above; more repeat it
 * with other seeds) and one failed job, their PNGs in out_dir (created). */
static void reportdb_make_n(const char *db_path, const char *out_dir, int n_done) {
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "rm -f %s; mkdir -p %s", db_path, out_dir);
    if (tu_sh(NULL, "%s", cmd) != 0) fail_msg("%s failed", cmd);
    sd_error err = {0};
    jobdb *db;
    jobdb_open_options oo = {.create = 1};
    if (jobdb_open(&db, db_path, &oo, &err) < 0) fail_msg("%s", err.msg);
    jobdb_set_time(db, 1764668000.0); /* fixed times: the page's bytes do not depend on the clock */
    sd_job *specs = calloc((size_t)n_done + 1, sizeof *specs);
    assert_non_null(specs);
    for (int i = 0; i <= n_done; i++) {
        specs[i].prompt = strdup(i < n_done ? reportdb_prompts[(i / 6) % 2] : "a failing <i>prompt</i>");
        specs[i].negative_prompt = strdup(i == 0 ? "blurry" : "");
        specs[i].seed = 100 + i % 2 + 2 * (i / 12);
        specs[i].steps = 2;
        specs[i].cfg_scale = i < n_done ? reportdb_cfgs[(i / 2) % 3] : 7.5;
        specs[i].width = specs[i].height = REPORTDB_SIDE;
        specs[i].clip_skip = 1;
    }
    if (jobdb_enqueue(db, specs, (size_t)n_done + 1, 1, 0, NULL, NULL, &err) < 0) fail_msg("%s", err.msg);
    for (int i = 0; i <= n_done; i++) sd_job_free(&specs[i]);
    free(specs);
    jobdb_run_config rc = {.model_path = "tiny <model>", .settings_json = "{\"note\":\"<run>\"}", .host = "testhost",
                           .ranks = 2};
    if (jobdb_run_begin(db, &rc, &err) < 0) fail_msg("%s", err.msg);
    uint8_t rgb[REPORTDB_SIDE * REPORTDB_SIDE * 3];
    for (int i = 0; i <= n_done; i++) {
        sd_job j;
        if (jobdb_claim(db, "testhost:1", &j, &err) != 1) fail_msg("claim: %s", err.msg);
        if (i == n_done) {
            if (jobdb_fail(db, j.id, reportdb_error, 0, NULL, &err) < 0) fail_msg("%s", err.msg);
        } else {
            char png[PATH_MAX], sha[65];
            snprintf(png, sizeof png, "%s/%08lld.png", out_dir, (long long)j.id);
            reportdb_draw(i, rgb);
            if (sd_png_write_rgb(png, rgb, REPORTDB_SIDE, REPORTDB_SIDE, NULL, 0, &err) < 0 ||
                sd_sha256_file(png, sha, &err) < 0 || jobdb_finish(db, j.id, png, sha, 0.25, &err) < 0)
                fail_msg("%s", err.msg);
        }
        sd_job_free(&j);
    }
    if (jobdb_run_end(db, "complete", &err) < 0) fail_msg("%s", err.msg);
    jobdb_close(db);
}

__attribute__((unused)) static void reportdb_make(const char *db_path, const char *out_dir) {
    reportdb_make_n(db_path, out_dir, REPORTDB_DONE);
}

/* Adds metric rows as `sdrender metrics --where cfg_scale=X` stores them, for X = 1, 4, 8 (made-up values). */
__attribute__((unused)) static void reportdb_add_metrics(const char *db_path) {
    sd_error err = {0};
    jobdb *db;
    if (jobdb_open(&db, db_path, NULL, &err) < 0) fail_msg("%s", err.msg);
    jobdb_set_time(db, 1764669000.0);
    static const char *names[5] = {"fid", "precision", "recall", "density", "coverage"};
    for (int c = 0; c < 3; c++)
        for (int m = 0; m < 5; m++) {
            char details[256];
            snprintf(details, sizeof details, "{\"n_real\":12,\"n_fake\":4,\"k\":2,\"where\":{\"cfg_scale\":%.1f}}",
                     reportdb_cfgs[c]);
            double v = m == 0 ? 100.0 / (1 + c) : 0.2 + 0.25 * c + 0.01 * m;
            if (jobdb_metric_add(db, names[m], v, details, &err) < 0) fail_msg("%s", err.msg);
        }
    jobdb_close(db);
}

/* The whole file as a string (caller frees); fails the test when unreadable. */
__attribute__((unused)) static char *read_text(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    assert_non_null(text);
    size_t got = fread(text, 1, (size_t)n, fp);
    fclose(fp);
    text[got] = 0;
    return text;
}

/* How many times needle occurs in hay (not overlapping). */
__attribute__((unused)) static int count_of(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

#endif
