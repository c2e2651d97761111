/*
 * weightfile.h - one weight file, safetensors or PyTorch pickle, as a name table.
 *
 * Evaluation networks (FID Inception, CLIP) come as a single file: pytorch-fid's
 * pt_inception-2015-12-05-*.pth, a safetensors conversion of it, a Hugging Face
 * CLIPModel model.safetensors or pytorch_model.bin. The format is recognised by
 * the file's first bytes (a zip or pickle header means PyTorch, see
 * sd_ckpt_sniff), falling back to the extension (.pth .pt .ckpt .bin) so a
 * damaged PyTorch file gets the PyTorch reader's message. Tensor views point
 * into the mapped file and live until sd_weight_file_close.
 *
 *     sd_weight_file f;
 *     if (sd_weight_file_open(&f, "pt_inception.pth", "inception", &err) < 0) ...
 *     inception_load(&m, &f.w, &err);
 *     sd_weight_file_close(&f);
 */
#ifndef SD_WEIGHTFILE_H
#define SD_WEIGHTFILE_H

#include "ckpt.h"
#include "err.h"
#include "safetensors.h"
#include "weights.h"

typedef struct sd_weight_file {
    int is_ckpt;   /* 1: PyTorch pickle (ck), 0: safetensors (st) */
    st_file st;
    sd_ckpt ck;
    sd_weights w;  /* every tensor, by its full name; label "<what> (<path>)" */
} sd_weight_file;

/* Opens path; `what` names the network in messages ("inception", "clip"). */
int sd_weight_file_open(sd_weight_file *f, const char *path, const char *what, sd_error *err);
void sd_weight_file_close(sd_weight_file *f);

#endif
