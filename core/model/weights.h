/*
 * weights.h - where a network finds its weights.
 *
 * Networks (CLIP, U-Net, VAE, Inception) ask for tensors by their diffusers /
 * transformers name relative to the component ("conv_in.weight",
 * "text_model.encoder.layers.0.mlp.fc1.weight") and never care which file
 * layout they came from. A source is a name table: built directly from a
 * safetensors file with an optional prefix, or by core/model/model.c, which renames
 * the tensors of a single-file (LDM) checkpoint to diffusers names.
 *
 * Tensors stay in their stored dtype (F16, BF16, F32) and are not copied: the
 * views point into the mapped file, which the source's owner keeps open.
 */
#ifndef SD_WEIGHTS_H
#define SD_WEIGHTS_H

#include "err.h"
#include "safetensors.h"
#include "tensor.h"

/*
 * Optional supplier of tensors a table lacks, asked by sd_weights_get with the
 * expected shape (sdrender bench builds random weights for a whole network
 * this way). Returns 0 with *out set, or an error.
 */
typedef int (*sd_weights_supply_fn)(void *ctx, const char *name, int ndim, const int64_t *shape,
                                    const sd_tensor **out, sd_error *err);

typedef struct sd_weights {
    char *label;       /* for messages: "unet (model/unet/diffusion_pytorch_model.safetensors)" */
    int n;
    sd_tensor *tensors;/* sorted by name; names owned by `names` */
    char *names;
    sd_weights_supply_fn supply; /* NULL: missing tensors are errors */
    void *supply_ctx;
} sd_weights;

/* The tensors of f whose names start with prefix, with the prefix removed. */
int sd_weights_from_st(sd_weights *w, const st_file *f, const char *prefix, const char *label, sd_error *err);

/*
 * Builds a table from n (name, tensor) pairs; names are copied. Fails on a
 * duplicate name.
 */
int sd_weights_from_list(sd_weights *w, const char *const *names, const sd_tensor *const *ts, int n,
                         const char *label, sd_error *err);
void sd_weights_free(sd_weights *w);

/* Tensor by name or NULL. */
const sd_tensor *sd_weights_find(const sd_weights *w, const char *name);

/*
 * The tensor `name` with exactly the given shape (ndim entries), or an error
 * naming the tensor, the component and the expected shape.
 */
int sd_weights_get(const sd_weights *w, const char *name, int ndim, const int64_t *shape, const sd_tensor **out,
                   sd_error *err);

/* Same with the name given printf-style:
 *   sd_weights_getf(w, &t, err, (int64_t[]){320, 4, 3, 3}, 4, "down_blocks.%d.resnets.%d.conv1.weight", i, j) */
int sd_weights_getf(const sd_weights *w, const sd_tensor **out, sd_error *err, const int64_t *shape, int ndim,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/*
 * A layer's "<name>.weight" and "<name>.bias" (name given printf-style): the
 * weight [out, in, k, k] for k > 0 (a convolution), [out, in] for k == 0 (a
 * linear layer), [out] for k < 0 (a norm); the bias [out].
 */
int sd_weights_get_wb(const sd_weights *w, const sd_tensor **wt, const sd_tensor **bt, sd_error *err, int out, int in,
                      int k, const char *fmt, ...) __attribute__((format(printf, 8, 9)));

/* Total number of elements (parameters) of all tensors. */
int64_t sd_weights_numel(const sd_weights *w);

#endif
