/*
 * tp_shm.c - the tensor-parallel all-reduce through memory the ranks of one node share.
 *
 * When every rank of a group runs on one node, MPI's point-to-point path copies each message twice
 * (into a shared buffer and out of it, in fragments) and the all-to-all way of ops_comm_allreduce_sum
 * moves a buffer through it twice more (all-to-all, then all-gather) with copies around both: about
 * ten passes over the buffer per rank. Measured on a 16-core Xeon VM, 8 ranks x 1 thread, SD 1.5 at
 * 512x512: 883 MB per step and rank, 0.47 s in communication on the rank that waited least, a third
 * of the 2.5-3.1 s step. Here the ranks share one MPI window instead (MPI_Win_allocate_shared):
 *
 *   1. each rank copies its partial buf into its own segment;            (barrier)
 *   2. rank r adds slice r of the n elements over all segments, in rank order 0, 1, ..., P-1,
 *      and finishes them (the layer's bias and residual, ops_reduce_epi) into its result slice;   (barrier)
 *   3. every rank copies the P result slices into its output.
 *
 * Each element is the same chain of additions as in the all-gather and all-to-all ways (ops_comm.h), so
 * the bits do not change with the transport. No third barrier is needed: a rank writes its segment again
 * (step 1 of the next call) only after the barrier of step 2, when every read of the partials is over, and
 * its result slice (step 2 of the next call) only after that call's first barrier, which no rank passes
 * before it finished step 3.
 *
 * The column-parallel layers' all-gathers go through the same window (tp_shm_allgather).
 *
 * The window grows (collectively: every rank calls with the same n) to the largest buffer seen. Groups
 * that span nodes, or SDRENDER_TP_SHM=0 on any rank, keep MPI's path; the ranks agree on it once.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tp_group_impl.h"

int tp_shm_init(tp_shm *s, MPI_Comm comm) {
    memset(s, 0, sizeof *s);
    int size = 1, node_size = 0;
    MPI_Comm_size(comm, &size);
    MPI_Comm node;
    MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &node_size);
    MPI_Comm_free(&node);
    const char *e = getenv("SDRENDER_TP_SHM");
    int mine = size > 1 && node_size == size && !(e && *e == '0'), all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, comm);
    s->on = all;
    return s->on;
}

void tp_shm_free(tp_shm *s) {
    if (s->have_win) {
        MPI_Win_unlock_all(s->win);
        MPI_Win_free(&s->win);
        s->have_win = 0;
    }
    free(s->seg);
    s->seg = NULL;
    s->cap = 0;
}

/* A window of cap floats of partial and cap/P + 1 of result per rank, and every segment's address. */
static int shm_grow(tp_shm *s, MPI_Comm comm, size_t n, sd_error *err) {
    int P;
    MPI_Comm_size(comm, &P);
    tp_shm_free(s);
    size_t cap = n < ((size_t)1 << 20) ? (size_t)1 << 20 : n;
    size_t per = cap + cap / (size_t)P + 1;
    if (!(s->seg = calloc((size_t)P, sizeof *s->seg))) return sd_err(err, SD_ENOMEM, "out of memory");
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "alloc_shared_noncontig", "true"); /* each segment on its own rank's pages */
    float *base = NULL;
    int rc = MPI_Win_allocate_shared((MPI_Aint)(per * sizeof(float)), (int)sizeof(float), info, comm, &base, &s->win);
    MPI_Info_free(&info);
    if (rc != MPI_SUCCESS) {
        tp_shm_free(s);
        return sd_err(err, SD_ENOMEM, "cannot allocate %zu MB of node-shared memory for the group's all-reduce",
                      per * sizeof(float) >> 20);
    }
    for (int r = 0; r < P; r++) {
        MPI_Aint bytes;
        int unit;
        MPI_Win_shared_query(s->win, r, &bytes, &unit, &s->seg[r]);
    }
    MPI_Win_lock_all(MPI_MODE_NOCHECK, s->win);
    s->have_win = 1;
    s->cap = cap;
    return 0;
}

/* Every rank's writes to the window before, every rank's reads after. */
static void shm_sync(tp_shm *s, MPI_Comm comm) {
    MPI_Win_sync(s->win);
    MPI_Barrier(comm);
    MPI_Win_sync(s->win);
}

/* A window of at least n floats of partial per rank (collective: every rank asks for the same n). */
static int shm_reserve(tp_shm *s, MPI_Comm comm, size_t n, sd_error *err) {
    if (n <= s->cap) return 0;
    int rc = shm_grow(s, comm, n, err);
    /* every rank must know before any waits in a barrier the failed one never reaches */
    int ok = rc == 0, all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, comm);
    if (all) return 0;
    tp_shm_free(s);
    return rc < 0 ? rc : sd_err(err, SD_ENOMEM, "another rank of the group ran out of shared memory");
}

int tp_shm_allreduce_sum(const ops_comm *c, float *buf, size_t n, const ops_reduce_epi *e, sd_error *err) {
    tp_comm *tc = c->impl;
    tp_shm *s = &tc->shm;
    const int P = c->size, me = c->rank;
    int rc = shm_reserve(s, tc->comm, n, err);
    if (rc < 0) return rc;
    memcpy(s->seg[me], buf, n * sizeof(float));
    shm_sync(s, tc->comm);
    size_t i0 = n * (size_t)me / (size_t)P, i1 = n * (size_t)(me + 1) / (size_t)P;
    const float *parts[P];
    for (int r = 0; r < P; r++) parts[r] = s->seg[r] + i0;
    ops_comm_sum_ranks(s->seg[me] + s->cap, parts, P, i0, i1 - i0, e); /* this rank's slice, finished */
    shm_sync(s, tc->comm);
    float *out = e ? e->out : buf;
    for (int r = 0; r < P; r++) {
        size_t a = n * (size_t)r / (size_t)P, b = n * (size_t)(r + 1) / (size_t)P;
        memcpy(out + a, s->seg[r] + s->cap, (b - a) * sizeof(float));
    }
    return 0;
}

/*
 * ops_comm's all-gather through the window (the column-parallel layers' outputs): each rank's piece into its
 * segment, a barrier, every piece out, and a barrier before any rank may write its segment again (the next
 * call's first step; the all-reduce's argument above needs every earlier read finished by then).
 */
int tp_shm_allgather(const ops_comm *c, const void *send, void *recv, size_t bytes, sd_error *err) {
    tp_comm *tc = c->impl;
    tp_shm *s = &tc->shm;
    int rc = shm_reserve(s, tc->comm, (bytes + sizeof(float) - 1) / sizeof(float), err);
    if (rc < 0) return rc;
    memcpy(s->seg[c->rank], send, bytes);
    shm_sync(s, tc->comm);
    for (int r = 0; r < c->size; r++) {
        char *dst = (char *)recv + (size_t)r * bytes;
        if (dst != send) memcpy(dst, s->seg[r], bytes);
    }
    shm_sync(s, tc->comm);
    return 0;
}
