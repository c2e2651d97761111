/*
 * Tests for the tensor-parallel all-reduce through node-shared memory (mpi/tp_shm.c) against the rank-ordered
 * chain of additions every other way computes (core/ops/ops_comm.h), bit for bit, and its all-gather. The test program runs
 * itself under mpirun (TP_SHM_CHILD set): 2, 3 and 4 ranks (from 3 up a wrong order of additions changes
 * bits), buffers that do not divide by the ranks, one that outgrows the first window, repeated calls with
 * no pause between them (the two-barrier protocol), and MPI's path for comparison, also when only one rank
 * turns the shared memory off (the ranks must agree, not hang).
 */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tp_group_impl.h"

#define MPIRUN "mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1 -x TP_SHM_CHILD=1"

/* Rank r's value i of call `call`: signs and magnitudes over 2^-12 .. 2^12, so the order of additions shows. */
static float value(int r, int call, size_t i) {
    uint64_t x = (uint64_t)r * 0x9E3779B97F4A7C15ull ^ ((uint64_t)call << 40) ^ (uint64_t)i * 0xBF58476D1CE4E5B9ull;
    x ^= x >> 31;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 29;
    float m = (float)(x & 0xffffff) / (float)0x1000000 - 0.5f;
    int e = (int)((x >> 24) % 25) - 12;
    return ldexpf(m, e);
}

/* Under mpirun: every call's result against the chain p0 + p1 + ... + p(P-1); exit status 0 when all match. */
static int child(void) {
    MPI_Init(NULL, NULL);
    tp_group g;
    sd_error err = {0};
    int bad = 0, me = 0;
    if (tp_group_make(&g, MPI_COMM_WORLD, SD_PARALLEL_TENSOR, &err) < 0) {
        fprintf(stderr, "tp_group_make: %s\n", err.msg);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    const ops_comm *c = g.g.tp;
    me = c->rank;
    const char *want = getenv("TP_SHM_EXPECT");
    if (want && strcmp(want, c->transport)) {
        fprintf(stderr, "rank %d: transport '%s', expected '%s'\n", me, c->transport, want);
        bad++;
    }
    ops_ctx ctx;
    ops_ctx_init(&ctx, 0);
    static const size_t sizes[] = {1, 3, 1000, 4097, 100, (1u << 20) + 5, 77, 3 * 4096 + 1};
    int call = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        float *buf = malloc(n * sizeof(float)), *want_sum = malloc(n * sizeof(float));
        for (int rep = 0; rep < 3 && buf && want_sum; rep++, call++) {
            for (size_t i = 0; i < n; i++) {
                buf[i] = value(me, call, i);
                float s = value(0, call, i);
                for (int r = 1; r < c->size; r++) s += value(r, call, i);
                want_sum[i] = s;
            }
            if (ops_comm_allreduce_sum(c, buf, n, NULL, &ctx, &err) < 0) {
                fprintf(stderr, "rank %d: n = %zu: %s\n", me, n, err.msg);
                bad++;
            } else if (memcmp(buf, want_sum, n * sizeof(float))) {
                size_t i = 0;
                while (!memcmp(buf + i, want_sum + i, sizeof(float))) i++;
                fprintf(stderr, "rank %d: n = %zu, call %d: element %zu is %.9g, the rank-ordered sum %.9g\n", me, n,
                        call, i, buf[i], want_sum[i]);
                bad++;
            }
        }
        free(buf), free(want_sum);
    }
    /* finished sums (ops_reduce_epi): [5, 6, 7] with bias2 and residual; rows [35, 6] into the residual */
    for (int form = 0; form < 2; form++, call++) {
        enum { C = 6, INNER = 7, N = 5 * C * INNER };
        float buf[N], res[N], b1[C], b2[C];
        for (int i = 0; i < C; i++) b1[i] = value(98, call, (size_t)i), b2[i] = value(97, call, (size_t)i);
        for (size_t i = 0; i < N; i++) buf[i] = value(me, call, i), res[i] = value(99, call, i);
        ops_reduce_epi e = {.out = buf, .bias2 = b2, .residual = res, .channels = C, .inner = INNER};
        if (form == 1) e = (ops_reduce_epi){.out = res, .bias1 = b1, .residual = res, .channels = C, .inner = 1};
        if (ops_comm_allreduce_sum(c, buf, N, &e, &ctx, &err) < 0) {
            fprintf(stderr, "rank %d: finished all-reduce: %s\n", me, err.msg);
            bad++;
            continue;
        }
        for (size_t i = 0; i < N; i++) {
            float sum = value(0, call, i);
            for (int r = 1; r < c->size; r++) sum += value(r, call, i);
            float r0 = value(99, call, i);
            float want = form == 0 ? sum + (r0 + b2[(i / INNER) % C]) : r0 + (sum + b1[i % C]);
            float got = form == 0 ? buf[i] : res[i];
            if (memcmp(&got, &want, sizeof want)) {
                fprintf(stderr, "rank %d: finished form %d, element %zu: %.9g, expected %.9g\n", me, form, i, got, want);
                bad++;
                break;
            }
        }
    }
    /* the all-gather (column-parallel layers): odd byte counts, the window's growth, in place and not */
    static const size_t gather[] = {1, 7, 4096, (5u << 20) + 3, 12};
    for (size_t k = 0; k < sizeof gather / sizeof *gather; k++, call++) {
        size_t b = gather[k], P = (size_t)c->size;
        unsigned char *mine = malloc(b), *recv = malloc(b * P);
        if (!mine || !recv) {
            bad++;
        } else {
            for (int inplace = 0; inplace < 2; inplace++) {
                unsigned char *send = inplace ? recv + (size_t)me * b : mine;
                for (size_t i = 0; i < b; i++) send[i] = (unsigned char)(i * 31 + (size_t)me * 7 + k);
                if (!inplace) memset(recv, 0xee, b * P);
                if (ops_comm_allgather(c, send, recv, b, &err) < 0) {
                    fprintf(stderr, "rank %d: all-gather of %zu bytes: %s\n", me, b, err.msg);
                    bad++;
                    continue;
                }
                for (size_t r = 0; r < P; r++)
                    for (size_t i = 0; i < b; i++)
                        if (recv[r * b + i] != (unsigned char)(i * 31 + r * 7 + k)) {
                            fprintf(stderr, "rank %d: all-gather of %zu bytes: rank %zu's byte %zu wrong\n", me, b, r, i);
                            bad++;
                            r = P;
                            break;
                        }
            }
        }
        free(mine), free(recv);
    }
    ops_ctx_free(&ctx);
    int all = 0;
    MPI_Allreduce(&bad, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    tp_group_free(&g);
    MPI_Finalize();
    if (me == 0) printf("%s: %d mismatches over %d calls\n", all ? "FAIL" : "ok", all, call);
    return all ? 1 : 0;
}

/* mpirun -np P of this program; env: assignments before it (each rank's, or a shell line for one rank). */
static void run_ranks(int P, const char *env, const char *expect) {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) fail_msg("cannot find this test program");
    self[n] = 0;
    char *out;
    int rc = tu_sh(&out, "TP_SHM_EXPECT='%s' timeout 60 " MPIRUN " -x TP_SHM_EXPECT -np %d sh -c '%s exec %s' 2>&1",
                   expect, P, env, self);
    if (rc != 0 || !strstr(out, "ok: 0 mismatches")) fail_msg("%d ranks (%s): exit %d: %s", P, env, rc, out);
    free(out);
}

static void test_shared_memory_sums_in_rank_order(void **state) {
    (void)state;
    for (int P = 2; P <= 4; P++) run_ranks(P, "", "node-shared memory (one node)");
}

static void test_mpi_path_gives_the_same_sums(void **state) {
    (void)state;
    run_ranks(3, "SDRENDER_TP_SHM=0", "MPI messages");
    run_ranks(4, "SDRENDER_TP_SHM=0", "MPI messages");
}

static void test_one_rank_turning_it_off_turns_it_off_for_all(void **state) {
    (void)state;
    run_ranks(3, "[ \"$OMPI_COMM_WORLD_RANK\" = 1 ] && export SDRENDER_TP_SHM=0;", "MPI messages");
}

/* `bench --tp K --op allreduce:N`: the transport it names, a time, and exit 2 without a group. */
static void test_bench_times_the_allreduce(void **state) {
    (void)state;
    for (int off = 0; off < 2; off++) {
        char *out;
        const char *json = tu_tmp("allreduce.json");
        int rc = tu_sh(&out, "SDRENDER_TP_SHM=%d timeout 120 mpirun --allow-run-as-root --oversubscribe -x SDRENDER_TP_SHM "
                       "-np 3 %s bench --tp 3 --threads 1 --op allreduce:5000 --steps 4 --json %s 2>&1",
                       !off, tu_bin(), json);
        if (rc != 0) fail_msg("bench --op allreduce: exit %d: %s", rc, out);
        free(out);
        json_error_t je;
        json_t *o = json_load_file(json, 0, &je);
        if (!o) fail_msg("%s: %s", json, je.text);
        const char *t = json_string_value(json_object_get(o, "allreduce_transport"));
        assert_non_null(t);
        assert_string_equal(t, off ? "MPI messages" : "node-shared memory (one node)");
        assert_int_equal(json_integer_value(json_object_get(o, "tp")), 3);
        assert_true(json_number_value(json_object_get(o, "ms")) > 0);
        json_decref(o);
    }
    char *out;
    int rc = tu_sh(&out, "%s bench --op allreduce:5000 2>&1", tu_bin());
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "needs --tp K"));
    free(out);
}

int main(int argc, char **argv) {
    (void)argc, (void)argv;
    if (getenv("TP_SHM_CHILD")) return child();
    tu_asan_full_stacks_for_children(); /* the ranks load Open MPI */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_memory_sums_in_rank_order),
        cmocka_unit_test(test_mpi_path_gives_the_same_sums),
        cmocka_unit_test(test_one_rank_turning_it_off_turns_it_off_for_all),
        cmocka_unit_test(test_bench_times_the_allreduce),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
