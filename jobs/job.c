#include "job.h"

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
                           &src->source,     &src->claimed_by,      &src->output_path, &src->error};
    char **to[] = {&dst->prompt, &dst->negative_prompt, &dst->init_image,  &dst->mask,
                   &dst->source, &dst->claimed_by,      &dst->output_path, &dst->error};
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

int sd_job_spec_check(const sd_job *j, sd_error *err) {
    if (!j->prompt || !j->prompt[strspn(j->prompt, " \t\r\n")]) return sd_err(err, SD_EINPUT, "prompt is empty");
    const char *texts[] = {j->prompt, j->negative_prompt, j->init_image, j->mask};
    const char *names[] = {"prompt", "negative_prompt", "init_image", "mask"};
    for (int i = 0; i < 4; i++)
        if (!text_ok(texts[i])) return sd_err(err, SD_EINPUT, "%s is not valid UTF-8 text", names[i]);
    if (j->seed < -1) return sd_err(err, SD_EINPUT, "seed must be >= 0, got %lld", (long long)j->seed);
    if (j->steps < 1 || j->steps > SD_JOB_MAX_STEPS)
        return sd_err(err, SD_EINPUT, "steps must be in 1..%d, got %d", SD_JOB_MAX_STEPS, j->steps);
    if (!(j->cfg_scale >= 0 && j->cfg_scale <= SD_JOB_MAX_CFG))
        return sd_err(err, SD_EINPUT, "cfg_scale must be in 0..%g, got %g", SD_JOB_MAX_CFG, j->cfg_scale);
    if ((unsigned)j->sampler >= SD_SAMPLER_COUNT) return sd_err(err, SD_EINPUT, "unknown sampler");
    if (j->karras && !sd_sampler_has_sigmas(j->sampler))
        return sd_err(err, SD_EINPUT, "karras needs a sigma-based sampler; '%s' has none", sd_sampler_name(j->sampler));
    const int side[2] = {j->width, j->height};
    const char *side_name[2] = {"width", "height"};
    for (int i = 0; i < 2; i++)
        if (side[i] < 8 || side[i] > SD_JOB_MAX_SIDE || side[i] % 8)
            return sd_err(err, SD_EINPUT, "%s must be a positive multiple of 8 up to %d, got %d", side_name[i],
                          SD_JOB_MAX_SIDE, side[i]);
    if (j->clip_skip < 1 || j->clip_skip > SD_JOB_MAX_CLIP_SKIP)
        return sd_err(err, SD_EINPUT, "clip_skip must be in 1..%d (1 = last layer), got %d", SD_JOB_MAX_CLIP_SKIP,
                      j->clip_skip);
    if (j->mask && !j->init_image) return sd_err(err, SD_EINPUT, "mask needs an init_image");
    if (j->init_image && !(j->strength > 0 && j->strength <= 1))
        return sd_err(err, SD_EINPUT, "strength must be in (0, 1], got %g", j->strength);
    if (!j->init_image && j->strength != 0) return sd_err(err, SD_EINPUT, "strength needs an init_image");
    return 0;
}
