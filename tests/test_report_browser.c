/*
 * The report page in a real browser: Debian's headless chromium loads `sdrender report`'s page
 * from disk (file://, no network) and the test checks the DOM after the scripts ran (--dump-dom),
 * the browser's console (--enable-logging=stderr: every console message and uncaught error is a
 * "CONSOLE" line) and a screenshot (not blank: the pixels vary).
 *
 * SDRENDER_REPORT_KEEP=DIR keeps the small database, its report and the screenshot in DIR.
 * Runs under `make check-report` (SDRENDER_BROWSER=1; scripts/install-deps.sh --browser installs
 * chromium); under plain `make check` it is skipped.
 */
#include "testutil.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "pngio.h"
#include "reportdb.h"

/* 600 s: a chromium start takes a few seconds on an idle machine, minutes on a 2-core one shared by a
 * dozen busy processes */
#define CHROMIUM "timeout 600 chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-extensions " \
                 "--user-data-dir=%s/profile --enable-logging=stderr --v=0 --virtual-time-budget=5000"

static int group_setup(void **state) {
    (void)state;
    const char *want = getenv("SDRENDER_BROWSER");
    if (!want || strcmp(want, "1")) {
        print_message("test_report_browser: skipped (run 'make check-report', which sets SDRENDER_BROWSER=1)\n");
        return 0;
    }
    if (tu_sh(NULL, "command -v chromium >/dev/null") != 0)
        fail_msg("chromium is missing: run scripts/install-deps.sh --browser");
    return 0;
}

static int enabled(void) {
    const char *want = getenv("SDRENDER_BROWSER");
    return want && !strcmp(want, "1");
}

/* Makes a database of n_done images (with the metric rows when metrics is set) and its report in dir. */
static void make_report(const char *dir, int n_done, int metrics) {
    char db[PATH_MAX], out[PATH_MAX];
    snprintf(db, sizeof db, "%s/jobs.db", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    if (tu_sh(NULL, "rm -rf %s && mkdir -p %s", dir, dir) != 0) fail_msg("cannot make %s", dir);
    reportdb_make_n(db, out, n_done);
    if (metrics) reportdb_add_metrics(db);
    char *log;
    int rc = tu_sh(&log, "%s report -q --db %s -o %s/report 2>&1", tu_bin(), db, dir);
    if (rc != 0) fail_msg("sdrender report: exit %d\n%s", rc, log);
    free(log);
}

/* Loads dir/report/index.html in chromium: the DOM after the scripts (caller frees); fails on console output. */
static char *load_dom(const char *dir) {
    char *log = NULL;
    int rc = tu_sh(NULL, CHROMIUM " --dump-dom file://%s/report/index.html >%s/dom.html 2>%s/chromium.log", dir, dir, dir,
                   dir);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/chromium.log", dir);
    log = read_text(path);
    if (rc != 0) fail_msg("chromium --dump-dom: exit %d\n%s", rc, log);
    /* every console message and uncaught error of the page */
    const char *c = strstr(log, ":CONSOLE");
    if (c) {
        const char *end = strchr(c, '\n');
        fail_msg("the page logged to the console: %.*s", end ? (int)(end - c) : (int)strlen(c), c);
    }
    free(log);
    snprintf(path, sizeof path, "%s/dom.html", dir);
    char *dom = read_text(path);
    if (!strstr(dom, "data-ready=\"1\"")) fail_msg("the page's script did not finish (no body[data-ready])");
    if (strstr(dom, "class=\"jserror\"")) fail_msg("the page reported a script error");
    return dom;
}

static void test_page_loads_without_errors_and_shows_images_metrics_plots_failed_jobs(void **state) {
    (void)state;
    if (!enabled()) skip();
    const char *dir = tu_tmp("small");
    make_report(dir, REPORTDB_DONE, 1);
    char *dom = load_dom(dir);
    assert_int_equal(count_of(dom, "<img class=\"thumb\""), REPORTDB_DONE);
    assert_int_equal(count_of(dom, "<tr class=\"metric\">"), 15);
    assert_int_equal(count_of(dom, "<tr class=\"failed\">"), 1);
    /* fid, precision, recall, density, coverage against cfg_scale */
    assert_int_equal(count_of(dom, "<svg"), 5);
    assert_non_null(strstr(dom, "page 1 of 1 (12 images)"));
    /* prompts reach the page as text, never as markup */
    assert_null(strstr(dom, "<b>circle</b>"));
    assert_non_null(strstr(dom, "&lt;b&gt;circle&lt;/b&gt;"));
    free(dom);
}

static void test_screenshot_is_not_blank(void **state) {
    (void)state;
    if (!enabled()) skip();
    const char *dir = tu_tmp("small");
    char *log;
    int rc = tu_sh(&log, CHROMIUM " --hide-scrollbars --window-size=1200,1400 --screenshot=%s/shot.png "
                                  "file://%s/report/index.html 2>&1",
                   dir, dir, dir);
    if (rc != 0) fail_msg("chromium --screenshot: exit %d\n%s", rc, log);
    free(log);
    char png[PATH_MAX + 16];
    snprintf(png, sizeof png, "%s/shot.png", dir);
    uint8_t *gray;
    int w, h;
    sd_error err = {0};
    if (sd_png_read_gray(png, &gray, &w, &h, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(w, 1200);
    double sum = 0, sum2 = 0;
    int dark = 0;
    for (int i = 0; i < w * h; i++) {
        sum += gray[i];
        sum2 += (double)gray[i] * gray[i];
        dark += gray[i] < 100;
    }
    double mean = sum / (w * h), sd = sqrt(sum2 / (w * h) - mean * mean);
    print_message("screenshot %dx%d: mean %.1f, standard deviation %.1f, %d dark pixels\n", w, h, mean, sd, dark);
    /* a blank (or error) page is one flat colour; the report has text, tables, plots and thumbnails */
    assert_true(sd > 10);
    assert_true(dark > 2000);
    free(gray);
    /* SDRENDER_REPORT_KEEP=DIR keeps the report and its screenshot there (to look at them) */
    const char *keep = getenv("SDRENDER_REPORT_KEEP");
    if (keep && *keep) tu_sh(NULL, "mkdir -p %s && cp -r %s/. %s/", keep, dir, keep);
}

static void test_contact_sheet_pages_450_images_200_at_a_time(void **state) {
    (void)state;
    if (!enabled()) skip();
    const char *dir = tu_tmp("paged");
    make_report(dir, 450, 0);
    char *dom = load_dom(dir);
    assert_int_equal(count_of(dom, "<img class=\"thumb\""), 200);
    assert_non_null(strstr(dom, "page 1 of 3 (450 images)"));
    assert_int_equal(count_of(dom, "<tr class=\"metric\">"), 0);
    free(dom);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_page_loads_without_errors_and_shows_images_metrics_plots_failed_jobs),
        cmocka_unit_test(test_screenshot_is_not_blank),
        cmocka_unit_test(test_contact_sheet_pages_450_images_200_at_a_time),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
