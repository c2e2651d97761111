/*
 * test_demo_model.c - the procedural picture set (core/eval/shapes.c) and the
 * demo model that ships in the binary (init-model --demo): does it draw what
 * it is asked?
 *
 * A small checker of this file reads a 64x64 picture: the background is the
 * palette colour most border pixels are nearest to; the shape is every pixel
 * far from the background's mean colour; its colour is the palette colour most
 * of those pixels are nearest to; its position comes from the centre of its
 * bounding box (5th..95th percentiles, so stray pixels do not move it). The
 * checker is first shown to be right on the procedural pictures themselves,
 * then judges 40 pictures the demo model draws for captions of a seed the
 * training never used (the training set is `shapes --seed 0`).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pngio.h"
#include "shapes.h"
#include "testutil.h"

enum { S = 64 };

typedef struct verdict {
    int found;            /* a shape region exists */
    int colour, background, position; /* position: 0..4 as shapes_position_names */
    int shape;            /* 0 circle, 1 square, 2 triangle by how much of its bounding box it fills */
} verdict;

static int nearest_colour(const uint8_t *p) {
    int best = 0;
    double bd = 1e30;
    for (int k = 0; k < SHAPES_NCOLOURS; k++) {
        double d = 0;
        for (int ch = 0; ch < 3; ch++) d += pow(p[ch] - (double)shapes_palette[k][ch], 2);
        if (d < bd) bd = d, best = k;
    }
    return best;
}

static int mode_of(const int *count) {
    int best = 0;
    for (int k = 1; k < SHAPES_NCOLOURS; k++)
        if (count[k] > count[best]) best = k;
    return best;
}

static void check_picture(const uint8_t *rgb, verdict *v) {
    int count[SHAPES_NCOLOURS] = {0};
    double mean[3] = {0};
    int nb = 0;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            if (x < 2 || y < 2 || x >= S - 2 || y >= S - 2) count[nearest_colour(rgb + (y * S + x) * 3)]++;
    v->background = mode_of(count);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            const uint8_t *p = rgb + (y * S + x) * 3;
            if ((x < 2 || y < 2 || x >= S - 2 || y >= S - 2) && nearest_colour(p) == v->background) {
                for (int ch = 0; ch < 3; ch++) mean[ch] += p[ch];
                nb++;
            }
        }
    for (int ch = 0; ch < 3; ch++) mean[ch] /= nb;
    /* the region's rows and columns; a bounding box edge is the first row/column holding 2+ of its
     * pixels, so a stray pixel does not move it */
    int rows[S] = {0}, cols[S] = {0}, n = 0;
    memset(count, 0, sizeof count);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            const uint8_t *p = rgb + (y * S + x) * 3;
            double d = 0;
            for (int ch = 0; ch < 3; ch++) d += pow(p[ch] - mean[ch], 2);
            if (sqrt(d) > 80) {
                count[nearest_colour(p)]++;
                rows[y]++, cols[x]++, n++;
            }
        }
    v->found = n >= 12;
    if (!v->found) return;
    v->colour = mode_of(count);
    int x0 = 0, x1 = S - 1, y0 = 0, y1 = S - 1;
    while (x0 < S - 1 && cols[x0] < 2) x0++;
    while (x1 > x0 && cols[x1] < 2) x1--;
    while (y0 < S - 1 && rows[y0] < 2) y0++;
    while (y1 > y0 && rows[y1] < 2) y1--;
    double cx = (x0 + x1 + 1) / 2.0 / S, cy = (y0 + y1 + 1) / 2.0 / S;
    if (fabs(cx - 0.5) < 0.08 && fabs(cy - 0.5) < 0.08) v->position = 4;
    else v->position = (cx >= 0.5 ? 1 : 0) + (cy >= 0.5 ? 2 : 0);
    /* how much of its bounding box the shape fills: square 1, circle pi/4, triangle 1/2 */
    double fill = n / ((x1 - x0 + 1.0) * (y1 - y0 + 1.0));
    v->shape = fill > 0.9 ? 1 : fill > 0.64 ? 0 : 2;
}

/* Every scene's caption parses back to itself; pictures are deterministic and differ between scenes. */
static void test_shapes_captions_round_trip(void **state) {
    (void)state;
    int named_size = 0, named_pos = 0;
    for (int i = 0; i < 2000; i++) {
        shapes_caption c, back;
        char text[160];
        shapes_sample(7, (uint64_t)i, &c);
        assert_int_not_equal(c.colour, c.background);
        shapes_format(&c, text, sizeof text);
        sd_error err = {0};
        assert_int_equal(shapes_parse(text, &back, &err), 0);
        assert_memory_equal(&c, &back, sizeof c);
        named_size += c.size != SHAPES_MEDIUM;
        named_pos += c.position != SHAPES_ANYWHERE;
    }
    /* 2/3 of the captions name a size, 4/5 a position */
    assert_true(named_size > 1200 && named_size < 1470);
    assert_true(named_pos > 1500 && named_pos < 1700);
    static uint8_t a[S * S * 3], b[S * S * 3];
    shapes_caption c;
    shapes_sample(7, 3, &c);
    shapes_render(&c, 7, 3, S, a);
    shapes_render(&c, 7, 3, S, b);
    assert_memory_equal(a, b, sizeof a);
    shapes_render(&c, 7, 4, S, b);
    assert_true(memcmp(a, b, sizeof a) != 0);
}

static void test_shapes_parse_errors(void **state) {
    (void)state;
    shapes_caption c;
    sd_error err = {0};
    assert_int_equal(shapes_parse("A Large RED circle at the Top Right on a black background.", &c, &err), 0);
    assert_int_equal(c.size, SHAPES_LARGE);
    assert_int_equal(c.position, 1);
    assert_int_equal(c.background, 5);
    assert_true(shapes_parse("a purple circle on a blue background", &c, &err) < 0);
    assert_non_null(strstr(err.msg, "purple"));
    assert_true(shapes_parse("a red circle at the middle on a blue background", &c, &err) < 0);
    assert_non_null(strstr(err.msg, "position"));
    assert_true(shapes_parse("a red circle on a red background", &c, &err) < 0);
    assert_non_null(strstr(err.msg, "both red"));
    assert_true(shapes_parse("a red circle", &c, &err) < 0);
}

/* The checker reads the procedural pictures right: colours always, positions whenever named. */
static void test_checker_reads_procedural_pictures(void **state) {
    (void)state;
    static uint8_t rgb[S * S * 3];
    int shape_ok = 0, n = 400;
    for (int i = 0; i < n; i++) {
        shapes_caption c;
        shapes_sample(11, (uint64_t)i, &c);
        shapes_render(&c, 11, (uint64_t)i, S, rgb);
        verdict v;
        check_picture(rgb, &v);
        assert_true(v.found);
        if (v.background != c.background || v.colour != c.colour) {
            char text[160];
            shapes_format(&c, text, sizeof text);
            print_message("scene %d \"%s\": read colour %s on %s\n", i, text, shapes_colour_names[v.colour],
                          shapes_colour_names[v.background]);
        }
        assert_int_equal(v.background, c.background);
        assert_int_equal(v.colour, c.colour);
        if (c.position != SHAPES_ANYWHERE) assert_int_equal(v.position, c.position);
        shape_ok += v.shape == c.shape;
    }
    print_message("checker on %d procedural pictures: colours and positions 100%%, shape %.0f%%\n", n,
                  100.0 * shape_ok / n);
}

/* init-model --demo writes the files of scripts/demo-model byte for byte (the build embeds them). */
static void test_init_model_demo_writes_the_shipped_files(void **state) {
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", tu_tmp("demo-copy"));
    assert_int_equal(tu_sh(NULL, "%s init-model --demo %s 2>/dev/null", tu_bin(), dir), 0);
    assert_int_equal(tu_sh(NULL, "diff -r %s/scripts/demo-model %s >&2", tu_src(), dir), 0);
    assert_int_equal(tu_sh(NULL, "test -s %s/unet/diffusion_pytorch_model.safetensors", dir), 0);
}

/* An environment variable's value as a number, or def when unset. */
static long env_long(const char *name, long def) {
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : def;
}

/*
 * The demo model draws 40 captions of a seed it was not trained on with their colours and positions.
 * To measure another model (a training snapshot) on other captions, without changing what make check
 * asserts: SDRENDER_DEMO_MODEL=DIR, SDRENDER_DEMO_SEED=S (captions' seed), SDRENDER_DEMO_N=N.
 */
static void test_demo_model_draws_its_captions(void **state) {
    (void)state;
    char model[1024];
    const char *other = getenv("SDRENDER_DEMO_MODEL");
    snprintf(model, sizeof model, "%s", other && *other ? other : tu_tmp("demo-model"));
    if (!other || !*other)
        assert_int_equal(tu_sh(NULL, "%s init-model --demo %s 2>/dev/null", tu_bin(), model), 0);
    const int N = (int)env_long("SDRENDER_DEMO_N", 40);
    const long seed = env_long("SDRENDER_DEMO_SEED", 20261202);
    assert_true(N >= 10);
    int colour_ok = 0, bg_ok = 0, pos_ok = 0, pos_n = 0, shape_ok = 0;
    for (int i = 0; i < N; i++) {
        shapes_caption c;
        char text[160], out[64];
        shapes_sample((uint64_t)seed, (uint64_t)i, &c);
        shapes_format(&c, text, sizeof text);
        snprintf(out, sizeof out, "demo-%02d.png", i);
        int rc = tu_sh(NULL, "%s generate -q -m %s -p '%s' -W 64 -H 64 --steps 20 --sampler euler --cfg-scale 4 --seed %d --threads 1 -o %s",
                       tu_bin(), model, text, i, tu_tmp(out));
        assert_int_equal(rc, 0);
        uint8_t *rgb = NULL;
        int w = 0, h = 0;
        sd_error err = {0};
        assert_int_equal(sd_png_read_rgb(tu_tmp(out), &rgb, &w, &h, &err), 0);
        assert_int_equal(w, S);
        assert_int_equal(h, S);
        verdict v;
        check_picture(rgb, &v);
        free(rgb);
        colour_ok += v.found && v.colour == c.colour;
        bg_ok += v.background == c.background;
        shape_ok += v.found && v.shape == c.shape;
        if (c.position != SHAPES_ANYWHERE) {
            pos_n++;
            pos_ok += v.found && v.position == c.position;
        }
    }
    print_message("demo model, %d captions: shape colour %d%%, background %d%%, position %d%% (of %d named), shape %d%%\n",
                  N, 100 * colour_ok / N, 100 * bg_ok / N, 100 * pos_ok / pos_n, pos_n, 100 * shape_ok / N);
    assert_true(colour_ok * 10 >= N * 9);
    assert_true(bg_ok * 10 >= N * 9);
    assert_true(pos_ok * 10 >= pos_n * 8); /* issue 15: positions in >= 80% */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes_captions_round_trip),
        cmocka_unit_test(test_shapes_parse_errors),
        cmocka_unit_test(test_checker_reads_procedural_pictures),
        cmocka_unit_test(test_init_model_demo_writes_the_shipped_files),
        cmocka_unit_test(test_demo_model_draws_its_captions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
