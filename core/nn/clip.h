/*
 * clip.h - the CLIP text transformer (transformers' CLIPTextModel weights).
 *
 *     clip_text_model m;
 *     clip_text_load(&m, &cfg, &weights, &err);      // names "text_model.encoder.layers.0...."
 *     clip_text_forward(&m, ids, 1, 77, 0, emb, &err); // ids: [1, 77] -> emb: [1, 77, hidden]
 *     clip_text_free(&m);
 *
 * Forward: token + position embedding, `layers` pre-LayerNorm blocks
 * (x += out_proj(causal_attn(LN1 x)); x += fc2(act(fc1(LN2 x)))), then the
 * final LayerNorm. skip_layers = 0 gives last_hidden_state; skip_layers = 1
 * applies the final LayerNorm to the output of the second-to-last block
 * ("CLIP skip 2" in A1111 terms, diffusers clip_skip=1).
 * The weights stay in the caller's sd_weights (not copied; keep it alive).
 */
#ifndef SD_CLIP_H
#define SD_CLIP_H

#include "config.h"
#include "err.h"
#include "ops.h"
#include "probe.h"
#include "weights.h"

typedef struct clip_layer {
    const sd_tensor *ln1_w, *ln1_b;   /* [D] */
    const sd_tensor *q_w, *k_w, *v_w; /* [D, D] */
    const sd_tensor *q_b, *k_b, *v_b; /* [D] */
    const sd_tensor *o_w, *o_b;       /* [D, D], [D] */
    const sd_tensor *ln2_w, *ln2_b;   /* [D] */
    const sd_tensor *fc1_w, *fc1_b;   /* [I, D], [I] */
    const sd_tensor *fc2_w, *fc2_b;   /* [D, I], [D] */
} clip_layer;

typedef struct clip_text_model {
    clip_config cfg;
    const sd_tensor *tok_emb;         /* [vocab, D] */
    const sd_tensor *pos_emb;         /* [max_positions, D] */
    clip_layer *layers;               /* cfg.layers */
    const sd_tensor *final_ln_w, *final_ln_b; /* [D] */
    ops_ctx ops;                      /* kernel context: activations and scratch of one forward pass */
    const sd_probe *probe;            /* optional: "hidden_states.embeddings", "hidden_states.layer{i}" */
} clip_text_model;

/*
 * One encoder layer, shared with the CLIP vision tower (core/eval/clip_model.c):
 * clip_layer_load finds "<prefix>encoder.layers.<l>.*" (prefix "text_model."
 * or "vision_model.") with hidden size D and MLP size I; clip_layer_forward
 * runs the pre-LN block on x: [B*T, D] in place, with a causal mask or none,
 * using c's hidden, intermediate, heads, eps and act, kernels run with ops
 * (temporaries from its arena).
 */
int clip_layer_load(clip_layer *L, const sd_weights *w, const char *prefix, int l, int64_t D, int64_t I,
                    sd_error *err);
int clip_layer_forward(const clip_config *c, const clip_layer *L, float *x, int B, int T, int causal, ops_ctx *ops,
                       sd_error *err);

/* Finds and shape-checks every tensor; fails naming the first missing or mismatched one. */
int clip_text_load(clip_text_model *m, const clip_config *c, const sd_weights *w, sd_error *err);

/*
 * ids: [B, T] token ids (T <= max_positions) -> out: [B, T, hidden], the final
 * LayerNorm of the output of block (layers - 1 - skip_layers).
 */
int clip_text_forward(clip_text_model *m, const int *ids, int B, int T, int skip_layers, float *out, sd_error *err);

/*
 * SDXL's view: hidden: [B, T, hidden] = hidden_states[-1 - hidden_skip], the output of block
 * (layers - 1 - hidden_skip) WITHOUT the final LayerNorm (SDXL: hidden_skip 1, the penultimate;
 * hidden_skip = layers gives the embeddings); final (may be NULL): the final LayerNorm of the
 * last block's output, [B, T, hidden] (what the pooled embedding is taken from).
 */
int clip_text_forward_hidden(clip_text_model *m, const int *ids, int B, int T, int hidden_skip, float *hidden,
                             float *final, sd_error *err);

void clip_text_free(clip_text_model *m);

/* Multiply-adds x 2 of one forward pass over B sequences of T tokens. */
double clip_text_flops(const clip_config *c, int B, int T);

#endif
