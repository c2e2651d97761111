/* Line plots of a metric against a setting, as SVG. */
#include "svgplot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "html.h"

/* plot area inside the SVG: left, right, top, bottom margins */
enum { ML = 56, MR = 16, MT = 28, MB = 44 };

typedef struct order_item {
    double x;
    int i;
} order_item;

static int cmp_order(const void *a, const void *b) {
    const order_item *p = a, *q = b;
    if (p->x != q->x) return p->x < q->x ? -1 : 1;
    return p->i - q->i;
}

/* Data x -> SVG x. */
static double sx(double x, double lo, double hi) {
    double w = SVG_PLOT_W - ML - MR;
    return hi > lo ? ML + (x - lo) / (hi - lo) * w : ML + w / 2;
}

/* Data y -> SVG y (up is larger). */
static double sy(double y, double lo, double hi) {
    double h = SVG_PLOT_H - MT - MB;
    return hi > lo ? MT + h - (y - lo) / (hi - lo) * h : MT + h / 2;
}

/* Text at (x, y) with an anchor, escaped. */
static void svg_text(FILE *fp, double x, double y, const char *anchor, const char *cls, const char *s) {
    fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" class=\"%s\">", x, y, anchor, cls);
    html_put(fp, s);
    fputs("</text>", fp);
}

void svg_plot_write(FILE *fp, const svg_plot *p) {
    fprintf(fp, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">",
            SVG_PLOT_W, SVG_PLOT_H, SVG_PLOT_W, SVG_PLOT_H);
    fputs("<title>", fp);
    html_put(fp, p->title);
    fputs("</title>", fp);
    svg_text(fp, SVG_PLOT_W / 2.0, 16, "middle", "ptitle", p->title);
    fprintf(fp, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" class=\"frame\"/>", ML, MT, SVG_PLOT_W - ML - MR,
            SVG_PLOT_H - MT - MB);
    svg_text(fp, (ML + SVG_PLOT_W - MR) / 2.0, SVG_PLOT_H - 6, "middle", "axis", p->x_name);
    fprintf(fp, "<text x=\"12\" y=\"%.1f\" text-anchor=\"middle\" class=\"axis\" transform=\"rotate(-90 12 %.1f)\">",
            (MT + SVG_PLOT_H - MB) / 2.0, (MT + SVG_PLOT_H - MB) / 2.0);
    html_put(fp, p->y_name);
    fputs("</text>", fp);
    order_item *ord = p->n > 0 ? malloc((size_t)p->n * sizeof *ord) : NULL;
    int n = 0;
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int i = 0; ord && i < p->n; i++) {
        if (!isfinite(p->x[i]) || !isfinite(p->y[i])) continue;
        if (p->cats && (p->x[i] < 0 || p->x[i] >= p->n_cats)) continue;
        ord[n++] = (order_item){p->x[i], i};
        xlo = fmin(xlo, p->x[i]), xhi = fmax(xhi, p->x[i]);
        ylo = fmin(ylo, p->y[i]), yhi = fmax(yhi, p->y[i]);
    }
    if (n == 0) {
        svg_text(fp, SVG_PLOT_W / 2.0, SVG_PLOT_H / 2.0, "middle", "axis", "no data");
        fputs("</svg>", fp);
        free(ord);
        return;
    }
    qsort(ord, (size_t)n, sizeof *ord, cmp_order);
    if (p->cats) xlo = -0.5, xhi = p->n_cats - 0.5;
    else if (xhi > xlo) {
        double xpad = (xhi - xlo) * 0.05; /* the end points off the frame */
        xlo -= xpad, xhi += xpad;
    }
    /* y: the data's range with 5% room (a flat series gets +-1 around its value's scale) */
    double pad = (yhi - ylo) * 0.05;
    if (pad == 0) pad = fabs(ylo) > 0 ? fabs(ylo) * 0.1 : 1;
    ylo -= pad, yhi += pad;
    char buf[64];
    for (int t = 0; t <= 4; t++) {
        double v = ylo + (yhi - ylo) * t / 4, y = sy(v, ylo, yhi);
        fprintf(fp, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"grid\"/>", ML, y, SVG_PLOT_W - MR, y);
        snprintf(buf, sizeof buf, "%.3g", v);
        svg_text(fp, ML - 4, y + 4, "end", "tick", buf);
    }
    /* x ticks: every distinct x (numeric) or every category */
    if (p->cats) {
        for (int c = 0; c < p->n_cats; c++)
            svg_text(fp, sx(c, xlo, xhi), SVG_PLOT_H - MB + 14, "middle", "tick", p->cats[c]);
    } else {
        for (int k = 0; k < n; k++) {
            if (k > 0 && ord[k].x == ord[k - 1].x) continue;
            snprintf(buf, sizeof buf, "%.4g", ord[k].x);
            svg_text(fp, sx(ord[k].x, xlo, xhi), SVG_PLOT_H - MB + 14, "middle", "tick", buf);
        }
    }
    fputs("<polyline class=\"line\" points=\"", fp);
    for (int k = 0; k < n; k++)
        fprintf(fp, "%s%.1f,%.1f", k ? " " : "", sx(ord[k].x, xlo, xhi), sy(p->y[ord[k].i], ylo, yhi));
    fputs("\"/>", fp);
    for (int k = 0; k < n; k++) {
        int i = ord[k].i;
        fprintf(fp, "<circle class=\"pt\" cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\"><title>", sx(p->x[i], xlo, xhi),
                sy(p->y[i], ylo, yhi));
        if (p->cats) html_put(fp, p->cats[(int)p->x[i]]);
        else fprintf(fp, "%.4g", p->x[i]);
        fprintf(fp, ": %.6g</title></circle>", p->y[i]);
    }
    fputs("</svg>", fp);
    free(ord);
}
