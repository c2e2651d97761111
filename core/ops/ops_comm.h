/*
 * ops_comm.h - the communicator tensor-parallel kernels talk through.
 *
 * core/ never calls MPI: a group of processes that share one image is an
 * ops_comm whose callbacks are filled in by mpi/ (mpi/tp_group.c), or by a
 * test with threads. A network holds one in its ops_ctx (ctx->comm); NULL, or
 * size 1, means this process computes every output alone.
 *
 * Determinism. The only reduction is ops_comm_allreduce_sum, and every
 * element of it is added in rank order 0, 1, ..., size-1: either on every
 * rank after an all-gather of the whole buffers, or (with an all-to-all,
 * the bandwidth-optimal way for larger groups) each rank adds 1/size of the
 * elements for all and an all-gather shares the sums, or through the
 * implementation's own allreduce_sum (mpi/tp_shm.c: a window the ranks of
 * one node share), which sums the same way. All give the same bits, on
 * every rank, whatever the message timing, the MPI library's reduction
 * algorithm, or the nodes the ranks run on: only the group size matters
 * (ops_comm_sum_ranks is the one sum of all three). The all-gather way
 * sends (size-1) n floats per rank, the all-to-all way 2 (size-1)/size n:
 * the same for 2 ranks, 3.5x less for 8.
 */
#ifndef SD_OPS_COMM_H
#define SD_OPS_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "ops.h"

/* Time and volume of this rank's communication (for `bench --tp`). */
typedef struct ops_comm_stats {
    double seconds;      /* inside the callbacks */
    uint64_t bytes_sent; /* what this rank sent: n bytes to each of the size-1 others per all-gather */
    int64_t calls;
} ops_comm_stats;

/*
 * What a row-parallel layer adds to its reduced sum S, once, element by element, in the order its one-rank
 * form adds it (so the bits match): t = S + bias1[c], then out = t + (residual + bias2[c]), t + residual,
 * t + bias2[c] or t (absent terms are NULL). Element i is in channel c = (i / inner) % channels: inner =
 * H*W for [B, C, H, W] tensors, 1 for [M, C] rows. out may be the reduced buffer itself or the residual.
 * Where the transport gives each rank a slice to sum (all-to-all, shared memory), each rank finishes its
 * slice only, so this work is divided by the group size instead of repeated on every rank.
 */
typedef struct ops_reduce_epi {
    float *out;
    const float *bias1, *bias2, *residual;
    int channels;
    size_t inner;
} ops_reduce_epi;

/* dst[j] = element i0 + j finished by e from its sum sum[j], for j < n (dst may be sum or e's residual). */
void ops_reduce_epi_apply(const ops_reduce_epi *e, const float *sum, size_t i0, size_t n, float *dst);
/*
 * dst[j] = parts[0][j] + parts[1][j] + ... + parts[P-1][j] in that order, finished by e as element i0 + j
 * (e NULL: the sum), for j < n; threads over blocks. The one rank-ordered sum of every transport.
 */
void ops_comm_sum_ranks(float *dst, const float *const *parts, int P, size_t i0, size_t n, const ops_reduce_epi *e);

typedef struct ops_comm {
    int rank, size;
    void *impl;          /* the implementation's own data (an MPI communicator) */
    const char *transport; /* how the all-reduce travels, in words (bench prints it); may be NULL */
    ops_comm_stats *stats; /* may be NULL; updated by ops_comm_allgather */
    /*
     * recv[size * bytes] = every rank's `bytes` bytes of send, in rank order
     * (recv + rank*bytes may be send itself). Collective: every rank calls it.
     */
    int (*allgather)(const struct ops_comm *c, const void *send, void *recv, size_t bytes, sd_error *err);
    /*
     * Optional: the same, for waits that may last seconds (a group agreeing while its leader decodes
     * or writes): sleeps while it waits instead of polling, so that a waiting rank does not slow a
     * working one that shares its core's resources. NULL: allgather.
     */
    int (*allgather_idle)(const struct ops_comm *c, const void *send, void *recv, size_t bytes, sd_error *err);
    /*
     * Optional: recv[r * bytes ..] = rank r's send[rank * bytes ..] for every r (send and recv hold
     * size * bytes). Collective. NULL: the all-reduce all-gathers whole buffers.
     */
    int (*alltoall)(const struct ops_comm *c, const void *send, void *recv, size_t bytes, sd_error *err);
    /*
     * Optional: the sum of every rank's buf[n] with each element added in rank order (the same bits as the
     * two ways above), finished by e (NULL: into buf), by whatever transport the implementation has
     * (mpi/tp_shm.c: memory the ranks of one node share). Collective. NULL: ops_comm_allreduce_sum uses the
     * all-gather or all-to-all.
     */
    int (*allreduce_sum)(const struct ops_comm *c, float *buf, size_t n, const ops_reduce_epi *e, sd_error *err);
    /*
     * Optional: prints `why` and ends every process of the job, for a rank that failed in the middle of
     * a shared computation: its partners wait in a collective it will never join, and nothing else
     * could free them. NULL: the caller just returns its error.
     */
    void (*abort)(const struct ops_comm *c, const char *why);
} ops_comm;

/* 1 when c splits work over more than one rank. */
static inline int ops_comm_active(const struct ops_comm *c) { return c && c->size > 1; }

/* The callback, timed and counted in c->stats. */
int ops_comm_allgather(const ops_comm *c, const void *send, void *recv, size_t bytes, sd_error *err);
/* The same through c->allgather_idle where there is one (see above). */
int ops_comm_allgather_idle(const ops_comm *c, const void *send, void *recv, size_t bytes, sd_error *err);

/*
 * The sum over ranks of every rank's buf[n], added in rank order (see above), finished by e into e->out on
 * every rank (e NULL: the sum into buf); buf's contents are undefined afterwards unless it is e->out. The
 * all-gathered copies take up to size*n floats of ctx->scratch.
 */
int ops_comm_allreduce_sum(const ops_comm *c, float *buf, size_t n, const ops_reduce_epi *e, ops_ctx *ctx,
                           sd_error *err);

/*
 * A row-parallel convolution: d describes the whole layer (d->in_ch input
 * channels, d->weight already this rank's input channels [c0, c0 + cl):
 * [out_ch, cl, k, k]); each rank convolves its channel slice of x: [batch,
 * in_ch, H, W], the partial outputs are all-reduced into out, then d->bias
 * and `residual` (may be NULL; [batch, out_ch, oh, ow]) are added once.
 * Fused input work (d->in_scale/in_shift) must be per-slice already.
 */
int ops_conv2d_row_parallel(const ops_comm *c, float *out, const float *x, const ops_conv_desc *d, int c0, int cl,
                            const float *residual, ops_ctx *ctx, sd_error *err);

/*
 * A column-parallel convolution: d describes the whole layer (d->out_ch output channels), but d->weight
 * and d->bias are already this rank's output channels [o0, o1) (ops_comm_share of out_ch, which the
 * size must divide). Each rank convolves all of x into its channels and adds `residual` (may be NULL;
 * [batch, out_ch, oh, ow]) to them; an all-gather per image then gives every rank the whole output.
 * The whole layer's bits where a rank's share takes the same route (1x1 convolutions always; Winograd needs
 * 32 output channels a rank). d->residual, chan_add and accumulate must be unset.
 */
int ops_conv2d_col_parallel(const ops_comm *c, float *out, const float *x, const ops_conv_desc *d,
                            const float *residual, ops_ctx *ctx, sd_error *err);
/*
 * A column-parallel Linear: out[M, N] = x[M, K] w^T + b, where w and b are already this rank's output
 * features [n0, n1) (ops_comm_share of N, which the size must divide); each rank computes its features
 * for all M rows and an all-gather gives every rank all of them. The whole layer's bits where the GEMM's
 * outputs do not depend on N (the float32 kernels).
 */
int ops_linear_col_parallel(const ops_comm *c, float *out, const float *x, int M, int K, const sd_tensor *w,
                            const sd_tensor *b, int N, ops_ctx *ctx, sd_error *err);

/*
 * Splits n items (heads, channel groups) over c's ranks: this rank's [*lo, *hi).
 * n must be a multiple of the size (checked where the model is sharded).
 */
void ops_comm_share(const ops_comm *c, int n, int *lo, int *hi);

#endif
