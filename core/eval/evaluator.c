#include "evaluator.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "pngio.h"
#include "randweights.h"

/* The folder part of path ("." when it has none), in a new string. */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* 1 when dir/name is a regular file. */
static int has_file(const char *dir, const char *name) {
    char *p = sd_fs_path_join(dir, name);
    int ok = p && sd_fs_is_file(p);
    free(p);
    return ok;
}

int sd_evaluator_find_clip_tokenizer(const char *clip_path, const char *given, char **out, sd_error *err) {
    *out = NULL;
    if (given) {
        if (!sd_fs_is_dir(given) && !sd_fs_is_file(given))
            return sd_err(err, SD_ENOTFOUND, "CLIP tokenizer %s: no such file or folder", given);
        *out = strdup(given);
        return *out ? 0 : sd_err(err, SD_ENOMEM, "out of memory");
    }
    char *dir = dir_of(clip_path);
    if (!dir) return sd_err(err, SD_ENOMEM, "out of memory");
    if (has_file(dir, "vocab.json") && has_file(dir, "merges.txt")) {
        *out = dir;
        return 0;
    }
    char *sub = sd_fs_path_join(dir, "tokenizer");
    if (sub && has_file(sub, "vocab.json")) *out = sub;
    else {
        free(sub);
        char *gz = sd_fs_path_join(dir, "bpe_simple_vocab_16e6.txt.gz");
        if (gz && sd_fs_is_file(gz)) *out = gz;
        else free(gz);
    }
    int rc = *out ? 0
                  : sd_err(err, SD_ENOTFOUND,
                           "no CLIP tokenizer beside %s (looked for vocab.json + merges.txt, tokenizer/ and "
                           "bpe_simple_vocab_16e6.txt.gz in %s): give --clip-tokenizer",
                           clip_path, dir);
    free(dir);
    return rc;
}

/* "random" or "random:SEED": a random-weight Inception made on the spot (randweights.h, BatchNorm
 * scales and variances near 1), for scores where no trained Inception may be downloaded (make demo).
 * Its features only compare runs scored with the same seed; they are not FID's ImageNet features. */
static int open_random_inception(sd_evaluator *ev, const char *spec, sd_error *err) {
    unsigned long long seed = 0;
    if (spec[6] == ':') {
        char *end;
        seed = strtoull(spec + 7, &end, 10);
        if (end == spec + 7 || *end)
            return sd_err(err, SD_EINPUT, "--inception %s: expected 'random' or 'random:SEED' (SEED a number)", spec);
    } else if (spec[6])
        return sd_err(err, SD_EINPUT, "--inception %s: expected 'random' or 'random:SEED'", spec);
    sd_rand_weights rw = {.seed = seed, .gain = sqrtf(2.0f)}; /* keeps the activations' scale through the ReLUs */
    sd_weights w;
    int rc = sd_rand_weights_attach(&rw, &w, "random inception", err);
    if (rc == 0) {
        rc = inception_load(&ev->inception, &w, err);
        sd_weights_free(&w);
    }
    sd_rand_weights_free(&rw);
    return rc;
}

static int open_inception(sd_evaluator *ev, const char *path, sd_error *err) {
    if (strncmp(path, "random", 6) == 0 && !sd_fs_is_file(path)) {
        int rrc = open_random_inception(ev, path, err);
        if (rrc < 0) return rrc;
        ev->inception.max_batch = ev->batch;
        ev->has_inception = 1;
        return 0;
    }
    sd_weight_file f;
    int rc = sd_weight_file_open(&f, path, "inception", err);
    if (rc < 0) return rc;
    /* the folded float32 copy is all the network keeps: the file can go */
    rc = inception_load(&ev->inception, &f.w, err);
    sd_weight_file_close(&f);
    if (rc < 0) return rc;
    ev->inception.max_batch = ev->batch;
    ev->has_inception = 1;
    return 0;
}

static int open_tokenizer(sd_evaluator *ev, const char *clip_path, const char *given, sd_error *err) {
    char *p;
    int rc = sd_evaluator_find_clip_tokenizer(clip_path, given, &p, err);
    if (rc < 0) return rc;
    rc = sd_fs_is_dir(p) ? tokenizer_load_dir(&ev->tok, p, err) : tokenizer_load_openai_gz(&ev->tok, p, err);
    /* OpenAI's clip.tokenize pads with 0 (the embeddings do not depend on it: the causal mask hides the padding) */
    const char *zero = rc == 0 ? tokenizer_token(ev->tok, 0) : NULL;
    if (zero) rc = tokenizer_set_pad(ev->tok, zero, err);
    free(p);
    return rc;
}

static int open_clip(sd_evaluator *ev, const sd_evaluator_opts *o, sd_error *err) {
    int rc = sd_weight_file_open(&ev->clip_file, o->clip, "clip", err);
    if (rc < 0) return rc;
    ev->has_clip = 1; /* from here sd_evaluator_close releases the file */
    char *dir = dir_of(o->clip);
    char *cfg_path = dir ? sd_fs_path_join(dir, "config.json") : NULL;
    free(dir);
    if (!cfg_path) return sd_err(err, SD_ENOMEM, "out of memory");
    clip_model_config cfg;
    rc = clip_model_config_derive(&cfg, &ev->clip_file.w, sd_fs_is_file(cfg_path) ? cfg_path : NULL, err);
    free(cfg_path);
    if (rc == 0) rc = clip_model_load(&ev->clip, &cfg, &ev->clip_file.w, err);
    if (rc < 0) {
        sd_weight_file_close(&ev->clip_file);
        ev->has_clip = 0;
        return rc;
    }
    return open_tokenizer(ev, o->clip, o->clip_tokenizer, err);
}

int sd_evaluator_open(sd_evaluator *ev, const sd_evaluator_opts *o, sd_error *err) {
    memset(ev, 0, sizeof *ev);
    ev->batch = o->batch > 0 ? o->batch : INCEPTION_DEFAULT_MAX_BATCH;
    int rc = 0;
    if (o->inception) rc = open_inception(ev, o->inception, err);
    if (rc == 0 && o->clip) rc = open_clip(ev, o, err);
    if (rc < 0) sd_evaluator_close(ev);
    return rc;
}

void sd_evaluator_close(sd_evaluator *ev) {
    if (ev->has_inception) inception_free(&ev->inception);
    if (ev->has_clip) {
        clip_model_free(&ev->clip);
        sd_weight_file_close(&ev->clip_file);
    }
    tokenizer_free(ev->tok);
    memset(ev, 0, sizeof *ev);
}

/* scores[i] = 100 cos(image i, prompt i) for the decoded images rgb[0..n). */
static int clip_scores(sd_evaluator *ev, uint8_t *const *rgb, const int *h, const int *w, const char *const *paths,
                       const char *const *prompts, int n, double *scores, sd_error *err) {
    int S = ev->clip.cfg.image_size, T = ev->clip.cfg.text.max_positions;
    size_t px = (size_t)3 * S * S;
    float *pixels = malloc((size_t)n * px * sizeof *pixels);
    int32_t *ids = malloc((size_t)n * (size_t)T * sizeof *ids);
    int rc = pixels && ids ? 0 : sd_err(err, SD_ENOMEM, "out of memory for %d CLIP inputs", n);
    for (int i = 0; i < n && rc == 0; i++) {
        rc = clip_model_image_preprocess(rgb[i], h[i], w[i], S, NULL, pixels + (size_t)i * px, err);
        if (rc < 0) {
            sd_err_prefix(err, "%s", paths[i]);
            break;
        }
        int ntok = 0;
        rc = tokenizer_encode_padded(ev->tok, prompts[i] ? prompts[i] : "", ids + (size_t)i * (size_t)T, T, &ntok, err);
        if (rc < 0) sd_err_prefix(err, "prompt of %s", paths[i]);
        else if (ntok > T - 2) ev->truncated++;
    }
    if (rc == 0) rc = clip_model_pair_scores(&ev->clip, pixels, (const int *)ids, n, T, scores, err);
    free(pixels);
    free(ids);
    return rc;
}

int sd_evaluator_images(sd_evaluator *ev, const char *const *paths, const char *const *prompts, int n, float *feats,
                        double *scores, sd_error *err) {
    if (n < 0 || n > ev->batch) return sd_err(err, SD_EINTERNAL, "evaluator: %d images in a batch of %d", n, ev->batch);
    if (feats && !ev->has_inception) return sd_err(err, SD_EINTERNAL, "evaluator: features asked without Inception");
    if (scores && (!ev->has_clip || !prompts)) return sd_err(err, SD_EINTERNAL, "evaluator: CLIP scores asked without CLIP or prompts");
    uint8_t **rgb = calloc((size_t)(n ? n : 1), sizeof *rgb);
    int *hw = malloc((size_t)(n ? n : 1) * 2 * sizeof *hw);
    int rc = rgb && hw ? 0 : sd_err(err, SD_ENOMEM, "out of memory");
    for (int i = 0; i < n && rc == 0; i++) rc = sd_png_read_rgb(paths[i], &rgb[i], &hw[n + i], &hw[i], err);
    /* hw[0..n) heights, hw[n..2n) widths */
    if (rc == 0 && feats) {
        rc = inception_features_batch(&ev->inception, (const uint8_t *const *)rgb, hw, hw + n, n, feats, err);
        if (rc < 0) sd_err_prefix(err, "inception");
    }
    if (rc == 0 && scores) rc = clip_scores(ev, rgb, hw, hw + n, paths, prompts, n, scores, err);
    for (int i = 0; i < n && rgb; i++) free(rgb[i]);
    free(rgb);
    free(hw);
    return rc;
}
