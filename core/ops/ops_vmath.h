/*
 * ops_vmath.h - exp, sigmoid and erf without libm calls, for the kernels in
 * core/ops_*.c only. GCC 12 still leaves loops of them scalar (their selects
 * stay branches), so there are 8-lane forms (AVX2 + FMA) that repeat the
 * scalar steps, the same bits in every lane, and a 16-lane e^x (AVX-512)
 * that test_ops finds equal to the scalar one.
 *
 * Accuracy: vm_expf within 2 ulp of expf over its range and exactly 0 below
 * -87.3 (so exp(-inf) = 0 for masked scores); vm_erff within 1.5e-7 absolute
 * of erf. Both are checked against libm in tests/test_ops.c.
 */
#ifndef SD_OPS_VMATH_H
#define SD_OPS_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* a*b+c, fused where the CPU has FMA (a library call emulating it would be slow). */
static inline float vm_fma(float a, float b, float c) {
#if defined(__FMA__)
    return fmaf(a, b, c);
#else
    return a * b + c;
#endif
}

static inline float vm_bits_to_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t vm_float_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/*
 * vm_expf's constants, which its vector forms share: the clamp (below VM_EXP_LO the result is 0), log2(e),
 * ln 2 in two parts (the first exact in few bits, so n * VM_EXP_LN2_HI is exact), and the polynomial's
 * coefficients from the highest degree down.
 */
#define VM_EXP_HI 88.0f
#define VM_EXP_LO (-87.33654f)
#define VM_EXP_LOG2E 1.44269504088896341f
#define VM_EXP_LN2_HI 0.693359375f
#define VM_EXP_LN2_LO (-2.12194440e-4f)
static const float vm_exp_poly[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                     4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

/*
 * e^x: x = n*ln2 + r with |r| <= ln2/2, e^r by a degree-7 minimax polynomial
 * (Cephes coefficients) in fused multiply-adds: with -std=c11 GCC does not
 * contract a*b+c on its own, and the FMAs halve the work of this hot loop.
 */
static inline float vm_expf(float x) {
    float xc = x > VM_EXP_HI ? VM_EXP_HI : x;
    xc = xc < VM_EXP_LO ? VM_EXP_LO : xc;
    /* adding 1.5 * 2^23 rounds to an integer held in the low mantissa bits */
    float t = vm_fma(xc, VM_EXP_LOG2E, 12582912.0f);
    float n = t - 12582912.0f;
    float r = vm_fma(n, -VM_EXP_LN2_HI, xc);
    r = vm_fma(n, -VM_EXP_LN2_LO, r);
    float p = vm_exp_poly[0];
    for (int i = 1; i < 6; i++) p = vm_fma(p, r, vm_exp_poly[i]);
    p = vm_fma(p, r * r, r) + 1.0f;
    int32_t ni = (int32_t)(vm_float_to_bits(t) & 0x7fffff) - 0x400000;
    float scale = vm_bits_to_float((uint32_t)(ni + 127) << 23);
    float y = p * scale;
    return x < VM_EXP_LO ? 0.0f : y;
}

#if defined(__AVX512F__)
#include <immintrin.h>
/*
 * vm_expf on 16 lanes with AVX-512's own rounding (vrndscaleps) and exponent
 * scaling (vscalefps): the same polynomial and the same results in about 15
 * instructions instead of 25 (the softmax of attention runs on it).
 */
static inline __m512 vm_exp512(__m512 x) {
    const __m512 lo = _mm512_set1_ps(VM_EXP_LO);
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, lo), _mm512_set1_ps(VM_EXP_HI));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(VM_EXP_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-VM_EXP_LN2_HI), xc);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(-VM_EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(vm_exp_poly[0]);
    for (int i = 1; i < 6; i++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(vm_exp_poly[i]));
    p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    __mmask16 keep = _mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ);
    return _mm512_maskz_scalef_ps(keep, p, n);
}
#endif

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
/*
 * vm_expf on 8 lanes, step for step (the same operations in the same order, so the same bits in every
 * lane, NaN and the clamps included: min(HI, x) is `x > HI ? HI : x`). GCC does not vectorize a loop of
 * vm_expf (its selects stay branches): attention's softmax ran scalar, half of the GEMM route's time on a
 * Zen 1 core.
 * vm_exp256_n: x[0..n) in place, step by step across the n vectors. One e^x is a chain of ~20
 * dependent instructions (~65 cycles on Zen 1), more than its scheduler overlaps from the next
 * loop iterations; four interleaved chains took the lanes attention kernel (SD 1.5's 64x64
 * self-attention, one Zen 1 core) from 27.6-28.4 to 30.1-30.8 GFLOP/s.
 */
static inline __attribute__((always_inline)) void vm_exp256_n(__m256 *x, const int n) {
    const __m256 magic = _mm256_set1_ps(12582912.0f); /* 1.5 * 2^23, as in vm_expf */
    __m256 t[4], r[4], p[4], keep[4];
    for (int i = 0; i < n; i++) {
        keep[i] = _mm256_cmp_ps(x[i], _mm256_set1_ps(VM_EXP_LO), _CMP_NLT_UQ); /* not (x < lo) */
        r[i] = _mm256_max_ps(_mm256_set1_ps(VM_EXP_LO), _mm256_min_ps(_mm256_set1_ps(VM_EXP_HI), x[i]));
        t[i] = _mm256_fmadd_ps(r[i], _mm256_set1_ps(VM_EXP_LOG2E), magic);
    }
    for (int i = 0; i < n; i++) {
        __m256 nn = _mm256_sub_ps(t[i], magic);
        r[i] = _mm256_fmadd_ps(nn, _mm256_set1_ps(-VM_EXP_LN2_HI), r[i]);
        r[i] = _mm256_fmadd_ps(nn, _mm256_set1_ps(-VM_EXP_LN2_LO), r[i]);
    }
    for (int i = 0; i < n; i++) p[i] = _mm256_set1_ps(vm_exp_poly[0]);
    for (int k = 1; k < 6; k++)
        for (int i = 0; i < n; i++) p[i] = _mm256_fmadd_ps(p[i], r[i], _mm256_set1_ps(vm_exp_poly[k]));
    for (int i = 0; i < n; i++)
        p[i] = _mm256_add_ps(_mm256_fmadd_ps(p[i], _mm256_mul_ps(r[i], r[i]), r[i]), _mm256_set1_ps(1.0f));
    for (int i = 0; i < n; i++) {
        __m256i ni = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(t[i]), _mm256_set1_epi32(0x7fffff)),
                                      _mm256_set1_epi32(0x400000));
        __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23));
        x[i] = _mm256_and_ps(_mm256_mul_ps(p[i], scale), keep[i]); /* 0 below lo */
    }
}

static inline __m256 vm_exp256(__m256 x) {
    vm_exp256_n(&x, 1);
    return x;
}
#endif

/* 1 / (1 + e^-x) */
static inline float vm_sigmoidf(float x) { return 1.0f / (1.0f + vm_expf(-x)); }

/*
 * erf(x): the Maclaurin series up to z^17 for |x| < 0.75; beyond, 1 - erfc(|x|)
 * with erfc by the Chebyshev fit of Numerical Recipes (6.2); sign restored.
 */
static inline float vm_erff(float x) {
    float z = x < 0 ? -x : x;
    float z2 = z * z, s = 1.0f / 685440.0f;
    s = vm_fma(s, z2, -1.0f / 75600.0f);
    s = vm_fma(s, z2, 1.0f / 9360.0f);
    s = vm_fma(s, z2, -1.0f / 1320.0f);
    s = vm_fma(s, z2, 1.0f / 216.0f);
    s = vm_fma(s, z2, -1.0f / 42.0f);
    s = vm_fma(s, z2, 1.0f / 10.0f);
    s = vm_fma(s, z2, -1.0f / 3.0f);
    s = vm_fma(s, z2, 1.0f);
    float small = 1.12837916709551257f * z * s;
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = vm_fma(p, t, -0.82215223f);
    p = vm_fma(p, t, 1.48851587f);
    p = vm_fma(p, t, -1.13520398f);
    p = vm_fma(p, t, 0.27886807f);
    p = vm_fma(p, t, -0.18628806f);
    p = vm_fma(p, t, 0.09678418f);
    p = vm_fma(p, t, 0.37409196f);
    p = vm_fma(p, t, 1.00002368f);
    p = vm_fma(p, t, -1.26551223f);
    float erfc = t * vm_expf(vm_fma(-z, z, p));
    float r = z < 0.75f ? small : 1.0f - erfc;
    return x < 0 ? -r : r;
}

/* GELU with exact erf, as torch.nn.functional.gelu(approximate="none"). */
static inline float vm_geluf(float x) { return 0.5f * x * (1.0f + vm_erff(x * 0.70710678118654752f)); }

#if defined(__AVX2__) && defined(__FMA__)
/* -x where x < 0, else x: the scalar code's `x < 0 ? -x : x` (so -0 stays -0 and NaN stays NaN). */
static inline __m256 vm_neg_if_negative256(__m256 v, __m256 x) {
    __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    return _mm256_xor_ps(v, _mm256_and_ps(neg, _mm256_set1_ps(-0.0f)));
}

/* vm_erff on 8 lanes, step for step (the same bits). */
static inline __m256 vm_erf256(__m256 x) {
    __m256 z = vm_neg_if_negative256(x, x), z2 = _mm256_mul_ps(z, z);
    static const float series[8] = {-1.0f / 75600.0f, 1.0f / 9360.0f, -1.0f / 1320.0f, 1.0f / 216.0f,
                                    -1.0f / 42.0f,    1.0f / 10.0f,   -1.0f / 3.0f,    1.0f};
    static const float cheb[9] = {-0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f, -0.18628806f,
                                  0.09678418f,  0.37409196f, 1.00002368f,  -1.26551223f};
    __m256 s = _mm256_set1_ps(1.0f / 685440.0f);
    for (int i = 0; i < 8; i++) s = _mm256_fmadd_ps(s, z2, _mm256_set1_ps(series[i]));
    __m256 small = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(1.12837916709551257f), z), s);
    __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f),
                             _mm256_add_ps(_mm256_set1_ps(1.0f), _mm256_mul_ps(_mm256_set1_ps(0.5f), z)));
    __m256 p = _mm256_set1_ps(0.17087277f);
    for (int i = 0; i < 9; i++) p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(cheb[i]));
    __m256 erfc = _mm256_mul_ps(t, vm_exp256(_mm256_fnmadd_ps(z, z, p))); /* -z*z + p, fused, as vm_fma(-z, z, p) */
    __m256 r = _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), erfc), small,
                                _mm256_cmp_ps(z, _mm256_set1_ps(0.75f), _CMP_LT_OQ));
    return vm_neg_if_negative256(r, x);
}

/* vm_sigmoidf on 8 lanes (the same bits). */
static inline __m256 vm_sigmoid256(__m256 x) {
    __m256 e = vm_exp256(_mm256_xor_ps(x, _mm256_set1_ps(-0.0f)));
    return _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* vm_geluf on 8 lanes (the same bits). */
static inline __m256 vm_gelu256(__m256 x) {
    __m256 e = vm_erf256(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)));
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}
#endif

/*
 * o[i] = SiLU(v) for i < n, v = x[i] * sc + sh when affine (a GroupNorm folded into a scale and shift), else
 * x[i]; o may be x. GCC leaves loops of vm_sigmoidf scalar, as those of vm_geluf: AVX2 builds run the vector
 * body (the same bits), which the convolutions' input rows (GroupNorm + SiLU of every ResNet block) spend on.
 */
static inline void vm_silu_span(float *o, const float *x, size_t n, int affine, float sc, float sh) {
    size_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    const __m256 vsc = _mm256_set1_ps(sc), vsh = _mm256_set1_ps(sh);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        if (affine) v = _mm256_add_ps(_mm256_mul_ps(v, vsc), vsh);
        _mm256_storeu_ps(o + i, _mm256_mul_ps(v, vm_sigmoid256(v)));
    }
#endif
    for (; i < n; i++) {
        float v = affine ? x[i] * sc + sh : x[i];
        o[i] = v * vm_sigmoidf(v);
    }
}

#endif
