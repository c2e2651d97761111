/*
 * tp_group.h - the MPI side of a rank group sharing one image (core/pipeline/group.h).
 *
 * tp_group_make splits a group's communicator into the tensor-parallel and
 * CFG communicators of its strategy and fills the ops_comm callbacks core/
 * calls (an all-gather: MPI_Allgather, in place where the caller's own part
 * already sits in the receive buffer). Group rank r, K ranks:
 *   TENSOR: tp = all K ranks; no CFG communicator.
 *   CFG:    cfg_index = r / (K/2); tp = the K/2 ranks of that half;
 *           cfg = {r, r +- K/2} (same position in the other half).
 *
 * sd_tp_start/sd_tp_end wrap a whole MPI job that is one group (`generate`
 * and `bench` with --tp under mpirun); the batch runner makes one group per
 * K consecutive worker ranks itself (runner.c).
 */
#ifndef SD_TP_GROUP_H
#define SD_TP_GROUP_H

#include "err.h"
#include "group.h"
#include "ops_comm.h"

typedef struct sd_tp_world sd_tp_world;

/*
 * MPI_Init; every rank of the job forms one group of K ranks (the job must
 * have exactly K ranks: SD_EINPUT otherwise) using `requested` resolved for
 * guidance on or off (sd_parallel_resolve). Every rank gets its own *out.
 */
int sd_tp_start(int *argc, char ***argv, int K, sd_parallel requested, int cfg_on, sd_tp_world **out, sd_error *err);
/* The group of this rank. */
const sd_group *sd_tp_group(const sd_tp_world *w);
/* Communication time and volume of this rank so far (all its communicators). */
ops_comm_stats *sd_tp_stats(sd_tp_world *w);
/* Collective: waits for every rank. */
void sd_tp_barrier(const sd_tp_world *w);
/* Collective: as sd_tp_barrier, but asleep while waiting (ranks idle while another one is timed). */
void sd_tp_wait(const sd_tp_world *w);
/* Collective: the largest v over the ranks, on every rank. */
double sd_tp_max(const sd_tp_world *w, double v);
/* Collective: the smallest v over the ranks, on every rank. */
double sd_tp_min(const sd_tp_world *w, double v);
/* Frees the group; MPI_Finalize. */
void sd_tp_end(sd_tp_world *w);

#endif
