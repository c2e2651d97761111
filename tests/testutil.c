#include "testutil.h"

#include "pngio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char ring[16][1024];
static int ring_i;

static char *next_buf(void) {
    char *b = ring[ring_i];
    ring_i = (ring_i + 1) % 16;
    return b;
}

const char *tu_testdata(void) {
    const char *e = getenv("SDRENDER_TESTDATA");
    return e && *e ? e : "../shared/testdata";
}

const char *tu_path(const char *rel) {
    char *b = next_buf();
    snprintf(b, sizeof ring[0], "%s/%s", tu_testdata(), rel);
    return b;
}

const char *tu_bin(void) {
    const char *e = getenv("SDRENDER_BIN");
    return e && *e ? e : "build/sdrender";
}

const char *tu_src(void) {
    const char *e = getenv("SDRENDER_SRC");
    return e && *e ? e : ".";
}

static char tmpdir[256];

static void remove_tmpdir(void) {
    if (tmpdir[0] && !getenv("SDRENDER_KEEP_TMP")) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    }
}

const char *tu_tmpdir(void) {
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/sdrender-test-XXXXXX");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            abort();
        }
        atexit(remove_tmpdir);
    }
    return tmpdir;
}

const char *tu_tmp(const char *name) {
    char *b = next_buf();
    snprintf(b, sizeof ring[0], "%s/%s", tu_tmpdir(), name);
    return b;
}

void tu_open(st_file *f, const char *rel) {
    sd_error err = {0};
    if (st_open(f, tu_path(rel), &err) < 0) fail_msg("cannot open test data: %s", err.msg);
}

const sd_tensor *tu_tensor(const st_file *f, const char *name) {
    const sd_tensor *t = st_find(f, name);
    if (!t) fail_msg("%s: missing tensor '%s'", f->path, name);
    return t;
}

float *tu_f32(const st_file *f, const char *name, size_t *n) {
    const sd_tensor *t = tu_tensor(f, name);
    float *p = sd_tensor_to_f32_alloc(t, NULL);
    assert_non_null(p);
    if (n) *n = (size_t)sd_tensor_numel(t);
    return p;
}

double tu_peak(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(x[i]) > m) m = fabs(x[i]);
    return m;
}

void tu_expect_close(const char *label, const float *got, const float *want, size_t n, double atol) {
    double worst = -1;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        /* a NaN on either side is a failure (NaN == NaN would otherwise pass: every comparison with it is
           false); equal infinities match, any other infinite difference fails */
        double d = got[i] == want[i] ? 0 : fabs((double)got[i] - (double)want[i]);
        if (isnan(got[i]) || isnan(want[i])) d = INFINITY;
        if (d > worst) {
            worst = d;
            wi = i;
        }
    }
    const char *report = getenv("SDRENDER_TEST_REPORT");
    if (report && *report && *report != '0')
        fprintf(stderr, "report: %s: max |got - want| = %.3g, tolerance %.3g (%.0f%% of it)\n", label, worst, atol,
                atol > 0 ? 100 * worst / atol : 0);
    if (worst > atol)
        fail_msg("%s: max |got - want| = %.3g at index %zu (got %.9g, want %.9g), tolerance %.3g, peak %.4g", label,
                 worst, wi, got[wi], want[wi], atol, tu_peak(want, n));
}

void tu_net_files_open(tu_net_files *f, const char *model, const char *component, const char *golden) {
    char rel[256];
    sd_error err = {0};
    memset(f, 0, sizeof *f);
    snprintf(rel, sizeof rel, "models/%s/%s/diffusion_pytorch_model.safetensors", model, component);
    tu_open(&f->model, rel);
    if (sd_weights_from_st(&f->w, &f->model, "", component, &err) < 0) fail_msg("%s", err.msg);
    snprintf(rel, sizeof rel, "models/%s/%s/config.json", model, component);
    snprintf(f->config, sizeof f->config, "%s", tu_path(rel));
    snprintf(rel, sizeof rel, "golden/%s.safetensors", golden);
    tu_open(&f->golden, rel);
}

void tu_net_files_close(tu_net_files *f) {
    sd_weights_free(&f->w);
    st_close(&f->model);
    st_close(&f->golden);
}

int tu_expect_golden(const st_file *golden, const char *name, const float *x, int ndim, const int64_t *shape,
                     double atol, double rtol, int optional) {
    const sd_tensor *t = st_find(golden, name);
    if (!t && optional) return 0;
    if (!t) fail_msg("%s: missing tensor '%s'", golden->path, name);
    assert_int_equal(t->ndim, ndim);
    for (int i = 0; i < ndim; i++) assert_int_equal(t->shape[i], shape[i]);
    size_t n;
    float *want = tu_f32(golden, name, &n);
    tu_expect_close(name, x, want, n, atol + rtol * tu_peak(want, n));
    free(want);
    return 1;
}

int tu_sh(char **out, const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    if (!p) fail_msg("popen failed: %s", cmd);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += r;
        if (cap - n < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[n] = 0;
    int st = pclose(p);
    if (out) *out = buf;
    else free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static uint64_t rng_state = 88172645463325252ULL;

void tu_seed(uint64_t seed) { rng_state = seed ? seed : 88172645463325252ULL; }

double tu_urand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

int tu_irand(int lo, int hi) { return lo + (int)(tu_urand() * (hi - lo + 1)); }

uint8_t *tu_read_png_rgb(const char *rel, int *h, int *w) {
    uint8_t *rgb = NULL;
    sd_error err = {0};
    if (sd_png_read_rgb(tu_path(rel), &rgb, w, h, &err) < 0) fail_msg("%s", err.msg);
    return rgb;
}

int tu_png_max_diff(const char *a, const char *b) {
    uint8_t *x, *y;
    int wa, ha, wb, hb;
    sd_error err = {0};
    if (sd_png_read_rgb(a, &x, &wa, &ha, &err) < 0) fail_msg("%s", err.msg);
    if (sd_png_read_rgb(b, &y, &wb, &hb, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(wa, wb);
    assert_int_equal(ha, hb);
    int worst = 0;
    for (size_t i = 0; i < (size_t)3 * wa * ha; i++) {
        int d = abs((int)x[i] - (int)y[i]);
        if (d > worst) worst = d;
    }
    free(x);
    free(y);
    return worst;
}

void tu_generate_ok(const char *args) {
    char *out;
    int rc = tu_sh(&out, "SDRENDER_CACHE=%s %s generate -q %s 2>&1", tu_tmpdir(), tu_bin(), args);
    if (rc != 0) fail_msg("sdrender generate %s: exit %d: %s", args, rc, out);
    free(out);
}

int tu_run_rank_pid(const char *db, int rank, int want_any) {
    char *pids;
    tu_sh(&pids, "pgrep -f '%s run --db %s '", tu_bin(), db);
    int found = 0;
    for (char *p = strtok(pids, "\n"); p && !found; p = strtok(NULL, "\n")) {
        char *e;
        if (tu_sh(&e, "tr '\\0' '\\n' 2>/dev/null < /proc/%s/environ | grep '^OMPI_COMM_WORLD_RANK='", p) == 0) {
            int r = atoi(strchr(e, '=') + 1);
            if (r == rank || (want_any && rank > 0 && r > 0)) found = atoi(p);
        }
        free(e);
    }
    free(pids);
    return found;
}

void tu_asan_full_stacks_for_children(void) {
    const char *asan = getenv("ASAN_OPTIONS");
    if (asan && !strstr(asan, "fast_unwind_on_malloc")) {
        char opts[1024];
        snprintf(opts, sizeof opts, "%s:fast_unwind_on_malloc=0", asan);
        setenv("ASAN_OPTIONS", opts, 1);
    }
}
