/*
 * sampler_step_sigma.c - the Karras-style ODE/SDE steps on sigmas:
 * Euler (EulerDiscreteScheduler), Euler ancestral, LMS and Heun.
 *
 * Each works on x in the sigma parametrisation (x = x0 + sigma * eps): it
 * predicts x0 from the model output, forms the derivative d = (x - x0) / sigma
 * and moves to the next sigma. Scalars are float32 like diffusers' 0-d tensors.
 */
#include <math.h>
#include <string.h>

#include "sampler_internal.h"

/* pred_original_sample from the model output m at sigma (epsilon, v or sample). */
static float predict_x0(int pred, float sigma, float v_m, float v_x, float x, float m) {
    if (pred == SCHED_PRED_EPSILON) {
        float p = sigma * m;
        return x - p;
    }
    if (pred == SCHED_PRED_V) { /* m * (-sigma / sqrt(sigma^2 + 1)) + x / (sigma^2 + 1) */
        float p = m * v_m;
        float q = x / v_x;
        return p + q;
    }
    return m;
}

/* The two v-prediction coefficients of predict_x0 for sigma. */
static void v_coeffs(float sigma, float *v_m, float *v_x) {
    float sq = sigma * sigma;
    float d = sq + 1.0f;
    *v_m = -sigma / sqrtf(d);
    *v_x = d;
}

int sampler_step_euler(struct sampler_state *s, int i, const float *m, float *x, sd_rng *gen, sd_error *err) {
    (void)err;
    size_t n = s->n;
    float sigma = s->sigmas[i];
    /* EulerDiscreteScheduler.step draws eps even when s_churn = 0 leaves it unused: the
     * draw still advances the caller's generator, so it is made whenever one is given. */
    if (gen) sd_rng_randn(gen, s->noise, n);
    float sigma_hat = sigma * 1.0f; /* gamma = 0 */
    float v_m, v_x;
    v_coeffs(sigma, &v_m, &v_x);
    float dt = s->sigmas[i + 1] - sigma_hat;
    for (size_t k = 0; k < n; k++) {
        float x0 = predict_x0(s->cfg.prediction_type, sigma_hat, v_m, v_x, x[k], m[k]);
        float d = x[k] - x0;
        d = d / sigma_hat;
        float step = d * dt;
        x[k] = x[k] + step;
    }
    return 0;
}

int sampler_step_euler_a(struct sampler_state *s, int i, const float *m, float *x, sd_rng *gen, sd_error *err) {
    (void)err;
    size_t n = s->n;
    float sigma = s->sigmas[i];
    float from = sigma, to = s->sigmas[i + 1];
    float to2 = to * to, from2 = from * from;
    float gap = from2 - to2;
    float up2 = to2 * gap;
    up2 = up2 / from2;
    float sigma_up = sqrtf(up2);
    float up_sq = sigma_up * sigma_up;
    float sigma_down = sqrtf(to2 - up_sq);
    float dt = sigma_down - sigma;
    float v_m, v_x;
    v_coeffs(sigma, &v_m, &v_x);
    for (size_t k = 0; k < n; k++) {
        float x0 = predict_x0(s->cfg.prediction_type, sigma, v_m, v_x, x[k], m[k]);
        float d = x[k] - x0;
        d = d / sigma;
        float step = d * dt;
        x[k] = x[k] + step;
    }
    sd_rng_randn(gen, s->noise, n);
    for (size_t k = 0; k < n; k++) {
        float q = s->noise[k] * sigma_up;
        x[k] = x[k] + q;
    }
    return 0;
}

/* Integral over [a, b] of the Lagrange basis polynomial of node `j` among sigmas[t - l],
 * l < order (degree <= 3), by 3-point Gauss-Legendre, which is exact for it. diffusers
 * integrates the same polynomial numerically (scipy quad, also exact up to rounding). */
static double lms_coefficient(const float *sigmas, int order, int t, int j) {
    static const double node[3] = {-0.7745966692414833770, 0.0, 0.7745966692414833770};
    static const double weight[3] = {5.0 / 9.0, 8.0 / 9.0, 5.0 / 9.0};
    double a = sigmas[t], b = sigmas[t + 1];
    double mid = 0.5 * (a + b), half = 0.5 * (b - a);
    double sum = 0.0;
    for (int q = 0; q < 3; q++) {
        double tau = mid + half * node[q];
        double prod = 1.0;
        for (int l = 0; l < order; l++) {
            if (l == j) continue;
            prod *= (tau - sigmas[t - l]) / ((double)sigmas[t - j] - sigmas[t - l]);
        }
        sum += weight[q] * prod;
    }
    return half * sum;
}

int sampler_step_lms(struct sampler_state *s, int i, const float *m, float *x, sd_error *err) {
    (void)err;
    size_t n = s->n;
    float sigma = s->sigmas[i];
    float v_m, v_x;
    v_coeffs(sigma, &v_m, &v_x);
    if (s->n_hist == SAMPLER_MAX_HIST) { /* derivatives.pop(0) */
        float *oldest = s->hist[0];
        memmove(s->hist, s->hist + 1, (SAMPLER_MAX_HIST - 1) * sizeof s->hist[0]);
        s->hist[SAMPLER_MAX_HIST - 1] = oldest;
        s->n_hist--;
    }
    float *deriv = s->hist[s->n_hist++];
    for (size_t k = 0; k < n; k++) {
        float x0 = predict_x0(s->cfg.prediction_type, sigma, v_m, v_x, x[k], m[k]);
        float d = x[k] - x0;
        deriv[k] = d / sigma;
    }
    /* order = min(step_index + 1, 4); zip() with the derivatives pairs only those that exist */
    int order = i + 1 < SAMPLER_MAX_HIST ? i + 1 : SAMPLER_MAX_HIST;
    int used = order < s->n_hist ? order : s->n_hist;
    float coeff[SAMPLER_MAX_HIST] = {0};
    for (int j = 0; j < used; j++) coeff[j] = (float)lms_coefficient(s->sigmas, order, i, j);
    for (size_t k = 0; k < n; k++) {
        float acc = coeff[0] * s->hist[s->n_hist - 1][k];
        for (int j = 1; j < used; j++) {
            float p = coeff[j] * s->hist[s->n_hist - 1 - j][k];
            acc = acc + p;
        }
        x[k] = x[k] + acc;
    }
    return 0;
}

/*
 * Heun: evaluations alternate between a first-order (Euler) step from sigma_i to
 * sigma_{i+1}, remembered, and a correction that restarts from the remembered sample
 * with the mean of both derivatives. The last evaluation is a plain Euler step to 0.
 */
int sampler_step_heun(struct sampler_state *s, int i, const float *m, float *x, sd_error *err) {
    (void)err;
    size_t n = s->n;
    int second = s->heun_second;
    float sigma = second ? s->sigmas[i - 1] : s->sigmas[i];
    float sigma_next = second ? s->sigmas[i] : s->sigmas[i + 1];
    float sigma_hat = sigma * 1.0f;
    float sigma_in = second ? sigma_next : sigma_hat;
    float v_m, v_x;
    v_coeffs(sigma_in, &v_m, &v_x);
    const float clip = 1.0f; /* clip_sample_range */
    float *prev_deriv = s->aux;
    if (!second) {
        float dt = sigma_next - sigma_hat;
        for (size_t k = 0; k < n; k++) {
            float x0 = predict_x0(s->cfg.prediction_type, sigma_in, v_m, v_x, x[k], m[k]);
            if (s->cfg.clip_sample) x0 = x0 < -clip ? -clip : (x0 > clip ? clip : x0);
            float d = x[k] - x0;
            d = d / sigma_hat;
            prev_deriv[k] = d;
            s->saved[k] = x[k];
            float step = d * dt;
            x[k] = x[k] + step;
        }
        s->heun_dt = dt;
        s->heun_second = 1;
    } else {
        float dt = s->heun_dt;
        for (size_t k = 0; k < n; k++) {
            float x0 = predict_x0(s->cfg.prediction_type, sigma_in, v_m, v_x, x[k], m[k]);
            if (s->cfg.clip_sample) x0 = x0 < -clip ? -clip : (x0 > clip ? clip : x0);
            float d = x[k] - x0;
            d = d / sigma_next;
            float avg = prev_deriv[k] + d;
            avg = avg / 2.0f;
            float step = avg * dt;
            x[k] = s->saved[k] + step;
        }
        s->heun_second = 0;
    }
    return 0;
}
