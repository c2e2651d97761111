/* tp_group_impl.h - a group's MPI communicators, for mpi/ only (see tp_group.h). */
#ifndef SD_TP_GROUP_IMPL_H
#define SD_TP_GROUP_IMPL_H

#include <mpi.h>

#include "group.h"
#include "ops_comm.h"

typedef struct tp_group {
    MPI_Comm all, tp, cfg;        /* cfg: MPI_COMM_NULL unless CFG-parallel */
    ops_comm c_all, c_tp, c_cfg;  /* impl points at the MPI_Comm fields above */
    ops_comm_stats stats;         /* shared by the three */
    sd_group g;
} tp_group;

/* Builds g over `all` (duplicated; the caller keeps its own) for a resolved strategy. Collective over all. */
int tp_group_make(tp_group *g, MPI_Comm all, sd_parallel strategy, sd_error *err);
void tp_group_free(tp_group *g);
/* Completes a nonblocking MPI call's request, asleep between tests (for waits that may last seconds). */
void tp_wait_request(MPI_Request *req);

#endif
