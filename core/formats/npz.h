/*
 * npz.h - NumPy .npz archives (a ZIP of .npy files), read and written.
 *
 * FID statistics travel as .npz: pytorch-fid writes np.savez(mu=, sigma=)
 * (stored members), clean-fid np.savez_compressed (deflated members); both
 * hold mu float64 [D] and sigma float64 [D, D]. sdrender's own statistics
 * add features float32 [N, D] (for precision/recall) and n.
 *
 * .npy: "\x93NUMPY", version (1.0: u16 header length; 2.0/3.0: u32), then a
 * Python dict literal {'descr': '<f8', 'fortran_order': False, 'shape': (D,)}
 * padded with spaces to a 64-byte boundary and ended by '\n', then the raw
 * data. Supported dtypes: <f2 <f4 <f8 <i2 <i4 <i8 |i1 |u1 |b1 (little-endian
 * or byte-sized); big-endian, object and Fortran-ordered (ndim >= 2) arrays
 * are refused with a clear message.
 *
 * Reading maps the file; arrays of stored members are views into the map
 * (possibly unaligned: use sd_dtype_convert_to_f32/f64, or sd_tensor_f32_view which
 * checks alignment), deflated members are inflated into owned buffers. All
 * views live until sd_npz_close. Array names drop the ".npy" suffix.
 *
 * Writing stores (never compresses) each array, pads the ZIP local header so
 * every array's data starts on a 64-byte boundary of the file, and commits
 * atomically (temporary file, fsync, rename). np.load reads the result.
 */
#ifndef SD_NPZ_H
#define SD_NPZ_H

#include "err.h"
#include "mapfile.h"
#include "tensor.h"
#include "zipread.h"

typedef struct sd_npz {
    sd_mapfile map;
    sd_zip zip;
    int n;
    sd_tensor *arrays; /* in archive order; names owned by `names` */
    char *names;
    void **owned;      /* inflated members */
    int nowned;
} sd_npz;

int sd_npz_open(sd_npz *z, const char *path, sd_error *err);
void sd_npz_close(sd_npz *z);

/* Array by name (without ".npy"), or NULL. */
const sd_tensor *sd_npz_find(const sd_npz *z, const char *name);

/*
 * The array `name` with the given dtype and shape, or an error naming the
 * file, the array and what was expected. A shape entry of -1 matches any size.
 */
int sd_npz_get(const sd_npz *z, const char *name, sd_dtype dtype, int ndim, const int64_t *shape,
               const sd_tensor **out, sd_error *err);

/* Writes n arrays (name, dtype, shape and data from each view) to path, atomically. */
int sd_npz_write(const char *path, const sd_tensor *arrays, int n, sd_error *err);

/*
 * Parses one .npy image data[0..len) into a view (name left NULL); label
 * names it in messages. Exposed for tests and for plain .npy files.
 */
int sd_npz_parse_npy(const void *data, size_t len, const char *label, sd_tensor *out, sd_error *err);

#endif
