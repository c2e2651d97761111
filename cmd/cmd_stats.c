/* sdrender stats: FID reference statistics (and features) of a folder of images, under mpirun or alone. */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"
#include "commands.h"
#include "eval.h"
#include "metrics_mpi.h"

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: [mpirun -np N] sdrender stats --images DIR -o REF.npz --inception WEIGHTS [options]\n\n"
            "Computes the FID Inception pool3 features of every PNG in DIR (sorted by name; subfolders are\n"
            "not read) and writes them with their statistics to REF.npz:\n"
            "  mu float64 [2048], sigma float64 [2048, 2048] (as pytorch-fid), n int64 (images),\n"
            "  features float32 [n, 2048] (for precision/recall in 'sdrender metrics').\n"
            "Under mpirun the ranks share the images; the file is the same for any number of ranks.\n\n"
            "  --images DIR         folder of PNG images (at least 2)\n"
            "  -o, --output FILE    statistics file to write (.npz)\n"
            "  --inception W        pytorch-fid weights: pt_inception-2015-12-05-*.pth or a safetensors\n"
            "                       conversion (F16 or F32)\n"
            "  --batch N            images per forward pass (default 8; about 20 MB of memory per image)\n"
            "  --threads T          threads per rank (default: the node's cores / its ranks)\n"
            "  -q, --quiet          no progress lines\n"
            "  -h, --help           this text\n");
}

int cmd_stats(int argc, char **argv) {
    enum { O_IMAGES = 256, O_INCEPTION, O_BATCH, O_THREADS };
    static const struct option longopts[] = {{"images", required_argument, 0, O_IMAGES},
                                             {"output", required_argument, 0, 'o'},
                                             {"inception", required_argument, 0, O_INCEPTION},
                                             {"batch", required_argument, 0, O_BATCH},
                                             {"threads", required_argument, 0, O_THREADS},
                                             {"quiet", no_argument, 0, 'q'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    sd_metrics_stats_options o = {0};
    eval_progress prog = {.command = "stats"};
    long batch = 8, threads = 0;
    sd_error err = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:qh", longopts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case O_IMAGES: o.images = optarg; break;
        case 'o': o.out = optarg; break;
        case O_INCEPTION: o.c.inception = optarg; break;
        case O_BATCH: rc = cli_parse_long("--batch", optarg, 1, 256, &batch, &err); break;
        case O_THREADS: rc = cli_parse_long("--threads", optarg, 0, 4096, &threads, &err); break;
        case 'q': prog.quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (rc < 0) return cli_fail(&err);
    }
    if (optind < argc) return cli_usage_error("stats: unexpected argument '%s'", argv[optind]);
    if (!o.images || !o.out || !o.c.inception)
        return cli_usage_error("stats: --images, -o and --inception are required (see 'sdrender stats --help')");
    eval_common_set(&o.c, batch, threads, &prog);
    sd_metrics_stats_result r;
    int rc = sd_metrics_stats_mpi(&argc, &argv, &o, &r);
    eval_progress_finish(&prog);
    int code = eval_rank_exit(r.root, rc, &r.err);
    if (code >= 0) return code;
    printf("sdrender stats: %lld images -> %s (mu [2048], sigma [2048, 2048], n, features [%lld, 2048])\n",
           (long long)r.n, o.out, (long long)r.n);
    return 0;
}
