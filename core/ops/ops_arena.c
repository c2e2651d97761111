/*
 * ops_arena.c - the scratch arena of a forward pass (see ops.h).
 *
 * Normal builds bump-allocate from large blocks that are kept for reuse after
 * a release. Under AddressSanitizer every allocation is its own exactly-sized
 * malloc, freed on release, so ASan sees each buffer's bounds: a kernel that
 * overruns its scratch fails the sanitizer run instead of silently writing
 * into its neighbour.
 */
#include "ops.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#define ARENA_CHECKED 1
#else
#define ARENA_CHECKED 0
#endif

#define ARENA_ALIGN 64
#define ARENA_DEFAULT_BLOCK ((size_t)64 << 20)
#define ARENA_HUGE ((size_t)2 << 20) /* blocks of at least this: 2 MiB aligned, transparent huge pages asked for */

void ops_arena_init(ops_arena *a, size_t block_size) {
    memset(a, 0, sizeof *a);
    a->block_size = block_size ? block_size : ARENA_DEFAULT_BLOCK;
}

static size_t round_up(size_t n) { return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1); }

/* Makes block index `at` (>= cur) a fresh block of at least `bytes` (exactly, when checked). */
static int arena_new_block(ops_arena *a, int at, size_t bytes, sd_error *err) {
    size_t size = ARENA_CHECKED || bytes > a->block_size ? round_up(bytes) : a->block_size;
    if (at < a->n_blocks) { /* an unused block that is too small: replace it */
        free(a->blocks[at].base);
        a->blocks[at].base = NULL;
    } else {
        if (a->n_blocks == a->cap_blocks) {
            int cap = a->cap_blocks ? 2 * a->cap_blocks : 8;
            ops_arena_block *nb = realloc(a->blocks, (size_t)cap * sizeof *nb);
            if (!nb) return sd_err(err, SD_ENOMEM, "out of memory growing the scratch arena");
            a->blocks = nb;
            a->cap_blocks = cap;
        }
        a->n_blocks++;
    }
    ops_arena_block *b = &a->blocks[at];
    /*
     * Large blocks hold activations of up to hundreds of MB that each image touches anew (the
     * pipeline drops the arena between phases): on 4 KiB pages that is a page fault per 4 KiB and
     * TLB misses in every pass over them. Where the kernel grants transparent huge pages on
     * request (THP "madvise" mode, the default of many distributions) a block asks for them.
     */
    int huge = !ARENA_CHECKED && size >= ARENA_HUGE;
    if (huge) size = (size + ARENA_HUGE - 1) & ~(ARENA_HUGE - 1);
    b->base = aligned_alloc(huge ? ARENA_HUGE : ARENA_ALIGN, size);
    b->size = b->base ? size : 0;
    b->used = 0;
    if (!b->base) return sd_err(err, SD_ENOMEM, "out of memory: scratch arena needs %zu more MiB", size >> 20);
#ifdef MADV_HUGEPAGE
    if (huge) madvise(b->base, size, MADV_HUGEPAGE); /* advice only: no huge pages is no error */
#endif
    a->n_grow++;
    return 0;
}

void *ops_arena_alloc(ops_arena *a, size_t bytes, sd_error *err) {
    size_t need = round_up(bytes ? bytes : 1);
    if (ARENA_CHECKED) { /* one block per allocation, appended after the current one */
        int at = a->n_blocks ? a->cur + 1 : 0;
        if (arena_new_block(a, at, need, err) < 0) return NULL;
        a->cur = at;
    } else if (a->n_blocks == 0 && arena_new_block(a, 0, need, err) < 0) {
        return NULL;
    }
    ops_arena_block *b = &a->blocks[a->cur];
    if (b->size - b->used < need) {
        /* the next block (if any) is unused after a release; take it if big enough */
        int next = a->cur + 1;
        if (next >= a->n_blocks || a->blocks[next].size < need) {
            if (arena_new_block(a, next, need, err) < 0) return NULL;
        }
        a->cur = next;
        b = &a->blocks[next];
        b->used = 0;
    }
    void *p = b->base + b->used;
    b->used += need;
    a->in_use += need;
    if (a->in_use > a->peak) a->peak = a->in_use;
    return p;
}

float *ops_arena_floats(ops_arena *a, size_t n, sd_error *err) {
    return ops_arena_alloc(a, n * sizeof(float), err);
}

ops_mark ops_arena_mark(const ops_arena *a) {
    ops_mark m = {a->cur, a->n_blocks ? a->blocks[a->cur].used : 0, a->in_use};
    if (ARENA_CHECKED) m.block = a->n_blocks - 1; /* -1 when empty */
    return m;
}

void ops_arena_release(ops_arena *a, ops_mark m) {
    if (!a->n_blocks) return;
    if (ARENA_CHECKED) {
        for (int i = m.block + 1; i < a->n_blocks; i++) free(a->blocks[i].base);
        a->n_blocks = m.block + 1;
        a->cur = m.block > 0 ? m.block : 0;
        a->in_use = m.in_use;
        return;
    }
    for (int i = m.block + 1; i <= a->cur && i < a->n_blocks; i++) a->blocks[i].used = 0;
    a->cur = m.block;
    a->blocks[m.block].used = m.used;
    a->in_use = m.in_use;
}

int ops_arena_reserve(ops_arena *a, size_t bytes, sd_error *err) {
    ops_mark m = ops_arena_mark(a);
    if (!ops_arena_alloc(a, bytes, err)) return err ? err->code : SD_ENOMEM;
    ops_arena_release(a, m);
    return 0;
}

void ops_arena_drop(ops_arena *a) {
    size_t block = a->block_size;
    ops_arena_free(a);
    ops_arena_init(a, block);
}

void ops_arena_free(ops_arena *a) {
    for (int i = 0; i < a->n_blocks; i++) free(a->blocks[i].base);
    free(a->blocks);
    memset(a, 0, sizeof *a);
}
