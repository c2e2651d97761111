/* ops_profile.c - where a forward pass spends its time, per kind of kernel (see ops_prof.h). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ops.h"
#include "ops_prof.h"

static const char *kind_names[PROF_KINDS] = {
    "linear", "matmul", "conv (kxk)", "conv (1x1)", "  weight widening", "attention",
    "groupnorm", "layernorm", "element-wise", "layout", "communication",
};

static struct {
    long calls;
    double seconds, flops;
} prof[PROF_KINDS];

int ops_prof_on = -1; /* -1: not decided yet (read SDRENDER_PROFILE on first use) */

double prof_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void prof_add(int kind, double seconds, double flops) {
    if (ops_prof_on < 0) { /* first call with the flag undecided: consult the environment once */
        const char *e = getenv("SDRENDER_PROFILE");
        ops_prof_on = e && *e && *e != '0';
        if (!ops_prof_on) return;
    }
    prof[kind].calls++;
    prof[kind].seconds += seconds;
    prof[kind].flops += flops;
}

void ops_profile_enable(int on) { ops_prof_on = on ? 1 : 0; }

void ops_profile_reset(void) {
    for (int i = 0; i < PROF_KINDS; i++) prof[i].calls = 0, prof[i].seconds = prof[i].flops = 0;
}

void ops_profile_report(FILE *fp) {
    double total = 0;
    for (int i = 0; i < PROF_KINDS; i++)
        if (i != PROF_WIDEN) total += prof[i].seconds;
    fprintf(fp, "  %-18s %8s %9s %6s %9s %9s\n", "kernel", "calls", "seconds", "share", "GFLOP", "GFLOP/s");
    for (int i = 0; i < PROF_KINDS; i++) {
        if (!prof[i].calls) continue;
        fprintf(fp, "  %-18s %8ld %9.3f %5.1f%% %9.1f %9.1f\n", kind_names[i], prof[i].calls, prof[i].seconds,
                total > 0 ? 100 * prof[i].seconds / total : 0, prof[i].flops / 1e9,
                prof[i].seconds > 0 ? prof[i].flops / prof[i].seconds / 1e9 : 0);
    }
    fprintf(fp, "  %-18s %8s %9.3f\n", "total", "", total);
}
