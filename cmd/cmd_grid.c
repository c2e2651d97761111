/*
 * sdrender grid: an AUTOMATIC1111-style grid picture with labels (core/report/grid.h), either of a
 * job database's done images laid out by two settings (one row per value of --rows, one column per
 * value of --cols; the lowest job id of each pair), or of PNG files in order, --cols N a row.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "grid.h"
#include "imgfit.h"
#include "jobdb.h"
#include "jobsel.h"
#include "pngio.h"

#define GRID_MAX_CELLS 4096

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: sdrender grid --db JOBS.db -o GRID.png --cols KEY [--rows KEY] [--where KEY=VALUE]... [--cell PX]\n"
            "       sdrender grid -o GRID.png --cols N [--cell PX] A.png B.png ...\n\n"
            "A grid picture of rendered images with labels, as AUTOMATIC1111's X/Y plot draws them.\n"
            "With --db: one column per value of the setting --cols, one row per value of --rows (default\n"
            "prompt), each cell the done job of lowest id with those values (empty cells stay grey);\n"
            "numbers in increasing order, text in job order. With files: the pictures in order, N a row,\n"
            "without labels.\n\n"
            "  --db JOBS.db         the job database\n"
            "  -o, --output FILE    the grid PNG to write\n"
            "  --cols KEY|N         setting of the columns (--db), or pictures per row (files)\n"
            "  --rows KEY           setting of the rows (--db; default prompt)\n"
            "  --where KEY=VALUE    only the done jobs with this setting (repeatable)\n"
            "  --cell PX            cell side in pixels, 8..4096 (default 256; pictures are scaled to fit)\n"
            "  -h, --help           this text\n\n"
            "Keys: %s.\n",
            jobsel_keys());
}

/* The distinct values of one key, ordered (numbers ascending, text in first-seen order). */
typedef struct axis {
    const char *key;
    int numeric;
    int n, cap;
    char **text;
    double *num;
} axis;

static void axis_free(axis *a) {
    for (int i = 0; i < a->n; i++) free(a->text[i]);
    free(a->text);
    free(a->num);
}

/* Index of job j's value on the axis, adding it when new; -1 when out of memory or too many values. */
static int axis_index(axis *a, const sd_job *j) {
    char buf[1024];
    double v = 0;
    jobsel_job_text(j, a->key, buf, sizeof buf);
    jobsel_job_number(j, a->key, &v);
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->text[i], buf)) return i;
    if (a->n >= GRID_MAX_CELLS) return -1;
    if (a->n == a->cap) {
        int nc = a->cap ? 2 * a->cap : 16;
        char **t = realloc(a->text, (size_t)nc * sizeof *t);
        if (t) a->text = t;
        double *d = realloc(a->num, (size_t)nc * sizeof *d);
        if (d) a->num = d;
        if (!t || !d) return -1;
        a->cap = nc;
    }
    if (!(a->text[a->n] = strdup(buf))) return -1;
    a->num[a->n] = v;
    return a->n++;
}

/* The axis's order: pos[i] = the place of value i. */
static void axis_order(const axis *a, int *pos) {
    for (int i = 0; i < a->n; i++) {
        int p = 0;
        for (int k = 0; k < a->n; k++)
            if (a->numeric ? a->num[k] < a->num[i] || (a->num[k] == a->num[i] && k < i) : k < i) p++;
        pos[i] = p;
    }
}

/* "cfg_scale: 7.5" (a prompt stands alone). */
static char *axis_label(const axis *a, int i) {
    size_t n = strlen(a->key) + strlen(a->text[i]) + 4;
    char *s = malloc(n);
    if (!s) return NULL;
    if (!strcmp(a->key, "prompt")) snprintf(s, n, "%s", a->text[i]);
    else snprintf(s, n, "%s: %s", a->key, a->text[i]);
    return s;
}

typedef struct grid_args {
    const char *db, *out, *rows, *cols;
    long cell;
    jobsel where;
} grid_args;

/* Reads the PNG into a cell, scaled to fit it (so a big grid holds cell-sized pictures only). */
static int load_cell(const char *png, int cell, grid_cell *c, sd_error *err) {
    uint8_t *rgb = NULL, *fit = NULL;
    int w, h;
    int rc = sd_png_read_rgb(png, &rgb, &w, &h, err);
    if (rc == 0) rc = imgfit_scale(rgb, w, h, cell, 1, &fit, &c->w, &c->h, err);
    free(rgb);
    c->rgb = fit;
    return rc;
}

static void cells_free(grid_cell *cells, int n) {
    for (int i = 0; cells && i < n; i++) free((void *)cells[i].rgb);
    free(cells);
}

/* Writes the grid of g to out; prints its size. */
static int grid_write(const grid_spec *g, const char *out, sd_error *err) {
    uint8_t *rgb;
    int w, h;
    int rc = grid_render(g, &rgb, &w, &h, err);
    if (rc < 0) return rc;
    rc = sd_png_write_rgb(out, rgb, w, h, NULL, 0, err);
    free(rgb);
    if (rc == 0) printf("sdrender grid: %d x %d cells of %d px -> %s (%dx%d)\n", g->rows, g->cols, g->cell, out, w, h);
    return rc;
}

/* Doubles the capacity of the cell lists (each kept as it was when a realloc fails). */
static int grow_pairs(int *cap, int **pair_r, int **pair_c, char ***cell_png, int64_t **cell_job) {
    int nc = *cap ? 2 * *cap : 64;
    int *r = realloc(*pair_r, (size_t)nc * sizeof *r);
    if (r) *pair_r = r;
    int *c = realloc(*pair_c, (size_t)nc * sizeof *c);
    if (c) *pair_c = c;
    char **p = realloc(*cell_png, (size_t)nc * sizeof *p);
    if (p) *cell_png = p;
    int64_t *j = realloc(*cell_job, (size_t)nc * sizeof *j);
    if (j) *cell_job = j;
    if (!r || !c || !p || !j) return -1;
    *cap = nc;
    return 0;
}

static int grid_from_db(grid_args *a, sd_error *err) {
    const char *canon;
    axis ax[2] = {{.key = a->rows}, {.key = a->cols}};
    for (int k = 0; k < 2; k++) {
        int t = jobsel_key_type(ax[k].key, &canon);
        if (t < 0)
            return sd_err(err, SD_EINPUT, "--%s %s: unknown key (keys: %s)", k ? "cols" : "rows", ax[k].key, jobsel_keys());
        ax[k].key = canon;
        ax[k].numeric = t != JOBSEL_TEXT;
    }
    jobdb *db;
    jobdb_open_options oo = {.create = 0, .keep_journal = 1};
    int rc = jobdb_open(&db, a->db, &oo, err);
    if (rc < 0) return rc;
    /* first pass: the axes' values and the job (its PNG path) of each cell */
    int64_t *cell_job = NULL;
    char **cell_png = NULL;
    int *pair_r = NULL, *pair_c = NULL, n_pairs = 0, cap = 0;
    jobdb_iter *it;
    if ((rc = jobdb_iter_begin_sel(db, SD_JOB_DONE, &a->where, &it, err)) == 0) {
        sd_job j;
        while ((rc = jobdb_iter_next(it, &j, err)) == 1) {
            int r = axis_index(&ax[0], &j), c = axis_index(&ax[1], &j);
            int known = 0;
            for (int i = 0; i < n_pairs && !known; i++) known = pair_r[i] == r && pair_c[i] == c;
            if (r < 0 || c < 0 || (!known && n_pairs >= GRID_MAX_CELLS)) {
                rc = sd_err(err, SD_EINPUT, "%s: more than %d cells; narrow it with --where", a->db, GRID_MAX_CELLS);
                sd_job_free(&j);
                break;
            }
            if (!known) {
                if (n_pairs == cap && grow_pairs(&cap, &pair_r, &pair_c, &cell_png, &cell_job) < 0) {
                    sd_job_free(&j);
                    rc = sd_err(err, SD_ENOMEM, "out of memory");
                    break;
                }
                pair_r[n_pairs] = r, pair_c[n_pairs] = c, cell_job[n_pairs] = j.id;
                cell_png[n_pairs++] = j.output_path;
                j.output_path = NULL;
            }
            sd_job_free(&j);
        }
        jobdb_iter_end(it);
    }
    jobdb_close(db);
    if (rc == 0 && n_pairs == 0) rc = sd_err(err, SD_EINPUT, "%s: no done jobs to put in a grid", a->db);
    int R = ax[0].n, Cn = ax[1].n;
    int *rpos = malloc(sizeof(int) * (size_t)(R + 1)), *cpos = malloc(sizeof(int) * (size_t)(Cn + 1));
    char **rl = calloc((size_t)R + 1, sizeof *rl), **cl = calloc((size_t)Cn + 1, sizeof *cl);
    grid_cell *cells = rc == 0 && (int64_t)R * Cn <= GRID_MAX_CELLS ? calloc((size_t)R * (size_t)Cn, sizeof *cells) : NULL;
    if (rc == 0 && (int64_t)R * Cn > GRID_MAX_CELLS)
        rc = sd_err(err, SD_EINPUT, "%s: %d rows x %d columns is more than %d cells; narrow it with --where", a->db, R, Cn,
                    GRID_MAX_CELLS);
    else if (rc == 0 && (!rpos || !cpos || !rl || !cl || !cells)) rc = sd_err(err, SD_ENOMEM, "out of memory");
    if (rc == 0) {
        axis_order(&ax[0], rpos);
        axis_order(&ax[1], cpos);
        for (int i = 0; i < R && rc == 0; i++)
            if (!(rl[rpos[i]] = axis_label(&ax[0], i))) rc = sd_err(err, SD_ENOMEM, "out of memory");
        for (int i = 0; i < Cn && rc == 0; i++)
            if (!(cl[cpos[i]] = axis_label(&ax[1], i))) rc = sd_err(err, SD_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n_pairs && rc == 0; i++) {
        grid_cell *c = &cells[rpos[pair_r[i]] * Cn + cpos[pair_c[i]]];
        if ((rc = load_cell(cell_png[i], (int)a->cell, c, err)) < 0)
            sd_err_prefix(err, "job %lld", (long long)cell_job[i]);
    }
    if (rc == 0) {
        grid_spec g = {.rows = R, .cols = Cn, .cell = (int)a->cell, .row_labels = (const char *const *)rl,
                       .col_labels = (const char *const *)cl, .cells = cells};
        rc = grid_write(&g, a->out, err);
    }
    cells_free(cells, cells ? R * Cn : 0);
    for (int i = 0; i < R && rl; i++) free(rl[i]);
    for (int i = 0; i < Cn && cl; i++) free(cl[i]);
    free(rl);
    free(cl);
    free(rpos);
    free(cpos);
    for (int i = 0; i < n_pairs; i++) free(cell_png[i]);
    free(cell_png);
    free(cell_job);
    free(pair_r);
    free(pair_c);
    axis_free(&ax[0]);
    axis_free(&ax[1]);
    return rc;
}

static int grid_from_files(grid_args *a, char **files, int n, sd_error *err) {
    long cols;
    int rc = cli_parse_long("--cols", a->cols, 1, GRID_MAX_CELLS, &cols, err);
    if (rc < 0) return rc;
    if (n > GRID_MAX_CELLS) return sd_err(err, SD_EINPUT, "%d pictures: at most %d", n, GRID_MAX_CELLS);
    int C = (int)cols < n ? (int)cols : n, R = (n + C - 1) / C;
    grid_cell *cells = calloc((size_t)R * (size_t)C, sizeof *cells);
    if (!cells) return sd_err(err, SD_ENOMEM, "out of memory");
    for (int i = 0; i < n && rc == 0; i++) rc = load_cell(files[i], (int)a->cell, &cells[i], err);
    if (rc == 0) {
        grid_spec g = {.rows = R, .cols = C, .cell = (int)a->cell, .cells = cells};
        rc = grid_write(&g, a->out, err);
    }
    cells_free(cells, R * C);
    return rc;
}

enum { O_DB = 256, O_ROWS, O_COLS, O_WHERE, O_CELL };

int cmd_grid(int argc, char **argv) {
    static const struct option longopts[] = {{"db", required_argument, 0, O_DB},   {"output", required_argument, 0, 'o'},
                                             {"rows", required_argument, 0, O_ROWS}, {"cols", required_argument, 0, O_COLS},
                                             {"where", required_argument, 0, O_WHERE}, {"cell", required_argument, 0, O_CELL},
                                             {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    grid_args a = {.cell = 256};
    sd_error err = {0};
    int opt, rc = 0, code = -1;
    optind = 1;
    while (code < 0 && (opt = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        switch (opt) {
        case O_DB: a.db = optarg; break;
        case 'o': a.out = optarg; break;
        case O_ROWS: a.rows = optarg; break;
        case O_COLS: a.cols = optarg; break;
        case O_WHERE: rc = jobsel_add(&a.where, optarg, &err); break;
        case O_CELL: rc = cli_parse_long("--cell", optarg, 8, 4096, &a.cell, &err); break;
        case 'h': usage(stdout); code = 0; break;
        default: usage(stderr); code = 2; break;
        }
        if (rc < 0) code = cli_fail(&err);
    }
    if (code < 0) {
        int nfiles = argc - optind;
        if (!a.out || !a.cols) code = cli_usage_error("grid: -o FILE and --cols are required (see 'sdrender grid --help')");
        else if (a.db && nfiles > 0) code = cli_usage_error("grid: give --db or PNG files, not both");
        else if (!a.db && nfiles == 0) code = cli_usage_error("grid: give --db JOBS.db or PNG files");
        else if (!a.db && (a.rows || a.where.n)) code = cli_usage_error("grid: --rows and --where need --db");
        else {
            if (!a.rows) a.rows = "prompt";
            rc = a.db ? grid_from_db(&a, &err) : grid_from_files(&a, argv + optind, nfiles, &err);
            code = rc < 0 ? cli_fail(&err) : 0;
        }
    }
    jobsel_free(&a.where);
    return code;
}
