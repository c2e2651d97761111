/*
 * zipread.h - reading ZIP archives held in memory (PyTorch checkpoints, .npz).
 *
 * PyTorch >= 1.6 saves checkpoints as a ZIP of stored (uncompressed) members,
 * each aligned to 64 bytes; NumPy's .npz is a ZIP of .npy members, stored
 * (np.savez) or deflated (np.savez_compressed). The reader parses the
 * central directory itself (ZIP64 included, as PyTorch and NumPy write it for
 * large files) and validates every entry on open: each member's local header
 * and data lie inside the archive, stored members have equal sizes, names are
 * unique. A stored member is then a plain view into the archive bytes (no
 * copy); a deflated member is inflated with zlib into a new buffer and its
 * CRC-32 checked. Encrypted members and methods other than stored/deflate are
 * refused when read.
 *
 *     sd_zip z;
 *     sd_zip_open(&z, map.data, map.size, "model.ckpt", &err);
 *     const sd_zip_entry *e = sd_zip_find(&z, "archive/data.pkl");
 *     const void *p; void *owned;
 *     sd_zip_read(&z, e, 0, &p, &owned, &err);  // p: e->size bytes
 *     ...; free(owned); sd_zip_close(&z);
 */
#ifndef SD_ZIPREAD_H
#define SD_ZIPREAD_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct sd_zip_entry {
    const char *name;   /* owned by the sd_zip */
    uint64_t offset;    /* of the member's (compressed) data within the archive */
    uint64_t comp_size; /* bytes stored in the archive */
    uint64_t size;      /* bytes after decompression */
    uint32_t crc32;
    int method;         /* 0 stored, 8 deflate; others are refused by sd_zip_read */
    int encrypted;
} sd_zip_entry;

typedef struct sd_zip {
    char *label;                /* for messages: the file name */
    const unsigned char *data;  /* the archive; not owned */
    size_t size;
    int n;
    sd_zip_entry *entries;      /* in central-directory order */
    int *sorted;                /* entry indices sorted by name */
    char *names;
} sd_zip;

/* Parses the archive data[0..size) (kept, not copied); label names it in messages. */
int sd_zip_open(sd_zip *z, const void *data, size_t size, const char *label, sd_error *err);
void sd_zip_close(sd_zip *z);

/* Entry by exact name, or NULL. */
const sd_zip_entry *sd_zip_find(const sd_zip *z, const char *name);

/*
 * The uncompressed bytes of e in *out (e->size bytes). Stored: a view into
 * the archive, *owned = NULL, the CRC is checked only when verify_crc is set
 * (it costs a pass over the data). Deflated: a new buffer the caller frees,
 * returned in both *out and *owned; the CRC is always checked.
 */
int sd_zip_read(const sd_zip *z, const sd_zip_entry *e, int verify_crc, const void **out, void **owned,
                sd_error *err);

#endif
