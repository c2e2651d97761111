/* The report page: index.html (tables and plots rendered here) and data.js (the images). */
#include "page.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fsutil.h"
#include "html.h"
#include "svgplot.h"

/* Unix seconds as "2026-12-02 09:45:36" UTC, or "" for 0. */
static void fmt_time(char *buf, size_t n, double t) {
    buf[0] = 0;
    if (t <= 0) return;
    time_t s = (time_t)t;
    struct tm tm;
    if (gmtime_r(&s, &tm)) strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
}

static void td_text(FILE *fp, const char *s) {
    fputs("<td>", fp);
    html_put(fp, s);
    fputs("</td>", fp);
}

static void td_int(FILE *fp, int64_t v) { fprintf(fp, "<td class=\"num\">%lld</td>", (long long)v); }

/* ------------------------------------------------------------ runs and settings */

static void write_runs(FILE *fp, const report_data *d) {
    fputs("<section id=\"runs\"><h2>Runs</h2>\n", fp);
    if (d->n_runs == 0) {
        fputs("<p>No runs yet.</p></section>\n", fp);
        return;
    }
    fputs("<table class=\"runs\"><thead><tr><th>run</th><th>started (UTC)</th><th>ended (UTC)</th><th>status</th>"
          "<th>host</th><th>ranks</th><th>done</th><th>failed</th><th>model</th><th>settings</th></tr></thead><tbody>\n",
          fp);
    for (int i = 0; i < d->n_runs; i++) {
        const report_run *r = &d->runs[i];
        int64_t done = 0, failed = 0;
        for (int k = 0; k < d->n_images; k++) done += d->images[k].run_id == r->id;
        for (int k = 0; k < d->n_failed; k++) failed += d->failed[k].run_id == r->id;
        char t0[32], t1[32], ranks[96];
        fmt_time(t0, sizeof t0, r->started_at);
        fmt_time(t1, sizeof t1, r->ended_at);
        if (r->group_size > 1)
            snprintf(ranks, sizeof ranks, "%d (groups of %d, %s)", r->ranks, r->group_size, r->parallel ? r->parallel : "");
        else snprintf(ranks, sizeof ranks, "%d", r->ranks);
        fputs("<tr class=\"run\">", fp);
        td_int(fp, r->id);
        td_text(fp, t0);
        td_text(fp, t1);
        td_text(fp, r->end_status && *r->end_status ? r->end_status : "running or lost");
        td_text(fp, r->host);
        td_text(fp, ranks);
        td_int(fp, done);
        td_int(fp, failed);
        td_text(fp, r->model_path);
        fputs("<td><code>", fp);
        html_put(fp, r->settings_json);
        fputs("</code></td></tr>\n", fp);
    }
    fputs("</tbody></table></section>\n", fp);
}

/* One setting's distinct values and their image counts, in first-seen order (a short list). */
typedef struct value_count {
    char text[64];
    int64_t n;
} value_count;

static void count_value(value_count *vc, int *n, int cap, const char *text) {
    for (int i = 0; i < *n; i++)
        if (!strcmp(vc[i].text, text)) {
            vc[i].n++;
            return;
        }
    if (*n < cap) {
        snprintf(vc[*n].text, sizeof vc[*n].text, "%s", text);
        vc[(*n)++].n = 1;
    }
}

/* The settings of the done images: each key's values with counts (at most 40 values a key). */
static void write_settings(FILE *fp, const report_data *d) {
    enum { CAP = 40 };
    static const char *keys[] = {"cfg_scale", "steps", "sampler", "karras", "size", "clip_skip"};
    fputs("<section id=\"settings\"><h2>Settings of the done images</h2>\n<table class=\"settings\"><tbody>\n", fp);
    value_count *vc = malloc(CAP * sizeof *vc);
    for (size_t k = 0; vc && k < sizeof keys / sizeof *keys; k++) {
        int n = 0;
        for (int i = 0; i < d->n_images; i++) {
            const report_image *im = &d->images[i];
            char t[64];
            switch (k) {
            case 0: snprintf(t, sizeof t, "%.15g", im->cfg_scale); break;
            case 1: snprintf(t, sizeof t, "%d", im->steps); break;
            case 2: snprintf(t, sizeof t, "%s", im->sampler ? im->sampler : ""); break;
            case 3: snprintf(t, sizeof t, "%d", im->karras); break;
            case 4: snprintf(t, sizeof t, "%dx%d", im->width, im->height); break;
            default: snprintf(t, sizeof t, "%d", im->clip_skip); break;
            }
            count_value(vc, &n, CAP, t);
        }
        fputs("<tr><th>", fp);
        html_put(fp, keys[k]);
        fputs("</th><td>", fp);
        for (int i = 0; i < n; i++) {
            fputs(i ? ", " : "", fp);
            html_put(fp, vc[i].text);
            fprintf(fp, " <span class=\"n\">(%lld)</span>", (long long)vc[i].n);
        }
        fputs("</td></tr>\n", fp);
    }
    free(vc);
    fputs("</tbody></table></section>\n", fp);
}

/* ------------------------------------------------------------ metrics */

/* "cfg_scale=4, sampler=euler" from a details object's "where" (empty: every done job). */
static void where_text(FILE *fp, json_t *where) {
    const char *key;
    json_t *v;
    int first = 1;
    if (!json_is_object(where)) return;
    json_object_foreach(where, key, v) {
        fputs(first ? "" : ", ", fp);
        first = 0;
        html_put(fp, key);
        fputc('=', fp);
        if (json_is_string(v)) html_put(fp, json_string_value(v));
        else if (json_is_number(v)) fprintf(fp, "%.15g", json_number_value(v));
    }
    if (first) fputs("all done jobs", fp);
}

static void write_metrics(FILE *fp, const report_data *d) {
    fputs("<section id=\"metrics\"><h2>Metrics</h2>\n", fp);
    if (d->n_metrics == 0) {
        fputs("<p>No metrics yet: run <code>sdrender metrics --db JOBS.db ...</code>.</p></section>\n", fp);
        return;
    }
    fputs("<table class=\"metrics\"><thead><tr><th>id</th><th>metric</th><th>value</th><th>selection</th>"
          "<th>fakes</th><th>reals</th><th>k</th><th>computed (UTC)</th></tr></thead><tbody>\n",
          fp);
    for (int i = 0; i < d->n_metrics; i++) {
        const report_metric *m = &d->metrics[i];
        json_t *det = m->details_json ? json_loads(m->details_json, 0, NULL) : NULL;
        fputs("<tr class=\"metric\">", fp);
        td_int(fp, m->id);
        td_text(fp, m->name);
        if (m->has_value) fprintf(fp, "<td class=\"num\">%.6g</td>", m->value);
        else fputs("<td class=\"num\">NaN</td>", fp);
        fputs("<td>", fp);
        if (det) where_text(fp, json_object_get(det, "where"));
        fputs("</td>", fp);
        static const char *ints[] = {"n_fake", "n_real", "k"};
        for (int k = 0; k < 3; k++) {
            json_t *v = det ? json_object_get(det, ints[k]) : NULL;
            if (json_is_integer(v)) td_int(fp, json_integer_value(v));
            else fputs("<td></td>", fp);
        }
        char t[32];
        fmt_time(t, sizeof t, m->created_at);
        td_text(fp, t);
        fputs("</tr>\n", fp);
        json_decref(det);
    }
    fputs("</tbody></table></section>\n", fp);
}

/* ------------------------------------------------------------ plots */

/* One metric row's selection: value of key as a number or a string. */
typedef struct sel_point {
    int64_t id;
    int is_text;
    double x;
    const char *text;
    double y;
} sel_point;

static int cmp_point_id(const void *a, const void *b) {
    const sel_point *p = a, *q = b;
    return (p->id > q->id) - (p->id < q->id);
}

/* Plots metric against key from the rows that have both (the latest row per value); 1 if drawn. */
static int plot_one(FILE *fp, const char *metric, const char *key, json_t **details, const report_data *d) {
    sel_point *pts = malloc((size_t)d->n_metrics * sizeof *pts);
    if (!pts) return 0;
    int n = 0, any_text = 0;
    for (int i = 0; i < d->n_metrics; i++) {
        const report_metric *m = &d->metrics[i];
        if (strcmp(m->name, metric) || !m->has_value || !details[i]) continue;
        json_t *v = json_object_get(json_object_get(details[i], "where"), key);
        if (!json_is_number(v) && !json_is_string(v)) continue;
        pts[n] = (sel_point){m->id, json_is_string(v), json_is_number(v) ? json_number_value(v) : 0,
                             json_is_string(v) ? json_string_value(v) : NULL, m->value};
        any_text |= pts[n].is_text;
        n++;
    }
    qsort(pts, (size_t)n, sizeof *pts, cmp_point_id);
    /* the latest row of each value: keep a point unless a later one has the same value */
    const char **cats = malloc((size_t)(n ? n : 1) * sizeof *cats);
    double *xs = malloc((size_t)(n ? n : 1) * sizeof *xs), *ys = malloc((size_t)(n ? n : 1) * sizeof *ys);
    int m = 0, n_cats = 0, drawn = 0;
    for (int i = 0; cats && xs && ys && i < n; i++) {
        if (any_text && !pts[i].is_text) continue; /* one axis kind per plot */
        int later = 0;
        for (int j = i + 1; j < n && !later; j++)
            later = pts[j].is_text == pts[i].is_text &&
                    (pts[i].is_text ? !strcmp(pts[i].text, pts[j].text) : pts[i].x == pts[j].x);
        if (later) continue;
        double x = pts[i].x;
        if (any_text) {
            int c = 0;
            while (c < n_cats && strcmp(cats[c], pts[i].text)) c++;
            if (c == n_cats) cats[n_cats++] = pts[i].text;
            x = c;
        }
        xs[m] = x;
        ys[m++] = pts[i].y;
    }
    if (m >= 2 && (!any_text || n_cats >= 2)) {
        char title[256];
        snprintf(title, sizeof title, "%s vs %s", metric, key);
        svg_plot p = {.title = title, .x_name = key, .y_name = metric, .n = m, .x = xs, .y = ys,
                      .cats = any_text ? cats : NULL, .n_cats = n_cats};
        fputs("<figure class=\"plot\">", fp);
        svg_plot_write(fp, &p);
        fputs("</figure>\n", fp);
        drawn = 1;
    }
    free(cats);
    free(xs);
    free(ys);
    free(pts);
    return drawn;
}

int report_write_plots(FILE *fp, const report_data *d) {
    static const char *metrics[] = {"fid", "precision", "recall", "density", "coverage", "clip_score"};
    json_t **details = calloc((size_t)(d->n_metrics ? d->n_metrics : 1), sizeof *details);
    if (!details) return 0;
    /* the selection keys, in first-seen order */
    enum { MAX_KEYS = 32 };
    const char *keys[MAX_KEYS];
    int n_keys = 0, plots = 0;
    for (int i = 0; i < d->n_metrics; i++) {
        details[i] = d->metrics[i].details_json ? json_loads(d->metrics[i].details_json, 0, NULL) : NULL;
        json_t *where = json_object_get(details[i], "where"), *v;
        const char *key;
        if (!json_is_object(where)) continue;
        json_object_foreach(where, key, v) {
            int k = 0;
            while (k < n_keys && strcmp(keys[k], key)) k++;
            if (k == n_keys && n_keys < MAX_KEYS) keys[n_keys++] = key;
        }
    }
    for (size_t mi = 0; mi < sizeof metrics / sizeof *metrics; mi++)
        for (int k = 0; k < n_keys; k++) plots += plot_one(fp, metrics[mi], keys[k], details, d);
    for (int i = 0; i < d->n_metrics; i++) json_decref(details[i]);
    free(details);
    return plots;
}

/* ------------------------------------------------------------ failed jobs */

static void write_failed(FILE *fp, const report_data *d) {
    fprintf(fp, "<section id=\"failed\"><h2>Failed jobs (%d)</h2>\n", d->n_failed);
    if (d->n_failed == 0) {
        fputs("<p>None.</p></section>\n", fp);
        return;
    }
    fputs("<table class=\"failed\"><thead><tr><th>job</th><th>prompt</th><th>settings</th><th>attempts</th>"
          "<th>last claimed by</th><th>error</th></tr></thead><tbody>\n",
          fp);
    for (int i = 0; i < d->n_failed; i++) {
        const report_failed *f = &d->failed[i];
        char set[160];
        snprintf(set, sizeof set, "seed %lld, steps %d, cfg %.15g, %s", (long long)f->seed, f->steps, f->cfg_scale,
                 f->sampler ? f->sampler : "");
        fputs("<tr class=\"failed\">", fp);
        td_int(fp, f->id);
        td_text(fp, f->prompt);
        td_text(fp, set);
        td_int(fp, f->attempts);
        td_text(fp, f->claimed_by);
        fputs("<td><pre>", fp);
        html_put(fp, f->error);
        fputs("</pre></td></tr>\n", fp);
    }
    fputs("</tbody></table></section>\n", fp);
}

/* ------------------------------------------------------------ the page */

int report_write_html(FILE *fp, const report_data *d, sd_error *err) {
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
          "<title>sdrender report</title>\n<link rel=\"stylesheet\" href=\"report.css\">\n</head>\n<body>\n"
          "<h1>sdrender report</h1>\n<p class=\"db\">",
          fp);
    html_put(fp, d->db_path);
    fprintf(fp,
            "</p>\n<p class=\"counts\"><b>%d</b> done, <b>%d</b> failed, <b>%lld</b> pending, <b>%lld</b> running</p>\n",
            d->n_images, d->n_failed, (long long)d->n_pending, (long long)d->n_running);
    fputs("<nav><a href=\"#runs\">Runs</a> <a href=\"#plots\">Plots</a> <a href=\"#images\">Images</a> "
          "<a href=\"#metrics\">Metrics</a> <a href=\"#settings\">Settings</a> <a href=\"#failed\">Failed</a></nav>\n",
          fp);
    write_runs(fp, d);
    fputs("<section id=\"plots\"><h2>Plots</h2>\n", fp);
    if (report_write_plots(fp, d) == 0)
        fputs("<p>No setting varies between the metrics' selections (score them with <code>sdrender metrics "
              "--where KEY=VALUE</code>, one selection per value).</p>\n",
              fp);
    fputs("</section>\n", fp);
    fprintf(fp,
            "<section id=\"images\"><h2>Images (%d)</h2>\n"
            "<div class=\"controls\"><button id=\"prev\" type=\"button\">&larr; previous</button> "
            "<span id=\"pageinfo\"></span> <button id=\"next\" type=\"button\">next &rarr;</button> "
            "<input id=\"filter\" type=\"search\" placeholder=\"filter prompts\"> "
            "<button id=\"clear\" type=\"button\">all prompts</button></div>\n"
            "<div id=\"drill\"></div>\n<div id=\"detail\" hidden></div>\n<div id=\"sheet\"></div>\n"
            "<noscript><p>The contact sheet needs JavaScript.</p></noscript>\n</section>\n",
            d->n_images);
    write_metrics(fp, d);
    write_settings(fp, d);
    write_failed(fp, d);
    fputs("<div id=\"jserrors\"></div>\n<script src=\"data.js\"></script>\n<script src=\"report.js\"></script>\n"
          "</body></html>\n",
          fp);
    return ferror(fp) ? sd_err(err, SD_EIO, "writing the report page failed") : 0;
}

/* Index of s in the table (appended when new); -1 when out of memory. */
static int intern(json_t *table, const char *s) {
    size_t i;
    json_t *v;
    if (!s) s = "";
    json_array_foreach(table, i, v) if (!strcmp(json_string_value(v), s)) return (int)i;
    json_t *js = json_string(s);
    if (!js) js = json_string("?"); /* not UTF-8: the job table holds UTF-8, so this does not happen */
    if (json_array_append_new(table, js) < 0) return -1;
    return (int)json_array_size(table) - 1;
}

int report_write_data_js(FILE *fp, const report_data *d, sd_error *err) {
    static const char *cols[] = {"id", "prompt", "neg", "seed", "steps", "cfg", "sampler", "karras", "w", "h",
                                 "clip_skip", "run", "secs", "thumb", "href"};
    json_t *root = json_object(), *jc = json_array(), *prompts = json_array(), *negs = json_array(),
           *samplers = json_array(), *images = json_array();
    int rc = root && jc && prompts && negs && samplers && images ? 0 : SD_ENOMEM;
    for (size_t i = 0; rc == 0 && i < sizeof cols / sizeof *cols; i++) json_array_append_new(jc, json_string(cols[i]));
    /* prompts are interned with a lookup by string: keep a hash of them (50k images, thousands of prompts) */
    json_t *pidx = json_object(), *nidx = json_object();
    for (int i = 0; rc == 0 && i < d->n_images; i++) {
        const report_image *im = &d->images[i];
        int p, n, s;
        json_t *pi = json_object_get(pidx, im->prompt ? im->prompt : "");
        if (pi) p = (int)json_integer_value(pi);
        else {
            p = (int)json_array_size(prompts);
            json_t *js = json_string(im->prompt ? im->prompt : "");
            json_array_append_new(prompts, js ? js : json_string("?"));
            json_object_set_new(pidx, im->prompt ? im->prompt : "", json_integer(p));
        }
        json_t *ni = json_object_get(nidx, im->negative_prompt ? im->negative_prompt : "");
        if (ni) n = (int)json_integer_value(ni);
        else {
            n = (int)json_array_size(negs);
            json_t *js = json_string(im->negative_prompt ? im->negative_prompt : "");
            json_array_append_new(negs, js ? js : json_string("?"));
            json_object_set_new(nidx, im->negative_prompt ? im->negative_prompt : "", json_integer(n));
        }
        if ((s = intern(samplers, im->sampler)) < 0) rc = SD_ENOMEM;
        json_t *row = json_pack("[I,i,i,I,i,f,i,i,i,i,i,I,f,s,s]", (json_int_t)im->id, p, n, (json_int_t)im->seed,
                                im->steps, im->cfg_scale, s, im->karras, im->width, im->height, im->clip_skip,
                                (json_int_t)im->run_id, im->render_seconds, im->thumb ? im->thumb : "",
                                im->href ? im->href : "");
        if (!row || json_array_append_new(images, row) < 0) rc = SD_ENOMEM;
    }
    json_decref(pidx);
    json_decref(nidx);
    if (rc == 0) {
        json_object_set_new(root, "page_size", json_integer(REPORT_PAGE_SIZE));
        json_object_set(root, "cols", jc);
        json_object_set(root, "prompts", prompts);
        json_object_set(root, "negs", negs);
        json_object_set(root, "samplers", samplers);
        json_object_set(root, "images", images);
    }
    /* JSON_ESCAPE_SLASH: a prompt holding "</script>" cannot end the script; reals print at most 15 digits */
    char *text = rc == 0 ? json_dumps(root, JSON_COMPACT | JSON_ESCAPE_SLASH | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(jc);
    json_decref(prompts);
    json_decref(negs);
    json_decref(samplers);
    json_decref(images);
    json_decref(root);
    if (!text) return sd_err(err, SD_ENOMEM, "out of memory writing the report data");
    fputs("window.SDR = ", fp);
    /* U+2028/2029 are line ends in older JavaScript: json_dumps leaves them as UTF-8 */
    for (const char *c = text; *c; c++) {
        if ((unsigned char)c[0] == 0xE2 && (unsigned char)c[1] == 0x80 && ((unsigned char)c[2] & 0xFE) == 0xA8) {
            fprintf(fp, "\\u%04X", 0x2028 + ((unsigned char)c[2] - 0xA8));
            c += 2;
        } else {
            fputc(*c, fp);
        }
    }
    fputs(";\n", fp);
    free(text);
    return ferror(fp) ? sd_err(err, SD_EIO, "writing the report data failed") : 0;
}

/* Writes one file of the report atomically from a memory stream's text. */
typedef int (*report_writer)(FILE *fp, const report_data *d, sd_error *err);

static int write_file(const char *dir, const char *name, report_writer fn, const char *fixed, const report_data *d,
                      sd_error *err) {
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    if (!fp) return sd_err(err, SD_ENOMEM, "out of memory");
    int rc = fn ? fn(fp, d, err) : (fputs(fixed, fp) < 0 ? SD_EIO : 0);
    if (fclose(fp) != 0 && rc == 0) rc = sd_err(err, SD_ENOMEM, "out of memory");
    char *path = rc == 0 ? sd_fs_path_join(dir, name) : NULL;
    if (rc == 0 && !path) rc = sd_err(err, SD_ENOMEM, "out of memory");
    sd_fs_atomic_file af;
    if (rc == 0 && (rc = sd_fs_atomic_open(&af, path, err)) == 0) {
        if ((rc = sd_fs_atomic_write(&af, buf, len, err)) < 0) sd_fs_atomic_abort(&af);
        else rc = sd_fs_atomic_commit(&af, err);
    }
    free(path);
    free(buf);
    return rc;
}

int report_write(const char *dir, const report_data *d, sd_error *err) {
    int rc = write_file(dir, "report.css", NULL, report_css, d, err);
    if (rc == 0) rc = write_file(dir, "report.js", NULL, report_js, d, err);
    if (rc == 0) rc = write_file(dir, "data.js", report_write_data_js, NULL, d, err);
    if (rc == 0) rc = write_file(dir, "index.html", report_write_html, NULL, d, err);
    return rc;
}
