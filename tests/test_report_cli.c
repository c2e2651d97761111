/*
 * End-to-end tests of `sdrender metrics --where`, `sdrender report` and `sdrender grid` on a small
 * job database (tests/reportdb.h: 12 done 32x32 images, 2 prompts x CFG 1, 4, 8 x 2 seeds, one
 * failed job) and the random-weight Inception of the metrics test data.
 */
#include "testutil.h"

#include <jansson.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsutil.h"
#include "grid.h"
#include "pngio.h"
#include "reportdb.h"

static char db_path[PATH_MAX], out_dir[PATH_MAX], inception_w[PATH_MAX], real_npz[PATH_MAX];

/* Runs a shell command (stderr with stdout); fails with its output unless it exits with want. Returns the output. */
static char *sh_expect(int want, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *sh_expect(int want, const char *fmt, ...) {
    char cmd[8192], *out;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = tu_sh(&out, "%s 2>&1", cmd);
    if (rc != want) fail_msg("exit %d (want %d): %s\n%s", rc, want, cmd, out);
    return out;
}

static int group_setup(void **state) {
    (void)state;
    snprintf(db_path, sizeof db_path, "%s", tu_tmp("jobs.db"));
    snprintf(out_dir, sizeof out_dir, "%s", tu_tmp("out"));
    reportdb_make(db_path, out_dir);
    if (!realpath(tu_path("metrics/inception_random_fp16.safetensors"), inception_w)) fail_msg("missing Inception");
    /* the reference: statistics (with features) of the 12 images themselves */
    snprintf(real_npz, sizeof real_npz, "%s", tu_tmp("real.npz"));
    free(sh_expect(0, "%s stats -q --images %s -o %s --inception %s", tu_bin(), out_dir, real_npz, inception_w));
    return 0;
}

/* ------------------------------------------------------------ metrics --where */

typedef struct metric_row {
    char name[32];
    json_t *details;
    double value;
} metric_row;

/* The metrics rows (at most 64), in id order. */
static int read_metric_rows(metric_row *rows) {
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db_path, &h), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h, "SELECT name, details_json, value FROM metrics ORDER BY id", -1, &st, NULL),
                     SQLITE_OK);
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW && n < 64) {
        snprintf(rows[n].name, sizeof rows[n].name, "%s", sqlite3_column_text(st, 0));
        rows[n].details = json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
        rows[n].value = sqlite3_column_double(st, 2);
        n++;
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    return n;
}

static void free_metric_rows(metric_row *rows, int n) {
    for (int i = 0; i < n; i++) json_decref(rows[i].details);
}

static void test_metrics_where_scores_only_the_selected_jobs_and_stores_the_selection(void **state) {
    (void)state;
    metric_row before[64];
    int n0 = read_metric_rows(before);
    free_metric_rows(before, n0);
    /* cfg_scale=4 (an integer) must match the stored 4.0; 4 images of that scale */
    free(sh_expect(0, "%s metrics -q --db %s --real %s --inception %s --k 2 --where cfg_scale=4", tu_bin(), db_path,
                   real_npz, inception_w));
    free(sh_expect(0, "%s metrics -q --db %s --real %s --inception %s --k 2 --where cfg_scale=8.0 --where steps=2",
                   tu_bin(), db_path, real_npz, inception_w));
    metric_row rows[64];
    int n = read_metric_rows(rows);
    assert_int_equal(n - n0, 10); /* fid, precision, recall, density, coverage, twice */
    for (int i = n0; i < n; i++) {
        json_t *where = json_object_get(rows[i].details, "where");
        assert_true(json_is_object(where));
        assert_int_equal(json_integer_value(json_object_get(rows[i].details, "n_fake")), 4);
        double cfg = json_number_value(json_object_get(where, "cfg_scale"));
        assert_true(json_is_real(json_object_get(where, "cfg_scale")));
        assert_true(cfg == (i - n0 < 5 ? 4.0 : 8.0));
        if (i - n0 >= 5) assert_int_equal(json_integer_value(json_object_get(where, "steps")), 2);
        else assert_int_equal(json_object_size(where), 1);
    }
    /* the two selections hold different pictures: their FIDs differ */
    assert_string_equal(rows[n0].name, "fid");
    assert_string_equal(rows[n0 + 5].name, "fid");
    assert_true(rows[n0].value != rows[n0 + 5].value);
    free_metric_rows(rows, n);
}

static void test_metrics_where_rejects_unknown_keys_bad_values_and_empty_selections(void **state) {
    (void)state;
    char *out = sh_expect(2, "%s metrics -q --db %s --real %s --inception %s --where colour=red", tu_bin(), db_path,
                          real_npz, inception_w);
    assert_non_null(strstr(out, "unknown key 'colour'"));
    assert_non_null(strstr(out, "cfg_scale"));
    free(out);
    out = sh_expect(2, "%s metrics -q --db %s --real %s --inception %s --where steps=two", tu_bin(), db_path, real_npz,
                    inception_w);
    assert_non_null(strstr(out, "steps takes an integer"));
    free(out);
    out = sh_expect(2, "%s metrics -q --db %s --real %s --inception %s --where sampler=nosuch", tu_bin(), db_path,
                    real_npz, inception_w);
    assert_non_null(strstr(out, "not a known sampler"));
    free(out);
    out = sh_expect(2, "%s metrics -q --fake %s --real %s --inception %s --where cfg_scale=4", tu_bin(), out_dir,
                    real_npz, inception_w);
    assert_non_null(strstr(out, "--where selects jobs of --db"));
    free(out);
    out = sh_expect(2, "%s metrics -q --db %s --real %s --inception %s --where cfg_scale=5", tu_bin(), db_path,
                    real_npz, inception_w);
    assert_non_null(strstr(out, "no done job has cfg_scale=5"));
    free(out);
}

/* ------------------------------------------------------------ report */

static void test_report_writes_page_thumbnails_and_reuses_them(void **state) {
    (void)state;
    const char *rep = tu_tmp("report");
    free(sh_expect(0, "rm -rf %s", rep));
    char *out = sh_expect(0, "%s report --db %s -o %s", tu_bin(), db_path, rep);
    assert_non_null(strstr(out, "12 images (12 new thumbnails)"));
    free(out);
    char path[PATH_MAX + 64];
    /* thumbnails: 12 PNGs of the images' size (32 px fits in 128: not upscaled) */
    char *ls = sh_expect(0, "ls %s/thumbs | grep -c 'png$'", rep);
    assert_int_equal(atoi(ls), 12);
    free(ls);
    snprintf(path, sizeof path, "%s/index.html", rep);
    char *html = read_text(path);
    snprintf(path, sizeof path, "%s/data.js", rep);
    char *data = read_text(path);
    /* database strings are escaped: markup never reaches the page as markup */
    assert_null(strstr(html, "<script>alert"));
    assert_non_null(strstr(html, "&lt;script&gt;alert(1)&lt;/script&gt; the U-Net produced NaN"));
    assert_non_null(strstr(html, "a failing &lt;i&gt;prompt&lt;/i&gt;"));
    assert_non_null(strstr(html, "tiny &lt;model&gt;"));
    assert_int_equal(count_of(html, "<tr class=\"failed\">"), 1);
    assert_int_equal(count_of(html, "<tr class=\"run\">"), 1);
    assert_int_equal(count_of(html, "<tr class=\"metric\">"), 10); /* from the --where test */
    assert_true(count_of(html, "<svg") >= 1);                       /* fid vs cfg_scale (4 and 8) */
    assert_non_null(strstr(html, "fid vs cfg_scale"));
    /* no network: nothing on the page or in its data names a scheme other than the SVG namespace */
    assert_null(strstr(html, "https://"));
    assert_int_equal(count_of(html, "http://"), count_of(html, "http://www.w3.org/2000/svg"));
    assert_null(strstr(data, "http"));
    /* the data: every done image once, with its thumbnail */
    size_t eq = strcspn(data, "=");
    json_t *d = json_loads(data + eq + 1, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(d);
    assert_int_equal(json_array_size(json_object_get(d, "images")), 12);
    assert_int_equal(json_array_size(json_object_get(d, "prompts")), 2);
    json_decref(d);
    /* a rerun makes no thumbnail and writes the same bytes */
    out = sh_expect(0, "%s report --db %s -o %s", tu_bin(), db_path, rep);
    assert_non_null(strstr(out, "12 images (0 new thumbnails)"));
    free(out);
    snprintf(path, sizeof path, "%s/index.html", rep);
    char *html2 = read_text(path);
    snprintf(path, sizeof path, "%s/data.js", rep);
    char *data2 = read_text(path);
    assert_string_equal(html, html2);
    assert_string_equal(data, data2);
    free(html);
    free(html2);
    free(data);
    free(data2);
}

static void test_report_fails_clearly_on_bad_input(void **state) {
    (void)state;
    char *out = sh_expect(2, "%s report --db %s/nosuch.db -o %s", tu_bin(), tu_tmpdir(), tu_tmp("r2"));
    assert_non_null(strstr(out, "no such file"));
    free(out);
    out = sh_expect(2, "%s report --db %s", tu_bin(), db_path);
    assert_non_null(strstr(out, "-o DIR are required"));
    free(out);
    out = sh_expect(0, "%s report --help", tu_bin());
    assert_non_null(strstr(out, "usage: sdrender report"));
    free(out);
}

/* ------------------------------------------------------------ grid */

static int non_white_in(const uint8_t *rgb, int w, int x0, int y0, int x1, int y1) {
    int n = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            const uint8_t *p = rgb + ((size_t)y * (size_t)w + (size_t)x) * 3;
            n += p[0] < 128 && p[1] < 128 && p[2] < 128;
        }
    return n;
}

static void test_grid_from_db_has_one_cell_per_prompt_and_cfg_and_drawn_labels(void **state) {
    (void)state;
    const char *png = tu_tmp("grid.png");
    free(sh_expect(0, "%s grid --db %s -o %s --rows prompt --cols cfg_scale --where seed=100 --cell 64", tu_bin(),
                   db_path, png));
    uint8_t *rgb;
    int w, h;
    sd_error err = {0};
    if (sd_png_read_rgb(png, &rgb, &w, &h, &err) < 0) fail_msg("%s", err.msg);
    /* the same layout computed here: 2 rows (prompts) x 3 columns (cfg 1, 4, 8) of 64 px */
    const char *rows[2] = {reportdb_prompts[0], reportdb_prompts[1]};
    const char *cols[3] = {"cfg_scale: 1", "cfg_scale: 4", "cfg_scale: 8"};
    grid_cell cells[6] = {{0}};
    grid_spec g = {.rows = 2, .cols = 3, .cell = 64, .row_labels = rows, .col_labels = cols, .cells = cells};
    int top = grid_top_band(&g), left = grid_left_band(&g);
    assert_true(top > 0 && left > 0);
    assert_int_equal(w, left + 3 * 64);
    assert_int_equal(h, top + 2 * 64);
    /* labels drawn: dark pixels in the top band over each column and in the left band of each row */
    for (int c = 0; c < 3; c++) assert_true(non_white_in(rgb, w, left + c * 64, 0, left + (c + 1) * 64, top) > 10);
    for (int r = 0; r < 2; r++) assert_true(non_white_in(rgb, w, 0, top + r * 64, left, top + (r + 1) * 64) > 10);
    /* cells in cfg order: the square (foreground colour) grows from column 1 to 3 of the first row */
    int fg[3];
    for (int c = 0; c < 3; c++) {
        fg[c] = 0;
        for (int y = top; y < top + 64; y++)
            for (int x = left + c * 64; x < left + (c + 1) * 64; x++) {
                const uint8_t *p = rgb + ((size_t)y * (size_t)w + (size_t)x) * 3;
                fg[c] += p[0] > 150 && p[1] < 100 && p[2] < 100;
            }
    }
    assert_true(fg[0] < fg[1] && fg[1] < fg[2]);
    free(rgb);
}

static void test_grid_from_files_and_bad_keys(void **state) {
    (void)state;
    const char *png = tu_tmp("grid_files.png");
    free(sh_expect(0, "%s grid -o %s --cols 2 --cell 32 %s/00000001.png %s/00000002.png %s/00000003.png", tu_bin(), png,
                   out_dir, out_dir, out_dir));
    uint8_t *rgb;
    int w, h;
    sd_error err = {0};
    if (sd_png_read_rgb(png, &rgb, &w, &h, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(w, 64);
    assert_int_equal(h, 64);
    free(rgb);
    char *out = sh_expect(2, "%s grid --db %s -o %s --cols colour", tu_bin(), db_path, png);
    assert_non_null(strstr(out, "unknown key"));
    free(out);
    out = sh_expect(2, "%s grid --db %s -o %s --cols cfg_scale --where cfg_scale=3", tu_bin(), db_path, png);
    assert_non_null(strstr(out, "no done jobs"));
    free(out);
}

int main(void) {
    tu_asan_full_stacks_for_children(); /* the sdrender processes it starts load Open MPI */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_where_scores_only_the_selected_jobs_and_stores_the_selection),
        cmocka_unit_test(test_metrics_where_rejects_unknown_keys_bad_values_and_empty_selections),
        cmocka_unit_test(test_report_writes_page_thumbnails_and_reuses_them),
        cmocka_unit_test(test_report_fails_clearly_on_bad_input),
        cmocka_unit_test(test_grid_from_db_has_one_cell_per_prompt_and_cfg_and_drawn_labels),
        cmocka_unit_test(test_grid_from_files_and_bad_keys),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
