/* The subcommands of sdrender; each lives in cmd/cmd_<name>.c. */
#ifndef SD_COMMANDS_H
#define SD_COMMANDS_H

#define SDRENDER_VERSION "0.1.0"

typedef struct sd_command {
    const char *name;
    int (*fn)(int argc, char **argv); /* argv[0] is the command name; returns the exit status */
    const char *help;
} sd_command;

int cmd_info(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_init_model(int argc, char **argv);
int cmd_enqueue(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_metrics(int argc, char **argv);

#endif
