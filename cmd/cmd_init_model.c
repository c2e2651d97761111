/* sdrender init-model --demo DIR | --tiny DIR | --random-sd15 DIR: the models that ship with sdrender (no download). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "demomodel.h"
#include "tinymodel.h"

static void usage(FILE *fp) {
    fprintf(fp, "usage: sdrender init-model (--demo DIR | --tiny DIR | --random-sd15 DIR)\n\n"
                "Writes a Stable Diffusion 1.x-architecture model into DIR in the diffusers folder layout.\n"
                "Nothing is downloaded; point -m at DIR like at any other model.\n\n"
                "  --demo DIR     the demo model (7 M parameters, fp16, 64x64 pixels): trained from scratch by\n"
                "                 scripts/train-demo-model.py on `sdrender shapes` pictures; it draws prompts of\n"
                "                 the form \"a [small |large ]COLOUR SHAPE[ at the POSITION] on a COLOUR\n"
                "                 background\" (colours red green blue yellow white black; shapes circle square\n"
                "                 triangle; positions top left, top right, bottom left, bottom right, center).\n"
                "                 Render it at -W 64 -H 64 (8x8 latents); `make demo` uses it.\n"
                "  --tiny DIR     a small random-weight model (3 M parameters) with a vocabulary of sdrender's\n"
                "                 own: its images are structured noise, for trying commands on any prompt\n"
                "  --random-sd15 DIR  SD 1.5's full architecture (1.07 B parameters, 2.1 GB of fp16 files) with\n"
                "                 random weights and the tiny model's vocabulary: to time and measure generate,\n"
                "                 run and bench -m at full size without a checkpoint (images are noise)\n"
                "  -h, --help     this text\n\n"
                "Model files already in DIR are replaced. For real images of anything, use a real SD 1.x/2.x/XL\n"
                "checkpoint (a diffusers folder or a .safetensors/.ckpt file).\n");
}

int cmd_init_model(int argc, char **argv) {
    static const struct option longopts[] = {{"tiny", required_argument, 0, 't'},
                                             {"demo", required_argument, 0, 'd'},
                                             {"random-sd15", required_argument, 0, 'r'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *tiny = NULL, *demo = NULL, *full = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 't': tiny = optarg; break;
        case 'd': demo = optarg; break;
        case 'r': full = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) return cli_usage_error("init-model: unexpected argument '%s'", argv[optind]);
    if (!!tiny + !!demo + !!full != 1)
        return cli_usage_error("init-model: give one of --demo DIR, --tiny DIR or --random-sd15 DIR");
    sd_error err = {0};
    if (demo) {
        if (sd_demo_model_write(demo, &err) < 0) return cli_fail(&err);
        fprintf(stderr, "sdrender: wrote the demo model to %s (prompts like \"a small red circle at the top left on "
                        "a blue background\", 64x64)\n", demo);
        return 0;
    }
    if (full) {
        fprintf(stderr, "sdrender: writing SD 1.5's architecture with random weights (2.1 GB) to %s ...\n", full);
        if (sd_random_model_write(full, SD_RANDOM_SD15, &err) < 0) return cli_fail(&err);
        fprintf(stderr, "sdrender: wrote a random-weight SD 1.5 model to %s (its images are noise)\n", full);
        return 0;
    }
    if (sd_tiny_model_write(tiny, &err) < 0) return cli_fail(&err);
    fprintf(stderr, "sdrender: wrote a tiny random-weight SD 1.x model to %s (its images are noise)\n", tiny);
    return 0;
}
