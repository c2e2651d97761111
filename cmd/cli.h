/* Helpers shared by the subcommands: strict number parsing, one-line errors, threads. */
#ifndef SD_CLI_H
#define SD_CLI_H

#include "err.h"

/* Prints "sdrender: <msg>" on stderr and returns the exit status for e->code. */
int cli_fail(const sd_error *e);
/* Prints "sdrender: <formatted>" and returns 2 (bad usage or input). */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Strict parsers: the whole string must be a number within [min, max]; else an error naming flag. */
int cli_parse_long(const char *flag, const char *s, long min, long max, long *out, sd_error *e);
int cli_parse_double(const char *flag, const char *s, double min, double max, double *out, sd_error *e);

/* Value of option `name` (or `alias`, may be NULL) at argv[*i], given as "--name value" or
 * "--name=value"; advances *i past a separate value. NULL if argv[*i] is another option; then
 * *missing is set when it is this option but the value is missing. */
const char *cli_option_value(int argc, char **argv, int *i, const char *name, const char *alias, int *missing);

/* Monotonic seconds (for durations). */
double cli_now(void);

/* Threads for one of local_ranks ranks on this node: its CPU affinity mask, shared out when every rank sees
 * every core (no binding); at least 1. */
int cli_threads_for(int local_ranks);

#endif
