/* lora.c - reading LoRA files and merging them into a model (see lora.h). */
#include "lora.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "sha256.h"
#include "strmap.h"

enum { PART_DOWN, PART_UP, PART_ALPHA };

static const struct {
    const char *suffix;
    int part;
} suffixes[] = {
    {".lora_down.weight", PART_DOWN}, {".lora_up.weight", PART_UP}, {".alpha", PART_ALPHA},
    {".lora_A.weight", PART_DOWN},    {".lora_B.weight", PART_UP},  {".lora.down.weight", PART_DOWN},
    {".lora.up.weight", PART_UP},
};

/* The key's module base and part; -1 when it is none of the known LoRA suffixes. */
static int split_key(const char *key, size_t *base_len) {
    size_t l = strlen(key);
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        size_t sl = strlen(suffixes[i].suffix);
        if (l > sl && !strcmp(key + l - sl, suffixes[i].suffix)) {
            *base_len = l - sl;
            return suffixes[i].part;
        }
    }
    return -1;
}

/* kohya names of a weight table: "<module with '_' for '.'>" -> index, for every "<module>.weight". */
static int kohya_names(strmap *map, const sd_weights *w) {
    char buf[512];
    for (int i = 0; i < w->n; i++) {
        const char *name = w->tensors[i].name;
        size_t l = strlen(name);
        if (l <= 7 || l - 7 >= sizeof buf || strcmp(name + l - 7, ".weight")) continue;
        memcpy(buf, name, l - 7);
        for (size_t k = 0; k < l - 7; k++)
            if (buf[k] == '.') buf[k] = '_';
        if (strmap_put(map, buf, l - 7, i) < 0) return SD_ENOMEM;
    }
    return 0;
}

/* One module's keys while reading. */
typedef struct group {
    const char *key; /* the first key seen, for messages */
    size_t base_len;
    const sd_tensor *part[3];
} group;

typedef struct reader {
    const sd_model *m;
    const char *path;
    strmap kunet, kte;
} reader;

/* The model weight `base` names (te / index), or an error naming key. */
static int find_target(reader *r, const char *key, size_t base_len, int *te, int *index, sd_error *err) {
    char base[512];
    if (base_len >= sizeof base) return sd_err(err, SD_EINPUT, "%s: key '%.80s...' is too long", r->path, key);
    memcpy(base, key, base_len);
    base[base_len] = 0;
    int32_t v = -1;
    *te = 0;
    if (!strncmp(base, "lora_te1_", 9) || !strncmp(base, "lora_te2_", 9))
        return sd_err(err, SD_EINPUT,
                      "%s: key '%s' belongs to an SDXL LoRA (two text encoders); this model is SD %d.x: use a LoRA "
                      "trained for it", r->path, key, r->m->sd_version);
    if (!strncmp(base, "lora_unet_", 10)) {
        if (!strmap_get(&r->kunet, base + 10, strlen(base + 10), &v)) v = -1;
    } else if (!strncmp(base, "lora_te_", 8)) {
        *te = 1;
        if (!strmap_get(&r->kte, base + 8, strlen(base + 8), &v)) v = -1;
    } else if (!strncmp(base, "unet.", 5) || !strncmp(base, "text_encoder.", 13)) {
        *te = base[0] == 't';
        const sd_weights *w = *te ? &r->m->clip_w : &r->m->unet_w;
        char name[530];
        snprintf(name, sizeof name, "%s.weight", base + (*te ? 13 : 5));
        const sd_tensor *t = sd_weights_find(w, name);
        v = t ? (int32_t)(t - w->tensors) : -1;
    }
    if (v < 0)
        return sd_err(err, SD_EINPUT,
                      "%s: key '%s' matches no module of %s (SD %d.x); is this a LoRA for another model architecture?",
                      r->path, key, r->m->path, r->m->sd_version);
    *index = v;
    return 0;
}

/* Checks a group's tensors against the target weight and fills mod. */
static int check_group(reader *r, const group *g, sd_lora_mod *mod, sd_error *err) {
    const sd_tensor *down = g->part[PART_DOWN], *up = g->part[PART_UP], *alpha = g->part[PART_ALPHA];
    if (!down || !up)
        return sd_err(err, SD_EINPUT, "%s: key '%s' has no %s half (every module needs a down and an up weight)",
                      r->path, g->key, down ? "up" : "down");
    int rc = find_target(r, g->key, g->base_len, &mod->te, &mod->index, err);
    if (rc < 0) return rc;
    const sd_tensor *w = &(mod->te ? &r->m->clip_w : &r->m->unet_w)->tensors[mod->index];
    for (int k = 0; k < 3; k++)
        if (g->part[k] && !sd_dtype_is_float(g->part[k]->dtype))
            return sd_err(err, SD_EINPUT, "%s: key '%s': tensor '%s' has dtype %s, expected a float type", r->path,
                          g->key, g->part[k]->name, sd_dtype_name(g->part[k]->dtype));
    char ws[96], ds[96], us[96];
    int64_t out = w->shape[0], wn = sd_tensor_numel(w), rank = down->ndim >= 1 ? down->shape[0] : 0;
    int ok = (w->ndim == 2 || w->ndim == 4) && (down->ndim == 2 || down->ndim == 4) && (up->ndim == 2 || up->ndim == 4) &&
             rank > 0 && up->shape[0] == out && up->shape[1] == rank && (up->ndim == 2 || (up->shape[2] == 1 && up->shape[3] == 1)) &&
             sd_tensor_numel(down) / rank == wn / out &&
             (down->ndim == 2 || w->ndim == 2 || (down->shape[2] == w->shape[2] && down->shape[3] == w->shape[3]));
    if (!ok)
        return sd_err(err, SD_EINPUT, "%s: key '%s': down %s and up %s do not fit the model's '%s' %s", r->path, g->key,
                      sd_tensor_shape_str(ds, sizeof ds, down->shape, down->ndim),
                      sd_tensor_shape_str(us, sizeof us, up->shape, up->ndim), w->name,
                      sd_tensor_shape_str(ws, sizeof ws, w->shape, w->ndim));
    mod->down = down;
    mod->up = up;
    mod->scale = 1.0;
    if (alpha) {
        if (sd_tensor_numel(alpha) != 1)
            return sd_err(err, SD_EINPUT, "%s: '%s' should hold one number", r->path, alpha->name);
        float a;
        sd_tensor_to_f32(alpha, &a);
        mod->scale = (double)a / (double)rank;
    }
    return 0;
}

/* Groups the file's keys by module and checks each group. */
static int read_modules(sd_lora *l, reader *r, sd_error *err) {
    const st_file *f = &l->file;
    group *gs = calloc(f->n ? (size_t)f->n : 1, sizeof *gs);
    strmap bases;
    strmap_init(&bases);
    int ng = 0, rc = gs ? 0 : SD_ENOMEM;
    for (int i = 0; rc == 0 && i < f->n; i++) {
        const char *key = f->tensors[i].name;
        size_t bl;
        int part = split_key(key, &bl);
        if (part < 0) {
            rc = sd_err(err, SD_EINPUT,
                        "%s: key '%s' is not a LoRA weight sdrender reads (lora_down/lora_up/alpha or lora_A/lora_B); "
                        "LyCORIS kinds other than LoCon are not supported", l->path, key);
            break;
        }
        int32_t g;
        if (!strmap_get(&bases, key, bl, &g)) {
            g = ng++;
            gs[g].key = key;
            gs[g].base_len = bl;
            if (strmap_put(&bases, key, bl, g) < 0) rc = SD_ENOMEM;
        }
        gs[g].part[part] = &f->tensors[i];
        if (part != PART_ALPHA) gs[g].key = key;
    }
    if (rc == 0 && ng == 0) rc = sd_err(err, SD_EINPUT, "%s: no LoRA weights in this file", l->path);
    if (rc == 0 && !(l->mods = calloc((size_t)ng, sizeof *l->mods))) rc = SD_ENOMEM;
    for (int g = 0; rc == 0 && g < ng; g++) rc = check_group(r, &gs[g], &l->mods[g], err);
    if (rc == 0) l->n_mods = ng;
    strmap_free(&bases);
    free(gs);
    return rc == SD_ENOMEM ? sd_err(err, SD_ENOMEM, "out of memory reading %s", l->path) : rc;
}

int sd_lora_open(sd_lora *l, const char *path, const sd_model *m, sd_error *err) {
    memset(l, 0, sizeof *l);
    if (!(l->path = strdup(path))) return sd_err(err, SD_ENOMEM, "out of memory");
    int rc = st_open(&l->file, path, err);
    if (rc < 0) {
        free(l->path);
        l->path = NULL;
        return rc;
    }
    reader r = {.m = m, .path = path};
    strmap_init(&r.kunet);
    strmap_init(&r.kte);
    if (kohya_names(&r.kunet, &m->unet_w) < 0 || kohya_names(&r.kte, &m->clip_w) < 0)
        rc = sd_err(err, SD_ENOMEM, "out of memory");
    if (rc == 0) rc = read_modules(l, &r, err);
    strmap_free(&r.kunet);
    strmap_free(&r.kte);
    if (rc == 0) {
        const char *sshs = st_metadata(&l->file, "sshs_model_hash");
        if (sshs && *sshs) snprintf(l->hash, sizeof l->hash, "%s", sshs);
        else sd_sha256_buffer(l->file.data, l->file.data_size, l->hash);
    }
    if (rc < 0) sd_lora_close(l);
    return rc;
}

void sd_lora_close(sd_lora *l) {
    if (l->path) st_close(&l->file);
    free(l->path);
    free(l->mods);
    memset(l, 0, sizeof *l);
}

/* ---- merging ------------------------------------------------------------ */

static sd_weights *table(sd_model *m, int te) { return te ? &m->clip_w : &m->unet_w; }

/* The float32 copy of weight (te, index) that p owns, made on first use; NULL when out of memory. */
static float *patch_buffer(sd_lora_patch *p, sd_model *m, int te, int index, sd_error *err) {
    for (int i = 0; i < p->n; i++)
        if (p->e[i].te == te && p->e[i].index == index) return p->e[i].buf;
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        sd_lora_patch_entry *g = realloc(p->e, (size_t)cap * sizeof *g);
        if (!g) return sd_err(err, SD_ENOMEM, "out of memory merging a LoRA"), NULL;
        p->e = g;
        p->cap = cap;
    }
    const sd_tensor *w = &table(m, te)->tensors[index];
    float *buf = sd_tensor_to_f32_alloc(w, err);
    if (!buf) return NULL;
    p->e[p->n++] = (sd_lora_patch_entry){.te = te, .index = index, .orig = *w, .buf = buf};
    return buf;
}

/* w += scale * up @ down for one module: up [out, r], down [r, N], w [out, N]. */
static int merge_mod(float *w, const sd_lora_mod *mod, double mult, sd_error *err) {
    int64_t out = mod->up->shape[0], r = mod->down->shape[0], N = sd_tensor_numel(mod->down) / r;
    float *up = sd_tensor_to_f32_alloc(mod->up, err), *down = up ? sd_tensor_to_f32_alloc(mod->down, err) : NULL;
    if (up && down)
        ops_gemm(NULL, 0, (int)out, (int)N, (int)r, (float)(mult * mod->scale), up, (int)r, down, (int)N, 1.0f, w, (int)N);
    int ok = up && down;
    free(up);
    free(down);
    return ok ? 0 : (err ? err->code : SD_ENOMEM);
}

int sd_lora_merge(sd_lora_patch *p, sd_model *m, const sd_lora *const *ls, const double *te, const double *unet, int n,
                  sd_error *err) {
    int rc = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        for (int k = 0; rc == 0 && k < ls[i]->n_mods; k++) {
            const sd_lora_mod *mod = &ls[i]->mods[k];
            double mult = mod->te ? te[i] : unet[i];
            if (mult == 0) continue;
            float *buf = patch_buffer(p, m, mod->te, mod->index, err);
            rc = buf ? merge_mod(buf, mod, mult, err) : (err ? err->code : SD_ENOMEM);
        }
    }
    if (rc < 0) {
        sd_lora_unmerge(p, m);
        return rc;
    }
    for (int i = 0; i < p->n; i++) {
        sd_tensor *w = &table(m, p->e[i].te)->tensors[p->e[i].index];
        w->dtype = SD_F32;
        w->data = p->e[i].buf;
        w->nbytes = (size_t)sd_tensor_numel(w) * sizeof(float);
    }
    return 0;
}

void sd_lora_unmerge(sd_lora_patch *p, sd_model *m) {
    for (int i = 0; i < p->n; i++) {
        table(m, p->e[i].te)->tensors[p->e[i].index] = p->e[i].orig;
        free(p->e[i].buf);
    }
    free(p->e);
    memset(p, 0, sizeof *p);
}
