/*
 * rng.h - PyTorch's CPU random generator, reproduced bit for bit, and the
 * CUDA (Philox) one as AUTOMATIC1111's "NV" noise source reproduces it.
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
 *
 * sd_rng_seed_philox switches a generator to torch's CUDA stream instead
 * (testdata ext/README section 5): every randn call takes one Philox4x32-10
 * offset (element i uses counter (offset, 0, i, 0), key = the 64-bit seed)
 * and one Box-Muller output per element, evaluated in double precision as
 * A1111's modules/rng_philox.py does.
 */
#ifndef SD_RNG_H
#define SD_RNG_H

#include <stddef.h>
#include <stdint.h>

/* Which stream a generator draws: torch's CPU mt19937, or CUDA's Philox (A1111 "NV"). */
typedef enum sd_rng_kind { SD_RNG_CPU = 0, SD_RNG_CUDA = 1 } sd_rng_kind;

typedef struct sd_rng {
    sd_rng_kind kind;
    uint64_t philox_seed;   /* SD_RNG_CUDA: the key */
    uint64_t philox_offset; /* SD_RNG_CUDA: counter word 0 of the next randn call */
    uint32_t mt[624];
    int mti;
    int has_cached_normal; /* the double path's spare value */
    double cached_normal;
} sd_rng;

/* torch.Generator().manual_seed(seed); clears the cached normal. Like torch, only the low
 * 32 bits of the seed matter (a negative Python seed is its two's complement). */
void sd_rng_seed(sd_rng *g, uint64_t seed);
/* A CUDA-compatible generator (torch.Generator("cuda").manual_seed(seed), A1111's NV source):
 * the whole 64-bit seed is the Philox key; the offset starts at 0. */
void sd_rng_seed_philox(sd_rng *g, uint64_t seed);
/* sd_rng_seed or sd_rng_seed_philox by kind. */
void sd_rng_seed_kind(sd_rng *g, sd_rng_kind kind, uint64_t seed);
/* "cpu" / "cuda" -> kind; -1 when unknown. */
int sd_rng_kind_parse(const char *name, sd_rng_kind *out);
const char *sd_rng_kind_name(sd_rng_kind kind);
/* Next raw 32-bit output of mt19937 (SD_RNG_CPU generators only). */
uint32_t sd_rng_u32(sd_rng *g);
/* torch.randn(n) into out (float32), from the generator's stream (CPU or Philox). */
void sd_rng_randn(sd_rng *g, float *out, size_t n);

#endif
