/*
 * lora.h - LoRA files (kohya and diffusers/PEFT) merged into a model's weights.
 *
 *     sd_lora l;
 *     sd_lora_open(&l, "style.safetensors", &model, &err);   // every key matched, shapes checked
 *     sd_lora_patch p = {0};
 *     const sd_lora *ls[1] = {&l};
 *     sd_lora_merge(&p, &model, ls, (double[]){0.8}, (double[]){0.8}, 1, &err);
 *     ... render ...
 *     sd_lora_unmerge(&p, &model);                            // the base weights, bit for bit
 *     sd_lora_close(&l);
 *
 * Formats (module names as diffusers / transformers, SD 1.x and 2.x):
 *   kohya: lora_unet_<module with '_' for '.'> and lora_te_<...>, each with
 *          .lora_down.weight [r, in(, kh, kw)], .lora_up.weight [out, r(, 1, 1)]
 *          and optionally .alpha (scale alpha / r; without it 1). Linear, 1x1
 *          and 3x3 (LoCon) convolutions.
 *   PEFT:  unet.<module>.lora_A.weight (down), .lora_B.weight (up), and
 *          text_encoder.<module>...; also .lora.down/.lora.up, optional .alpha.
 * Merge: W' = W + multiplier * scale * up @ down, reshaped to W, in float32.
 * Several LoRAs on one module add up, in the order given. A key that matches
 * no module of the model, a module without its down or up half, or a shape
 * that does not fit is an SD_EINPUT error naming the file and the key; keys of
 * SDXL LoRAs (lora_te1_/lora_te2_) say so. Nothing is skipped silently.
 *
 * The merged weights are float32 buffers the patch owns; the weight tables'
 * entries point at them while merged and get their original views back on
 * unmerge (networks keep pointers to those entries, so they see both).
 */
#ifndef SD_LORA_H
#define SD_LORA_H

#include "err.h"
#include "model.h"
#include "safetensors.h"

/* One LoRA module: which weight it changes and how. */
typedef struct sd_lora_mod {
    int te;                      /* 1: text encoder (model->clip_w), 0: U-Net (model->unet_w) */
    int index;                   /* of the target in that table's tensors */
    const sd_tensor *down, *up;  /* in the file */
    double scale;                /* alpha / r, or 1 */
} sd_lora_mod;

typedef struct sd_lora {
    char *path;
    st_file file;
    int n_mods;
    sd_lora_mod *mods;
    char hash[65]; /* A1111's hash: kohya's addnet hash (SHA-256 of the data after the header) or sshs_model_hash */
} sd_lora;

/* Opens path and matches every key against m's U-Net and text encoder. */
int sd_lora_open(sd_lora *l, const char *path, const sd_model *m, sd_error *err);
void sd_lora_close(sd_lora *l);

/* What a merge changed: per modified tensor, the original view and the merged buffer. */
typedef struct sd_lora_patch_entry {
    int te, index;
    sd_tensor orig;
    float *buf;
} sd_lora_patch_entry;

typedef struct sd_lora_patch {
    int n, cap;
    sd_lora_patch_entry *e;
} sd_lora_patch;

/*
 * Merges ls[0..n) into m (which must be the model they were opened for) with
 * text-encoder multipliers te[i] and U-Net multipliers unet[i]; p must be
 * empty (zeroed or unmerged). On failure m is left as it was.
 */
int sd_lora_merge(sd_lora_patch *p, sd_model *m, const sd_lora *const *ls, const double *te, const double *unet, int n,
                  sd_error *err);
/* Puts the original weights back (exactly) and empties p. */
void sd_lora_unmerge(sd_lora_patch *p, sd_model *m);

#endif
