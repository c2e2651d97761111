/*
 * sampler.c - creating a sampler, its accessors, and the parts every step shares:
 * scale_model_input, add_noise, img2img strength and the step dispatch.
 * The schedule itself is built in sampler_schedule.c, the steps in sampler_step_*.c.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler_internal.h"

/* Rejects the combinations diffusers 0.27.2 does not offer (see sampler.h). */
static int check_request(sampler_kind kind, const sched_config *cfg, int steps, int karras, float eta,
                         sd_error *err) {
    if ((unsigned)kind >= SD_SAMPLER_COUNT) return sd_err(err, SD_EINPUT, "sampler: unknown sampler kind %d", kind);
    const char *name = sampler_kind_name(kind);
    if (cfg->num_train_timesteps < 2 || cfg->num_train_timesteps > 100000)
        return sd_err(err, SD_EINPUT, "scheduler config: num_train_timesteps %d is out of range (2..100000)",
                      cfg->num_train_timesteps);
    if (!(cfg->beta_start > 0) || !(cfg->beta_end > 0) || !(cfg->beta_start < 1) || !(cfg->beta_end < 1))
        return sd_err(err, SD_EINPUT, "scheduler config: beta_start %g and beta_end %g must lie in (0, 1)",
                      cfg->beta_start, cfg->beta_end);
    if (steps < 1 || steps > cfg->num_train_timesteps)
        return sd_err(err, SD_EINPUT, "sampler %s: %d steps requested; use 1 to %d", name, steps,
                      cfg->num_train_timesteps);
    if (karras && !sampler_kind_has_sigmas(kind))
        return sd_err(err, SD_EINPUT, "sampler %s has no sigmas, so --karras does not apply; use euler, lms, heun, "
                      "dpm++2m or unipc", name);
    if (karras && !sampler_kind_has_karras(kind))
        return sd_err(err, SD_EUNSUPPORTED, "sampler %s has no Karras variant in diffusers 0.27.2; drop --karras",
                      name);
    if (!(eta >= 0) || eta > 1000)
        return sd_err(err, SD_EINPUT, "sampler %s: eta %g must be a number >= 0", name, eta);
    if (eta > 0 && kind != SD_SAMPLER_DDIM)
        return sd_err(err, SD_EINPUT, "sampler %s does not use eta (only ddim does); set eta to 0", name);
    if (kind == SD_SAMPLER_PNDM && !cfg->skip_prk_steps)
        return sd_err(err, SD_EUNSUPPORTED, "sampler pndm: only PLMS with skip_prk_steps=true is supported "
                      "(the scheduler config sets it false)");
    if ((kind == SD_SAMPLER_PNDM || kind == SD_SAMPLER_EULER_A) && cfg->prediction_type == SCHED_PRED_SAMPLE)
        return sd_err(err, SD_EUNSUPPORTED, "sampler %s does not support prediction_type 'sample'", name);
    return 0;
}

int sampler_create(sampler_state **out, sampler_kind kind, const sched_config *cfg, int steps, int karras, float eta,
                   sd_error *err) {
    *out = NULL;
    int rc = check_request(kind, cfg, steps, karras, eta, err);
    if (rc < 0) return rc;
    sampler_state *s = calloc(1, sizeof *s);
    if (!s) return sd_err(err, SD_ENOMEM, "sampler: out of memory");
    s->kind = kind;
    s->cfg = *cfg;
    if (s->cfg.timestep_spacing == SCHED_SPACING_DEFAULT)
        s->cfg.timestep_spacing = (kind == SD_SAMPLER_DDIM || kind == SD_SAMPLER_PNDM || kind == SD_SAMPLER_DDPM)
                                      ? SCHED_SPACING_LEADING
                                                                                       : SCHED_SPACING_LINSPACE;
    s->karras = karras ? 1 : 0;
    s->eta = eta;
    s->steps = steps;
    s->order = kind == SD_SAMPLER_HEUN ? 2 : 1;
    s->n_train = cfg->num_train_timesteps;
    rc = sampler_schedule_build(s, err);
    if (rc < 0) {
        sampler_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void sampler_free(sampler_state *s) {
    if (!s) return;
    free(s->betas);
    free(s->alphas_cumprod);
    free(s->timesteps);
    free(s->sigmas);
    free(s->arena);
    free(s);
}

int sampler_num_evals(const sampler_state *s) { return s->n_evals; }
int sampler_first_eval(const sampler_state *s) { return s->begin; }
float sampler_timestep(const sampler_state *s, int i) { return (i >= 0 && i < s->n_evals) ? (float)s->timesteps[i] : NAN; }
const double *sampler_timesteps(const sampler_state *s) { return s->timesteps; }
int sampler_timesteps_are_integers(const sampler_state *s) { return s->int_timesteps; }
float sampler_init_noise_sigma(const sampler_state *s) { return s->init_noise_sigma; }
int sampler_order(const sampler_state *s) { return s->order; }

const float *sampler_sigmas(const sampler_state *s, int *n) {
    if (n) *n = s->n_sigmas;
    return s->sigmas;
}

const float *sampler_betas(const sampler_state *s, int *n) {
    if (n) *n = s->n_train;
    return s->betas;
}

const float *sampler_alphas_cumprod(const sampler_state *s, int *n) {
    if (n) *n = s->n_train;
    return s->alphas_cumprod;
}

int sampler_draws_noise(const sampler_state *s) {
    return s->kind == SD_SAMPLER_EULER || s->kind == SD_SAMPLER_EULER_A || s->kind == SD_SAMPLER_DDPM ||
           (s->kind == SD_SAMPLER_DDIM && s->eta > 0);
}

static int scales_input(sampler_kind k) {
    return k == SD_SAMPLER_EULER || k == SD_SAMPLER_EULER_A || k == SD_SAMPLER_LMS || k == SD_SAMPLER_HEUN;
}

void sampler_scale_model_input(const sampler_state *s, int i, const float *x, float *out, size_t n) {
    if (!scales_input(s->kind) || i < 0 || i >= s->n_evals) {
        if (out != x) memmove(out, x, n * sizeof *out);
        return;
    }
    float sigma = s->sigmas[i];
    float sq = sigma * sigma;
    float d = sqrtf(sq + 1.0f);
    for (size_t k = 0; k < n; k++) out[k] = x[k] / d;
}

int sampler_set_strength(sampler_state *s, double strength, int *first, sd_error *err) {
    if (!(strength >= 0.0 && strength <= 1.0))
        return sd_err(err, SD_EINPUT, "img2img strength %g must lie in [0, 1]", strength);
    int N = s->steps;
    double prod = (double)N * strength;
    int init = (int)prod; /* Python int(): truncation */
    if (init > N) init = N;
    int t_start = N - init > 0 ? N - init : 0;
    int begin = t_start * s->order;
    if (begin >= s->n_evals)
        return sd_err(err, SD_EINPUT, "img2img strength %g with %d steps leaves no step to run; raise the strength "
                      "or the steps", strength, N);
    if (s->next != s->begin)
        return sd_err(err, SD_EINTERNAL, "sampler: strength set after stepping began");
    s->begin = s->next = begin;
    if (first) *first = begin;
    return 0;
}

void sampler_add_noise(const sampler_state *s, int i, const float *x0, const float *noise, float *out, size_t n) {
    if (i < 0) i = 0;
    if (i >= s->n_evals) i = s->n_evals - 1;
    switch (s->kind) {
    case SD_SAMPLER_DDIM:
    case SD_SAMPLER_DDPM:
    case SD_SAMPLER_PNDM: {
        float a = s->alphas_cumprod[(int)s->timesteps[i]];
        float sa = sqrtf(a);
        float sb = sqrtf(1.0f - a);
        for (size_t k = 0; k < n; k++) {
            float p = sa * x0[k];
            float q = sb * noise[k];
            out[k] = p + q;
        }
        break;
    }
    case SD_SAMPLER_DPMPP_2M:
    case SD_SAMPLER_UNIPC: {
        float alpha, sig;
        sampler_sigma_to_alpha_sigma(s->sigmas[i], &alpha, &sig);
        for (size_t k = 0; k < n; k++) {
            float p = alpha * x0[k];
            float q = sig * noise[k];
            out[k] = p + q;
        }
        break;
    }
    default: {
        float sigma = s->sigmas[i];
        for (size_t k = 0; k < n; k++) {
            float q = noise[k] * sigma;
            out[k] = x0[k] + q;
        }
        break;
    }
    }
}

void sampler_sigma_to_alpha_sigma(float sigma, float *alpha_t, float *sigma_t) {
    float sq = sigma * sigma;
    float r = sqrtf(sq + 1.0f);
    float a = 1.0f / r;
    *alpha_t = a;
    *sigma_t = sigma * a;
}

/* Buffers of [n] floats each kind keeps between steps (allocated at the first step). */
static int buffers_needed(sampler_kind k, int *hist, int *saved, int *aux, int *noise) {
    *hist = *saved = *aux = *noise = 0;
    switch (k) {
    case SD_SAMPLER_DDIM:
    case SD_SAMPLER_DDPM: *noise = 1; break;
    case SD_SAMPLER_PNDM: *hist = 4; *saved = 1; *aux = 1; break;
    case SD_SAMPLER_EULER:
    case SD_SAMPLER_EULER_A: *noise = 1; break;
    case SD_SAMPLER_LMS: *hist = 4; break;
    case SD_SAMPLER_HEUN: *saved = 1; *aux = 1; break;
    case SD_SAMPLER_DPMPP_2M: *hist = 2; break;
    case SD_SAMPLER_UNIPC: *hist = 2; *saved = 1; *aux = 1; break;
    default: break;
    }
    return *hist + *saved + *aux + *noise;
}

static int ensure_buffers(sampler_state *s, size_t n, sd_error *err) {
    if (s->arena) {
        if (n != s->n)
            return sd_err(err, SD_EINPUT, "sampler: latent size changed from %zu to %zu between steps", s->n, n);
        return 0;
    }
    int nh, ns, na, nn;
    int total = buffers_needed(s->kind, &nh, &ns, &na, &nn);
    if (n == 0) return sd_err(err, SD_EINPUT, "sampler: empty latent");
    if (n > ((size_t)-1) / sizeof(float) / (size_t)(total ? total : 1))
        return sd_err(err, SD_ENOMEM, "sampler: latent of %zu floats is too large", n);
    s->arena = calloc((size_t)(total ? total : 1) * n, sizeof(float));
    if (!s->arena) return sd_err(err, SD_ENOMEM, "sampler: out of memory for %d buffers of %zu floats", total, n);
    float *p = s->arena;
    for (int h = 0; h < nh; h++, p += n) s->hist[h] = p;
    if (ns) s->saved = p, p += n;
    if (na) s->aux = p, p += n;
    if (nn) s->noise = p, p += n;
    s->n = n;
    return 0;
}

int sampler_step(sampler_state *s, int i, const float *model_output, float *x, size_t n, sd_rng *gen, sd_error *err) {
    const char *name = sampler_kind_name(s->kind);
    if (i != s->next)
        return sd_err(err, SD_EINTERNAL, "sampler %s: step %d called, expected step %d (steps must run in order)",
                      name, i, s->next);
    if (i >= s->n_evals)
        return sd_err(err, SD_EINTERNAL, "sampler %s: step %d is past the last of %d evaluations", name, i,
                      s->n_evals);
    if (!gen && (s->kind == SD_SAMPLER_EULER_A || s->kind == SD_SAMPLER_DDPM || (s->kind == SD_SAMPLER_DDIM && s->eta > 0)))
        return sd_err(err, SD_EINTERNAL, "sampler %s: this sampler draws noise and needs a generator", name);
    int rc = ensure_buffers(s, n, err);
    if (rc < 0) return rc;
    switch (s->kind) {
    case SD_SAMPLER_DDIM: rc = sampler_step_ddim(s, i, model_output, x, gen, err); break;
    case SD_SAMPLER_PNDM: rc = sampler_step_pndm(s, i, model_output, x, err); break;
    case SD_SAMPLER_DDPM: rc = sampler_step_ddpm(s, i, model_output, x, gen, err); break;
    case SD_SAMPLER_EULER: rc = sampler_step_euler(s, i, model_output, x, gen, err); break;
    case SD_SAMPLER_EULER_A: rc = sampler_step_euler_a(s, i, model_output, x, gen, err); break;
    case SD_SAMPLER_LMS: rc = sampler_step_lms(s, i, model_output, x, err); break;
    case SD_SAMPLER_HEUN: rc = sampler_step_heun(s, i, model_output, x, err); break;
    case SD_SAMPLER_DPMPP_2M: rc = sampler_step_dpmpp_2m(s, i, model_output, x, err); break;
    case SD_SAMPLER_UNIPC: rc = sampler_step_unipc(s, i, model_output, x, err); break;
    default: rc = sd_err(err, SD_EINTERNAL, "sampler: unknown kind %d", s->kind); break;
    }
    if (rc == 0) s->next = i + 1;
    return rc;
}
