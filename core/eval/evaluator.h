/*
 * evaluator.h - the per-process work of `sdrender stats` and `sdrender metrics`:
 * the evaluation networks loaded from their files, and one batch of image
 * files turned into FID Inception features and CLIP pair scores.
 *
 *     sd_evaluator ev;
 *     sd_evaluator_opts o = {.inception = "pt_inception-2015-12-05-6726825d.pth", .clip = "clip/model.safetensors"};
 *     if (sd_evaluator_open(&ev, &o, &err) < 0) ...
 *     sd_evaluator_images(&ev, paths, prompts, n, feats, scores, &err);  // n <= ev.batch
 *     sd_evaluator_close(&ev);
 *
 * Inception: pytorch-fid's .pth or a safetensors conversion (F16/BF16/F32),
 * pool3 features [2048] per image (core/eval/inception.h).
 *
 * CLIP: Hugging Face CLIPModel names in a safetensors or PyTorch file. Head
 * counts come from config.json beside the weights when present (else width /
 * 64, OpenAI's rule; see clip_model_config_derive). The tokenizer is
 * opts.clip_tokenizer (a tokenizer folder or OpenAI's
 * bpe_simple_vocab_16e6.txt.gz), else found beside the weights: vocab.json +
 * merges.txt, a tokenizer/ folder, or bpe_simple_vocab_16e6.txt.gz. Prompts
 * are tokenized as OpenAI's clip.tokenize does: <start> ids <end>, padded with
 * id 0 to the text context (77); a longer prompt is cut to context - 2 ids
 * before <end> (torchmetrics truncates too; clip.tokenize would refuse it) and
 * counted in ev.truncated. The score of a pair is 100 cos(image, prompt),
 * with OpenAI's preprocessing (core/eval/clip_model.h).
 */
#ifndef SD_EVALUATOR_H
#define SD_EVALUATOR_H

#include <stdint.h>

#include "clip_model.h"
#include "err.h"
#include "inception.h"
#include "tokenizer.h"
#include "weightfile.h"

typedef struct sd_evaluator_opts {
    const char *inception;      /* weight file, or NULL: no features */
    const char *clip;           /* weight file, or NULL: no CLIP scores */
    const char *clip_tokenizer; /* folder or .gz; NULL: look beside the CLIP weights */
    int batch;                  /* images per forward pass; 0: INCEPTION_DEFAULT_MAX_BATCH */
} sd_evaluator_opts;

typedef struct sd_evaluator {
    int batch;
    int has_inception;
    inception_model inception;
    int has_clip;
    sd_weight_file clip_file;   /* the CLIP model's tensors point into it */
    clip_model clip;
    tokenizer_bpe *tok;
    int64_t truncated;          /* prompts cut to the context so far */
} sd_evaluator;

int sd_evaluator_open(sd_evaluator *ev, const sd_evaluator_opts *o, sd_error *err);
void sd_evaluator_close(sd_evaluator *ev);

/*
 * Decodes the PNGs paths[0..n) (n <= ev->batch) and computes, in one forward
 * pass per network:
 *   feats:  [n, 2048] pool3 features (needs Inception; skipped when NULL);
 *   scores: [n] 100 cos(image i, prompts[i]) (needs CLIP; skipped when NULL).
 * A file that is missing or not a PNG fails naming it.
 */
int sd_evaluator_images(sd_evaluator *ev, const char *const *paths, const char *const *prompts, int n, float *feats,
                        double *scores, sd_error *err);

/*
 * The CLIP tokenizer file or folder to use: `given` when not NULL, else the
 * first of vocab.json+merges.txt, tokenizer/, bpe_simple_vocab_16e6.txt.gz
 * in the folder of clip_path. *out is a new string (caller frees).
 */
int sd_evaluator_find_clip_tokenizer(const char *clip_path, const char *given, char **out, sd_error *err);

#endif
