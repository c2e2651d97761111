/* Labelled picture grids (sdrender grid). */
#include "grid.h"

#include <stdlib.h>
#include <string.h>

#include "font5x7.h"
#include "imgfit.h"

#define GRID_MAX_LINES 8
#define GRID_LINE_MAX 256

int grid_font_scale(const grid_spec *g) { return g->cell >= 256 ? 2 : 1; }

static int pad(const grid_spec *g) { return 4 * grid_font_scale(g); }
static int line_h(const grid_spec *g) { return FONT_CELL_H * grid_font_scale(g); }

/*
 * Splits s into at most max_lines lines of at most cpl characters, breaking at spaces (a longer
 * word is cut). Returns the number of lines.
 */
static int wrap(const char *s, int cpl, int max_lines, char lines[][GRID_LINE_MAX]) {
    if (cpl < 1) cpl = 1;
    if (cpl >= GRID_LINE_MAX) cpl = GRID_LINE_MAX - 1;
    int n = 0;
    while (*s && n < max_lines) {
        while (*s == ' ') s++;
        if (!*s) break;
        int len = (int)strlen(s), take = len <= cpl ? len : cpl;
        if (take < len) {
            int sp = take;
            while (sp > 0 && s[sp] != ' ') sp--;
            if (sp > 0) take = sp;
        }
        memcpy(lines[n], s, (size_t)take);
        lines[n][take] = 0;
        n++;
        s += take;
    }
    return n;
}

static int max_lines_of(const char *const *labels, int n, int cpl, int cap) {
    char lines[GRID_MAX_LINES][GRID_LINE_MAX];
    int most = 0;
    for (int i = 0; labels && i < n; i++) {
        int k = wrap(labels[i] ? labels[i] : "", cpl, cap, lines);
        if (k > most) most = k;
    }
    return most;
}

/* Characters per line of a column label. */
static int col_cpl(const grid_spec *g) { return (g->cell - 2 * pad(g)) / (FONT_CELL_W * grid_font_scale(g)); }

int grid_top_band(const grid_spec *g) {
    if (!g->col_labels) return 0;
    int lines = max_lines_of(g->col_labels, g->cols, col_cpl(g), 3);
    return (lines > 0 ? lines : 1) * line_h(g) + 2 * pad(g);
}

int grid_left_band(const grid_spec *g) {
    if (!g->row_labels) return 0;
    int widest = 0, cw = FONT_CELL_W * grid_font_scale(g);
    for (int r = 0; r < g->rows; r++) {
        int w = font_text_width(g->row_labels[r] ? g->row_labels[r] : "", grid_font_scale(g));
        if (w > widest) widest = w;
    }
    int cap = g->cell > 200 ? g->cell : 200; /* long prompts wrap within this */
    int w = widest < cap ? widest : cap;
    if (w < cw) w = cw;
    return w + 2 * pad(g);
}

static void fill(uint8_t *rgb, int w, int x0, int y0, int x1, int y1, uint8_t v) {
    for (int y = y0; y < y1; y++) memset(rgb + ((size_t)y * (size_t)w + (size_t)x0) * 3, v, (size_t)(x1 - x0) * 3);
}

/* Draws label wrapped into the box (x, y, bw, bh), lines centered horizontally when center is set. */
static void draw_label(uint8_t *rgb, int W, int H, const grid_spec *g, const char *label, int x, int y, int bw,
                       int bh, int center) {
    static const uint8_t black[3] = {0, 0, 0};
    int s = grid_font_scale(g), cpl = (bw - 2 * pad(g)) / (FONT_CELL_W * s);
    int max_lines = (bh - 2 * pad(g)) / line_h(g);
    if (max_lines > GRID_MAX_LINES) max_lines = GRID_MAX_LINES;
    if (max_lines < 1) max_lines = 1;
    char lines[GRID_MAX_LINES][GRID_LINE_MAX];
    int n = wrap(label ? label : "", cpl, max_lines, lines);
    int ty = y + (bh - n * line_h(g)) / 2;
    for (int i = 0; i < n; i++) {
        int lw = font_text_width(lines[i], s);
        int tx = center ? x + (bw - lw) / 2 : x + pad(g);
        font_draw_text(rgb, W, H, tx, ty + i * line_h(g), lines[i], -1, s, black);
    }
}

int grid_render(const grid_spec *g, uint8_t **out, int *ow, int *oh, sd_error *err) {
    *out = NULL;
    if (g->rows < 1 || g->cols < 1 || g->cell < 8 || g->cell > 4096)
        return sd_err(err, SD_EINPUT, "grid: %d x %d cells of %d px (need at least 1 x 1, cells of 8..4096 px)", g->rows,
                      g->cols, g->cell);
    int top = grid_top_band(g), left = grid_left_band(g);
    int W = left + g->cols * g->cell, H = top + g->rows * g->cell;
    if ((int64_t)W * H > (int64_t)1 << 28) return sd_err(err, SD_EINPUT, "grid: %d x %d pixels is too large", W, H);
    uint8_t *rgb = malloc((size_t)W * (size_t)H * 3);
    if (!rgb) return sd_err(err, SD_ENOMEM, "out of memory (grid of %d x %d)", W, H);
    memset(rgb, 255, (size_t)W * (size_t)H * 3);
    int rc = 0;
    for (int r = 0; r < g->rows && rc == 0; r++)
        for (int c = 0; c < g->cols && rc == 0; c++) {
            const grid_cell *cell = &g->cells[r * g->cols + c];
            int x0 = left + c * g->cell, y0 = top + r * g->cell;
            if (!cell->rgb) {
                fill(rgb, W, x0 + 1, y0 + 1, x0 + g->cell - 1, y0 + g->cell - 1, 224);
                continue;
            }
            uint8_t *fit;
            int fw, fh;
            if ((rc = imgfit_scale(cell->rgb, cell->w, cell->h, g->cell, 1, &fit, &fw, &fh, err)) < 0) break;
            int ox = x0 + (g->cell - fw) / 2, oy = y0 + (g->cell - fh) / 2;
            for (int y = 0; y < fh; y++)
                memcpy(rgb + ((size_t)(oy + y) * (size_t)W + (size_t)ox) * 3, fit + (size_t)y * (size_t)fw * 3,
                       (size_t)fw * 3);
            free(fit);
        }
    if (rc < 0) {
        free(rgb);
        return rc;
    }
    for (int c = 0; g->col_labels && c < g->cols; c++)
        draw_label(rgb, W, H, g, g->col_labels[c], left + c * g->cell, 0, g->cell, top, 1);
    for (int r = 0; g->row_labels && r < g->rows; r++)
        draw_label(rgb, W, H, g, g->row_labels[r], 0, top + r * g->cell, left, g->cell, 0);
    *out = rgb;
    *ow = W;
    *oh = H;
    return 0;
}
