/*
 * ckpt.h - PyTorch checkpoints (.ckpt, .pth, .pt) as a table of tensors,
 * without Python and without executing anything in the file.
 *
 * Formats:
 *   - zip (torch.save default since PyTorch 1.6): "<name>/data.pkl" holds the
 *     pickled object, "<name>/data/<key>" the raw bytes of each storage
 *     (stored members are used in place, deflated ones are inflated);
 *   - legacy (_use_new_zipfile_serialization=False): five pickles in a row
 *     (magic number, protocol 1001, sys info, the object, storage keys),
 *     then each storage's bytes, each preceded by an 8-byte element count.
 * The pickles go through core/formats/pickle.c, which knows only tensors, storages,
 * OrderedDict and plain Python values; anything else is an inert placeholder.
 *
 * Which tensors: if the top-level object is a dict with a "state_dict" dict
 * (SD 1.x / Lightning .ckpt), that dict; otherwise the top-level dict itself
 * (plain torch.save(model.state_dict())). Entries that are plain non-tensor
 * values (numbers, strings, None, nested containers) are skipped; an entry
 * that is a placeholder (an object of a class we do not execute) is an error
 * naming the entry and the class. Other top-level entries (global_step,
 * optimizer states, Lightning callbacks) are never looked at.
 *
 * Tensors keep their stored dtype (F32, F16, BF16, F64, I64, I32, I16, I8,
 * U8, BOOL) and must be contiguous (row-major strides; dimensions of size 1
 * may have any stride). Their data points into the mapped file (storage
 * offset applied) and stays valid until sd_ckpt_close, so a .ckpt serves a
 * model exactly like a safetensors file:
 *
 *     sd_ckpt ck;
 *     if (sd_ckpt_open(&ck, "v1-5.ckpt", &err) < 0) ...
 *     sd_weights unet;
 *     sd_ckpt_to_weights(&unet, &ck, "model.diffusion_model.", "unet (v1-5.ckpt)", &err);
 *     ...
 *     sd_weights_free(&unet);
 *     sd_ckpt_close(&ck);
 */
#ifndef SD_CKPT_H
#define SD_CKPT_H

#include "err.h"
#include "mapfile.h"
#include "tensor.h"
#include "weights.h"

typedef struct sd_ckpt {
    sd_mapfile map;
    int legacy;      /* 1 for the pre-1.6 format, 0 for zip */
    void **owned;    /* inflated storages (deflated zip members) */
    int nowned;
    sd_weights all;  /* every tensor, by its full name; views into map or owned */
} sd_ckpt;

/* Opens and validates path; on failure c is left closed and err says why. */
int sd_ckpt_open(sd_ckpt *c, const char *path, sd_error *err);
void sd_ckpt_close(sd_ckpt *c);

/* Tensor by full name, or NULL. */
const sd_tensor *sd_ckpt_find(const sd_ckpt *c, const char *name);

/* The tensors whose names start with prefix, prefix removed (like sd_weights_from_st). */
int sd_ckpt_to_weights(sd_weights *w, const sd_ckpt *c, const char *prefix, const char *label, sd_error *err);

/* 1 when the file starts like a PyTorch checkpoint (zip or legacy pickle), else 0. */
int sd_ckpt_sniff(const void *head, size_t n);

#endif
