/*
 * safetensors.h - reading and writing .safetensors files.
 *
 * Format: u64 little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "string", ...}}
 * then the data area; offsets are relative to its start.
 *
 * The reader maps the file read-only and validates everything before any
 * tensor is handed out: header length (at most 100 MB and inside the file),
 * JSON syntax, dtypes, shapes against byte spans, offsets inside the data area,
 * no overlaps and no duplicate names. After st_open succeeds every tensor's
 * data lies inside the mapping, so no later read can go out of bounds.
 * Tensor views stay valid until st_close.
 */
#ifndef SD_SAFETENSORS_H
#define SD_SAFETENSORS_H

#include <stddef.h>

#include "err.h"
#include "tensor.h"

#define ST_MAX_HEADER (100u * 1000u * 1000u)

typedef struct st_file {
    char *path;
    void *map;           /* whole file, read-only */
    size_t map_size;
    const unsigned char *data; /* start of the data area */
    size_t data_size;
    int n;
    sd_tensor *tensors;  /* sorted by name */
    char *names;         /* storage for all tensor names */
    void *metadata;      /* json_t object of strings, or NULL */
} st_file;

/* Opens and validates path. On failure f is left closed and err says why. */
int st_open(st_file *f, const char *path, sd_error *err);
void st_close(st_file *f);

/* Tensor by exact name, or NULL. */
const sd_tensor *st_find(const st_file *f, const char *name);

/* Like st_find but fails with "<file>: missing tensor 'name'" when absent. */
int st_get(const st_file *f, const char *name, const sd_tensor **out, sd_error *err);

/* Value of a __metadata__ key, or NULL. */
const char *st_metadata(const st_file *f, const char *key);

/*
 * Writes n tensors to path (data copied from each view). meta_keys/meta_vals
 * are n_meta string pairs for __metadata__ (may be 0). Writes to a temporary
 * name and renames, so a crash never leaves a half-written file behind.
 */
int st_write(const char *path, const sd_tensor *tensors, int n, const char *const *meta_keys,
             const char *const *meta_vals, int n_meta, sd_error *err);

#endif
