/* tp_group.c - MPI communicators and callbacks of a rank group (see tp_group.h). */
#include "tp_group.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tp_group_impl.h"

/*
 * Completes req, asleep between tests: Open MPI's blocking calls poll, and a polling rank slows the one
 * that works (on a 2-core Zen 1 VM rank 0's single U-Net step took 11% longer while rank 1 polled in
 * MPI_Barrier; sleeping 1 ms between tests still cost 8%). The sleep doubles from 0.1 ms to 64 ms, so a
 * long wait wakes the core rarely and a short one ends soon.
 */
void tp_wait_request(MPI_Request *req) {
    for (long ns = 100000L;; ns = ns < 64000000L ? 2 * ns : ns) {
        int done = 0;
        MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (done) return;
        struct timespec ts = {0, ns};
        nanosleep(&ts, NULL);
    }
}

/*
 * The all-gather on the MPI_Comm in c->impl: blocking (polls: for the short waits inside a U-Net pass),
 * or, idle, the nonblocking collective completed asleep (for waits that may last seconds).
 */
static int allgather_on(const ops_comm *c, const void *send, void *recv, size_t bytes, int idle, sd_error *err) {
    MPI_Comm comm = ((const tp_comm *)c->impl)->comm;
    if (bytes > INT_MAX)
        return sd_err(err, SD_EINTERNAL, "all-gather of %zu bytes: more than one MPI message holds", bytes);
    const void *s = (const char *)recv + (size_t)c->rank * bytes == send ? MPI_IN_PLACE : send;
    MPI_Request req;
    int rc = idle ? MPI_Iallgather(s, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, comm, &req)
                  : MPI_Allgather(s, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, comm);
    if (rc != MPI_SUCCESS) return sd_err(err, SD_EIO, "MPI all-gather of %zu bytes failed", bytes);
    if (idle) tp_wait_request(&req);
    return 0;
}

static int mpi_allgather(const ops_comm *c, const void *send, void *recv, size_t bytes, sd_error *err) {
    return allgather_on(c, send, recv, bytes, 0, err);
}

static int mpi_allgather_idle(const ops_comm *c, const void *send, void *recv, size_t bytes, sd_error *err) {
    return allgather_on(c, send, recv, bytes, 1, err);
}

/* ops_comm's all-to-all on the MPI_Comm in c->impl. */
static int mpi_alltoall(const ops_comm *c, const void *send, void *recv, size_t bytes, sd_error *err) {
    MPI_Comm comm = ((const tp_comm *)c->impl)->comm;
    if (bytes > INT_MAX)
        return sd_err(err, SD_EINTERNAL, "all-to-all of %zu bytes: more than one MPI message holds", bytes);
    if (MPI_Alltoall(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, comm) != MPI_SUCCESS)
        return sd_err(err, SD_EIO, "MPI_Alltoall of %zu bytes failed", bytes);
    return 0;
}

/*
 * ops_comm's abort: the message on this rank's stderr, then MPI_Abort, which ends every rank of the job
 * (the runner's master too: its claimed jobs go back to the table on the next run, as after kill -9).
 */
static void mpi_abort(const ops_comm *c, const char *why) {
    fprintf(stderr, "sdrender: %s; ending the MPI job (the next run resumes its job table)\n", why);
    fflush(stderr);
    MPI_Abort(((const tp_comm *)c->impl)->comm, 1);
}

/* oc over comm; shared: its all-reduce may go through node-shared memory (collective over comm). */
static void comm_fill(ops_comm *oc, tp_comm *tc, MPI_Comm comm, int shared, ops_comm_stats *stats) {
    int r = 0, n = 1;
    MPI_Comm_rank(comm, &r);
    MPI_Comm_size(comm, &n);
    tc->comm = comm;
    tc->shm = (tp_shm){0};
    if (shared) tp_shm_init(&tc->shm, comm);
    *oc = (ops_comm){.rank = r, .size = n, .impl = tc, .stats = stats,
                     .allgather = tc->shm.on ? tp_shm_allgather : mpi_allgather,
                     .allgather_idle = mpi_allgather_idle, .alltoall = mpi_alltoall,
                     .allreduce_sum = tc->shm.on ? tp_shm_allreduce_sum : NULL, .abort = mpi_abort,
                     .transport = tc->shm.on ? "node-shared memory (one node)" : "MPI messages"};
}

int tp_group_make(tp_group *g, MPI_Comm all, sd_parallel strategy, sd_error *err) {
    memset(g, 0, sizeof *g);
    g->tp = g->cfg = MPI_COMM_NULL;
    MPI_Comm_dup(all, &g->all);
    int r, K;
    MPI_Comm_rank(g->all, &r);
    MPI_Comm_size(g->all, &K);
    if (strategy == SD_PARALLEL_CFG && K % 2) {
        MPI_Comm_free(&g->all);
        return sd_err(err, SD_EINPUT, "--parallel cfg needs an even group size, not %d", K);
    }
    int half = strategy == SD_PARALLEL_CFG ? K / 2 : K;
    g->g.cfg_index = r / half;
    MPI_Comm_split(g->all, g->g.cfg_index, r, &g->tp);
    if (strategy == SD_PARALLEL_CFG) MPI_Comm_split(g->all, r % half, r, &g->cfg);
    /* the U-Net's exchanges (tp: the split layers; cfg: the halves' swap and the pair's convolutions) may go
       through node-shared memory; the group's agreements stay on MPI (they wait asleep) */
    comm_fill(&g->c_all, &g->x_all, g->all, 0, &g->stats);
    comm_fill(&g->c_tp, &g->x_tp, g->tp, 1, &g->stats);
    if (g->cfg != MPI_COMM_NULL) comm_fill(&g->c_cfg, &g->x_cfg, g->cfg, 1, &g->stats);
    g->g.rank = r;
    g->g.size = K;
    g->g.strategy = strategy == SD_PARALLEL_AUTO ? SD_PARALLEL_TENSOR : strategy;
    g->g.all = &g->c_all;
    g->g.tp = &g->c_tp;
    g->g.cfg = g->cfg != MPI_COMM_NULL ? &g->c_cfg : NULL;
    return 0;
}

void tp_group_free(tp_group *g) {
    tp_shm_free(&g->x_tp.shm);
    tp_shm_free(&g->x_cfg.shm);
    if (g->cfg != MPI_COMM_NULL) MPI_Comm_free(&g->cfg);
    if (g->tp != MPI_COMM_NULL) MPI_Comm_free(&g->tp);
    if (g->all != MPI_COMM_NULL) MPI_Comm_free(&g->all);
    g->all = g->tp = g->cfg = MPI_COMM_NULL;
}

struct sd_tp_world {
    tp_group grp;
};

int sd_tp_start(int *argc, char ***argv, int K, sd_parallel requested, int cfg_on, sd_tp_world **out, sd_error *err) {
    *out = NULL;
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) MPI_Init(argc, argv);
    int world = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    sd_parallel strategy;
    int rc = 0;
    if (world != K)
        rc = sd_err(err, SD_EINPUT, "--tp %d: this job has %d MPI rank%s; start it with mpirun -np %d (every rank "
                    "of a generate/bench job belongs to its one group)", K, world, world == 1 ? "" : "s", K);
    if (rc == 0) rc = sd_parallel_resolve(requested, K, cfg_on, &strategy, err);
    sd_tp_world *w = rc == 0 ? calloc(1, sizeof *w) : NULL;
    if (rc == 0 && !w) rc = sd_err(err, SD_ENOMEM, "out of memory");
    if (rc == 0 && (rc = tp_group_make(&w->grp, MPI_COMM_WORLD, strategy, err)) < 0) {
        free(w);
        w = NULL;
    }
    if (rc < 0) {
        MPI_Finalize();
        return rc;
    }
    *out = w;
    return 0;
}

const sd_group *sd_tp_group(const sd_tp_world *w) { return &w->grp.g; }
ops_comm_stats *sd_tp_stats(sd_tp_world *w) { return &w->grp.stats; }
void sd_tp_barrier(const sd_tp_world *w) { MPI_Barrier(w->grp.all); }

void sd_tp_wait(const sd_tp_world *w) {
    MPI_Request req;
    MPI_Ibarrier(w->grp.all, &req);
    tp_wait_request(&req);
}

static double allreduce_double(const sd_tp_world *w, double v, MPI_Op op) {
    double out = v;
    MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, op, w->grp.all);
    return out;
}

double sd_tp_max(const sd_tp_world *w, double v) { return allreduce_double(w, v, MPI_MAX); }

double sd_tp_min(const sd_tp_world *w, double v) { return allreduce_double(w, v, MPI_MIN); }

void sd_tp_end(sd_tp_world *w) {
    if (w) {
        tp_group_free(&w->grp);
        free(w);
    }
    MPI_Finalize();
}
