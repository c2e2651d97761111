/* sdrender shapes: the demo model's procedural pictures and captions (core/eval/shapes.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "fsutil.h"
#include "pngio.h"
#include "shapes.h"

static void usage(FILE *fp) {
    fprintf(fp, "usage: sdrender shapes -o DIR [-n N] [--seed S] [--start I] [--size PX]\n"
                "                       [--raw | --captions-only]\n\n"
                "Writes N pictures of one flat-coloured shape on a plain background, with captions\n"
                "in the demo grammar:\n"
                "    a [small |large ]COLOUR SHAPE[ at the POSITION] on a COLOUR background\n"
                "(colours red green blue yellow white black; shapes circle square triangle;\n"
                "positions top left, top right, bottom left, bottom right, center). They train the demo\n"
                "model and are the real set that `make demo` scores against (sdrender metrics --real DIR).\n"
                "Picture i depends only on (seed, i): the same arguments give the same bytes.\n\n"
                "  -o, --out DIR        output folder (created): shape_NNNNNN.png and captions.txt\n"
                "                       (line k = picture k, a prompt file for sdrender enqueue)\n"
                "  -n, --count N        pictures (default 1000)\n"
                "      --seed S         set seed (default 0)\n"
                "      --start I        index of the first picture (default 0)\n"
                "      --size PX        width = height in pixels (default 64)\n"
                "      --raw            images.u8 instead of PNGs: N x PX x PX x 3 bytes (RGB), for\n"
                "                       scripts/train-demo-model.py\n"
                "      --captions-only  captions.txt only\n"
                "  -h, --help           this text\n");
}

/* Writes captions.txt and, unless captions_only, the pictures (PNGs or one raw file). */
static int shapes_write(const char *dir, long n, long seed, long start, int size, int raw, int captions_only,
                        sd_error *err) {
    if (sd_fs_mkdirs(dir, err) < 0) return -1;
    char *cap_path = sd_fs_path_join(dir, "captions.txt");
    char *raw_path = sd_fs_path_join(dir, "images.u8");
    uint8_t *rgb = malloc((size_t)size * size * 3);
    sd_fs_atomic_file caps = {0}, rawf = {0};
    int rc = -1, caps_open = 0, raw_open = 0;
    if (!cap_path || !raw_path || !rgb) {
        sd_err(err, SD_ENOMEM, "out of memory");
        goto done;
    }
    if (sd_fs_atomic_open(&caps, cap_path, err) < 0) goto done;
    caps_open = 1;
    if (raw && !captions_only) {
        if (sd_fs_atomic_open(&rawf, raw_path, err) < 0) goto done;
        raw_open = 1;
    }
    for (long k = 0; k < n; k++) {
        uint64_t i = (uint64_t)(start + k);
        shapes_caption c;
        char text[160];
        shapes_sample((uint64_t)seed, i, &c);
        shapes_format(&c, text, sizeof text);
        size_t len = strlen(text);
        text[len] = '\n';
        if (sd_fs_atomic_write(&caps, text, len + 1, err) < 0) goto done;
        text[len] = 0;
        if (captions_only) continue;
        shapes_render(&c, (uint64_t)seed, i, size, rgb);
        if (raw) {
            if (sd_fs_atomic_write(&rawf, rgb, (size_t)size * size * 3, err) < 0) goto done;
        } else {
            char name[64];
            snprintf(name, sizeof name, "shape_%06llu.png", (unsigned long long)i);
            char *path = sd_fs_path_join(dir, name);
            sd_png_text t = {.key = "parameters", .value = text};
            int wrc = path ? sd_png_write_rgb(path, rgb, size, size, &t, 1, err) : sd_err(err, SD_ENOMEM, "out of memory");
            free(path);
            if (wrc < 0) goto done;
        }
        if (n >= 1000 && (k + 1) % 1000 == 0) fprintf(stderr, "\rsdrender shapes: %ld / %ld", k + 1, n);
    }
    if (n >= 1000) fprintf(stderr, "\n");
    if (raw_open) {
        raw_open = 0;
        if (sd_fs_atomic_commit(&rawf, err) < 0) goto done;
    }
    caps_open = 0;
    if (sd_fs_atomic_commit(&caps, err) < 0) goto done;
    rc = 0;
done:
    if (raw_open) sd_fs_atomic_abort(&rawf);
    if (caps_open) sd_fs_atomic_abort(&caps);
    free(cap_path);
    free(raw_path);
    free(rgb);
    return rc;
}

int cmd_shapes(int argc, char **argv) {
    static const struct option longopts[] = {{"out", required_argument, 0, 'o'},
                                             {"count", required_argument, 0, 'n'},
                                             {"seed", required_argument, 0, 's'},
                                             {"start", required_argument, 0, 'i'},
                                             {"size", required_argument, 0, 'z'},
                                             {"raw", no_argument, 0, 'r'},
                                             {"captions-only", no_argument, 0, 'c'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *dir = NULL;
    long n = 1000, seed = 0, start = 0, size = 64;
    int raw = 0, captions_only = 0, c;
    sd_error err = {0};
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:n:h", longopts, NULL)) != -1) {
        int prc = 0;
        switch (c) {
        case 'o': dir = optarg; break;
        case 'n': prc = cli_parse_long("-n", optarg, 1, 100000000, &n, &err); break;
        case 's': prc = cli_parse_long("--seed", optarg, 0, 0x7fffffffffffffffL, &seed, &err); break;
        case 'i': prc = cli_parse_long("--start", optarg, 0, 0x7fffffffffffffffL, &start, &err); break;
        case 'z': prc = cli_parse_long("--size", optarg, 8, 1024, &size, &err); break;
        case 'r': raw = 1; break;
        case 'c': captions_only = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (prc < 0) return cli_usage_error("shapes: %s", err.msg);
    }
    if (optind < argc) return cli_usage_error("shapes: unexpected argument '%s'", argv[optind]);
    if (!dir) return cli_usage_error("shapes: -o DIR is required");
    if (raw && captions_only) return cli_usage_error("shapes: --raw and --captions-only exclude each other");
    if (shapes_write(dir, n, seed, start, (int)size, raw, captions_only, &err) < 0) return cli_fail(&err);
    fprintf(stderr, "sdrender shapes: %ld %s in %s\n", n,
            captions_only ? "captions" : raw ? "pictures (images.u8) and captions" : "pictures and captions", dir);
    return 0;
}
