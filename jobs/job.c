#include "job.h"

#include "lora_set.h"

#include <stdlib.h>
#include <string.h>

void sd_job_free(sd_job *j) {
    if (!j) return;
    free(j->prompt);
    free(j->negative_prompt);
    free(j->init_image);
    free(j->mask);
    free(j->source);
    free(j->claimed_by);
    free(j->output_path);
    free(j->error);
    free(j->loras);
    free(j->lora_dir);
    free(j->lora_set);
    memset(j, 0, sizeof *j);
}

static int dup_field(char **dst, const char *src) {
    *dst = NULL;
    if (!src) return 0;
    *dst = strdup(src);
    return *dst ? 0 : -1;
}

int sd_job_copy(sd_job *dst, const sd_job *src, sd_error *err) {
    *dst = *src;
    char *const *from[] = {&src->prompt,     &src->negative_prompt, &src->init_image,  &src->mask,
                           &src->source,     &src->claimed_by,      &src->output_path, &src->error,
                           &src->loras,      &src->lora_dir,        &src->lora_set};
    char **to[] = {&dst->prompt, &dst->negative_prompt, &dst->init_image,  &dst->mask,  &dst->source, &dst->claimed_by,
                   &dst->output_path, &dst->error, &dst->loras, &dst->lora_dir, &dst->lora_set};
    int bad = 0;
    for (size_t i = 0; i < sizeof to / sizeof to[0]; i++)
        if (dup_field(to[i], *from[i]) < 0) bad = 1;
    if (bad) {
        sd_job_free(dst);
        return sd_err(err, SD_ENOMEM, "out of memory copying job %lld", (long long)src->id);
    }
    return 0;
}

static const char *const status_names[] = {"pending", "running", "done", "failed"};

const char *sd_job_status_name(sd_job_status s) {
    return (unsigned)s < sizeof status_names / sizeof status_names[0] ? status_names[s] : "?";
}

int sd_job_status_parse(const char *name, sd_job_status *out) {
    for (size_t i = 0; i < sizeof status_names / sizeof status_names[0]; i++)
        if (!strcmp(name, status_names[i])) {
            *out = (sd_job_status)i;
            return 0;
        }
    return -1;
}

int sd_job_utf8_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c == 0) return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned cp, min;
        if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07, min = 0x10000;
        else return 0;
        if (i + len > n) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += len;
    }
    return 1;
}

static int text_ok(const char *s) { return !s || sd_job_utf8_valid(s, strlen(s)); }

void sd_job_settings(const sd_job *j, sd_settings *s) {
    sd_settings_default(s);
    s->prompt = j->prompt;
    s->negative = j->negative_prompt && *j->negative_prompt ? j->negative_prompt : NULL; /* "" = none */
    s->steps = j->steps;
    s->cfg_scale = (float)j->cfg_scale;
    s->sampler = j->sampler;
    s->karras = j->karras;
    s->seed = j->seed;
    s->width = j->width;
    s->height = j->height;
    s->clip_skip = j->clip_skip;
    s->init_image = j->init_image;
    s->mask = j->mask;
    s->strength = j->strength;
    s->orig_width = j->orig_width;
    s->orig_height = j->orig_height;
    s->crop_top = j->crop_top;
    s->crop_left = j->crop_left;
    s->target_width = j->target_width;
    s->target_height = j->target_height;
    s->upscale = j->upscale;
    s->noise_level = j->upscale ? j->noise_level : s->noise_level;
    s->rng = j->rng;
    s->prompt_syntax = j->prompt_syntax;
}

int sd_job_lora_set(const sd_job *j, sd_lora_set *set, sd_error *err) {
    return sd_lora_set_build(set, j->loras, j->prompt, j->prompt_syntax, j->lora_dir, err);
}

int sd_job_lora_label(const sd_job *j, char **label, sd_error *err) {
    sd_lora_set set;
    *label = NULL;
    /* the label names LoRAs, it opens no file: tags of a job without a lora_dir resolve at run
       (run --lora-dir), so any folder does here */
    int rc = sd_lora_set_build(&set, j->loras, j->prompt, j->prompt_syntax, j->lora_dir ? j->lora_dir : ".", err);
    if (rc < 0) return rc;
    *label = sd_lora_set_label(&set);
    sd_lora_set_free(&set);
    return *label ? 0 : sd_err(err, SD_ENOMEM, "out of memory");
}

int sd_job_spec_check(const sd_job *j, sd_error *err) {
    /* "" is an unconditional job; a prompt of blanks is a mistake */
    if (!j->prompt || (*j->prompt && !j->prompt[strspn(j->prompt, " \t\r\n")]))
        return sd_err(err, SD_EINPUT, "prompt is empty");
    const char *texts[] = {j->prompt, j->negative_prompt, j->init_image, j->mask};
    const char *names[] = {"prompt", "negative_prompt", "init_image", "mask"};
    for (int i = 0; i < 4; i++)
        if (!text_ok(texts[i])) return sd_err(err, SD_EINPUT, "%s is not valid UTF-8 text", names[i]);
    if ((!j->init_image || j->upscale) && j->strength != 0)
        return sd_err(err, SD_EINPUT, "strength needs an init_image (and is not for upscales)");
    if (!*j->prompt && (j->init_image || (j->negative_prompt && *j->negative_prompt)))
        return sd_err(err, SD_EINPUT, "an unconditional job (no prompt) takes no negative prompt or init image");
    char *label;
    int rc = sd_job_lora_label(j, &label, err); /* malformed tags and LoRA entries are bad rows */
    if (rc < 0) return rc;
    free(label);
    /* a spec's seed may be -1 (derived at enqueue); everything else is checked as the renderer will, with
     * SD's factor 8 for sizes, 4 for the x4 upscaler's outputs; unconditional (pixel-space) sizes are
     * checked against the model when rendered */
    sd_settings s;
    sd_job_settings(j, &s);
    if (s.seed == -1) s.seed = 0;
    int f = j->upscale ? 4 : *j->prompt ? sd_settings_sd_vae_scale() : 1;
    return sd_settings_check_for(&s, f, err);
}
