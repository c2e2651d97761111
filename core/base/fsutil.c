#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int sd_fs_atomic_open(sd_fs_atomic_file *af, const char *path, sd_error *err) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 32;
    af->path = strdup(path);
    af->tmp = malloc(n);
    if (!af->path || !af->tmp) {
        free(af->path);
        free(af->tmp);
        return sd_err(err, SD_ENOMEM, "out of memory");
    }
    snprintf(af->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    af->fp = fopen(af->tmp, "wb");
    if (!af->fp) {
        int rc = sd_err_sys(err, errno, "%s: cannot create", af->tmp);
        free(af->path);
        free(af->tmp);
        memset(af, 0, sizeof *af);
        return rc;
    }
    return 0;
}

int sd_fs_atomic_write(sd_fs_atomic_file *af, const void *buf, size_t n, sd_error *err) {
    if (n && fwrite(buf, 1, n, af->fp) != n)
        return sd_err_sys(err, errno, "%s: write failed", af->tmp);
    return 0;
}

static void release(sd_fs_atomic_file *af) {
    free(af->path);
    free(af->tmp);
    memset(af, 0, sizeof *af);
}

int sd_fs_atomic_commit(sd_fs_atomic_file *af, sd_error *err) {
    int rc = 0;
    if (fflush(af->fp) != 0 || fsync(fileno(af->fp)) != 0) rc = sd_err_sys(err, errno, "%s: cannot flush to disk", af->tmp);
    if (fclose(af->fp) != 0 && rc == 0) rc = sd_err_sys(err, errno, "%s: close failed", af->tmp);
    af->fp = NULL;
    if (rc == 0 && rename(af->tmp, af->path) != 0) rc = sd_err_sys(err, errno, "%s: cannot rename into place", af->path);
    if (rc < 0) {
        unlink(af->tmp);
    } else {
        /* make the rename itself durable */
        char *d = strdup(af->path);
        if (d) {
            int dfd = open(dirname(d), O_RDONLY | O_DIRECTORY);
            /* some filesystems cannot sync a folder (EINVAL): nothing to report then */
            if ((dfd < 0 || fsync(dfd) != 0) && errno != EINVAL && errno != ENOTSUP)
                rc = sd_err_sys(err, errno, "%s: cannot sync its folder", af->path);
            if (dfd >= 0) close(dfd);
            free(d);
        }
    }
    release(af);
    return rc;
}

void sd_fs_atomic_abort(sd_fs_atomic_file *af) {
    if (af->fp) fclose(af->fp);
    if (af->tmp) unlink(af->tmp);
    release(af);
}

int sd_fs_read_file(const char *path, char **out, size_t *len, sd_error *err) {
    *out = NULL;
    if (len) *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return sd_err(err, errno == ENOENT ? SD_ENOTFOUND : SD_EIO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    int rc = 0;
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, fp);
        n += r;
        if (n < cap) break;
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    if (!buf) rc = sd_err(err, SD_ENOMEM, "%s: out of memory reading file", path);
    else if (ferror(fp)) rc = sd_err(err, SD_EIO, "%s: read failed: %s", path, strerror(errno));
    fclose(fp);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return 0;
}

char *sd_fs_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t o = a;
    if (a && dir[a - 1] != '/') p[o++] = '/';
    memcpy(p + o, name, b + 1);
    return p;
}

int sd_fs_is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

int sd_fs_is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int sd_fs_mkdirs(const char *path, sd_error *err) {
    char *p = strdup(path);
    if (!p) return sd_err(err, SD_ENOMEM, "out of memory");
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                rc = sd_err_sys(err, errno, "%s: cannot create directory", p);
                break;
            }
            *s = c;
            if (!c) break;
        }
    }
    free(p);
    if (rc == 0 && !sd_fs_is_dir(path)) rc = sd_err(err, SD_EIO, "%s: exists and is not a directory", path);
    return rc;
}
