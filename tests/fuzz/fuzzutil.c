#include "fuzzutil.h"

#include "tensor.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

volatile unsigned fuzz_sink;

static char dir[512];

/* Removes the private folder and the files in it (no subfolders are made). */
static void remove_dir(void) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[1024];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

const char *fuzz_dir(void) {
    if (dir[0]) return dir;
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/sdfuzz-XXXXXX", base);
    if (!mkdtemp(dir)) fuzz_fail("cannot make a folder under %s", base);
    atexit(remove_dir);
    return dir;
}

const char *fuzz_file(const char *name, const void *data, size_t size) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) fuzz_fail("cannot write %s", path);
    return path;
}

char *fuzz_strndup(const void *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) fuzz_fail("out of memory");
    if (size) memcpy(s, data, size);
    s[size] = 0;
    return s;
}

int fuzz_split(const uint8_t *data, size_t size, const uint8_t **parts, size_t *lens, int max) {
    static const char sep[] = "\n%%\n";
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; n < max - 1 && i + 4 <= size; i++) {
        if (memcmp(data + i, sep, 4)) continue;
        parts[n] = data + start;
        lens[n++] = i - start;
        start = i + 4;
        i += 3;
    }
    parts[n] = data + start;
    lens[n++] = size - start;
    return n;
}

void fuzz_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

unsigned fuzz_touch_tensor(const struct sd_tensor *t) {
    int64_t numel = sd_tensor_numel(t);
    if (t->ndim < 0 || t->ndim > SD_MAX_DIMS) fuzz_fail("tensor '%s': ndim %d", t->name ? t->name : "", t->ndim);
    if (numel < 0 || (uint64_t)numel * sd_dtype_size(t->dtype) != t->nbytes)
        fuzz_fail("tensor '%s': %lld elements of %zu bytes in a view of %zu bytes", t->name ? t->name : "",
                  (long long)numel, sd_dtype_size(t->dtype), t->nbytes);
    if (t->nbytes && !t->data) fuzz_fail("tensor '%s': no data", t->name ? t->name : "");
    const unsigned char *p = t->data;
    unsigned sum = 0;
    for (size_t i = 0; i < t->nbytes; i++) sum += p[i];
    return sum;
}
