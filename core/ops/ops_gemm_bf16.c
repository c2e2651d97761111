/*
 * ops_gemm_bf16.c - ops_gemm in bfloat16 (ctx->precision = OPS_PRECISION_BF16):
 * both inputs rounded to bf16 (nearest even), products accumulated in
 * float32, by oneDNN's bf16 matmul primitive (AVX512_BF16 vdpbf16ps).
 *
 * Per call, a and b are rounded into per-thread buffers (contiguous rows),
 * then one primitive made for the call's shape runs on the calling thread.
 * Making a primitive costs far more than running one, so they are kept in a
 * table keyed by shape (a network has a few hundred distinct tile shapes),
 * shared by all threads and contexts for the life of the process; oneDNN
 * primitives may run on several threads at once when, as here, each caller
 * passes its own scratchpad.
 *
 * Measured on the 2-core AVX-512 EPYC (a loaded machine, one thread, a
 * 256x320x1280 tile): dnnl_sgemm 29 GFLOP/s, the bf16 primitive alone 99,
 * with the rounding of both inputs 36-50 (the rounding is what to speed up
 * next: weights rounded once instead of per tile).
 */
#include "ops.h"

#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef SD_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

int ops_bf16_available(void) {
#if defined(SD_HAVE_DNNL) && defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#define AMX_ARCH_REQ_XCOMP_PERM 0x1023 /* arch_prctl: ask for an XSAVE feature's state (Linux 5.16+) */
#define AMX_XFEATURE_XTILEDATA 18

static int amx_usable; /* set once by amx_probe */
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;

static void amx_probe(void) {
    unsigned a, b, c, d;
    int ok = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d & (1u << 24)) && (d & (1u << 22)); /* AMX-TILE, -BF16 */
    amx_usable = ok && syscall(SYS_arch_prctl, AMX_ARCH_REQ_XCOMP_PERM, AMX_XFEATURE_XTILEDATA) == 0;
}

int ops_amx_available(void) {
    pthread_once(&amx_once, amx_probe);
    return amx_usable && ops_bf16_available();
}
#else
int ops_amx_available(void) { return 0; }
#endif

const char *ops_cpu_describe(char *buf, size_t n) {
    char model[128] = "unknown CPU", line[512];
    FILE *fp = fopen("/proc/cpuinfo", "r");
    while (fp && fgets(line, sizeof line, fp)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !colon) continue;
        snprintf(model, sizeof model, "%s", colon + 1 + (colon[1] == ' '));
        model[strcspn(model, "\n")] = 0;
        break;
    }
    if (fp) fclose(fp);
    int avx2 = 0, avx512 = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    avx2 = __builtin_cpu_supports("avx2");
    avx512 = __builtin_cpu_supports("avx512f");
#endif
    snprintf(buf, n, "%s (%s%s%s%s)", model, avx512 ? "AVX-512" : avx2 ? "AVX2" : "no AVX2",
             ops_bf16_available() ? ", AVX512_BF16" : "", ops_amx_available() ? ", AMX-BF16" : "",
             getenv("OPENBLAS_CORETYPE") ? "; OPENBLAS_CORETYPE set" : "");
    return buf;
}

#ifdef SD_HAVE_DNNL

/* One cached primitive: the shape it was made for and the scratchpad it needs. */
typedef struct bf16_prim {
    int trans_b, M, N, K, lda, ldb, ldc;
    float alpha, beta;
    dnnl_primitive_t prim;
    size_t scratch_bytes;
} bf16_prim;

static pthread_mutex_t prim_lock = PTHREAD_MUTEX_INITIALIZER;
static bf16_prim **prims;
static int n_prims, cap_prims;
static dnnl_engine_t engine;

/* Per thread: a stream, and one growing buffer for the rounded inputs and the scratchpad. */
static _Thread_local dnnl_stream_t thread_stream;
static _Thread_local unsigned char *thread_buf;
static _Thread_local size_t thread_buf_bytes;

/* rows x cols of src (leading dimension ld) into dst as contiguous rows of bf16. */
static void round_rows_to_bf16(uint16_t *dst, const float *src, int rows, int cols, int ld) {
    for (int r = 0; r < rows; r++) ops_round_bf16(dst + (size_t)r * cols, src + (size_t)r * ld, (size_t)cols);
}

/*
 * The primitive computing c[M, N] (f32, leading dimension ldc) = alpha *
 * a[M, K] (bf16, row stride lda) * b (bf16 [K, N], or [N, K] when trans_b;
 * row stride ldb) + beta * c. Made on first use, single-threaded. NULL on
 * failure.
 */
static bf16_prim *prim_make(int trans_b, int M, int N, int K, int lda, int ldb, int ldc, float alpha, float beta) {
    dnnl_memory_desc_t a_md, b_md, c_md;
    dnnl_dims_t a_dims = {M, K}, a_strides = {lda, 1}, b_dims = {K, N}, c_dims = {M, N}, c_strides = {ldc, 1};
    dnnl_dims_t b_strides = {ldb, 1};
    if (trans_b) b_strides[0] = 1, b_strides[1] = ldb;
    if (dnnl_memory_desc_init_by_strides(&a_md, 2, a_dims, dnnl_bf16, a_strides) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&b_md, 2, b_dims, dnnl_bf16, b_strides) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&c_md, 2, c_dims, dnnl_f32, c_strides) != dnnl_success)
        return NULL;
    dnnl_matmul_desc_t desc;
    if (dnnl_matmul_desc_init(&desc, &a_md, &b_md, NULL, &c_md) != dnnl_success) return NULL;
    dnnl_primitive_attr_t attr;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return NULL;
    dnnl_post_ops_t post = NULL;
    int ok = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
    if (ok && alpha != 1.0f) ok = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha) == dnnl_success;
    if (ok && beta != 0.0f) {
        ok = dnnl_post_ops_create(&post) == dnnl_success && dnnl_post_ops_append_sum(post, beta) == dnnl_success &&
             dnnl_primitive_attr_set_post_ops(attr, post) == dnnl_success;
    }
    dnnl_primitive_desc_t pd = NULL;
    bf16_prim *p = ok ? calloc(1, sizeof *p) : NULL;
    if (p && dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL) == dnnl_success) {
        const dnnl_memory_desc_t *s_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        p->scratch_bytes = s_md ? dnnl_memory_desc_get_size(s_md) : 0;
        if (dnnl_primitive_create(&p->prim, pd) != dnnl_success) p->prim = NULL;
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (post) dnnl_post_ops_destroy(post);
    dnnl_primitive_attr_destroy(attr);
    if (p && !p->prim) {
        free(p);
        return NULL;
    }
    if (p) {
        p->trans_b = trans_b, p->M = M, p->N = N, p->K = K, p->lda = lda, p->ldb = ldb, p->ldc = ldc;
        p->alpha = alpha, p->beta = beta;
    }
    return p;
}

/* The cached primitive for this shape, made (under the lock) when missing. NULL on failure. */
static bf16_prim *prim_get(int trans_b, int M, int N, int K, int lda, int ldb, int ldc, float alpha, float beta) {
    pthread_mutex_lock(&prim_lock);
    bf16_prim *found = NULL;
    for (int i = 0; i < n_prims && !found; i++) {
        bf16_prim *p = prims[i];
        if (p->trans_b == trans_b && p->M == M && p->N == N && p->K == K && p->lda == lda && p->ldb == ldb &&
            p->ldc == ldc && p->alpha == alpha && p->beta == beta)
            found = p;
    }
    if (!found && (engine || dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success)) {
        if (n_prims == cap_prims) {
            int cap = cap_prims ? 2 * cap_prims : 256;
            bf16_prim **grown = realloc(prims, (size_t)cap * sizeof *grown);
            if (grown) prims = grown, cap_prims = cap;
        }
        if (n_prims < cap_prims && (found = prim_make(trans_b, M, N, K, lda, ldb, ldc, alpha, beta)) != NULL)
            prims[n_prims++] = found;
    }
    pthread_mutex_unlock(&prim_lock);
    return found;
}

/* This thread's buffer of at least `bytes` (64-byte aligned), NULL when out of memory. */
static unsigned char *thread_buffer(size_t bytes) {
    if (bytes <= thread_buf_bytes) return thread_buf;
    free(thread_buf);
    size_t size = (bytes + 63) & ~(size_t)63;
    thread_buf = aligned_alloc(64, size);
    thread_buf_bytes = thread_buf ? size : 0;
    return thread_buf;
}

/* Runs p on bf16 a, b into c with its scratchpad at scratch, on this thread's stream. 0 or -1. */
static int prim_run(const bf16_prim *p, const uint16_t *a, const uint16_t *b, float *c, void *scratch) {
    if (!thread_stream && dnnl_stream_create(&thread_stream, engine, dnnl_stream_default_flags) != dnnl_success)
        return -1;
    const dnnl_memory_desc_t *md[4];
    dnnl_memory_t mem[4] = {0};
    int args[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_SCRATCHPAD};
    void *ptr[4] = {(void *)a, (void *)b, c, scratch};
    const_dnnl_primitive_desc_t pd;
    int n = p->scratch_bytes ? 4 : 3, ok = dnnl_primitive_get_primitive_desc(p->prim, &pd) == dnnl_success, rc = -1;
    md[0] = ok ? dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0) : NULL;
    md[1] = ok ? dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0) : NULL;
    md[2] = ok ? dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0) : NULL;
    md[3] = ok ? dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0) : NULL;
    dnnl_exec_arg_t exec[4];
    for (int i = 0; i < n && ok; i++) {
        ok = md[i] && dnnl_memory_create(&mem[i], md[i], engine, ptr[i]) == dnnl_success;
        exec[i].arg = args[i], exec[i].memory = mem[i];
    }
    if (ok && dnnl_primitive_execute(p->prim, thread_stream, n, exec) == dnnl_success &&
        dnnl_stream_wait(thread_stream) == dnnl_success)
        rc = 0;
    for (int i = 0; i < n; i++)
        if (mem[i]) dnnl_memory_destroy(mem[i]);
    return rc;
}

/*
 * c[M, N] = alpha * bf16(a)[M, K] * bf16(b) + beta * c, b [K, N] or [N, K]
 * when trans_b, float32 accumulation, on the calling thread. Returns 0, or
 * -1 when oneDNN or memory fails (the caller then computes in float32).
 */
int ops_gemm_bf16(int trans_b, int M, int N, int K, float alpha, const float *a, int lda, const float *b, int ldb,
                  float beta, float *c, int ldc) {
    if (M <= 0 || N <= 0 || K <= 0) return -1;
    int saved = omp_get_max_threads();
    if (saved != 1) omp_set_num_threads(1); /* one thread per call, as gemm_dnnl (ops_gemm.c) */
    int rc = -1;
    bf16_prim *p = prim_get(trans_b, M, N, K, K, trans_b ? K : N, ldc, alpha, beta);
    size_t a_bytes = ((size_t)M * K * 2 + 63) & ~(size_t)63, b_bytes = ((size_t)N * K * 2 + 63) & ~(size_t)63;
    unsigned char *buf = p ? thread_buffer(a_bytes + b_bytes + p->scratch_bytes) : NULL;
    if (buf) {
        uint16_t *ab = (uint16_t *)buf, *bb = (uint16_t *)(buf + a_bytes);
        round_rows_to_bf16(ab, a, M, K, lda);
        if (trans_b) round_rows_to_bf16(bb, b, N, K, ldb);
        else round_rows_to_bf16(bb, b, K, N, ldb);
        rc = prim_run(p, ab, bb, c, buf + a_bytes + b_bytes);
    }
    if (saved != 1) omp_set_num_threads(saved);
    return rc;
}

int ops_gemm_bf16_rounded(int trans_b, int M, int N, int K, float alpha, const uint16_t *a, int lda,
                          const uint16_t *b, int ldb, float beta, float *c, int ldc) {
    if (M <= 0 || N <= 0 || K <= 0) return -1;
    int saved = omp_get_max_threads();
    if (saved != 1) omp_set_num_threads(1);
    int rc = -1;
    bf16_prim *p = prim_get(trans_b, M, N, K, lda, ldb, ldc, alpha, beta);
    unsigned char *buf = p ? thread_buffer(p->scratch_bytes ? p->scratch_bytes : 64) : NULL;
    if (buf) rc = prim_run(p, a, b, c, buf);
    if (saved != 1) omp_set_num_threads(saved);
    return rc;
}

#else

int ops_gemm_bf16(int trans_b, int M, int N, int K, float alpha, const float *a, int lda, const float *b, int ldb,
                  float beta, float *c, int ldc) {
    return -1;
}

int ops_gemm_bf16_rounded(int trans_b, int M, int N, int K, float alpha, const uint16_t *a, int lda,
                          const uint16_t *b, int ldb, float beta, float *c, int ldc) {
    return -1;
}

#endif

/* Vectorized by the compiler. */
void ops_round_bf16(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        dst[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
}

void ops_convert_to_bf16(uint16_t *dst, const void *src, sd_dtype t, size_t n) {
    if (t == SD_BF16) {
        memcpy(dst, src, n * sizeof *dst);
        return;
    }
    if (t == SD_F32 && ((uintptr_t)src & 3) == 0) {
        ops_round_bf16(dst, src, n);
        return;
    }
    float buf[1024]; /* through float32 (exact for F16), a chunk at a time */
    size_t esz = sd_dtype_size(t);
    for (size_t i = 0; i < n; i += 1024) {
        size_t m = n - i < 1024 ? n - i : 1024;
        sd_dtype_convert_to_f32(buf, (const unsigned char *)src + i * esz, t, m);
        ops_round_bf16(dst + i, buf, m);
    }
}
