#include "dtype.h"

#include <math.h>
#include <string.h>

#if defined(__AVX512F__) || defined(__F16C__)
#include <immintrin.h>
#elif defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
/*
 * Builds for an x86-64 without F16C (`make PORTABLE=1`: x86-64-v2) convert 8 halves at a time with
 * F16C all the same where the CPU has it (every x86-64 CPU since 2012-13; asked at run time): the scalar
 * loop was 3x slower at widening a U-Net step's fp16 weights (0.22 against 0.07 s at 256x256 on the
 * Zen 1 VM). vcvtph2ps is exact, so the floats are those of native builds.
 */
#define F16C_AT_RUNTIME 1
__attribute__((target("avx,f16c"))) static size_t f16_to_f32_f16c(float *dst, const unsigned char *src, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    return i;
}

/* AVX usable (the OS saves its registers: __builtin_cpu_supports checks) and F16C (CPUID 1, ECX; clang's
 * __builtin_cpu_supports does not know "f16c"). Asked once before main: CPUID traps to a VM's hypervisor,
 * and every GEMM tile widens its weights through here. */
static int have_f16c;
__attribute__((constructor)) static void cpu_probe_f16c(void) {
    unsigned a, b, c, d;
    have_f16c = __builtin_cpu_supports("avx") && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#endif

static const struct {
    const char *name;
    size_t size;
} dtype_info[SD_DTYPE_COUNT] = {
    [SD_F32] = {"F32", 4}, [SD_F16] = {"F16", 2}, [SD_BF16] = {"BF16", 2},
    [SD_F64] = {"F64", 8}, [SD_I64] = {"I64", 8}, [SD_I32] = {"I32", 4},
    [SD_I16] = {"I16", 2}, [SD_I8] = {"I8", 1},   [SD_U8] = {"U8", 1},
    [SD_BOOL] = {"BOOL", 1},
};

size_t sd_dtype_size(sd_dtype t) { return (unsigned)t < SD_DTYPE_COUNT ? dtype_info[t].size : 0; }

const char *sd_dtype_name(sd_dtype t) {
    return (unsigned)t < SD_DTYPE_COUNT ? dtype_info[t].name : "?";
}

int sd_dtype_parse(const char *s, sd_dtype *out) {
    for (int i = 0; i < SD_DTYPE_COUNT; i++) {
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (sd_dtype)i;
            return 0;
        }
    }
    return -1;
}

int sd_dtype_is_float(sd_dtype t) {
    return t == SD_F32 || t == SD_F16 || t == SD_BF16 || t == SD_F64;
}

float sd_dtype_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while (!(mant & 0x400));
            mant &= 0x3ff;
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t sd_dtype_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffff;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (absx < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        float a;
        memcpy(&a, &absx, 4);
        /* scale so the subnormal step 2^-24 becomes 1, then round to nearest even */
        float r = nearbyintf(a * 16777216.0f);
        return (uint16_t)(sign | (uint32_t)r);
    }
    uint32_t mant = absx & 0x7fffff;
    uint32_t exp = (absx >> 23) - 127 + 15;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++; /* carries into exponent correctly */
    return (uint16_t)(sign | h);
}

float sd_dtype_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t sd_dtype_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

static void f16_to_f32_n(float *dst, const unsigned char *src, size_t n) {
    size_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(src + 2 * i));
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
    }
#elif defined(__F16C__)
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
#elif defined(F16C_AT_RUNTIME)
    if (have_f16c) i = f16_to_f32_f16c(dst, src, n);
#endif
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        dst[i] = sd_dtype_f16_to_f32(h);
    }
}

/* bf16 is the top half of a float32: a shift the compiler vectorizes. */
static void bf16_to_f32_n(float *dst, const unsigned char *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        uint32_t bits = (uint32_t)h << 16;
        memcpy(dst + i, &bits, 4);
    }
}

void sd_dtype_convert_to_f32(float *dst, const void *srcv, sd_dtype t, size_t n) {
    const unsigned char *src = srcv;
    switch (t) {
    case SD_F32: memmove(dst, src, n * 4); return;
    case SD_F16: f16_to_f32_n(dst, src, n); return;
    case SD_BF16: bf16_to_f32_n(dst, src, n); return;
    default: break;
    }
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = src + i * sd_dtype_size(t);
        switch (t) {
        case SD_BF16: { uint16_t v; memcpy(&v, p, 2); dst[i] = sd_dtype_bf16_to_f32(v); break; }
        case SD_F64: { double v; memcpy(&v, p, 8); dst[i] = (float)v; break; }
        case SD_I64: { int64_t v; memcpy(&v, p, 8); dst[i] = (float)v; break; }
        case SD_I32: { int32_t v; memcpy(&v, p, 4); dst[i] = (float)v; break; }
        case SD_I16: { int16_t v; memcpy(&v, p, 2); dst[i] = (float)v; break; }
        case SD_I8: dst[i] = (float)(int8_t)*p; break;
        case SD_U8:
        case SD_BOOL: dst[i] = (float)*p; break;
        default: dst[i] = 0; break;
        }
    }
}

void sd_dtype_convert_to_f64(double *dst, const void *srcv, sd_dtype t, size_t n) {
    const unsigned char *src = srcv;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = src + i * sd_dtype_size(t);
        switch (t) {
        case SD_F64: memcpy(&dst[i], p, 8); break;
        case SD_I64: { int64_t v; memcpy(&v, p, 8); dst[i] = (double)v; break; }
        default: { float f; sd_dtype_convert_to_f32(&f, p, t, 1); dst[i] = f; break; }
        }
    }
}
