#include "settings.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "unicode.h"

void sd_settings_default(sd_settings *s) {
    memset(s, 0, sizeof *s);
    s->prompt = "";
    s->negative = "";
    s->steps = 20;
    s->cfg_scale = 7.5f;
    s->sampler = SD_SAMPLER_PNDM;
    s->width = s->height = 512;
    s->clip_skip = 1;
    s->strength = 0.8f;
    s->rng = SD_RNG_CPU;
    s->noise_level = 20;
}

const char *sd_prompt_syntax_name(sd_prompt_syntax s) { return s == SD_PROMPT_A1111 ? "a1111" : "plain"; }

int sd_prompt_syntax_parse(const char *name, sd_prompt_syntax *out) {
    if (!strcmp(name, "plain")) *out = SD_PROMPT_PLAIN;
    else if (!strcmp(name, "a1111")) *out = SD_PROMPT_A1111;
    else return -1;
    return 0;
}

int sd_settings_sd_vae_scale(void) {
    vae_config sd;
    vae_config_sd15(&sd);
    return vae_scale_factor(&sd);
}

int sd_settings_check(const sd_settings *s, sd_error *err) {
    return sd_settings_check_for(s, sd_settings_sd_vae_scale(), err);
}

int sd_settings_check_for(const sd_settings *s, int vae_scale, sd_error *err) {
    if (!s->prompt) return sd_err(err, SD_EINPUT, "no prompt given");
    const int side[2] = {s->width, s->height};
    const char *side_name[2] = {"width", "height"};
    for (int i = 0; i < 2; i++)
        if (side[i] < vae_scale || side[i] > SD_MAX_SIDE || side[i] % vae_scale)
            return sd_err(err, SD_EINPUT, "%s must be a positive multiple of %d up to %d, got %d", side_name[i],
                          vae_scale, SD_MAX_SIDE, side[i]);
    if (s->steps < 1 || s->steps > SD_MAX_STEPS)
        return sd_err(err, SD_EINPUT, "steps must be in 1..%d, got %d", SD_MAX_STEPS, s->steps);
    if (!(s->cfg_scale >= 0 && s->cfg_scale <= SD_MAX_CFG))
        return sd_err(err, SD_EINPUT, "cfg_scale must be in 0..%g, got %g", SD_MAX_CFG, s->cfg_scale);
    if ((unsigned)s->sampler >= SD_SAMPLER_COUNT) return sd_err(err, SD_EINPUT, "unknown sampler");
    if (s->karras && !sampler_kind_has_karras(s->sampler))
        return sd_err(err, SD_EINPUT, "karras needs one of euler, lms, heun, dpm++2m, unipc; '%s' has no Karras variant",
                      sampler_kind_name(s->sampler));
    if (s->seed < 0) return sd_err(err, SD_EINPUT, "seed must be >= 0, got %lld", (long long)s->seed);
    if (s->clip_skip < 1 || s->clip_skip > SD_MAX_CLIP_SKIP)
        return sd_err(err, SD_EINPUT, "clip_skip must be in 1..%d (1 = last layer), got %d", SD_MAX_CLIP_SKIP,
                      s->clip_skip);
    if (!(s->eta >= 0 && s->eta <= 1)) return sd_err(err, SD_EINPUT, "eta must be in 0..1, got %g", s->eta);
    if (s->mask && !s->init_image) return sd_err(err, SD_EINPUT, "mask needs an init_image");
    if (s->init_image && !s->upscale && !(s->strength > 0 && s->strength <= 1))
        return sd_err(err, SD_EINPUT, "strength must be in (0, 1], got %g", s->strength);
    const int cond[6] = {s->orig_width, s->orig_height, s->crop_top, s->crop_left, s->target_width, s->target_height};
    const char *cond_name[6] = {"original width", "original height", "crop top", "crop left", "target width",
                                "target height"};
    for (int i = 0; i < 6; i++)
        if (cond[i] < 0 || cond[i] > SD_MAX_COND_SIZE)
            return sd_err(err, SD_EINPUT, "%s must be in 0..%d (0: the default), got %d", cond_name[i],
                          SD_MAX_COND_SIZE, cond[i]);
    if (s->rng != SD_RNG_CPU && s->rng != SD_RNG_CUDA) return sd_err(err, SD_EINPUT, "unknown rng (cpu or cuda)");
    if (s->upscale && (!s->init_image || s->mask))
        return sd_err(err, SD_EINPUT, "an upscale needs an init_image (the low-res picture) and no mask");
    if (s->upscale && (s->noise_level < 0 || s->noise_level > SD_MAX_NOISE_LEVEL))
        return sd_err(err, SD_EINPUT, "noise_level must be in 0..%d, got %d", SD_MAX_NOISE_LEVEL, s->noise_level);
    return 0;
}

void sd_settings_time_ids(const sd_settings *s, float ids[6]) {
    ids[0] = (float)(s->orig_height ? s->orig_height : s->height);
    ids[1] = (float)(s->orig_width ? s->orig_width : s->width);
    ids[2] = (float)s->crop_top;
    ids[3] = (float)s->crop_left;
    ids[4] = (float)(s->target_height ? s->target_height : s->height);
    ids[5] = (float)(s->target_width ? s->target_width : s->width);
}

/* A growable string. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int need = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (need < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && b->n + (size_t)need < b->cap) {
            b->n += (size_t)need;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 256) + (size_t)need;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

/* v with each invalid UTF-8 sequence replaced by U+FFFD (caller frees), or NULL when out of memory. */
static char *utf8_repaired(const char *v) {
    size_t n = strlen(v), ncp;
    uint32_t *cps = malloc((n ? n : 1) * sizeof *cps);
    char *out = malloc(3 * n + 1); /* each bad byte (1) may become U+FFFD (3) */
    if (cps && out) {
        ncp = uni_utf8_decode_replace((const unsigned char *)v, n, cps, NULL);
        size_t k = 0;
        for (size_t i = 0; i < ncp; i++) k += (size_t)uni_utf8_encode_cp(cps[i], (unsigned char *)out + k);
        out[k] = 0;
    } else {
        free(out);
        out = NULL;
    }
    free(cps);
    return out;
}

/*
 * A1111 quotes a value with JSON escaping when it holds ',', ':' or a newline; we also quote one that
 * starts with '"' or a space (the reader would take it for JSON, or drop the space). Invalid UTF-8
 * (a model file named in Latin-1) becomes U+FFFD, so the text is always UTF-8, as PNG's iTXt wants.
 */
static void sb_value(sbuf *b, const char *v) {
    char *fixed = NULL;
    if (!uni_utf8_is_valid((const unsigned char *)v, strlen(v))) {
        if (!(fixed = utf8_repaired(v))) {
            b->oom = 1;
            return;
        }
        v = fixed;
    }
    if (!strpbrk(v, ",:\n") && v[0] != '"' && v[0] != ' ') {
        sb_add(b, "%s", v);
    } else {
        json_t *s = json_string(v);
        char *q = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
        if (q) sb_add(b, "%s", q);
        else b->oom = 1;
        free(q);
        json_decref(s);
    }
    free(fixed);
}

/* Shortest decimal form that reads back as the same float ("7.5", "0.6"). */
static void fmt_float(char *buf, size_t n, float v) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtof(buf, NULL) == v) return;
    }
}

/* The same for a double. */
static void fmt_double(char *buf, size_t n, double v) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

char *sd_settings_format_a1111(const sd_settings *s, const char *model_hash, const char *model_name) {
    sbuf b = {0};
    char cfg[32], st[32];
    fmt_float(cfg, sizeof cfg, s->cfg_scale);
    sb_add(&b, "%s\n", s->prompt ? s->prompt : "");
    if (s->negative && *s->negative) sb_add(&b, "Negative prompt: %s\n", s->negative);
    sb_add(&b, "Steps: %d, Sampler: ", s->steps);
    sb_value(&b, sampler_kind_a1111_name(s->sampler, s->karras));
    sb_add(&b, ", CFG scale: %s, Seed: %lld, Size: %dx%d", cfg, (long long)s->seed, s->width, s->height);
    if (model_hash && *model_hash) {
        sb_add(&b, ", Model hash: ");
        sb_value(&b, model_hash);
    }
    if (model_name && *model_name) {
        sb_add(&b, ", Model: ");
        sb_value(&b, model_name);
    }
    if (s->init_image && !s->upscale) {
        fmt_double(st, sizeof st, s->strength);
        sb_add(&b, ", Denoising strength: %s", st);
    }
    if (s->clip_skip > 1) sb_add(&b, ", Clip skip: %d", s->clip_skip);
    if (s->eta > 0) {
        fmt_float(st, sizeof st, s->eta);
        sb_add(&b, ", Eta: %s", st);
    }
    if (s->orig_width || s->orig_height) sb_add(&b, ", Original size: %dx%d", s->orig_width, s->orig_height);
    if (s->crop_top) sb_add(&b, ", Crop top: %d", s->crop_top);
    if (s->crop_left) sb_add(&b, ", Crop left: %d", s->crop_left);
    if (s->target_width || s->target_height) sb_add(&b, ", Target size: %dx%d", s->target_width, s->target_height);
    if (s->rng == SD_RNG_CUDA) sb_add(&b, ", RNG: NV");
    if (s->upscale) sb_add(&b, ", Noise level: %d", s->noise_level);
    if (s->bf16) sb_add(&b, ", Precision: bf16"); /* fp32 (the default) is not written: older files read the same */
    if (s->lora_hashes && *s->lora_hashes) {
        sb_add(&b, ", Lora hashes: ");
        sb_value(&b, s->lora_hashes);
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

void sd_settings_parsed_free(sd_settings_parsed *p) {
    free(p->prompt);
    free(p->negative);
    free(p->model_name);
    free(p->lora_hashes);
    memset(p, 0, sizeof *p);
}

/* Reads one "Key: value" pair at *pp (value possibly JSON-quoted); advances past the comma. */
static int next_pair(const char **pp, char *key, size_t ksz, char **val) {
    const char *p = *pp;
    while (*p == ' ' || *p == ',') p++;
    if (!*p) return 0;
    const char *colon = strchr(p, ':');
    if (!colon) return 0;
    size_t kl = (size_t)(colon - p);
    if (kl >= ksz) kl = ksz - 1;
    memcpy(key, p, kl);
    key[kl] = 0;
    p = colon + 1;
    while (*p == ' ') p++;
    if (*p == '"') {
        const char *q = p + 1;
        while (*q && *q != '"') q += (*q == '\\' && q[1]) ? 2 : 1;
        json_error_t je;
        json_t *s = json_loadb(p, (size_t)(q + 1 - p), JSON_DECODE_ANY, &je);
        *val = strdup(s && json_is_string(s) ? json_string_value(s) : "");
        json_decref(s);
        p = *q ? q + 1 : q;
    } else {
        const char *e = strchr(p, ',');
        if (!e) e = p + strlen(p);
        *val = strndup(p, (size_t)(e - p));
        p = e;
    }
    *pp = p;
    return *val != NULL;
}

int sd_settings_parse_a1111(const char *text, sd_settings_parsed *out, sd_error *err) {
    memset(out, 0, sizeof *out);
    sd_settings_default(&out->s);
    out->s.strength = 0;
    /* the parameter line is the last line that starts with "Steps: " */
    const char *last = NULL;
    for (const char *p = text; p; p = strchr(p, '\n')) {
        if (*p == '\n') p++;
        if (!strncmp(p, "Steps: ", 7)) last = p;
        if (!*p) break;
    }
    if (!last) return sd_err(err, SD_EINPUT, "not AUTOMATIC1111 parameters: no 'Steps:' line");
    const char *neg = NULL;
    for (const char *p = text; p && p < last; p = strchr(p, '\n')) {
        if (*p == '\n') p++;
        if (!strncmp(p, "Negative prompt: ", 17)) {
            neg = p;
            break;
        }
    }
    const char *pend = neg ? neg : last;
    size_t pl = (size_t)(pend - text);
    while (pl && text[pl - 1] == '\n') pl--;
    out->prompt = strndup(text, pl);
    if (neg) {
        size_t nl = (size_t)(last - (neg + 17));
        while (nl && neg[17 + nl - 1] == '\n') nl--;
        out->negative = strndup(neg + 17, nl);
    } else {
        out->negative = strdup("");
    }
    if (!out->prompt || !out->negative) {
        sd_settings_parsed_free(out);
        return sd_err(err, SD_ENOMEM, "out of memory");
    }
    char *line = strndup(last, strcspn(last, "\n")); /* any length: many LoRA hashes make it long */
    if (!line) {
        sd_settings_parsed_free(out);
        return sd_err(err, SD_ENOMEM, "out of memory");
    }
    const char *p = line;
    char key[64], *val;
    int rc = 0;
    while (rc == 0 && next_pair(&p, key, sizeof key, &val)) {
        if (!strcmp(key, "Steps")) out->s.steps = atoi(val);
        else if (!strcmp(key, "CFG scale")) out->s.cfg_scale = strtof(val, NULL);
        else if (!strcmp(key, "Seed")) out->s.seed = strtoll(val, NULL, 10);
        else if (!strcmp(key, "Size")) {
            if (sscanf(val, "%dx%d", &out->s.width, &out->s.height) != 2)
                rc = sd_err(err, SD_EINPUT, "bad Size '%s'", val);
        } else if (!strcmp(key, "Sampler")) {
            int found = 0;
            for (int k = 0; k < SD_SAMPLER_COUNT && !found; k++) {
                for (int karras = 0; karras < 2 && !found; karras++) {
                    if (!strcmp(val, sampler_kind_a1111_name((sampler_kind)k, karras))) {
                        out->s.sampler = (sampler_kind)k;
                        out->s.karras = karras;
                        found = 1;
                    }
                }
            }
            if (!found) rc = sd_err(err, SD_EINPUT, "unknown sampler '%s'", val);
        } else if (!strcmp(key, "Model hash")) snprintf(out->model_hash, sizeof out->model_hash, "%s", val);
        else if (!strcmp(key, "Model")) {
            free(out->model_name);
            out->model_name = strdup(val);
        } else if (!strcmp(key, "Denoising strength")) out->s.strength = strtod(val, NULL);
        else if (!strcmp(key, "Clip skip")) out->s.clip_skip = atoi(val);
        else if (!strcmp(key, "Eta")) out->s.eta = strtof(val, NULL);
        else if (!strcmp(key, "Original size") || !strcmp(key, "Target size")) {
            int *w = key[0] == 'O' ? &out->s.orig_width : &out->s.target_width;
            int *h = key[0] == 'O' ? &out->s.orig_height : &out->s.target_height;
            if (sscanf(val, "%dx%d", w, h) != 2) rc = sd_err(err, SD_EINPUT, "bad %s '%s'", key, val);
        } else if (!strcmp(key, "Crop top")) out->s.crop_top = atoi(val);
        else if (!strcmp(key, "Crop left")) out->s.crop_left = atoi(val);
        else if (!strcmp(key, "RNG")) {
            if (!strcmp(val, "NV")) out->s.rng = SD_RNG_CUDA;
            else if (!strcmp(val, "CPU")) out->s.rng = SD_RNG_CPU;
            else rc = sd_err(err, SD_EINPUT, "RNG '%s' is not supported (NV or CPU)", val);
        } else if (!strcmp(key, "Noise level")) {
            out->s.upscale = 1;
            out->s.noise_level = atoi(val);
        } else if (!strcmp(key, "Precision")) {
            if (!strcmp(val, "bf16")) out->s.bf16 = 1;
            else if (!strcmp(val, "fp32")) out->s.bf16 = 0;
            else rc = sd_err(err, SD_EINPUT, "Precision '%s' is not supported (fp32 or bf16)", val);
        } else if (!strcmp(key, "Lora hashes")) {
            free(out->lora_hashes);
            out->lora_hashes = strdup(val);
        }
        free(val);
    }
    free(line);
    out->s.prompt = out->prompt;
    out->s.negative = neg ? out->negative : NULL; /* no "Negative prompt:" line: none given (SDXL: zeros) */
    out->s.lora_hashes = out->lora_hashes;
    if (rc < 0) sd_settings_parsed_free(out);
    return rc;
}
