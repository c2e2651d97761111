/*
 * ops_prof.h - per-kernel time accounting inside core/ops_*.c (internal).
 *
 *     double t0 = prof_begin();
 *     ... the kernel ...
 *     prof_end(PROF_CONV, t0, flops);
 *
 * prof_begin returns 0 (and prof_end does nothing) unless profiling is on
 * (ops_profile_enable or SDRENDER_PROFILE=1), so the cost when off is one load.
 */
#ifndef SD_OPS_PROF_H
#define SD_OPS_PROF_H

enum {
    PROF_LINEAR,
    PROF_MATMUL,
    PROF_CONV3,      /* convolutions with kernels larger than 1x1 */
    PROF_CONV1,      /* 1x1 convolutions */
    PROF_WIDEN,      /* 16-bit weights widened to float32 (inside the GEMM kernels' time) */
    PROF_ATTENTION,
    PROF_GROUPNORM,
    PROF_LAYERNORM,
    PROF_ELTWISE,    /* activations, softmax, adds */
    PROF_LAYOUT,     /* transposes, concatenation, upsampling */
    PROF_COMM,       /* inside a tensor-parallel group's collectives: transfer and waiting for partners */
    PROF_KINDS
};

extern int ops_prof_on;
double prof_now(void);
void prof_add(int kind, double seconds, double flops);

static inline double prof_begin(void) { return ops_prof_on ? prof_now() : 0.0; }
static inline void prof_end(int kind, double t0, double flops) {
    if (ops_prof_on) prof_add(kind, prof_now() - t0, flops);
}

#endif
