/* tp_group_impl.h - a group's MPI communicators, for mpi/ only (see tp_group.h). */
#ifndef SD_TP_GROUP_IMPL_H
#define SD_TP_GROUP_IMPL_H

#include <mpi.h>

#include "group.h"
#include "ops_comm.h"

/* The all-reduce through node-shared memory (tp_shm.c): one MPI window, a segment per rank. */
typedef struct tp_shm {
    int on;       /* every rank of the communicator is on this node (and SDRENDER_TP_SHM is not 0 anywhere) */
    int have_win; /* win is allocated (at the first exchange) and locked for the group's loads and stores */
    MPI_Win win;
    float **seg;  /* [size]: each rank's segment: cap floats of partial sums, then its slice of the result */
    size_t cap;
} tp_shm;

/* What an ops_comm's impl points at: the communicator and the shared window of its all-reduce. */
typedef struct tp_comm {
    MPI_Comm comm;
    tp_shm shm;
} tp_comm;

typedef struct tp_group {
    MPI_Comm all, tp, cfg;        /* cfg: MPI_COMM_NULL unless CFG-parallel */
    tp_comm x_all, x_tp, x_cfg;   /* the callbacks' view of the three (the same handles) */
    ops_comm c_all, c_tp, c_cfg;  /* impl points at x_all, x_tp, x_cfg */
    ops_comm_stats stats;         /* shared by the three */
    sd_group g;
} tp_group;

/* Builds g over `all` (duplicated; the caller keeps its own) for a resolved strategy. Collective over all. */
int tp_group_make(tp_group *g, MPI_Comm all, sd_parallel strategy, sd_error *err);
void tp_group_free(tp_group *g);
/* Completes a nonblocking MPI call's request, asleep between tests (for waits that may last seconds). */
void tp_wait_request(MPI_Request *req);

/* Collective over comm: whether its ranks can share memory for the all-reduce (s->on); allocates nothing. */
int tp_shm_init(tp_shm *s, MPI_Comm comm);
void tp_shm_free(tp_shm *s);
/* ops_comm's allreduce_sum through the shared window (c->impl: a tp_comm whose shm is on). Collective. */
int tp_shm_allreduce_sum(const ops_comm *c, float *buf, size_t n, const ops_reduce_epi *e, sd_error *err);
/* ops_comm's allgather through the shared window (as ops_comm.h says; the same bytes as MPI's). Collective. */
int tp_shm_allgather(const ops_comm *c, const void *send, void *recv, size_t bytes, sd_error *err);

#endif
