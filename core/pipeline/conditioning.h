/*
 * conditioning.h - a prompt to the U-Net's context: [77 k, D] text embeddings.
 *
 *     sd_cond c;
 *     sd_cond_encode(tok, &clip, "a (red:1.3) fox", SD_PROMPT_A1111, 1, &c, &err);
 *     // c.n_chunks = 1; c.emb: [77, D]; c.ids / c.mult: [1, 77]
 *     sd_cond_free(&c);
 *
 * Plain syntax: diffusers' encode_prompt (one chunk, truncated at 75 tokens,
 * multipliers 1). A1111 syntax (text without <lora:...> tags: the pipeline
 * removes them from the prompt; a negative prompt keeps them as text, as in
 * A1111): A1111's chunks
 * (core/text/prompt_a1111.h), each through the text encoder on its own with
 * clip skip, then the "Original" emphasis per chunk: z *= multipliers,
 * z *= mean(z before) / mean(z after) (float32); chunks concatenated along
 * the token axis. Without weights it equals the plain embedding bit for bit.
 */
#ifndef SD_CONDITIONING_H
#define SD_CONDITIONING_H

#include <stdint.h>

#include "clip.h"
#include "err.h"
#include "settings.h"
#include "tokenizer.h"

typedef struct sd_cond {
    int n_chunks;
    int32_t *ids; /* [n_chunks, 77] */
    float *mult;  /* [n_chunks, 77] */
    float *emb;   /* [n_chunks * 77, D] */
} sd_cond;

/* clip_skip: 1 = last layer (A1111 numbering). */
int sd_cond_encode(tokenizer_bpe *tok, clip_text_model *clip, const char *text, sd_prompt_syntax syntax, int clip_skip,
                   sd_cond *out, sd_error *err);
void sd_cond_free(sd_cond *c);

#endif
