/* ops_norm.c - GroupNorm and LayerNorm (statistics summed in double). */
#include "ops.h"

#include <math.h>

#include "ops_prof.h"
#include "ops_vmath.h"

/* Mean and 1/sqrt(var + eps) of n floats (population variance). */
static void moments(const float *x, size_t n, float eps, double *mean, double *rstd) {
    double s = 0, ss = 0;
#pragma omp simd reduction(+ : s, ss)
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        s += v;
        ss += v * v;
    }
    double m = s / (double)n, var = ss / (double)n - m * m;
    if (var < 0) var = 0;
    *mean = m;
    *rstd = 1.0 / sqrt(var + (double)eps);
}

/* gamma and beta as float32 (NULL tensor: 1 and 0), C each, in ctx->scratch. */
static int norm_params(const sd_tensor *gamma, const sd_tensor *beta, int C, const float **g, const float **b,
                       ops_ctx *ctx, sd_error *err) {
    *g = *b = NULL;
    if ((gamma && sd_tensor_numel(gamma) != C) || (beta && sd_tensor_numel(beta) != C))
        return sd_err(err, SD_EINTERNAL, "norm: parameter '%s' does not hold %d values",
                      gamma && sd_tensor_numel(gamma) != C ? gamma->name : beta->name, C);
    if (gamma && !(*g = ops_weight_f32(gamma, ctx, err))) return err ? err->code : SD_ENOMEM;
    if (beta && !(*b = ops_weight_f32(beta, ctx, err))) return err ? err->code : SD_ENOMEM;
    return 0;
}

static int groupnorm_affine(float *scale, float *shift, const float *x, int B, int C, int HW, int groups, float eps,
                            const sd_tensor *gamma, const sd_tensor *beta, ops_ctx *ctx, sd_error *err) {
    if (groups <= 0 || C % groups)
        return sd_err(err, SD_EINTERNAL, "groupnorm: %d groups do not divide %d channels", groups, C);
    ops_mark mark = ops_arena_mark(&ctx->scratch);
    const float *g, *bt;
    int rc = norm_params(gamma, beta, C, &g, &bt, ctx, err);
    if (rc < 0) {
        ops_arena_release(&ctx->scratch, mark);
        return rc;
    }
    int cpg = C / groups;
#pragma omp parallel for schedule(dynamic, 1) num_threads(ops_get_threads())
    for (int i = 0; i < B * groups; i++) {
        int b = i / groups, grp = i % groups;
        double mean, rstd;
        moments(x + ((size_t)b * C + (size_t)grp * cpg) * HW, (size_t)cpg * HW, eps, &mean, &rstd);
        for (int c = grp * cpg; c < (grp + 1) * cpg; c++) {
            float sc = (float)rstd * (g ? g[c] : 1.0f);
            scale[(size_t)b * C + c] = sc;
            shift[(size_t)b * C + c] = (bt ? bt[c] : 0.0f) - (float)mean * sc;
        }
    }
    ops_arena_release(&ctx->scratch, mark);
    return 0;
}

int ops_groupnorm_affine(float *scale, float *shift, const float *x, int B, int C, int HW, int groups, float eps,
                         const sd_tensor *gamma, const sd_tensor *beta, ops_ctx *ctx, sd_error *err) {
    double t0 = prof_begin();
    int rc = groupnorm_affine(scale, shift, x, B, C, HW, groups, eps, gamma, beta, ctx, err);
    prof_end(PROF_GROUPNORM, t0, 0);
    return rc;
}

int ops_groupnorm(float *out, const float *x, int B, int C, int HW, int groups, float eps, const sd_tensor *gamma,
                  const sd_tensor *beta, int silu, ops_ctx *ctx, sd_error *err) {
    double t0 = prof_begin();
    ops_mark mark = ops_arena_mark(&ctx->scratch);
    float *scale = ops_arena_floats(&ctx->scratch, (size_t)2 * B * C, err);
    if (!scale) return err ? err->code : SD_ENOMEM;
    float *shift = scale + (size_t)B * C;
    int rc = groupnorm_affine(scale, shift, x, B, C, HW, groups, eps, gamma, beta, ctx, err);
    if (rc == 0) {
#pragma omp parallel for schedule(static) num_threads(ops_get_threads())
        for (int r = 0; r < B * C; r++) {
            const float *xr = x + (size_t)r * HW;
            float *o = out + (size_t)r * HW, sc = scale[r], sh = shift[r];
            if (silu) {
                vm_silu_span(o, xr, (size_t)HW, 1, sc, sh);
            } else {
#pragma omp simd
                for (int i = 0; i < HW; i++) o[i] = xr[i] * sc + sh;
            }
        }
    }
    ops_arena_release(&ctx->scratch, mark);
    prof_end(PROF_GROUPNORM, t0, 0);
    return rc;
}

int ops_layernorm(float *out, const float *x, int M, int C, float eps, const sd_tensor *gamma,
                  const sd_tensor *beta, ops_ctx *ctx, sd_error *err) {
    double t0 = prof_begin();
    ops_mark mark = ops_arena_mark(&ctx->scratch);
    const float *g, *bt;
    int rc = norm_params(gamma, beta, C, &g, &bt, ctx, err);
    if (rc == 0) {
#pragma omp parallel for schedule(static) num_threads(ops_get_threads())
        for (int r = 0; r < M; r++) {
            const float *xr = x + (size_t)r * C;
            float *o = out + (size_t)r * C;
            double mean, rstd;
            moments(xr, (size_t)C, eps, &mean, &rstd);
            float m = (float)mean, rs = (float)rstd;
#pragma omp simd
            for (int i = 0; i < C; i++) {
                float v = (xr[i] - m) * rs;
                o[i] = v * (g ? g[i] : 1.0f) + (bt ? bt[i] : 0.0f);
            }
        }
    }
    ops_arena_release(&ctx->scratch, mark);
    prof_end(PROF_LAYERNORM, t0, 0);
    return rc;
}
