#include "render.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsutil.h"
#include "ops.h"
#include "pngio.h"
#include "sha256.h"

/* The file whose hash names the model: the checkpoint, or a folder's U-Net weights. */
static const char *main_weight_file(const sd_model *m) {
    for (int i = 0; i < m->n_files; i++)
        if (!strncmp(m->file_desc[i], "unet: ", 6) || !strncmp(m->file_desc[i], "checkpoint: ", 12))
            return strchr(m->file_desc[i], ' ') + 1;
    return NULL;
}

static char *cache_path(void) {
    const char *d = getenv("SDRENDER_CACHE");
    char buf[4096];
    if (d && *d) snprintf(buf, sizeof buf, "%s", d);
    else if ((d = getenv("XDG_CACHE_HOME")) && *d) snprintf(buf, sizeof buf, "%s/sdrender", d);
    else if ((d = getenv("HOME")) && *d) snprintf(buf, sizeof buf, "%s/.cache/sdrender", d);
    else return NULL;
    if (sd_fs_mkdirs(buf, NULL) < 0) return NULL;
    return sd_fs_path_join(buf, "model-hashes.tsv");
}

/* Looks up "sha\tsize\tmtime_ns\tpath" lines; returns 1 when found. */
static int cache_lookup(const char *cache, const char *path, long long size, long long mtime, char hex[65]) {
    FILE *fp = fopen(cache, "r");
    if (!fp) return 0;
    char line[5000];
    int found = 0;
    while (fgets(line, sizeof line, fp)) {
        char h[65], p[4096];
        long long s, t;
        line[strcspn(line, "\n")] = 0;
        if (sscanf(line, "%64s\t%lld\t%lld\t%4095[^\n]", h, &s, &t, p) == 4 && s == size && t == mtime &&
            !strcmp(p, path) && sd_sha256_is_hex(h)) {
            memcpy(hex, h, 65);
            found = 1; /* keep reading: the last entry wins */
        }
    }
    fclose(fp);
    return found;
}

void sd_render_identify_name(const sd_model *m, sd_render_id *id) {
    char path[4096];
    snprintf(path, sizeof path, "%s", m->path);
    size_t l = strlen(path);
    while (l > 1 && path[l - 1] == '/') path[--l] = 0;
    const char *base = strrchr(path, '/');
    snprintf(id->name, sizeof id->name, "%s", base ? base + 1 : path);
    char *dot = strrchr(id->name, '.');
    if (dot && dot != id->name && m->layout == SD_LAYOUT_SINGLE_FILE) *dot = 0;
}

int sd_render_identify(const sd_model *m, sd_render_id *id, sd_error *err) {
    memset(id, 0, sizeof *id);
    sd_render_identify_name(m, id);

    const char *file = main_weight_file(m);
    if (!file) return sd_err(err, SD_EINTERNAL, "%s: no weight file to hash", m->path);
    char real[4096];
    if (!realpath(file, real)) return sd_err(err, SD_EIO, "%s: %s", file, strerror(errno));
    struct stat sb;
    if (stat(real, &sb) < 0) return sd_err(err, SD_EIO, "%s: %s", real, strerror(errno));
    long long size = (long long)sb.st_size, mtime = (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
    char *cache = cache_path();
    if (cache && cache_lookup(cache, real, size, mtime, id->hash)) {
        free(cache);
        return 0;
    }
    int rc = sd_sha256_file(real, id->hash, err);
    if (rc == 0 && cache) {
        FILE *fp = fopen(cache, "a");
        if (fp) {
            fprintf(fp, "%s\t%lld\t%lld\t%s\n", id->hash, size, mtime, real);
            fclose(fp);
        }
    }
    free(cache);
    return rc;
}

/* A1111 shows the first 10 hex digits ("shorthash"). */
static char *params_text(const sd_settings *s, const sd_render_id *id) {
    char short_hash[11];
    snprintf(short_hash, sizeof short_hash, "%.10s", id ? id->hash : "");
    return sd_settings_format_a1111(s, short_hash, id ? id->name : NULL);
}

int sd_render_png(sd_pipeline *p, const sd_settings *s, const sd_render_id *id, const char *out_path, sd_pipeline_step_fn cb,
                  void *cb_ctx, char sha256[65], sd_error *err) {
    size_t npix = (size_t)3 * s->width * s->height;
    uint8_t *rgb = malloc(npix ? npix : 1);
    char *text = params_text(s, id);
    int rc = 0;
    if (!rgb || !text) rc = sd_err(err, SD_ENOMEM, "out of memory");
    /* the settings choose the precision, so the parameters text says what was computed */
    if (rc == 0 && s->bf16 && !ops_bf16_available())
        rc = sd_err(err, SD_EUNSUPPORTED, "Precision bf16 needs a build with oneDNN and a CPU with AVX512_BF16");
    if (rc == 0) sd_pipeline_set_precision(p, s->bf16 ? OPS_PRECISION_BF16 : OPS_PRECISION_FP32);
    if (rc == 0) rc = sd_pipeline_generate(p, s, rgb, cb, cb_ctx, NULL, err);
    if (rc == 0 && p->group && p->group->rank != 0) {
        /* a group member: the leader writes the image */
        free(rgb);
        free(text);
        if (sha256) sha256[0] = 0;
        return 0;
    }
    if (rc == 0) {
        sd_png_text t = {.key = "parameters", .value = text};
        rc = sd_png_write_rgb(out_path, rgb, s->width, s->height, &t, 1, err);
    }
    if (rc == 0 && sha256) rc = sd_sha256_file(out_path, sha256, err);
    free(rgb);
    free(text);
    return rc;
}

int sd_render_exists(const sd_settings *s, const sd_render_id *id, const char *out_path, char sha256[65]) {
    if (!sd_fs_is_file(out_path)) return 0;
    sd_png_text *texts = NULL;
    int nt = 0, same = 0;
    if (sd_png_read_text(out_path, &texts, &nt, NULL) < 0) return 0;
    const char *have = sd_png_text_get(texts, nt, "parameters");
    char *want = params_text(s, id);
    same = have && want && !strcmp(have, want);
    free(want);
    sd_png_text_free(texts, nt);
    /* the text chunk comes first; make sure the whole image decodes too */
    if (same) {
        uint8_t *rgb = NULL;
        int w, h;
        same = sd_png_read_rgb(out_path, &rgb, &w, &h, NULL) == 0 && w == s->width && h == s->height;
        free(rgb);
    }
    return same && sd_sha256_file(out_path, sha256, NULL) == 0;
}
