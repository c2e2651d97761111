/* sdrender init-model --tiny DIR: a small random-weight SD 1.x model, for demos without a checkpoint. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "tinymodel.h"

static void usage(FILE *fp) {
    fprintf(fp, "usage: sdrender init-model --tiny DIR\n\n"
                "Writes a small Stable Diffusion 1.x-architecture model into DIR in the diffusers folder layout:\n"
                "deterministic random weights (3 M parameters, ~12 MB) and a byte-level BPE vocabulary of\n"
                "sdrender's own. Nothing is downloaded. Its images are structured noise, not pictures: it is for\n"
                "trying the commands (generate, enqueue, run, metrics) on a machine without a real checkpoint.\n"
                "Point -m at a real SD 1.x/2.x checkpoint (a diffusers folder or a .safetensors/.ckpt file) for\n"
                "real images.\n\n"
                "  --tiny DIR     the folder to write (created; model files in it are replaced)\n"
                "  -h, --help     this text\n");
}

int cmd_init_model(int argc, char **argv) {
    static const struct option longopts[] = {{"tiny", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *dir = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 't': dir = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) return cli_usage_error("init-model: unexpected argument '%s'", argv[optind]);
    if (!dir) return cli_usage_error("init-model: --tiny DIR is required (the only kind of model it makes)");
    sd_error err = {0};
    if (sd_tiny_model_write(dir, &err) < 0) return cli_fail(&err);
    fprintf(stderr, "sdrender: wrote a tiny random-weight SD 1.x model to %s (its images are noise)\n", dir);
    return 0;
}
