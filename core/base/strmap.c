#include "strmap.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

/* FNV-1a, never 0 (0 marks an empty slot). */
static uint64_t hash_bytes(const void *key, size_t len) {
    const unsigned char *p = key;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h ? h : 1;
}

void strmap_init(strmap *m) { memset(m, 0, sizeof *m); }

void strmap_free(strmap *m) {
    free(m->slots);
    free(m->keys);
    memset(m, 0, sizeof *m);
}

void strmap_clear(strmap *m) {
    if (m->slots) memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->count = 0;
    m->keys_len = 0;
}

/* The slot holding key, or the empty slot where it would go. */
static strmap_slot *find_slot(const strmap *m, const void *key, size_t len, uint64_t h) {
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        strmap_slot *s = &m->slots[i];
        if (s->hash == 0) return s;
        if (s->hash == h && s->len == len && (len == 0 || memcmp(m->keys + s->key, key, len) == 0)) return s;
    }
}

int strmap_get(const strmap *m, const void *key, size_t len, int32_t *value) {
    if (m->cap == 0) return 0;
    const strmap_slot *s = find_slot(m, key, len, hash_bytes(key, len));
    if (s->hash == 0) return 0;
    if (value) *value = s->value;
    return 1;
}

static int grow_slots(strmap *m) {
    size_t ncap = m->cap ? 2 * m->cap : 64;
    strmap_slot *ns = calloc(ncap, sizeof *ns);
    if (!ns) return SD_ENOMEM;
    strmap old = *m;
    m->slots = ns;
    m->cap = ncap;
    for (size_t i = 0; i < old.cap; i++) {
        if (old.slots[i].hash == 0) continue;
        size_t mask = ncap - 1, j = (size_t)old.slots[i].hash & mask;
        while (ns[j].hash) j = (j + 1) & mask;
        ns[j] = old.slots[i];
    }
    free(old.slots);
    return 0;
}

int strmap_put(strmap *m, const void *key, size_t len, int32_t value) {
    if (len > UINT32_MAX) return SD_ENOMEM;
    if ((m->count + 1) * 2 > m->cap && grow_slots(m) < 0) return SD_ENOMEM;
    uint64_t h = hash_bytes(key, len);
    strmap_slot *s = find_slot(m, key, len, h);
    if (s->hash) {
        s->value = value;
        return 0;
    }
    if (m->keys_len + len > m->keys_cap) {
        size_t ncap = m->keys_cap ? m->keys_cap : 1024;
        while (ncap < m->keys_len + len) ncap *= 2;
        char *nk = realloc(m->keys, ncap);
        if (!nk) return SD_ENOMEM;
        m->keys = nk;
        m->keys_cap = ncap;
    }
    if (len) memcpy(m->keys + m->keys_len, key, len);
    s->hash = h;
    s->key = m->keys_len;
    s->len = (uint32_t)len;
    s->value = value;
    m->keys_len += len;
    m->count++;
    return 0;
}

size_t strmap_bytes(const strmap *m) { return m->cap * sizeof(strmap_slot) + m->keys_cap; }
