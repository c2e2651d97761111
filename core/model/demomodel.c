/* demomodel.c - writes the embedded demo model (demomodel.h) as a diffusers folder. */
#include "demomodel.h"

#include <stdlib.h>
#include <string.h>

#include "fsutil.h"

int sd_demo_model_write(const char *dir, sd_error *err) {
    if (sd_demo_model_file_count == 0)
        return sd_err(err, SD_EINTERNAL, "this build carries no demo model (scripts/demo-model/ was empty when it was built)");
    for (int i = 0; i < sd_demo_model_file_count; i++) {
        const sd_embedded_file *f = &sd_demo_model_files[i];
        char *path = sd_fs_path_join(dir, f->path);
        if (!path) return sd_err(err, SD_ENOMEM, "out of memory");
        /* the file's folder: path up to its last '/' */
        char *slash = strrchr(path, '/');
        int rc = 0;
        if (slash) {
            *slash = 0;
            rc = sd_fs_mkdirs(path, err);
            *slash = '/';
        }
        sd_fs_atomic_file af;
        if (rc == 0) rc = sd_fs_atomic_open(&af, path, err);
        if (rc == 0) {
            rc = sd_fs_atomic_write(&af, f->start, (size_t)(f->end - f->start), err);
            if (rc == 0) rc = sd_fs_atomic_commit(&af, err);
            else sd_fs_atomic_abort(&af);
        }
        free(path);
        if (rc < 0) return rc;
    }
    return 0;
}
