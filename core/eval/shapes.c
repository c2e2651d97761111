/*
 * shapes.c - the demo model's procedural pictures and their captions (shapes.h).
 *
 * Geometry is in unit coordinates (the picture is [0,1]^2, y down). A shape's
 * half-extent r depends on its size; a corner position puts its centre r plus a
 * small margin from both edges, so large shapes stay whole; "center" puts it in
 * the middle; no position puts it anywhere it fits. Randomness is torch's
 * mt19937 (rng.h) seeded from (seed, i, purpose), so any scene can be drawn alone.
 */
#include "shapes.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "rng.h"

const char *const shapes_colour_names[SHAPES_NCOLOURS] = {"red", "green", "blue", "yellow", "white", "black"};
const char *const shapes_shape_names[SHAPES_NSHAPES] = {"circle", "square", "triangle"};
const char *const shapes_position_names[SHAPES_NPOSITIONS] = {"top left", "top right", "bottom left", "bottom right",
                                                               "center"};
const uint8_t shapes_palette[SHAPES_NCOLOURS][3] = {{215, 40, 40},  {40, 170, 60},   {40, 80, 215},
                                                    {240, 210, 40}, {245, 245, 245}, {25, 25, 25}};

/* Half-extent of a shape by size, in picture widths (before a +-8% jitter). */
static const double size_radius[SHAPES_NSIZES] = {0.13, 0.20, 0.28};
static const double corner_margin = 0.05;
static const int colour_jitter = 12;

/* A generator for (seed, i, purpose): splitmix64's finalizer folds the three into torch's 32-bit seed. */
static void scene_rng(sd_rng *g, uint64_t seed, uint64_t i, uint64_t purpose) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + i * 0xBF58476D1CE4E5B9ull + purpose * 0x94D049BB133111EBull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    sd_rng_seed(g, z & 0xffffffffu);
}

/* Uniform integer in [0, n). */
static int draw_int(sd_rng *g, int n) { return (int)(sd_rng_u32(g) % (uint32_t)n); }
/* Uniform double in [lo, hi). */
static double draw_uniform(sd_rng *g, double lo, double hi) { return lo + (hi - lo) * (sd_rng_u32(g) / 4294967296.0); }

void shapes_sample(uint64_t seed, uint64_t i, shapes_caption *out) {
    sd_rng g;
    scene_rng(&g, seed, i, 1);
    out->colour = draw_int(&g, SHAPES_NCOLOURS);
    out->background = (out->colour + 1 + draw_int(&g, SHAPES_NCOLOURS - 1)) % SHAPES_NCOLOURS;
    out->shape = draw_int(&g, SHAPES_NSHAPES);
    out->size = draw_int(&g, SHAPES_NSIZES);
    int p = draw_int(&g, SHAPES_NPOSITIONS * 5);
    out->position = p < SHAPES_NPOSITIONS * 4 ? p % SHAPES_NPOSITIONS : SHAPES_ANYWHERE;
}

void shapes_format(const shapes_caption *c, char *buf, size_t n) {
    const char *size = c->size == SHAPES_SMALL ? "small " : c->size == SHAPES_LARGE ? "large " : "";
    char at[32] = "";
    if (c->position != SHAPES_ANYWHERE) snprintf(at, sizeof at, " at the %s", shapes_position_names[c->position]);
    snprintf(buf, n, "a %s%s %s%s on a %s background", size, shapes_colour_names[c->colour],
             shapes_shape_names[c->shape], at, shapes_colour_names[c->background]);
}

/* Index of word in names[0..n), or -1. */
static int find_word(const char *word, const char *const *names, int n) {
    for (int k = 0; k < n; k++)
        if (strcmp(word, names[k]) == 0) return k;
    return -1;
}

enum { MAX_WORDS = 16 };

int shapes_parse(const char *text, shapes_caption *out, sd_error *err) {
    /* lower-case words; a final '.' is allowed */
    char buf[256], *words[MAX_WORDS];
    size_t len = strlen(text);
    if (len >= sizeof buf) return sd_err(err, SD_EINPUT, "caption too long for the demo grammar (%zu bytes)", len);
    for (size_t k = 0; k <= len; k++) buf[k] = (char)tolower((unsigned char)text[k]);
    while (len > 0 && (buf[len - 1] == '.' || isspace((unsigned char)buf[len - 1]))) buf[--len] = 0;
    int nw = 0;
    for (char *save = NULL, *w = strtok_r(buf, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save)) {
        if (nw == MAX_WORDS) return sd_err(err, SD_EINPUT, "caption has too many words for the demo grammar");
        words[nw++] = w;
    }
    const char *want = "a";
    int k = 0;
    shapes_caption c = {.size = SHAPES_MEDIUM, .position = SHAPES_ANYWHERE};
    if (k >= nw || strcmp(words[k], "a") != 0) goto bad;
    k++;
    want = "a size or a colour";
    if (k < nw && strcmp(words[k], "small") == 0) c.size = SHAPES_SMALL, k++;
    else if (k < nw && strcmp(words[k], "medium") == 0) c.size = SHAPES_MEDIUM, k++;
    else if (k < nw && strcmp(words[k], "large") == 0) c.size = SHAPES_LARGE, k++;
    want = "a colour (red, green, blue, yellow, white, black)";
    if (k >= nw || (c.colour = find_word(words[k], shapes_colour_names, SHAPES_NCOLOURS)) < 0) goto bad;
    k++;
    want = "a shape (circle, square, triangle)";
    if (k >= nw || (c.shape = find_word(words[k], shapes_shape_names, SHAPES_NSHAPES)) < 0) goto bad;
    k++;
    if (k < nw && strcmp(words[k], "at") == 0) {
        want = "'the' after 'at'";
        if (++k >= nw || strcmp(words[k], "the") != 0) goto bad;
        want = "a position (top left, top right, bottom left, bottom right, center)";
        if (++k >= nw) goto bad;
        if (strcmp(words[k], "center") == 0 || strcmp(words[k], "centre") == 0) {
            c.position = 4;
            k++;
        } else {
            if (k + 1 >= nw) goto bad;
            char two[64];
            snprintf(two, sizeof two, "%s %s", words[k], words[k + 1]);
            if ((c.position = find_word(two, shapes_position_names, SHAPES_NPOSITIONS)) < 0) goto bad;
            k += 2;
        }
    }
    want = "'on a COLOUR background'";
    if (k + 4 != nw || strcmp(words[k], "on") != 0 || strcmp(words[k + 1], "a") != 0 ||
        strcmp(words[k + 3], "background") != 0)
        goto bad;
    want = "a background colour (red, green, blue, yellow, white, black)";
    if ((c.background = find_word(words[k + 2], shapes_colour_names, SHAPES_NCOLOURS)) < 0) {
        k += 2;
        goto bad;
    }
    if (c.background == c.colour)
        return sd_err(err, SD_EINPUT, "caption \"%s\": the shape and the background are both %s", text,
                      shapes_colour_names[c.colour]);
    *out = c;
    return 0;
bad:
    return sd_err(err, SD_EINPUT, "caption \"%s\" does not follow the demo grammar: expected %s%s%s", text, want,
                  k < nw ? " at " : " at the end", k < nw ? words[k] : "");
}

/* Coverage test of one point (unit coordinates) against the shape centred at (cx, cy). */
static int inside(int shape, double r, double cx, double cy, double x, double y) {
    double dx = x - cx, dy = y - cy;
    switch (shape) {
    case 0: return dx * dx + dy * dy <= r * r;
    case 1: return fabs(dx) <= 0.9 * r && fabs(dy) <= 0.9 * r; /* about the circle's area */
    default: /* an upright triangle, apex at the top */
        if (dy < -r || dy > r) return 0;
        return fabs(dx) <= r * (dy + r) / (2 * r) * 1.15;
    }
}

/* A palette colour jittered by up to +-colour_jitter levels per channel. */
static void jitter_colour(sd_rng *g, int colour, double out[3]) {
    for (int ch = 0; ch < 3; ch++) {
        int v = shapes_palette[colour][ch] + draw_int(g, 2 * colour_jitter + 1) - colour_jitter;
        out[ch] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
}

void shapes_render(const shapes_caption *c, uint64_t seed, uint64_t i, int size, uint8_t *rgb) {
    sd_rng g;
    scene_rng(&g, seed, i, 2);
    double r = size_radius[c->size] * draw_uniform(&g, 0.92, 1.08);
    double lo = r + corner_margin, cx, cy;
    if (c->position == SHAPES_ANYWHERE) {
        cx = draw_uniform(&g, lo, 1 - lo);
        cy = draw_uniform(&g, lo, 1 - lo);
    } else if (c->position == 4) {
        cx = 0.5 + draw_uniform(&g, -0.03, 0.03);
        cy = 0.5 + draw_uniform(&g, -0.03, 0.03);
    } else {
        double jx = draw_uniform(&g, 0, 0.04), jy = draw_uniform(&g, 0, 0.04);
        cx = (c->position & 1) ? 1 - lo - jx : lo + jx;
        cy = (c->position & 2) ? 1 - lo - jy : lo + jy;
    }
    double fg[3], bg[3];
    jitter_colour(&g, c->colour, fg);
    jitter_colour(&g, c->background, bg);
    enum { SS = 4 };
    for (int py = 0; py < size; py++)
        for (int px = 0; px < size; px++) {
            int hits = 0;
            for (int sy = 0; sy < SS; sy++)
                for (int sx = 0; sx < SS; sx++)
                    hits += inside(c->shape, r, cx, cy, (px + (sx + 0.5) / SS) / size, (py + (sy + 0.5) / SS) / size);
            double f = hits / (double)(SS * SS);
            for (int ch = 0; ch < 3; ch++)
                rgb[((size_t)py * size + px) * 3 + ch] = (uint8_t)lround(bg[ch] + f * (fg[ch] - bg[ch]));
        }
}
