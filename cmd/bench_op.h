/*
 * bench_op.h - `sdrender bench --op KIND:SHAPE`: one kernel timed alone (bench_op.c).
 */
#ifndef SD_BENCH_OP_H
#define SD_BENCH_OP_H

/*
 * Times the kernel spec names (conv:C,S[,B[,K]], linear:M,K,N[,E], attention:B,H,D,NQ[,NKV]) on ops_get_threads()
 * threads: the best of `steps` calls after a warm-up, in fp32 (prec 0), bf16 (1) or both (2); prints one line
 * per precision and writes json_path when given. Returns the exit status (2 for a bad spec).
 */
int bench_op_run(const char *spec, int steps, int prec, const char *json_path);

struct ops_comm;
/*
 * allreduce:N on a tensor-parallel group's communicator (bench --tp K under mpirun): the slowest rank's mean
 * time per all-reduce of N floats finished as a transformer layer's (bias and residual), over `steps` calls.
 * Collective; rank 0 prints and writes json_path. Returns the exit status (2 for a bad spec).
 */
int bench_op_allreduce(const char *spec, const struct ops_comm *c, int steps, const char *json_path);

#endif
