#include "cli.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "model.h"
#include "pipeline.h"
#include "ops.h"
#include "sampler.h"

int cli_fail(const sd_error *e) {
    fprintf(stderr, "sdrender: %s\n", e->msg[0] ? e->msg : sd_err_name(e->code));
    return sd_err_exit_code(e->code ? e->code : SD_EINTERNAL);
}

int cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("sdrender: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

int cli_parse_long(const char *flag, const char *s, long min, long max, long *out, sd_error *e) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno)
        return sd_err(e, SD_EINPUT, "%s: '%s' is not an integer", flag, s);
    if (v < min || v > max) return sd_err(e, SD_EINPUT, "%s: %ld is out of range [%ld, %ld]", flag, v, min, max);
    *out = v;
    return 0;
}

int cli_parse_double(const char *flag, const char *s, double min, double max, double *out, sd_error *e) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v)) return sd_err(e, SD_EINPUT, "%s: '%s' is not a number", flag, s);
    if (v < min || v > max) return sd_err(e, SD_EINPUT, "%s: %g is out of range [%g, %g]", flag, v, min, max);
    *out = v;
    return 0;
}

int cli_parse_pair(const char *flag, const char *s, char sep, long min, long max, long *a, long *b, sd_error *e) {
    const char *mid = strchr(s, sep);
    char first[32];
    if (!mid || (size_t)(mid - s) >= sizeof first)
        return sd_err(e, SD_EINPUT, "%s: '%s' is not two integers joined by '%c'", flag, s, sep);
    memcpy(first, s, (size_t)(mid - s));
    first[mid - s] = 0;
    if (cli_parse_long(flag, first, min, max, a, e) < 0 || cli_parse_long(flag, mid + 1, min, max, b, e) < 0)
        return sd_err(e, SD_EINPUT, "%s: '%s' is not two integers in [%ld, %ld] joined by '%c'", flag, s, min, max, sep);
    return 0;
}

int cli_parse_precision(const char *s, int allow_both, int *out, sd_error *e) {
    if (!strcmp(s, "fp32")) *out = 0;
    else if (!strcmp(s, "bf16")) *out = 1;
    else if (allow_both && !strcmp(s, "both")) *out = 2;
    else return sd_err(e, SD_EINPUT, "--precision: '%s' is not one of fp32, bf16%s", s, allow_both ? ", both" : "");
    return 0;
}

int cli_bf16_usable(void) {
    if (ops_bf16_available()) return 1;
    fprintf(stderr, "sdrender: --precision bf16 needs a build with oneDNN and a CPU with AVX512_BF16; "
                    "this one computes in fp32\n");
    return 0;
}

const char *cli_option_value(int argc, char **argv, int *i, const char *name, const char *alias, int *missing) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (!strncmp(a, name, n) && a[n] == '=') return a + n + 1;
    if (strcmp(a, name) && (!alias || strcmp(a, alias))) return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

/* The shared options, in the order they follow a command's own: stats and metrics take all of them,
 * run the last three. */
static const struct option shared_longopts[] = {{"inception", required_argument, 0, CLI_OPT_INCEPTION},
                                                {"batch", required_argument, 0, CLI_OPT_BATCH},
                                                {"threads", required_argument, 0, CLI_OPT_THREADS},
                                                {"quiet", no_argument, 0, 'q'},
                                                {"help", no_argument, 0, 'h'}};
enum { N_SHARED = 5, N_EVAL_ONLY = 2 };

/* The command's long options followed by the shared ones it takes, for getopt_long (caller frees). */
static struct option *cli_join_longopts(const cli_command_opts *cmd) {
    size_t n_own = 0;
    while (cmd->longopts[n_own].name) n_own++;
    const struct option *shared = cmd->eval ? shared_longopts : shared_longopts + N_EVAL_ONLY;
    size_t n_shared = cmd->eval ? N_SHARED : N_SHARED - N_EVAL_ONLY;
    struct option *all = calloc(n_own + n_shared + 1, sizeof *all); /* + the zero entry */
    if (!all) return NULL;
    memcpy(all, cmd->longopts, n_own * sizeof *all);
    memcpy(all + n_own, shared, n_shared * sizeof *all);
    return all;
}

/* One option getopt_long returned: -1 to read on, else the exit status. */
static int cli_take_option(const cli_command_opts *cmd, void *ctx, cli_shared_opts *shared, int opt, const char *arg) {
    sd_error err = {0};
    int rc = 0;
    switch (opt) {
    case 'h': cmd->usage(stdout); return 0;
    case '?': cmd->usage(stderr); return 2; /* getopt_long has said what is wrong */
    case 'q': shared->quiet = 1; break;
    case CLI_OPT_INCEPTION: shared->inception = arg; break;
    case CLI_OPT_BATCH: rc = cli_parse_long("--batch", arg, 1, 256, &shared->batch, &err); break;
    case CLI_OPT_THREADS: rc = cli_parse_long("--threads", arg, 0, 4096, &shared->threads, &err); break;
    default: rc = cmd->take(ctx, opt, arg, &err); break;
    }
    return rc < 0 ? cli_fail(&err) : -1;
}

int cli_parse_options(int argc, char **argv, const cli_command_opts *cmd, void *ctx, cli_shared_opts *shared) {
    *shared = (cli_shared_opts){.batch = 8};
    char shortopts[32];
    snprintf(shortopts, sizeof shortopts, "%sqh", cmd->shortopts);
    struct option *longopts = cli_join_longopts(cmd);
    if (!longopts) {
        sd_error err;
        sd_err(&err, SD_ENOMEM, "out of memory");
        return cli_fail(&err);
    }
    int opt, code = -1;
    optind = 1;
    while (code < 0 && (opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1)
        code = cli_take_option(cmd, ctx, shared, opt, optarg);
    free(longopts);
    if (code >= 0) return code;
    if (optind < argc) return cli_usage_error("%s: unexpected argument '%s'", cmd->name, argv[optind]);
    return -1;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_threads_for(int local_ranks) {
    cpu_set_t set;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)online;
    if (n >= online && local_ranks > 1) n /= local_ranks;
    return n < 1 ? 1 : n;
}

int cli_model_sampler(const sd_model *m) {
    static const struct {
        const char *cls;
        sampler_kind k;
    } map[] = {{"DDIMScheduler", SD_SAMPLER_DDIM},          {"PNDMScheduler", SD_SAMPLER_PNDM},
               {"EulerDiscreteScheduler", SD_SAMPLER_EULER}, {"EulerAncestralDiscreteScheduler", SD_SAMPLER_EULER_A},
               {"LMSDiscreteScheduler", SD_SAMPLER_LMS},     {"HeunDiscreteScheduler", SD_SAMPLER_HEUN},
               {"DPMSolverMultistepScheduler", SD_SAMPLER_DPMPP_2M}, {"UniPCMultistepScheduler", SD_SAMPLER_UNIPC},
               {"DDPMScheduler", SD_SAMPLER_DDPM}};
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (!strcmp(m->sched.class_name, map[i].cls)) return map[i].k;
    return SD_SAMPLER_PNDM;
}

long long cli_random_seed(void) {
    uint64_t v = 0;
    FILE *fp = fopen("/dev/urandom", "rb");
    if (fp) {
        if (fread(&v, sizeof v, 1, fp) != 1) v = 0;
        fclose(fp);
    }
    return (long long)(v % 4294967296ULL); /* A1111-sized seeds */
}

int cli_parse_sampler(const char *name, int *out) {
    sampler_kind k;
    if (sampler_kind_parse(name, &k) < 0)
        return cli_usage_error("--sampler: unknown sampler '%s'; choose one of %s", name, sampler_kind_list());
    *out = (int)k;
    return 0;
}

int cli_parse_rng(const char *name, int *out) {
    sd_rng_kind k;
    if (sd_rng_kind_parse(name, &k) < 0) return cli_usage_error("--rng: unknown noise source '%s'; choose cpu or cuda", name);
    *out = (int)k;
    return 0;
}

int cli_pipeline_for(sd_pipeline *p, const sd_model *m, const sd_settings *s, sd_error *err) {
    int rc = sd_settings_check_for(s, sd_model_size_factor(m), err);
    if (rc == 0) rc = sd_pipeline_load(p, m, err);
    if (rc == 0 && (rc = sd_pipeline_check(p, s, err)) < 0) sd_pipeline_free(p);
    return rc;
}
