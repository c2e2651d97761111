/* Reading .txt, .jsonl and .csv prompt files into validated job specs (see enqueue.h). */
#include "enqueue.h"

#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "csv.h"
#include "fsutil.h"
#include "pngio.h"

/* The largest low-res picture an upscale row may name (sdrender upscale's default --max-pixels). */
#define ENQUEUE_MAX_UPSCALE_PIXELS (1024L * 1024L)
#include "lora_set.h"

void enqueue_options_init(enqueue_options *o) {
    memset(o, 0, sizeof *o);
    o->defaults.steps = 20;
    o->defaults.cfg_scale = 7.5;
    o->defaults.sampler = SD_SAMPLER_PNDM;
    o->defaults.width = 512;
    o->defaults.height = 512;
    o->defaults.clip_skip = 1;
}

void enqueue_batch_free(enqueue_batch *b) {
    for (size_t i = 0; i < b->n; i++) sd_job_free(&b->jobs[i]);
    free(b->jobs);
    memset(b, 0, sizeof *b);
}

/* ---- the fields a row may give ---- */

typedef enum {
    F_PROMPT,
    F_NEGATIVE,
    F_SEED,
    F_STEPS,
    F_CFG,
    F_SAMPLER,
    F_KARRAS,
    F_WIDTH,
    F_HEIGHT,
    F_CLIP_SKIP,
    F_INIT_IMAGE,
    F_MASK,
    F_STRENGTH,
    F_ORIG_W, /* SDXL size conditioning */
    F_ORIG_H,
    F_CROP_TOP,
    F_CROP_LEFT,
    F_TARGET_W,
    F_TARGET_H,
    F_TASK,
    F_RNG,
    F_NOISE_LEVEL,
    F_PROMPT_SYNTAX,
    F_LORAS,
    F_LORA_DIR,
    F_COUNT
} field_id;

typedef enum { K_TEXT, K_INT, K_NUM, K_BOOL, K_LIST } field_kind;

static const struct {
    const char *name;
    field_kind kind;
} fields[F_COUNT] = {
    [F_PROMPT] = {"prompt", K_TEXT},        [F_NEGATIVE] = {"negative_prompt", K_TEXT},
    [F_SEED] = {"seed", K_INT},             [F_STEPS] = {"steps", K_INT},
    [F_CFG] = {"cfg_scale", K_NUM},         [F_SAMPLER] = {"sampler", K_TEXT},
    [F_KARRAS] = {"karras", K_BOOL},        [F_WIDTH] = {"width", K_INT},
    [F_HEIGHT] = {"height", K_INT},         [F_CLIP_SKIP] = {"clip_skip", K_INT},
    [F_INIT_IMAGE] = {"init_image", K_TEXT}, [F_MASK] = {"mask", K_TEXT},
    [F_STRENGTH] = {"strength", K_NUM},
    [F_ORIG_W] = {"original_width", K_INT}, [F_ORIG_H] = {"original_height", K_INT},
    [F_CROP_TOP] = {"crop_top", K_INT},     [F_CROP_LEFT] = {"crop_left", K_INT},
    [F_TARGET_W] = {"target_width", K_INT}, [F_TARGET_H] = {"target_height", K_INT},
    [F_TASK] = {"task", K_TEXT},
    [F_RNG] = {"rng", K_TEXT},              [F_NOISE_LEVEL] = {"noise_level", K_INT},
    [F_PROMPT_SYNTAX] = {"prompt_syntax", K_TEXT},
    [F_LORAS] = {"loras", K_LIST},          [F_LORA_DIR] = {"lora_dir", K_TEXT},
};

/* The task key's values: what the row asks for, checked against the fields it gives. */
typedef enum { T_AUTO = 0, T_TXT2IMG, T_IMG2IMG, T_INPAINT, T_UNCONDITIONAL, T_UPSCALE } row_task;
static const char *const task_names[] = {"", "txt2img", "img2img", "inpaint", "unconditional", "upscale"};
#define TASK_LIST "txt2img, img2img, inpaint, unconditional, upscale"

#define KNOWN_FIELDS                                                                                           \
    "prompt (or caption), negative_prompt, seed, steps, cfg_scale, sampler, karras, width, height, clip_skip, " \
    "init_image, mask, strength, task, rng, noise_level, original_width, original_height, crop_top, crop_left, " \
    "target_width, target_height, prompt_syntax, loras, lora_dir"

/* Field id of a key or column name ("caption" is the prompt); -1 when unknown. */
static int field_lookup(const char *name, int ignore_case) {
    int (*cmp)(const char *, const char *) = ignore_case ? strcasecmp : strcmp;
    if (!cmp(name, "caption")) return F_PROMPT;
    for (int i = 0; i < F_COUNT; i++)
        if (!cmp(name, fields[i].name)) return i;
    return -1;
}

/* A row being read: the job so far and which fields the row gave. */
typedef struct row {
    sd_job job;
    row_task task;
    int given[F_COUNT];
    const char *path; /* the prompt file, for relative image paths */
} row;

static void row_begin(row *r, const char *path) {
    memset(r, 0, sizeof *r);
    r->path = path;
    r->job.seed = -1;
}

static int mark_given(row *r, int f, const char *name, sd_error *err) {
    if (r->given[f])
        return sd_err(err, SD_EINPUT, "%s given twice%s", name, f == F_PROMPT ? " (prompt and caption)" : "");
    r->given[f] = 1;
    return 0;
}

/* Absolute path of an image named in a row, relative to the prompt file's folder. */
static int resolve_image(const row *r, const char *name, const char *rel, char **out, sd_error *err) {
    *out = NULL;
    if (!*rel) return sd_err(err, SD_EINPUT, "%s is empty", name);
    char *candidate;
    if (rel[0] == '/') {
        candidate = strdup(rel);
    } else {
        char *copy = strdup(r->path);
        candidate = copy ? sd_fs_path_join(dirname(copy), rel) : NULL;
        free(copy);
    }
    if (!candidate) return sd_err(err, SD_ENOMEM, "out of memory");
    char *abs = realpath(candidate, NULL);
    int rc = 0;
    if (!abs || !sd_fs_is_file(abs))
        rc = sd_err(err, SD_EINPUT, "%s '%s' is not a readable file (%s: %s)", name, rel, candidate,
                    abs ? "not a regular file" : strerror(errno));
    free(candidate);
    if (rc < 0) {
        free(abs);
        return rc;
    }
    *out = abs;
    return 0;
}

/* rel made absolute against the prompt file's folder (the file need not exist yet); caller frees. */
static char *path_from_row(const row *r, const char *rel) {
    if (rel[0] == '/') return strdup(rel);
    char *copy = strdup(r->path);
    char *dir = copy ? realpath(dirname(copy), NULL) : NULL;
    char *p = dir ? sd_fs_path_join(dir, rel) : NULL;
    free(copy);
    free(dir);
    return p;
}

/* The folder of <lora:NAME:M> tags, absolute; it must exist. */
static int resolve_dir(const row *r, const char *rel, char **out, sd_error *err) {
    *out = NULL;
    if (!*rel) return sd_err(err, SD_EINPUT, "lora_dir is empty");
    char *p = path_from_row(r, rel);
    if (!p) return sd_err(err, SD_ENOMEM, "out of memory");
    if (!sd_fs_is_dir(p)) {
        int rc = sd_err(err, SD_EINPUT, "lora_dir '%s' is not a folder (%s)", rel, p);
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* Appends one "FILE[:MULTIPLIER]" LoRA to the job's list (the file made absolute, the multiplier kept). */
static int add_lora(row *r, const char *spec, sd_error *err) {
    sd_lora_use u;
    int rc = sd_lora_use_parse(spec, &u, err);
    if (rc < 0) return rc;
    char *abs = path_from_row(r, u.path), *one = abs ? sd_lora_spec_format(abs, u.te) : NULL;
    size_t have = r->job.loras ? strlen(r->job.loras) : 0, need = (one ? strlen(one) : 0) + 2;
    char *g = one ? realloc(r->job.loras, have + need) : NULL;
    if (g) {
        r->job.loras = g;
        snprintf(g + have, need, "%s%s", have ? "\n" : "", one);
    }
    free(abs);
    free(one);
    sd_lora_use_free(&u);
    return g ? 0 : sd_err(err, SD_ENOMEM, "out of memory");
}

static int set_text(row *r, int f, const char *s, sd_error *err) {
    const char *name = fields[f].name;
    if (fields[f].kind != K_TEXT) return sd_err(err, SD_EINPUT, "%s must not be a string", name);
    int rc = mark_given(r, f, name, err);
    if (rc < 0) return rc;
    if (!sd_job_utf8_valid(s, strlen(s))) return sd_err(err, SD_EINPUT, "%s is not valid UTF-8 text", name);
    char **dst = NULL;
    switch (f) {
    case F_PROMPT: dst = &r->job.prompt; break;
    case F_NEGATIVE: dst = &r->job.negative_prompt; break;
    case F_SAMPLER:
        if (sampler_kind_parse(s, &r->job.sampler) < 0)
            return sd_err(err, SD_EINPUT, "unknown sampler '%s' (known: %s)", s, sampler_kind_list());
        return 0;
    case F_TASK:
        for (int t = T_TXT2IMG; t <= T_UPSCALE; t++)
            if (!strcmp(s, task_names[t])) {
                r->task = (row_task)t;
                return 0;
            }
        return sd_err(err, SD_EINPUT, "unknown task '%s' (known: %s)", s, TASK_LIST);
    case F_RNG:
        if (sd_rng_kind_parse(s, &r->job.rng) < 0) return sd_err(err, SD_EINPUT, "unknown rng '%s' (cpu or cuda)", s);
        return 0;
    case F_INIT_IMAGE: return resolve_image(r, name, s, &r->job.init_image, err);
    case F_MASK: return resolve_image(r, name, s, &r->job.mask, err);
    case F_LORA_DIR: return resolve_dir(r, s, &r->job.lora_dir, err);
    case F_PROMPT_SYNTAX:
        if (sd_prompt_syntax_parse(s, &r->job.prompt_syntax) < 0)
            return sd_err(err, SD_EINPUT, "prompt_syntax must be plain or a1111, got '%s'", s);
        return 0;
    default: return sd_err(err, SD_EINTERNAL, "field %s is not text", name);
    }
    *dst = strdup(s);
    return *dst ? 0 : sd_err(err, SD_ENOMEM, "out of memory");
}

static int set_int(row *r, int f, long long v, sd_error *err) {
    const char *name = fields[f].name;
    if (fields[f].kind != K_INT) return sd_err(err, SD_EINPUT, "%s must not be a number", name);
    int rc = mark_given(r, f, name, err);
    if (rc < 0) return rc;
    if (f == F_SEED) {
        if (v < 0) return sd_err(err, SD_EINPUT, "seed must be >= 0, got %lld", v);
        r->job.seed = v;
        return 0;
    }
    if (v < INT_MIN || v > INT_MAX) return sd_err(err, SD_EINPUT, "%s is out of range: %lld", name, v);
    int *dst = f == F_STEPS ? &r->job.steps : f == F_WIDTH ? &r->job.width : f == F_HEIGHT ? &r->job.height
               : f == F_NOISE_LEVEL                                                 ? &r->job.noise_level
                                                                                    : &r->job.clip_skip;
    int *cond[6] = {&r->job.orig_width, &r->job.orig_height, &r->job.crop_top, &r->job.crop_left,
                    &r->job.target_width, &r->job.target_height};
    if (f >= F_ORIG_W && f <= F_TARGET_H) dst = cond[f - F_ORIG_W];
    *dst = (int)v;
    return 0;
}

static int set_num(row *r, int f, double v, sd_error *err) {
    const char *name = fields[f].name;
    if (fields[f].kind == K_INT) return sd_err(err, SD_EINPUT, "%s must be an integer, got %g", name, v);
    if (fields[f].kind != K_NUM) return sd_err(err, SD_EINPUT, "%s must not be a number", name);
    int rc = mark_given(r, f, name, err);
    if (rc < 0) return rc;
    if (!isfinite(v)) return sd_err(err, SD_EINPUT, "%s must be a finite number", name);
    if (f == F_CFG) r->job.cfg_scale = v;
    else r->job.strength = v;
    return 0;
}

static int set_bool(row *r, int f, int v, sd_error *err) {
    if (fields[f].kind != K_BOOL) return sd_err(err, SD_EINPUT, "%s must not be true/false", fields[f].name);
    int rc = mark_given(r, f, fields[f].name, err);
    if (rc < 0) return rc;
    r->job.karras = v;
    return 0;
}

/*
 * An upscale row: the output is 4x the init image (read from its PNG header, at most
 * ENQUEUE_MAX_UPSCALE_PIXELS pixels as `sdrender upscale`'s default --max-pixels), noise level 20 unless given.
 */
static int finish_upscale(row *r, sd_error *err) {
    sd_job *j = &r->job;
    if (!j->init_image) return sd_err(err, SD_EINPUT, "task upscale needs an init_image (the low-res picture)");
    if (j->mask || r->given[F_STRENGTH]) return sd_err(err, SD_EINPUT, "task upscale takes no mask or strength");
    uint8_t *rgb = NULL;
    int w, h;
    int rc = sd_png_read_rgb(j->init_image, &rgb, &w, &h, err);
    free(rgb);
    if (rc < 0) return sd_err(err, SD_EINPUT, "%s", err ? err->msg : "init_image is not a PNG picture");
    if ((long)w * h > ENQUEUE_MAX_UPSCALE_PIXELS)
        return sd_err(err, SD_EINPUT, "%s is %dx%d, more than the %ld pixels an upscale takes", j->init_image, w, h,
                      ENQUEUE_MAX_UPSCALE_PIXELS);
    if ((r->given[F_WIDTH] && j->width != 4 * w) || (r->given[F_HEIGHT] && j->height != 4 * h))
        return sd_err(err, SD_EINPUT, "an upscale of %dx%d is %dx%d; leave out width and height", w, h, 4 * w, 4 * h);
    j->width = 4 * w;
    j->height = 4 * h;
    j->upscale = 1;
    if (!r->given[F_NOISE_LEVEL]) j->noise_level = 20;
    return 0;
}

/* The row's task against what it gives: an unconditional row has no prompt (stored as ""), the
 * others need one; img2img needs an init image, inpaint a mask; noise_level is for upscales. */
static int check_task(row *r, sd_error *err) {
    sd_job *j = &r->job;
    if (r->task == T_UNCONDITIONAL) {
        if (r->given[F_PROMPT] || r->given[F_NEGATIVE] || j->init_image)
            return sd_err(err, SD_EINPUT, "task unconditional takes no prompt, negative_prompt or init_image");
        j->prompt = strdup("");
        return j->prompt ? 0 : sd_err(err, SD_ENOMEM, "out of memory");
    }
    if (!r->given[F_PROMPT]) return sd_err(err, SD_EINPUT, "no prompt");
    if (!j->prompt[strspn(j->prompt, " \t\r\n")]) return sd_err(err, SD_EINPUT, "prompt is empty");
    if (r->given[F_NOISE_LEVEL] && r->task != T_UPSCALE) return sd_err(err, SD_EINPUT, "noise_level is for task upscale");
    if (r->task == T_TXT2IMG && j->init_image) return sd_err(err, SD_EINPUT, "task txt2img takes no init_image");
    if (r->task == T_IMG2IMG && (!j->init_image || j->mask))
        return sd_err(err, SD_EINPUT, "task img2img needs an init_image and no mask");
    if (r->task == T_INPAINT && !j->mask) return sd_err(err, SD_EINPUT, "task inpaint needs an init_image and a mask");
    return 0;
}

/* Fills what the row did not give from the defaults and checks the result. */
static int row_finish(row *r, const enqueue_options *o, sd_error *err) {
    const sd_job *d = &o->defaults;
    sd_job *j = &r->job;
    int rc = check_task(r, err);
    if (rc < 0) return rc;
    if (!r->given[F_RNG]) j->rng = d->rng;
    if (r->task == T_UNCONDITIONAL) {
        j->negative_prompt = strdup("");
        if (!j->negative_prompt) return sd_err(err, SD_ENOMEM, "out of memory");
    } else if (!r->given[F_NEGATIVE]) {
        j->negative_prompt = strdup(d->negative_prompt ? d->negative_prompt : "");
        if (!j->negative_prompt) return sd_err(err, SD_ENOMEM, "out of memory");
    }
    if (!r->given[F_STEPS]) j->steps = d->steps;
    if (!r->given[F_CFG]) j->cfg_scale = d->cfg_scale;
    if (!r->given[F_SAMPLER]) j->sampler = d->sampler;
    if (!r->given[F_KARRAS]) j->karras = d->karras && sampler_kind_has_sigmas(j->sampler);
    if (!r->given[F_WIDTH]) j->width = d->width;
    if (!r->given[F_HEIGHT]) j->height = d->height;
    if (!r->given[F_CLIP_SKIP]) j->clip_skip = d->clip_skip;
    if (!r->given[F_ORIG_W]) j->orig_width = d->orig_width;
    if (!r->given[F_ORIG_H]) j->orig_height = d->orig_height;
    if (!r->given[F_CROP_TOP]) j->crop_top = d->crop_top;
    if (!r->given[F_CROP_LEFT]) j->crop_left = d->crop_left;
    if (!r->given[F_TARGET_W]) j->target_width = d->target_width;
    if (!r->given[F_TARGET_H]) j->target_height = d->target_height;
    if (r->task == T_UPSCALE && (rc = finish_upscale(r, err)) < 0) return rc;
    if (!r->given[F_STRENGTH] && j->init_image && !j->upscale)
        j->strength = d->strength > 0 ? d->strength : j->mask ? 1.0 : 0.8;
    if (!r->given[F_PROMPT_SYNTAX]) j->prompt_syntax = d->prompt_syntax;
    if (!r->given[F_LORAS] && d->loras && !(j->loras = strdup(d->loras))) return sd_err(err, SD_ENOMEM, "out of memory");
    if (!r->given[F_LORA_DIR] && d->lora_dir && !(j->lora_dir = strdup(d->lora_dir)))
        return sd_err(err, SD_ENOMEM, "out of memory");
    return sd_job_spec_check(j, err);
}

/* ---- one file ---- */

typedef struct file_state {
    const char *path;
    const enqueue_options *o;
    enqueue_batch *b;
    size_t start;     /* b->n when the file began */
    size_t bad;
    char first[SD_ERRMSG_MAX];
} file_state;

static void bad_row(file_state *fs, long line, const char *msg) {
    char text[SD_ERRMSG_MAX + 64];
    snprintf(text, sizeof text, "%s:%ld: %s", fs->path, line, msg);
    if (!fs->bad) snprintf(fs->first, sizeof fs->first, "%s", text);
    fs->bad++;
    if (fs->o->report) fs->o->report(fs->o->report_ctx, text);
}

/* Completes r and moves its job into the batch, or reports the row as bad.
 * Returns < 0 only for failures that stop the whole file (out of memory). */
static int row_end(file_state *fs, row *r, long line, int rc, sd_error *rowerr) {
    if (rc == 0) rc = row_finish(r, fs->o, rowerr);
    if (rc == 0) {
        char src[64 + PATH_MAX];
        snprintf(src, sizeof src, "%s:%ld", fs->path, line);
        r->job.source = strdup(src);
        enqueue_batch *b = fs->b;
        if (b->n == b->cap) {
            size_t cap = b->cap ? b->cap * 2 : 1024;
            sd_job *nj = realloc(b->jobs, cap * sizeof *nj);
            if (!nj) rc = sd_err(rowerr, SD_ENOMEM, "out of memory");
            else {
                b->jobs = nj;
                b->cap = cap;
            }
        }
        if (rc == 0 && !r->job.source) rc = sd_err(rowerr, SD_ENOMEM, "out of memory");
        if (rc == 0) {
            b->jobs[b->n++] = r->job;
            memset(&r->job, 0, sizeof r->job);
            return 0;
        }
    }
    sd_job_free(&r->job);
    if (rc == SD_ENOMEM) return rc;
    bad_row(fs, line, rowerr->msg);
    return 0;
}

/* Fills a row from what a reader found (a line's text, a JSON object, a CSV record); an error in
 * err makes the row bad. */
typedef int (*row_fill_fn)(const void *src, row *r, sd_error *err);

/*
 * The one path of every row of every format: fill it, complete it with the defaults and move it
 * into the batch, or report it as "FILE:LINE: what is wrong". Returns < 0 (err: "FILE:LINE: what")
 * only for failures that stop the whole file (out of memory).
 */
static int row_read(file_state *fs, long line, row_fill_fn fill, const void *src, sd_error *err) {
    row r;
    row_begin(&r, fs->path);
    sd_error rowerr = {0};
    int rc = fill(src, &r, &rowerr);
    rc = row_end(fs, &r, line, rc, &rowerr);
    if (rc < 0) return sd_err(err, rc, "%s:%ld: %s", fs->path, line, rowerr.msg);
    return 0;
}

/* ---- the line formats: .txt and .jsonl ---- */

/* One line's text, without its line end. */
typedef struct text_line {
    const char *s;
    size_t n;
} text_line;

/* Next line of [*p, end) into *tl (without the line end); advances *p. 0 at the end. */
static int next_line(const char **p, const char *end, text_line *tl) {
    if (*p >= end) return 0;
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    const char *e = nl ? nl : end;
    tl->s = *p;
    tl->n = (size_t)(e - *p);
    if (tl->n && tl->s[tl->n - 1] == '\r') tl->n--;
    *p = nl ? nl + 1 : end;
    return 1;
}

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v') return 0;
    return 1;
}

/* A line's text problems that every format reports the same way; NULL if none. */
static const char *line_problem(const char *s, size_t n) {
    if (memchr(s, 0, n)) return "contains a NUL byte";
    if (!sd_job_utf8_valid(s, n)) return "is not valid UTF-8 text";
    return NULL;
}

/* Reads a line format: every line that is not blank is a row, filled by fill from its text_line. */
static int parse_lines(file_state *fs, const char *p, const char *end, row_fill_fn fill, sd_error *err) {
    text_line tl;
    for (long line = 1; next_line(&p, end, &tl); line++) {
        if (is_blank(tl.s, tl.n)) continue;
        const char *problem = line_problem(tl.s, tl.n);
        if (problem) {
            bad_row(fs, line, problem);
            continue;
        }
        int rc = row_read(fs, line, fill, &tl, err);
        if (rc < 0) return rc;
    }
    return 0;
}

/* A .txt line: the whole line is the prompt. */
static int txt_fill(const void *src, row *r, sd_error *err) {
    const text_line *tl = src;
    char *text = strndup(tl->s, tl->n);
    if (!text) return sd_err(err, SD_ENOMEM, "out of memory");
    int rc = set_text(r, F_PROMPT, text, err);
    free(text);
    return rc;
}

static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Applies one "key": value of a JSON row. */
static int json_field(row *r, const char *key, json_t *v, sd_error *err) {
    int f = field_lookup(key, 0);
    if (f < 0) return sd_err(err, SD_EINPUT, "unknown key '%s' (known: " KNOWN_FIELDS ")", key);
    static const char *const want[] = {"a string", "an integer", "a number", "true or false",
                                       "a list of \"FILE:MULTIPLIER\" strings or {\"file\", \"multiplier\"} objects"};
    field_kind k = fields[f].kind;
    if (k == K_LIST && json_is_array(v)) {
        int rc = mark_given(r, f, key, err);
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            char spec[4200];
            json_t *file = json_object_get(e, "file"), *mult = json_object_get(e, "multiplier");
            if (json_is_string(e)) snprintf(spec, sizeof spec, "%s", json_string_value(e));
            else if (json_is_object(e) && json_is_string(file) && (!mult || json_is_number(mult)) &&
                     json_object_size(e) == 1u + (mult != NULL))
                snprintf(spec, sizeof spec, "%s:%.17g", json_string_value(file), mult ? json_number_value(mult) : 1.0);
            else
                return sd_err(err, SD_EINPUT, "loras[%zu] must be \"FILE:MULTIPLIER\" or {\"file\": ..., "
                              "\"multiplier\": ...}, got %s", i, json_type_name(e));
            if (rc == 0) rc = add_lora(r, spec, err);
        }
        return rc;
    }
    if (k == K_TEXT && json_is_string(v)) return set_text(r, f, json_string_value(v), err);
    if (k == K_INT && json_is_integer(v)) return set_int(r, f, json_integer_value(v), err);
    if (k == K_NUM && json_is_number(v)) return set_num(r, f, json_number_value(v), err);
    if (k == K_BOOL && json_is_boolean(v)) return set_bool(r, f, json_is_true(v), err);
    return sd_err(err, SD_EINPUT, "%s must be %s, got %s", fields[f].name, want[k], json_type_name(v));
}

/* A .jsonl line: one JSON object whose keys are fields. */
static int jsonl_fill(const void *src, row *r, sd_error *err) {
    const text_line *tl = src;
    json_error_t jerr;
    json_t *obj = json_loadb(tl->s, tl->n, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj) return sd_err(err, SD_EINPUT, "invalid JSON at column %d: %s", jerr.column, jerr.text);
    int rc = 0;
    if (!json_is_object(obj)) rc = sd_err(err, SD_EINPUT, "expected a JSON object, got %s", json_type_name(obj));
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (rc == 0) rc = json_field(r, key, v, err);
    }
    json_decref(obj);
    return rc;
}

/* ---- .csv ---- */

/* Copy of s without surrounding spaces (for numbers and header names). */
static char *trimmed(const char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    return strndup(s, n);
}

/* Applies one non-empty CSV cell. */
static int csv_field(row *r, int f, const char *cell, sd_error *err) {
    const char *name = fields[f].name;
    if (!sd_job_utf8_valid(cell, strlen(cell))) return sd_err(err, SD_EINPUT, "%s is not valid UTF-8 text", name);
    if (fields[f].kind == K_TEXT) return set_text(r, f, cell, err);
    if (fields[f].kind == K_LIST) { /* "FILE:M;FILE:M" */
        int rc = mark_given(r, f, name, err);
        for (const char *p = cell; rc == 0 && *p;) {
            size_t l = strcspn(p, ";");
            char *one = strndup(p, l), *t = one ? trimmed(one) : NULL;
            rc = !t ? sd_err(err, SD_ENOMEM, "out of memory") : *t ? add_lora(r, t, err) : 0;
            free(one);
            free(t);
            p += l + (p[l] == ';');
        }
        return rc;
    }
    char *t = trimmed(cell);
    if (!t) return sd_err(err, SD_ENOMEM, "out of memory");
    char *e = NULL;
    int rc;
    errno = 0;
    if (fields[f].kind == K_INT) {
        long long v = strtoll(t, &e, 10);
        rc = *t && !*e && !errno ? set_int(r, f, v, err)
                                 : sd_err(err, SD_EINPUT, "%s must be an integer, got '%s'", name, cell);
    } else if (fields[f].kind == K_NUM) {
        double v = strtod(t, &e);
        rc = *t && !*e && !errno ? set_num(r, f, v, err)
                                 : sd_err(err, SD_EINPUT, "%s must be a number, got '%s'", name, cell);
    } else {
        int v = !strcasecmp(t, "1") || !strcasecmp(t, "true") || !strcasecmp(t, "yes");
        int no = !strcasecmp(t, "0") || !strcasecmp(t, "false") || !strcasecmp(t, "no");
        rc = v || no ? set_bool(r, f, v, err)
                     : sd_err(err, SD_EINPUT, "%s must be true/false (or 1/0), got '%s'", name, cell);
    }
    free(t);
    return rc;
}

/* A CSV record and the field of each of its columns (-1: ignored). */
typedef struct csv_row {
    const csv_record *rec;
    const int *col;
    size_t ncols;
} csv_row;

/* A .csv record: its non-empty cells under known columns. */
static int csv_fill(const void *src, row *r, sd_error *err) {
    const csv_row *c = src;
    if (c->rec->n != c->ncols)
        return sd_err(err, SD_EINPUT, "has %zu fields, the header has %zu", c->rec->n, c->ncols);
    for (size_t i = 0; i < c->ncols; i++) {
        int rc = c->col[i] >= 0 && c->rec->fields[i][0] ? csv_field(r, c->col[i], c->rec->fields[i], err) : 0;
        if (rc < 0) return rc;
    }
    if (!r->given[F_PROMPT] && r->task != T_UNCONDITIONAL) return sd_err(err, SD_EINPUT, "prompt is empty");
    return 0;
}

/* Maps the header's columns to fields (col[i], -1 for a column that is ignored, with a note). */
static int csv_header(file_state *fs, const csv_record *rec, int *col, sd_error *err) {
    char ignored[256] = "";
    int have_prompt = 0;
    for (size_t i = 0; i < rec->n; i++) {
        char *name = trimmed(rec->fields[i]);
        if (!name) return sd_err(err, SD_ENOMEM, "out of memory");
        int rc = 0;
        col[i] = field_lookup(name, 1);
        for (size_t k = 0; col[i] >= 0 && k < i; k++)
            if (col[k] == col[i])
                rc = sd_err(err, SD_EINPUT, "%s:%ld: column '%s' appears twice%s", fs->path, rec->line, name,
                            col[i] == F_PROMPT ? " (prompt and caption are the same column)" : "");
        if (col[i] == F_PROMPT) have_prompt = 1;
        if (col[i] < 0) {
            size_t used = strlen(ignored);
            snprintf(ignored + used, sizeof ignored - used, "%s'%s'", used ? ", " : "", name);
        }
        free(name);
        if (rc < 0) return rc;
    }
    if (!have_prompt)
        return sd_err(err, SD_EINPUT, "%s:%ld: no 'prompt' or 'caption' column in the header", fs->path, rec->line);
    if (ignored[0] && fs->o->report) {
        char note[SD_ERRMSG_MAX];
        snprintf(note, sizeof note, "%s:%ld: note: ignoring columns %s (known: " KNOWN_FIELDS ")", fs->path,
                 rec->line, ignored);
        fs->o->report(fs->o->report_ctx, note);
    }
    return 0;
}

/* Reads a .csv file: a header row, then one row per record. */
static int parse_csv(file_state *fs, const char *p, const char *end, sd_error *err) {
    csv_reader rd;
    csv_record rec = {0};
    csv_init(&rd, p, (size_t)(end - p));
    int rc = csv_next(&rd, &rec, err);
    if (rc == 0) rc = sd_err(err, SD_EINPUT, "%s: empty file; expected a header row naming a prompt column", fs->path);
    if (rc < 0) {
        if (rc == SD_EINPUT && rec.line) sd_err_prefix(err, "%s:%ld: header", fs->path, rec.line);
        csv_record_free(&rec);
        return rc;
    }
    size_t ncols = rec.n;
    int *col = malloc(ncols * sizeof *col);
    rc = col ? csv_header(fs, &rec, col, err) : sd_err(err, SD_ENOMEM, "out of memory");
    while (rc >= 0) {
        sd_error rowerr = {0};
        int got = csv_next(&rd, &rec, &rowerr);
        if (got == 0) break;
        if (got == SD_EINPUT) {
            bad_row(fs, rec.line, rowerr.msg);
            continue;
        }
        if (got < 0) {
            rc = sd_err(err, got, "%s:%ld: %s", fs->path, rec.line, rowerr.msg);
            break;
        }
        csv_row src = {&rec, col, ncols};
        rc = row_read(fs, rec.line, csv_fill, &src, err);
    }
    free(col);
    csv_record_free(&rec);
    return rc < 0 ? rc : 0;
}

static int has_ext(const char *path, const char *ext) {
    size_t n = strlen(path), e = strlen(ext);
    return n > e && !strcasecmp(path + n - e, ext);
}

int enqueue_parse_file(const char *path, const enqueue_options *o, enqueue_batch *b, sd_error *err) {
    row_fill_fn fill = NULL; /* a line format; NULL: .csv */
    if (has_ext(path, ".txt")) fill = txt_fill;
    else if (has_ext(path, ".jsonl")) fill = jsonl_fill;
    else if (!has_ext(path, ".csv"))
        return sd_err(err, SD_EINPUT, "%s: unknown prompt file format; use .txt, .jsonl or .csv", path);
    char *text;
    size_t len;
    int rc = sd_fs_read_file(path, &text, &len, err);
    if (rc < 0) return rc;
    const char *p = text, *end = text + len;
    if (len >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3; /* UTF-8 byte order mark */
    file_state fs = {.path = path, .o = o, .b = b, .start = b->n};
    rc = fill ? parse_lines(&fs, p, end, fill, err) : parse_csv(&fs, p, end, err);
    free(text);
    b->bad += fs.bad;
    if (rc == 0 && fs.bad && !o->skip_bad) {
        if (fs.bad == 1) rc = sd_err(err, SD_EINPUT, "%s", fs.first);
        else rc = sd_err(err, SD_EINPUT, "%s (and %zu more bad rows)", fs.first, fs.bad - 1);
    }
    if (rc < 0) {
        /* nothing from a rejected file goes in */
        for (size_t i = fs.start; i < b->n; i++) sd_job_free(&b->jobs[i]);
        b->n = fs.start;
    }
    return rc;
}
