/*
 * sampler_step_alpha.c - the steps that work on alphas_cumprod at integer timesteps:
 * DDIM (DDIMScheduler.step), DDPM (DDPMScheduler.step) and PNDM's PLMS (PNDMScheduler.step_plms).
 *
 * Scalars are 0-d float32 tensors in diffusers, so they are float here, computed
 * in the same order; each element update is a sequence of float32 operations.
 */
#include <math.h>
#include <string.h>

#include "sampler_internal.h"

/* alphas_cumprod at t, or the "final" alpha for t < 0 (set_alpha_to_one). */
static float alpha_at(const struct sampler_state *s, int t) {
    return t >= 0 ? s->alphas_cumprod[t] : s->final_alpha_cumprod;
}

int sampler_step_ddim(struct sampler_state *s, int i, const float *m, float *x, sd_rng *gen, sd_error *err) {
    size_t n = s->n;
    int t = (int)s->timesteps[i];
    int prev_t = t - s->n_train / s->steps;
    if (t < 0 || t >= s->n_train) return sd_err(err, SD_EINTERNAL, "sampler ddim: timestep %d out of range", t);
    float a_t = alpha_at(s, t), a_prev = alpha_at(s, prev_t);
    float b_t = 1.0f - a_t;
    float b_prev = 1.0f - a_prev;
    float sa = sqrtf(a_t), sb = sqrtf(b_t);
    float variance = (b_prev / b_t) * (1.0f - a_t / a_prev);
    float std_dev = s->eta * sqrtf(variance);
    float dir_coef = sqrtf((1.0f - a_prev) - std_dev * std_dev);
    float sa_prev = sqrtf(a_prev);
    const float clip = 1.0f; /* clip_sample_range */
    int pred = s->cfg.prediction_type;
    for (size_t k = 0; k < n; k++) {
        float x0, eps;
        if (pred == SCHED_PRED_EPSILON) {
            float p = sb * m[k];
            x0 = (x[k] - p) / sa;
            eps = m[k];
        } else if (pred == SCHED_PRED_V) {
            float p = sa * x[k];
            float q = sb * m[k];
            x0 = p - q;
            float r = sa * m[k];
            float u = sb * x[k];
            eps = r + u;
        } else {
            x0 = m[k];
            float p = sa * x0;
            eps = (x[k] - p) / sb;
        }
        if (s->cfg.clip_sample) x0 = x0 < -clip ? -clip : (x0 > clip ? clip : x0);
        float dir = dir_coef * eps;
        float p = sa_prev * x0;
        x[k] = p + dir;
    }
    if (s->eta > 0) {
        /* variance noise: randn_tensor(model_output.shape, generator) after the update */
        sd_rng_randn(gen, s->noise, n);
        for (size_t k = 0; k < n; k++) {
            float v = std_dev * s->noise[k];
            x[k] = x[k] + v;
        }
    }
    return 0;
}

/*
 * DDPMScheduler.step (fixed_small variance; ext README 2.2): x0 from the model output (clipped to
 * [-1, 1] with clip_sample), the posterior mean c0 x0 + ct x with beta_cur = 1 - a_t / a_prev (steps
 * skip timesteps), then for t > 0 one draw from gen: x += sqrt(max(b_prev / b_t * beta_cur, 1e-20)) noise.
 */
int sampler_step_ddpm(struct sampler_state *s, int i, const float *m, float *x, sd_rng *gen, sd_error *err) {
    size_t n = s->n;
    int t = (int)s->timesteps[i];
    int prev_t = t - s->n_train / s->steps;
    if (t < 0 || t >= s->n_train) return sd_err(err, SD_EINTERNAL, "sampler ddpm: timestep %d out of range", t);
    float a_t = s->alphas_cumprod[t], a_prev = prev_t >= 0 ? s->alphas_cumprod[prev_t] : 1.0f;
    float b_t = 1.0f - a_t;
    float b_prev = 1.0f - a_prev;
    float cur_alpha = a_t / a_prev;
    float cur_beta = 1.0f - cur_alpha;
    float sa = sqrtf(a_t), sb = sqrtf(b_t);
    float c0 = sqrtf(a_prev) * cur_beta;
    c0 = c0 / b_t;
    float ct = sqrtf(cur_alpha) * b_prev;
    ct = ct / b_t;
    const float clip = 1.0f; /* clip_sample_range */
    int pred = s->cfg.prediction_type;
    for (size_t k = 0; k < n; k++) {
        float x0;
        if (pred == SCHED_PRED_EPSILON) {
            float p = sb * m[k];
            x0 = (x[k] - p) / sa;
        } else if (pred == SCHED_PRED_V) {
            float p = sa * x[k];
            float q = sb * m[k];
            x0 = p - q;
        } else {
            x0 = m[k];
        }
        if (s->cfg.clip_sample) x0 = x0 < -clip ? -clip : (x0 > clip ? clip : x0);
        float p = c0 * x0;
        float q = ct * x[k];
        x[k] = p + q;
    }
    if (t > 0) {
        /* _get_variance: (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev), clamped at 1e-20 */
        float var = b_prev / b_t;
        var = var * cur_beta;
        if (var < 1e-20f) var = 1e-20f;
        float std = sqrtf(var);
        sd_rng_randn(gen, s->noise, n);
        for (size_t k = 0; k < n; k++) {
            float v = std * s->noise[k];
            x[k] = x[k] + v;
        }
    }
    return 0;
}

/* PNDMScheduler._get_prev_sample: x_{prev_t} from x_t and the combined epsilon e. */
static int pndm_prev_sample(const struct sampler_state *s, int t, int prev_t, const float *sample, const float *e,
                            float *out, sd_error *err) {
    if (t < 0 || t >= s->n_train || prev_t >= s->n_train)
        return sd_err(err, SD_EINTERNAL, "sampler pndm: timestep %d -> %d out of range", t, prev_t);
    float a_t = alpha_at(s, t), a_prev = alpha_at(s, prev_t);
    float b_t = 1.0f - a_t;
    float b_prev = 1.0f - a_prev;
    float sa = sqrtf(a_t), sb = sqrtf(b_t);
    float sample_coeff = sqrtf(a_prev / a_t);
    float ab = a_t * b_t;
    float aba = ab * a_prev;
    float d1 = a_t * sqrtf(b_prev);
    float denom = d1 + sqrtf(aba);
    float diff = a_prev - a_t;
    for (size_t k = 0; k < s->n; k++) {
        float eps = e[k];
        if (s->cfg.prediction_type == SCHED_PRED_V) {
            float p = sa * eps;
            float q = sb * sample[k];
            eps = p + q;
        }
        float p = sample_coeff * sample[k];
        float q = diff * eps;
        q = q / denom;
        out[k] = p - q;
    }
    return 0;
}

/*
 * step_plms: evaluation 0 stores e0 and steps with it; evaluation 1 (the repeated
 * timestep) restarts from evaluation 0's sample with (e1 + e0) / 2 and does not store
 * e1; later ones use the Adams-Bashforth combinations of the last 2, 3 or 4 stored e.
 */
int sampler_step_pndm(struct sampler_state *s, int i, const float *m, float *x, sd_error *err) {
    size_t n = s->n;
    int ratio = s->n_train / s->steps;
    int t = (int)s->timesteps[i];
    int prev_t = t - ratio;
    if (s->counter != 1) {
        if (s->n_hist == SAMPLER_MAX_HIST) { /* ets = ets[-3:] + [m] */
            float *oldest = s->hist[0];
            memmove(s->hist, s->hist + 1, (SAMPLER_MAX_HIST - 1) * sizeof s->hist[0]);
            s->hist[SAMPLER_MAX_HIST - 1] = oldest;
            s->n_hist--;
        }
        memcpy(s->hist[s->n_hist++], m, n * sizeof *m);
    } else {
        prev_t = t;
        t = t + ratio;
    }
    const float *e1 = s->hist[s->n_hist - 1];
    const float *e2 = s->n_hist >= 2 ? s->hist[s->n_hist - 2] : NULL;
    const float *e3 = s->n_hist >= 3 ? s->hist[s->n_hist - 3] : NULL;
    const float *e4 = s->n_hist >= 4 ? s->hist[s->n_hist - 4] : NULL;
    const float *sample = x;
    float *comb = s->aux; /* [n] the combined epsilon */
    if (s->n_hist == 1 && s->counter == 0) {
        memcpy(s->saved, x, n * sizeof *x); /* cur_sample */
        memcpy(comb, m, n * sizeof *m);
    } else if (s->n_hist == 1 && s->counter == 1) {
        for (size_t k = 0; k < n; k++) {
            float a = m[k] + e1[k];
            comb[k] = a / 2.0f;
        }
        sample = s->saved;
    } else {
        const float w24 = (float)(1.0 / 24.0);
        for (size_t k = 0; k < n; k++) {
            float c;
            if (s->n_hist == 2) {
                float a = 3.0f * e1[k];
                a = a - e2[k];
                c = a / 2.0f;
            } else if (s->n_hist == 3) {
                float a = 23.0f * e1[k];
                float b = 16.0f * e2[k];
                a = a - b;
                float d = 5.0f * e3[k];
                a = a + d;
                c = a / 12.0f;
            } else {
                float a = 55.0f * e1[k];
                float b = 59.0f * e2[k];
                a = a - b;
                float d = 37.0f * e3[k];
                a = a + d;
                float f = 9.0f * e4[k];
                a = a - f;
                c = w24 * a;
            }
            comb[k] = c;
        }
    }
    int rc = pndm_prev_sample(s, t, prev_t, sample, comb, x, err);
    if (rc < 0) return rc;
    s->counter++;
    return 0;
}
