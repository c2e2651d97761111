/* ops_ctx.c - the kernel context: scratch arena, precision and routes (see ops.h). */
#include "ops.h"

#include <string.h>

void ops_ctx_init(ops_ctx *c, size_t block_size) {
    memset(c, 0, sizeof *c);
    ops_arena_init(&c->scratch, block_size);
    c->precision = OPS_PRECISION_FP32;
    c->conv_kernel = OPS_CONV_AUTO;
    c->attn_kernel = OPS_ATTN_AUTO;
    c->comm = NULL;
}

void ops_ctx_free(ops_ctx *c) { ops_arena_free(&c->scratch); }
