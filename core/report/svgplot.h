/*
 * svgplot.h - a small line plot as inline SVG (for the report's metrics against a setting): one
 * series of points, x numeric (cfg scale, steps; ticks at the x values) or categorical (sampler
 * names, evenly spaced in the order given), y from the data's range. Every text is HTML-escaped;
 * numbers print with %.4g, so the same points give the same bytes.
 *
 *     double x[] = {1, 2, 4, 8}, y[] = {80.1, 52.3, 40.2, 47.9};
 *     svg_plot p = {.title = "fid vs cfg_scale", .x_name = "cfg_scale", .y_name = "fid",
 *                   .n = 4, .x = x, .y = y};
 *     svg_plot_write(fp, &p);
 */
#ifndef SD_SVGPLOT_H
#define SD_SVGPLOT_H

#include <stdio.h>

#define SVG_PLOT_W 320
#define SVG_PLOT_H 220

typedef struct svg_plot {
    const char *title, *x_name, *y_name;
    int n;                  /* points */
    const double *x;        /* [n] numeric x; for a categorical plot, the index into cats */
    const double *y;        /* [n] */
    const char *const *cats; /* NULL: numeric x; else [n_cats] category names (categorical x) */
    int n_cats;
} svg_plot;

/* Writes <svg ...>...</svg>; points are joined in increasing x (ties in the given order). n may be 0
 * (an empty frame that says "no data"). */
void svg_plot_write(FILE *fp, const svg_plot *p);

#endif
