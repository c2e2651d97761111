#include "pngio.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsutil.h"
#include "testhook.h"

/* ---------------------------------------------------------------- errors */

/*
 * libpng reports errors by calling an error function that must not return;
 * ours records the message in the caller's context and longjmps back to the
 * setjmp in encode()/decode(). Those functions keep all state that outlives
 * the jump in the context struct (never in their own locals), so nothing is
 * indeterminate after the jump, and the caller frees it on every path.
 */
typedef struct png_ctx {
    const char *path;
    FILE *fp;
    png_structp png;
    png_infop info;
    char msg[256];
    int nomem;
    int write_errno; /* errno of the failed fwrite/fflush behind a libpng "Write Error" */
    /* reading */
    int width, height;
    int src_color, src_depth; /* IHDR colour type and bit depth */
    int channels, depth;      /* per row after libpng's transforms */
    size_t rowbytes;
    uint64_t file_size;
    unsigned char *buf;       /* [height, rowbytes] */
    png_bytep *rows;
} png_ctx;

static void on_error(png_structp png, png_const_charp msg) {
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg; /* ancillary-chunk problems: libpng skips the chunk, so do we */
}

/* ---------------------------------------------------------------- writing */

/* libpng's own writer reports a short fwrite as "Write Error" and loses errno: ours keeps it. */
static void on_write(png_structp png, png_bytep data, size_t n) {
    png_ctx *c = png_get_io_ptr(png);
    if (fwrite(data, 1, n, c->fp) != n) {
        c->write_errno = errno ? errno : EIO;
        png_error(png, "write failed");
    }
}

static void on_flush(png_structp png) {
    png_ctx *c = png_get_io_ptr(png);
    if (fflush(c->fp) != 0) {
        c->write_errno = errno ? errno : EIO;
        png_error(png, "flush failed");
    }
}

typedef struct png_wjob {
    png_ctx c;
    const uint8_t *rgb;
    png_text *ptext;
    int ntext;
} png_wjob;

static int encode(png_wjob *j) {
    png_ctx *c = &j->c;
    if (setjmp(png_jmpbuf(c->png))) return -1;
    png_set_write_fn(c->png, c, on_write, on_flush);
    png_set_IHDR(c->png, c->info, (png_uint_32)c->width, (png_uint_32)c->height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (j->ntext) png_set_text(c->png, c->info, j->ptext, j->ntext);
    png_write_info(c->png, c->info);
    for (int y = 0; y < c->height; y++) {
        if (y == c->height / 2) {
            png_write_flush(c->png);
            sd_test_stall("png"); /* fault tests: a kill with half a temporary file on disk */
        }
        png_write_row(c->png, j->rgb + (size_t)y * (size_t)c->width * 3);
    }
    png_write_end(c->png, NULL);
    return 0;
}

/* A PNG keyword: 1-79 printable ASCII characters, no leading, trailing or doubled spaces. */
static int key_ok(const char *k) {
    size_t n = strlen(k);
    if (n < 1 || n > 79 || k[0] == ' ' || k[n - 1] == ' ') return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)k[i];
        if (ch < 32 || ch > 126) return 0;
        if (ch == ' ' && k[i + 1] == ' ') return 0;
    }
    return 1;
}

static int is_ascii(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return 0;
    return 1;
}

/* True when s is well-formed UTF-8 (no overlong forms, surrogates or values past U+10FFFF). */
static int utf8_ok(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        int n = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
        if (n < 0) return 0;
        unsigned cp = n == 0 ? c : n == 1 ? (c & 0x1F) : n == 2 ? (c & 0x0F) : (c & 0x07);
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        p += n + 1;
    }
    return 1;
}

int sd_png_write_rgb(const char *path, const uint8_t *rgb, int width, int height, const sd_png_text *texts,
                     int ntext, sd_error *err) {
    if (width < 1 || height < 1 || width > SD_PNG_MAX_SIDE || height > SD_PNG_MAX_SIDE)
        return sd_err(err, SD_EINPUT, "%s: cannot write a %dx%d image (sides must be 1..%d)", path, width, height,
                      SD_PNG_MAX_SIDE);
    if (ntext < 0) return sd_err(err, SD_EINTERNAL, "%s: negative text chunk count", path);
    for (int i = 0; i < ntext; i++) {
        if (!texts[i].key || !key_ok(texts[i].key))
            return sd_err(err, SD_EINPUT,
                          "%s: text key '%s' is not a valid PNG keyword (1-79 printable ASCII characters, no "
                          "leading, trailing or double spaces)",
                          path, texts[i].key ? texts[i].key : "(null)");
        if (!texts[i].value || !utf8_ok(texts[i].value))
            return sd_err(err, SD_EINPUT, "%s: text '%s' is not valid UTF-8", path, texts[i].key);
    }
    png_wjob j;
    memset(&j, 0, sizeof j);
    j.c.path = path;
    j.c.width = width;
    j.c.height = height;
    j.rgb = rgb;
    j.ntext = ntext;
    j.ptext = calloc(ntext ? (size_t)ntext : 1, sizeof *j.ptext);
    if (!j.ptext) return sd_err(err, SD_ENOMEM, "%s: out of memory", path);
    for (int i = 0; i < ntext; i++) {
        png_text *t = &j.ptext[i];
        int ascii = is_ascii(texts[i].value);
        t->compression = ascii ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE;
        t->key = (png_charp)texts[i].key;
        t->text = (png_charp)texts[i].value;
        if (ascii) t->text_length = strlen(texts[i].value);
        else t->itxt_length = strlen(texts[i].value);
        t->lang = NULL;
        t->lang_key = NULL;
    }
    sd_fs_atomic_file af;
    int rc = sd_fs_atomic_open(&af, path, err);
    if (rc < 0) {
        free(j.ptext);
        return rc;
    }
    j.c.fp = af.fp;
    j.c.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &j.c, on_error, on_warning);
    if (j.c.png) j.c.info = png_create_info_struct(j.c.png);
    if (!j.c.png || !j.c.info) rc = sd_err(err, SD_ENOMEM, "%s: out of memory creating the PNG writer", path);
    else if (encode(&j) < 0) {
        if (j.c.write_errno) rc = sd_err_sys(err, j.c.write_errno, "%s: cannot write PNG", af.tmp);
        else rc = sd_err(err, SD_EIO, "%s: cannot write PNG: %s", path, j.c.msg);
    }
    if (j.c.png) png_destroy_write_struct(&j.c.png, j.c.info ? &j.c.info : NULL);
    free(j.ptext);
    if (rc < 0) {
        sd_fs_atomic_abort(&af);
        return rc;
    }
    return sd_fs_atomic_commit(&af, err);
}

/* ---------------------------------------------------------------- reading */

static int decode(png_ctx *c) {
    if (setjmp(png_jmpbuf(c->png))) return -1;
    png_init_io(c->png, c->fp);
    png_set_sig_bytes(c->png, 8);
    png_set_user_limits(c->png, SD_PNG_MAX_SIDE, SD_PNG_MAX_SIDE);
    /* a chunk (text, ICC profile) may not ask for more than this, however long its header says it is */
    png_set_chunk_malloc_max(c->png, SD_PNG_MAX_CHUNK);
    png_read_info(c->png, c->info);
    png_uint_32 w, h;
    int depth, color, interlace;
    png_get_IHDR(c->png, c->info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    /* The rows (a filter byte each) are deflated in the file, at most 1032:1: a header whose image
     * could not fit in this file is corrupt, and is refused before the image buffer is allocated. */
    uint64_t raw = (uint64_t)h * (((uint64_t)w * png_get_channels(c->png, c->info) * (uint64_t)depth + 7) / 8 + 1);
    if (raw / 1032 > c->file_size)
        png_error(c->png, "the image size in the header needs more data than the file holds (truncated or corrupt)");
    c->width = (int)w;
    c->height = (int)h;
    c->src_color = color;
    c->src_depth = depth;
    /* Palette -> RGB (libpng adds alpha when there is tRNS; we drop it). */
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(c->png);
    /* 1/2/4-bit gray -> 8 bits scaled to 0..255, as Pillow's "1", "L;2", "L;4" unpackers. */
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(c->png);
    png_set_interlace_handling(c->png);
    png_read_update_info(c->png, c->info);
    c->channels = png_get_channels(c->png, c->info);
    c->depth = png_get_bit_depth(c->png, c->info);
    c->rowbytes = png_get_rowbytes(c->png, c->info);
    if ((c->depth != 8 && c->depth != 16) || c->channels < 1 || c->channels > 4 ||
        c->rowbytes != (size_t)c->width * (size_t)c->channels * (size_t)(c->depth / 8))
        png_error(c->png, "unexpected row layout after conversion");
    c->buf = malloc(c->rowbytes * (size_t)c->height);
    c->rows = malloc(sizeof *c->rows * (size_t)c->height);
    if (!c->buf || !c->rows) {
        c->nomem = 1;
        png_error(c->png, "out of memory for the decoded image");
    }
    for (int y = 0; y < c->height; y++) c->rows[y] = c->buf + (size_t)y * c->rowbytes;
    png_read_image(c->png, c->rows);
    png_read_end(c->png, c->info);
    return 0;
}

static void ctx_free(png_ctx *c) {
    if (c->png) png_destroy_read_struct(&c->png, c->info ? &c->info : NULL, NULL);
    if (c->fp) fclose(c->fp);
    free(c->buf);
    free(c->rows);
    memset(c, 0, sizeof *c);
}

/*
 * Walks the chunk headers after the signature (fp at offset 8) and fails when one claims more bytes
 * than the file has left: libpng allocates a chunk's claimed length before reading it, and for an
 * ancillary chunk (iTXt) its "too large" check is only a warning. Leaves fp at offset 8.
 */
static int check_chunks(png_ctx *c, sd_error *err) {
    uint64_t pos = 8;
    unsigned char h[8];
    while (fread(h, 1, 8, c->fp) == 8) {
        uint64_t len = (uint64_t)h[0] << 24 | (uint64_t)h[1] << 16 | (uint64_t)h[2] << 8 | h[3];
        if (len > c->file_size - pos - 8 || c->file_size - pos - 8 - len < 4)
            return sd_err(err, SD_EINPUT, "%s: corrupt or truncated PNG (chunk '%.4s' at offset %llu claims %llu bytes, "
                          "the file has %llu left)", c->path, (const char *)h + 4, (unsigned long long)pos,
                          (unsigned long long)len, (unsigned long long)(c->file_size - pos - 8));
        if (!memcmp(h + 4, "IEND", 4)) break;
        pos += 12 + len;
        if (fseeko(c->fp, (off_t)pos, SEEK_SET) != 0) break;
    }
    if (fseeko(c->fp, 8, SEEK_SET) != 0) return sd_err(err, SD_EIO, "%s: %s", c->path, strerror(errno));
    return 0;
}

/* Opens, checks the signature and decodes the whole file into c (free with ctx_free). */
static int ctx_read(png_ctx *c, const char *path, sd_error *err) {
    memset(c, 0, sizeof *c);
    c->path = path;
    c->fp = fopen(path, "rb");
    if (!c->fp) return sd_err(err, errno == ENOENT ? SD_ENOTFOUND : SD_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    /* size limits apply to regular files (a pipe has no size to check against) */
    c->file_size = fstat(fileno(c->fp), &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size : UINT64_MAX;
    unsigned char sig[8];
    size_t got = fread(sig, 1, 8, c->fp);
    int rc = 0;
    if (got < 8 || png_sig_cmp(sig, 0, 8) != 0) {
        rc = sd_err(err, SD_EINPUT, "%s: not a PNG file (%s)", path,
                    got < 8 ? "shorter than the 8-byte signature" : "the 8-byte PNG signature is missing");
    } else if ((rc = check_chunks(c, err)) == 0) {
        c->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, on_error, on_warning);
        if (c->png) c->info = png_create_info_struct(c->png);
        if (!c->png || !c->info) rc = sd_err(err, SD_ENOMEM, "%s: out of memory creating the PNG reader", path);
        else if (decode(c) < 0)
            rc = c->nomem ? sd_err(err, SD_ENOMEM, "%s: %s", path, c->msg)
                          : sd_err(err, SD_EINPUT, "%s: corrupt or truncated PNG (libpng: %s)", path, c->msg);
    }
    if (rc < 0) ctx_free(c);
    return rc;
}

/* Sample i of row r as Pillow sees it after opening (8-bit; see pngio.h for the 16-bit rules). */
static inline unsigned sample(const png_ctx *c, const unsigned char *row, size_t i) {
    if (c->depth == 8) return row[i];
    unsigned v = ((unsigned)row[2 * i] << 8) | row[2 * i + 1];
    if (c->src_color == PNG_COLOR_TYPE_GRAY) return v > 255 ? 255 : v; /* mode "I": clip */
    return v >> 8;                                                      /* ";16B" raw modes: high byte */
}

int sd_png_read_rgb(const char *path, uint8_t **rgb, int *width, int *height, sd_error *err) {
    *rgb = NULL;
    png_ctx c;
    int rc = ctx_read(&c, path, err);
    if (rc < 0) return rc;
    size_t npix = (size_t)c.width * (size_t)c.height;
    uint8_t *out = malloc(npix * 3);
    if (!out) {
        ctx_free(&c);
        return sd_err(err, SD_ENOMEM, "%s: out of memory (%dx%d image)", path, c.width, c.height);
    }
    int color = c.channels >= 3; /* RGB or RGBA; else gray or gray+alpha */
    for (int y = 0; y < c.height; y++) {
        const unsigned char *row = c.rows[y];
        uint8_t *o = out + (size_t)y * (size_t)c.width * 3;
        for (int x = 0; x < c.width; x++, o += 3) {
            size_t i = (size_t)x * (size_t)c.channels;
            if (color) {
                o[0] = (uint8_t)sample(&c, row, i);
                o[1] = (uint8_t)sample(&c, row, i + 1);
                o[2] = (uint8_t)sample(&c, row, i + 2);
            } else {
                o[0] = o[1] = o[2] = (uint8_t)sample(&c, row, i);
            }
        }
    }
    *width = c.width;
    *height = c.height;
    *rgb = out;
    ctx_free(&c);
    return 0;
}

int sd_png_read_gray(const char *path, uint8_t **gray, int *width, int *height, sd_error *err) {
    *gray = NULL;
    png_ctx c;
    int rc = ctx_read(&c, path, err);
    if (rc < 0) return rc;
    uint8_t *out = malloc((size_t)c.width * (size_t)c.height);
    if (!out) {
        ctx_free(&c);
        return sd_err(err, SD_ENOMEM, "%s: out of memory (%dx%d image)", path, c.width, c.height);
    }
    int color = c.channels >= 3;
    for (int y = 0; y < c.height; y++) {
        const unsigned char *row = c.rows[y];
        uint8_t *o = out + (size_t)y * (size_t)c.width;
        for (int x = 0; x < c.width; x++) {
            size_t i = (size_t)x * (size_t)c.channels;
            if (color) {
                uint32_t r = sample(&c, row, i), g = sample(&c, row, i + 1), b = sample(&c, row, i + 2);
                o[x] = (uint8_t)((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
            } else {
                o[x] = (uint8_t)sample(&c, row, i);
            }
        }
    }
    *width = c.width;
    *height = c.height;
    *gray = out;
    ctx_free(&c);
    return 0;
}

/* Latin-1 bytes -> new UTF-8 string. */
static char *latin1_to_utf8(const char *s) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) n += *p < 0x80 ? 1 : 2;
    char *out = malloc(n + 1), *o = out;
    if (!out) return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x80) *o++ = (char)*p;
        else {
            *o++ = (char)(0xC0 | (*p >> 6));
            *o++ = (char)(0x80 | (*p & 0x3F));
        }
    }
    *o = 0;
    return out;
}

int sd_png_read_text(const char *path, sd_png_text **texts, int *ntext, sd_error *err) {
    *texts = NULL;
    *ntext = 0;
    png_ctx c;
    int rc = ctx_read(&c, path, err);
    if (rc < 0) return rc;
    png_textp tp = NULL;
    int n = png_get_text(c.png, c.info, &tp, NULL);
    sd_png_text *out = calloc(n > 0 ? (size_t)n : 1, sizeof *out);
    if (!out) rc = sd_err(err, SD_ENOMEM, "%s: out of memory", path);
    for (int i = 0; rc == 0 && i < n; i++) {
        int itxt = tp[i].compression == PNG_ITXT_COMPRESSION_NONE || tp[i].compression == PNG_ITXT_COMPRESSION_zTXt;
        out[i].key = latin1_to_utf8(tp[i].key);
        out[i].value = itxt ? strdup(tp[i].text ? tp[i].text : "") : latin1_to_utf8(tp[i].text ? tp[i].text : "");
        if (!out[i].key || !out[i].value) rc = sd_err(err, SD_ENOMEM, "%s: out of memory", path);
    }
    ctx_free(&c);
    if (rc < 0) {
        if (out) sd_png_text_free(out, n);
        return rc;
    }
    *texts = out;
    *ntext = n;
    return 0;
}

const char *sd_png_text_get(const sd_png_text *texts, int ntext, const char *key) {
    for (int i = 0; i < ntext; i++)
        if (!strcmp(texts[i].key, key)) return texts[i].value;
    return NULL;
}

void sd_png_text_free(sd_png_text *texts, int ntext) {
    if (!texts) return;
    for (int i = 0; i < ntext; i++) {
        free(texts[i].key);
        free(texts[i].value);
    }
    free(texts);
}
