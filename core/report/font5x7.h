/*
 * font5x7.h - a tiny bitmap font for labels drawn into images (sdrender grid): printable ASCII in
 * 5x7 glyphs (descenders of g j p q y one row lower), one byte per column (bit 0 = top row),
 * drawn on a 6x9 cell (a column and one or two rows of space) times an integer scale. Other bytes
 * (and each UTF-8 sequence) draw as '?'.
 *
 *     int w = font_text_width("cfg 7.5", 2);                     // pixels
 *     font_draw_text(rgb, W, H, x, y, "cfg 7.5", -1, 2, black);  // rgb: [H, W, 3]; clipped to the image
 */
#ifndef SD_FONT5X7_H
#define SD_FONT5X7_H

#include <stdint.h>

#define FONT_CELL_W 6
#define FONT_CELL_H 9

/* The 5 column bytes of character c ('?' for anything outside 32..126). */
const uint8_t *font_glyph(int c);
/* Characters (UTF-8 sequences count once) in s. */
int font_text_chars(const char *s);
/* Width in pixels of s at scale (FONT_CELL_W * scale per character). */
int font_text_width(const char *s, int scale);
/* Draws the first max_chars characters of s (-1: all) with its top-left corner at (x, y). */
void font_draw_text(uint8_t *rgb, int w, int h, int x, int y, const char *s, int max_chars, int scale,
                    const uint8_t color[3]);

#endif
