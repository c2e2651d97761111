/*
 * sampler_step_multistep.c - the multistep solvers in log-SNR time:
 * DPM-Solver++ 2M (DPMSolverMultistepScheduler, midpoint, final sigma 0) and
 * UniPC (UniPCMultistepScheduler, bh2, predict_x0, corrector on every step).
 *
 * Both convert the model output into a data prediction x0 at the current sigma,
 * keep the last two of them (hist[0] older, hist[1] newer) and step with
 * lambda = log(alpha_t) - log(sigma_t). Scalars are float32 like diffusers' 0-d
 * tensors.
 */
#include <math.h>
#include <string.h>

#include "sampler_internal.h"

/* lambda(sigma) = log(alpha_t) - log(sigma_t), with its alpha_t and sigma_t. */
static float lambda_of(float sigma, float *alpha_t, float *sigma_t) {
    sampler_sigma_to_alpha_sigma(sigma, alpha_t, sigma_t);
    return logf(*alpha_t) - logf(*sigma_t);
}

/* convert_model_output: x0 prediction from model output m at sigmas[i], into out. */
static void convert_to_x0(const struct sampler_state *s, int i, const float *m, const float *x, float *out) {
    float alpha_t, sigma_t;
    sampler_sigma_to_alpha_sigma(s->sigmas[i], &alpha_t, &sigma_t);
    for (size_t k = 0; k < s->n; k++) {
        if (s->cfg.prediction_type == SCHED_PRED_EPSILON) {
            float p = sigma_t * m[k];
            float d = x[k] - p;
            out[k] = d / alpha_t;
        } else if (s->cfg.prediction_type == SCHED_PRED_V) {
            float p = alpha_t * x[k];
            float q = sigma_t * m[k];
            out[k] = p - q;
        } else {
            out[k] = m[k];
        }
    }
}

/* Shifts the two-entry history and returns the slot for the newest output. */
static float *push_output(struct sampler_state *s) {
    float *older = s->hist[0];
    s->hist[0] = s->hist[1];
    s->hist[1] = older;
    if (s->n_hist < 2) s->n_hist++;
    return s->hist[1];
}

int sampler_step_dpmpp_2m(struct sampler_state *s, int i, const float *m, float *x, sd_error *err) {
    (void)err;
    size_t n = s->n;
    float *m0 = push_output(s);
    convert_to_x0(s, i, m, x, m0);
    /* the last step is always first order (final_sigmas_type "zero") */
    int first_order = s->lower_order_nums < 1 || i == s->n_evals - 1;
    float alpha_t, sigma_t, alpha_s0, sigma_s0;
    float lambda_t = lambda_of(s->sigmas[i + 1], &alpha_t, &sigma_t);
    float lambda_s0 = lambda_of(s->sigmas[i], &alpha_s0, &sigma_s0);
    float h = lambda_t - lambda_s0;
    float ratio = sigma_t / sigma_s0;
    float em1 = expf(-h) - 1.0f;
    float c0 = alpha_t * em1;
    if (first_order) {
        for (size_t k = 0; k < n; k++) {
            float p = ratio * x[k];
            float q = c0 * m0[k];
            x[k] = p - q;
        }
    } else {
        const float *m1 = s->hist[0];
        float alpha_s1, sigma_s1;
        float lambda_s1 = lambda_of(s->sigmas[i - 1], &alpha_s1, &sigma_s1);
        float h0 = lambda_s0 - lambda_s1;
        float r0 = h0 / h;
        float inv_r0 = 1.0f / r0;
        float c1 = 0.5f * c0;
        for (size_t k = 0; k < n; k++) {
            float diff = m0[k] - m1[k];
            float d1 = inv_r0 * diff;
            float p = ratio * x[k];
            float q = c0 * m0[k];
            float u = c1 * d1;
            float v = p - q;
            x[k] = v - u;
        }
    }
    if (s->lower_order_nums < 2) s->lower_order_nums++;
    return 0;
}

/* The b vector of UniPC's bh2 update for `order` (1 or 2) at step size hh = -h. */
static void unipc_b(float hh, int order, float *b, float *h_phi_1, float *B_h) {
    *h_phi_1 = expm1f(hh);
    *B_h = expm1f(hh);
    float h_phi_k = *h_phi_1 / hh - 1.0f;
    int factorial = 1;
    for (int k = 1; k <= order; k++) {
        float num = h_phi_k * (float)factorial;
        b[k - 1] = num / *B_h;
        factorial *= k + 1;
        h_phi_k = h_phi_k / hh - 1.0f / (float)factorial;
    }
}

/*
 * UniC corrector: refines this step's start sample from the previous start sample
 * (saved), the previous data prediction (hist[1] before the push) and the new one
 * (conv). `order` is the predictor order used on the previous step.
 */
static void unipc_correct(struct sampler_state *s, int i, const float *conv, float *x, int order) {
    size_t n = s->n;
    const float *m0 = s->hist[1];
    float alpha_t, sigma_t, alpha_s0, sigma_s0;
    float lambda_t = lambda_of(s->sigmas[i], &alpha_t, &sigma_t);
    float lambda_s0 = lambda_of(s->sigmas[i - 1], &alpha_s0, &sigma_s0);
    float h = lambda_t - lambda_s0;
    float hh = -h;
    float b[2], h_phi_1, B_h;
    unipc_b(hh, order, b, &h_phi_1, &B_h);
    float rk = 0.0f, rho0 = 0.0f, rho_last = 0.5f;
    if (order == 2) {
        float alpha_si, sigma_si;
        float lambda_si = lambda_of(s->sigmas[i - 2], &alpha_si, &sigma_si);
        rk = (lambda_si - lambda_s0) / h;
        /* solve [[1, 1], [rk, 1]] rho = b (torch.linalg.solve in float32) */
        double det = 1.0 - (double)rk;
        rho0 = (float)(((double)b[0] - (double)b[1]) / det);
        rho_last = (float)(((double)b[1] - (double)rk * b[0]) / det);
    }
    float ratio = sigma_t / sigma_s0;
    float c_m0 = alpha_t * h_phi_1;
    float c_res = alpha_t * B_h;
    const float *m1 = s->hist[0];
    for (size_t k = 0; k < n; k++) {
        float p = ratio * s->saved[k];
        float q = c_m0 * m0[k];
        float base = p - q;
        float d1t = conv[k] - m0[k];
        float res = rho_last * d1t;
        if (order == 2) {
            float d1 = m1[k] - m0[k];
            d1 = d1 / rk;
            float corr = rho0 * d1;
            res = corr + res;
        }
        float u = c_res * res;
        x[k] = base - u;
    }
}

/* UniP predictor of order 1 or 2 from x at sigmas[i] to sigmas[i + 1]. */
static void unipc_predict(struct sampler_state *s, int i, float *x, int order) {
    size_t n = s->n;
    const float *m0 = s->hist[1];
    float alpha_t, sigma_t, alpha_s0, sigma_s0;
    float lambda_t = lambda_of(s->sigmas[i + 1], &alpha_t, &sigma_t);
    float lambda_s0 = lambda_of(s->sigmas[i], &alpha_s0, &sigma_s0);
    float h = lambda_t - lambda_s0;
    float hh = -h;
    float b[2], h_phi_1, B_h;
    unipc_b(hh, order, b, &h_phi_1, &B_h);
    float ratio = sigma_t / sigma_s0;
    float c_m0 = alpha_t * h_phi_1;
    float c_res = alpha_t * B_h;
    float rk = 1.0f;
    if (order == 2) {
        float alpha_si, sigma_si;
        float lambda_si = lambda_of(s->sigmas[i - 1], &alpha_si, &sigma_si);
        rk = (lambda_si - lambda_s0) / h;
    }
    const float *m1 = s->hist[0];
    for (size_t k = 0; k < n; k++) {
        float p = ratio * x[k];
        float q = c_m0 * m0[k];
        float base = p - q;
        if (order == 2) {
            float d1 = m1[k] - m0[k];
            d1 = d1 / rk;
            float pred = 0.5f * d1; /* rhos_p = [0.5] */
            float u = c_res * pred;
            x[k] = base - u;
        } else {
            x[k] = base;
        }
    }
}

int sampler_step_unipc(struct sampler_state *s, int i, const float *m, float *x, sd_error *err) {
    (void)err;
    size_t n = s->n;
    float *conv = s->aux;
    convert_to_x0(s, i, m, x, conv);
    if (i > 0 && s->has_saved) unipc_correct(s, i, conv, x, s->this_order);
    /* model_outputs = [older, newest]: the converted output enters the history */
    float *slot = push_output(s);
    memcpy(slot, conv, n * sizeof *conv);
    int order = 2;
    if (s->n_evals - i < order) order = s->n_evals - i; /* lower_order_final */
    if (s->lower_order_nums + 1 < order) order = s->lower_order_nums + 1;
    s->this_order = order;
    memcpy(s->saved, x, n * sizeof *x); /* last_sample */
    s->has_saved = 1;
    unipc_predict(s, i, x, order);
    if (s->lower_order_nums < 2) s->lower_order_nums++;
    return 0;
}
