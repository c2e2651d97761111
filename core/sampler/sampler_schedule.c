/*
 * sampler_schedule.c - betas, timesteps and sigmas exactly as diffusers 0.27.2 builds them.
 *
 * diffusers mixes three arithmetics here and each one is reproduced:
 *   - torch float32 for betas, alphas_cumprod and the training sigmas
 *     sqrt((1 - a) / a) (torch.linspace's own evaluation order included);
 *   - numpy float64 for timesteps (linspace, arange, round half to even) and
 *     for sigma interpolation and Karras sigmas, cast to float32 at the end;
 *   - the integer timestep lists of DDIM/PNDM/DPM++/UniPC.
 * Each class has its own formulas per timestep_spacing; the comments name them.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler_internal.h"

/* numpy's round(): half to even (the default rounding mode). */
static double np_round(double x) { return nearbyint(x); }

/* Element i of np.linspace(start, stop, num) in float64: i * step + start, the last = stop. */
static double np_linspace_at(double start, double stop, int num, int i) {
    if (num > 1 && i == num - 1) return stop;
    int div = num - 1;
    double delta = stop - start;
    double y = (double)i;
    y = div > 0 ? y * (delta / div) : y * delta;
    return y + start;
}

/* np.arange(start, stop, step) for floats: length ceil((stop - start) / step), then
 * start, start + step, and start + i * delta with delta = (start + step) - start.
 * Returns the length (<= cap) written to out. */
static int np_arange(double start, double stop, double step, double *out, int cap) {
    double len_f = ceil((stop - start) / step);
    int len = len_f > 0 ? (int)len_f : 0;
    if (len > cap) len = cap;
    if (len > 0) out[0] = start;
    if (len > 1) out[1] = start + step;
    double delta = (len > 1 ? out[1] : start + step) - start;
    for (int i = 2; i < len; i++) out[i] = start + i * delta;
    return len;
}

/* np.interp(x, arange(n), fp) in float64 (fp holds float32 values). */
static double np_interp(double x, const float *fp, int n) {
    if (isnan(x)) return x;
    if (x < 0) return fp[0];
    if (x >= (double)(n - 1)) return fp[n - 1];
    int j = (int)floor(x);
    if ((double)j == x) return fp[j];
    double slope = ((double)fp[j + 1] - (double)fp[j]) / 1.0;
    return slope * (x - (double)j) + (double)fp[j];
}

/* torch.linspace(start, end, steps, dtype=float32) on the AVX2 CPU kernel: blocks of 8
 * start at base = start + step*idx (or end - step*(steps-idx-1) past halfway) and
 * hold base + k*step, all float32 with the compiler's fused multiply-adds; the
 * last steps % 16 elements take the scalar formula. */
static void torch_linspace_f32(double start_d, double end_d, int steps, float *out) {
    float start = (float)start_d, end = (float)end_d;
    if (steps == 1) {
        out[0] = start;
        return;
    }
    float step = (end - start) / (float)(steps - 1);
    int halfway = steps / 2;
    int vec_end = steps - steps % 16;
    for (int idx = 0; idx < vec_end; idx += 8) {
        float base = idx < halfway ? fmaf(step, (float)idx, start) : fmaf(-step, (float)(steps - idx - 1), end);
        out[idx] = base;
        out[idx + 1] = base + step;
        for (int k = 2; k < 8; k++) out[idx + k] = fmaf((float)k, step, base);
    }
    for (int idx = vec_end; idx < steps; idx++)
        out[idx] = idx < halfway ? fmaf(step, (float)idx, start) : fmaf(-step, (float)(steps - idx - 1), end);
}

/* betas and alphas_cumprod as every class's __init__ computes them (torch float32;
 * cumprod accumulates in double and stores float32, like torch's CPU kernel). */
static int build_alphas(struct sampler_state *s, sd_error *err) {
    int T = s->n_train;
    s->betas = malloc((size_t)T * sizeof *s->betas);
    s->alphas_cumprod = malloc((size_t)T * sizeof *s->alphas_cumprod);
    if (!s->betas || !s->alphas_cumprod) return sd_err(err, SD_ENOMEM, "sampler: out of memory for %d betas", T);
    if (s->cfg.beta_schedule == SCHED_BETA_SCALED_LINEAR) {
        torch_linspace_f32(sqrt(s->cfg.beta_start), sqrt(s->cfg.beta_end), T, s->betas);
        for (int t = 0; t < T; t++) s->betas[t] = s->betas[t] * s->betas[t];
    } else {
        torch_linspace_f32(s->cfg.beta_start, s->cfg.beta_end, T, s->betas);
    }
    double prod = 1.0;
    for (int t = 0; t < T; t++) {
        float alpha = 1.0f - s->betas[t];
        prod *= (double)alpha;
        s->alphas_cumprod[t] = (float)prod;
    }
    /* set_alpha_to_one not given: DDIMScheduler's default is true, PNDMScheduler's false; DDPMScheduler
     * always uses 1 at prev_t < 0 */
    int one = s->cfg.set_alpha_to_one < 0 ? s->kind == SD_SAMPLER_DDIM || s->kind == SD_SAMPLER_DDPM
                                          : s->cfg.set_alpha_to_one;
    s->final_alpha_cumprod = one ? 1.0f : s->alphas_cumprod[0];
    return 0;
}

/* The schedule family: which set_timesteps formulas a class uses. */
enum { FAM_DDIM, FAM_PNDM, FAM_EULER, FAM_DPM };

static int family(sampler_kind k) {
    switch (k) {
    case SD_SAMPLER_DDIM:
    case SD_SAMPLER_DDPM: return FAM_DDIM;
    case SD_SAMPLER_PNDM: return FAM_PNDM;
    case SD_SAMPLER_DPMPP_2M:
    case SD_SAMPLER_UNIPC: return FAM_DPM;
    default: return FAM_EULER;
    }
}

/*
 * The descending timestep list of set_timesteps before any class-specific
 * repetition (PNDM, Heun) or Karras replacement. out has room for N + 2.
 *   DDIM:  linspace round(linspace(0,T-1,N)); leading arange(N)*(T//N) + offset;
 *          trailing round(arange(T,0,-T/N)) - 1
 *   PNDM:  the same values (it builds them ascending and reverses)
 *   Euler, Euler a, LMS, Heun: float32; linspace is not rounded
 *   DPM++, UniPC: linspace/leading over N+1 points dropping the last
 */
static int base_timesteps(const struct sampler_state *s, double *out, int *len, sd_error *err) {
    int N = s->steps, T = s->n_train, fam = family(s->kind);
    int spacing = s->cfg.timestep_spacing;
    int off = s->cfg.steps_offset;
    int n = 0;
    if (spacing == SCHED_SPACING_LINSPACE) {
        /* reversed; DPM++/UniPC use N + 1 points and drop the smallest */
        int pts = fam == FAM_DPM ? N + 1 : N;
        n = N;
        for (int i = 0; i < n; i++) {
            double v = np_linspace_at(0.0, (double)(T - 1), pts, pts - 1 - i);
            out[i] = fam == FAM_EULER ? (double)(float)v : np_round(v);
        }
    } else if (spacing == SCHED_SPACING_LEADING) {
        int pts = fam == FAM_DPM ? N + 1 : N;
        long ratio = T / pts;
        n = N;
        for (int i = 0; i < n; i++) out[i] = (double)((long)(pts - 1 - i) * ratio + off);
    } else { /* trailing: may yield N + 1 values, the last one -1 */
        n = np_arange((double)T, 0.0, -((double)T / N), out, N + 2);
        for (int i = 0; i < n; i++) {
            double v = np_round(out[i]);
            out[i] = (fam == FAM_EULER ? (double)(float)v : v) - 1.0;
        }
    }
    for (int i = 0; i < n; i++) {
        if (out[i] < 0)
            return sd_err(err, SD_EUNSUPPORTED,
                          "sampler %s: trailing spacing with %d steps produces timestep %g (a rounding flaw of "
                          "diffusers' schedule); choose another step count",
                          sampler_kind_name(s->kind), N, out[i]);
        if ((fam == FAM_DDIM || fam == FAM_PNDM || fam == FAM_DPM) && out[i] > T - 1)
            return sd_err(err, SD_EUNSUPPORTED,
                          "sampler %s: %d steps with steps_offset %d give timestep %g, past the %d training "
                          "timesteps; use fewer steps",
                          sampler_kind_name(s->kind), N, off, out[i], T);
    }
    *len = n;
    return 0;
}

/* Karras et al. sigmas, rho = 7, from sigma_max down to sigma_min (numpy float64). */
static void karras_sigmas(double sigma_min, double sigma_max, int N, double *out) {
    const double rho = 7.0;
    double min_inv = pow(sigma_min, 1.0 / rho), max_inv = pow(sigma_max, 1.0 / rho);
    for (int i = 0; i < N; i++) {
        double ramp = np_linspace_at(0.0, 1.0, N, i);
        out[i] = pow(max_inv + ramp * (min_inv - max_inv), rho);
    }
}

/* _sigma_to_t: the fractional training timestep whose log-sigma is log(sigma),
 * interpolating linearly between neighbouring log_sigmas (float32 values). */
static double sigma_to_t(double sigma, const float *log_sigmas, int T) {
    double log_sigma = log(sigma > 1e-10 ? sigma : 1e-10);
    /* argmax of cumsum(dists >= 0): first index where the running count peaks */
    int count = 0, best = -1, low = 0;
    for (int k = 0; k < T; k++) {
        if (log_sigma - (double)log_sigmas[k] >= 0) count++;
        if (count > best) {
            best = count;
            low = k;
        }
    }
    if (low > T - 2) low = T - 2;
    double lo = log_sigmas[low], hi = log_sigmas[low + 1];
    double w = (lo - log_sigma) / (lo - hi);
    if (w < 0) w = 0;
    if (w > 1) w = 1;
    return (1.0 - w) * low + w * (low + 1);
}

/* The sigma list (float64, before the final value) and timesteps of the sigma-based classes. */
static int build_sigmas(struct sampler_state *s, double *ts, int n, sd_error *err) {
    int T = s->n_train, fam = family(s->kind);
    float *train = malloc((size_t)T * sizeof *train);     /* sqrt((1 - a) / a), float32 */
    float *log_train = malloc((size_t)T * sizeof *log_train);
    double *sig = malloc((size_t)(n + 1) * sizeof *sig);
    int rc = 0;
    if (!train || !log_train || !sig) {
        rc = sd_err(err, SD_ENOMEM, "sampler: out of memory");
        goto out;
    }
    for (int t = 0; t < T; t++) {
        float a = s->alphas_cumprod[t];
        float q = (1.0f - a) / a;
        train[t] = sqrtf(q);
        log_train[t] = (float)log((double)train[t]);
    }
    if (s->karras) {
        /* Euler/LMS/Heun take the range of their interpolated sigmas, DPM++/UniPC the training range */
        double smin, smax;
        if (fam == FAM_DPM) {
            smin = train[0];
            smax = train[T - 1];
        } else {
            smin = np_interp(ts[n - 1], train, T);
            smax = np_interp(ts[0], train, T);
        }
        karras_sigmas(smin, smax, n, sig);
        for (int i = 0; i < n; i++) {
            double t = sigma_to_t(sig[i], log_train, T);
            if (fam == FAM_DPM) ts[i] = np_round(t);
            else if (s->kind == SD_SAMPLER_EULER) ts[i] = (double)(float)t;
            else ts[i] = t; /* LMS and Heun keep float64 timesteps */
        }
    } else {
        for (int i = 0; i < n; i++) sig[i] = np_interp(ts[i], train, T);
    }
    /* the appended final sigma */
    double last = 0.0;
    if (s->kind == SD_SAMPLER_UNIPC) last = s->karras ? (double)(float)sig[n - 1] : (double)train[0];
    sig[n] = last;

    if (s->kind == SD_SAMPLER_HEUN) {
        /* sigmas [s0, s1, s1, ..., s_{N-1}, s_{N-1}, 0]; timesteps [t0, t1, t1, ...] */
        s->n_evals = 2 * n - 1;
        s->n_sigmas = 2 * n;
    } else {
        s->n_evals = n;
        s->n_sigmas = n + 1;
    }
    s->sigmas = malloc((size_t)s->n_sigmas * sizeof *s->sigmas);
    s->timesteps = malloc((size_t)s->n_evals * sizeof *s->timesteps);
    if (!s->sigmas || !s->timesteps) {
        rc = sd_err(err, SD_ENOMEM, "sampler: out of memory");
        goto out;
    }
    if (s->kind == SD_SAMPLER_HEUN) {
        s->sigmas[0] = (float)sig[0];
        s->timesteps[0] = ts[0];
        for (int i = 1; i < n; i++) {
            s->sigmas[2 * i - 1] = s->sigmas[2 * i] = (float)sig[i];
            s->timesteps[2 * i - 1] = s->timesteps[2 * i] = ts[i];
        }
        s->sigmas[2 * n - 1] = (float)sig[n];
    } else {
        for (int i = 0; i <= n; i++) s->sigmas[i] = (float)sig[i];
        memcpy(s->timesteps, ts, (size_t)n * sizeof *ts);
    }
    if (fam == FAM_EULER) {
        float mx = 0.0f;
        for (int i = 0; i < s->n_sigmas; i++)
            if (s->sigmas[i] > mx) mx = s->sigmas[i];
        if (s->cfg.timestep_spacing == SCHED_SPACING_LEADING) {
            float sq = mx * mx;
            mx = sqrtf(sq + 1.0f);
        }
        s->init_noise_sigma = mx;
    } else {
        s->init_noise_sigma = 1.0f;
    }
out:
    free(train);
    free(log_train);
    free(sig);
    return rc;
}

/* PNDM with skip_prk_steps: plms = concat(t[:-1], t[-2:-1], t[-1:]) on the ascending list,
 * reversed - the second timestep repeats (901, 801, 801, 701, ...). */
static int build_pndm(struct sampler_state *s, const double *desc, int n, sd_error *err) {
    int m = n >= 2 ? n + 1 : n;
    s->timesteps = malloc((size_t)m * sizeof *s->timesteps);
    if (!s->timesteps) return sd_err(err, SD_ENOMEM, "sampler: out of memory");
    int k = 0;
    s->timesteps[k++] = desc[0];
    if (n >= 2) s->timesteps[k++] = desc[1];
    for (int i = 1; i < n; i++) s->timesteps[k++] = desc[i];
    s->n_evals = m;
    s->init_noise_sigma = 1.0f;
    return 0;
}

int sampler_schedule_build(struct sampler_state *s, sd_error *err) {
    int rc = build_alphas(s, err);
    if (rc < 0) return rc;
    double *ts = malloc((size_t)(s->steps + 2) * sizeof *ts);
    if (!ts) return sd_err(err, SD_ENOMEM, "sampler: out of memory");
    int n = 0;
    rc = base_timesteps(s, ts, &n, err);
    if (rc == 0) {
        switch (family(s->kind)) {
        case FAM_DDIM:
            s->timesteps = ts;
            ts = NULL;
            s->n_evals = n;
            s->init_noise_sigma = 1.0f;
            break;
        case FAM_PNDM: rc = build_pndm(s, ts, n, err); break;
        default: rc = build_sigmas(s, ts, n, err); break;
        }
    }
    free(ts);
    s->int_timesteps = s->kind == SD_SAMPLER_DDIM || s->kind == SD_SAMPLER_DDPM || s->kind == SD_SAMPLER_PNDM || family(s->kind) == FAM_DPM;
    return rc;
}
