/*
 * imagedir.h - the PNG files of a folder, in a fixed order.
 *
 * `sdrender stats` and `sdrender metrics` read image sets as folders. The
 * order is the byte order of the file names (strcmp, like Python's sorted()
 * on ASCII names), so a folder always gives the same feature matrix. Only
 * regular files (or links to them) directly in the folder whose names end in
 * ".png" (any case) count; subfolders, hidden files (".name") and anything
 * else are ignored.
 */
#ifndef SD_IMAGEDIR_H
#define SD_IMAGEDIR_H

#include "err.h"

/* *paths gets *n "dir/name" strings (free with sd_imagedir_free); a folder without PNGs is an error. */
int sd_imagedir_list(const char *dir, char ***paths, int *n, sd_error *err);
void sd_imagedir_free(char **paths, int n);

#endif
