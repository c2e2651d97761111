/* conditioning.c - prompt text to U-Net context (see conditioning.h). */
#include "conditioning.h"

#include <stdlib.h>
#include <string.h>

#include "prompt_a1111.h"

#define CTX_LEN 77

void sd_cond_free(sd_cond *c) {
    free(c->ids);
    free(c->mult);
    free(c->emb);
    memset(c, 0, sizeof *c);
}

/* Mean of n floats, summed in double. */
static float mean_f32(const float *z, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += z[i];
    return (float)(s / (double)n);
}

/* A1111's EmphasisOriginal on one chunk z: [77, D] with multipliers m: [77]. */
static void emphasis_original(float *z, const float *m, int D) {
    int plain = 1;
    for (int t = 0; t < CTX_LEN; t++) plain &= m[t] == 1.0f;
    if (plain) return;
    size_t n = (size_t)CTX_LEN * D;
    float before = mean_f32(z, n);
    for (int t = 0; t < CTX_LEN; t++)
        for (int d = 0; d < D; d++) z[(size_t)t * D + d] *= m[t];
    float ratio = before / mean_f32(z, n);
    for (size_t i = 0; i < n; i++) z[i] *= ratio;
}

/* The chunks of text in out->ids / out->mult. */
static int make_chunks(tokenizer_bpe *tok, const char *text, sd_prompt_syntax syntax, sd_cond *out, sd_error *err) {
    if (syntax == SD_PROMPT_PLAIN) {
        out->n_chunks = 1;
        out->ids = malloc(sizeof(int32_t) * CTX_LEN);
        out->mult = malloc(sizeof(float) * CTX_LEN);
        if (!out->ids || !out->mult) return sd_err(err, SD_ENOMEM, "out of memory");
        for (int i = 0; i < CTX_LEN; i++) out->mult[i] = 1.0f;
        return tokenizer_encode_padded(tok, text, out->ids, CTX_LEN, NULL, err);
    }
    a1111_chunks ch;
    int rc = a1111_tokenize_line(tok, text, &ch, err);
    if (rc < 0) return rc;
    size_t n = (size_t)ch.n * CTX_LEN;
    out->n_chunks = ch.n;
    out->ids = ch.ids;
    out->mult = malloc(sizeof(float) * n);
    ch.ids = NULL;
    if (out->mult)
        for (size_t i = 0; i < n; i++) out->mult[i] = (float)ch.mult[i];
    a1111_chunks_free(&ch);
    return out->mult ? 0 : sd_err(err, SD_ENOMEM, "out of memory");
}

int sd_cond_encode(tokenizer_bpe *tok, clip_text_model *clip, const char *text, sd_prompt_syntax syntax, int clip_skip,
                   sd_cond *out, sd_error *err) {
    memset(out, 0, sizeof *out);
    if (clip_skip - 1 >= clip->cfg.layers)
        return sd_err(err, SD_EINPUT, "clip skip %d: the text encoder has only %d layers", clip_skip, clip->cfg.layers);
    int rc = make_chunks(tok, text, syntax, out, err);
    const int D = clip->cfg.hidden;
    if (rc == 0 && !(out->emb = malloc(sizeof(float) * (size_t)out->n_chunks * CTX_LEN * D)))
        rc = sd_err(err, SD_ENOMEM, "out of memory for %d prompt chunks", out->n_chunks);
    for (int k = 0; rc == 0 && k < out->n_chunks; k++) {
        float *z = out->emb + (size_t)k * CTX_LEN * D;
        rc = clip_text_forward(clip, (const int *)(out->ids + (size_t)k * CTX_LEN), 1, CTX_LEN, clip_skip - 1, z, err);
        if (rc == 0 && syntax == SD_PROMPT_A1111) emphasis_original(z, out->mult + (size_t)k * CTX_LEN, D);
    }
    if (rc < 0) sd_cond_free(out);
    return rc;
}
