/*
 * testutil.h - helpers shared by the cmocka tests.
 *
 * Reference data lives in ../shared/testdata (override with SDRENDER_TESTDATA);
 * tests compare against it with tu_expect_close, which reports the worst
 * element, its index and the tolerance when a comparison fails.
 */
#ifndef SD_TESTUTIL_H
#define SD_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fsutil.h"
#include "safetensors.h"
#include "weights.h"

/* Root of the reference data. */
const char *tu_testdata(void);
/* testdata/rel in a buffer valid until the 16th next call. */
const char *tu_path(const char *rel);
/* The sdrender binary under test (SDRENDER_BIN, default build/sdrender). */
const char *tu_bin(void);
/*
 * For tests that start sdrender processes which load Open MPI: under ASan, MPI's leaks are suppressed by
 * library name (tests/lsan.supp), which needs full stacks through Open MPI's frame-pointer-less code and
 * its plugins (unloaded by exit: fast unwinding stops in them at an "<unknown module>" frame); adds
 * fast_unwind_on_malloc=0 to ASAN_OPTIONS, which the children inherit. Nothing without ASAN_OPTIONS.
 */
void tu_asan_full_stacks_for_children(void);
/* The repository's root (SDRENDER_SRC, default ".": make check runs the tests from there). */
const char *tu_src(void);
/* A fresh private directory for this test program (created on first use). */
const char *tu_tmpdir(void);
/* tmpdir/name in a buffer valid until the 16th next call. */
const char *tu_tmp(const char *name);

/* Opens testdata/rel or fails the test. */
void tu_open(st_file *f, const char *rel);
/* Tensor `name` of f converted to float32 (caller frees); fails the test when absent. */
float *tu_f32(const st_file *f, const char *name, size_t *n);
/* The tensor itself; fails the test when absent. */
const sd_tensor *tu_tensor(const st_file *f, const char *name);

/*
 * Fails (with the worst element) unless |got - want| <= atol everywhere; a NaN
 * on either side fails, equal infinities match. With
 * SDRENDER_TEST_REPORT=1 every comparison prints its worst difference to
 * stderr (how close a change of summation order brings a test to its limit).
 */
void tu_expect_close(const char *label, const float *got, const float *want, size_t n, double atol);
/* Largest |x| of a buffer: the "peak" that relative tolerances scale with. */
double tu_peak(const float *x, size_t n);

/* Deterministic pseudo-random numbers for tests (xorshift64): uniform in [0, 1), and integers in [lo, hi]. */
void tu_seed(uint64_t seed);
double tu_urand(void);
int tu_irand(int lo, int hi);

/*
 * The files a network test reads: the weights of models/<model>/<component>
 * (diffusion_pytorch_model.safetensors) as a table, the path of the
 * component's config.json, and the reference dump golden/<golden>.safetensors.
 * Opening fails the test when a file is missing.
 */
typedef struct tu_net_files {
    st_file model, golden;
    sd_weights w;
    char config[1024];
} tu_net_files;
void tu_net_files_open(tu_net_files *f, const char *model, const char *component, const char *golden);
void tu_net_files_close(tu_net_files *f);

/*
 * Compares an intermediate a probe saw (x with ndim, shape) with the golden
 * tensor `name`: the shape exactly, the values within atol + rtol * peak of
 * the reference. Returns 1 when compared; 0 when the golden has no such
 * tensor and `optional` is set (otherwise a missing tensor fails the test).
 */
int tu_expect_golden(const st_file *golden, const char *name, const float *x, int ndim, const int64_t *shape,
                     double atol, double rtol, int optional);

/* Largest per-channel difference between two PNG files of equal size (fails the test on a size mismatch). */
int tu_png_max_diff(const char *a, const char *b);

/* testdata/rel decoded as 8-bit RGB [h, w, 3] (caller frees); fails the test when unreadable. */
uint8_t *tu_read_png_rgb(const char *rel, int *h, int *w);

/* Runs `sdrender generate -q ARGS` (cache in the test's tmpdir); fails the test with its output unless it exits 0. */
void tu_generate_ok(const char *args);
/* Largest per-channel difference between two PNG files of equal size (fails on a size mismatch). */
int tu_png_max_diff(const char *a, const char *b);

/* Runs a shell command; returns its exit status and, when out != NULL, its stdout (caller frees). */
int tu_sh(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* pid of MPI rank `rank` (0: the master) of a running `sdrender run --db DB ...`, or 0 when none is found
 * (rank > 0 with want_any: any rank above 0). */
int tu_run_rank_pid(const char *db, int rank, int want_any);

#endif
