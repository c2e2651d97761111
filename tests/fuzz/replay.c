/*
 * replay.c - main() for the fuzz harnesses without libFuzzer (make check).
 *
 *   build/fuzz-replay/fuzz_NAME FILE_OR_FOLDER...
 *
 * Runs LLVMFuzzerTestOneInput once on each file (a folder: on each file in
 * it, in name order). A crash or a failed property aborts, as under
 * libFuzzer; with SANITIZE=1 ASan and UBSan watch every input. The
 * out-of-memory finds are caught as libFuzzer's -malloc_limit_mb does: the
 * Makefile links this program with -Wl,--wrap=malloc,... so every allocation
 * by sdrender's own code (the static libraries) passes through the wrappers
 * below, which abort on one over REPLAY_MAX_ALLOC (no input here needs that
 * much; a reader that asks for it trusted a size field). scripts/fuzz-replay.sh
 * adds a time limit per harness for the hangs.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzzutil.h"

#define REPLAY_MAX_ALLOC ((size_t)256 << 20)

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);

static void check_alloc(const char *fn, size_t n) {
    if (n <= REPLAY_MAX_ALLOC) return;
    fprintf(stderr, "replay: %s(%zu): an allocation over %zu MiB from a small input\n", fn, n, REPLAY_MAX_ALLOC >> 20);
    abort();
}

void *__wrap_malloc(size_t n) {
    check_alloc("malloc", n);
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size) {
    check_alloc("calloc", size && n > SIZE_MAX / size ? SIZE_MAX : n * size);
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n) {
    check_alloc("realloc", n);
    return __real_realloc(p, n);
}

/* Reads path whole and runs the harness on it; returns 0, or -1 when it cannot be read. */
static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, n = 0, got;
    unsigned char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            unsigned char *b = realloc(buf, cap *= 2);
            if (!b) free(buf);
            buf = b;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "%s: out of memory\n", path);
        return -1;
    }
    /* a copy of exactly n bytes, so ASan sees reads past the input as libFuzzer would */
    unsigned char *exact = malloc(n ? n : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays every regular file directly in dir, in name order; returns how many, or -1. */
static int replay_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            char **p = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *p);
            if (!p) { rc = -1; break; }
            names = p;
        }
        if (!(names[n] = malloc(strlen(dir) + strlen(e->d_name) + 2))) { rc = -1; break; }
        sprintf(names[n++], "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, by_name);
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (rc == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            if (replay_file(names[i]) < 0) rc = -1;
            else count++;
        }
        free(names[i]);
    }
    free(names);
    return rc < 0 ? -1 : count;
}

int main(int argc, char **argv) {
    int total = 0;
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 1;
        }
        int n = S_ISDIR(st.st_mode) ? replay_dir(argv[i]) : replay_file(argv[i]) == 0 ? 1 : -1;
        if (n < 0) return 1;
        total += n;
    }
    printf("%s: %d inputs replayed\n", argv[0], total);
    return 0;
}
