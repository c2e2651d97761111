/* Helpers shared by the subcommands: strict number parsing, one-line errors, threads. */
#ifndef SD_CLI_H
#define SD_CLI_H

#include <getopt.h>
#include <stdio.h>

#include "err.h"

struct sd_model;
/* The sampler the model's scheduler config names (its _class_name), else pndm. */
int cli_model_sampler(const struct sd_model *m);
/* A random A1111-sized seed (0 .. 2^32 - 1) from /dev/urandom. */
long long cli_random_seed(void);

/* --sampler NAME / --rng cpu|cuda into *out (an int holding a sampler_kind / sd_rng_kind); on an unknown
 * name prints the usage error and returns 2, else 0. */
int cli_parse_sampler(const char *name, int *out);
int cli_parse_rng(const char *name, int *out);

struct sd_pipeline;
struct sd_settings;
/* Checks s against m (sizes, what the model's kind allows) and loads m's pipeline into p; on failure p
 * is freed and the error is in err. */
int cli_pipeline_for(struct sd_pipeline *p, const struct sd_model *m, const struct sd_settings *s, sd_error *err);

/* Prints "sdrender: <msg>" on stderr and returns the exit status for e->code. */
int cli_fail(const sd_error *e);
/* Prints "sdrender: <formatted>" and returns 2 (bad usage or input). */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Strict parsers: the whole string must be a number within [min, max]; else an error naming flag. */
int cli_parse_long(const char *flag, const char *s, long min, long max, long *out, sd_error *e);
int cli_parse_double(const char *flag, const char *s, double min, double max, double *out, sd_error *e);

/* Two integers in [min, max] joined by sep ("1024x768" with 'x', "16,32" with ','); else an error naming flag. */
int cli_parse_pair(const char *flag, const char *s, char sep, long min, long max, long *a, long *b, sd_error *e);

/* --precision: "fp32" -> 0, "bf16" -> 1, and "both" -> 2 when allow_both; else an error. */
int cli_parse_precision(const char *s, int allow_both, int *out, sd_error *e);
/* 1 when GEMMs can run in bf16 here; else prints why on stderr (fp32 is used instead) and returns 0. */
int cli_bf16_usable(void);

/* Value of option `name` (or `alias`, may be NULL) at argv[*i], given as "--name value" or
 * "--name=value"; advances *i past a separate value. NULL if argv[*i] is another option; then
 * *missing is set when it is this option but the value is missing. */
const char *cli_option_value(int argc, char **argv, int *i, const char *name, const char *alias, int *missing);

/*
 * The options `run`, `stats` and `metrics` share, read by cli_parse_options (each command keeps
 * its own help text for them):
 *   --inception W   Inception weights                     (stats, metrics)
 *   --batch N       images per forward pass, 1..256; 8    (stats, metrics)
 *   --threads T     threads per rank, 0..4096; 0: the node's cores / its ranks
 *   -q, --quiet     no progress lines
 *   -h, --help      the command's usage on stdout, exit 0
 */
typedef struct cli_shared_opts {
    const char *inception;
    long batch;
    long threads;
    int quiet;
} cli_shared_opts;

/* getopt codes of the shared long options; a command numbers its own from CLI_OPT_OWN. */
enum { CLI_OPT_INCEPTION = 256, CLI_OPT_BATCH, CLI_OPT_THREADS, CLI_OPT_OWN };

/* What cli_parse_options needs to know of a command's own options. */
typedef struct cli_command_opts {
    const char *name;              /* "run", for "run: unexpected argument 'x'" */
    const char *shortopts;         /* its own short options, e.g. "m:" (-q and -h are added) */
    const struct option *longopts; /* its own long options, ending with a zero entry */
    int eval;                      /* also takes --inception and --batch */
    /* Takes one of its own options (opt: the getopt code, arg: the value or NULL); 0 or an error in err. */
    int (*take)(void *ctx, int opt, const char *arg, sd_error *err);
    void (*usage)(FILE *fp);
} cli_command_opts;

/*
 * Reads argv (argv[0]: the command name) with getopt_long: the command's own options through
 * cmd->take(ctx, ...), the shared ones into *shared (first set to their defaults). Returns -1 when
 * the command goes on, else its exit status: 0 after --help; 2 after an unknown option or a missing
 * value (getopt's message and the usage on stderr) or an argument that is not an option; the status
 * of cli_fail for a bad value.
 */
int cli_parse_options(int argc, char **argv, const cli_command_opts *cmd, void *ctx, cli_shared_opts *shared);

/* Monotonic seconds (for durations). */
double cli_now(void);

/* Threads for one of local_ranks ranks on this node: its CPU affinity mask, shared out when every rank sees
 * every core (no binding); at least 1. */
int cli_threads_for(int local_ranks);

#endif
