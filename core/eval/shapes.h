/*
 * shapes.h - the procedural picture set of the demo model: one flat-coloured
 * shape (circle, square, triangle) of a size and colour, at a position, on a
 * plain background, with its caption. It trains the demo model
 * (scripts/train-demo-model.py reads `sdrender shapes --raw`) and is the
 * real image set that `make demo` scores against.
 *
 * Captions follow one grammar that users can also write by hand:
 *     a [small |large ]COLOUR SHAPE[ at the POSITION] on a COLOUR background
 * colours red green blue yellow white black; shapes circle square triangle;
 * positions top left, top right, bottom left, bottom right, center.
 * A caption without a size means medium; without a position, anywhere.
 *
 * Everything is deterministic: scene i of seed s depends only on (s, i).
 */
#ifndef SD_SHAPES_H
#define SD_SHAPES_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum { SHAPES_NCOLOURS = 6, SHAPES_NSHAPES = 3, SHAPES_NSIZES = 3, SHAPES_NPOSITIONS = 5 };
enum { SHAPES_SMALL = 0, SHAPES_MEDIUM = 1, SHAPES_LARGE = 2 };
/* SHAPES_ANYWHERE: the caption names no position (the picture places the shape at random). */
enum { SHAPES_ANYWHERE = -1 };

extern const char *const shapes_colour_names[SHAPES_NCOLOURS];
extern const char *const shapes_shape_names[SHAPES_NSHAPES];
extern const char *const shapes_position_names[SHAPES_NPOSITIONS];
/* The nominal RGB of each colour (pictures jitter it by a few levels). */
extern const uint8_t shapes_palette[SHAPES_NCOLOURS][3];

/* What a caption says. */
typedef struct shapes_caption {
    int colour;     /* index into shapes_colour_names */
    int shape;      /* index into shapes_shape_names */
    int size;       /* SHAPES_SMALL / MEDIUM / LARGE (MEDIUM when the caption names none) */
    int position;   /* index into shapes_position_names, or SHAPES_ANYWHERE */
    int background; /* a colour index, never equal to colour */
} shapes_caption;

/* Scene i of the set made from seed: a caption (size named 2/3 of the time, position 4/5). */
void shapes_sample(uint64_t seed, uint64_t i, shapes_caption *out);
/* The caption's text ("a small red circle at the top left on a blue background"). */
void shapes_format(const shapes_caption *c, char *buf, size_t n);
/* Parses a caption of the grammar above (case and extra spaces ignored). -1 with a message
 * naming the first word that does not fit. */
int shapes_parse(const char *text, shapes_caption *out, sd_error *err);
/* Draws one picture of the caption, rgb: [size, size, 3] bytes. The exact centre, extent and
 * colour jitter come from (seed, i); 4x4 supersampled edges. */
void shapes_render(const shapes_caption *c, uint64_t seed, uint64_t i, int size, uint8_t *rgb);

#endif
