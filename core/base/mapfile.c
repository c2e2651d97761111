#include "mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int sd_mapfile_open(sd_mapfile *m, const char *path, sd_error *err) {
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sd_err(err, errno == ENOENT ? SD_ENOTFOUND : SD_EIO, "%s: %s", path, strerror(errno));
    struct stat sb;
    int rc = 0;
    if (fstat(fd, &sb) < 0) rc = sd_err(err, SD_EIO, "%s: %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode)) rc = sd_err(err, SD_EINPUT, "%s: not a regular file", path);
    if (rc == 0 && sb.st_size > 0) {
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) rc = sd_err(err, SD_EIO, "%s: cannot map file: %s", path, strerror(errno));
        else {
            m->data = p;
            m->size = (size_t)sb.st_size;
        }
    }
    close(fd);
    if (rc == 0) {
        m->path = strdup(path);
        if (!m->path) rc = sd_err(err, SD_ENOMEM, "out of memory");
    }
    if (rc < 0) sd_mapfile_close(m);
    return rc;
}

size_t sd_map_release(const void *p, size_t n) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = (uintptr_t)p, hi = lo + n;
    uintptr_t a = (lo + page - 1) & ~(page - 1), b = hi & ~(page - 1);
    if (b <= a) return 0;
    return madvise((void *)a, b - a, MADV_DONTNEED) == 0 ? b - a : 0;
}

void sd_mapfile_close(sd_mapfile *m) {
    if (m->data) munmap((void *)m->data, m->size);
    free(m->path);
    memset(m, 0, sizeof *m);
}
