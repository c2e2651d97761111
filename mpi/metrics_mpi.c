/*
 * `sdrender stats` and `sdrender metrics` over MPI ranks.
 *
 * Why the numbers are the same for any number of ranks N. Floating-point
 * sums change with their order, so nothing is reduced in an order that
 * depends on N:
 *   - Features: image i always lies in batch i / batch_size, so every image is
 *     evaluated in a forward pass with the same batch companions whatever N
 *     is; ranks own whole batches, and rank 0 gathers the feature rows (and
 *     CLIP pair scores) in image order (MPI_Gatherv, no arithmetic).
 *   - FID: rank 0 computes mu and sigma from the whole gathered matrix with
 *     the same two-pass code as a single process, then the distance. We chose
 *     gathering over summing per-rank covariance accumulators: an MPI_Reduce
 *     of partial sums adds in an order that depends on N (and on the MPI
 *     library's reduction tree), so the last bits of sigma, and of FID, would
 *     move; gathering costs 8 KB per image (400 MB at 50k), which rank 0 has
 *     to hold for precision/recall anyway.
 *   - CLIP score: the per-pair scores are gathered and summed by rank 0 in
 *     image order.
 *   - Precision/recall/density/coverage: every rank holds both feature sets
 *     and takes whole blocks of SD_PRDC_ROW_BLOCK rows, so each distance
 *     comes from the same sgemm block as in one process; what crosses ranks
 *     are k-NN radii (copied), 0/1 flags (gathered) and per-fake hit counts
 *     (integers: their MPI_SUM is exact in any order).
 * tests/test_metrics_cli.c checks that 1 and 3 ranks print identical JSON.
 */
#include "metrics_mpi.h"

#include <jansson.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evaluator.h"
#include "fid.h"
#include "fsutil.h"
#include "imagedir.h"
#include "inception.h"
#include "jobdb.h"
#include "jobsel.h"
#include "metrics_dist.h"
#include "ops.h"

/* MPI_Init, this rank's place and its threads: the node's cores shared by the ranks on it. */
static void world_start(int *argc, char ***argv, const sd_metrics_common *c, md_world *w) {
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &w->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &w->size);
    MPI_Comm node;
    int node_size = 1;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &node_size);
    MPI_Comm_free(&node);
    ops_set_threads(c->threads > 0 ? c->threads : c->threads_for ? c->threads_for(node_size) : 0);
    w->threads = ops_get_threads();
    w->progress = w->rank == 0 ? c->progress : NULL;
    w->progress_ctx = c->progress_ctx;
}

/* ------------------------------------------------------------ image sets */

enum { SRC_NONE, SRC_DIR, SRC_NPZ, SRC_DB };

typedef struct eval_set {
    const char *flag;  /* "--real", "--fake", "--db", "--images": for messages */
    const char *path;
    int src;
    char **paths;      /* [n] PNG files (every rank) */
    char **prompts;    /* [n] prompts (SRC_DB, every rank when CLIP scores are wanted) */
    int n;
    /* rank 0 only */
    sd_fid_stats npz;  /* SRC_NPZ */
    float *feats;      /* [n, 2048] gathered Inception features */
    double *scores;    /* [n] gathered CLIP pair scores */
    int64_t *runs;     /* SRC_DB: the render runs of the done jobs, ascending */
    int n_runs;
} eval_set;

static void set_free(eval_set *s) {
    sd_imagedir_free(s->paths, s->n);
    sd_imagedir_free(s->prompts, s->prompts ? s->n : 0);
    sd_fid_stats_free(&s->npz);
    free(s->feats);
    free(s->scores);
    free(s->runs);
}

/* Images (or feature rows) in the set; -1 when an .npz does not say. */
static int64_t set_count(const eval_set *s) {
    if (s->src == SRC_NPZ) return s->npz.features ? s->npz.n_features : s->npz.n;
    return s->src == SRC_NONE ? -1 : s->n;
}

static int set_dim(const eval_set *s) { return s->src == SRC_NPZ ? s->npz.dim : INCEPTION_DIM; }

/* Rank 0: the feature matrix of the set, or NULL. */
static const float *set_features(const eval_set *s, int64_t *rows) {
    *rows = s->src == SRC_NPZ ? s->npz.n_features : s->n;
    return s->src == SRC_NPZ ? s->npz.features : s->feats;
}

static int grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    int nc = *cap ? 2 * *cap : 1024;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q) return SD_ENOMEM;
    *p = q;
    *cap = nc;
    return 0;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Rank 0: the output paths and prompts of every done job (that where selects), in job id order. *db stays
 * open (for the results). */
static int read_db(eval_set *s, const jobsel *where, jobdb **db, sd_error *err) {
    jobdb_open_options oo = {.create = 0, .keep_journal = 1};
    int rc = jobdb_open(db, s->path, &oo, err);
    if (rc < 0) return rc;
    jobdb_iter *it;
    if ((rc = jobdb_iter_begin_sel(*db, SD_JOB_DONE, where, &it, err)) < 0) return rc;
    int cap = 0, cap_p = 0, cap_r = 0;
    sd_job j;
    while ((rc = jobdb_iter_next(it, &j, err)) == 1) {
        if (grow((void **)&s->paths, &cap, s->n + 1, sizeof *s->paths) ||
            grow((void **)&s->prompts, &cap_p, s->n + 1, sizeof *s->prompts) ||
            grow((void **)&s->runs, &cap_r, s->n + 1, sizeof *s->runs)) {
            sd_job_free(&j);
            rc = sd_err(err, SD_ENOMEM, "%s: out of memory reading done jobs", s->path);
            break;
        }
        s->paths[s->n] = j.output_path; /* taken over from the job */
        s->prompts[s->n] = j.prompt;
        s->runs[s->n] = j.run_id;
        j.output_path = j.prompt = NULL;
        s->n++;
        sd_job_free(&j);
    }
    jobdb_iter_end(it);
    if (rc < 0) return rc;
    if (s->n == 0 && where && where->n > 0) {
        char what[512];
        jobsel_describe(where, what, sizeof what);
        return sd_err(err, SD_EINPUT, "%s: no done job has %s (check the values with 'sdrender report')", s->path, what);
    }
    if (s->n == 0)
        return sd_err(err, SD_EINPUT, "%s: no done jobs to evaluate (render them with 'sdrender run' first)", s->path);
    /* distinct render runs, for the results' details */
    qsort(s->runs, (size_t)s->n, sizeof *s->runs, cmp_i64);
    for (int i = 0; i < s->n; i++)
        if (s->runs[i] > 0 && (s->n_runs == 0 || s->runs[s->n_runs - 1] != s->runs[i])) s->runs[s->n_runs++] = s->runs[i];
    return 0;
}

/* Rank 0: what the set's path is and its contents (file list, statistics or done jobs). */
static int set_load(eval_set *s, const jobsel *where, jobdb **db, sd_error *err) {
    int rc;
    if (s->src == SRC_DB) return read_db(s, where, db, err);
    if (sd_fs_is_dir(s->path)) {
        s->src = SRC_DIR;
        rc = sd_imagedir_list(s->path, &s->paths, &s->n, err);
    } else if (sd_fs_is_file(s->path)) {
        s->src = SRC_NPZ;
        rc = sd_fid_stats_load(s->path, &s->npz, err);
    } else {
        return sd_err(err, SD_ENOTFOUND, "%s %s: no such folder or .npz file", s->flag, s->path);
    }
    if (rc < 0) sd_err_prefix(err, "%s", s->flag);
    return rc;
}

/* Every rank: the set's file names (and prompts) from rank 0. */
static int set_share(const md_world *w, eval_set *s, int with_prompts, sd_error *err) {
    int n = s->n, rc = md_bcast_strings(w, &s->paths, &s->n, err);
    if (rc == 0 && with_prompts) rc = md_bcast_strings(w, &s->prompts, &n, err);
    return rc;
}

/* ------------------------------------------------------------ sdrender stats */

/* Rank 0: the output's folder must exist before hours of work go into it. */
static int check_out_dir(const char *out, sd_error *err) {
    const char *slash = strrchr(out, '/');
    if (!slash) return 0;
    char *dir = strndup(out, slash == out ? 1 : (size_t)(slash - out));
    int ok = dir && sd_fs_is_dir(dir);
    free(dir);
    return ok ? 0 : sd_err(err, SD_ENOTFOUND, "-o %s: its folder does not exist", out);
}

int sd_metrics_stats_mpi(int *argc, char ***argv, const sd_metrics_stats_options *o, sd_metrics_stats_result *r) {
    memset(r, 0, sizeof *r);
    md_world w;
    world_start(argc, argv, &o->c, &w);
    r->root = w.rank == 0;
    r->ranks = w.size;
    sd_error err = {0};
    eval_set s = {.flag = "--images", .path = o->images, .src = SRC_DIR};
    int rc = 0;
    if (w.rank == 0) {
        rc = check_out_dir(o->out, &err);
        if (rc == 0 && !sd_fs_is_dir(o->images))
            rc = sd_err(&err, sd_fs_is_file(o->images) ? SD_EINPUT : SD_ENOTFOUND, "--images %s: not a folder", o->images);
        if (rc == 0) rc = sd_imagedir_list(o->images, &s.paths, &s.n, &err);
        if (rc == 0 && s.n < 2)
            rc = sd_err(&err, SD_EINPUT, "%s: 1 PNG file; FID statistics need at least 2 images", o->images);
    }
    rc = md_agree(&w, rc, &err);
    if (rc == 0) rc = set_share(&w, &s, 0, &err);
    sd_evaluator ev;
    int ev_open = 0;
    if (rc == 0) {
        sd_evaluator_opts eo = {.inception = o->c.inception, .batch = o->c.batch};
        rc = sd_evaluator_open(&ev, &eo, &err);
        ev_open = rc == 0;
        rc = md_agree(&w, rc, &err);
    }
    double *unused = NULL;
    if (rc == 0) rc = md_extract(&w, &ev, "Inception features", s.paths, NULL, s.n, 1, 0, &s.feats, &unused, &err);
    if (ev_open) sd_evaluator_close(&ev);
    if (rc == 0 && w.rank == 0) {
        double *mu = malloc(INCEPTION_DIM * sizeof *mu), *sigma = malloc((size_t)INCEPTION_DIM * INCEPTION_DIM * sizeof *sigma);
        rc = mu && sigma ? sd_fid_stats_from_features(s.feats, s.n, INCEPTION_DIM, mu, sigma, &err)
                         : sd_err(&err, SD_ENOMEM, "out of memory");
        if (rc == 0) rc = sd_fid_stats_save(o->out, mu, sigma, INCEPTION_DIM, s.n, s.feats, s.n, &err);
        free(mu);
        free(sigma);
    }
    rc = md_agree(&w, rc, &err);
    r->n = s.n;
    r->err = err;
    set_free(&s);
    MPI_Finalize();
    return rc;
}

/* ------------------------------------------------------------ sdrender metrics */

/* Rank 0: loads both sides and decides what runs where; fills plan = {real src, fake src, inception?, clip?}. */
static int metrics_plan(const sd_metrics_options *o, eval_set *real, eval_set *fake, jobdb **db, int64_t plan[4],
                        sd_error *err) {
    int rc = 0;
    if (real->path) rc = set_load(real, NULL, db, err);
    if (rc == 0) rc = set_load(fake, o->where, db, err);
    if (rc < 0) return rc;
    int features = real->src != SRC_NONE; /* FID and prdc compare with --real */
    const eval_set *images = real->src == SRC_DIR ? real : fake->src != SRC_NPZ ? fake : NULL;
    int need_inception = features && images;
    if (need_inception && !o->c.inception)
        return sd_err(err, SD_EINPUT, "--inception is required: %s %s holds images that need Inception features",
                      images->flag, images->path);
    if (features && set_dim(real) != set_dim(fake))
        return sd_err(err, SD_EINPUT, "dimension mismatch: %s %s has %d-d statistics, %s %s %d-d%s", real->flag,
                      real->path, set_dim(real), fake->flag, fake->path, set_dim(fake),
                      need_inception ? " (Inception pool3 features are 2048-d)" : "");
    plan[0] = real->src;
    plan[1] = fake->src;
    plan[2] = need_inception;
    plan[3] = o->c.clip != NULL && fake->src == SRC_DB;
    return 0;
}

/* Rank 0: mu and sigma of one side into *mu / *sigma (owned by the set or new, see *owned). */
static int side_stats(const eval_set *s, double **mu, double **sigma, int *owned, sd_error *err) {
    *owned = 0;
    if (s->src == SRC_NPZ) {
        *mu = s->npz.mu;
        *sigma = s->npz.sigma;
        return 0;
    }
    *owned = 1;
    *mu = malloc(INCEPTION_DIM * sizeof **mu);
    *sigma = malloc((size_t)INCEPTION_DIM * INCEPTION_DIM * sizeof **sigma);
    if (!*mu || !*sigma) return sd_err(err, SD_ENOMEM, "out of memory for FID statistics");
    return sd_fid_stats_from_features(s->feats, s->n, INCEPTION_DIM, *mu, *sigma, err);
}

/* Rank 0: FID when both sides have statistics. */
static int compute_fid(const eval_set *real, const eval_set *fake, sd_metrics_result *r, sd_error *err) {
    if (real->src == SRC_NONE) {
        snprintf(r->why_no_fid, sizeof r->why_no_fid, "needs --real");
        return 0;
    }
    const eval_set *few = real->src != SRC_NPZ && real->n < 2 ? real : fake->src != SRC_NPZ && fake->n < 2 ? fake : NULL;
    if (few) {
        snprintf(r->why_no_fid, sizeof r->why_no_fid, "needs at least 2 images on each side (%s has %d)", few->flag,
                 few->n);
        return 0;
    }
    double *mu1 = NULL, *s1 = NULL, *mu2 = NULL, *s2 = NULL;
    int own1 = 0, own2 = 0;
    int rc = side_stats(real, &mu1, &s1, &own1, err);
    if (rc < 0) sd_err_prefix(err, "%s %s", real->flag, real->path);
    if (rc == 0 && (rc = side_stats(fake, &mu2, &s2, &own2, err)) < 0) sd_err_prefix(err, "%s %s", fake->flag, fake->path);
    sd_fid_result fr;
    if (rc == 0 && (rc = sd_fid_frechet(mu1, s1, mu2, s2, set_dim(real), &fr, err)) == 0) {
        r->fid = fr.fid;
        r->has_fid = 1;
    }
    if (own1) {
        free(mu1);
        free(s1);
    }
    if (own2) {
        free(mu2);
        free(s2);
    }
    return rc;
}

/* Rank 0: whether precision/recall can run (else why); fills go = {go, rows real, rows fake, dim}. */
static void prdc_plan(const eval_set *real, const eval_set *fake, int k, sd_metrics_result *r, int64_t go[4]) {
    memset(go, 0, 4 * sizeof *go);
    if (real->src == SRC_NONE) {
        snprintf(r->why_no_prdc, sizeof r->why_no_prdc, "needs --real");
        return;
    }
    int64_t nr, nf;
    const float *fr = set_features(real, &nr), *ff = set_features(fake, &nf);
    const eval_set *bare = !fr ? real : !ff ? fake : NULL;
    if (bare) {
        snprintf(r->why_no_prdc, sizeof r->why_no_prdc,
                 "%s %s has no 'features' array (pytorch-fid and clean-fid files hold only mu and sigma; "
                 "'sdrender stats' writes features)",
                 bare->flag, bare->path);
        return;
    }
    if (nr <= k || nf <= k) {
        snprintf(r->why_no_prdc, sizeof r->why_no_prdc,
                 "needs more than k = %d feature vectors on each side (real %lld, fake %lld)", k, (long long)nr,
                 (long long)nf);
        return;
    }
    go[0] = 1;
    go[1] = nr;
    go[2] = nf;
    go[3] = set_dim(real);
}

/* Every rank: precision, recall, density and coverage over all ranks (rank 0's sets are sent to the others). */
static int run_prdc(const md_world *w, const eval_set *real, const eval_set *fake, int k, sd_metrics_result *r,
                    sd_error *err) {
    int64_t go[4];
    if (w->rank == 0) prdc_plan(real, fake, k, r, go);
    md_bcast_i64(go, 4);
    if (!go[0]) return 0;
    float *xr = NULL, *xf = NULL;
    int64_t rows;
    if (w->rank == 0) {
        xr = (float *)set_features(real, &rows);
        xf = (float *)set_features(fake, &rows);
    }
    int rc = md_bcast_matrix(w, &xr, go[1], (int)go[3], err);
    if (rc == 0) rc = md_bcast_matrix(w, &xf, go[2], (int)go[3], err);
    if (rc == 0) rc = md_prdc(w, xr, go[1], xf, go[2], (int)go[3], k, &r->prdc, err);
    if (rc == 0) r->has_prdc = 1;
    if (w->rank != 0) {
        free(xr);
        free(xf);
    }
    return rc;
}

/* Rank 0: the results as rows of the job database's metrics table (run_id NULL: see cmd_metrics.c). */
static int store_metrics(jobdb *db, const sd_metrics_options *o, const eval_set *fake, const md_world *w,
                         sd_metrics_result *r, sd_error *err) {
    json_t *d = json_object(), *runs = json_array();
    for (int i = 0; d && runs && i < fake->n_runs; i++) json_array_append_new(runs, json_integer(fake->runs[i]));
    json_object_set_new(d, "n_real", r->n_real >= 0 ? json_integer(r->n_real) : json_null());
    json_object_set_new(d, "n_fake", json_integer(r->n_fake));
    json_object_set_new(d, "k", json_integer(o->k));
    json_object_set_new(d, "real", o->real ? json_string(o->real) : json_null());
    json_object_set_new(d, "inception", o->c.inception ? json_string(o->c.inception) : json_null());
    json_object_set_new(d, "clip", o->c.clip ? json_string(o->c.clip) : json_null());
    json_object_set_new(d, "ranks", json_integer(w->size));
    json_object_set_new(d, "render_runs", runs);
    /* the selection scored ({} for every done job): what a report plots the metrics against */
    json_object_set_new(d, "where", o->where ? jobsel_json(o->where) : json_object());
    char *details = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    if (!details) return sd_err(err, SD_ENOMEM, "out of memory");
    const struct {
        const char *name;
        int has;
        double v;
    } rows[] = {{"fid", r->has_fid, r->fid},
                {"precision", r->has_prdc, r->prdc.precision},
                {"recall", r->has_prdc, r->prdc.recall},
                {"density", r->has_prdc, r->prdc.density},
                {"coverage", r->has_prdc, r->prdc.coverage},
                {"clip_score", r->has_clip, r->clip_score}};
    int rc = 0;
    for (size_t i = 0; i < sizeof rows / sizeof *rows && rc == 0; i++) {
        if (!rows[i].has) continue;
        rc = jobdb_metric_add(db, rows[i].name, rows[i].v, details, err);
        if (rc == 0) r->db_rows++;
    }
    free(details);
    return rc;
}

int sd_metrics_mpi(int *argc, char ***argv, const sd_metrics_options *o, sd_metrics_result *r) {
    memset(r, 0, sizeof *r);
    r->n_real = r->n_fake = -1;
    r->k = o->k;
    md_world w;
    world_start(argc, argv, &o->c, &w);
    r->root = w.rank == 0;
    r->ranks = w.size;
    sd_error err = {0};
    eval_set real = {.flag = "--real", .path = o->real}, fake = {.flag = "--fake", .path = o->fake};
    if (o->db) fake = (eval_set){.flag = "--db", .path = o->db, .src = SRC_DB};
    jobdb *db = NULL;
    int64_t plan[4] = {0};
    int rc = w.rank == 0 ? metrics_plan(o, &real, &fake, &db, plan, &err) : 0;
    rc = md_agree(&w, rc, &err);
    if (rc == 0) md_bcast_i64(plan, 4);
    real.src = (int)plan[0];
    fake.src = (int)plan[1];
    int need_inception = (int)plan[2], want_scores = (int)plan[3];
    int fake_images = fake.src != SRC_NPZ && (need_inception || want_scores);

    /* every rank: the image lists, the networks, then its share of the images */
    if (rc == 0 && real.src == SRC_DIR && need_inception) rc = set_share(&w, &real, 0, &err);
    if (rc == 0 && fake_images) rc = set_share(&w, &fake, want_scores, &err);
    sd_evaluator ev;
    int ev_open = 0;
    if (rc == 0 && (need_inception || want_scores)) {
        sd_evaluator_opts eo = {.inception = need_inception ? o->c.inception : NULL,
                                .clip = want_scores ? o->c.clip : NULL,
                                .clip_tokenizer = o->c.clip_tokenizer,
                                .batch = o->c.batch};
        rc = sd_evaluator_open(&ev, &eo, &err);
        ev_open = rc == 0;
        rc = md_agree(&w, rc, &err);
    }
    if (rc == 0 && real.src == SRC_DIR)
        rc = md_extract(&w, &ev, "real images", real.paths, NULL, real.n, 1, 0, &real.feats, &real.scores, &err);
    if (rc == 0 && fake_images)
        rc = md_extract(&w, &ev, "fake images", fake.paths, want_scores ? fake.prompts : NULL, fake.n, need_inception,
                        want_scores, &fake.feats, &fake.scores, &err);
    if (rc == 0 && ev_open) MPI_Reduce(&ev.truncated, &r->clip_truncated, 1, MPI_INT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
    if (ev_open) sd_evaluator_close(&ev);

    /* rank 0: FID; all ranks: precision/recall; rank 0: CLIP score and the database */
    if (rc == 0 && w.rank == 0) rc = compute_fid(&real, &fake, r, &err);
    rc = md_agree(&w, rc, &err);
    if (rc == 0) rc = run_prdc(&w, &real, &fake, o->k, r, &err);
    if (rc == 0 && w.rank == 0) {
        r->n_real = set_count(&real);
        r->n_fake = set_count(&fake);
        if (want_scores) {
            double sum = 0; /* in image order, whatever the ranks */
            for (int i = 0; i < fake.n; i++) sum += fake.scores[i];
            r->clip_score = clip_model_score_from_sum(sum, fake.n);
            r->has_clip = 1;
        } else {
            snprintf(r->why_no_clip, sizeof r->why_no_clip, "needs --clip and --db (the prompts)");
        }
        if (db) rc = store_metrics(db, o, &fake, &w, r, &err);
    }
    rc = md_agree(&w, rc, &err);
    if (db) jobdb_close(db);
    r->err = err;
    set_free(&real);
    set_free(&fake);
    MPI_Finalize();
    return rc;
}
