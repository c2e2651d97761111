/*
 * sampler_internal.h - the sampler struct, shared by core/sampler*.c only.
 *
 * One struct serves every sampler kind: the schedule (timesteps, sigmas,
 * alphas_cumprod) is filled at creation by sampler_schedule.c exactly as the
 * matching diffusers 0.27.2 class's __init__ + set_timesteps would, and the
 * per-step state lives in the few fields the kind uses (sampler_step_*.c).
 */
#ifndef SD_SAMPLER_INTERNAL_H
#define SD_SAMPLER_INTERNAL_H

#include <stddef.h>

#include "config.h"
#include "rng.h"
#include "sampler.h"

#define SAMPLER_MAX_HIST 4

struct sampler_state {
    sampler_kind kind;
    sched_config cfg;         /* copy; timestep_spacing resolved to the class default */
    int karras;
    float eta;                /* DDIM only */
    int steps;                /* num_inference_steps asked for */
    int order;                /* diffusers' scheduler.order: 2 for heun, else 1 */

    int n_train;              /* num_train_timesteps */
    float *betas;             /* [n_train] float32 as torch computes them */
    float *alphas_cumprod;    /* [n_train] */
    float final_alpha_cumprod;/* DDIM/PNDM: alpha at prev_t < 0 */

    int n_evals;              /* U-Net evaluations = length of timesteps */
    double *timesteps;        /* [n_evals] the values diffusers exposes (int64 or float32/64) */
    int int_timesteps;        /* 1 when diffusers stores them as int64 */
    int n_sigmas;             /* 0 for ddim/pndm; else n_evals + 1 */
    float *sigmas;            /* [n_sigmas] including the final appended value */
    float init_noise_sigma;

    /* loop state */
    int begin;                /* first evaluation (img2img), 0 otherwise */
    int next;                 /* evaluation index sampler_step expects next */
    size_t n;                 /* latent elements, fixed by the first step */
    float *arena;             /* all per-step buffers below, one allocation */
    float *noise;             /* [n] generator draws */
    float *hist[SAMPLER_MAX_HIST]; /* [n] each: PNDM ets, LMS derivatives, DPM/UniPC outputs; newest last */
    int n_hist;               /* how many hist entries hold data */
    float *saved;             /* [n] PNDM cur_sample, Heun sample, UniPC last_sample */
    float *aux;               /* [n] Heun prev_derivative, UniPC converted output */
    int has_saved;
    int counter;              /* PNDM: steps taken */
    float heun_dt;            /* Heun: dt of the pending first-order step */
    int heun_second;          /* Heun: 1 when the next step is the correction */
    int lower_order_nums;     /* DPM++ / UniPC warm-up count */
    int this_order;           /* UniPC: order of the last predictor */
};

/* Fills betas .. init_noise_sigma of s (kind, cfg, karras, steps set). */
int sampler_schedule_build(struct sampler_state *s, sd_error *err);

/* The step of each family; i is the evaluation index, x is updated in place. */
int sampler_step_ddim(struct sampler_state *s, int i, const float *m, float *x, sd_rng *gen, sd_error *err);
int sampler_step_pndm(struct sampler_state *s, int i, const float *m, float *x, sd_error *err);
int sampler_step_ddpm(struct sampler_state *s, int i, const float *m, float *x, sd_rng *gen, sd_error *err);
int sampler_step_euler(struct sampler_state *s, int i, const float *m, float *x, sd_rng *gen, sd_error *err);
int sampler_step_euler_a(struct sampler_state *s, int i, const float *m, float *x, sd_rng *gen, sd_error *err);
int sampler_step_lms(struct sampler_state *s, int i, const float *m, float *x, sd_error *err);
int sampler_step_heun(struct sampler_state *s, int i, const float *m, float *x, sd_error *err);
int sampler_step_dpmpp_2m(struct sampler_state *s, int i, const float *m, float *x, sd_error *err);
int sampler_step_unipc(struct sampler_state *s, int i, const float *m, float *x, sd_error *err);

/* alpha_t = 1/sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t in float32 (DPM++/UniPC). */
void sampler_sigma_to_alpha_sigma(float sigma, float *alpha_t, float *sigma_t);

#endif
