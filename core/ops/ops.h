/*
 * ops.h - the compute kernels every network in sdrender is built from.
 *
 * Layout. Activations are float32, row-major, owned by the caller. Images are
 * NCHW ([B, C, H, W], like PyTorch); token sequences are [B, T, C] ("rows" of C
 * features). A kernel never allocates its output: it fills a buffer the caller
 * passes in. Weights are `const sd_tensor *` views (core/base/tensor.h) in F32, F16
 * or BF16, usually pointing into a mapped checkpoint, possibly unaligned.
 *
 * Weights stay 16-bit in memory. A kernel widens the weight it needs into
 * scratch memory right before its GEMM (sd_dtype_convert_to_f32, vectorized): on the
 * 2-core AVX-512 EPYC this measured ~0.2 s of a 10 s U-Net step at 512x512
 * (2%; 7% at 256x256), against 3.4 GB more resident memory for a float32
 * copy of SD 1.5. (A caller that prefers speed over memory can widen once and
 * pass aligned F32 views: kernels use those directly.)
 *
 * Context. Kernels take an `ops_ctx *` (last, or just before the error
 * buffer): what a kernel needs beyond its arguments. It holds the scratch arena, the
 * precision GEMMs run in, the route stride-1 3x3 convolutions and attention
 * take, and the communicator of a tensor-parallel group. A network
 * owns one context and passes it to every kernel of its forward pass, so
 * two networks, or two threads each running one, never share state; tests
 * and benchmarks pick a route by setting the field on the context they pass.
 *
 * Scratch. Kernels that need temporary memory (converted weights, im2col
 * tiles, attention tiles) take it from ctx->scratch: a bump allocator that
 * grows in large blocks and is rewound with mark/release. A network's arena
 * also holds its activations; after the first forward pass it has its final
 * size, so no step after the first calls malloc. Kernels release what they
 * took before they return, so scratch use is strictly nested.
 *
 * GEMMs. Every matrix product of the kernels is an ops_gemm call, the one
 * place that picks how to multiply (ctx->precision): for float32, oneDNN's
 * sgemm when the build has it (AVX-512; Debian's OpenBLAS runs AVX2 kernels
 * on the development EPYC), else our own FMA kernel where the CPU has AVX2
 * and FMA (ops_gemm_fma.c; portable builds ask the CPU), else OpenBLAS
 * cblas_sgemm; for bf16,
 * oneDNN's bf16 matmul on rounded inputs (ops_gemm_bf16.c).
 *
 * Threads. All parallelism is OpenMP over the outer loops of each kernel
 * (output tiles, rows, channels, heads). GEMMs are made from inside those
 * loops on single-threaded OpenBLAS or oneDNN: two thread pools (OpenBLAS's and
 * OpenMP's) spinning on the same cores cost up to 45% here.
 * ops_set_threads(n) sets both knobs accordingly; call it once at start-up.
 *
 *     ops_set_threads(0);                         // all cores
 *     ops_ctx ctx; ops_ctx_init(&ctx, 0);         // fp32, automatic routes
 *     ops_linear(y, x, M, K, w, b, N, 0, &ctx, &err);  // y[M,N] = x[M,K] w[N,K]^T + b
 *     ops_ctx_free(&ctx);
 */
#ifndef SD_OPS_H
#define SD_OPS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "tensor.h"

/* ---- threads ---------------------------------------------------------- */

/*
 * Work is cut into pieces planned for ops_plan_threads() threads whatever the
 * real count: a GEMM tile's shape selects OpenBLAS code paths that round
 * differently, so planning by the real count would make an image depend on
 * --threads (a batch worker with 1 thread must write the same PNG as
 * `generate` with 16). The default, 8, costs a few percent on 2 cores; on
 * nodes that give one rank many more cores, SDRENDER_PLAN_THREADS=16 or 32
 * spreads small layers wider -- set it the same everywhere whose images must
 * match bit for bit. (Float32 linear layers on oneDNN cut their rows for the
 * real count: a row's bits do not depend on its tile there; ops_gemm.c.)
 */
#define OPS_PLAN_THREADS_DEFAULT 8
int ops_plan_threads(void);

/* n OpenMP threads (0 = all cores) for every kernel; OpenBLAS runs single-threaded inside them. */
void ops_set_threads(int n);
/* The number of threads kernels use. */
int ops_get_threads(void);

/* ---- profiling -------------------------------------------------------- */

/*
 * Per-kind kernel time (GEMMs, convolutions, attention, norms, ...), off by
 * default; on with ops_profile_enable(1) or the environment variable
 * SDRENDER_PROFILE=1. The report is a table of calls, seconds and GFLOP/s.
 */
void ops_profile_enable(int on);
void ops_profile_reset(void);
void ops_profile_report(FILE *fp);

/* ---- scratch arena ---------------------------------------------------- */

typedef struct ops_arena_block {
    char *base;
    size_t size, used;
} ops_arena_block;

typedef struct ops_arena {
    ops_arena_block *blocks;
    int n_blocks, cap_blocks;
    int cur;              /* block allocations come from */
    size_t block_size;    /* minimum size of a new block */
    size_t in_use, peak;  /* bytes handed out now / at most */
    int n_grow;           /* how many blocks were malloc'ed (tests: "allocates nothing") */
} ops_arena;

/* A position in an arena to rewind to. */
typedef struct ops_mark {
    int block;
    size_t used, in_use;
} ops_mark;

/* block_size 0 = 64 MiB. Nothing is allocated until the first ops_arena_alloc. */
void ops_arena_init(ops_arena *a, size_t block_size);
/* 64-byte aligned memory valid until released; NULL and an SD_ENOMEM error when out of memory. */
void *ops_arena_alloc(ops_arena *a, size_t bytes, sd_error *err);
/* Same for n floats. */
float *ops_arena_floats(ops_arena *a, size_t n, sd_error *err);
ops_mark ops_arena_mark(const ops_arena *a);
/* Frees (for reuse) everything allocated after mark m. */
void ops_arena_release(ops_arena *a, ops_mark m);
/* Makes sure `bytes` more can be allocated without malloc (one block). */
int ops_arena_reserve(ops_arena *a, size_t bytes, sd_error *err);
void ops_arena_free(ops_arena *a);
/* Frees every block (nothing may be in use); the arena stays usable and grows back on the next call. */
void ops_arena_drop(ops_arena *a);

/* ---- kernel context --------------------------------------------------- */

/*
 * What ops_gemm multiplies in. BF16: both inputs rounded to bfloat16,
 * float32 accumulation and output (oneDNN's bf16 matmul); only where
 * ops_bf16_available(), else ops_gemm computes in float32. Every GEMM
 * follows it (linear, im2col convolutions, Winograd products), and so do
 * attention's two products (its own AVX512_BF16 kernel, ops_attention_bf16);
 * the Winograd transforms, norms, softmax and samplers stay float32.
 */
typedef enum ops_precision { OPS_PRECISION_FP32 = 0, OPS_PRECISION_BF16 = 1 } ops_precision;

/* 1 when ops_gemm can run in bf16 here: a build with oneDNN on a CPU with AVX512_BF16. */
int ops_bf16_available(void);
/*
 * 1 when the CPU has AMX tiles with bf16 products (AMX-TILE, AMX-BF16) and Linux lets this process use them
 * (the first call asks for the tile state with arch_prctl); ops_attention's bf16 kernel then runs on them.
 */
int ops_amx_available(void);
/* "model name (instruction sets the kernels use)" of this machine into buf (n bytes), for reports; buf. */
const char *ops_cpu_describe(char *buf, size_t n);

/*
 * Which route stride-1 3x3 convolutions take: AUTO = Winograd F(2x2, 3x3)
 * where it is faster (>= 32 input and output channels, images of 9x9 and
 * up), GEMM = never Winograd, WINOGRAD = Winograd for every stride-1 3x3
 * convolution (tests compare the routes).
 */
typedef enum ops_conv_kernel { OPS_CONV_AUTO = 0, OPS_CONV_GEMM = 1, OPS_CONV_WINOGRAD = 2 } ops_conv_kernel;

/*
 * Which implementation ops_attention uses: AUTO = the AVX-512 kernels when
 * the build has them (in bf16: AMX tiles where the CPU has AMX-BF16, else
 * AVX512_BF16 dot products), else OpenBLAS; BLAS forces the OpenBLAS one;
 * DOT_BF16 the AVX512_BF16 kernel in bf16 even where AMX is there (tests
 * compare them). It sizes the workspace too: size it with the context the
 * call uses.
 */
typedef enum ops_attn_kernel { OPS_ATTN_AUTO = 0, OPS_ATTN_BLAS = 1, OPS_ATTN_DOT_BF16 = 2 } ops_attn_kernel;

/*
 * A communicator for tensor parallelism (ops_comm.h): rank, size and an
 * all-gather callback filled in outside core/ (core/ never includes MPI).
 * The U-Net's sharded layers (resnet.c, transformer2d.c) use it.
 */
struct ops_comm; /* ops_comm.h */

typedef struct ops_ctx {
    ops_arena scratch;           /* temporary memory of the kernels (a network's activations too) */
    ops_precision precision;     /* what ops_gemm computes in */
    ops_conv_kernel conv_kernel; /* route of stride-1 3x3 convolutions */
    /*
     * Output tile of the Winograd route: 2 (default, 0 reads as 2) F(2x2, 3x3), or 4 F(4x4, 3x3):
     * 1.8x fewer multiply-adds, 10-30x F(2x2)'s rounding error (ops_conv_winograd.c). A network
     * opts in where its tolerances allow (the VAE). Float32 only: bf16 takes F(2x2) whatever this says.
     */
    int wino_tile;
    ops_attn_kernel attn_kernel; /* implementation of ops_attention */
    const struct ops_comm *comm; /* NULL: this process computes every output alone */
    /*
     * Rows of one batch entry in the linear layers that follow (a transformer's positions per image),
     * 0 when unknown. A network whose entries must come out the same alone or in a batch sets it: with
     * 1..OPS_FEW_MAX_ROWS, ops_linear takes ops_gemm_few (float32), chosen by this, never by M.
     */
    int entry_rows;
    /*
     * CFG-parallel: this rank and its partner, each running the U-Net on one image of the CFG pair
     * (rank = the image's index). ops_conv2d of one image at 16x16 and below then splits its output
     * channels with the partner (ops_conv_pair.c). NULL: none.
     */
    const struct ops_comm *pair;
} ops_ctx;

/* Float32, automatic routes, no communicator; an empty arena of block_size (0 = 64 MiB) blocks. */
void ops_ctx_init(ops_ctx *c, size_t block_size);
/* Frees the arena; the other fields stay as they were. */
void ops_ctx_free(ops_ctx *c);

/* ---- weights ---------------------------------------------------------- */

/*
 * w as float32: the data itself when w is aligned F32, else a converted copy
 * in ctx->scratch (converted by all threads). NULL and an error on failure.
 */
const float *ops_weight_f32(const sd_tensor *w, ops_ctx *ctx, sd_error *err);

/* ---- matrix products -------------------------------------------------- */

/*
 * c[M, N] = alpha * a[M, K] * b + beta * c, row-major, with b [K, N], or
 * b [N, K] used transposed when trans_b (leading dimensions lda, ldb, ldc).
 * One GEMM on the calling thread: kernels call it from inside their OpenMP
 * loops. beta = 0 ignores what c held (NaN included).
 */
void ops_gemm(const ops_ctx *ctx, int trans_b, int M, int N, int K, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc);

/*
 * ops_gemm's bf16 route (ops_gemm_bf16.c): c = alpha bf16(a) bf16(b) + beta c
 * in float32 on the calling thread; 0, or -1 when it cannot make its
 * primitive or buffers (c is then untouched, and ops_gemm computes in float32).
 */
int ops_gemm_bf16(int trans_b, int M, int N, int K, float alpha, const float *a, int lda, const float *b, int ldb,
                  float beta, float *c, int ldc);

/*
 * The same product on operands already rounded (ops_round_bf16): a [M, K] and b ([K, N], or [N, K]
 * when trans_b) bf16 with row strides lda, ldb. For a kernel that uses one operand in many products
 * (the Winograd convolutions' transformed filters and tiles): it rounds each once. 0, or -1 as
 * ops_gemm_bf16 (c untouched). M and N of at least 16 (ops_gemm pads smaller products).
 */
int ops_gemm_bf16_rounded(int trans_b, int M, int N, int K, float alpha, const uint16_t *a, int lda,
                          const uint16_t *b, int ldb, float beta, float *c, int ldc);

/* dst[i] = src[i] rounded to the nearest bfloat16 (ties to even), as ops_gemm_bf16 rounds. */
void ops_round_bf16(uint16_t *dst, const float *src, size_t n);
/* n values of src (F32, F16 or BF16) as bfloat16, rounded as ops_round_bf16 rounds their float32 values. */
void ops_convert_to_bf16(uint16_t *dst, const void *src, sd_dtype t, size_t n);

/*
 * ops_gemm's float32 route on CPUs with AVX2 + FMA, in builds without AVX-512 or without oneDNN
 * (ops_gemm_fma.c): each output one chain of fused multiply-adds over k in order, so a row's bits do not
 * depend on M, N or the tiles. alpha any with beta 0; beta 1 with alpha 1 (the chain starts from c); other
 * pairs combine a copy. 0, or -1 out of memory or not in this build or on this CPU (c untouched).
 * ops_gemm_fma_available(): 1 where it runs (a portable build asks the CPU).
 */
int ops_gemm_fma(int trans_b, int M, int N, int K, float alpha, const float *a, int lda, const float *b, int ldb,
                 float beta, float *c, int ldc);
int ops_gemm_fma_available(void);

/* What ops_gemm runs on for float32 ("OpenBLAS sgemm", "oneDNN sgemm", "own AVX2 FMA kernel"), for reports. */
const char *ops_gemm_backend(void);

/*
 * ct[n, m] = sum_k w[n, k] at[k, m] for n < N, m < Mp: the product of few rows, transposed (ops_gemm_few.c).
 * at [K, Mp] float32 (a^T, row stride ldat; Mp a multiple of 16, zeros in rows' padding), w [N, K] of
 * dtype t as stored (F16, BF16 or F32), ct row stride ldct. Each output is one chain of fused
 * multiply-adds over k in order: the same bits whatever Mp, N and the threads. On ops_get_threads()
 * threads (call from serial code), scratch from ctx. Only where ops_gemm_few_available(t) (AVX-512
 * builds); 0 or an error code.
 */
int ops_gemm_few(float *ct, int ldct, const float *at, int ldat, const void *w, sd_dtype t, int Mp, int N, int K,
                 ops_ctx *ctx, sd_error *err);
int ops_gemm_few_available(sd_dtype t);
/* at[K, ldat] = a[M, K] (row stride lda) transposed, zeros in columns M .. round-up-16(M) - 1. */
void ops_few_transpose(float *at, int ldat, const float *a, int lda, int M, int K);

/*
 * Positions per batch entry up to which ops_conv2d's GEMM routes and ops_linear (ctx->entry_rows) use
 * ops_gemm_few: the U-Net's 8x8 and 4x4 levels.
 */
#define OPS_FEW_MAX_ROWS 64

/* Whether ops_linear takes ops_gemm_few for a weight of dtype t in ctx (float32, ctx->entry_rows 1..OPS_FEW_MAX_ROWS). */
int ops_linear_takes_few(const ops_ctx *ctx, sd_dtype t);

/*
 * out[M, N] = x[M, K] * w[N, K]^T + b[N]  (a PyTorch nn.Linear on M rows).
 * b may be NULL. accumulate = 1 adds the result to out (a fused residual).
 */
int ops_linear(float *out, const float *x, int M, int K, const sd_tensor *w, const sd_tensor *b, int N,
               int accumulate, ops_ctx *ctx, sd_error *err);

/*
 * c[M, N] (+)= a[M, K] * b  with b [K, N], or b [N, K] used transposed when
 * trans_b; plain float32 matrices with the given leading dimensions, split
 * over all threads.
 */
void ops_matmul(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int M, int N, int K,
                int trans_b, int accumulate, const ops_ctx *ctx);

/*
 * GFLOP/s of a size^3 OpenBLAS sgemm on ops_get_threads() cores, threaded by
 * OpenBLAS itself (not through ops_gemm): the machine's reference speed that
 * benchmarks compare against. 0 when out of memory.
 */
double ops_sgemm_reference_gflops(int size, int reps);

/*
 * GFLOP/s of a [4096, 1280] x [1280, 320] product through ops_matmul with
 * ctx (its precision, the kernels' tiles, ops_get_threads() threads): the
 * peak a network's GEMMs can reach (best of reps calls after 0.3 s of
 * untimed ones). 0 when out of memory.
 */
double ops_gemm_peak_gflops(const ops_ctx *ctx, int reps);

/* ---- convolution ------------------------------------------------------ */

/*
 * A 2-D convolution (PyTorch Conv2d, no dilation, no groups) with optional
 * work fused into reading its input and writing its output:
 *   input:  nearest upsampling to (up_h, up_w), a per-channel affine
 *           x*scale+shift (a GroupNorm folded by ops_groupnorm_affine), SiLU;
 *   output: bias, a per-(batch, channel) add (a time embedding), a residual
 *           tensor, or accumulation into out.
 * Implementation: im2col of strips of output rows (sized to stay in cache),
 * each strip one sgemm [out_ch, K] x [K, strip]; 1x1 convolutions without
 * input work read x directly; stride-1 3x3 convolutions with enough channels
 * by Winograd F(2x2, 3x3) (16 GEMMs on transformed 4x4 tiles, 2.25x fewer
 * multiply-adds, as precise as the GEMM routes) or, where ctx->wino_tile is
 * 4, F(4x4, 3x3) (36 GEMMs on 6x6 tiles, 4x fewer, less precise).
 */
typedef struct ops_conv_desc {
    int batch, in_ch, in_h, in_w;   /* x: [batch, in_ch, in_h, in_w] */
    int out_ch, k_h, k_w, stride;
    int pad_t, pad_l, pad_b, pad_r; /* zero padding per side (asymmetric allowed) */
    const sd_tensor *weight;        /* [out_ch, in_ch, k_h, k_w] */
    const sd_tensor *bias;          /* [out_ch] or NULL */
    /* fused into the input read (all optional) */
    int up_h, up_w;                 /* > 0: nearest-upsample x to this size first */
    const float *in_scale, *in_shift; /* [batch, in_ch]: x*scale + shift, or NULL */
    int in_silu;                    /* then SiLU */
    /* fused into the output write (all optional) */
    const float *chan_add;          /* [batch, out_ch] */
    const float *residual;          /* [batch, out_ch, out_h, out_w], must not alias out */
    int accumulate;                 /* out += conv instead of out = conv */
} ops_conv_desc;

/* Output size of d (0 when the kernel does not fit the padded input). */
void ops_conv2d_out_size(const ops_conv_desc *d, int *out_h, int *out_w);
/* out: [batch, out_ch, out_h, out_w]; x must not alias out. The route: ctx->conv_kernel. */
int ops_conv2d(float *out, const float *x, const ops_conv_desc *d, ops_ctx *ctx, sd_error *err);

/* ---- normalization ---------------------------------------------------- */

/*
 * GroupNorm statistics of x: [B, C, HW] folded with gamma/beta into a
 * per-(batch, channel) affine: scale[b,c] = gamma[c]/sqrt(var+eps),
 * shift[b,c] = beta[c] - mean*scale. Sums in double.
 */
int ops_groupnorm_affine(float *scale, float *shift, const float *x, int B, int C, int HW, int groups, float eps,
                         const sd_tensor *gamma, const sd_tensor *beta, ops_ctx *ctx, sd_error *err);
/* out = GroupNorm(x) (then SiLU when silu); out may equal x. */
int ops_groupnorm(float *out, const float *x, int B, int C, int HW, int groups, float eps, const sd_tensor *gamma,
                  const sd_tensor *beta, int silu, ops_ctx *ctx, sd_error *err);
/* out: [M, C] = LayerNorm over the last axis of x: [M, C]; out may equal x. */
int ops_layernorm(float *out, const float *x, int M, int C, float eps, const sd_tensor *gamma,
                  const sd_tensor *beta, ops_ctx *ctx, sd_error *err);

/* ---- element-wise ----------------------------------------------------- */

void ops_silu(float *x, size_t n);          /* x * sigmoid(x), in place */
void ops_gelu(float *x, size_t n);          /* exact: x/2 * (1 + erf(x/sqrt 2)) */
void ops_quick_gelu(float *x, size_t n);    /* x * sigmoid(1.702 x) */
/* out[M, inner] = x[:, :inner] * gelu(x[:, inner:]) for x: [M, 2*inner] (diffusers GEGLU). */
void ops_geglu(float *out, const float *x, int M, int inner);
/* Softmax over each row of x: [rows, n], in place. */
void ops_softmax(float *x, int rows, int n);
/* out = a + b (out may equal a or b). */
void ops_add(float *out, const float *a, const float *b, size_t n);
/* x: [B, C, H, W] -> out: [B, C, oh, ow], source index floor(dst * in / out) per axis. */
void ops_upsample_nearest(float *out, const float *x, int B, int C, int H, int W, int oh, int ow);
/* a: [B, Ca, HW], b: [B, Cb, HW] -> out: [B, Ca+Cb, HW]. */
void ops_concat_channels(float *out, const float *a, int Ca, const float *b, int Cb, int B, int HW);
/* x: [B, C, HW] -> out: [B, HW, C] and back; out must not alias x. */
void ops_nchw_to_nlc(float *out, const float *x, int B, int C, int HW);
void ops_nlc_to_nchw(float *out, const float *x, int B, int C, int HW);

/* ---- attention -------------------------------------------------------- */

/*
 * Multi-head scaled dot-product attention, softmax(q k^T * scale [+ causal
 * mask]) v per batch and head, computed in tiles of queries against blocks of
 * keys with a streaming (online) softmax: memory is O(tile), never the
 * [n_q, n_kv] score matrix. Token t of batch b, head h lives at
 * x + (b * n + t) * stride + h * head_dim for each of q, k, v, out (so q, k, v
 * may be column slices of one fused [B, T, 3C] projection).
 */
typedef struct ops_attn_desc {
    int batch, heads, head_dim;
    int n_q, n_kv;
    int q_stride, k_stride, v_stride, out_stride; /* floats between tokens */
    float scale;                    /* usually head_dim^-0.5 */
    int causal;                     /* query i sees keys <= i (CLIP text) */
} ops_attn_desc;

/* Bytes of workspace ops_attention needs for d with `threads` threads and ctx's attention kernel. */
size_t ops_attention_workspace(const ops_attn_desc *d, int threads, const ops_ctx *ctx);
/*
 * out = attention(q, k, v) by ctx->attn_kernel. ws: ops_attention_workspace(d,
 * ops_get_threads(), ctx) bytes, 64-byte aligned; the kernel allocates
 * nothing else (not from ctx->scratch either).
 */
int ops_attention(float *out, const float *q, const float *k, const float *v, const ops_attn_desc *d, void *ws,
                  size_t ws_bytes, const ops_ctx *ctx, sd_error *err);
/*
 * 1 when ops_attention's two products take bf16 inputs for ctx (precision bf16, AUTO kernel, a build and CPU
 * with AVX512_BF16), 0 when they are float32.
 */
int ops_attention_bf16(const ops_ctx *ctx);
/* Which kernel ops_attention runs for ctx, in words (for bench and tests). */
const char *ops_attention_name(const ops_ctx *ctx);

#endif
