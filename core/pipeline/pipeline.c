#include "pipeline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conditioning.h"
#include "fsutil.h"
#include "image.h"
#include "prompt_a1111.h"
#include "pngio.h"
#include "rng.h"
#include "sampler.h"

#define CTX_LEN 77

int sd_pipeline_load(sd_pipeline *p, const sd_model *m, sd_error *err) {
    memset(p, 0, sizeof *p);
    p->model = m;
    int rc = sd_model_require(m, SD_PART_VAE | SD_PART_TEXT_ENCODER, "the Stable Diffusion pipeline", err);
    if (rc == 0) rc = sd_model_open_tokenizer(m, &p->tok, err);
    if (rc == 0) rc = clip_text_load(&p->clip, &m->clip, &m->clip_w, err);
    if (rc == 0) rc = unet_load(&p->unet, &m->unet, &m->unet_w, err);
    if (rc == 0) rc = vae_load(&p->vae, &m->vae, &m->vae_w, err);
    if (rc < 0) sd_pipeline_free(p);
    return rc;
}

int sd_pipeline_load_group(sd_pipeline *p, const sd_model *m, const sd_group *g, sd_error *err) {
    int rc = sd_pipeline_load(p, m, err);
    if (rc == 0 && g) {
        p->group = g;
        if ((rc = unet_shard(&p->unet, g->tp, err)) < 0) sd_pipeline_free(p);
    }
    return rc;
}

void sd_pipeline_set_precision(sd_pipeline *p, ops_precision precision) {
    p->clip.ops.precision = precision;
    p->unet.ops.precision = precision;
    p->vae.ops.precision = precision;
}

void sd_pipeline_free(sd_pipeline *p) {
    if (p->tok) tokenizer_free(p->tok);
    clip_text_free(&p->clip);
    unet_free(&p->unet);
    vae_free(&p->vae);
    memset(p, 0, sizeof *p);
}

/* The posterior's parts a trace asks for (each NULL or [4, h, w]). */
typedef struct posterior_trace {
    float *mean, *logvar, *noise;
} posterior_trace;

/* Posterior sample of the VAE: out = scaling_factor * (mean + exp(0.5 logvar) * noise), noise drawn from g.
 * img: [1, 3, H, W] in [-1, 1] -> out: [1, 4, h, w]; pt (may be NULL) receives mean, logvar and noise. */
static int encode_image(sd_pipeline *p, const float *img, int H, int W, sd_rng *g, float *out, size_t n,
                        const posterior_trace *pt, sd_error *err) {
    float *mean = malloc(sizeof(float) * n), *logvar = malloc(sizeof(float) * n), *noise = malloc(sizeof(float) * n);
    int rc = 0;
    if (!mean || !logvar || !noise) rc = sd_err(err, SD_ENOMEM, "out of memory");
    if (rc == 0) rc = vae_encode(&p->vae, img, 1, H, W, mean, logvar, err);
    if (rc == 0) {
        sd_rng_randn(g, noise, n);
        float sf = p->model->vae.scaling_factor;
        for (size_t i = 0; i < n; i++) {
            float std = expf(0.5f * logvar[i]);
            out[i] = sf * (mean[i] + std * noise[i]);
        }
        if (pt && pt->mean) memcpy(pt->mean, mean, sizeof(float) * n);
        if (pt && pt->logvar) memcpy(pt->logvar, logvar, sizeof(float) * n);
        if (pt && pt->noise) memcpy(pt->noise, noise, sizeof(float) * n);
    }
    free(mean);
    free(logvar);
    free(noise);
    return rc;
}

/* Reads a picture that must be exactly w x h (RGB, or gray for masks). */
static int read_picture(const char *path, int gray, int w, int h, uint8_t **out, sd_error *err) {
    int pw, ph;
    int rc = gray ? sd_png_read_gray(path, out, &pw, &ph, err) : sd_png_read_rgb(path, out, &pw, &ph, err);
    if (rc < 0) return rc;
    if (pw != w || ph != h) {
        free(*out);
        *out = NULL;
        return sd_err(err, SD_EINPUT, "%s: the %s is %dx%d but the image size is %dx%d; pass -W %d -H %d", path,
                      gray ? "mask" : "init image", pw, ph, w, h, pw, ph);
    }
    return 0;
}

static int make_sampler(const sd_pipeline *p, const sd_settings *s, sampler_state **out, int *first, sd_error *err) {
    int rc = sampler_create(out, s->sampler, &p->model->sched, s->steps, s->karras, s->eta, err);
    *first = 0;
    if (rc == 0 && s->init_image && s->strength < 1.0) {
        rc = sampler_set_strength(*out, s->strength, first, err);
        if (rc < 0) {
            sampler_free(*out);
            *out = NULL;
        }
    }
    return rc;
}

int sd_pipeline_count_evals(const sd_pipeline *p, const sd_settings *s, sd_error *err) {
    sampler_state *smp;
    int first;
    int rc = make_sampler(p, s, &smp, &first, err);
    if (rc < 0) return rc;
    int n = sampler_num_evals(smp) - first;
    sampler_free(smp);
    return n;
}

/* The shapes of one generation. */
typedef struct gen_shape {
    int W, H;       /* image */
    int h, w;       /* latent */
    int C, Cin;     /* latent channels; U-Net input channels (2C + 1 when inpainting: latent, mask, masked image) */
    int D;          /* text embedding width */
    int Lu, Lc;     /* context tokens of the negative and of the prompt: 77 x chunks (set by encode_prompts) */
    int B;          /* U-Net batch: 2 with classifier-free guidance ([negative, prompt]), else 1 */
    int cfg, inpaint;
    size_t n, npix; /* floats of a latent [C, h, w] and of an image [3, H, W] */
} gen_shape;

typedef struct {
    float *ctx, *latents, *noise, *scaled, *unet_in, *unet_out, *guided, *mask_lat, *masked_lat, *pixels, *aux;
    uint8_t *init_rgb, *mask_u8;
} buffers;

static void free_buffers(buffers *b) {
    free(b->ctx);
    free(b->latents);
    free(b->noise);
    free(b->scaled);
    free(b->unet_in);
    free(b->unet_out);
    free(b->guided);
    free(b->mask_lat);
    free(b->masked_lat);
    free(b->pixels);
    free(b->aux);
    free(b->init_rgb);
    free(b->mask_u8);
}

/* The buffers every generation needs (the inpainting ones come with prepare_latents). */
static int alloc_buffers(buffers *b, const gen_shape *z, sd_error *err) {
    const size_t n = z->n, hw = (size_t)z->h * z->w;
    b->latents = malloc(sizeof(float) * n);
    b->noise = malloc(sizeof(float) * n);
    b->scaled = malloc(sizeof(float) * n);
    b->unet_in = malloc(sizeof(float) * z->B * z->Cin * hw);
    b->unet_out = malloc(sizeof(float) * z->B * z->C * hw);
    b->guided = malloc(sizeof(float) * n);
    b->pixels = malloc(sizeof(float) * z->npix);
    if (!b->latents || !b->noise || !b->scaled || !b->unet_in || !b->unet_out || !b->guided || !b->pixels)
        return sd_err(err, SD_ENOMEM, "out of memory for a %dx%d image", z->W, z->H);
    return 0;
}

/* Copies n entries of c's ids and multipliers (a trace's [max_chunks, 77] buffers; each may be NULL). */
static void trace_chunks(const sd_cond *c, int max_chunks, int32_t *ids, float *mult, int *n_chunks) {
    int k = c->n_chunks < max_chunks ? c->n_chunks : max_chunks;
    if (ids) memcpy(ids, c->ids, sizeof(int32_t) * (size_t)k * CTX_LEN);
    if (mult) memcpy(mult, c->mult, sizeof(float) * (size_t)k * CTX_LEN);
    *n_chunks = c->n_chunks;
}

/*
 * Text conditioning into b->ctx: [Lu + Lc, D], the negative prompt's [Lu, D] first (with CFG), then the
 * prompt's [Lc, D]; with equal lengths that is the U-Net batch [negative, prompt]. Sets z->Lu, z->Lc.
 */
static int encode_prompts(sd_pipeline *p, const sd_settings *s, gen_shape *z, buffers *b, sd_pipeline_trace *trace,
                          sd_error *err) {
    sd_cond pos = {0}, neg = {0};
    char *prompt = NULL;
    int rc = 0;
    if (s->prompt_syntax == SD_PROMPT_A1111) { /* A1111 takes the <lora:...> tags out of the prompt (only) */
        a1111_net *nets = NULL;
        int n_nets = 0;
        rc = a1111_extract_networks(s->prompt, &prompt, &nets, &n_nets, err);
        a1111_nets_free(nets, n_nets);
    }
    if (rc == 0) rc = sd_cond_encode(p->tok, &p->clip, prompt ? prompt : s->prompt, s->prompt_syntax, s->clip_skip, &pos, err);
    free(prompt);
    if (rc == 0 && z->cfg)
        rc = sd_cond_encode(p->tok, &p->clip, s->negative ? s->negative : "", s->prompt_syntax, s->clip_skip, &neg, err);
    z->Lc = pos.n_chunks * CTX_LEN;
    z->Lu = z->cfg ? neg.n_chunks * CTX_LEN : 0;
    const size_t D = (size_t)z->D;
    if (rc == 0 && !(b->ctx = malloc(sizeof(float) * (size_t)(z->Lu + z->Lc) * D)))
        rc = sd_err(err, SD_ENOMEM, "out of memory for the text conditioning");
    if (rc == 0) {
        if (z->cfg) memcpy(b->ctx, neg.emb, sizeof(float) * (size_t)z->Lu * D);
        memcpy(b->ctx + (size_t)z->Lu * D, pos.emb, sizeof(float) * (size_t)z->Lc * D);
    }
    if (rc == 0 && trace) {
        int mc = trace->max_chunks > 0 ? trace->max_chunks : 1;
        trace_chunks(&pos, mc, trace->prompt_ids, trace->prompt_multipliers, &trace->n_prompt_chunks);
        if (trace->prompt_embeds)
            memcpy(trace->prompt_embeds, pos.emb, sizeof(float) * (size_t)(pos.n_chunks < mc ? pos.n_chunks : mc) * CTX_LEN * D);
        if (z->cfg) {
            trace_chunks(&neg, mc, trace->negative_ids, trace->negative_multipliers, &trace->n_negative_chunks);
            if (trace->negative_embeds)
                memcpy(trace->negative_embeds, neg.emb,
                       sizeof(float) * (size_t)(neg.n_chunks < mc ? neg.n_chunks : mc) * CTX_LEN * D);
        }
    }
    sd_cond_free(&pos);
    sd_cond_free(&neg);
    return rc;
}

/* txt2img's start latent: latents = noise from g * the sampler's init_noise_sigma. */
static void draw_start_latents(sampler_state *smp, sd_rng *g, float *latents, size_t n) {
    float sigma0 = sampler_init_noise_sigma(smp);
    sd_rng_randn(g, latents, n);
    for (size_t i = 0; i < n; i++) latents[i] *= sigma0;
}

/* img2img's start latent: the posterior sample of b->pixels ([1, 3, H, W]) noised to evaluation `first`. */
static int noise_init_image(sd_pipeline *p, sampler_state *smp, int first, sd_rng *g, buffers *b, const gen_shape *z,
                            sd_pipeline_trace *trace, sd_error *err) {
    float *x0 = b->scaled;
    posterior_trace pt = {0};
    if (trace) pt = (posterior_trace){trace->encoder_mean, trace->encoder_logvar, trace->encoder_noise};
    int rc = encode_image(p, b->pixels, z->H, z->W, g, x0, z->n, &pt, err);
    if (rc < 0) return rc;
    sd_rng_randn(g, b->noise, z->n);
    sampler_add_noise(smp, first, x0, b->noise, b->latents, z->n);
    return 0;
}

/* Inpainting's extra U-Net inputs: the mask at latent size (b->mask_lat: [1, h, w]) and the masked image's
 * posterior sample (b->masked_lat: [C, h, w]); the start latent as img2img (strength < 1) or txt2img. */
static int prepare_inpaint(sd_pipeline *p, const sd_settings *s, sampler_state *smp, int first, sd_rng *g,
                           buffers *b, const gen_shape *z, sd_pipeline_trace *trace, sd_error *err) {
    const int H = z->H, W = z->W, h = z->h, w = z->w;
    int rc = 0;
    b->mask_lat = malloc(sizeof(float) * (size_t)h * w);
    b->masked_lat = malloc(sizeof(float) * z->n);
    b->aux = malloc(sizeof(float) * (size_t)H * W);
    float *masked = malloc(sizeof(float) * z->npix);
    if (!b->mask_lat || !b->masked_lat || !b->aux || !masked) {
        free(masked);
        return sd_err(err, SD_ENOMEM, "out of memory");
    }
    image_u8_to_tensor(b->init_rgb, H, W, b->pixels);
    image_mask_binarize(b->mask_u8, H, W, b->aux);
    image_apply_mask(b->pixels, b->aux, H, W, masked);
    image_resize_nearest(b->aux, 1, H, W, b->mask_lat, h, w);
    if (s->strength < 1.0) rc = noise_init_image(p, smp, first, g, b, z, trace, err);
    else draw_start_latents(smp, g, b->latents, z->n);
    posterior_trace pt = {.noise = trace ? trace->masked_image_encoder_noise : NULL};
    if (rc == 0) rc = encode_image(p, masked, H, W, g, b->masked_lat, z->n, &pt, err);
    if (rc == 0 && trace && trace->masked_image_latents)
        memcpy(trace->masked_image_latents, b->masked_lat, sizeof(float) * z->n);
    free(masked);
    return rc;
}

/*
 * The latent entering the loop, b->latents: [C, h, w]. txt2img: noise * init_noise_sigma; img2img: the
 * init image's posterior sample noised to the first timestep; inpainting: see prepare_inpaint. Draws
 * from g in diffusers' order.
 */
static int prepare_latents(sd_pipeline *p, const sd_settings *s, sampler_state *smp, int first, sd_rng *g,
                           buffers *b, const gen_shape *z, sd_pipeline_trace *trace, sd_error *err) {
    if (z->inpaint) return prepare_inpaint(p, s, smp, first, g, b, z, trace, err);
    if (!s->init_image) {
        draw_start_latents(smp, g, b->latents, z->n);
        return 0;
    }
    image_u8_to_tensor(b->init_rgb, z->H, z->W, b->pixels);
    return noise_init_image(p, smp, first, g, b, z, trace, err);
}

/*
 * The guided model output of evaluation i into b->guided: [C, h, w]. The U-Net sees the scaled latent
 * (with the mask and masked-image latents behind it when inpainting) once per CFG batch entry:
 * guided = uncond + cfg_scale * (cond - uncond), or the output itself without CFG.
 */
static int predict(sd_pipeline *p, const sd_settings *s, sampler_state *smp, int i, buffers *b, const gen_shape *z,
                   sd_error *err) {
    const int B = z->B, Cin = z->Cin, h = z->h, w = z->w;
    const size_t n = z->n, hw = (size_t)h * w;
    const float g_scale = s->cfg_scale;
    int rc;
    sampler_scale_model_input(smp, i, b->latents, b->scaled, n);
    for (int k = 0; k < B; k++) {
        float *dst = b->unet_in + (size_t)k * Cin * hw;
        memcpy(dst, b->scaled, sizeof(float) * n);
        if (z->inpaint) {
            memcpy(dst + n, b->mask_lat, sizeof(float) * hw);
            memcpy(dst + n + hw, b->masked_lat, sizeof(float) * n);
        }
    }
    const float ts = sampler_timestep(smp, i);
    if (B == 1 || z->Lu == z->Lc) {
        const float *ctx = B == 1 ? b->ctx + (size_t)z->Lu * z->D : b->ctx;
        if ((rc = sd_group_unet_forward(&p->unet, p->group, b->unet_in, ts, ctx, z->Lc, B, h, w, b->unet_out, err)) < 0)
            return rc;
    } else {
        /* A1111: a prompt and a negative prompt of different chunk counts run apart, each with its own context */
        const size_t per = (size_t)z->C * hw;
        if ((rc = sd_group_unet_forward(&p->unet, p->group, b->unet_in, ts, b->ctx, z->Lu, 1, h, w, b->unet_out, err)) < 0 ||
            (rc = sd_group_unet_forward(&p->unet, p->group, b->unet_in, ts, b->ctx + (size_t)z->Lu * z->D, z->Lc, 1, h, w,
                                        b->unet_out + per, err)) < 0)
            return rc;
    }
    if (z->cfg) {
        const float *u = b->unet_out, *c = b->unet_out + n;
        for (size_t k = 0; k < n; k++) b->guided[k] = u[k] + g_scale * (c[k] - u[k]);
    } else {
        memcpy(b->guided, b->unet_out, sizeof(float) * n);
    }
    return 0;
}

/* The sampler's loop from evaluation `first` on b->latents: predict, step; cb sees every evaluation,
 * trace keeps the latents and the guided outputs. */
static int denoise(sd_pipeline *p, const sd_settings *s, sampler_state *smp, int first, sd_rng *g, buffers *b,
                   const gen_shape *z, sd_pipeline_step_fn cb, void *cb_ctx, sd_pipeline_trace *trace, sd_error *err) {
    const size_t n = z->n;
    int total = sampler_num_evals(smp) - first, rc;
    for (int i = first; i < sampler_num_evals(smp); i++) {
        if ((rc = predict(p, s, smp, i, b, z, err)) < 0) return rc;
        if (trace && trace->unet_input_step0 && i == first)
            memcpy(trace->unet_input_step0, b->unet_in, sizeof(float) * z->B * z->Cin * z->h * z->w);
        if ((rc = sampler_step(smp, i, b->guided, b->latents, n, g, err)) < 0) return rc;
        int done = i - first + 1;
        if (trace && done <= trace->max_steps) {
            if (trace->latents_steps) memcpy(trace->latents_steps + (size_t)(done - 1) * n, b->latents, sizeof(float) * n);
            if (trace->noise_pred_steps)
                memcpy(trace->noise_pred_steps + (size_t)(done - 1) * n, b->guided, sizeof(float) * n);
        }
        if (trace) trace->n_steps = done;
        rc = cb && cb(cb_ctx, done, total) ? sd_err(err, SD_ECANCELED, "cancelled") : 0;
        if ((rc = sd_group_agree(p->group, rc, err)) < 0) return rc; /* a group stops together */
    }
    return 0;
}

/* latents [C, h, w] / scaling_factor -> VAE decode -> rgb: [H, W, 3] u8 (and trace->image). */
static int decode_latents(sd_pipeline *p, buffers *b, const gen_shape *z, uint8_t *rgb, sd_pipeline_trace *trace,
                          sd_error *err) {
    const float sf = p->model->vae.scaling_factor;
    int rc;
    for (size_t i = 0; i < z->n; i++) b->scaled[i] = b->latents[i] / sf;
    if ((rc = vae_decode(&p->vae, b->scaled, 1, z->h, z->w, b->pixels, err)) < 0) return rc;
    image_tensor_to_u8_ex(b->pixels, z->H, z->W, trace ? trace->image : NULL, rgb);
    return 0;
}

/*
 * Test hook: SDRENDER_TP_FAIL_RANK=N makes rank N of every group fail after reading its inputs, as a
 * member that cannot read a file would (the group must end the job with that rank's message).
 */
static int group_fault(const sd_group *g, sd_error *err) {
    const char *e = getenv("SDRENDER_TP_FAIL_RANK");
    if (e && *e && atoi(e) == g->rank)
        return sd_err(err, SD_EIO, "injected failure on this rank (SDRENDER_TP_FAIL_RANK=%s)", e);
    return 0;
}

int sd_pipeline_generate(sd_pipeline *p, const sd_settings *s, uint8_t *rgb, sd_pipeline_step_fn cb, void *cb_ctx,
                      sd_pipeline_trace *trace, sd_error *err) {
    const sd_model *m = p->model;
    int rc = sd_settings_check_for(s, vae_scale_factor(&m->vae), err);
    if (rc < 0) return rc;
    gen_shape z = {.W = s->width, .H = s->height, .D = m->clip.hidden, .inpaint = s->mask != NULL};
    if (z.inpaint && !m->inpaint)
        return sd_err(err, SD_EINPUT, "%s: a mask needs an inpainting model (9-channel U-Net); this is %s", s->mask,
                      m->path);
    if (m->inpaint && !z.inpaint)
        return sd_err(err, SD_EINPUT, "%s is an inpainting model: pass an init image (-i) and a mask (--mask)", m->path);
    vae_latent_size(&m->vae, z.H, z.W, &z.h, &z.w);
    z.C = m->unet.out_channels;
    z.Cin = m->unet.in_channels;
    z.n = (size_t)z.C * z.h * z.w;
    z.npix = (size_t)3 * z.H * z.W;
    z.cfg = s->cfg_scale > 1.0f;
    z.B = z.cfg ? 2 : 1;

    sampler_state *smp = NULL;
    int first = 0;
    rc = make_sampler(p, s, &smp, &first, err);
    if (rc < 0) return rc;
    buffers b = {0};
    sd_rng g;
    if ((rc = alloc_buffers(&b, &z, err)) < 0) goto done;
    if (s->init_image && (rc = read_picture(s->init_image, 0, z.W, z.H, &b.init_rgb, err)) < 0) goto prepared;
    if (z.inpaint && (rc = read_picture(s->mask, 1, z.W, z.H, &b.mask_u8, err)) < 0) goto prepared;
    if ((rc = encode_prompts(p, s, &z, &b, trace, err)) < 0) goto prepared;
    sd_rng_seed(&g, (uint64_t)s->seed);
    rc = prepare_latents(p, s, smp, first, &g, &b, &z, trace, err);
    if (rc == 0 && p->group) rc = group_fault(p->group, err);
prepared:
    /* every rank of a group has read its inputs: go on together or fail together */
    if ((rc = sd_group_agree(p->group, rc, err)) < 0) goto done;
    if (trace) {
        trace->n_all_timesteps = sampler_num_evals(smp);
        for (int i = 0; trace->all_timesteps && i < trace->n_all_timesteps && i < trace->max_timesteps; i++)
            trace->all_timesteps[i] = sampler_timesteps(smp)[i];
    }
    if (trace && trace->latents_init) memcpy(trace->latents_init, b.latents, sizeof(float) * z.n);
    if ((rc = denoise(p, s, smp, first, &g, &b, &z, cb, cb_ctx, trace, err)) < 0) goto done;
    if (trace && trace->latents_final) memcpy(trace->latents_final, b.latents, sizeof(float) * z.n);
    if (!p->group || p->group->rank == 0) rc = decode_latents(p, &b, &z, rgb, trace, err);
done:
    free_buffers(&b);
    sampler_free(smp);
    return rc;
}
