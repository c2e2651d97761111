/*
 * group.h - K ranks rendering one image together (tensor parallelism).
 *
 * A group is set up outside core/ (mpi/tp_group.c makes its communicators)
 * and handed to the pipeline (sd_pipeline_load_group). Two ways to share the
 * U-Net's work, chosen per group (sd_parallel):
 *
 *   CFG-parallel: with classifier-free guidance the U-Net runs on the
 *     negative and the positive prompt; ranks [0, K/2) take the first half,
 *     [K/2, K) the second, and the pair of ranks with the same position in
 *     both halves swaps its noise predictions once per step (one all-gather
 *     of [C, h, w]). Within a half, K/2 ranks share every layer tensor-
 *     parallel (K = 2: each half alone, full weights).
 *   tensor-parallel: all K ranks share every layer (unet_shard) and run the
 *     whole CFG batch.
 *
 * CFG-parallel images are byte-identical to one rank's, which runs the CFG
 * batch in one pass: the kernels compute each batch entry to the same bits
 * alone or in a batch (ops_gemm pads products under 16 rows or columns,
 * whose oneDNN kernels round differently; GEMM column tiles depend on N
 * alone; a ResNet shortcut is a residual, not an accumulation). test_tp
 * checks the U-Net bit for bit, batch 2 against each entry alone.
 *
 * Everything outside the U-Net is replicated on every rank (text encoder,
 * sampler, and the VAE encoder of img2img); only the leader (rank 0) decodes
 * the image: the VAE decode is one pass with no step to overlap, and
 * splitting its convolutions would all-reduce activations of the full image
 * size for every layer (measured slower than one rank at 2 ranks).
 */
#ifndef SD_GROUP_H
#define SD_GROUP_H

#include "err.h"
#include "ops_comm.h"
#include "unet.h"

typedef enum sd_parallel { SD_PARALLEL_AUTO = 0, SD_PARALLEL_CFG = 1, SD_PARALLEL_TENSOR = 2 } sd_parallel;

/* "auto", "cfg", "tensor". */
const char *sd_parallel_name(sd_parallel p);
/* SD_EINPUT with a message naming the choices for anything else. */
int sd_parallel_parse(const char *s, sd_parallel *out, sd_error *err);
/*
 * The strategy a group of K ranks uses: AUTO is CFG when guidance is on
 * (cfg_on) and K is even, else TENSOR; CFG with an odd K is SD_EINPUT. CFG
 * without guidance is allowed (a batch runner's jobs differ): both halves
 * then compute the same single U-Net entry, as one rank would, no faster.
 * K = 1 is TENSOR (nothing to share).
 */
int sd_parallel_resolve(sd_parallel requested, int K, int cfg_on, sd_parallel *out, sd_error *err);

typedef struct sd_group {
    int rank, size;          /* in the group; rank 0 is the leader (writes the image) */
    sd_parallel strategy;    /* CFG or TENSOR (resolved) */
    const ops_comm *all;     /* every rank of the group */
    const ops_comm *tp;      /* the ranks sharing the U-Net's layers with this one */
    const ops_comm *cfg;     /* CFG-parallel: this rank and its partner in the other half; else NULL */
    int cfg_index;           /* CFG-parallel: 0 = negative-prompt half, 1 = prompt half */
} sd_group;

/*
 * Collective over g->all: 0 when every rank's rc is 0, else the first failing
 * rank's code, with its message (prefixed "rank N: " for members) in every
 * rank's err. A NULL group returns rc as it is.
 */
int sd_group_agree(const sd_group *g, int rc, sd_error *err);

/*
 * Test hook: SDRENDER_TP_FAIL_RANK=N makes rank N of every group fail at `where`, which is
 * SDRENDER_TP_FAIL_AT ("inputs", the default: after reading its inputs, as a member that cannot read a
 * file; "unet": as its first shared U-Net pass starts, as a member that runs out of memory there).
 * 0 elsewhere; a NULL group never fails.
 */
int sd_group_fault(const sd_group *g, const char *where, sd_error *err);

/* Collective over g->all: *v becomes the leader's value on every rank (nothing for a NULL group). */
int sd_group_bcast_int(const sd_group *g, int *v, sd_error *err);

/*
 * The U-Net on a batch of B entries at timestep t (B = 2: [negative, prompt]
 * with CFG), as the group shares it. x: [B, Cin, h, w], ctx: [B, n_ctx, D]
 * -> out: [B, C, h, w] on every rank; added: the B entries' added conditioning (SDXL's text/time
 * embedding, the upscaler's class labels; NULL for none). ctx NULL with n_ctx 0 for a model without
 * text (pixel-space DDPM). u must be sharded with g->tp (or not at all for g NULL).
 * A rank whose pass fails in a group of more than one ends the whole job with its message
 * (ops_comm's abort): its partners are waiting in a collective inside the pass or in the exchange after
 * it, and no agreement can reach them there.
 */
int sd_group_unet_forward(unet_model *u, const sd_group *g, const float *x, float t, const float *ctx, int n_ctx,
                          const unet_added_cond *added, int B, int h, int w, float *out, sd_error *err);

#endif
