/*
 * mapfile.h - a whole file mapped read-only into memory.
 *
 * Checkpoint readers (PyTorch zip/legacy, .npz) hand out tensor views that
 * point straight into the mapping, so a multi-gigabyte .ckpt costs no copy.
 * An empty file maps to data == NULL, size == 0.
 *
 *     sd_mapfile m;
 *     if (sd_mapfile_open(&m, "model.ckpt", &err) < 0) ...
 *     use(m.data, m.size);
 *     sd_mapfile_close(&m);
 */
#ifndef SD_MAPFILE_H
#define SD_MAPFILE_H

#include <stddef.h>

#include "err.h"

typedef struct sd_mapfile {
    char *path;
    const unsigned char *data; /* size bytes, read-only */
    size_t size;
} sd_mapfile;

/* Maps path (a regular file); on failure m is zeroed and err names the file. */
int sd_mapfile_open(sd_mapfile *m, const char *path, sd_error *err);
void sd_mapfile_close(sd_mapfile *m);

#endif
