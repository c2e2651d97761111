/* Tests for core/rng: torch.Generator().manual_seed(s) + torch.randn reproduced bit for bit. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* Fails unless got and want are the same float32 bit patterns; names the first difference. */
static void expect_bits(const char *label, const float *got, const float *want, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t a, b;
        memcpy(&a, &got[i], 4);
        memcpy(&b, &want[i], 4);
        if (a != b)
            fail_msg("%s: element %zu of %zu differs: got %.9g (0x%08x), want %.9g (0x%08x), %d ulp", label, i, n,
                     got[i], a, want[i], b, (int)((int32_t)a - (int32_t)b));
    }
}

/* Draws numel values from g and compares them with tensor `name` of f. */
static void expect_draw(sd_rng *g, const st_file *f, const char *name) {
    size_t n;
    float *want = tu_f32(f, name, &n);
    float *got = malloc(n * sizeof *got);
    assert_non_null(got);
    sd_rng_randn(g, got, n);
    expect_bits(name, got, want, n);
    free(got);
    free(want);
}

static void test_rng_mt19937_matches_the_reference_engine(void **state) {
    (void)state;
    /* The C++ standard fixes the 10000th output of mt19937 seeded with 5489. */
    sd_rng g;
    sd_rng_seed(&g, 5489);
    uint32_t v = 0;
    for (int i = 0; i < 10000; i++) v = sd_rng_u32(&g);
    assert_int_equal(v, 4123659995u);
    /* torch keeps only the low 32 bits of a 64-bit seed */
    sd_rng h;
    sd_rng_seed(&g, 42);
    sd_rng_seed(&h, 42 + (1ull << 32));
    for (int i = 0; i < 1000; i++) assert_int_equal(sd_rng_u32(&g), sd_rng_u32(&h));
}

/* Every single-draw tensor `seed{S}_shape{A}x{B}...` of randn.safetensors. */
static void test_rng_randn_equals_torch_bit_for_bit_for_every_seed_and_shape(void **state) {
    (void)state;
    st_file f;
    tu_open(&f, "golden/randn.safetensors");
    int checked = 0;
    for (int i = 0; i < f.n; i++) {
        const char *name = f.tensors[i].name;
        unsigned long long seed;
        int used = 0;
        if (strstr(name, "_draw")) continue; /* successive draws: next test */
        if (sscanf(name, "seed%llu_shape%n", &seed, &used) != 1 || used == 0)
            fail_msg("randn.safetensors: unexpected tensor name '%s'", name);
        sd_rng g;
        sd_rng_seed(&g, seed);
        expect_draw(&g, &f, name);
        checked++;
    }
    assert_int_equal(checked, 4 * 8); /* 4 seeds x 8 shapes */
    st_close(&f);
}

/* Successive randn calls on one generator continue one stream, including the n < 16 cache. */
static void test_rng_successive_draws_continue_the_stream_and_the_cached_normal(void **state) {
    (void)state;
    static const struct {
        unsigned seed;
        const char *first, *second;
    } pairs[] = {
        {42, "seed42_draw1_shape1x4x8x8", "seed42_draw2_shape1x4x8x8"},
        {0, "seed0_draw1_shape7", "seed0_draw2_shape17"},  /* odd n < 16 leaves a cached value behind */
        {0, "seed0_draw1_shape17", "seed0_draw2_shape7"},  /* n >= 16 neither uses nor clears the cache */
    };
    st_file f;
    tu_open(&f, "golden/randn.safetensors");
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        sd_rng g;
        sd_rng_seed(&g, pairs[i].seed);
        expect_draw(&g, &f, pairs[i].first);
        expect_draw(&g, &f, pairs[i].second);
    }
    st_close(&f);
}

static void test_rng_manual_seed_clears_the_cached_normal(void **state) {
    (void)state;
    st_file f;
    tu_open(&f, "golden/randn.safetensors");
    sd_rng g;
    sd_rng_seed(&g, 0);
    float tmp[7];
    sd_rng_randn(&g, tmp, 7); /* leaves a cached value */
    assert_true(g.has_cached_normal);
    sd_rng_seed(&g, 0);
    expect_draw(&g, &f, "seed0_shape7");
    st_close(&f);
}

/*
 * The CUDA (Philox) stream of ext/golden/randn_philox.safetensors, bit for bit: fresh generators for
 * every seed and shape (seeds above 2^32 use both key words), and the draws 1, 2, 3 of one generator
 * (offsets 0, 1, 2: each call takes one offset whatever its size).
 */
static void test_rng_philox_equals_a1111_nv_noise_bit_for_bit(void **state) {
    (void)state;
    st_file f;
    tu_open(&f, "ext/golden/randn_philox.safetensors");
    int fresh = 0, chains = 0;
    for (int i = 0; i < f.n; i++) {
        const char *name = f.tensors[i].name;
        unsigned long long seed;
        int used = 0;
        if (strstr(name, "_draw")) continue;
        if (sscanf(name, "seed%llu_shape%n", &seed, &used) != 1 || used == 0)
            fail_msg("randn_philox.safetensors: unexpected tensor name '%s'", name);
        sd_rng g;
        sd_rng_seed_philox(&g, seed);
        expect_draw(&g, &f, name);
        fresh++;
        char d1[64], d2[64], d3[64];
        snprintf(d1, sizeof d1, "seed%llu_draw1_shape1x4x8x8", seed);
        snprintf(d2, sizeof d2, "seed%llu_draw2_shape1x4x8x8", seed);
        snprintf(d3, sizeof d3, "seed%llu_draw3_shape7", seed);
        if (strcmp(name + used, "7")) continue; /* once per seed */
        sd_rng_seed_kind(&g, SD_RNG_CUDA, seed);
        expect_draw(&g, &f, d1);
        expect_draw(&g, &f, d2);
        expect_draw(&g, &f, d3);
        chains++;
    }
    assert_int_equal(fresh, 4 * 4);
    assert_int_equal(chains, 4);
    /* the CPU stream is a different one; the names parse both ways, anything else is refused */
    sd_rng_kind k;
    assert_int_equal(sd_rng_kind_parse("cuda", &k), 0);
    assert_int_equal(k, SD_RNG_CUDA);
    assert_int_equal(sd_rng_kind_parse("cpu", &k), 0);
    assert_int_equal(k, SD_RNG_CPU);
    assert_int_equal(sd_rng_kind_parse("gpu", &k), -1);
    assert_string_equal(sd_rng_kind_name(SD_RNG_CUDA), "cuda");
    st_close(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_mt19937_matches_the_reference_engine),
        cmocka_unit_test(test_rng_randn_equals_torch_bit_for_bit_for_every_seed_and_shape),
        cmocka_unit_test(test_rng_successive_draws_continue_the_stream_and_the_cached_normal),
        cmocka_unit_test(test_rng_manual_seed_clears_the_cached_normal),
        cmocka_unit_test(test_rng_philox_equals_a1111_nv_noise_bit_for_bit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
