/*
 * rng.c - PyTorch's CPU generator (torch.Generator + torch.randn), bit for bit.
 *
 * Three pieces, each as PyTorch 1.13 does it:
 *   - mt19937 seeded from the low 32 bits of the seed (at::mt19937);
 *   - randn of n >= 16 floats: normal_fill_AVX2 - uniforms first, then
 *     Box-Muller on blocks of 16 with the Cephes log/sincos polynomials of
 *     avx_mathfun.h, redoing the last 16 slots when n % 16 != 0;
 *   - randn of n < 16: at::normal_distribution<double>, one value at a time,
 *     with the generator's cached second value.
 *
 * The polynomials are evaluated here one lane at a time with the exact
 * rounding of the compiled AVX2 code: GCC contracted `a*b + c` pairs of the
 * intrinsics into fused multiply-adds, so those steps use fmaf() and every
 * other step is a separate float operation (one operation per statement, so
 * no compiler can contract them further). fmaf is exact in software too, so
 * PORTABLE builds without FMA hardware give the same bits.
 */
#include "rng.h"

#include <math.h>
#include <string.h>

enum { MT_N = 624, MT_M = 397 };

/* torch.Generator().manual_seed(seed): at::mt19937 keeps seed & 0xffffffff. */
void sd_rng_seed(sd_rng *g, uint64_t seed) {
    g->mt[0] = (uint32_t)(seed & 0xffffffffu);
    for (int i = 1; i < MT_N; i++) {
        uint32_t prev = g->mt[i - 1];
        g->mt[i] = 1812433253u * (prev ^ (prev >> 30)) + (uint32_t)i;
    }
    g->kind = SD_RNG_CPU;
    g->philox_seed = g->philox_offset = 0;
    g->mti = MT_N; /* the first draw regenerates the state */
    g->has_cached_normal = 0;
    g->cached_normal = 0.0;
}

/* Regenerates all 624 words of state (the standard mt19937 twist). */
static void mt_twist(sd_rng *g) {
    uint32_t *mt = g->mt;
    for (int i = 0; i < MT_N; i++) {
        uint32_t y = (mt[i] & 0x80000000u) | (mt[(i + 1) % MT_N] & 0x7fffffffu);
        uint32_t v = mt[(i + MT_M) % MT_N] ^ (y >> 1);
        if (y & 1u) v ^= 0x9908b0dfu;
        mt[i] = v;
    }
    g->mti = 0;
}

uint32_t sd_rng_u32(sd_rng *g) {
    if (g->mti >= MT_N) mt_twist(g);
    uint32_t y = g->mt[g->mti++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* at::uniform_real_distribution<float>(0, 1): 24 random bits scaled to [0, 1). */
static float uniform_f32(sd_rng *g) {
    return (float)(sd_rng_u32(g) & 0xffffffu) * 0x1p-24f;
}

/* at::uniform_real_distribution<double>(0, 1): 53 bits of random64() (first word high). */
static double uniform_f64(sd_rng *g) {
    uint64_t hi = sd_rng_u32(g);
    uint64_t lo = sd_rng_u32(g);
    uint64_t r = (hi << 32) | lo;
    return (double)(r & ((1ull << 53) - 1)) * 0x1p-53;
}

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/*
 * Natural log of x > 0 as log256_ps computes one lane: split x into mantissa
 * m in [sqrt(1/2), sqrt(2)) and exponent e, then a degree-9 Cephes polynomial
 * in m - 1. Steps marked "fused" are the ones the compiled code fuses.
 */
static float cephes_logf(float x) {
    if (x < 0x1p-126f) x = 0x1p-126f; /* _mm256_max_ps with the smallest normal */
    uint32_t bits = f2u(x);
    int32_t exponent = (int32_t)(bits >> 23) - 0x7f;
    float m = u2f((bits & ~0x7f800000u) | f2u(0.5f));
    float e = (float)exponent;
    e = e + 1.0f;
    float keep = 0.0f;
    if (m < 0.707106781186547524f) {
        keep = m;
        e = e - 1.0f;
    }
    float t = m - 1.0f;
    t = t + keep;
    float z = t * t;
    float y = fmaf(7.0376836292E-2f, t, -1.1514610310E-1f); /* fused */
    y = fmaf(y, t, 1.1676998740E-1f);
    y = fmaf(y, t, -1.2420140846E-1f);
    y = fmaf(y, t, 1.4249322787E-1f);
    y = fmaf(y, t, -1.6668057665E-1f);
    y = fmaf(y, t, 2.0000714765E-1f);
    y = fmaf(y, t, -2.4999993993E-1f);
    y = fmaf(y, t, 3.3333331174E-1f);
    y = y * t;
    float eq1 = e * -2.12194440e-4f;
    y = fmaf(y, z, eq1);          /* fused: y*z + e*q1 */
    float halfz = z * 0.5f;       /* exact */
    y = y - halfz;
    float r = t + y;
    r = fmaf(e, 0.693359375f, r); /* fused: e*q2 is exact anyway */
    return r;
}

/* sin and cos of x >= 0 as sincos256_ps computes one lane (x < 8192). */
static void cephes_sincosf(float x, float *s, float *c) {
    uint32_t sign_sin = f2u(x) & 0x80000000u;
    x = u2f(f2u(x) & 0x7fffffffu);
    float scaled = x * 1.27323954473516f; /* 4 / pi */
    int32_t j = (int32_t)scaled;          /* truncation, like cvttps */
    j = (j + 1) & ~1;
    float yj = (float)j;
    uint32_t swap_sin = ((uint32_t)j & 4u) << 29;
    int use_sin_poly = (j & 2) == 0;
    uint32_t sign_cos = (~(uint32_t)(j - 2) & 4u) << 29;
    /* extended-precision reduction x - yj * pi/4 in three parts, each fused */
    x = fmaf(yj, -0.78515625f, x);
    x = fmaf(yj, -2.4187564849853515625e-4f, x);
    x = fmaf(yj, -3.77489497744594108e-8f, x);
    sign_sin ^= swap_sin;
    float z = x * x;
    float yc = fmaf(2.443315711809948E-005f, z, -1.388731625493765E-003f);
    yc = fmaf(yc, z, 4.166664568298827E-002f);
    yc = yc * z;
    float halfz = z * 0.5f;
    yc = fmaf(yc, z, -halfz); /* fused: yc*z - z/2 */
    yc = yc + 1.0f;
    float ys = fmaf(-1.9515295891E-4f, z, 8.3321608736E-3f);
    ys = fmaf(ys, z, -1.6666654611E-1f);
    ys = ys * z;
    ys = fmaf(ys, x, x);
    /* the select: masked-out lanes are +0, combined with adds and subtracts */
    float ysin2 = use_sin_poly ? ys : 0.0f;
    float ysin1 = use_sin_poly ? 0.0f : yc;
    float rest_s = ys - ysin2;
    float rest_c = yc - ysin1;
    float sv = ysin1 + ysin2;
    float cv = rest_c + rest_s;
    *s = u2f(f2u(sv) ^ sign_sin);
    *c = u2f(f2u(cv) ^ sign_cos);
}

/* normal_fill_16_AVX2 on d[0..15]: pairs (d[j], d[j+8]) of uniforms become normals. */
static void box_muller16(float *d) {
    const float two_pi = (float)(2.0 * 3.14159265358979323846);
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - d[j];
        float u2 = d[j + 8];
        float lg = cephes_logf(u1);
        float radius = sqrtf(-2.0f * lg);
        float theta = two_pi * u2;
        float s, c;
        cephes_sincosf(theta, &s, &c);
        float n1 = radius * c;
        float n2 = radius * s;
        d[j] = n1 + 0.0f; /* fmadd(n, std = 1, mean = 0) */
        d[j + 8] = n2 + 0.0f;
    }
}

/* One value of at::normal_distribution<double>(0, 1), using and refilling the cache. */
static double normal_f64(sd_rng *g) {
    if (g->has_cached_normal) {
        g->has_cached_normal = 0;
        return g->cached_normal;
    }
    double u1 = uniform_f64(g);
    double u2 = uniform_f64(g);
    double r = sqrt(-2.0 * log(1.0 - u2));
    double theta = 2.0 * 3.14159265358979323846 * u1;
    g->cached_normal = r * sin(theta);
    g->has_cached_normal = 1;
    return r * cos(theta);
}

void sd_rng_seed_philox(sd_rng *g, uint64_t seed) {
    memset(g, 0, sizeof *g);
    g->kind = SD_RNG_CUDA;
    g->philox_seed = seed;
    g->philox_offset = 0;
}

void sd_rng_seed_kind(sd_rng *g, sd_rng_kind kind, uint64_t seed) {
    if (kind == SD_RNG_CUDA) sd_rng_seed_philox(g, seed);
    else sd_rng_seed(g, seed);
}

int sd_rng_kind_parse(const char *name, sd_rng_kind *out) {
    if (!strcmp(name, "cpu")) *out = SD_RNG_CPU;
    else if (!strcmp(name, "cuda")) *out = SD_RNG_CUDA;
    else return -1;
    return 0;
}

const char *sd_rng_kind_name(sd_rng_kind kind) { return kind == SD_RNG_CUDA ? "cuda" : "cpu"; }

/* Philox4x32-10 of counter c with key (k0, k1); c is replaced by the result. */
static void philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1) {
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0, hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
        if (r < 9) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
    }
}

/*
 * One randn call of the Philox stream: element i from counter (offset, 0, i, 0), Box-Muller on the
 * first two output words in double precision (A1111's numpy promotes uint32 x float32 to float64):
 * u = x*A + A/2, v = y*B + B/2 with A = (float)2.3283064e-10 and B = (float)(2.3283064e-10 * 6.2831855)
 * (the product in double), both widened; z = (float)(sqrt(-2 ln u) sin v).
 */
static void philox_randn(sd_rng *g, float *out, size_t n) {
    const double A = (double)2.3283064e-10f;
    const double B = (double)(float)(2.3283064e-10 * 6.2831855);
    uint32_t k0 = (uint32_t)(g->philox_seed & 0xffffffffu), k1 = (uint32_t)(g->philox_seed >> 32);
    uint32_t off = (uint32_t)g->philox_offset;
    for (size_t i = 0; i < n; i++) {
        uint32_t c[4] = {off, 0, (uint32_t)i, 0};
        philox4x32_10(c, k0, k1);
        double u = (double)c[0] * A + A / 2, v = (double)c[1] * B + B / 2;
        out[i] = (float)(sqrt(-2.0 * log(u)) * sin(v));
    }
    g->philox_offset++;
}

void sd_rng_randn(sd_rng *g, float *out, size_t n) {
    if (g->kind == SD_RNG_CUDA) {
        philox_randn(g, out, n);
        return;
    }
    if (n < 16) {
        for (size_t i = 0; i < n; i++) out[i] = (float)normal_f64(g);
        return;
    }
    for (size_t i = 0; i < n; i++) out[i] = uniform_f32(g);
    for (size_t i = 0; i + 16 <= n; i += 16) box_muller16(out + i);
    if (n % 16) {
        float *tail = out + n - 16;
        for (int i = 0; i < 16; i++) tail[i] = uniform_f32(g);
        box_muller16(tail);
    }
}
