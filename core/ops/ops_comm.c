/* ops_comm.c - timed all-gather and the rank-ordered all-reduce (see ops_comm.h). */
#include "ops_comm.h"

#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int ops_comm_allgather(const ops_comm *c, const void *send, void *recv, size_t bytes, sd_error *err) {
    if (!ops_comm_active(c)) {
        if (recv != send) memcpy(recv, send, bytes);
        return 0;
    }
    double t0 = now_s();
    int rc = c->allgather(c, send, recv, bytes, err);
    if (c->stats) {
        c->stats->seconds += now_s() - t0;
        c->stats->bytes_sent += (uint64_t)bytes * (uint64_t)(c->size - 1);
        c->stats->calls++;
    }
    return rc;
}

int ops_comm_allreduce_sum(const ops_comm *c, float *buf, size_t n, ops_ctx *ctx, sd_error *err) {
    if (!ops_comm_active(c) || n == 0) return 0;
    ops_mark mark = ops_arena_mark(&ctx->scratch);
    float *all = ops_arena_floats(&ctx->scratch, n * (size_t)c->size, err);
    int rc = all ? ops_comm_allgather(c, buf, all, n * sizeof(float), err) : (err ? err->code : SD_ENOMEM);
    if (rc == 0) {
        const int P = c->size;
#pragma omp parallel for schedule(static) num_threads(ops_get_threads())
        for (size_t i = 0; i < n; i++) {
            float s = all[i];
            for (int r = 1; r < P; r++) s += all[(size_t)r * n + i];
            buf[i] = s;
        }
    }
    ops_arena_release(&ctx->scratch, mark);
    return rc;
}

void ops_comm_share(const ops_comm *c, int n, int *lo, int *hi) {
    int P = ops_comm_active(c) ? c->size : 1, r = ops_comm_active(c) ? c->rank : 0;
    *lo = (int)((int64_t)n * r / P);
    *hi = (int)((int64_t)n * (r + 1) / P);
}
