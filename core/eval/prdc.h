/*
 * prdc.h - improved precision/recall (Kynkäänniemi et al. 2019) and
 * density/coverage (Naeem et al. 2020), exactly as `prdc` 0.1 computes them.
 *
 * Definitions (real x_i, i < N; fake y_j, j < M; Euclidean distance d):
 *   r_i = distance from x_i to its k-th nearest OTHER real point (prdc takes
 *         the (k+1)-th smallest entry of the real-real row, the point itself
 *         counting at distance 0; duplicates count as neighbours at 0);
 *   s_j = the same within the fake set;
 *   precision = mean_j [∃ i: d(x_i, y_j) < r_i]
 *   recall    = mean_i [∃ j: d(x_i, y_j) < s_j]
 *   density   = (1/k) · mean_j #{i: d(x_i, y_j) < r_i}        (may exceed 1)
 *   coverage  = mean_i [min_j d(x_i, y_j) < r_i]
 * All comparisons are strict: a point on a ball's boundary is outside it and
 * a zero radius is an empty ball.
 *
 * Numerics. prdc gets float32 distances from scikit-learn, which computes
 * squared distances in float64, rounds them to float32, clips at 0 and takes
 * a float32 sqrt (the diagonal of a set against itself is set to 0). Here:
 *   - Gram blocks a·b come from float64 dgemm on widened blocks of rows, as
 *     scikit-learn's float64 "upcast" path for float32 input does (never an
 *     N x M matrix: memory is O(block² + N·k)), and
 *     d² = |a|² + |b|² - 2a·b is formed in float64 with |a|², |b|² in float64;
 *   - when d² < (|a|² + |b|²)/1e4 (near-duplicates) the cancellation in that
 *     formula could still reach float32 rounding, so d² is recomputed directly
 *     as Σ(a - b)² in float64 (duplicates exactly 0). Features with a large
 *     common offset (Inception pool3) stay far above that threshold, so the
 *     direct sums are rare;
 *   - then, like scikit-learn, d = sqrtf((float)max(d², 0)), and the
 *     comparisons are made between these float32 values, as prdc does.
 * When every squared distance is exactly representable (the goldens: features
 * that are multiples of 1/8), this gives bit-identical radii and identical
 * decisions, ties included. For general features, a decision can differ from
 * prdc only when two distances agree to within float32 rounding, where prdc's
 * own result depends on its summation order too.
 *
 * MPI: the work splits by rows. sd_prdc_radii_rows computes radii for a range
 * of rows against the whole set; sd_prdc_compare processes a range of real
 * rows against all fakes, adding into fake_hits (sum these across ranks) and
 * writing the per-real flags for its rows (concatenate); sd_prdc_finish turns
 * the merged counts into the four numbers.
 */
#ifndef SD_PRDC_H
#define SD_PRDC_H

#include <stdint.h>

#include "err.h"

/*
 * Rows per Gram block of the left set. Row ranges that start at multiples of
 * it (and end at one, or at n) are cut into exactly the blocks one call over
 * all rows would use, so a split between ranks gives bit-identical distances.
 */
#define SD_PRDC_ROW_BLOCK 256

typedef struct sd_prdc {
    double precision, recall, density, coverage;
} sd_prdc;

/* real: [n_real, dim], fake: [n_fake, dim] float32; k >= 1 (prdc's nearest_k, default 5 in prdc, 3 in many papers). */
int sd_prdc_compute(const float *real, int64_t n_real, const float *fake, int64_t n_fake, int dim, int k, sd_prdc *out,
                    sd_error *err);

/* radii: [n] float32, each point's distance to its k-th nearest other point of x: [n, dim]. */
int sd_prdc_radii(const float *x, int64_t n, int dim, int k, float *radii, sd_error *err);

/* The same for rows [r0, r1) only (radii[r0..r1) written). */
int sd_prdc_radii_rows(const float *x, int64_t n, int dim, int k, int64_t r0, int64_t r1, float *radii,
                       sd_error *err);

/*
 * Real rows [r0, r1) against all fakes:
 *   fake_hits[j]   += #{i in [r0, r1): d(x_i, y_j) < real_radii[i]}      ([n_fake])
 *   real_recall[i]  = [∃ j: d(x_i, y_j) < fake_radii[j]]               ([n_real], rows r0..r1)
 *   real_cover[i]   = [min_j d(x_i, y_j) < real_radii[i]]              ([n_real], rows r0..r1)
 */
int sd_prdc_compare(const float *real, int64_t n_real, const float *fake, int64_t n_fake, int dim,
                    const float *real_radii, const float *fake_radii, int64_t r0, int64_t r1, int64_t *fake_hits,
                    uint8_t *real_recall, uint8_t *real_cover, sd_error *err);

/* The four numbers from merged counts, with prdc's exact arithmetic. */
void sd_prdc_finish(int64_t n_real, int64_t n_fake, int k, const int64_t *fake_hits, const uint8_t *real_recall,
                    const uint8_t *real_cover, sd_prdc *out);

#endif
