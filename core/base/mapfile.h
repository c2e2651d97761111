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

/*
 * Drops the whole pages inside [p, p + n) from this process's memory
 * (madvise MADV_DONTNEED); returns the bytes dropped. On a read-only file
 * mapping the next access reads them again from the page cache or the file,
 * so a network's weights can leave the resident set between uses. On any
 * other memory the contents are lost: callers pass only mapped file ranges,
 * or ranges nothing reads again.
 */
size_t sd_map_release(const void *p, size_t n);

#endif
