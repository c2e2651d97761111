/* sdrender command line: dispatches to one function per subcommand (cmd/cmd_*.c). */
#include <stdio.h>
#include <string.h>

#include "commands.h"

static int cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("sdrender %s\n", SDRENDER_VERSION);
    return 0;
}

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv); /* argv[0] is the command name; returns the exit status */
    const char *help;
} command;

static const command commands[] = {
    {"generate", cmd_generate, "render images from a prompt (txt2img, img2img, inpainting; DDPM without one)"},
    {"upscale", cmd_upscale, "upscale a picture 4x with an x4 upscaler model"},
    {"enqueue", cmd_enqueue, "add prompt files (.txt, .jsonl, .csv) to a job database"},
    {"run", cmd_run, "render a job database's pending jobs (under mpirun: master + workers)"},
    {"status", cmd_status, "show a job database's progress, rate, ETA and last errors"},
    {"requeue", cmd_requeue, "put a job database's failed jobs back to pending"},
    {"stats", cmd_stats, "FID reference statistics and features of a folder of images (.npz)"},
    {"metrics", cmd_metrics, "FID, precision/recall/density/coverage and CLIP score of generated images"},
    {"report", cmd_report, "a static HTML report of a job database: images, metrics and plots, failed jobs"},
    {"grid", cmd_grid, "a labelled grid picture of a job database's images (rows x columns of settings)"},
    {"init-model", cmd_init_model, "write a tiny random-weight model for trying things out"},
    {"info", cmd_info, "describe a model: variant, architecture, parameters, dtypes"},
    {"shapes", cmd_shapes, "the demo model's procedural pictures and captions (a real set for scores)"},
    {"tokenize", cmd_tokenize, "print the 77 CLIP token ids of a prompt"},
    {"bench", cmd_bench, "time the U-Net, VAE and text encoder of SD 1.5 (random weights)"},
    {"version", cmd_version, "print the version"},
};

static void usage(FILE *fp) {
    fprintf(fp, "usage: sdrender COMMAND [OPTIONS]\n\nStable Diffusion inference in C.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(fp, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(fp, "\n'sdrender COMMAND --help' describes a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("sdrender %s\n", SDRENDER_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "sdrender: unknown command '%s'; run 'sdrender --help' for the list\n", argv[1]);
    return 2;
}
