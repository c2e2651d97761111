/* group.c - strategy choice, agreement and the shared U-Net call of a rank group (see group.h). */
#include "group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *sd_parallel_name(sd_parallel p) {
    switch (p) {
    case SD_PARALLEL_AUTO: return "auto";
    case SD_PARALLEL_CFG: return "cfg";
    case SD_PARALLEL_TENSOR: return "tensor";
    }
    return "?";
}

int sd_parallel_parse(const char *s, sd_parallel *out, sd_error *err) {
    for (int p = SD_PARALLEL_AUTO; p <= SD_PARALLEL_TENSOR; p++)
        if (s && !strcmp(s, sd_parallel_name((sd_parallel)p))) {
            *out = (sd_parallel)p;
            return 0;
        }
    return sd_err(err, SD_EINPUT, "--parallel '%s': expected auto, cfg or tensor", s ? s : "");
}

int sd_parallel_resolve(sd_parallel requested, int K, int cfg_on, sd_parallel *out, sd_error *err) {
    if (K <= 1) {
        *out = SD_PARALLEL_TENSOR;
        return 0;
    }
    if (requested == SD_PARALLEL_CFG && K % 2)
        return sd_err(err, SD_EINPUT, "--parallel cfg needs an even group size (--tp %d)", K);
    if (requested == SD_PARALLEL_AUTO) requested = cfg_on && K % 2 == 0 ? SD_PARALLEL_CFG : SD_PARALLEL_TENSOR;
    *out = requested;
    return 0;
}

/* What each rank contributes to an agreement. */
typedef struct agree_msg {
    int32_t rc;
    char msg[SD_ERRMSG_MAX];
} agree_msg;

int sd_group_agree(const sd_group *g, int rc, sd_error *err) {
    if (!g || !ops_comm_active(g->all)) return rc;
    agree_msg mine = {.rc = rc};
    if (rc && err) snprintf(mine.msg, sizeof mine.msg, "%s", err->msg);
    agree_msg *all = calloc((size_t)g->all->size, sizeof *all);
    if (!all) return sd_err(err, SD_ENOMEM, "out of memory agreeing with the group");
    sd_error cerr = {0};
    int crc = ops_comm_allgather_idle(g->all, &mine, all, sizeof mine, &cerr); /* members may wait out a decode */
    int out = 0;
    if (crc < 0) {
        out = sd_err(err, crc, "%s", cerr.msg);
    } else {
        for (int r = 0; r < g->all->size; r++) {
            if (!all[r].rc) continue;
            if (r == g->all->rank || !err) out = all[r].rc;
            else out = sd_err(err, all[r].rc, "rank %d of the group: %s", r, all[r].msg);
            break;
        }
    }
    free(all);
    return out;
}

int sd_group_fault(const sd_group *g, const char *where, sd_error *err) {
    const char *e = getenv("SDRENDER_TP_FAIL_RANK"), *at = getenv("SDRENDER_TP_FAIL_AT");
    if (!g || !e || !*e || atoi(e) != g->rank || strcmp(at && *at ? at : "inputs", where)) return 0;
    return sd_err(err, SD_EIO, "injected failure on this rank (SDRENDER_TP_FAIL_RANK=%s, at %s)", e, where);
}

/* A failed pass (see sd_group_unet_forward): rc alone, or the end of the job where partners wait for it. */
static int pass_failed(const sd_group *g, int waiting, int rc, sd_error *err) {
    if (waiting && g->all->abort) {
        char why[SD_ERRMSG_MAX + 96];
        snprintf(why, sizeof why, "rank %d of the group failed inside the shared U-Net pass: %s", g->rank,
                 err ? err->msg : "(no message)");
        g->all->abort(g->all, why);
    }
    return rc;
}

int sd_group_bcast_int(const sd_group *g, int *v, sd_error *err) {
    if (!g || !ops_comm_active(g->all)) return 0;
    int32_t mine = *v, *all = calloc((size_t)g->all->size, sizeof *all);
    if (!all) return sd_err(err, SD_ENOMEM, "out of memory");
    int rc = ops_comm_allgather(g->all, &mine, all, sizeof mine, err);
    if (rc == 0) *v = all[0];
    free(all);
    return rc;
}

/* Entry k of a batch's added conditioning (NULL stays NULL). */
static const unet_added_cond *added_entry(const unet_added_cond *a, int k, unet_added_cond *one) {
    if (!a) return NULL;
    *one = *a;
    if (a->text_embeds) one->text_embeds = a->text_embeds + (size_t)k * a->n_text;
    if (a->time_ids) one->time_ids = a->time_ids + (size_t)k * a->n_time;
    if (a->labels) one->labels = a->labels + k;
    return one;
}

int sd_group_unet_forward(unet_model *u, const sd_group *g, const float *x, float t, const float *ctx, int n_ctx,
                          const unet_added_cond *added, int B, int h, int w, float *out, sd_error *err) {
    const int Cin = u->cfg.in_channels, C = u->cfg.out_channels, D = u->cfg.cross_attention_dim;
    const size_t nin = (size_t)Cin * h * w, nout = (size_t)C * h * w, nctx = (size_t)n_ctx * D;
    float tt[2] = {t, t};
    unet_added_cond one;
    /* one rank, or all of a tensor-parallel group: the whole batch in one pass (the kernels give each
     * entry the bits it gets alone, so a CFG-parallel rank's one entry matches) */
    /* partners wait for this rank inside the pass (layers shared), or after it (the CFG halves' swap) */
    const int waiting = g && (ops_comm_active(u->ops.comm) || (g->strategy == SD_PARALLEL_CFG && B == 2));
    int rc = sd_group_fault(g, "unet", err);
    if (rc < 0) return pass_failed(g, waiting, rc, err);
    if (!g || g->strategy == SD_PARALLEL_TENSOR) {
        rc = unet_forward_cond(u, x, tt, ctx, n_ctx, added, B, h, w, out, err);
        return rc < 0 ? pass_failed(g, waiting, rc, err) : rc;
    }
    if (g && g->strategy == SD_PARALLEL_CFG && B == 2) {
        /* this half on this rank's tensor-parallel ranks, then swap halves with the partner */
        int k = g->cfg_index;
        float *mine = out + (size_t)k * nout;
        /* each half alone (K = 2): the pair shares the small levels' convolutions (ops_conv_pair.c) */
        if (!ops_comm_active(u->ops.comm)) u->ops.pair = g->cfg;
        rc = unet_forward_cond(u, x + (size_t)k * nin, tt, ctx ? ctx + (size_t)k * nctx : NULL, n_ctx,
                               added_entry(added, k, &one), 1, h, w, mine, err);
        u->ops.pair = NULL;
        if (rc < 0) return pass_failed(g, waiting, rc, err);
        return ops_comm_allgather(g->cfg, mine, out, nout * sizeof(float), err);
    }
    /* a CFG-parallel group without guidance: the one entry on every half */
    for (int k = 0; k < B; k++) {
        rc = unet_forward_cond(u, x + (size_t)k * nin, tt, ctx ? ctx + (size_t)k * nctx : NULL, n_ctx,
                               added_entry(added, k, &one), 1, h, w, out + (size_t)k * nout, err);
        if (rc < 0) return pass_failed(g, waiting, rc, err);
    }
    return 0;
}
