/*
 * pngio.h - 8-bit PNG files: images rendered by sdrender, inputs and masks.
 * (Not "png.h": that name belongs to libpng, and -Icore would shadow it.)
 *
 * Writing: 8-bit RGB, no alpha, with text chunks holding generation info
 * (A1111's `parameters` key and friends). Written atomically through
 * sd_atomic_* (temporary file, fsync, rename), so a crash never leaves a
 * half-written image under the final name.
 *
 * Text encoding: a value that is pure ASCII goes into a tEXt chunk (as
 * A1111/Pillow do); a value with any byte >= 0x80 goes into an uncompressed
 * iTXt chunk, whose text is UTF-8 by definition, so UTF-8 prompts survive.
 * (Pillow would use tEXt with Latin-1 where the text fits Latin-1; iTXt is
 * read back identically by Pillow's `info`, A1111 and every PNG reader.)
 * Keys must be 1-79 printable Latin-1 characters; we accept ASCII keys.
 * Reading returns every tEXt/zTXt/iTXt chunk as UTF-8: tEXt and zTXt text
 * (Latin-1 by the PNG spec) is converted, iTXt is taken as is.
 *
 * Reading decodes any PNG (gray 1/2/4/8/16-bit, gray+alpha, RGB, RGBA,
 * palette, 8 or 16 bits, interlaced or not) exactly as Pillow 9.4's
 * `Image.open(p).convert("RGB")` and `.convert("L")` do:
 *   - alpha (and tRNS transparency) is dropped, never composited;
 *   - 16-bit RGB/RGBA/gray+alpha samples keep their high byte (v >> 8);
 *   - 16-bit gray (Pillow mode "I") is CLIPPED to 0..255, not scaled:
 *     Pillow's I->RGB and I->L converters clamp (so 1000 becomes 255);
 *   - 1/2/4-bit gray is scaled to 0..255 (x255, x85, x17);
 *   - gray from colour: L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16,
 *     Pillow's fixed-point form of ITU-R 601-2 (R*299 + G*587 + B*114)/1000;
 *     palette images use the same formula on the palette colour.
 *
 *     uint8_t *rgb; int w, h;
 *     if (sd_png_read_rgb("in.png", &rgb, &w, &h, &err) < 0) ...   // rgb: [h, w, 3]
 *     free(rgb);
 */
#ifndef SD_PNGIO_H
#define SD_PNGIO_H

#include <stdint.h>

#include "err.h"

/* Largest width or height accepted when reading or writing. */
#define SD_PNG_MAX_SIDE 32768
/* Largest chunk (text, ICC profile; compressed ones after inflating) a reader accepts: 64 MiB. */
#define SD_PNG_MAX_CHUNK (64u << 20)

typedef struct sd_png_text {
    char *key;   /* ASCII */
    char *value; /* UTF-8, NUL-terminated */
} sd_png_text;

/*
 * Writes rgb: [height, width, 3] as an 8-bit RGB PNG with ntext text chunks
 * (in the given order, before the image data), atomically.
 */
int sd_png_write_rgb(const char *path, const uint8_t *rgb, int width, int height, const sd_png_text *texts,
                     int ntext, sd_error *err);

/* Decodes path into a new [h, w, 3] buffer (caller frees), as Pillow's convert("RGB"). */
int sd_png_read_rgb(const char *path, uint8_t **rgb, int *width, int *height, sd_error *err);

/* Decodes path into a new [h, w] buffer (caller frees), as Pillow's convert("L"). */
int sd_png_read_gray(const char *path, uint8_t **gray, int *width, int *height, sd_error *err);

/*
 * All text chunks of path (before and after the image data, in file order)
 * into a new array (free with sd_png_text_free). The image is decoded and
 * checked as well, so a corrupt file fails here too.
 */
int sd_png_read_text(const char *path, sd_png_text **texts, int *ntext, sd_error *err);

/* Value of the first chunk with this key, or NULL. */
const char *sd_png_text_get(const sd_png_text *texts, int ntext, const char *key);

void sd_png_text_free(sd_png_text *texts, int ntext);

#endif
