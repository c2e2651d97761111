/*
 * shard.h - one rank's share of a weight tensor (tensor parallelism).
 *
 * A layer split over P ranks keeps a slice of each weight:
 *   rows    [r0, r1) of the first axis (output features, output channels):
 *           contiguous, so a view into the original data, no copy;
 *   columns [c0, c1) of the second axis (input features, input channels):
 *           strided, so an owned copy of just that slice;
 *   two row ranges (GEGLU's first linear holds its value and gate halves
 *           stacked: a rank takes the same range of each): an owned copy.
 * Copies keep the original dtype (16-bit stays 16-bit). The store owns the
 * new tensor structs and the copies; views point into the original data,
 * which must outlive the store (the mapped checkpoint).
 */
#ifndef SD_SHARD_H
#define SD_SHARD_H

#include <stdint.h>

#include "err.h"
#include "tensor.h"

typedef struct shard_store {
    sd_tensor **tensors; /* owned structs */
    void **copies;       /* owned data, or NULL for views */
    const sd_tensor **sources; /* what each shard was cut from */
    int n, cap;
    size_t copied_bytes; /* sum of the copies' sizes */
} shard_store;

/* Rows [r0, r1) of t's first axis: a view. */
int shard_rows(shard_store *s, const sd_tensor *t, int64_t r0, int64_t r1, const sd_tensor **out, sd_error *err);
/* Rows [a0, a1) followed by rows [b0, b1): a copy. */
int shard_rows2(shard_store *s, const sd_tensor *t, int64_t a0, int64_t a1, int64_t b0, int64_t b1,
                const sd_tensor **out, sd_error *err);
/* t: [N, K, ...] -> [N, c1 - c0, ...], the second axis' range [c0, c1): a copy. */
int shard_cols(shard_store *s, const sd_tensor *t, int64_t c0, int64_t c1, const sd_tensor **out, sd_error *err);

/*
 * Gives the memory of every source tensor's unused part back to the system
 * (madvise MADV_DONTNEED on the whole pages outside this rank's row views;
 * all of a copied source): a rank then keeps only its share resident. Only
 * for sources that nothing else reads again: mapped checkpoints (pages come
 * back from the file if touched) and the bench's random weights. Returns
 * the bytes released.
 */
size_t shard_store_release_sources(shard_store *s);

void shard_store_free(shard_store *s);

#endif
