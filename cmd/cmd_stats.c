/* sdrender stats: FID reference statistics (and features) of a folder of images, under mpirun or alone. */
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

enum { O_IMAGES = CLI_OPT_OWN };

/* One of stats' own options (cli.h reads the shared ones): ctx is the sd_metrics_stats_options. */
static int stats_take_option(void *ctx, int opt, const char *arg, sd_error *err) {
    sd_metrics_stats_options *o = ctx;
    if (opt == O_IMAGES) o->images = arg;
    else if (opt == 'o') o->out = arg;
    return 0;
}

int cmd_stats(int argc, char **argv) {
    static const struct option longopts[] = {{"images", required_argument, 0, O_IMAGES},
                                             {"output", required_argument, 0, 'o'},
                                             {0, 0, 0, 0}};
    static const cli_command_opts opts = {"stats", "o:", longopts, 1, stats_take_option, usage};
    sd_metrics_stats_options o = {0};
    cli_shared_opts shared;
    int code = cli_parse_options(argc, argv, &opts, &o, &shared);
    if (code >= 0) return code;
    if (!o.images || !o.out || !shared.inception)
        return cli_usage_error("stats: --images, -o and --inception are required (see 'sdrender stats --help')");
    eval_progress prog = {.command = "stats"};
    eval_common_set(&o.c, &shared, &prog);
    sd_metrics_stats_result r;
    int rc = sd_metrics_stats_mpi(&argc, &argv, &o, &r);
    eval_progress_finish(&prog);
    code = eval_rank_exit(r.root, rc, &r.err);
    if (code >= 0) return code;
    printf("sdrender stats: %lld images -> %s (mu [2048], sigma [2048, 2048], n, features [%lld, 2048])\n",
           (long long)r.n, o.out, (long long)r.n);
    return 0;
}
