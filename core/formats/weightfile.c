#include "weightfile.h"

#include <stdio.h>
#include <string.h>

#include "fsutil.h"

/* 1 when the name ends like a PyTorch file. */
static int pytorch_extension(const char *path) {
    const char *dot = strrchr(path, '.');
    return dot && (!strcmp(dot, ".pth") || !strcmp(dot, ".pt") || !strcmp(dot, ".ckpt") || !strcmp(dot, ".bin"));
}

int sd_weight_file_open(sd_weight_file *f, const char *path, const char *what, sd_error *err) {
    memset(f, 0, sizeof *f);
    if (sd_fs_is_dir(path))
        return sd_err(err, SD_EINPUT, "%s weights %s: is a folder; give the weight file itself", what, path);
    if (!sd_fs_is_file(path)) return sd_err(err, SD_ENOTFOUND, "%s weights %s: no such file", what, path);
    unsigned char head[8] = {0};
    FILE *fp = fopen(path, "rb");
    if (!fp) return sd_err(err, SD_EIO, "%s weights %s: cannot open", what, path);
    size_t got = fread(head, 1, sizeof head, fp);
    fclose(fp);
    f->is_ckpt = sd_ckpt_sniff(head, got) || pytorch_extension(path);
    char label[1100];
    snprintf(label, sizeof label, "%s (%s)", what, path);
    int rc = f->is_ckpt ? sd_ckpt_open(&f->ck, path, err) : st_open(&f->st, path, err);
    if (rc < 0) {
        sd_err_prefix(err, "%s weights", what);
        return rc;
    }
    rc = f->is_ckpt ? sd_ckpt_to_weights(&f->w, &f->ck, "", label, err) : sd_weights_from_st(&f->w, &f->st, "", label, err);
    if (rc < 0) {
        if (f->is_ckpt) sd_ckpt_close(&f->ck);
        else st_close(&f->st);
        memset(f, 0, sizeof *f);
    }
    return rc;
}

void sd_weight_file_close(sd_weight_file *f) {
    sd_weights_free(&f->w);
    if (f->is_ckpt) sd_ckpt_close(&f->ck);
    else st_close(&f->st);
    memset(f, 0, sizeof *f);
}
