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
    const char *rel = getenv("SDRENDER_RELEASE_MEMORY");
    p->release_memory = rel && (!strcmp(rel, "0") || !strcmp(rel, "1")) ? atoi(rel) : -1;
    p->pixel = m->unet.unet2d && !(m->parts & (SD_PART_VAE | SD_PART_TEXT_ENCODER));
    int rc = 0;
    if (!p->pixel) rc = sd_model_require(m, SD_PART_VAE | SD_PART_TEXT_ENCODER, "the Stable Diffusion pipeline", err);
    if (rc == 0 && !p->pixel) rc = sd_model_open_tokenizer(m, &p->tok, err);
    if (rc == 0 && !p->pixel) rc = clip_text_load(&p->clip, &m->clip, &m->clip_w, err);
    if (rc == 0) rc = unet_load(&p->unet, &m->unet, &m->unet_w, err);
    if (rc == 0 && !p->pixel) rc = vae_load(&p->vae, &m->vae, &m->vae_w, err);
    if (rc == 0 && m->xl) rc = sd_model_open_tokenizer2(m, &p->tok2, err);
    if (rc == 0 && m->xl) rc = clip_text_load(&p->clip2, &m->clip2, &m->clip2_w, err);
    if (rc == 0 && m->xl) rc = sd_model_text_projection(m, &p->text_proj, err);
    if (rc == 0 && m->upscaler && (m->unet.num_class_embeds <= m->max_noise_level ||
                                   m->unet.in_channels != m->unet.out_channels + 3))
        rc = sd_err(err, SD_EINPUT, "%s: an upscaler needs a U-Net with latent + 3 input channels and %d noise-level "
                    "classes", m->path, m->max_noise_level + 1);
    if (rc < 0) sd_pipeline_free(p);
    return rc;
}

int sd_pipeline_size_factor(const sd_pipeline *p) {
    return sd_model_size_factor(p->model);
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
    p->clip2.ops.precision = precision;
    p->unet.ops.precision = precision;
    p->vae.ops.precision = precision;
}

void sd_pipeline_free(sd_pipeline *p) {
    if (p->tok) tokenizer_free(p->tok);
    if (p->tok2) tokenizer_free(p->tok2);
    clip_text_free(&p->clip);
    clip_text_free(&p->clip2);
    free(p->text_proj);
    unet_free(&p->unet);
    vae_free(&p->vae);
    memset(p, 0, sizeof *p);
}

/*
 * SDXL: text -> out: [77, D1 + D2] = cat(hidden_states[-2] of text_encoder, of text_encoder_2) (no final
 * LayerNorm) and pooled: [P] = text_encoder_2's final-LayerNorm state at the first <|endoftext|> (the
 * largest id) times text_projection; ids_out / ids2_out (may be NULL): [77] each.
 */
static int encode_text_xl(sd_pipeline *p, const char *text, float *out, float *pooled, int32_t *ids_out,
                          int32_t *ids2_out, sd_error *err) {
    int32_t ids[CTX_LEN], ids2[CTX_LEN];
    int n = 0, D1 = p->clip.cfg.hidden, D2 = p->clip2.cfg.hidden, P = p->clip2.cfg.projection_dim;
    int rc = tokenizer_encode_padded(p->tok, text, ids, CTX_LEN, &n, err);
    if (rc == 0) rc = tokenizer_encode_padded(p->tok2, text, ids2, CTX_LEN, &n, err);
    if (rc < 0) return rc;
    if (ids_out) memcpy(ids_out, ids, sizeof ids);
    if (ids2_out) memcpy(ids2_out, ids2, sizeof ids2);
    float *h1 = malloc(sizeof(float) * CTX_LEN * D1), *h2 = malloc(sizeof(float) * CTX_LEN * D2);
    float *fin = malloc(sizeof(float) * CTX_LEN * D2);
    if (!h1 || !h2 || !fin) rc = sd_err(err, SD_ENOMEM, "out of memory");
    if (rc == 0) rc = clip_text_forward_hidden(&p->clip, (const int *)ids, 1, CTX_LEN, 1, h1, NULL, err);
    if (rc == 0) rc = clip_text_forward_hidden(&p->clip2, (const int *)ids2, 1, CTX_LEN, 1, h2, fin, err);
    if (rc == 0) {
        for (int t = 0; t < CTX_LEN; t++) {
            memcpy(out + (size_t)t * (D1 + D2), h1 + (size_t)t * D1, sizeof(float) * D1);
            memcpy(out + (size_t)t * (D1 + D2) + D1, h2 + (size_t)t * D2, sizeof(float) * D2);
        }
        int eos = 0;
        for (int t = 1; t < CTX_LEN; t++)
            if (ids2[t] > ids2[eos]) eos = t;
        const float *x = fin + (size_t)eos * D2;
        for (int k = 0; k < P; k++) {
            double acc = 0;
            for (int d = 0; d < D2; d++) acc += (double)x[d] * p->text_proj[(size_t)k * D2 + d];
            pooled[k] = (float)acc;
        }
    }
    free(h1);
    free(h2);
    free(fin);
    return rc;
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
    if (rc == 0 && s->init_image && !s->upscale && s->strength < 1.0) {
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
    int h, w;       /* latent (pixel space: the image size) */
    int C, Cin;     /* latent channels; U-Net input channels (2C + 1 when inpainting: latent, mask, masked image;
                       C + 3 for the upscaler: latent, noisy low-res image) */
    int D;          /* text embedding width (SDXL: both encoders'; 0 without text) */
    int P;          /* SDXL: pooled embedding width; 0 otherwise */
    int Lu, Lc;     /* context tokens of the negative and of the prompt: 77 x chunks (set by encode_prompts) */
    int B;          /* U-Net batch: 2 with classifier-free guidance ([negative, prompt]), else 1 */
    int cfg, inpaint, upscale, pixel;
    size_t n, npix; /* floats of a latent [C, h, w] and of an image [3, H, W] */
} gen_shape;

typedef struct {
    float *ctx, *latents, *noise, *scaled, *unet_in, *unet_out, *guided, *mask_lat, *masked_lat, *pixels, *aux;
    float *pooled, *time_ids; /* SDXL: [B, P], [B, 6] (the negative prompt's first with CFG) */
    float *low_res;  /* upscale: the noisy low-res picture [3, h, w] */
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
    free(b->pooled);
    free(b->time_ids);
    free(b->low_res);
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
    if (z->P) {
        b->pooled = calloc((size_t)z->B * z->P, sizeof(float));
        b->time_ids = calloc((size_t)z->B * 6, sizeof(float));
        if (!b->pooled || !b->time_ids) return sd_err(err, SD_ENOMEM, "out of memory");
    }
    return 0;
}

/* SDXL's conditioning: ctx [B, 77, D], b->pooled [B, P] and b->time_ids [B, 6], the negative prompt's first with
 * CFG: zeros when none was given and the model has force_zeros_for_empty_prompt. */
static int encode_prompts_xl(sd_pipeline *p, const sd_settings *s, const gen_shape *z, buffers *b,
                             sd_pipeline_trace *trace, sd_error *err) {
    float *pos = b->ctx + (size_t)(z->B - 1) * CTX_LEN * z->D, *pos_pooled = b->pooled + (size_t)(z->B - 1) * z->P;
    int rc;
    if (s->clip_skip > 1)
        return sd_err(err, SD_EUNSUPPORTED, "clip skip %d: not supported for SDXL yet (use 1)", s->clip_skip);
    if ((rc = encode_text_xl(p, s->prompt, pos, pos_pooled, trace ? trace->prompt_ids : NULL,
                             trace ? trace->prompt_ids_2 : NULL, err)) < 0)
        return rc;
    int zeros = !s->negative && p->model->force_zeros_for_empty_prompt;
    if (z->cfg && zeros) {
        memset(b->ctx, 0, sizeof(float) * CTX_LEN * z->D);
        memset(b->pooled, 0, sizeof(float) * z->P);
    } else if (z->cfg && (rc = encode_text_xl(p, s->negative ? s->negative : "", b->ctx, b->pooled,
                                              trace ? trace->negative_ids : NULL, trace ? trace->negative_ids_2 : NULL,
                                              err)) < 0) {
        return rc;
    }
    sd_settings_time_ids(s, b->time_ids);
    for (int k = 1; k < z->B; k++) memcpy(b->time_ids + 6 * k, b->time_ids, sizeof(float) * 6);
    if (trace && trace->pooled_prompt_embeds) memcpy(trace->pooled_prompt_embeds, pos_pooled, sizeof(float) * z->P);
    if (trace && trace->negative_pooled_prompt_embeds && z->cfg)
        memcpy(trace->negative_pooled_prompt_embeds, b->pooled, sizeof(float) * z->P);
    if (trace && trace->add_time_ids) memcpy(trace->add_time_ids, b->time_ids, sizeof(float) * 6);
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
    if (z->P) { /* SDXL: one 77-token chunk per prompt, [negative, prompt] */
        if (s->prompt_syntax != SD_PROMPT_PLAIN)
            return sd_err(err, SD_EUNSUPPORTED, "A1111 prompt syntax is not supported for SDXL yet (use plain)");
        z->Lc = CTX_LEN;
        z->Lu = z->cfg ? CTX_LEN : 0;
        if (!(b->ctx = calloc((size_t)z->B * CTX_LEN * z->D, sizeof(float))))
            return sd_err(err, SD_ENOMEM, "out of memory for the text conditioning");
        int rc_xl = encode_prompts_xl(p, s, z, b, trace, err);
        const size_t n_ctx = (size_t)CTX_LEN * z->D;
        if (rc_xl == 0 && trace && trace->prompt_embeds)
            memcpy(trace->prompt_embeds, b->ctx + (size_t)(z->B - 1) * n_ctx, sizeof(float) * n_ctx);
        if (rc_xl == 0 && trace && trace->negative_embeds && z->cfg)
            memcpy(trace->negative_embeds, b->ctx, sizeof(float) * n_ctx);
        if (trace) {
            trace->n_prompt_chunks = 1;
            trace->n_negative_chunks = z->cfg;
        }
        return rc_xl;
    }
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
        if (z->upscale) memcpy(dst + n, b->low_res, sizeof(float) * 3 * hw);
    }
    const float ts = sampler_timestep(smp, i);
    int labels[2] = {s->noise_level, s->noise_level};
    unet_added_cond ac = {0};
    if (z->P) ac = (unet_added_cond){.text_embeds = b->pooled, .n_text = z->P, .time_ids = b->time_ids, .n_time = 6};
    if (z->upscale) ac.labels = labels;
    const unet_added_cond *acp = z->P || z->upscale ? &ac : NULL;
    if (z->pixel) {
        if ((rc = sd_group_unet_forward(&p->unet, p->group, b->unet_in, ts, NULL, 0, acp, B, h, w, b->unet_out, err)) < 0)
            return rc;
    } else if (B == 1 || z->Lu == z->Lc) {
        const float *ctx = B == 1 ? b->ctx + (size_t)z->Lu * z->D : b->ctx;
        if ((rc = sd_group_unet_forward(&p->unet, p->group, b->unet_in, ts, ctx, z->Lc, acp, B, h, w, b->unet_out,
                                        err)) < 0)
            return rc;
    } else {
        /* A1111: a prompt and a negative prompt of different chunk counts run apart, each with its own context
         * (and its entry of the added conditioning) */
        const size_t per = (size_t)z->C * hw;
        unet_added_cond ac1 = ac;
        if (ac1.text_embeds) ac1.text_embeds += z->P;
        if (ac1.time_ids) ac1.time_ids += 6;
        if (ac1.labels) ac1.labels += 1;
        if ((rc = sd_group_unet_forward(&p->unet, p->group, b->unet_in, ts, b->ctx, z->Lu, acp, 1, h, w, b->unet_out,
                                        err)) < 0 ||
            (rc = sd_group_unet_forward(&p->unet, p->group, b->unet_in + (size_t)z->Cin * hw, ts,
                                        b->ctx + (size_t)z->Lu * z->D, z->Lc, acp ? &ac1 : NULL, 1, h, w,
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
        int done = i - first + 1;
        rc = sampler_step(smp, i, b->guided, b->latents, n, g, err);
        if (rc == 0 && trace && done <= trace->max_steps) {
            if (trace->latents_steps) memcpy(trace->latents_steps + (size_t)(done - 1) * n, b->latents, sizeof(float) * n);
            if (trace->noise_pred_steps)
                memcpy(trace->noise_pred_steps + (size_t)(done - 1) * n, b->guided, sizeof(float) * n);
        }
        if (rc == 0 && trace) trace->n_steps = done;
        if (rc == 0 && cb && cb(cb_ctx, done, total)) rc = sd_err(err, SD_ECANCELED, "cancelled");
        /* a failed step too: the group's other ranks wait here */
        if ((rc = sd_group_agree(p->group, rc, err)) < 0) return rc; /* a group stops together */
    }
    return 0;
}

/* latents [C, h, w] / scaling_factor -> VAE decode -> rgb: [H, W, 3] u8 (and trace->image). */
static int decode_latents(sd_pipeline *p, buffers *b, const gen_shape *z, uint8_t *rgb, sd_pipeline_trace *trace,
                          sd_error *err) {
    const float sf = p->model->vae.scaling_factor;
    int rc;
    if (z->pixel) { /* DDPMPipeline: the sample is the picture */
        image_tensor_to_u8_ex(b->latents, z->H, z->W, trace ? trace->image : NULL, rgb);
        return 0;
    }
    for (size_t i = 0; i < z->n; i++) b->scaled[i] = b->latents[i] / sf;
    if ((rc = vae_decode(&p->vae, b->scaled, 1, z->h, z->w, b->pixels, err)) < 0) return rc;
    image_tensor_to_u8_ex(b->pixels, z->H, z->W, trace ? trace->image : NULL, rgb);
    return 0;
}

/* What the model's kind allows of s: no prompt for an unconditional model, an upscale only with an
 * upscaler (which does nothing else), DDPM / DDIM in pixel space (DDPMPipeline has no sigma scaling). */
static int check_task(const sd_pipeline *p, const sd_settings *s, sd_error *err) {
    const sd_model *m = p->model;
    if (p->pixel) {
        if ((s->prompt && *s->prompt) || (s->negative && *s->negative))
            return sd_err(err, SD_EINPUT, "%s is an unconditional model (no text encoder): it takes no prompt; leave "
                          "out -p and -n", m->path);
        if (s->init_image)
            return sd_err(err, SD_EINPUT, "%s is a pixel-space DDPM: img2img and inpainting need a VAE", m->path);
        if (sampler_kind_has_sigmas(s->sampler))
            return sd_err(err, SD_EINPUT, "sampler %s: a pixel-space DDPM samples with ddpm or ddim (DDPMPipeline)",
                          sampler_kind_name(s->sampler));
    }
    if (m->upscaler && !s->upscale)
        return sd_err(err, SD_EINPUT, "%s is an x4 upscaler: use 'sdrender upscale' (or jobs with task upscale)", m->path);
    if (s->upscale && !m->upscaler)
        return sd_err(err, SD_EINPUT, "%s is not an upscaler (model_index.json names %s, not "
                      "StableDiffusionUpscalePipeline)", m->path, m->pipeline_class);
    if (s->upscale && s->noise_level > m->max_noise_level)
        return sd_err(err, SD_EINPUT, "noise level %d is above the model's max_noise_level %d", s->noise_level,
                      m->max_noise_level);
    return 0;
}

/*
 * The upscaler's conditioning picture: the low-res init image [3, h, w] in [-1, 1] noised to
 * noise_level with the low-res scheduler (its add_noise: sqrt(a) x + sqrt(1 - a) noise, noise the
 * generator's first draw) into b->low_res.
 */
static int prepare_low_res(sd_pipeline *p, const sd_settings *s, sd_rng *g, buffers *b, const gen_shape *z,
                           sd_pipeline_trace *trace, sd_error *err) {
    size_t np = (size_t)3 * z->h * z->w;
    b->low_res = malloc(sizeof(float) * np);
    float *noise = malloc(sizeof(float) * np);
    sampler_state *lr = NULL;
    int rc = 0;
    if (!b->low_res || !noise) rc = sd_err(err, SD_ENOMEM, "out of memory");
    if (rc == 0) rc = sampler_create(&lr, SD_SAMPLER_DDPM, &p->model->low_res_sched, 1, 0, 0.0f, err);
    if (rc == 0) {
        image_u8_to_tensor(b->init_rgb, z->h, z->w, b->low_res);
        sd_rng_randn(g, noise, np);
        int nt;
        const float *ac = sampler_alphas_cumprod(lr, &nt);
        if (s->noise_level >= nt) rc = sd_err(err, SD_EINPUT, "noise level %d past the low-res schedule", s->noise_level);
        else {
            float a = ac[s->noise_level];
            float sa = sqrtf(a), sb = sqrtf(1.0f - a);
            for (size_t k = 0; k < np; k++) {
                float x = sa * b->low_res[k];
                float q = sb * noise[k];
                b->low_res[k] = x + q;
            }
        }
    }
    if (rc == 0 && trace && trace->low_res_noise) memcpy(trace->low_res_noise, noise, sizeof(float) * np);
    if (rc == 0 && trace && trace->noisy_low_res_image) memcpy(trace->noisy_low_res_image, b->low_res, sizeof(float) * np);
    sampler_free(lr);
    free(noise);
    return rc;
}

int sd_pipeline_check(const sd_pipeline *p, const sd_settings *s, sd_error *err) {
    int rc = sd_settings_check_for(s, sd_pipeline_size_factor(p), err);
    return rc < 0 ? rc : check_task(p, s, err);
}

/*
 * A network's part of the picture is done: its activations (scratch arena) and its weights, where they
 * are mapped from the model's files, leave memory until its next use (the weights come back from the
 * page cache). So at most one network's weights and activations are resident at a time: full SD 1.5
 * at 512x512 peaks at the U-Net's 1.7 GB of weights plus its activations, not at all three networks'
 * weights plus the VAE's 0.7 GB of activations (3.0 GB before, 2.0 GB after, fp32 and bf16). Refaulting
 * the weights costs ~0.4 s per GB and image: under 1% of a 512x512 picture, ~10% of a 128x128 one, hence
 * p->release_memory's default.
 */
int sd_pipeline_releases_memory(int release_memory, int W, int H) {
    return release_memory >= 0 ? release_memory : (long)W * H >= 512L * 512;
}

static void end_text_phase(sd_pipeline *p) {
    ops_arena_drop(&p->clip.ops.scratch);
    ops_arena_drop(&p->clip2.ops.scratch);
    sd_model_release_weights(p->model, &p->model->clip_w);
    sd_model_release_weights(p->model, &p->model->clip2_w);
}

static void end_unet_phase(sd_pipeline *p) {
    unet_release_scratch(&p->unet);
    sd_model_release_weights(p->model, &p->model->unet_w);
}

static void end_vae_phase(sd_pipeline *p) {
    vae_release_scratch(&p->vae);
    sd_model_release_weights(p->model, &p->model->vae_w);
}

int sd_pipeline_generate(sd_pipeline *p, const sd_settings *s, uint8_t *rgb, sd_pipeline_step_fn cb, void *cb_ctx,
                      sd_pipeline_trace *trace, sd_error *err) {
    const sd_model *m = p->model;
    int rc = sd_pipeline_check(p, s, err);
    if (rc < 0) return rc;
    gen_shape z = {.W = s->width, .H = s->height, .D = p->pixel ? 0 : m->unet.cross_attention_dim,
                   .P = m->xl ? m->clip2.projection_dim : 0, .inpaint = s->mask != NULL, .upscale = s->upscale,
                   .pixel = p->pixel};
    if (z.inpaint && !m->inpaint)
        return sd_err(err, SD_EINPUT, "%s: a mask needs an inpainting model (9-channel U-Net); this is %s", s->mask,
                      m->path);
    if (!m->xl && (s->orig_width || s->orig_height || s->crop_top || s->crop_left || s->target_width || s->target_height))
        return sd_err(err, SD_EINPUT, "the original size, crop and target size condition SDXL models only; %s is %s",
                      m->path, m->sd_version == 2 ? "SD 2.x" : "SD 1.x");
    if (m->inpaint && !z.inpaint)
        return sd_err(err, SD_EINPUT, "%s is an inpainting model: pass an init image (-i) and a mask (--mask)", m->path);
    if (p->pixel) {
        z.h = z.H;
        z.w = z.W;
    } else {
        vae_latent_size(&m->vae, z.H, z.W, &z.h, &z.w);
    }
    z.C = m->unet.out_channels;
    z.Cin = m->unet.in_channels;
    z.n = (size_t)z.C * z.h * z.w;
    z.npix = (size_t)3 * z.H * z.W;
    z.cfg = s->cfg_scale > 1.0f && !p->pixel;
    z.B = z.cfg ? 2 : 1;
    const int release = sd_pipeline_releases_memory(p->release_memory, z.W, z.H);

    sampler_state *smp = NULL;
    int first = 0;
    rc = make_sampler(p, s, &smp, &first, err);
    if (rc < 0) return rc;
    buffers b = {0};
    sd_rng g;
    if ((rc = alloc_buffers(&b, &z, err)) < 0) goto done;
    if (s->init_image && (rc = read_picture(s->init_image, 0, z.upscale ? z.w : z.W, z.upscale ? z.h : z.H,
                                            &b.init_rgb, err)) < 0)
        goto prepared;
    if (z.inpaint && (rc = read_picture(s->mask, 1, z.W, z.H, &b.mask_u8, err)) < 0) goto prepared;
    if (!p->pixel && (rc = encode_prompts(p, s, &z, &b, trace, err)) < 0) goto prepared;
    if (release && !p->pixel) end_text_phase(p);
    sd_rng_seed_kind(&g, s->rng, (uint64_t)s->seed);
    if (z.upscale) { /* the low-res noise first, then the latents (StableDiffusionUpscalePipeline) */
        if ((rc = prepare_low_res(p, s, &g, &b, &z, trace, err)) == 0) draw_start_latents(smp, &g, b.latents, z.n);
    } else {
        rc = prepare_latents(p, s, smp, first, &g, &b, &z, trace, err);
    }
    if (rc == 0) rc = sd_group_fault(p->group, "inputs", err);
prepared:
    /* every rank of a group has read its inputs: go on together or fail together */
    if ((rc = sd_group_agree(p->group, rc, err)) < 0) goto done;
    if (trace) {
        trace->n_all_timesteps = sampler_num_evals(smp);
        for (int i = 0; trace->all_timesteps && i < trace->n_all_timesteps && i < trace->max_timesteps; i++)
            trace->all_timesteps[i] = sampler_timesteps(smp)[i];
    }
    if (trace && trace->latents_init) memcpy(trace->latents_init, b.latents, sizeof(float) * z.n);
    rc = denoise(p, s, smp, first, &g, &b, &z, cb, cb_ctx, trace, err);
    if (release) end_unet_phase(p);
    if (rc < 0) goto done;
    if (trace && trace->latents_final) memcpy(trace->latents_final, b.latents, sizeof(float) * z.n);
    if (!p->group || p->group->rank == 0) rc = decode_latents(p, &b, &z, rgb, trace, err);
done:
    if (release && !p->pixel) end_vae_phase(p);
    free_buffers(&b);
    sampler_free(smp);
    return rc;
}
