/* sdrender upscale: x4 super-resolution of a picture with an upscaler model (StableDiffusionUpscalePipeline). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "ops.h"
#include "pngio.h"
#include "progress.h"
#include "render.h"

#define DEFAULT_MAX_PIXELS (1024L * 1024L)

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: sdrender upscale -m MODEL -i LOW.png -p PROMPT -o OUT.png [options]\n\n"
            "Upscales a picture 4x with an x4 upscaler (e.g. stabilityai/stable-diffusion-x4-upscaler); the same\n"
            "picture, prompt, seed and settings give the same PNG as diffusers' StableDiffusionUpscalePipeline on CPU.\n\n"
            "  -m, --model PATH       upscaler folder (model_index.json: StableDiffusionUpscalePipeline)\n"
            "  -i, --input PNG        the low-resolution picture (the output is 4x its width and height)\n"
            "  -p, --prompt TEXT      what the picture shows\n"
            "  -n, --negative TEXT    negative prompt (default empty)\n"
            "  -o, --output FILE      PNG to write\n"
            "      --noise-level N    noise added to the picture, 0..max_noise_level (350) (default 20)\n"
            "      --steps N          inference steps (default 20)\n"
            "      --cfg-scale G      classifier-free guidance scale (default 9; <= 1 disables it)\n"
            "      --sampler NAME     %s\n"
            "                         (default: the model's scheduler, ddim)\n"
            "      --eta E            DDIM eta (default 0)\n"
            "      --seed S           seed (default -1: random; the seed used is printed and stored)\n"
            "      --rng cpu|cuda     noise source: torch's CPU generator (default) or CUDA's (Philox, A1111 NV)\n"
            "      --max-pixels N     refuse inputs of more than N pixels, or WxH (default 1024x1024)\n"
            "      --threads T        CPU threads (default: all cores)\n"
            "  -q, --quiet            no progress output\n"
            "  -h, --help             this text\n",
            sampler_kind_list());
}

/* --max-pixels: a count or WxH. */
static int parse_max_pixels(const char *s, long *out, sd_error *err) {
    long w, h;
    char tail;
    if (sscanf(s, "%ldx%ld%c", &w, &h, &tail) == 2 && w > 0 && h > 0 && w <= 65536 && h <= 65536) {
        *out = w * h;
        return 0;
    }
    return cli_parse_long("--max-pixels", s, 1, 1L << 32, out, err);
}

int cmd_upscale(int argc, char **argv) {
    enum { O_STEPS = 256, O_CFG, O_SAMPLER, O_ETA, O_SEED, O_NOISE, O_MAXPIX, O_THREADS, O_RNG };
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},        {"input", required_argument, 0, 'i'},
        {"prompt", required_argument, 0, 'p'},       {"negative", required_argument, 0, 'n'},
        {"output", required_argument, 0, 'o'},       {"steps", required_argument, 0, O_STEPS},
        {"cfg-scale", required_argument, 0, O_CFG},  {"sampler", required_argument, 0, O_SAMPLER},
        {"eta", required_argument, 0, O_ETA},        {"seed", required_argument, 0, O_SEED},
        {"noise-level", required_argument, 0, O_NOISE}, {"max-pixels", required_argument, 0, O_MAXPIX},
        {"threads", required_argument, 0, O_THREADS}, {"rng", required_argument, 0, O_RNG},
        {"quiet", no_argument, 0, 'q'},              {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    sd_settings s;
    sd_settings_default(&s);
    s.prompt = NULL;
    s.upscale = 1;
    const char *model = NULL, *out = NULL;
    long steps = 20, seed = -1, noise = 20, max_pixels = DEFAULT_MAX_PIXELS, threads = 0;
    double cfg = 9.0, eta = 0;
    int have_sampler = 0, sampler, rng, quiet = 0, c;
    sd_error err = {0};
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:i:p:n:o:qh", longopts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'm': model = optarg; break;
        case 'i': s.init_image = optarg; break;
        case 'p': s.prompt = optarg; break;
        case 'n': s.negative = optarg; break;
        case 'o': out = optarg; break;
        case 'q': quiet = 1; break;
        case O_STEPS: rc = cli_parse_long("--steps", optarg, 1, 1000, &steps, &err); break;
        case O_SEED: rc = cli_parse_long("--seed", optarg, -1, SD_SEED_MAX, &seed, &err); break;
        case O_NOISE: rc = cli_parse_long("--noise-level", optarg, 0, SD_MAX_NOISE_LEVEL, &noise, &err); break;
        case O_MAXPIX: rc = parse_max_pixels(optarg, &max_pixels, &err); break;
        case O_THREADS: rc = cli_parse_long("--threads", optarg, 0, 4096, &threads, &err); break;
        case O_CFG: rc = cli_parse_double("--cfg-scale", optarg, 0, 100, &cfg, &err); break;
        case O_ETA: rc = cli_parse_double("--eta", optarg, 0, 1, &eta, &err); break;
        case O_RNG:
            if (cli_parse_rng(optarg, &rng)) return 2;
            s.rng = (sd_rng_kind)rng;
            break;
        case O_SAMPLER:
            if (cli_parse_sampler(optarg, &sampler)) return 2;
            s.sampler = (sampler_kind)sampler;
            have_sampler = 1;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (rc < 0) return cli_fail(&err);
    }
    if (optind < argc) return cli_usage_error("upscale: unexpected argument '%s'", argv[optind]);
    if (!model) return cli_usage_error("upscale: -m MODEL is required (see 'sdrender upscale --help')");
    if (!s.init_image) return cli_usage_error("upscale: -i LOW.png is required");
    if (!s.prompt) return cli_usage_error("upscale: -p PROMPT is required");
    if (!out) return cli_usage_error("upscale: -o OUT.png is required");

    /* the input: a picture, not larger than --max-pixels */
    uint8_t *tmp = NULL;
    int iw, ih;
    if (sd_png_read_rgb(s.init_image, &tmp, &iw, &ih, &err) < 0) {
        err.code = SD_EINPUT;
        return cli_fail(&err);
    }
    free(tmp);
    if ((long)iw * ih > max_pixels)
        return cli_usage_error("upscale: %s is %dx%d = %ld pixels, more than --max-pixels %ld; pass a smaller picture "
                               "or raise --max-pixels",
                               s.init_image, iw, ih, (long)iw * ih, max_pixels);

    ops_set_threads((int)threads);
    sd_model m;
    if (sd_model_open(&m, model, NULL, &err) < 0) return cli_fail(&err);
    if (!m.upscaler) {
        int code = cli_usage_error("upscale: %s is not an upscaler (model_index.json names %s, not "
                                   "StableDiffusionUpscalePipeline)", model, m.pipeline_class);
        sd_model_close(&m);
        return code;
    }
    int f = vae_scale_factor(&m.vae);
    if (!have_sampler) s.sampler = cli_model_sampler(&m);
    s.width = iw * f;
    s.height = ih * f;
    s.steps = (int)steps;
    s.cfg_scale = (float)cfg;
    s.eta = (float)eta;
    s.noise_level = (int)noise;
    if (!s.negative) s.negative = "";
    int random = seed < 0;
    s.seed = random ? cli_random_seed() : seed;
    sd_pipeline p;
    sd_render_id id;
    int rc = cli_pipeline_for(&p, &m, &s, &err);
    if (rc < 0) {
        sd_model_close(&m);
        return cli_fail(&err);
    }
    if (random) fprintf(stderr, "sdrender: random seed %lld\n", (long long)s.seed);
    rc = sd_render_identify(&m, &id, &err);
    int total = rc == 0 ? sd_pipeline_count_evals(&p, &s, &err) : rc;
    if (total < 0) rc = total;
    if (rc == 0) {
        progress_bar pr;
        progress_start(&pr, "upscale", "steps", total, quiet);
        double t0 = cli_now();
        rc = sd_render_png(&p, &s, &id, out, progress_step, &pr, NULL, &err);
        progress_end(&pr);
        if (rc == 0 && !quiet)
            fprintf(stderr, "sdrender: wrote %s (%dx%d from %dx%d, seed %lld, %.1f s)\n", out, s.width, s.height, iw, ih,
                    (long long)s.seed, cli_now() - t0);
    }
    sd_pipeline_free(&p);
    sd_model_close(&m);
    return rc < 0 ? cli_fail(&err) : 0;
}
