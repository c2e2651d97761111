/* Tests for core/formats/pngio.c: Pillow-compatible decoding, text chunks, atomic writes, clear errors. */
#include "testutil.h"

#include <dirent.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pngio.h"

/* ------------------------------------------------------------ reference images */

static void expect_png_equals_u8(const char *png_rel, const char *st_rel, const char *tensor, int gray) {
    st_file st;
    tu_open(&st, st_rel);
    const sd_tensor *t = tu_tensor(&st, tensor);
    sd_error err = {0};
    uint8_t *px;
    int w, h;
    int rc = gray ? sd_png_read_gray(tu_path(png_rel), &px, &w, &h, &err)
                  : sd_png_read_rgb(tu_path(png_rel), &px, &w, &h, &err);
    if (rc < 0) fail_msg("%s", err.msg);
    assert_int_equal(t->dtype, SD_U8);
    assert_int_equal(t->shape[0], h);
    assert_int_equal(t->shape[1], w);
    assert_int_equal(t->nbytes, (size_t)w * h * (gray ? 1 : 3));
    if (memcmp(px, t->data, t->nbytes)) fail_msg("%s differs from %s:%s", png_rel, st_rel, tensor);
    free(px);
    st_close(&st);
}

static void test_png_reads_golden_images_and_masks_bit_exactly(void **state) {
    (void)state;
    expect_png_equals_u8("golden/pipeline_sd15_euler.png", "golden/pipeline_sd15_euler.safetensors", "image_u8", 0);
    expect_png_equals_u8("golden/pipeline_sd15_pndm_64x96.png", "golden/pipeline_sd15_pndm_64x96.safetensors",
                         "image_u8", 0);
    expect_png_equals_u8("golden/pipeline_inpaint_pndm.input.png", "golden/pipeline_inpaint_pndm.safetensors",
                         "input_image_u8", 0);
    expect_png_equals_u8("golden/pipeline_inpaint_pndm.mask.png", "golden/pipeline_inpaint_pndm.safetensors", "mask_u8",
                         1);
    expect_png_equals_u8("golden/pipeline_inpaint_pndm_96.mask.png", "golden/pipeline_inpaint_pndm_96.safetensors",
                         "mask_u8", 1);
}

/* clip3_32x32 needs neither resize nor crop, so the stored uint8 image is the PNG itself. */
static void test_png_reads_metrics_image_as_pillow_did(void **state) {
    (void)state;
    st_file st;
    tu_open(&st, "metrics/clip_score.safetensors");
    const sd_tensor *t = tu_tensor(&st, "images_uint8_resized_cropped"); /* [4, 32, 32, 3] */
    uint8_t *px;
    int w, h;
    sd_error err = {0};
    if (sd_png_read_rgb(tu_path("metrics/images/clip3_32x32.png"), &px, &w, &h, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(w, 32);
    assert_int_equal(h, 32);
    assert_memory_equal(px, (const uint8_t *)t->data + 3 * 32 * 32 * 3, 32 * 32 * 3);
    free(px);
    /* every metrics image decodes with the size in its name */
    const char *names[] = {"img2_299x299.png", "img5_400x320.png", "img3_17x23.png", "clip1_20x27.png"};
    const int hw[][2] = {{299, 299}, {400, 320}, {17, 23}, {20, 27}};
    for (int i = 0; i < 4; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "metrics/images/%s", names[i]);
        if (sd_png_read_rgb(tu_path(rel), &px, &w, &h, &err) < 0) fail_msg("%s", err.msg);
        assert_int_equal(h, hw[i][0]);
        assert_int_equal(w, hw[i][1]);
        free(px);
    }
    st_close(&st);
}

/* ------------------------------------------------------------ every colour type, written with libpng directly */

typedef struct raw_png {
    int w, h, depth, color, interlace;
    const unsigned char *pixels; /* packed rows as PNG stores them */
    const png_color *palette;
    int npalette;
    const unsigned char *trns;
    int ntrns;
} raw_png;

static void write_raw_png(const char *path, const raw_png *r) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    assert_true(png && info);
    if (setjmp(png_jmpbuf(png))) fail_msg("libpng failed writing %s", path);
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)r->w, (png_uint_32)r->h, r->depth, r->color, r->interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (r->palette) png_set_PLTE(png, info, r->palette, r->npalette);
    if (r->trns) png_set_tRNS(png, info, r->trns, r->ntrns, NULL);
    png_write_info(png, info);
    int channels = r->color == PNG_COLOR_TYPE_RGB ? 3 : r->color == PNG_COLOR_TYPE_RGBA ? 4 : r->color == PNG_COLOR_TYPE_GA ? 2 : 1;
    size_t rowbytes = ((size_t)r->w * (size_t)channels * (size_t)r->depth + 7) / 8;
    png_bytep *rows = malloc(sizeof *rows * (size_t)r->h);
    for (int y = 0; y < r->h; y++) rows[y] = (png_bytep)(r->pixels + (size_t)y * rowbytes);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    fclose(fp);
}

static void expect_decodes(const char *name, const raw_png *r, const uint8_t *want_rgb, const uint8_t *want_gray) {
    const char *path = tu_tmp(name);
    write_raw_png(path, r);
    sd_error err = {0};
    uint8_t *px;
    int w, h;
    if (sd_png_read_rgb(path, &px, &w, &h, &err) < 0) fail_msg("%s: %s", name, err.msg);
    assert_int_equal(w, r->w);
    assert_int_equal(h, r->h);
    for (int i = 0; i < w * h * 3; i++)
        if (px[i] != want_rgb[i]) fail_msg("%s: RGB byte %d is %d, Pillow gives %d", name, i, px[i], want_rgb[i]);
    free(px);
    if (sd_png_read_gray(path, &px, &w, &h, &err) < 0) fail_msg("%s: %s", name, err.msg);
    for (int i = 0; i < w * h; i++)
        if (px[i] != want_gray[i]) fail_msg("%s: L pixel %d is %d, Pillow gives %d", name, i, px[i], want_gray[i]);
    free(px);
}

/*
 * Expected values follow Pillow 9.4: Image.open(p).convert("RGB") / .convert("L").
 * Gray from RGB uses (R*19595 + G*38470 + B*7471 + 0x8000) >> 16: pure red 76,
 * pure green 150 (the float formula 0.587*255 = 149.7 would floor to 149), blue 29.
 */
static void test_png_decodes_every_color_type_like_pillow(void **state) {
    (void)state;
    /* 8-bit RGB: the three primaries and white */
    const unsigned char rgb8[] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255};
    raw_png r = {4, 1, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, rgb8, NULL, 0, NULL, 0};
    expect_decodes("rgb8.png", &r, rgb8, (const uint8_t[]){76, 150, 29, 255});

    /* RGBA: alpha is dropped, not composited (a transparent pixel keeps its colour) */
    const unsigned char rgba8[] = {10, 20, 30, 0, 200, 100, 50, 128};
    r = (raw_png){2, 1, 8, PNG_COLOR_TYPE_RGBA, PNG_INTERLACE_NONE, rgba8, NULL, 0, NULL, 0};
    expect_decodes("rgba8.png", &r, (const uint8_t[]){10, 20, 30, 200, 100, 50},
                   (const uint8_t[]){(10 * 19595 + 20 * 38470 + 30 * 7471 + 0x8000) >> 16,
                                     (200 * 19595 + 100 * 38470 + 50 * 7471 + 0x8000) >> 16});

    /* 16-bit RGB: high byte (0x12ff -> 0x12, not rounded to 0x13) */
    const unsigned char rgb16[] = {0x12, 0xff, 0xab, 0x01, 0xff, 0xff};
    r = (raw_png){1, 1, 16, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, rgb16, NULL, 0, NULL, 0};
    expect_decodes("rgb16.png", &r, (const uint8_t[]){0x12, 0xab, 0xff},
                   (const uint8_t[]){(0x12 * 19595 + 0xab * 38470 + 0xff * 7471 + 0x8000) >> 16});

    /* 16-bit RGBA */
    const unsigned char rgba16[] = {0x80, 0x00, 0x40, 0xff, 0x00, 0x01, 0x00, 0x00};
    r = (raw_png){1, 1, 16, PNG_COLOR_TYPE_RGBA, PNG_INTERLACE_NONE, rgba16, NULL, 0, NULL, 0};
    expect_decodes("rgba16.png", &r, (const uint8_t[]){0x80, 0x40, 0x00},
                   (const uint8_t[]){(0x80 * 19595 + 0x40 * 38470 + 0x8000) >> 16});

    /* 8-bit gray */
    const unsigned char g8[] = {0, 77, 255};
    r = (raw_png){3, 1, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, g8, NULL, 0, NULL, 0};
    expect_decodes("gray8.png", &r, (const uint8_t[]){0, 0, 0, 77, 77, 77, 255, 255, 255}, g8);

    /* 16-bit gray is Pillow mode "I": values are clipped to 255, not scaled */
    const unsigned char g16[] = {0, 0, 0, 100, 0, 255, 1, 0, 3, 232, 255, 255};
    r = (raw_png){6, 1, 16, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, g16, NULL, 0, NULL, 0};
    expect_decodes("gray16.png", &r, (const uint8_t[]){0, 0, 0, 100, 100, 100, 255, 255, 255, 255, 255, 255, 255, 255,
                                                       255, 255, 255, 255},
                   (const uint8_t[]){0, 100, 255, 255, 255, 255});

    /* 1-, 2- and 4-bit gray are scaled to 0..255 */
    const unsigned char g1[] = {0xA0}; /* 1 0 1 0 */
    r = (raw_png){4, 1, 1, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, g1, NULL, 0, NULL, 0};
    expect_decodes("gray1.png", &r, (const uint8_t[]){255, 255, 255, 0, 0, 0, 255, 255, 255, 0, 0, 0},
                   (const uint8_t[]){255, 0, 255, 0});
    const unsigned char g2[] = {0x1B}; /* 0 1 2 3 */
    r = (raw_png){4, 1, 2, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, g2, NULL, 0, NULL, 0};
    expect_decodes("gray2.png", &r, (const uint8_t[]){0, 0, 0, 85, 85, 85, 170, 170, 170, 255, 255, 255},
                   (const uint8_t[]){0, 85, 170, 255});
    const unsigned char g4[] = {0x0F, 0x70}; /* 0 15 7 0 */
    r = (raw_png){3, 1, 4, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, g4, NULL, 0, NULL, 0};
    expect_decodes("gray4.png", &r, (const uint8_t[]){0, 0, 0, 255, 255, 255, 119, 119, 119},
                   (const uint8_t[]){0, 255, 119});

    /* gray + alpha, 8 and 16 bits: alpha dropped */
    const unsigned char ga8[] = {40, 0, 200, 255};
    r = (raw_png){2, 1, 8, PNG_COLOR_TYPE_GA, PNG_INTERLACE_NONE, ga8, NULL, 0, NULL, 0};
    expect_decodes("ga8.png", &r, (const uint8_t[]){40, 40, 40, 200, 200, 200}, (const uint8_t[]){40, 200});
    const unsigned char ga16[] = {0x7f, 0xff, 0x00, 0x00};
    r = (raw_png){1, 1, 16, PNG_COLOR_TYPE_GA, PNG_INTERLACE_NONE, ga16, NULL, 0, NULL, 0};
    expect_decodes("ga16.png", &r, (const uint8_t[]){0x7f, 0x7f, 0x7f}, (const uint8_t[]){0x7f});

    /* palette (8-bit and 4-bit) with tRNS: colours looked up, transparency ignored */
    const png_color pal[3] = {{255, 0, 0}, {0, 255, 0}, {9, 8, 7}};
    const unsigned char trns[3] = {0, 128, 255};
    const unsigned char p8[] = {2, 0, 1};
    r = (raw_png){3, 1, 8, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE, p8, pal, 3, trns, 3};
    expect_decodes("pal8.png", &r, (const uint8_t[]){9, 8, 7, 255, 0, 0, 0, 255, 0},
                   (const uint8_t[]){(9 * 19595 + 8 * 38470 + 7 * 7471 + 0x8000) >> 16, 76, 150});
    const unsigned char p4[] = {0x21, 0x00};
    r = (raw_png){3, 1, 4, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE, p4, pal, 3, NULL, 0};
    expect_decodes("pal4.png", &r, (const uint8_t[]){9, 8, 7, 0, 255, 0, 255, 0, 0}, (const uint8_t[]){8, 150, 76});

    /* interlaced (Adam7) RGB */
    unsigned char il[9 * 7 * 3], want_l[9 * 7];
    for (int i = 0; i < 9 * 7; i++) {
        il[3 * i] = (unsigned char)(i * 3);
        il[3 * i + 1] = (unsigned char)(255 - i);
        il[3 * i + 2] = (unsigned char)(i * 11);
        want_l[i] = (unsigned char)((il[3 * i] * 19595 + il[3 * i + 1] * 38470 + il[3 * i + 2] * 7471 + 0x8000) >> 16);
    }
    r = (raw_png){9, 7, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_ADAM7, il, NULL, 0, NULL, 0};
    expect_decodes("adam7.png", &r, il, want_l);
}

/* ------------------------------------------------------------ writing */

static int count_chunks(const char *path, const char *type) {
    char *buf;
    size_t len;
    assert_int_equal(sd_fs_read_file(path, &buf, &len, NULL), 0);
    int n = 0;
    for (size_t p = 8; p + 12 <= len;) {
        size_t clen = ((size_t)(unsigned char)buf[p] << 24) | ((size_t)(unsigned char)buf[p + 1] << 16) |
                      ((size_t)(unsigned char)buf[p + 2] << 8) | (unsigned char)buf[p + 3];
        if (!memcmp(buf + p + 4, type, 4)) n++;
        p += 12 + clen;
    }
    free(buf);
    return n;
}

static void test_png_write_round_trips_pixels_and_utf8_text(void **state) {
    (void)state;
    const int w = 37, h = 23;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++) rgb[i] = (uint8_t)((i * 131 + 7) ^ (i >> 3));
    const char *params = "a photo of a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, "
                         "Seed: 42, Size: 37x23, Model: tiny-sd15";
    const char *utf8 = "caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x90\xb1 (emphasis:1.2)";
    sd_png_text texts[] = {{"parameters", (char *)params}, {"prompt", (char *)utf8}, {"Software", (char *)"sdrender"}};
    const char *path = tu_tmp("round.png");
    sd_error err = {0};
    if (sd_png_write_rgb(path, rgb, w, h, texts, 3, &err) < 0) fail_msg("%s", err.msg);
    uint8_t *back;
    int bw, bh;
    assert_int_equal(sd_png_read_rgb(path, &back, &bw, &bh, &err), 0);
    assert_int_equal(bw, w);
    assert_int_equal(bh, h);
    assert_memory_equal(back, rgb, (size_t)w * h * 3);
    free(back);
    sd_png_text *t;
    int n;
    assert_int_equal(sd_png_read_text(path, &t, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(sd_png_text_get(t, n, "parameters"), params);
    assert_string_equal(sd_png_text_get(t, n, "prompt"), utf8);
    assert_string_equal(sd_png_text_get(t, n, "Software"), "sdrender");
    assert_null(sd_png_text_get(t, n, "missing"));
    sd_png_text_free(t, n);
    /* ASCII values use tEXt (like A1111), the UTF-8 one iTXt */
    assert_int_equal(count_chunks(path, "tEXt"), 2);
    assert_int_equal(count_chunks(path, "iTXt"), 1);
    assert_int_equal(count_chunks(path, "IHDR"), 1);
    /* no temporary file is left beside it */
    DIR *d = opendir(tu_tmpdir());
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp.")) fail_msg("temporary file %s left behind", de->d_name);
    closedir(d);
    /* overwriting keeps a valid file */
    assert_int_equal(sd_png_write_rgb(path, rgb, w, h, NULL, 0, &err), 0);
    assert_int_equal(sd_png_read_text(path, &t, &n, &err), 0);
    assert_int_equal(n, 0);
    sd_png_text_free(t, n);
    free(rgb);
}

/* A Latin-1 tEXt chunk written by another program comes back as UTF-8. */
static void test_png_reads_latin1_text_as_utf8(void **state) {
    (void)state;
    const char *path = tu_tmp("latin1.png");
    FILE *fp = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) fail_msg("libpng failed");
    png_init_io(png, fp);
    png_set_IHDR(png, info, 1, 1, 8, PNG_COLOR_TYPE_GRAY, 0, 0, 0);
    png_text t = {0};
    t.compression = PNG_TEXT_COMPRESSION_zTXt;
    t.key = (png_charp) "Comment";
    t.text = (png_charp) "caf\xe9";
    t.text_length = 4;
    png_set_text(png, info, &t, 1);
    png_write_info(png, info);
    png_byte px = 9;
    png_write_row(png, &px);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    fclose(fp);
    sd_png_text *tx;
    int n;
    sd_error err = {0};
    assert_int_equal(sd_png_read_text(path, &tx, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(tx[0].value, "caf\xc3\xa9");
    sd_png_text_free(tx, n);
}

static void test_png_rejects_non_png_truncated_and_corrupt_files_clearly(void **state) {
    (void)state;
    sd_error err = {0};
    uint8_t *px = (uint8_t *)"x";
    int w, h;
    const char *txt = tu_tmp("note.png");
    FILE *fp = fopen(txt, "wb");
    fputs("this is not a png file at all", fp);
    fclose(fp);
    assert_int_equal(sd_png_read_rgb(txt, &px, &w, &h, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "not a PNG file"));
    assert_null(px);
    fp = fopen(txt, "wb");
    fclose(fp);
    assert_int_equal(sd_png_read_rgb(txt, &px, &w, &h, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "signature"));
    assert_int_equal(sd_png_read_rgb(tu_tmp("absent.png"), &px, &w, &h, &err), SD_ENOTFOUND);
    /* truncated at several points, and with a corrupted image byte */
    char *buf;
    size_t len;
    assert_int_equal(sd_fs_read_file(tu_path("metrics/images/img2_299x299.png"), &buf, &len, NULL), 0);
    const size_t cuts[] = {9, 20, 33, 100, len / 2, len - 13};
    const char *bad = tu_tmp("bad.png");
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        fp = fopen(bad, "wb");
        fwrite(buf, 1, cuts[i], fp);
        fclose(fp);
        int rc = sd_png_read_rgb(bad, &px, &w, &h, &err);
        if (rc != SD_EINPUT) fail_msg("a PNG cut at %zu bytes gave %d", cuts[i], rc);
        assert_non_null(strstr(err.msg, "corrupt or truncated"));
        assert_non_null(strstr(err.msg, bad));
        sd_png_text *t;
        int n;
        assert_int_equal(sd_png_read_text(bad, &t, &n, &err), SD_EINPUT);
        assert_int_equal(sd_png_read_gray(bad, &px, &w, &h, &err), SD_EINPUT);
    }
    buf[len / 2] ^= 0x40; /* inside IDAT: its CRC no longer matches */
    fp = fopen(bad, "wb");
    fwrite(buf, 1, len, fp);
    fclose(fp);
    assert_int_equal(sd_png_read_rgb(bad, &px, &w, &h, &err), SD_EINPUT);
    free(buf);
}

static void test_png_write_refuses_bad_keys_sizes_and_text(void **state) {
    (void)state;
    uint8_t rgb[3 * 4] = {0};
    sd_error err = {0};
    const char *path = tu_tmp("refused.png");
    sd_png_text bad_key[] = {{" lead", (char *)"x"}};
    assert_int_equal(sd_png_write_rgb(path, rgb, 2, 2, bad_key, 1, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "keyword"));
    sd_png_text bad_utf8[] = {{"prompt", (char *)"caf\xe9"}};
    assert_int_equal(sd_png_write_rgb(path, rgb, 2, 2, bad_utf8, 1, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "UTF-8"));
    assert_int_equal(sd_png_write_rgb(path, rgb, 0, 2, NULL, 0, &err), SD_EINPUT);
    assert_false(sd_fs_is_file(path));
    assert_int_equal(sd_png_write_rgb("/nonexistent-dir/x.png", rgb, 2, 2, NULL, 0, &err), SD_EIO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_reads_golden_images_and_masks_bit_exactly),
        cmocka_unit_test(test_png_reads_metrics_image_as_pillow_did),
        cmocka_unit_test(test_png_decodes_every_color_type_like_pillow),
        cmocka_unit_test(test_png_write_round_trips_pixels_and_utf8_text),
        cmocka_unit_test(test_png_reads_latin1_text_as_utf8),
        cmocka_unit_test(test_png_rejects_non_png_truncated_and_corrupt_files_clearly),
        cmocka_unit_test(test_png_write_refuses_bad_keys_sizes_and_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
