/*
 * rng.h - PyTorch's CPU random generator, reproduced bit for bit.
 *
 *     sd_rng g;
 *     sd_rng_seed(&g, 42);                 // torch.Generator().manual_seed(42)
 *     sd_rng_randn(&g, latents, 1*4*64*64);// torch.randn([1,4,64,64], generator=g)
 *
 * Successive calls continue the same stream, as successive torch.randn calls
 * on one generator do; this is what makes a seed give diffusers' image.
 * Algorithm: testdata README section 5 (mt19937; n >= 16 uses torch's
 * vectorized Box-Muller on blocks of 16 in float32, n < 16 the double-precision
 * path with a one-value cache). The polynomials are evaluated in scalar code with
 * fmaf where PyTorch's compiled AVX2 code fused, so every build (PORTABLE too)
 * gives the same bits.
 */
#ifndef SD_RNG_H
#define SD_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct sd_rng {
    uint32_t mt[624];
    int mti;
    int has_cached_normal; /* the double path's spare value */
    double cached_normal;
} sd_rng;

/* torch.Generator().manual_seed(seed); clears the cached normal. Like torch, only the low
 * 32 bits of the seed matter (a negative Python seed is its two's complement). */
void sd_rng_seed(sd_rng *g, uint64_t seed);
/* Next raw 32-bit output of mt19937. */
uint32_t sd_rng_u32(sd_rng *g);
/* torch.randn(n) into out (float32). */
void sd_rng_randn(sd_rng *g, float *out, size_t n);

#endif
