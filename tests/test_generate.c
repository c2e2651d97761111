/* Tests for `sdrender generate`: pixels equal diffusers' PNGs, metadata round-trips, bad input exits 2. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "pngio.h"
#include "settings.h"

static void test_generate_matches_the_golden_pngs(void **state) {
    (void)state;
    const char *td = tu_testdata();
    char args[4096];
    const char *png = tu_tmp("euler_a.png");
    snprintf(args, sizeof args,
             "-m %s/models/tiny-sd15 -p 'a photograph of an astronaut riding a horse' -n 'blurry, low quality' "
             "--sampler euler_a --steps 10 --seed 42 -W 96 -H 96 -o %s",
             td, png);
    tu_generate_ok(args);
    assert_true(tu_png_max_diff(png, tu_path("golden/pipeline_sd15_euler_a_96.png")) <= 1);

    png = tu_tmp("img2img.png");
    snprintf(args, sizeof args,
             "-m %s/models/tiny-sd15 -p 'a red cube on top of a blue sphere, studio lighting' -n 'blurry, low quality' "
             "--sampler ddim --steps 10 --seed 7 -i %s/golden/pipeline_sd15_img2img_ddim_96.input.png --strength 0.6 "
             "-o %s",
             td, td, png);
    tu_generate_ok(args);
    assert_true(tu_png_max_diff(png, tu_path("golden/pipeline_sd15_img2img_ddim_96.png")) <= 1);

    png = tu_tmp("inpaint.png");
    snprintf(args, sizeof args,
             "-m %s/models/tiny-inpaint -p 'a red cube on top of a blue sphere, studio lighting' "
             "-n 'blurry, low quality' --steps 10 --seed 7 -i %s/golden/pipeline_inpaint_pndm_96.input.png "
             "--mask %s/golden/pipeline_inpaint_pndm_96.mask.png -o %s",
             td, td, td, png);
    tu_generate_ok(args);
    assert_true(tu_png_max_diff(png, tu_path("golden/pipeline_inpaint_pndm_96.png")) <= 1);

    /* the single-file checkpoints give the same pixels as the folder */
    const char *png2 = tu_tmp("single.png"), *png3 = tu_tmp("ckpt.png"), *png1 = tu_tmp("folder.png");
    snprintf(args, sizeof args, "-m %s/models/tiny-sd15 -p 'a cat' --steps 4 --seed 1 -W 64 -H 64 -o %s", td, png1);
    tu_generate_ok(args);
    snprintf(args, sizeof args,
             "-m %s/models/tiny-sd15.safetensors --tokenizer %s/models/tiny-sd15/tokenizer -p 'a cat' --steps 4 "
             "--seed 1 -W 64 -H 64 -o %s",
             td, td, png2);
    tu_generate_ok(args);
    snprintf(args, sizeof args,
             "-m %s/checkpoints/tiny-sd15.ckpt --tokenizer %s/models/tiny-sd15/tokenizer -p 'a cat' --steps 4 "
             "--seed 1 -W 64 -H 64 -o %s",
             td, td, png3);
    tu_generate_ok(args);
    assert_int_equal(tu_png_max_diff(png1, png2), 0);
    assert_int_equal(tu_png_max_diff(png1, png3), 0);
}

static void test_generate_parameters_chunk_round_trips(void **state) {
    (void)state;
    char args[4096];
    const char *png = tu_tmp("params.png");
    snprintf(args, sizeof args,
             "-m %s/models/tiny-sd15 -p 'a fox, (masterpiece:1.2)' -n 'ugly' --sampler dpm++2m --karras --steps 3 "
             "--cfg-scale 6.5 --seed 1234 --clip-skip 2 -W 64 -H 72 -o %s",
             tu_testdata(), png);
    tu_generate_ok(args);
    sd_png_text *t;
    int nt;
    sd_error err = {0};
    assert_int_equal(sd_png_read_text(png, &t, &nt, &err), 0);
    const char *params = sd_png_text_get(t, nt, "parameters");
    assert_non_null(params);
    sd_settings_parsed p;
    assert_int_equal(sd_settings_parse_a1111(params, &p, &err), 0);
    assert_string_equal(p.prompt, "a fox, (masterpiece:1.2)");
    assert_string_equal(p.negative, "ugly");
    assert_int_equal(p.s.sampler, SD_SAMPLER_DPMPP_2M);
    assert_int_equal(p.s.karras, 1);
    assert_int_equal(p.s.steps, 3);
    assert_true(p.s.cfg_scale == 6.5f);
    assert_int_equal(p.s.seed, 1234);
    assert_int_equal(p.s.clip_skip, 2);
    assert_int_equal(p.s.width, 64);
    assert_int_equal(p.s.height, 72);
    assert_int_equal(strlen(p.model_hash), 10);
    assert_string_equal(p.model_name, "tiny-sd15");
    sd_settings_parsed_free(&p);
    sd_png_text_free(t, nt);
    /* batch count: consecutive seeds, numbered files */
    snprintf(args, sizeof args, "-m %s/models/tiny-sd15 -p x --steps 2 --seed 5 --batch-count 2 -o %s", tu_testdata(),
             tu_tmp("b.png"));
    tu_generate_ok(args);
    assert_true(sd_fs_is_file(tu_tmp("b-1.png")) && sd_fs_is_file(tu_tmp("b-2.png")));
    assert_int_equal(sd_png_read_text(tu_tmp("b-2.png"), &t, &nt, &err), 0);
    assert_non_null(strstr(sd_png_text_get(t, nt, "parameters"), "Seed: 6,"));
    assert_non_null(strstr(sd_png_text_get(t, nt, "parameters"), "Size: 64x64"));
    sd_png_text_free(t, nt);
}

/* Each bad request: exit status 2 and exactly one line on stderr naming the problem. */
static void test_generate_bad_input_gives_one_line_and_exit_2(void **state) {
    (void)state;
    const char *td = tu_testdata();
    const char *cases[][2] = {
        {"-W 100 -H 64", "multiple of 8"},
        {"--steps 0", "--steps"},
        {"--sampler bogus", "unknown sampler 'bogus'"},
        {"-i /nonexistent.png", "/nonexistent.png"},
        {"--cfg-scale abc", "--cfg-scale"},
        {"--karras --sampler ddim", "karras"},
        {"--mask x.png", "--mask needs an init image"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *out;
        int rc = tu_sh(&out, "%s generate -q -m %s/models/tiny-sd15 -p x -o %s %s 2>&1 >/dev/null", tu_bin(), td,
                       tu_tmp("bad.png"), cases[i][0]);
        if (rc != 2) fail_msg("'%s': exit %d, want 2 (%s)", cases[i][0], rc, out);
        if (!strstr(out, cases[i][1])) fail_msg("'%s': message '%s' does not mention '%s'", cases[i][0], out, cases[i][1]);
        char *nl = strchr(out, '\n');
        if (!nl || nl[1]) fail_msg("'%s': want exactly one line, got '%s'", cases[i][0], out);
        free(out);
    }
    /* a mask of the wrong size for an inpainting model */
    char *out;
    int rc = tu_sh(&out,
                   "%s generate -q -m %s/models/tiny-inpaint -p x -i %s/golden/pipeline_inpaint_pndm_96.input.png "
                   "--mask %s/golden/pipeline_inpaint_pndm.mask.png -o %s 2>&1",
                   tu_bin(), td, td, td, tu_tmp("bad.png"));
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "the mask is 64x64 but the image size is 96x96"));
    free(out);
}

/* The bytes of a file (NULL if unreadable); *n its size. The caller frees. */
static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *buf = NULL;
    size_t cap = 0;
    *n = 0;
    for (;;) {
        if (*n == cap) {
            unsigned char *g = realloc(buf, cap = cap ? 2 * cap : 65536);
            if (!g) break;
            buf = g;
        }
        size_t got = fread(buf + *n, 1, cap - *n, f);
        if (!got) break;
        *n += got;
    }
    fclose(f);
    return buf;
}

/*
 * The GEMMs dispatch on the CPU (oneDNN), not on OpenBLAS's table: the same PNG bytes with this
 * machine's OPENBLAS_CORETYPE=Haswell and without it, in fp32 and (where available) bf16. Builds
 * whose GEMM is OpenBLAS (PORTABLE=1, DNNL=0) do follow its kernels, which round differently per CPU:
 * skipped there.
 */
static void test_generate_bytes_do_not_depend_on_openblas_dispatch(void **state) {
    (void)state;
    if (strstr(ops_gemm_backend(), "OpenBLAS")) {
        printf("  (GEMMs on OpenBLAS in this build: skipped)\n");
        return;
    }
    const char *saved = getenv("OPENBLAS_CORETYPE");
    char keep[64] = "";
    if (saved) snprintf(keep, sizeof keep, "%s", saved);
    for (int p = 0; p < 2; p++) {
        if (p == 1 && !ops_bf16_available()) continue;
        char args[1024], png[2][256];
        for (int v = 0; v < 2; v++) {
            snprintf(png[v], sizeof png[v], "%s", tu_tmp(v ? "coretype-unset.png" : "coretype-haswell.png"));
            if (v) unsetenv("OPENBLAS_CORETYPE");
            else setenv("OPENBLAS_CORETYPE", "Haswell", 1);
            snprintf(args, sizeof args,
                     "-m %s/models/tiny-sd15 -p 'a red house' --steps 4 --seed 3 -W 128 -H 128 --precision %s -o %s",
                     tu_testdata(), p ? "bf16" : "fp32", png[v]);
            tu_generate_ok(args);
        }
        size_t na = 0, nb = 0;
        unsigned char *a = read_all(png[0], &na), *b = read_all(png[1], &nb);
        assert_non_null(a);
        assert_non_null(b);
        assert_true(na == nb && memcmp(a, b, na) == 0);
        free(a), free(b);
    }
    if (saved) setenv("OPENBLAS_CORETYPE", keep, 1);
    else unsetenv("OPENBLAS_CORETYPE");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_matches_the_golden_pngs),
        cmocka_unit_test(test_generate_parameters_chunk_round_trips),
        cmocka_unit_test(test_generate_bad_input_gives_one_line_and_exit_2),
        cmocka_unit_test(test_generate_bytes_do_not_depend_on_openblas_dispatch),
    };
    return cmocka_run_group_tests_name("generate", tests, NULL, NULL);
}
