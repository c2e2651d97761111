/*
 * grid.h - an AUTOMATIC1111-style grid picture: rows x cols cells, each picture scaled to fit a
 * square cell (centered on white), with the column labels in a band above and the row labels in
 * a band on the left, drawn in the built-in 5x7 font (font5x7.h), wrapped at spaces.
 *
 * Size: width = left band + cols * cell, height = top band + rows * cell, where the top band is
 * grid_top_band(g) pixels (0 without column labels) and the left band grid_left_band(g) (0 without
 * row labels).
 */
#ifndef SD_GRID_H
#define SD_GRID_H

#include <stdint.h>

#include "err.h"

typedef struct grid_cell {
    const uint8_t *rgb; /* [h, w, 3], or NULL for an empty cell (light grey) */
    int w, h;
} grid_cell;

typedef struct grid_spec {
    int rows, cols;
    int cell;                       /* cell side in pixels */
    const char *const *row_labels;  /* [rows] or NULL */
    const char *const *col_labels;  /* [cols] or NULL */
    const grid_cell *cells;         /* [rows * cols], row-major */
} grid_spec;

/* Label scale: 2 for cells of 256 px and more, else 1. */
int grid_font_scale(const grid_spec *g);
int grid_top_band(const grid_spec *g);
int grid_left_band(const grid_spec *g);

/* The grid as a new [*h, *w, 3] picture (caller frees). */
int grid_render(const grid_spec *g, uint8_t **rgb, int *w, int *h, sd_error *err);

#endif
