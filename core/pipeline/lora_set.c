/* lora_set.c - resolving LoRA sets and keeping one merged on a model (see lora_set.h). */
#include "lora_set.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "prompt_a1111.h"

/* A whole string as a finite number. */
static int parse_number(const char *s, double *out) {
    char *end;
    if (!*s) return -1;
    double v = strtod(s, &end);
    if (*end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* The file name without folder and ".safetensors". */
static char *alias_of(const char *path) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t l = strlen(b);
    if (l > 12 && !strcmp(b + l - 12, ".safetensors")) l -= 12;
    return strndup(b, l);
}

void sd_lora_use_free(sd_lora_use *u) {
    free(u->path);
    free(u->alias);
    memset(u, 0, sizeof *u);
}

int sd_lora_use_parse(const char *spec, sd_lora_use *u, sd_error *err) {
    memset(u, 0, sizeof *u);
    const char *colon = strrchr(spec, ':');
    double mult = 1.0;
    size_t len = strlen(spec);
    if (colon && parse_number(colon + 1, &mult) == 0) len = (size_t)(colon - spec);
    else if (colon && !strchr(colon, '/'))
        return sd_err(err, SD_EINPUT, "--lora '%s': '%s' is not a number; write FILE[:MULTIPLIER]", spec, colon + 1);
    if (!len) return sd_err(err, SD_EINPUT, "--lora '%s': no file; write FILE[:MULTIPLIER]", spec);
    u->path = strndup(spec, len);
    u->alias = u->path ? alias_of(u->path) : NULL;
    u->te = u->unet = mult;
    if (!u->path || !u->alias) {
        sd_lora_use_free(u);
        return sd_err(err, SD_ENOMEM, "out of memory");
    }
    return 0;
}

char *sd_lora_spec_format(const char *path, double mult) {
    char num[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(num, sizeof num, "%.*g", prec, mult);
        if (strtod(num, NULL) == mult) break;
    }
    size_t n = strlen(path) + strlen(num) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s:%s", path, num);
    return s;
}

void sd_lora_set_free(sd_lora_set *set) {
    for (int i = 0; i < set->n; i++) sd_lora_use_free(&set->u[i]);
    free(set->u);
    memset(set, 0, sizeof *set);
}

static int set_push(sd_lora_set *set, sd_lora_use *u) {
    sd_lora_use *g = realloc(set->u, (size_t)(set->n + 1) * sizeof *g);
    if (!g) return SD_ENOMEM;
    set->u = g;
    set->u[set->n++] = *u;
    memset(u, 0, sizeof *u);
    return 0;
}

/* Reads a tag's multipliers (A1111: positional te, unet; named te=, unet=). */
static int tag_multipliers(const a1111_net *t, sd_lora_use *u, sd_error *err) {
    int positional = 0;
    double te = 1.0, unet = NAN;
    for (int a = 1; a < t->n_args; a++) {
        const char *arg = t->args[a], *eq = strchr(arg, '=');
        double v;
        const char *num = eq ? eq + 1 : arg;
        if (parse_number(num, &v) < 0)
            return sd_err(err, SD_EINPUT, "prompt: malformed LoRA tag <lora:%s:...>: '%s' is not a number", t->args[0],
                          num);
        if (eq && !strncmp(arg, "te=", 3)) te = v;
        else if (eq && !strncmp(arg, "unet=", 5)) unet = v;
        else if (!eq && positional == 0) te = v, positional++;
        else if (!eq && positional == 1) unet = v, positional++;
        else
            return sd_err(err, SD_EINPUT, "prompt: malformed LoRA tag <lora:%s:...>: unexpected '%s'; write "
                          "<lora:NAME:MULTIPLIER> or <lora:NAME:TE_MULTIPLIER:UNET_MULTIPLIER>", t->args[0], arg);
    }
    u->te = te;
    u->unet = isnan(unet) ? te : unet;
    return 0;
}

/* Appends the <lora:...> tags of prompt, resolved in lora_dir. */
static int add_tags(sd_lora_set *set, const char *prompt, const char *lora_dir, sd_error *err) {
    char *stripped;
    a1111_net *nets;
    int n, rc = a1111_extract_networks(prompt, &stripped, &nets, &n, err);
    if (rc < 0) return rc;
    free(stripped);
    for (int i = 0; rc == 0 && i < n; i++) {
        const a1111_net *t = &nets[i];
        if (strcmp(t->type, "lora")) {
            rc = sd_err(err, SD_EINPUT, "prompt: <%s:...> tags are not supported (only <lora:NAME:MULTIPLIER>)", t->type);
            break;
        }
        const char *name = t->args[0];
        if (!*name || strchr(name, '/')) {
            rc = sd_err(err, SD_EINPUT, "prompt: malformed LoRA tag <lora:%s>: the name must be a file name in the LoRA "
                        "folder", name);
            break;
        }
        sd_lora_use u = {.from_tag = 1};
        if ((rc = tag_multipliers(t, &u, err)) < 0) break;
        if (!lora_dir) {
            rc = sd_err(err, SD_EINPUT, "prompt: <lora:%s:...> needs --lora-dir DIR (the folder holding %s.safetensors)",
                        name, name);
            break;
        }
        size_t l = strlen(lora_dir) + strlen(name) + 16;
        u.path = malloc(l);
        u.alias = strdup(name);
        if (!u.path || !u.alias) rc = SD_ENOMEM;
        if (rc == 0) snprintf(u.path, l, "%s/%s.safetensors", lora_dir, name);
        if (rc == 0) rc = set_push(set, &u);
        sd_lora_use_free(&u);
    }
    a1111_nets_free(nets, n);
    return rc;
}

int sd_lora_set_build(sd_lora_set *set, const char *specs, const char *prompt, sd_prompt_syntax syntax,
                      const char *lora_dir, sd_error *err) {
    memset(set, 0, sizeof *set);
    int rc = 0;
    for (const char *p = specs; rc == 0 && p && *p;) {
        size_t l = strcspn(p, "\n");
        char *line = strndup(p, l);
        sd_lora_use u;
        if (!line) rc = SD_ENOMEM;
        else if (l && (rc = sd_lora_use_parse(line, &u, err)) == 0) rc = set_push(set, &u);
        free(line);
        p += l + (p[l] == '\n');
    }
    if (rc == 0 && syntax == SD_PROMPT_A1111 && prompt) rc = add_tags(set, prompt, lora_dir, err);
    if (rc < 0) {
        sd_lora_set_free(set);
        if (rc == SD_ENOMEM) return sd_err(err, SD_ENOMEM, "out of memory");
    }
    return rc;
}

/* A growable string for labels and keys. */
typedef struct text {
    char *p;
    size_t n;
    int oom;
} text;

static void text_add(text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *g = t->oom || need < 0 ? NULL : realloc(t->p, t->n + (size_t)need + 1);
    if (!g) {
        t->oom = 1;
        return;
    }
    t->p = g;
    va_start(ap, fmt);
    vsnprintf(t->p + t->n, (size_t)need + 1, fmt, ap);
    va_end(ap);
    t->n += (size_t)need;
}

static char *text_done(text *t) {
    if (t->oom) {
        free(t->p);
        return NULL;
    }
    return t->p ? t->p : strdup("");
}

char *sd_lora_set_label(const sd_lora_set *set) {
    text t = {0};
    for (int i = 0; i < set->n; i++) {
        const sd_lora_use *u = &set->u[i];
        text_add(&t, "%s%s:%g", i ? ", " : "", u->alias, u->te);
        if (u->unet != u->te) text_add(&t, ":%g", u->unet);
    }
    return text_done(&t);
}

/* The exact identity of a set: files and multipliers in order. */
static char *set_key(const sd_lora_set *set) {
    text t = {0};
    for (int i = 0; i < set->n; i++) text_add(&t, "%s\t%.17g\t%.17g\n", set->u[i].path, set->u[i].te, set->u[i].unet);
    return text_done(&t);
}

void sd_lora_ctx_init(sd_lora_ctx *c, sd_model *m) {
    memset(c, 0, sizeof *c);
    c->m = m;
}

/* The index in c->files of u's file, from the cache or opened now. */
static int ctx_file(sd_lora_ctx *c, const sd_lora_use *u, int *out, sd_error *err) {
    for (int i = 0; i < c->n_files; i++)
        if (!strcmp(c->files[i].path, u->path)) return *out = i, 0;
    if (u->from_tag && !sd_fs_is_file(u->path))
        return sd_err(err, SD_EINPUT, "prompt: unknown LoRA '%s': there is no %s", u->alias, u->path);
    sd_lora *g = realloc(c->files, (size_t)(c->n_files + 1) * sizeof *g);
    if (!g) return sd_err(err, SD_ENOMEM, "out of memory");
    c->files = g;
    int rc = sd_lora_open(&c->files[c->n_files], u->path, c->m, err);
    if (rc < 0) return rc;
    *out = c->n_files++;
    return 0;
}

/* "alias: hash12, ..." as A1111 writes it (':' and ',' removed from aliases). */
static char *hashes_text(const sd_lora_set *set, const sd_lora *const *ls) {
    if (!set->n) return NULL;
    text t = {0};
    for (int i = 0; i < set->n; i++) {
        text_add(&t, "%s", i ? ", " : "");
        for (const char *a = set->u[i].alias; *a; a++)
            if (*a != ':' && *a != ',') text_add(&t, "%c", *a);
        text_add(&t, ": %.12s", ls[i]->hash);
    }
    return text_done(&t);
}

int sd_lora_ctx_apply(sd_lora_ctx *c, const sd_lora_set *set, char **hashes, sd_error *err) {
    if (hashes) *hashes = NULL;
    const sd_lora **ls = calloc((size_t)set->n + 1, sizeof *ls);
    int *idx = calloc((size_t)set->n + 1, sizeof *idx);
    double *te = calloc((size_t)set->n + 1, sizeof *te), *unet = calloc((size_t)set->n + 1, sizeof *unet);
    char *key = set_key(set);
    int rc = ls && idx && te && unet && key ? 0 : sd_err(err, SD_ENOMEM, "out of memory");
    for (int i = 0; rc == 0 && i < set->n; i++) {
        rc = ctx_file(c, &set->u[i], &idx[i], err);
        te[i] = set->u[i].te;
        unet[i] = set->u[i].unet;
    }
    for (int i = 0; rc == 0 && i < set->n; i++) ls[i] = &c->files[idx[i]]; /* after the last realloc */
    if (rc == 0 && !(c->key && !strcmp(c->key, key))) {
        sd_lora_unmerge(&c->patch, c->m);
        free(c->key);
        c->key = NULL;
        if (set->n) {
            rc = sd_lora_merge(&c->patch, c->m, (const sd_lora *const *)ls, te, unet, set->n, err);
            if (rc == 0) c->merges++;
        }
        if (rc == 0) {
            c->key = key;
            key = NULL;
        }
    }
    if (rc == 0 && hashes && set->n && !(*hashes = hashes_text(set, (const sd_lora *const *)ls)))
        rc = sd_err(err, SD_ENOMEM, "out of memory");
    if (rc < 0) { /* back to the base weights */
        sd_lora_unmerge(&c->patch, c->m);
        free(c->key);
        c->key = NULL;
    }
    free(key);
    free(idx);
    free(ls);
    free(te);
    free(unet);
    return rc;
}

void sd_lora_ctx_free(sd_lora_ctx *c) {
    sd_lora_unmerge(&c->patch, c->m);
    for (int i = 0; i < c->n_files; i++) sd_lora_close(&c->files[i]);
    free(c->files);
    free(c->key);
    memset(c, 0, sizeof *c);
}
