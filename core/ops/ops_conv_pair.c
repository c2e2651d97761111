/*
 * ops_conv_pair.c - a CFG-parallel pair shares its small images' convolutions.
 *
 * With classifier-free guidance split over two ranks (core/pipeline/group.h),
 * each rank runs the U-Net on one image of the CFG pair. At the small levels
 * one image costs far more than half of two: the weights are streamed (and,
 * for Winograd, transformed) once per call whatever the number of images, and
 * 16-64 positions use them for little work. Measured on one core of the Xeon:
 * 3x3, 640 channels at 16x16, one image 10.2 ms against 15.7 for two; 1280
 * channels at 4x4, 7.2 against 7.7.
 *
 * So the pair computes such a convolution as one rank would compute the batch
 * of two, each rank half of the output channels: both ranks gather both
 * images' inputs (and their fused GroupNorm scale and shift), each convolves
 * the two images with its half of the filters, the ranks swap the halves that
 * belong to the other's image, and each finishes its own image (bias,
 * per-channel add, residual, accumulation) as ops_conv2d would. Every output
 * is computed by the same route, with the same sums, as in the one rank's
 * batch of two (the routes' results do not depend on which output channels
 * share a call, and ops_conv2d makes a batch entry the same alone or in a
 * batch), so CFG-parallel images stay byte-identical to one rank's.
 *
 * Sent per convolution and rank: the input image (C x H x W floats) and half
 * the output image. Used for images of at most PAIR_MAX_POSITIONS output
 * positions (16x16 and below); at 32x32 one image cost about half of two.
 */
#include "ops.h"

#include <string.h>

#include "ops_comm.h"
#include "ops_conv_impl.h"

#define PAIR_MAX_POSITIONS 256
#define PAIR_MIN_HALF 32 /* output channels per rank, at least: as Winograd's minimum, so the route is the same */

int conv_pair_pick(const ops_conv_desc *d, int P, const ops_ctx *ctx) {
    /* not accumulate: the GEMM routes add a convolution to its output in another order than conv_store_row */
    return ctx->pair && ctx->pair->size == 2 && d->batch == 1 && !d->accumulate && P <= PAIR_MAX_POSITIONS &&
           d->out_ch % 2 == 0 && d->out_ch / 2 >= PAIR_MIN_HALF;
}

int conv_pair_run(float *out, const float *x, const ops_conv_desc *d, int P, ops_ctx *ctx, sd_error *err) {
    const ops_comm *c = ctx->pair;
    int me = c->rank, half = d->out_ch / 2, C = d->in_ch, rc;
    size_t in_n = (size_t)C * d->in_h * d->in_w, half_n = (size_t)half * P;
    size_t row_bytes = (size_t)sd_tensor_numel(d->weight) / d->out_ch * sd_dtype_size(d->weight->dtype);
    int fused = d->in_scale || d->in_shift;
    ops_mark mark = ops_arena_mark(&ctx->scratch);
    float *x2 = ops_arena_floats(&ctx->scratch, 2 * in_n, err);
    float *st = x2 && fused ? ops_arena_floats(&ctx->scratch, 10 * (size_t)C, err) : NULL; /* mine 2C, both 4C, split 4C */
    float *two = x2 && (!fused || st) ? ops_arena_floats(&ctx->scratch, 4 * half_n, err) : NULL;
    if (!two) {
        ops_arena_release(&ctx->scratch, mark);
        return err ? err->code : SD_ENOMEM;
    }
    float *recv = two + 2 * half_n; /* [rank][half_n]: what each rank sent */
    ops_conv_desc d2 = *d;
    sd_tensor w = *d->weight; /* this rank's output channels: a view of rows [me * half, me * half + half) */
    w.shape[0] = half;
    w.data = (const unsigned char *)d->weight->data + (size_t)me * half * row_bytes;
    w.nbytes = (size_t)half * row_bytes;
    d2.batch = 2, d2.out_ch = half, d2.weight = &w;
    d2.bias = NULL, d2.chan_add = NULL, d2.residual = NULL, d2.accumulate = 0;
    rc = ops_comm_allgather(c, x, x2, in_n * sizeof(float), err);
    if (rc == 0 && fused) { /* [scale, shift] of each image -> scales [2, C], shifts [2, C] */
        float *mine = st, *both = st + 2 * (size_t)C, *split = st + 6 * (size_t)C;
        for (int i = 0; i < C; i++) {
            mine[i] = d->in_scale ? d->in_scale[i] : 1.0f;
            mine[C + i] = d->in_shift ? d->in_shift[i] : 0.0f;
        }
        rc = ops_comm_allgather(c, mine, both, 2 * (size_t)C * sizeof(float), err);
        for (int b = 0; b < 2; b++) {
            memcpy(split + (size_t)b * C, both + (size_t)b * 2 * C, (size_t)C * sizeof(float));
            memcpy(split + (size_t)(2 + b) * C, both + (size_t)b * 2 * C + C, (size_t)C * sizeof(float));
        }
        d2.in_scale = d->in_scale ? split : NULL;
        d2.in_shift = d->in_shift ? split + 2 * (size_t)C : NULL;
    }
    /* two: [image][this rank's channels][P]; send the partner its image's part, take mine */
    if (rc == 0) rc = ops_conv2d(two, x2, &d2, ctx, err);
    if (rc == 0) rc = ops_comm_allgather(c, two + (size_t)(1 - me) * half_n, recv, half_n * sizeof(float), err);
    if (rc == 0) {
        const float *bias = d->bias ? ops_weight_f32(d->bias, ctx, err) : NULL;
        if (d->bias && !bias) rc = err ? err->code : SD_ENOMEM;
        for (int m = 0; rc == 0 && m < d->out_ch; m++) {
            int owner = m / half; /* the rank that computed channel m */
            const float *src = owner == me ? two + (size_t)me * half_n : recv + (size_t)owner * half_n;
            float add = (bias ? bias[m] : 0.0f) + (d->chan_add ? d->chan_add[m] : 0.0f);
            size_t off = (size_t)m * P;
            conv_store_row(out + off, src + (size_t)(m % half) * P, d->residual ? d->residual + off : NULL, add, P,
                           d->accumulate);
        }
    }
    ops_arena_release(&ctx->scratch, mark);
    return rc;
}
