/*
 * fsutil.h - small file helpers shared by every module.
 *
 * sd_atomic_*: write a file so that readers see either the old file or the
 * complete new one, never a torn one: data goes to "<path>.tmp.<pid>", is
 * fsync'ed, then renamed over path (and the directory is fsync'ed).
 */
#ifndef SD_FSUTIL_H
#define SD_FSUTIL_H

#include <stddef.h>
#include <stdio.h>

#include "err.h"

typedef struct sd_fs_atomic_file {
    FILE *fp;
    char *path;
    char *tmp;
} sd_fs_atomic_file;

int sd_fs_atomic_open(sd_fs_atomic_file *af, const char *path, sd_error *err);
int sd_fs_atomic_write(sd_fs_atomic_file *af, const void *buf, size_t n, sd_error *err);
/* Flushes, fsyncs and renames into place; always releases af. */
int sd_fs_atomic_commit(sd_fs_atomic_file *af, sd_error *err);
/* Removes the temporary file; releases af. */
void sd_fs_atomic_abort(sd_fs_atomic_file *af);

/* Reads a whole file into a new NUL-terminated buffer (caller frees); *len gets its size. */
int sd_fs_read_file(const char *path, char **out, size_t *len, sd_error *err);

/* "dir/name" in a new buffer (caller frees), or NULL when out of memory. */
char *sd_fs_path_join(const char *dir, const char *name);

/* 1 if path exists and is a regular file / a directory. */
int sd_fs_is_file(const char *path);
int sd_fs_is_dir(const char *path);

/* mkdir -p. */
int sd_fs_mkdirs(const char *path, sd_error *err);

#endif
