/* sdrender generate: one prompt to PNG files, reproducing diffusers for the same seed. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "ops.h"
#include "pngio.h"
#include "progress.h"
#include "lora_set.h"
#include "render.h"
#include "tp_group.h"

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: sdrender generate -m MODEL -p PROMPT -o OUT.png [options]\n"
            "       sdrender generate -m DDPM_MODEL -o OUT.png [options]   (unconditional: no prompt)\n\n"
            "Generates images; the same prompt, seed and settings give the same PNG as diffusers on CPU.\n\n"
            "  -m, --model PATH       diffusers folder or single .safetensors/.ckpt checkpoint\n"
            "  -p, --prompt TEXT      what to draw (not for unconditional models such as a pixel-space DDPM)\n"
            "  -n, --negative TEXT    negative prompt (default none: SD 1.x/2.x encode \"\", SDXL uses zeros)\n"
            "  -o, --output FILE      PNG to write; with --batch-count N > 1, FILE-1.png .. FILE-N.png\n"
            "      --steps N          inference steps (default 20)\n"
            "      --cfg-scale G      classifier-free guidance scale (default 7.5; <= 1 disables it)\n"
            "      --sampler NAME     %s\n"
            "                         (default: the model's scheduler, else pndm)\n"
            "      --karras           Karras sigmas (euler, lms, heun, dpm++2m, unipc)\n"
            "      --eta E            DDIM eta (default 0)\n"
            "      --seed S           seed (default -1: random; the seed used is printed and stored)\n"
            "      --rng cpu|cuda     noise source: torch's CPU generator (default, diffusers on CPU) or the\n"
            "                         CUDA one (Philox; seeds chosen on a GPU, A1111's NV; PNG: RNG: NV)\n"
            "  -W, --width W          image width, a multiple of the VAE's scale factor (8 for SD; default:\n"
            "                         init image, else the model's size)\n"
            "  -H, --height H         image height, the same multiple\n"
            "      --clip-skip K      1 = last text-encoder layer, 2 = penultimate (A1111 numbering; default 1)\n"
            "      --prompt-syntax S  plain (default: as diffusers, 77 tokens) or a1111: (word:1.3), [word],\n"
            "                         BREAK, prompts of any length, <lora:NAME:MULTIPLIER> tags\n"
            "      --lora FILE[:M]    merge a LoRA (kohya or diffusers/PEFT .safetensors) with multiplier M\n"
            "                         (default 1); repeatable\n"
            "      --lora-dir DIR     where <lora:NAME:M> tags find NAME.safetensors\n"
            "  -i, --init-image PNG   img2img / inpainting input picture\n"
            "      --strength S       img2img strength in (0, 1] (default 0.8; inpainting 1)\n"
            "      --mask PNG         inpainting mask, white = repaint (needs a 9-channel inpainting model)\n"
            "      --batch-count N    N images with seeds S, S+1, ... (default 1)\n"
            "      --threads T        CPU threads (default: all cores)\n"
            "      --precision P      fp32 (default) or bf16: linear, convolution and attention products on\n"
            "                         bf16 inputs with fp32 sums (needs AVX512_BF16; test images\n"
            "                         41-54 dB PSNR from diffusers' fp32)\n"
            "      --tp K             render each image with the K ranks of this MPI job together\n"
            "                         (mpirun -np K sdrender generate --tp K ...; see README, Tensor parallelism)\n"
            "      --parallel S       how the K ranks share the U-Net: auto (default: cfg when guidance is on\n"
            "                         and K is even, else tensor), cfg (one CFG half per K/2 ranks; images\n"
            "                         byte-identical to one rank) or tensor (every layer split K ways;\n"
            "                         within 1 level per pixel of one rank)\n"
            "      --original-size WxH  SDXL size conditioning: the original image size (default: the image size)\n"
            "      --crop-top-left T,L  SDXL: crop offset, top then left (default 0,0)\n"
            "      --target-size WxH    SDXL: the target size (default: the image size)\n"
            "      --tokenizer P      tokenizer folder or bpe_simple_vocab_16e6.txt.gz (single files)\n"
            "      --config YAML|DIR  a single file's LDM config (default: same base name + .yaml), or a\n"
            "                         diffusers folder whose config.json files give the architecture\n"
            "  -q, --quiet            no progress output\n"
            "  -h, --help             this text\n",
            sampler_kind_list());
}

/* FILE.png -> FILE-i.png (i 1-based) when n > 1. */
static char *output_name(const char *out, int i, int n) {
    size_t l = strlen(out);
    char *p = malloc(l + 32);
    if (!p) return NULL;
    if (n == 1) {
        memcpy(p, out, l + 1);
        return p;
    }
    const char *dot = strrchr(out, '.'), *slash = strrchr(out, '/');
    size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - out) : l;
    snprintf(p, l + 32, "%.*s-%d%s", (int)stem, out, i + 1, out + stem);
    return p;
}

/* What the command line asked for, parsed. */
typedef struct gen_args {
    const char *model, *out;
    sd_model_opts mopts;
    sd_settings s;          /* steps, guidance, ... set; size, sampler and seed filled in later */
    long seed, width, height, batch;
    int have_sampler, quiet, bf16;
    const sd_lora_set *loras; /* merged into the model before rendering */
} gen_args;

/*
 * Opens the model, fills in the size, sampler and seed, and renders the batch. With a group (--tp), every
 * rank runs this: they agree after loading (a rank that cannot load stops all), share the leader's random
 * seed, and only the leader reports and writes files. Returns the exit status.
 */
static int generate_images(gen_args *a, const sd_group *grp) {
    sd_settings s = a->s;
    long width = a->width, height = a->height, seed = a->seed;
    int leader = !grp || grp->rank == 0, quiet = a->quiet || !leader, rc = 0;
    sd_error err = {0};
    sd_model m;
    sd_pipeline p;
    sd_render_id id;
    int have_model = 0, have_pipe = 0;
    if ((rc = sd_model_open(&m, a->model, &a->mopts, &err)) == 0) have_model = 1;
    int scale = have_model ? sd_model_size_factor(&m) : 8;
    /* a text-conditioned model needs a prompt, an unconditional one (pixel-space DDPM) takes none */
    if (rc == 0 && !s.prompt && (m.parts & SD_PART_TEXT_ENCODER)) rc = sd_err(&err, SD_EINPUT, "generate: -p PROMPT is required");
    if (rc == 0 && s.prompt && !(m.parts & SD_PART_TEXT_ENCODER))
        rc = sd_err(&err, SD_EINPUT, "generate: %s is an unconditional model (no text encoder): it takes no prompt; "
                    "leave out -p", a->model);
    if (!s.prompt) s.prompt = "";
    if (rc == 0 && ((width && width % scale) || (height && height % scale)))
        rc = sd_err(&err, SD_EINPUT, "generate: size %ldx%ld: width and height must each be a multiple of %d", width,
                    height, scale);
    if (rc == 0 && !a->have_sampler) s.sampler = (sampler_kind)cli_model_sampler(&m);
    /* size: -W/-H, else the init image's, else the model's native size */
    if (rc == 0 && s.init_image && (!width || !height)) {
        uint8_t *tmp = NULL;
        int iw, ih;
        if ((rc = sd_png_read_rgb(s.init_image, &tmp, &iw, &ih, &err)) == 0) {
            free(tmp);
            if (!width) width = iw;
            if (!height) height = ih;
        }
    }
    if (rc == 0) {
        int native = (m.parts & SD_PART_VAE) ? m.unet.sample_size * scale : m.unet.sample_size;
        s.width = (int)(width ? width : native);
        s.height = (int)(height ? height : native);
    }
    int random = seed < 0;
    if (random) seed = cli_random_seed();
    s.seed = seed;
    if (rc == 0) rc = sd_settings_check_for(&s, scale, &err);
    if (rc == 0 && (rc = sd_pipeline_load_group(&p, &m, grp, &err)) == 0) have_pipe = 1;
    if (rc == 0) rc = sd_pipeline_check(&p, &s, &err);
    sd_lora_ctx lc;
    char *lora_hashes = NULL;
    if (have_model) sd_lora_ctx_init(&lc, &m);
    if (rc == 0 && a->loras->n && p.unet.shards.n)
        rc = sd_err(&err, SD_EUNSUPPORTED, "generate: LoRAs cannot be merged into a tensor-parallel (sharded) U-Net "
                    "yet; use --parallel cfg with --tp 2, or no --tp");
    if (rc == 0) rc = sd_lora_ctx_apply(&lc, a->loras, &lora_hashes, &err);
    s.lora_hashes = lora_hashes;
    if (rc == 0) rc = sd_render_identify(&m, &id, &err);
    /* a group goes on only if every rank got this far; then every rank uses the leader's seed */
    rc = sd_group_agree(grp, rc, &err);
    int hi = (int)(seed >> 16), lo = (int)(seed & 0xffff);
    if (rc == 0 && grp && (rc = sd_group_bcast_int(grp, &hi, &err)) == 0) rc = sd_group_bcast_int(grp, &lo, &err);
    seed = ((long)hi << 16) | lo;
    if (rc == 0 && random && leader) fprintf(stderr, "sdrender: random seed %ld\n", seed);
    s.bf16 = rc == 0 && a->bf16 && cli_bf16_usable(); /* sd_render_png sets the pipeline's precision */
    for (long i = 0; rc == 0 && i < a->batch; i++) {
        s.seed = seed + i;
        char *path = output_name(a->out, (int)i, (int)a->batch);
        if (!path) {
            rc = sd_err(&err, SD_ENOMEM, "out of memory");
            break;
        }
        progress_bar pr;
        char label[64];
        snprintf(label, sizeof label, a->batch > 1 ? "image %ld/%ld" : "generate", i + 1, a->batch);
        int total = sd_pipeline_count_evals(&p, &s, &err);
        if (total < 0) {
            rc = total;
            free(path);
            break;
        }
        progress_start(&pr, label, "steps", total, quiet);
        char sha[65];
        double t0 = cli_now();
        rc = sd_render_png(&p, &s, &id, path, progress_step, &pr, sha, &err);
        rc = sd_group_agree(grp, rc, &err); /* e.g. the leader could not write: the group stops together */
        progress_end(&pr);
        if (rc == 0 && !quiet)
            fprintf(stderr, "sdrender: wrote %s (%dx%d, seed %lld, %.1f s)\n", path, s.width, s.height,
                    (long long)s.seed, cli_now() - t0);
        free(path);
    }
    if (have_model) sd_lora_ctx_free(&lc);
    free(lora_hashes);
    if (have_pipe) sd_pipeline_free(&p);
    if (have_model) sd_model_close(&m);
    if (rc < 0 && !leader) return sd_err_exit_code(rc); /* the leader prints the group's error */
    return rc < 0 ? cli_fail(&err) : 0;
}

int cmd_generate(int argc, char **argv) {
    enum { O_STEPS = 256, O_CFG, O_SAMPLER, O_KARRAS, O_ETA, O_SEED, O_CLIPSKIP, O_STRENGTH, O_MASK, O_BATCH, O_THREADS,
           O_TOK, O_CONFIG, O_PRECISION, O_TP, O_PARALLEL, O_ORIG, O_CROP, O_TARGET, O_RNG, O_SYNTAX, O_LORA,
           O_LORA_DIR };
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},      {"prompt", required_argument, 0, 'p'},
        {"negative", required_argument, 0, 'n'},   {"output", required_argument, 0, 'o'},
        {"steps", required_argument, 0, O_STEPS},  {"cfg-scale", required_argument, 0, O_CFG},
        {"sampler", required_argument, 0, O_SAMPLER}, {"karras", no_argument, 0, O_KARRAS},
        {"eta", required_argument, 0, O_ETA},      {"seed", required_argument, 0, O_SEED},
        {"width", required_argument, 0, 'W'},      {"height", required_argument, 0, 'H'},
        {"clip-skip", required_argument, 0, O_CLIPSKIP}, {"init-image", required_argument, 0, 'i'},
        {"strength", required_argument, 0, O_STRENGTH}, {"mask", required_argument, 0, O_MASK},
        {"batch-count", required_argument, 0, O_BATCH}, {"threads", required_argument, 0, O_THREADS},
        {"tokenizer", required_argument, 0, O_TOK}, {"config", required_argument, 0, O_CONFIG},
        {"precision", required_argument, 0, O_PRECISION},
        {"tp", required_argument, 0, O_TP},        {"parallel", required_argument, 0, O_PARALLEL},
        {"original-size", required_argument, 0, O_ORIG}, {"crop-top-left", required_argument, 0, O_CROP},
        {"target-size", required_argument, 0, O_TARGET},
        {"rng", required_argument, 0, O_RNG},
        {"prompt-syntax", required_argument, 0, O_SYNTAX}, {"lora", required_argument, 0, O_LORA},
        {"lora-dir", required_argument, 0, O_LORA_DIR},
        {"quiet", no_argument, 0, 'q'},            {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    sd_settings s;
    sd_settings_default(&s);
    const char *model = NULL, *out = NULL;
    sd_model_opts mopts = {0};
    long steps = 20, seed = -1, width = 0, height = 0, clip_skip = 1, batch = 1, threads = 0, tp = 1;
    long cond[6] = {0}; /* original w, h, crop top, left, target w, h */
    sd_parallel parallel = SD_PARALLEL_AUTO;
    double cfg = 7.5, eta = 0, strength = -1;
    int have_sampler = 0, sampler, rng, quiet = 0, bf16 = 0, c;
    const char *lora_dir = NULL;
    char lora_specs[8192] = "";
    sd_error err = {0};
    s.prompt = NULL;
    s.negative = NULL; /* none given (see below) */
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:p:n:o:W:H:i:qh", longopts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'm': model = optarg; break;
        case 'p': s.prompt = optarg; break;
        case 'n': s.negative = optarg; break;
        case 'o': out = optarg; break;
        case 'i': s.init_image = optarg; break;
        case O_MASK: s.mask = optarg; break;
        case O_TOK: mopts.tokenizer = optarg; break;
        case O_CONFIG: mopts.config = optarg; break;
        case O_KARRAS: s.karras = 1; break;
        case 'q': quiet = 1; break;
        case O_STEPS: rc = cli_parse_long("--steps", optarg, 1, 1000, &steps, &err); break;
        case O_SEED: rc = cli_parse_long("--seed", optarg, -1, SD_SEED_MAX, &seed, &err); break;
        case 'W': rc = cli_parse_long("--width", optarg, 8, 8192, &width, &err); break;
        case 'H': rc = cli_parse_long("--height", optarg, 8, 8192, &height, &err); break;
        case O_CLIPSKIP: rc = cli_parse_long("--clip-skip", optarg, 1, 12, &clip_skip, &err); break;
        case O_BATCH: rc = cli_parse_long("--batch-count", optarg, 1, 100000, &batch, &err); break;
        case O_THREADS: rc = cli_parse_long("--threads", optarg, 0, 4096, &threads, &err); break;
        case O_PRECISION: rc = cli_parse_precision(optarg, 0, &bf16, &err); break;
        case O_TP: rc = cli_parse_long("--tp", optarg, 1, 1024, &tp, &err); break;
        case O_PARALLEL: rc = sd_parallel_parse(optarg, &parallel, &err); break;
        case O_ORIG: rc = cli_parse_pair("--original-size", optarg, 'x', 1, SD_MAX_COND_SIZE, &cond[0], &cond[1], &err); break;
        case O_CROP: rc = cli_parse_pair("--crop-top-left", optarg, ',', 0, SD_MAX_COND_SIZE, &cond[2], &cond[3], &err); break;
        case O_TARGET: rc = cli_parse_pair("--target-size", optarg, 'x', 1, SD_MAX_COND_SIZE, &cond[4], &cond[5], &err); break;
        case O_CFG: rc = cli_parse_double("--cfg-scale", optarg, 0, 100, &cfg, &err); break;
        case O_ETA: rc = cli_parse_double("--eta", optarg, 0, 1, &eta, &err); break;
        case O_STRENGTH: rc = cli_parse_double("--strength", optarg, 0, 1, &strength, &err); break;
        case O_RNG:
            if (cli_parse_rng(optarg, &rng)) return 2;
            s.rng = (sd_rng_kind)rng;
            break;
        case O_SYNTAX:
            if (sd_prompt_syntax_parse(optarg, &s.prompt_syntax) < 0)
                return cli_usage_error("--prompt-syntax: '%s' is neither plain nor a1111", optarg);
            break;
        case O_LORA_DIR: lora_dir = optarg; break;
        case O_LORA: {
            sd_lora_use u;
            if (sd_lora_use_parse(optarg, &u, &err) < 0) return cli_fail(&err);
            sd_lora_use_free(&u);
            size_t have = strlen(lora_specs);
            if (have + strlen(optarg) + 2 > sizeof lora_specs) return cli_usage_error("--lora: too many LoRAs");
            snprintf(lora_specs + have, sizeof lora_specs - have, "%s%s", have ? "\n" : "", optarg);
            break;
        }
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
    if (optind < argc) return cli_usage_error("generate: unexpected argument '%s'", argv[optind]);
    if (!model) return cli_usage_error("generate: -m MODEL is required (see 'sdrender generate --help')");
    if (!out) return cli_usage_error("generate: -o OUT.png is required");
    if (s.mask && !s.init_image) return cli_usage_error("generate: --mask needs an init image (-i)");
    if (strength >= 0 && !s.init_image) return cli_usage_error("generate: --strength needs an init image (-i)");
    if (strength == 0) return cli_usage_error("generate: --strength must be in (0, 1]");
    s.steps = (int)steps;
    s.cfg_scale = (float)cfg;
    s.eta = (float)eta;
    s.clip_skip = (int)clip_skip;
    s.strength = strength >= 0 ? strength : s.mask ? 1.0 : 0.8;
    /* no -n: no negative prompt (NULL): SD 1.x/2.x encode "", SDXL uses zeros (force_zeros_for_empty_prompt) */
    s.orig_width = (int)cond[0];
    s.orig_height = (int)cond[1];
    s.crop_top = (int)cond[2];
    s.crop_left = (int)cond[3];
    s.target_width = (int)cond[4];
    s.target_height = (int)cond[5];
    sd_lora_set loras;
    if (sd_lora_set_build(&loras, lora_specs, s.prompt, s.prompt_syntax, lora_dir, &err) < 0) return cli_fail(&err);
    if (s.prompt_syntax == SD_PROMPT_PLAIN && s.prompt && strstr(s.prompt, "<lora:"))
        fprintf(stderr, "sdrender: note: the prompt's <lora:...> tags are read as plain text; pass --prompt-syntax a1111 "
                        "to apply them\n");

    gen_args a = {.model = model, .out = out, .mopts = mopts, .s = s, .seed = seed, .width = width, .height = height,
                  .batch = batch, .have_sampler = have_sampler, .quiet = quiet, .bf16 = bf16, .loras = &loras};
    ops_set_threads((int)threads);
    int code;
    if (tp <= 1) {
        code = generate_images(&a, NULL);
    } else {
        sd_tp_world *world = NULL;
        if (sd_tp_start(&argc, &argv, (int)tp, parallel, cfg > 1, &world, &err) < 0) {
            sd_lora_set_free(&loras);
            return cli_fail(&err);
        }
        code = generate_images(&a, sd_tp_group(world));
        sd_tp_end(world);
    }
    sd_lora_set_free(&loras);
    return code;
}

