/*
 * sdrender report: a static HTML page of a job database - runs, settings, metrics and their plots,
 * a contact sheet of every done image (thumbnails made here, once), failed jobs (core/report/page.h).
 *
 * Thumbnails are named thumbs/<job id>-<first 12 hex of the PNG's SHA-256>.png: a rerun finds the
 * ones of unchanged images and makes only the new ones (in parallel over --threads).
 */
#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "fsutil.h"
#include "html.h"
#include "imgfit.h"
#include "jobdb.h"
#include "jobdb_report.h"
#include "page.h"
#include "progress.h"

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: sdrender report --db JOBS.db -o DIR [--thumb PX] [options]\n\n"
            "Writes a static HTML report of a job database to DIR/index.html (open it in a browser; it\n"
            "loads nothing from the network): the runs and their settings, the metrics table and plots of\n"
            "FID / precision / recall / density / coverage against every setting that varies between the\n"
            "metrics' selections ('sdrender metrics --where'), a contact sheet of every done image (%d a\n"
            "page; prompt, seed and settings on hover, details on click, all images of one prompt), and the\n"
            "failed jobs with their errors. Thumbnails go to DIR/thumbs/; a rerun makes only new ones.\n\n"
            "  --db JOBS.db         the job database\n"
            "  -o, --output DIR     the report's folder (created if missing)\n"
            "  --thumb PX           thumbnail size: the longer side, 16..1024 (default 128)\n"
            "  --threads T          threads making thumbnails (default: this machine's cores)\n"
            "  -q, --quiet          no progress lines\n"
            "  -h, --help           this text\n",
            REPORT_PAGE_SIZE);
}

enum { O_DB = CLI_OPT_OWN, O_THUMB };

typedef struct report_args {
    const char *db, *out;
    long thumb;
} report_args;

static int report_take_option(void *ctx, int opt, const char *arg, sd_error *err) {
    report_args *a = ctx;
    if (opt == O_DB) a->db = arg;
    else if (opt == 'o') a->out = arg;
    else if (opt == O_THUMB) return cli_parse_long("--thumb", arg, 16, 1024, &a->thumb, err);
    return 0;
}

/* The jobs of one status, in id order. */
typedef struct job_list {
    sd_job *v;
    int n, cap;
} job_list;

static int read_jobs(jobdb *db, sd_job_status status, job_list *l, sd_error *err) {
    jobdb_iter *it;
    int rc = jobdb_iter_begin(db, status, &it, err);
    if (rc < 0) return rc;
    sd_job j;
    while ((rc = jobdb_iter_next(it, &j, err)) == 1) {
        if (l->n == l->cap) {
            int nc = l->cap ? 2 * l->cap : 256;
            sd_job *q = realloc(l->v, (size_t)nc * sizeof *q);
            if (!q) {
                sd_job_free(&j);
                rc = sd_err(err, SD_ENOMEM, "out of memory reading jobs");
                break;
            }
            l->v = q;
            l->cap = nc;
        }
        l->v[l->n++] = j;
    }
    jobdb_iter_end(it);
    return rc < 0 ? rc : 0;
}

static void job_list_free(job_list *l) {
    for (int i = 0; i < l->n; i++) sd_job_free(&l->v[i]);
    free(l->v);
}

/* Everything read from the database, and the page data built from it (strings borrowed from here). */
typedef struct report_state {
    job_list done, failed;
    jobdb_run_row *runs;
    int n_runs;
    jobdb_metric_row *metrics;
    int n_metrics;
    int64_t pending, running;
    char **thumbs, **hrefs; /* [done.n] */
    report_image *images;
    report_failed *failed_rows;
    report_run *run_rows;
    report_metric *metric_rows;
} report_state;

static void state_free(report_state *s) {
    for (int i = 0; i < s->done.n; i++) {
        if (s->thumbs) free(s->thumbs[i]);
        if (s->hrefs) free(s->hrefs[i]);
    }
    free(s->thumbs);
    free(s->hrefs);
    free(s->images);
    free(s->failed_rows);
    free(s->run_rows);
    free(s->metric_rows);
    job_list_free(&s->done);
    job_list_free(&s->failed);
    jobdb_runs_free(s->runs, s->n_runs);
    jobdb_metrics_free(s->metrics, s->n_metrics);
}

static int read_all(const char *path, report_state *s, sd_error *err) {
    jobdb *db;
    jobdb_open_options oo = {.create = 0, .keep_journal = 1};
    int rc = jobdb_open(&db, path, &oo, err);
    if (rc < 0) return rc;
    jobdb_summary sum;
    if ((rc = jobdb_summary_get(db, 0, &sum, err)) == 0) {
        s->pending = sum.pending;
        s->running = sum.running;
        jobdb_summary_free(&sum);
    }
    if (rc == 0) rc = jobdb_runs_read(db, &s->runs, &s->n_runs, err);
    if (rc == 0) rc = jobdb_metrics_read(db, &s->metrics, &s->n_metrics, err);
    if (rc == 0) rc = read_jobs(db, SD_JOB_DONE, &s->done, err);
    if (rc == 0) rc = read_jobs(db, SD_JOB_FAILED, &s->failed, err);
    jobdb_close(db);
    return rc;
}

/*
 * Thumbnail names and image links of the done jobs; makes the missing thumbnails (in parallel).
 * A PNG that cannot be read gets no thumbnail (the page shows its prompt instead); *unreadable counts them.
 */
static int make_thumbs(report_state *s, const char *dir_real, int box, int threads, int quiet, int *made,
                       int *unreadable, sd_error *err) {
    int n = s->done.n;
    s->thumbs = calloc((size_t)(n ? n : 1), sizeof *s->thumbs);
    s->hrefs = calloc((size_t)(n ? n : 1), sizeof *s->hrefs);
    int *todo = malloc((size_t)(n ? n : 1) * sizeof *todo);
    if (!s->thumbs || !s->hrefs || !todo) {
        free(todo);
        return sd_err(err, SD_ENOMEM, "out of memory");
    }
    int n_todo = 0;
    for (int i = 0; i < n; i++) {
        const sd_job *j = &s->done.v[i];
        char name[96], full[PATH_MAX + 100], real[PATH_MAX];
        snprintf(name, sizeof name, "thumbs/%lld-%.12s-%d.png", (long long)j->id, j->png_sha256, box);
        snprintf(full, sizeof full, "%s/%s", dir_real, name);
        const char *target = realpath(j->output_path, real) ? real : j->output_path;
        s->thumbs[i] = strdup(name);
        s->hrefs[i] = target[0] == '/' ? html_relative_url(dir_real, target) : strdup(target);
        if (!s->thumbs[i] || !s->hrefs[i]) {
            free(todo);
            return sd_err(err, SD_ENOMEM, "out of memory");
        }
        if (!sd_fs_is_file(full)) todo[n_todo++] = i;
    }
    progress_bar p;
    progress_start(&p, "report: thumbnails", "images", n_todo, quiet);
    int done = 0, bad = 0;
    if (threads > 0) omp_set_num_threads(threads);
#pragma omp parallel for schedule(dynamic, 4)
    for (int k = 0; k < n_todo; k++) {
        int i = todo[k];
        char full[PATH_MAX + 100];
        snprintf(full, sizeof full, "%s/%s", dir_real, s->thumbs[i]);
        sd_error e = {0};
        int rc = imgfit_thumbnail(s->done.v[i].output_path, full, box, &e);
#pragma omp critical(report_progress)
        {
            if (rc < 0) {
                if (bad++ < 5) fprintf(stderr, "sdrender report: warning: job %lld: %s\n", (long long)s->done.v[i].id, e.msg);
                s->thumbs[i][0] = 0; /* no thumbnail */
            }
            progress_update(&p, ++done);
        }
    }
    if (n_todo > 0) progress_end(&p);
    free(todo);
    *made = n_todo - bad;
    *unreadable = bad;
    return 0;
}

/* The page data of the state (strings borrowed). */
static int build_data(report_state *s, const char *db_path, report_data *d, sd_error *err) {
    int nd = s->done.n, nf = s->failed.n;
    s->images = calloc((size_t)(nd ? nd : 1), sizeof *s->images);
    s->failed_rows = calloc((size_t)(nf ? nf : 1), sizeof *s->failed_rows);
    s->run_rows = calloc((size_t)(s->n_runs ? s->n_runs : 1), sizeof *s->run_rows);
    s->metric_rows = calloc((size_t)(s->n_metrics ? s->n_metrics : 1), sizeof *s->metric_rows);
    if (!s->images || !s->failed_rows || !s->run_rows || !s->metric_rows) return sd_err(err, SD_ENOMEM, "out of memory");
    for (int i = 0; i < nd; i++) {
        const sd_job *j = &s->done.v[i];
        s->images[i] = (report_image){.id = j->id, .seed = j->seed, .run_id = j->run_id, .prompt = j->prompt,
                                      .negative_prompt = j->negative_prompt, .sampler = sampler_kind_name(j->sampler),
                                      .steps = j->steps, .karras = j->karras, .width = j->width, .height = j->height,
                                      .clip_skip = j->clip_skip, .cfg_scale = j->cfg_scale,
                                      .render_seconds = j->render_seconds, .thumb = s->thumbs[i], .href = s->hrefs[i]};
    }
    for (int i = 0; i < nf; i++) {
        const sd_job *j = &s->failed.v[i];
        s->failed_rows[i] = (report_failed){.id = j->id, .seed = j->seed, .run_id = j->run_id, .prompt = j->prompt,
                                            .sampler = sampler_kind_name(j->sampler), .error = j->error,
                                            .claimed_by = j->claimed_by, .attempts = j->attempts, .steps = j->steps,
                                            .cfg_scale = j->cfg_scale};
    }
    for (int i = 0; i < s->n_runs; i++) {
        const jobdb_run_row *r = &s->runs[i];
        s->run_rows[i] = (report_run){.id = r->id, .instance = r->instance, .host = r->host, .model_path = r->model_path,
                                      .settings_json = r->settings_json, .end_status = r->end_status,
                                      .parallel = r->parallel, .ranks = r->ranks, .group_size = r->group_size,
                                      .started_at = r->started_at, .ended_at = r->ended_at};
    }
    for (int i = 0; i < s->n_metrics; i++) {
        const jobdb_metric_row *m = &s->metrics[i];
        s->metric_rows[i] = (report_metric){.id = m->id, .run_id = m->run_id, .name = m->name, .has_value = m->has_value,
                                            .value = m->value, .details_json = m->details_json,
                                            .created_at = m->created_at};
    }
    *d = (report_data){.db_path = db_path, .n_pending = s->pending, .n_running = s->running, .runs = s->run_rows,
                       .n_runs = s->n_runs, .images = s->images, .n_images = nd, .failed = s->failed_rows,
                       .n_failed = nf, .metrics = s->metric_rows, .n_metrics = s->n_metrics};
    return 0;
}

int cmd_report(int argc, char **argv) {
    static const struct option longopts[] = {{"db", required_argument, 0, O_DB},
                                             {"output", required_argument, 0, 'o'},
                                             {"thumb", required_argument, 0, O_THUMB},
                                             {0, 0, 0, 0}};
    static const cli_command_opts opts = {"report", "o:", longopts, 0, report_take_option, usage};
    report_args a = {.thumb = 128};
    cli_shared_opts shared;
    int code = cli_parse_options(argc, argv, &opts, &a, &shared);
    if (code >= 0) return code;
    if (!a.db || !a.out) return cli_usage_error("report: --db JOBS.db and -o DIR are required (see 'sdrender report --help')");
    if (!sd_fs_is_file(a.db)) return cli_usage_error("report: --db %s: no such file", a.db);
    sd_error err = {0};
    report_state s = {0};
    report_data d;
    char dir_real[PATH_MAX], thumbs[PATH_MAX + 8];
    int made = 0, unreadable = 0;
    snprintf(thumbs, sizeof thumbs, "%s/thumbs", a.out);
    int rc = read_all(a.db, &s, &err);
    if (rc == 0) rc = sd_fs_mkdirs(thumbs, &err);
    if (rc == 0 && !realpath(a.out, dir_real)) rc = sd_err(&err, SD_EIO, "-o %s: cannot resolve the folder", a.out);
    if (rc == 0) rc = make_thumbs(&s, dir_real, (int)a.thumb, (int)shared.threads, shared.quiet, &made, &unreadable, &err);
    if (rc == 0) rc = build_data(&s, a.db, &d, &err);
    if (rc == 0) rc = report_write(a.out, &d, &err);
    if (rc == 0 && !shared.quiet)
        fprintf(stderr,
                "sdrender report: %d images (%d new thumbnails%s), %d metric rows, %d failed jobs -> %s/index.html\n",
                s.done.n, made, unreadable ? ", some PNGs unreadable" : "", s.n_metrics, s.failed.n, a.out);
    state_free(&s);
    return rc < 0 ? cli_fail(&err) : 0;
}
