/* The subcommands of sdrender; each lives in cmd/cmd_<name>.c. */
#ifndef SD_COMMANDS_H
#define SD_COMMANDS_H

#define SDRENDER_VERSION "0.1.0"

/* Each takes argv[0] = the command name and returns the process exit status. */
int cmd_info(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_upscale(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_init_model(int argc, char **argv);
int cmd_enqueue(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_requeue(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_metrics(int argc, char **argv);
int cmd_shapes(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_grid(int argc, char **argv);

#endif
