/* Selections of jobs by their settings (--where KEY=VALUE): parsing, JSON, matching a job. */
#include "jobsel.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rng.h"
#include "sampler.h"
#include "settings.h"

typedef struct key_info {
    const char *key;
    jobsel_type type;
} key_info;

/* The whitelist: settings columns of the jobs table (what to render, never a job's state). */
static const key_info keys[] = {
    {"cfg_scale", JOBSEL_REAL}, {"steps", JOBSEL_INT},      {"sampler", JOBSEL_TEXT},
    {"karras", JOBSEL_INT},     {"width", JOBSEL_INT},      {"height", JOBSEL_INT},
    {"seed", JOBSEL_INT},       {"clip_skip", JOBSEL_INT},  {"strength", JOBSEL_REAL},
    {"negative_prompt", JOBSEL_TEXT}, {"task", JOBSEL_TEXT}, {"rng", JOBSEL_TEXT},
    {"noise_level", JOBSEL_INT}, {"prompt_syntax", JOBSEL_TEXT}, {"lora_set", JOBSEL_TEXT},
    {"prompt", JOBSEL_TEXT},
};
#define N_KEYS (sizeof keys / sizeof *keys)

const char *jobsel_keys(void) {
    return "cfg_scale, steps, sampler, karras, width, height, seed, clip_skip, strength, negative_prompt, task, "
           "rng, noise_level, prompt_syntax, lora_set, prompt";
}

int jobsel_key_type(const char *key, const char **canonical) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(key, keys[i].key)) {
            if (canonical) *canonical = keys[i].key;
            return (int)keys[i].type;
        }
    /* the command-line spelling of cfg_scale */
    if (!strcmp(key, "cfg")) return jobsel_key_type("cfg_scale", canonical);
    return -1;
}

/* A text value in the form the table stores it (sampler "dpmpp_2m" -> "dpm++2m"); NULL if not valid. */
static const char *canonical_text(const char *key, const char *v) {
    if (!strcmp(key, "sampler")) {
        sampler_kind k;
        return sampler_kind_parse(v, &k) < 0 ? NULL : sampler_kind_name(k);
    }
    if (!strcmp(key, "rng")) {
        sd_rng_kind k;
        return sd_rng_kind_parse(v, &k) < 0 ? NULL : sd_rng_kind_name(k);
    }
    if (!strcmp(key, "prompt_syntax")) {
        sd_prompt_syntax k;
        return sd_prompt_syntax_parse(v, &k) < 0 ? NULL : sd_prompt_syntax_name(k);
    }
    if (!strcmp(key, "task")) return !strcmp(v, "generate") || !strcmp(v, "upscale") ? v : NULL;
    return v;
}

int jobsel_add(jobsel *sel, const char *kv, sd_error *err) {
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return sd_err(err, SD_EINPUT, "--where %s: expected KEY=VALUE (keys: %s)", kv, jobsel_keys());
    char key[64];
    snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
    const char *v = eq + 1, *canon = NULL;
    int type = (size_t)(eq - kv) < sizeof key ? jobsel_key_type(key, &canon) : -1;
    if (type < 0) return sd_err(err, SD_EINPUT, "--where %s: unknown key '%s' (keys: %s)", kv, key, jobsel_keys());
    for (int i = 0; i < sel->n; i++)
        if (!strcmp(sel->t[i].key, canon)) return sd_err(err, SD_EINPUT, "--where %s: key '%s' given twice", kv, canon);
    if (sel->n >= JOBSEL_MAX) return sd_err(err, SD_EINPUT, "--where %s: at most %d terms", kv, JOBSEL_MAX);
    jobsel_term t = {.key = canon, .type = (jobsel_type)type};
    char *end = NULL;
    errno = 0;
    if (type == JOBSEL_INT) {
        if (!strcmp(canon, "karras") && (!strcasecmp(v, "true") || !strcasecmp(v, "false"))) t.i = !strcasecmp(v, "true");
        else {
            long long x = strtoll(v, &end, 10);
            if (!*v || *end || errno) return sd_err(err, SD_EINPUT, "--where %s: %s takes an integer", kv, canon);
            t.i = x;
        }
    } else if (type == JOBSEL_REAL) {
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x)) return sd_err(err, SD_EINPUT, "--where %s: %s takes a number", kv, canon);
        t.d = x;
    } else {
        const char *c = canonical_text(canon, v);
        if (!c) return sd_err(err, SD_EINPUT, "--where %s: '%s' is not a known %s", kv, v, canon);
        if (!(t.s = strdup(c))) return sd_err(err, SD_ENOMEM, "out of memory");
    }
    sel->t[sel->n++] = t;
    return 0;
}

void jobsel_free(jobsel *sel) {
    for (int i = 0; i < sel->n; i++) free(sel->t[i].s);
    memset(sel, 0, sizeof *sel);
}

json_t *jobsel_json(const jobsel *sel) {
    json_t *o = json_object();
    for (int i = 0; o && i < sel->n; i++) {
        const jobsel_term *t = &sel->t[i];
        json_t *v = t->type == JOBSEL_INT ? json_integer(t->i) : t->type == JOBSEL_REAL ? json_real(t->d) : json_string(t->s);
        json_object_set_new(o, t->key, v);
    }
    return o;
}

void jobsel_describe(const jobsel *sel, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < sel->n && len < n; i++) {
        const jobsel_term *t = &sel->t[i];
        const char *sep = i ? ", " : "";
        if (t->type == JOBSEL_INT) len += (size_t)snprintf(buf + len, n - len, "%s%s=%lld", sep, t->key, (long long)t->i);
        else if (t->type == JOBSEL_REAL) len += (size_t)snprintf(buf + len, n - len, "%s%s=%g", sep, t->key, t->d);
        else len += (size_t)snprintf(buf + len, n - len, "%s%s=%s", sep, t->key, t->s);
    }
}

/* Job j's value of a known key: a number into *d (returns 1) or a string (returns 0); -1: unknown. */
static int job_value(const sd_job *j, const char *key, double *d, const char **s) {
    *s = NULL;
    *d = 0;
    if (!strcmp(key, "cfg") || !strcmp(key, "cfg_scale")) *d = j->cfg_scale;
    else if (!strcmp(key, "steps")) *d = j->steps;
    else if (!strcmp(key, "karras")) *d = j->karras;
    else if (!strcmp(key, "width")) *d = j->width;
    else if (!strcmp(key, "height")) *d = j->height;
    else if (!strcmp(key, "seed")) *d = (double)j->seed;
    else if (!strcmp(key, "clip_skip")) *d = j->clip_skip;
    else if (!strcmp(key, "strength")) *d = j->strength;
    else if (!strcmp(key, "noise_level")) *d = j->noise_level;
    else if (!strcmp(key, "sampler")) *s = sampler_kind_name(j->sampler);
    else if (!strcmp(key, "negative_prompt")) *s = j->negative_prompt ? j->negative_prompt : "";
    else if (!strcmp(key, "task")) *s = j->upscale ? "upscale" : "generate";
    else if (!strcmp(key, "rng")) *s = sd_rng_kind_name(j->rng);
    else if (!strcmp(key, "prompt_syntax")) *s = sd_prompt_syntax_name(j->prompt_syntax);
    else if (!strcmp(key, "lora_set")) *s = j->lora_set ? j->lora_set : "";
    else if (!strcmp(key, "prompt")) *s = j->prompt ? j->prompt : "";
    else return -1;
    return *s ? 0 : 1;
}

int jobsel_match(const jobsel *sel, const sd_job *j) {
    for (int i = 0; i < sel->n; i++) {
        const jobsel_term *t = &sel->t[i];
        double d;
        const char *s;
        int k = job_value(j, t->key, &d, &s);
        if (k < 0) return 0;
        if (t->type == JOBSEL_INT && d != (double)t->i) return 0;
        if (t->type == JOBSEL_REAL && d != t->d) return 0;
        if (t->type == JOBSEL_TEXT && strcmp(s, t->s)) return 0;
    }
    return 1;
}

int jobsel_job_text(const sd_job *j, const char *key, char *buf, size_t n) {
    double d;
    const char *s;
    int k = job_value(j, key, &d, &s);
    if (k < 0) return -1;
    if (k == 0) snprintf(buf, n, "%s", s);
    else if (!strcmp(key, "seed")) snprintf(buf, n, "%lld", (long long)j->seed);
    else snprintf(buf, n, "%.15g", d);
    return 0;
}

int jobsel_job_number(const sd_job *j, const char *key, double *out) {
    const char *s;
    return job_value(j, key, out, &s);
}
