/*
 * strmap.h - a hash table from byte strings to int32 values.
 *
 * Open addressing with linear probing; keys are copied into the table's own
 * storage (they may contain NUL bytes). Used by the tokenizer for its
 * vocabulary (token -> id) and its word cache; usable by anything that needs
 * a name -> index table.
 *
 *     strmap m;
 *     strmap_init(&m);
 *     if (strmap_put(&m, "cat", 3, 7) < 0) ...;   // SD_ENOMEM
 *     int32_t v;
 *     if (strmap_get(&m, "cat", 3, &v)) ...;      // found: v == 7
 *     strmap_free(&m);
 */
#ifndef SD_STRMAP_H
#define SD_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct strmap_slot {
    uint64_t hash;   /* 0: empty */
    size_t key;      /* offset of the key in `keys` */
    uint32_t len;
    int32_t value;
} strmap_slot;

typedef struct strmap {
    strmap_slot *slots;
    size_t cap;      /* power of two (0 before the first put) */
    size_t count;
    char *keys;      /* all keys, back to back */
    size_t keys_len, keys_cap;
} strmap;

void strmap_init(strmap *m);
void strmap_free(strmap *m);
/* Removes every entry, keeping the memory. */
void strmap_clear(strmap *m);

/* 1 and *value when key is present, else 0. */
int strmap_get(const strmap *m, const void *key, size_t len, int32_t *value);

/* Inserts or overwrites; returns 0, or SD_ENOMEM (the table is unchanged then). */
int strmap_put(strmap *m, const void *key, size_t len, int32_t value);

/* Bytes of the table's memory (for cache limits). */
size_t strmap_bytes(const strmap *m);

#endif
