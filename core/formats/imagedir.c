#include "imagedir.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fsutil.h"

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_png_name(const char *name) {
    size_t n = strlen(name);
    return name[0] != '.' && n > 4 && !strcasecmp(name + n - 4, ".png");
}

void sd_imagedir_free(char **paths, int n) {
    for (int i = 0; i < n && paths; i++) free(paths[i]);
    free(paths);
}

int sd_imagedir_list(const char *dir, char ***paths, int *n, sd_error *err) {
    *paths = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        return sd_err(err, e == ENOENT ? SD_ENOTFOUND : e == ENOTDIR ? SD_EINPUT : SD_EIO, "%s: %s", dir,
                      e == ENOENT ? "no such folder" : strerror(e));
    }
    char **names = NULL;
    int cnt = 0, cap = 0, rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (!is_png_name(e->d_name)) continue;
        if (cnt == cap) {
            int nc = cap ? 2 * cap : 256;
            char **nn = realloc(names, (size_t)nc * sizeof *nn);
            if (!nn) {
                rc = sd_err(err, SD_ENOMEM, "%s: out of memory listing files", dir);
                break;
            }
            names = nn;
            cap = nc;
        }
        names[cnt] = sd_fs_path_join(dir, e->d_name);
        if (!names[cnt]) {
            rc = sd_err(err, SD_ENOMEM, "%s: out of memory listing files", dir);
            break;
        }
        if (!sd_fs_is_file(names[cnt])) { /* a folder or socket named *.png */
            free(names[cnt]);
            continue;
        }
        cnt++;
    }
    closedir(d);
    if (rc == 0 && cnt == 0) rc = sd_err(err, SD_EINPUT, "%s: no .png files in this folder", dir);
    if (rc < 0) {
        sd_imagedir_free(names, cnt);
        return rc;
    }
    qsort(names, (size_t)cnt, sizeof *names, by_name);
    *paths = names;
    *n = cnt;
    return 0;
}
