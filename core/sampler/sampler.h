/*
 * sampler.h - the diffusion samplers (schedulers) sdrender offers.
 *
 * Names on the command line and in job files: ddim, pndm, euler, euler_a,
 * lms, heun, dpm++2m, unipc, ddpm. `--karras` switches the sigma-based ones to
 * Karras sigmas.
 *
 * Each sampler reproduces the diffusers 0.27.2 class of the same name created
 * with Class.from_config(scheduler_config.json) and set_timesteps(steps):
 * DDIMScheduler, PNDMScheduler (PLMS, skip_prk_steps), EulerDiscreteScheduler,
 * EulerAncestralDiscreteScheduler, LMSDiscreteScheduler, HeunDiscreteScheduler,
 * DPMSolverMultistepScheduler (DPM-Solver++ 2M) and UniPCMultistepScheduler
 * (bh2, predict_x0), and DDPMScheduler (ancestral, fixed_small variance, one
 * noise draw per step except at t = 0; ext README 2.2). A denoising loop (batch of one latent of n floats; CFG is
 * applied by the caller before the step):
 *
 *     sampler_state *s;
 *     if (sampler_create(&s, SD_SAMPLER_EULER_A, &cfg, 20, 0, 0.0f, &err) < 0) ...
 *     sd_rng_randn(&gen, x, n);                              // initial noise
 *     for (size_t k = 0; k < n; k++) x[k] *= sampler_init_noise_sigma(s);
 *     for (int i = sampler_first_eval(s); i < sampler_num_evals(s); i++) {
 *         sampler_scale_model_input(s, i, x, in, n);       // U-Net input
 *         unet(in, sampler_timestep(s, i), ...) -> eps    // guided model output
 *         if (sampler_step(s, i, eps, x, n, &gen, &err) < 0) ...
 *     }
 *
 * img2img: call sampler_set_strength first; it returns the first evaluation
 * index, and the start latent is sampler_add_noise(s, first, x0, noise).
 *
 * Choices where diffusers offers no answer, all reported as errors:
 * steps must be 1..num_train_timesteps; --karras is refused for ddim and pndm
 * (no sigmas) and for euler_a (diffusers 0.27.2 has no Karras variant of it);
 * eta > 0 is refused except for ddim (diffusers silently ignores it); PNDM
 * needs skip_prk_steps (every SD config sets it) and epsilon/v_prediction;
 * euler_a refuses "sample" prediction like diffusers; a timestep_spacing that
 * would make diffusers emit a negative or out-of-range timestep is refused.
 */
#ifndef SD_SAMPLER_H
#define SD_SAMPLER_H

#include <stddef.h>

#include "config.h"
#include "err.h"
#include "rng.h"

typedef enum sampler_kind {
    SD_SAMPLER_DDIM = 0,
    SD_SAMPLER_PNDM,
    SD_SAMPLER_EULER,
    SD_SAMPLER_EULER_A,
    SD_SAMPLER_LMS,
    SD_SAMPLER_HEUN,
    SD_SAMPLER_DPMPP_2M,
    SD_SAMPLER_UNIPC,
    SD_SAMPLER_DDPM,
    SD_SAMPLER_COUNT
} sampler_kind;

/* Parses a sampler name (also accepts "dpmpp_2m"); returns 0 or -1 when unknown. */
int sampler_kind_parse(const char *name, sampler_kind *out);
/* Canonical command-line name ("dpm++2m"). */
const char *sampler_kind_name(sampler_kind k);
/* Name as AUTOMATIC1111 writes it in PNG parameters ("DPM++ 2M", "Euler a"). */
const char *sampler_kind_a1111_name(sampler_kind k, int karras);
/* "ddim|pndm|euler|..." for help texts. */
const char *sampler_kind_list(void);
/* True for samplers that use sigmas (all of them but ddim, pndm and ddpm). */
int sampler_kind_has_sigmas(sampler_kind k);
/* True for samplers that accept --karras (the sigma ones except euler_a). */
int sampler_kind_has_karras(sampler_kind k);

/* ---- the engine ------------------------------------------------------------------------ */

typedef struct sampler_state sampler_state;

/* Builds kind's schedule for `steps` inference steps from cfg (scheduler_config.json;
 * SCHED_SPACING_DEFAULT picks the class's own default spacing: leading for ddim/pndm/ddpm,
 * linspace for the others). karras: Karras sigmas. eta: DDIM's noise weight (0 = deterministic). */
int sampler_create(sampler_state **out, sampler_kind kind, const sched_config *cfg, int steps, int karras,
                   float eta, sd_error *err);
void sampler_free(sampler_state *s);

/* Number of U-Net evaluations of a full run: len(scheduler.timesteps) (pndm N+1, heun 2N-1). */
int sampler_num_evals(const sampler_state *s);
/* First evaluation of the loop: 0, or what sampler_set_strength chose. */
int sampler_first_eval(const sampler_state *s);
/* The timestep passed to the U-Net at evaluation i, as float32 (may be fractional);
 * NAN outside 0 .. num_evals - 1. */
float sampler_timestep(const sampler_state *s, int i);
/* All num_evals timesteps as diffusers stores them (int64 or float values, exact in double). */
const double *sampler_timesteps(const sampler_state *s);
/* 1 when diffusers keeps the timesteps as int64 (ddim, pndm, dpm++2m, unipc). */
int sampler_timesteps_are_integers(const sampler_state *s);
/* scheduler.sigmas including the appended final value, *n of them; NULL (*n = 0) for ddim/pndm. */
const float *sampler_sigmas(const sampler_state *s, int *n);
/* scheduler.init_noise_sigma: the factor on the initial noise of txt2img. */
float sampler_init_noise_sigma(const sampler_state *s);
/* scheduler.order (2 for heun, 1 otherwise). */
int sampler_order(const sampler_state *s);
/* betas / alphas_cumprod of the training schedule, num_train_timesteps of them. */
const float *sampler_betas(const sampler_state *s, int *n);
const float *sampler_alphas_cumprod(const sampler_state *s, int *n);
/* 1 when sampler_step draws from the generator (euler, euler_a, ddpm, ddim with eta > 0). */
int sampler_draws_noise(const sampler_state *s);

/* scale_model_input at evaluation i: x / sqrt(sigma^2 + 1) for euler, euler_a, lms, heun;
 * a copy otherwise (and for i out of range). x, out: [n]; they may be the same buffer. */
void sampler_scale_model_input(const sampler_state *s, int i, const float *x, float *out, size_t n);

/* img2img (StableDiffusionImg2ImgPipeline.get_timesteps): init = min(int(N * strength), N),
 * t_start = N - init; the loop starts at evaluation t_start * order, which *first receives.
 * strength must be in [0, 1] and leave at least one step. */
int sampler_set_strength(sampler_state *s, double strength, int *first, sd_error *err);

/* scheduler.add_noise(x0, noise, timesteps[i]): sqrt(a)*x0 + sqrt(1-a)*noise for ddim/pndm,
 * x0 + sigma*noise for euler/euler_a/lms/heun, alpha_t*x0 + sigma_t*noise for dpm++2m/unipc.
 * x0, noise, out: [n]; out may alias x0. */
void sampler_add_noise(const sampler_state *s, int i, const float *x0, const float *noise, float *out, size_t n);

/* scheduler.step(model_output, timesteps[i], x): replaces x [n] with the next latent.
 * Evaluations must come in order from sampler_first_eval; n must not change between
 * steps. Draws noise from gen exactly when diffusers does (gen may be NULL only when
 * sampler_draws_noise is 0, or for euler whose draw is unused and then skipped). */
int sampler_step(sampler_state *s, int i, const float *model_output, float *x, size_t n, sd_rng *gen, sd_error *err);

#endif
