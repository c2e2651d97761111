/*
 * Unit tests of the report's parts: HTML escaping and relative URLs, SVG plots, the plots chosen
 * from metric rows' selections, the page data (data.js) and page (index.html), the 5x7 font and
 * grid layout, and job selections (--where).
 */
#include "testutil.h"

/* open_memstream takes the address of a local buffer pointer; GCC 12's -Wdangling-pointer then flags
 * every later use of the text it returns, which lives on the heap. */
#pragma GCC diagnostic ignored "-Wdangling-pointer"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "font5x7.h"
#include "grid.h"
#include "html.h"
#include "jobsel.h"
#include "page.h"
#include "svgplot.h"

/* What fn writes to a memory stream, as a string (caller frees). */
static char *capture_plot(const svg_plot *p) {
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    svg_plot_write(fp, p);
    fclose(fp);
    return buf;
}

static int count_of(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static void test_html_escape_turns_markup_and_quotes_into_entities(void **state) {
    (void)state;
    char *s = html_escape("<img src=x onerror=\"alert('1')\"> & caf\xc3\xa9");
    assert_string_equal(s, "&lt;img src=x onerror=&quot;alert(&#39;1&#39;)&quot;&gt; &amp; caf\xc3\xa9");
    free(s);
    s = html_escape("");
    assert_string_equal(s, "");
    free(s);
}

static void test_relative_url_walks_up_and_percent_encodes(void **state) {
    (void)state;
    char *u = html_relative_url("/data/run/report", "/data/run/out/00000001.png");
    assert_string_equal(u, "../out/00000001.png");
    free(u);
    u = html_relative_url("/data/report", "/data/report/thumbs/1.png");
    assert_string_equal(u, "thumbs/1.png");
    free(u);
    u = html_relative_url("/a/b/c", "/x/my pic#1.png");
    assert_string_equal(u, "../../../x/my%20pic%231.png");
    free(u);
    u = html_relative_url("/a/rr", "/a/r/x.png"); /* a shared prefix that is not a folder */
    assert_string_equal(u, "../r/x.png");
    free(u);
}

/* The polyline's points of an SVG plot. */
static int polyline_points(const char *svg, double *x, double *y, int max) {
    const char *p = strstr(svg, "<polyline class=\"line\" points=\"");
    if (!p) return 0;
    p += strlen("<polyline class=\"line\" points=\"");
    int n = 0;
    while (n < max && *p != '"') {
        char *end;
        x[n] = strtod(p, &end);
        assert_true(*end == ',');
        y[n] = strtod(end + 1, &end);
        n++;
        p = end;
        while (*p == ' ') p++;
    }
    return n;
}

static void test_svg_plot_orders_points_by_x_and_puts_larger_values_higher(void **state) {
    (void)state;
    double x[4] = {8, 1, 4, 2}, y[4] = {30, 90, 40, 60};
    svg_plot p = {.title = "fid <vs> cfg", .x_name = "cfg_scale", .y_name = "fid", .n = 4, .x = x, .y = y};
    char *svg = capture_plot(&p);
    assert_non_null(strstr(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert_non_null(strstr(svg, "fid &lt;vs&gt; cfg"));
    assert_null(strstr(svg, "<vs>"));
    double px[8], py[8];
    assert_int_equal(polyline_points(svg, px, py, 8), 4);
    /* in x order 1, 2, 4, 8: x grows, and y (SVG's, down) grows as the value falls 90, 60, 40, 30 */
    for (int i = 1; i < 4; i++) {
        assert_true(px[i] > px[i - 1]);
        assert_true(py[i] > py[i - 1]);
    }
    /* distances follow the data: 1 -> 2 is a seventh of 1 -> 8 */
    assert_true(fabs((px[1] - px[0]) / (px[3] - px[0]) - 1.0 / 7) < 0.01);
    /* every point inside the SVG */
    for (int i = 0; i < 4; i++) assert_true(px[i] > 0 && px[i] < SVG_PLOT_W && py[i] > 0 && py[i] < SVG_PLOT_H);
    assert_int_equal(count_of(svg, "<circle"), 4);
    /* the same input gives the same bytes */
    char *again = capture_plot(&p);
    assert_string_equal(svg, again);
    free(again);
    free(svg);
}

static void test_svg_plot_categorical_axis_and_empty_plot(void **state) {
    (void)state;
    const char *cats[3] = {"euler", "dpm++2m", "<ddim>"};
    double x[3] = {2, 0, 1}, y[3] = {0.5, 0.7, 0.6};
    svg_plot p = {.title = "precision vs sampler", .x_name = "sampler", .y_name = "precision", .n = 3, .x = x, .y = y,
                  .cats = cats, .n_cats = 3};
    char *svg = capture_plot(&p);
    assert_non_null(strstr(svg, ">euler</text>"));
    assert_non_null(strstr(svg, ">dpm++2m</text>"));
    assert_non_null(strstr(svg, ">&lt;ddim&gt;</text>"));
    double px[4], py[4];
    assert_int_equal(polyline_points(svg, px, py, 4), 3);
    /* evenly spaced categories */
    assert_true(fabs((px[1] - px[0]) - (px[2] - px[1])) < 0.2);
    free(svg);
    svg_plot empty = {.title = "t", .x_name = "x", .y_name = "y"};
    svg = capture_plot(&empty);
    assert_non_null(strstr(svg, "no data"));
    assert_null(strstr(svg, "<polyline"));
    free(svg);
}

static char *capture_plots(const report_data *d, int *n) {
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    *n = report_write_plots(fp, d);
    fclose(fp);
    return buf;
}

static void test_plots_follow_the_settings_that_vary_between_selections(void **state) {
    (void)state;
    report_metric m[] = {
        {.id = 1, .name = "fid", .has_value = 1, .value = 80, .details_json = "{\"where\":{\"cfg_scale\":1.0}}"},
        {.id = 2, .name = "fid", .has_value = 1, .value = 50, .details_json = "{\"where\":{\"cfg_scale\":4.0}}"},
        {.id = 3, .name = "precision", .has_value = 1, .value = 0.3, .details_json = "{\"where\":{\"cfg_scale\":1.0}}"},
        {.id = 4, .name = "precision", .has_value = 1, .value = 0.6, .details_json = "{\"where\":{\"cfg_scale\":4.0}}"},
        /* a rescore of cfg 4: the latest row counts */
        {.id = 5, .name = "fid", .has_value = 1, .value = 45, .details_json = "{\"where\":{\"cfg_scale\":4}}"},
        /* one sampler value only: no plot against sampler */
        {.id = 6, .name = "recall", .has_value = 1, .value = 0.4, .details_json = "{\"where\":{\"sampler\":\"euler\"}}"},
        {.id = 7, .name = "clip_score", .has_value = 1, .value = 0.2, .details_json = "{}"},
        {.id = 8, .name = "fid", .has_value = 1, .value = 70, .details_json = NULL},
    };
    report_data d = {.metrics = m, .n_metrics = 8};
    int n;
    char *html = capture_plots(&d, &n);
    assert_int_equal(n, 2);
    assert_non_null(strstr(html, "fid vs cfg_scale"));
    assert_non_null(strstr(html, "precision vs cfg_scale"));
    assert_null(strstr(html, "vs sampler"));
    /* the fid plot has two points (cfg 1 and 4), the rescored 4 at 45, not 50 */
    const char *fid = strstr(html, "fid vs cfg_scale");
    const char *end = strstr(fid, "</svg>");
    char *one = strndup(fid, (size_t)(end - fid));
    assert_int_equal(count_of(one, "<circle"), 2);
    assert_non_null(strstr(one, ": 45</title>"));
    assert_null(strstr(one, ": 50</title>"));
    free(one);
    free(html);
    /* two samplers: a categorical plot */
    report_metric s[] = {
        {.id = 1, .name = "recall", .has_value = 1, .value = 0.4, .details_json = "{\"where\":{\"sampler\":\"euler\"}}"},
        {.id = 2, .name = "recall", .has_value = 1, .value = 0.5, .details_json = "{\"where\":{\"sampler\":\"ddim\"}}"},
    };
    report_data d2 = {.metrics = s, .n_metrics = 2};
    html = capture_plots(&d2, &n);
    assert_int_equal(n, 1);
    assert_non_null(strstr(html, ">euler</text>"));
    assert_non_null(strstr(html, ">ddim</text>"));
    free(html);
}

/* A small page's data: 3 images of 2 prompts (one with markup), one failed job. */
static report_image images[3] = {
    {.id = 1, .seed = 7, .run_id = 1, .prompt = "a cat </script><script>alert(1)</script>", .negative_prompt = "",
     .sampler = "euler", .steps = 20, .width = 64, .height = 64, .clip_skip = 1, .cfg_scale = 4.0,
     .render_seconds = 1.5, .thumb = "thumbs/1.png", .href = "../out/1.png"},
    {.id = 2, .seed = 8, .run_id = 1, .prompt = "a dog", .negative_prompt = "blurry", .sampler = "ddim", .steps = 20,
     .width = 64, .height = 64, .clip_skip = 1, .cfg_scale = 7.5, .thumb = "thumbs/2.png", .href = "../out/2.png"},
    {.id = 3, .seed = 9, .run_id = 1, .prompt = "a cat </script><script>alert(1)</script>", .negative_prompt = "",
     .sampler = "euler", .steps = 20, .width = 64, .height = 64, .clip_skip = 1, .cfg_scale = 7.5,
     .thumb = "thumbs/3.png", .href = "../out/3.png"},
};
static report_failed failed[1] = {{.id = 4, .prompt = "<b>bold</b>", .sampler = "euler", .error = "x < y & \"z\"",
                                   .attempts = 3, .run_id = 1}};
static report_run runs[1] = {{.id = 1, .host = "h<1>", .model_path = "/m", .settings_json = "{\"a\":\"<b>\"}",
                              .end_status = "complete", .ranks = 3, .started_at = 1764668000, .ended_at = 1764668100}};

static void test_page_data_lists_each_image_once_with_interned_prompts(void **state) {
    (void)state;
    report_data d = {.images = images, .n_images = 3};
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    sd_error err = {0};
    assert_int_equal(report_write_data_js(fp, &d, &err), 0);
    fclose(fp);
    assert_true(!strncmp(buf, "window.SDR = ", 13));
    /* a prompt holding </script> cannot end a script element */
    assert_null(strstr(buf, "</script>"));
    json_error_t je;
    json_t *j = json_loads(buf + 13, JSON_DISABLE_EOF_CHECK, &je);
    if (!j) fail_msg("data.js is not JSON: %s", je.text);
    json_t *cols = json_object_get(j, "cols"), *imgs = json_object_get(j, "images");
    assert_int_equal(json_array_size(imgs), 3);
    assert_int_equal(json_array_size(json_object_get(j, "prompts")), 2);
    assert_int_equal(json_array_size(json_object_get(j, "samplers")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "page_size")), REPORT_PAGE_SIZE);
    /* columns by name */
    int c_id = -1, c_prompt = -1, c_cfg = -1, c_thumb = -1;
    for (size_t i = 0; i < json_array_size(cols); i++) {
        const char *name = json_string_value(json_array_get(cols, i));
        if (!strcmp(name, "id")) c_id = (int)i;
        if (!strcmp(name, "prompt")) c_prompt = (int)i;
        if (!strcmp(name, "cfg")) c_cfg = (int)i;
        if (!strcmp(name, "thumb")) c_thumb = (int)i;
    }
    assert_true(c_id >= 0 && c_prompt >= 0 && c_cfg >= 0 && c_thumb >= 0);
    for (int i = 0; i < 3; i++) {
        json_t *row = json_array_get(imgs, (size_t)i);
        assert_int_equal(json_integer_value(json_array_get(row, (size_t)c_id)), images[i].id);
        assert_true(json_number_value(json_array_get(row, (size_t)c_cfg)) == images[i].cfg_scale);
        assert_string_equal(json_string_value(json_array_get(row, (size_t)c_thumb)), images[i].thumb);
        int p = (int)json_integer_value(json_array_get(row, (size_t)c_prompt));
        assert_string_equal(json_string_value(json_array_get(json_object_get(j, "prompts"), (size_t)p)), images[i].prompt);
    }
    json_decref(j);
    free(buf);
}

static void test_page_escapes_every_database_string(void **state) {
    (void)state;
    report_data d = {.db_path = "jobs<1>.db", .images = images, .n_images = 3, .failed = failed, .n_failed = 1,
                     .runs = runs, .n_runs = 1};
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    sd_error err = {0};
    assert_int_equal(report_write_html(fp, &d, &err), 0);
    fclose(fp);
    assert_non_null(strstr(buf, "jobs&lt;1&gt;.db"));
    assert_non_null(strstr(buf, "&lt;b&gt;bold&lt;/b&gt;"));
    assert_non_null(strstr(buf, "x &lt; y &amp; &quot;z&quot;"));
    assert_non_null(strstr(buf, "h&lt;1&gt;"));
    assert_non_null(strstr(buf, "{&quot;a&quot;:&quot;&lt;b&gt;&quot;}"));
    assert_null(strstr(buf, "<b>bold"));
    assert_int_equal(count_of(buf, "<tr class=\"failed\">"), 1);
    assert_int_equal(count_of(buf, "<tr class=\"run\">"), 1);
    /* settings: cfg 4 once and 7.5 twice */
    assert_non_null(strstr(buf, "4 <span class=\"n\">(1)</span>, 7.5 <span class=\"n\">(2)</span>"));
    /* the run's times as UTC from the database (no clock of this machine) */
    assert_non_null(strstr(buf, "2025-12-02 09:33:20"));
    assert_null(strstr(buf, "https://")); /* no network: the only URL is the SVG namespace */
    assert_int_equal(count_of(buf, "http://"), count_of(buf, "http://www.w3.org/2000/svg"));
    free(buf);
}

static void test_font_has_a_glyph_for_every_printable_character(void **state) {
    (void)state;
    for (int c = 33; c < 127; c++) {
        const uint8_t *g = font_glyph(c);
        int bits = 0;
        for (int k = 0; k < 5; k++) bits |= g[k];
        assert_true(bits != 0); /* every visible character draws something */
        assert_true((bits & 0x80) == 0 || strchr("gjpqy", c)); /* only descenders use the eighth row */
    }
    const uint8_t *sp = font_glyph(' ');
    for (int k = 0; k < 5; k++) assert_int_equal(sp[k], 0);
    assert_ptr_equal(font_glyph(200), font_glyph('?'));
    /* glyphs differ from each other (a copy-paste slip would repeat one) */
    for (int a = 33; a < 127; a++)
        for (int b = a + 1; b < 127; b++) assert_true(memcmp(font_glyph(a), font_glyph(b), 5) != 0);
    assert_int_equal(font_text_chars("caf\xc3\xa9"), 4);
    assert_int_equal(font_text_width("abc", 2), 3 * FONT_CELL_W * 2);
}

static void test_grid_layout_and_labels(void **state) {
    (void)state;
    uint8_t red[16 * 8 * 3];
    for (int i = 0; i < 16 * 8; i++) red[i * 3] = 255, red[i * 3 + 1] = 0, red[i * 3 + 2] = 0;
    grid_cell cells[6] = {{red, 16, 8}, {NULL, 0, 0}, {red, 16, 8}, {red, 16, 8}, {red, 16, 8}, {red, 16, 8}};
    const char *rows[2] = {"a red square", "another row with a much longer label that wraps"};
    const char *cols[3] = {"cfg 1", "cfg 4", "cfg 8"};
    grid_spec g = {.rows = 2, .cols = 3, .cell = 40, .row_labels = rows, .col_labels = cols, .cells = cells};
    uint8_t *rgb;
    int w, h;
    sd_error err = {0};
    assert_int_equal(grid_render(&g, &rgb, &w, &h, &err), 0);
    int top = grid_top_band(&g), left = grid_left_band(&g);
    assert_int_equal(w, left + 3 * 40);
    assert_int_equal(h, top + 2 * 40);
    assert_true(top >= FONT_CELL_H && left >= FONT_CELL_W);
    /* label bands have black pixels, the picture is red and centered (16x8 fits as 40x20) */
    int black_top = 0, black_left = 0;
    for (int y = 0; y < top; y++)
        for (int x = left; x < w; x++) black_top += rgb[(y * w + x) * 3] == 0;
    for (int y = top; y < h; y++)
        for (int x = 0; x < left; x++) black_left += rgb[(y * w + x) * 3] == 0;
    assert_true(black_top > 20 && black_left > 20);
    const uint8_t *c = rgb + ((top + 20) * w + left + 20) * 3;
    assert_true(c[0] == 255 && c[1] == 0 && c[2] == 0);
    const uint8_t *edge = rgb + ((top + 2) * w + left + 20) * 3; /* above the 20 px tall picture: white */
    assert_true(edge[0] == 255 && edge[1] == 255 && edge[2] == 255);
    const uint8_t *empty = rgb + ((top + 20) * w + left + 40 + 20) * 3; /* the empty cell: grey */
    assert_int_equal(empty[0], 224);
    free(rgb);
    /* without labels: just the cells */
    grid_spec bare = {.rows = 2, .cols = 3, .cell = 40, .cells = cells};
    assert_int_equal(grid_render(&bare, &rgb, &w, &h, &err), 0);
    assert_int_equal(w, 120);
    assert_int_equal(h, 80);
    free(rgb);
    grid_spec bad = {.rows = 0, .cols = 3, .cell = 40, .cells = cells};
    assert_true(grid_render(&bad, &rgb, &w, &h, &err) < 0);
}

static void test_jobsel_parses_typed_values_and_matches_jobs(void **state) {
    (void)state;
    jobsel sel = {0};
    sd_error err = {0};
    assert_int_equal(jobsel_add(&sel, "cfg_scale=4", &err), 0);
    assert_int_equal(jobsel_add(&sel, "sampler=dpmpp_2m", &err), 0);
    assert_int_equal(jobsel_add(&sel, "karras=true", &err), 0);
    assert_string_equal(sel.t[1].s, "dpm++2m");
    json_t *j = jobsel_json(&sel);
    char *s = json_dumps(j, JSON_COMPACT);
    assert_string_equal(s, "{\"cfg_scale\":4.0,\"sampler\":\"dpm++2m\",\"karras\":1}");
    free(s);
    json_decref(j);
    sd_job job = {.cfg_scale = 4.0, .karras = 1, .prompt = "p"};
    assert_int_equal(sampler_kind_parse("dpm++2m", &job.sampler), 0);
    assert_int_equal(jobsel_match(&sel, &job), 1);
    job.cfg_scale = 4.5;
    assert_int_equal(jobsel_match(&sel, &job), 0);
    char buf[64];
    assert_int_equal(jobsel_job_text(&job, "cfg_scale", buf, sizeof buf), 0);
    assert_string_equal(buf, "4.5");
    assert_int_equal(jobsel_job_text(&job, "nosuch", buf, sizeof buf), -1);
    assert_int_equal(jobsel_add(&sel, "cfg_scale=5", &err), SD_EINPUT); /* twice */
    assert_non_null(strstr(err.msg, "given twice"));
    assert_int_equal(jobsel_add(&sel, "status=done", &err), SD_EINPUT); /* a state, not a setting */
    assert_non_null(strstr(err.msg, "unknown key 'status'"));
    assert_int_equal(jobsel_add(&sel, "steps=2.5", &err), SD_EINPUT);
    assert_int_equal(jobsel_add(&sel, "width", &err), SD_EINPUT);
    assert_int_equal(jobsel_add(&sel, "cfg=nan", &err), SD_EINPUT);
    jobsel_free(&sel);
    assert_int_equal(sel.n, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_html_escape_turns_markup_and_quotes_into_entities),
        cmocka_unit_test(test_relative_url_walks_up_and_percent_encodes),
        cmocka_unit_test(test_svg_plot_orders_points_by_x_and_puts_larger_values_higher),
        cmocka_unit_test(test_svg_plot_categorical_axis_and_empty_plot),
        cmocka_unit_test(test_plots_follow_the_settings_that_vary_between_selections),
        cmocka_unit_test(test_page_data_lists_each_image_once_with_interned_prompts),
        cmocka_unit_test(test_page_escapes_every_database_string),
        cmocka_unit_test(test_font_has_a_glyph_for_every_printable_character),
        cmocka_unit_test(test_grid_layout_and_labels),
        cmocka_unit_test(test_jobsel_parses_typed_values_and_matches_jobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
