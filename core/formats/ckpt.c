#include "ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pickle.h"
#include "zipread.h"

/* One storage named by a persistent id ('storage', type, key, location, numel[, view]). */
typedef struct storage_rec {
    const char *key;
    sd_dtype dtype;
    int64_t numel;
    const char *view_of;  /* legacy only: root storage key of a view, else NULL */
    int64_t view_offset;  /* in elements */
    const unsigned char *data; /* resolved bytes (numel elements), NULL until resolved */
} storage_rec;

typedef struct loader {
    sd_ckpt *c;
    const char *path;
    sd_error *err;
    pk_doc doc;
    storage_rec *recs; /* sorted by key, unique */
    size_t nrecs;
    /* zip only */
    sd_zip zip;
    char *prefix; /* "archive/" */
} loader;

/* ------------------------------------------------------------ persistent ids */

static int cmp_rec(const void *a, const void *b) {
    return strcmp(((const storage_rec *)a)->key, ((const storage_rec *)b)->key);
}

static storage_rec *find_rec(const loader *L, const char *key) {
    storage_rec k = {.key = key};
    return bsearch(&k, L->recs, L->nrecs, sizeof k, cmp_rec);
}

static int get_i64(const pk_obj *o, int64_t *x) {
    if (!o || o->kind != PK_INT || o->u.i.big) return -1;
    *x = o->u.i.v;
    return 0;
}

/* Parses a persistent id into rec; fails naming the problem. */
static int parse_pid(loader *L, const pk_obj *pid, storage_rec *rec) {
    char d[160];
    if (pid->kind != PK_TUPLE || pid->u.seq.n < 5)
        return sd_err(L->err, SD_EINPUT,
                      "%s: persistent id is a %s, expected ('storage', type, key, location, numel)", L->path,
                      pk_describe(pid, d, sizeof d));
    pk_obj *const *it = pid->u.seq.items;
    if (it[0]->kind != PK_STR || strcmp(it[0]->u.str.s, "storage"))
        return sd_err(L->err, SD_EUNSUPPORTED, "%s: persistent id of kind %s is not a storage", L->path,
                      it[0]->kind == PK_STR ? it[0]->u.str.s : pk_describe(it[0], d, sizeof d));
    if (it[1]->kind != PK_GLOBAL || it[1]->u.global.id != PK_G_STORAGE_TYPE)
        return sd_err(L->err, SD_EUNSUPPORTED, "%s: storage type %s is not supported", L->path,
                      pk_describe(it[1], d, sizeof d));
    if (it[2]->kind != PK_STR) return sd_err(L->err, SD_EINPUT, "%s: storage key is not a string", L->path);
    memset(rec, 0, sizeof *rec);
    rec->key = it[2]->u.str.s;
    rec->dtype = it[1]->u.global.dtype;
    if (get_i64(it[4], &rec->numel) < 0 || rec->numel < 0 || rec->numel > ((int64_t)1 << 50))
        return sd_err(L->err, SD_EINPUT, "%s: storage '%s' has a bad element count", L->path, rec->key);
    if (pid->u.seq.n >= 6 && it[5]->kind != PK_NONE) {
        /* legacy view: (view_key, offset, view_size) into the root storage `key` */
        const pk_obj *vm = it[5];
        int64_t off, size;
        if (vm->kind != PK_TUPLE || vm->u.seq.n != 3 || vm->u.seq.items[0]->kind != PK_STR ||
            get_i64(vm->u.seq.items[1], &off) < 0 || get_i64(vm->u.seq.items[2], &size) < 0 || off < 0 || size < 0 ||
            off > rec->numel || size > rec->numel - off)
            return sd_err(L->err, SD_EINPUT, "%s: storage '%s' has broken view metadata", L->path, rec->key);
        rec->view_of = rec->key;
        rec->key = vm->u.seq.items[0]->u.str.s;
        rec->view_offset = off;
        rec->numel = size;
    }
    return 0;
}

/* Gathers every storage the stream mentions (all PK_PERSID objects), sorted and de-duplicated. */
static int collect_storages(loader *L) {
    size_t n = 0;
    for (size_t i = 0; i < L->doc.nobjs; i++) n += L->doc.objs[i]->kind == PK_PERSID;
    L->recs = calloc(n ? n : 1, sizeof *L->recs);
    if (!L->recs) return sd_err(L->err, SD_ENOMEM, "%s: out of memory", L->path);
    for (size_t i = 0; i < L->doc.nobjs; i++) {
        const pk_obj *o = L->doc.objs[i];
        if (o->kind != PK_PERSID) continue;
        int rc = parse_pid(L, o->u.persid.pid, &L->recs[L->nrecs]);
        if (rc < 0) return rc;
        L->nrecs++;
    }
    qsort(L->recs, L->nrecs, sizeof *L->recs, cmp_rec);
    size_t u = 0;
    for (size_t i = 0; i < L->nrecs; i++) {
        if (u && !strcmp(L->recs[u - 1].key, L->recs[i].key)) {
            const storage_rec *a = &L->recs[u - 1], *b = &L->recs[i];
            if (a->dtype != b->dtype || a->numel != b->numel)
                return sd_err(L->err, SD_EINPUT, "%s: storage '%s' is described twice with different types or sizes",
                              L->path, a->key);
            continue;
        }
        L->recs[u++] = L->recs[i];
    }
    L->nrecs = u;
    return 0;
}

/* ------------------------------------------------------------ storage bytes */

/* zip: "<prefix>data/<key>", a view into the mapping or an inflated copy. */
static int resolve_zip(loader *L, storage_rec *r) {
    if (r->data || r->numel == 0) return 0;
    char name[512];
    snprintf(name, sizeof name, "%sdata/%s", L->prefix, r->key);
    const sd_zip_entry *e = sd_zip_find(&L->zip, name);
    if (!e) return sd_err(L->err, SD_EINPUT, "%s: storage '%s' is missing (no archive member '%s')", L->path, r->key, name);
    uint64_t need = (uint64_t)r->numel * sd_dtype_size(r->dtype);
    if (e->size < need)
        return sd_err(L->err, SD_EINPUT, "%s: storage '%s' needs %llu bytes (%lld %s elements) but '%s' has %llu",
                      L->path, r->key, (unsigned long long)need, (long long)r->numel, sd_dtype_name(r->dtype), name,
                      (unsigned long long)e->size);
    const void *p;
    void *owned;
    int rc = sd_zip_read(&L->zip, e, 0, &p, &owned, L->err);
    if (rc < 0) return rc;
    if (owned) {
        void **n = realloc(L->c->owned, (size_t)(L->c->nowned + 1) * sizeof *n);
        if (!n) {
            free(owned);
            return sd_err(L->err, SD_ENOMEM, "%s: out of memory", L->path);
        }
        L->c->owned = n;
        L->c->owned[L->c->nowned++] = owned;
    }
    r->data = p;
    return 0;
}

/*
 * legacy: after the key list come the storages in that order, each as an
 * 8-byte little-endian element count and the raw bytes.
 */
static int resolve_legacy(loader *L, const pk_obj *keys, size_t pos) {
    const unsigned char *d = L->c->map.data;
    size_t size = L->c->map.size;
    if (!keys || keys->kind != PK_LIST)
        return sd_err(L->err, SD_EINPUT, "%s: the storage key list of the legacy format is missing", L->path);
    for (size_t i = 0; i < keys->u.seq.n; i++) {
        const pk_obj *k = keys->u.seq.items[i];
        if (k->kind != PK_STR) return sd_err(L->err, SD_EINPUT, "%s: storage key %zu is not a string", L->path, i);
        storage_rec *r = find_rec(L, k->u.str.s);
        if (!r || r->view_of)
            return sd_err(L->err, SD_EINPUT, "%s: storage '%s' is listed but no tensor uses it", L->path, k->u.str.s);
        if (size - pos < 8)
            return sd_err(L->err, SD_EINPUT, "%s: file ends before storage '%s'; truncated?", L->path, r->key);
        uint64_t count = 0;
        for (int b = 7; b >= 0; b--) count = (count << 8) | d[pos + (size_t)b];
        pos += 8;
        if (count != (uint64_t)r->numel)
            return sd_err(L->err, SD_EINPUT, "%s: storage '%s' has %llu elements in the file, %lld in its id",
                          L->path, r->key, (unsigned long long)count, (long long)r->numel);
        uint64_t nbytes = count * sd_dtype_size(r->dtype);
        if (nbytes > size - pos)
            return sd_err(L->err, SD_EINPUT, "%s: storage '%s' (%llu bytes) runs past the end of the file; truncated?",
                          L->path, r->key, (unsigned long long)nbytes);
        r->data = d + pos;
        pos += (size_t)nbytes;
    }
    /* views share their root's bytes */
    for (size_t i = 0; i < L->nrecs; i++) {
        storage_rec *r = &L->recs[i];
        if (!r->view_of) continue;
        const storage_rec *root = find_rec(L, r->view_of);
        if (!root || !root->data)
            return sd_err(L->err, SD_EINPUT, "%s: storage view '%s' refers to unknown storage '%s'", L->path, r->key,
                          r->view_of);
        if (root->dtype != r->dtype || r->view_offset + r->numel > root->numel)
            return sd_err(L->err, SD_EINPUT, "%s: storage view '%s' does not fit storage '%s'", L->path, r->key,
                          r->view_of);
        r->data = root->data + (size_t)r->view_offset * sd_dtype_size(r->dtype);
    }
    for (size_t i = 0; i < L->nrecs; i++)
        if (!L->recs[i].data && L->recs[i].numel)
            return sd_err(L->err, SD_EINPUT, "%s: storage '%s' is used but its data is not in the file", L->path,
                          L->recs[i].key);
    return 0;
}

/* ------------------------------------------------------------ tensors */

/* The sd_tensor view of a rebuilt tensor: contiguous, inside its storage. */
static int make_tensor(loader *L, const char *name, const pk_obj *t, sd_tensor *out) {
    const pk_obj *pid = t->u.tensor.storage->u.persid.pid;
    storage_rec key;
    int rc = parse_pid(L, pid, &key);
    if (rc < 0) return rc;
    storage_rec *r = find_rec(L, key.key);
    if (!r) return sd_err(L->err, SD_EINTERNAL, "%s: storage '%s' vanished", L->path, key.key);
    if (!L->c->legacy && (rc = resolve_zip(L, r)) < 0) return rc;
    memset(out, 0, sizeof *out);
    out->dtype = r->dtype;
    out->ndim = t->u.tensor.ndim;
    int64_t numel = 1, expect = 1;
    const int64_t *shape = t->u.tensor.shape, *stride = t->u.tensor.stride;
    for (int i = 0; i < out->ndim; i++) {
        out->shape[i] = shape[i];
        if (shape[i] && numel > ((int64_t)1 << 50) / shape[i])
            return sd_err(L->err, SD_EINPUT, "%s: tensor '%s' has an absurd shape", L->path, name);
        numel *= shape[i];
    }
    if (numel > 0) {
        for (int i = out->ndim - 1; i >= 0; i--) {
            if (shape[i] != 1 && stride[i] != expect) {
                char sh[128], st[128];
                return sd_err(L->err, SD_EUNSUPPORTED,
                              "%s: tensor '%s' (shape %s) has strides %s and is not contiguous; save it with "
                              ".contiguous() first",
                              L->path, name, sd_tensor_shape_str(sh, sizeof sh, shape, out->ndim),
                              sd_tensor_shape_str(st, sizeof st, stride, out->ndim));
            }
            expect *= shape[i];
        }
    }
    int64_t off = t->u.tensor.offset;
    if (off > r->numel || numel > r->numel - off)
        return sd_err(L->err, SD_EINPUT,
                      "%s: tensor '%s' needs elements %lld..%lld of storage '%s', which has only %lld; the file is "
                      "corrupt",
                      L->path, name, (long long)off, (long long)(off + numel), r->key, (long long)r->numel);
    size_t es = sd_dtype_size(r->dtype);
    out->nbytes = (size_t)numel * es;
    out->data = numel ? r->data + (size_t)off * es : (const void *)"";
    return 0;
}

/* Picks the state dict and turns its tensor entries into the table c->all. */
static int build_table(loader *L) {
    char d[160];
    const pk_obj *root = L->doc.root, *sdict = root;
    if (!root || root->kind != PK_DICT)
        return sd_err(L->err, SD_EUNSUPPORTED, "%s: the checkpoint holds a %s, not a dict of tensors", L->path,
                      pk_describe(root, d, sizeof d));
    const pk_obj *inner = pk_dict_get(root, "state_dict");
    if (inner && inner->kind == PK_DICT) sdict = inner;
    size_t n = sdict->u.dict.n;
    const char **names = calloc(n ? n : 1, sizeof *names);
    sd_tensor *ts = calloc(n ? n : 1, sizeof *ts);
    const sd_tensor **tp = calloc(n ? n : 1, sizeof *tp);
    int rc = 0;
    if (!names || !ts || !tp) rc = sd_err(L->err, SD_ENOMEM, "%s: out of memory", L->path);
    int nt = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const pk_obj *k = sdict->u.dict.keys[i], *v = sdict->u.dict.vals[i];
        if (k->kind != PK_STR) continue; /* not a parameter name */
        if (v->kind == PK_OPAQUE || v->kind == PK_GLOBAL || v->kind == PK_PERSID) {
            rc = sd_err(L->err, SD_EUNSUPPORTED,
                        "%s: entry '%s' of the state dict is a %s, which is not a plain tensor; this reader does not "
                        "execute code from checkpoints",
                        L->path, k->u.str.s, pk_describe(v, d, sizeof d));
            break;
        }
        if (v->kind != PK_TENSOR) continue; /* numbers, strings, nested containers */
        rc = make_tensor(L, k->u.str.s, v, &ts[nt]);
        names[nt] = k->u.str.s;
        tp[nt] = &ts[nt];
        nt++;
    }
    if (rc == 0) rc = sd_weights_from_list(&L->c->all, names, tp, nt, L->path, L->err);
    free(names);
    free(ts);
    free(tp);
    return rc;
}

/* ------------------------------------------------------------ formats */

static int open_zip(loader *L) {
    sd_ckpt *c = L->c;
    int rc = sd_zip_open(&L->zip, c->map.data, c->map.size, L->path, L->err);
    if (rc < 0) return rc;
    const sd_zip_entry *pkl = NULL;
    for (int i = 0; i < L->zip.n && !pkl; i++) {
        const char *nm = L->zip.entries[i].name, *slash = strchr(nm, '/');
        if (slash && !strcmp(slash + 1, "data.pkl")) pkl = &L->zip.entries[i];
        else if (!strcmp(nm, "data.pkl")) pkl = &L->zip.entries[i];
    }
    if (!pkl)
        return sd_err(L->err, SD_EINPUT, "%s: a ZIP archive without '<name>/data.pkl'; not a PyTorch checkpoint",
                      L->path);
    size_t plen = strlen(pkl->name) - strlen("data.pkl");
    L->prefix = strndup(pkl->name, plen);
    if (!L->prefix) return sd_err(L->err, SD_ENOMEM, "out of memory");
    char name[512];
    snprintf(name, sizeof name, "%sbyteorder", L->prefix);
    const sd_zip_entry *bo = sd_zip_find(&L->zip, name);
    if (bo) {
        const void *p;
        void *owned;
        if ((rc = sd_zip_read(&L->zip, bo, 1, &p, &owned, L->err)) < 0) return rc;
        int big = bo->size >= 3 && !memcmp(p, "big", 3);
        free(owned);
        if (big) return sd_err(L->err, SD_EUNSUPPORTED, "%s: big-endian checkpoints are not supported", L->path);
    }
    const void *pdata;
    void *powned;
    if ((rc = sd_zip_read(&L->zip, pkl, 1, &pdata, &powned, L->err)) < 0) return rc;
    char label[600];
    snprintf(label, sizeof label, "%s: %s", L->path, pkl->name);
    rc = pk_load(&L->doc, pdata, (size_t)pkl->size, label, NULL, L->err);
    free(powned);
    if (rc == 0) rc = collect_storages(L);
    if (rc == 0) rc = build_table(L);
    return rc;
}

/* 0x1950a86a20f9469cfc6c, torch's legacy magic number, little-endian. */
static const unsigned char legacy_magic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

static int open_legacy(loader *L) {
    sd_ckpt *c = L->c;
    const unsigned char *d = c->map.data;
    size_t size = c->map.size, pos = 0, used = 0;
    char label[600];
    pk_doc hdr;
    int rc;
    /* 1: magic number, 2: protocol version, 3: sys info */
    const char *what[3] = {"magic number", "protocol version", "system info"};
    for (int k = 0; k < 3; k++) {
        snprintf(label, sizeof label, "%s: legacy %s", L->path, what[k]);
        if ((rc = pk_load(&hdr, d + pos, size - pos, label, &used, L->err)) < 0) return rc;
        pos += used;
        const pk_obj *r = hdr.root;
        const pk_obj *le = k == 2 ? pk_dict_get(r, "little_endian") : NULL;
        if (k == 0 && !(r->kind == PK_INT && r->u.i.big && r->u.i.nbytes == 10 &&
                        !memcmp(r->u.i.bytes, legacy_magic, 10)))
            rc = sd_err(L->err, SD_EINPUT, "%s: a pickle, but not a PyTorch checkpoint (wrong magic number)", L->path);
        else if (k == 1 && !(r->kind == PK_INT && !r->u.i.big && r->u.i.v == 1001))
            rc = sd_err(L->err, SD_EUNSUPPORTED, "%s: legacy checkpoint protocol is not 1001", L->path);
        else if (k == 2 && !(le && le->kind == PK_BOOL && le->u.b))
            rc = sd_err(L->err, SD_EUNSUPPORTED, "%s: big-endian (or unlabelled) legacy checkpoints are not supported",
                        L->path);
        pk_doc_free(&hdr);
        if (rc < 0) return rc;
    }
    snprintf(label, sizeof label, "%s: legacy main pickle", L->path);
    if ((rc = pk_load(&L->doc, d + pos, size - pos, label, &used, L->err)) < 0) return rc;
    pos += used;
    pk_doc keys;
    snprintf(label, sizeof label, "%s: legacy storage keys", L->path);
    if ((rc = pk_load(&keys, d + pos, size - pos, label, &used, L->err)) < 0) return rc;
    pos += used;
    rc = collect_storages(L);
    if (rc == 0) rc = resolve_legacy(L, keys.root, pos);
    pk_doc_free(&keys);
    if (rc == 0) rc = build_table(L);
    return rc;
}

int sd_ckpt_sniff(const void *head, size_t n) {
    const unsigned char *p = head;
    if (n >= 4 && !memcmp(p, "PK\x03\x04", 4)) return 1;
    if (n >= 2 && p[0] == 0x80 && p[1] >= 2 && p[1] <= 5) return 1;
    return 0;
}

int sd_ckpt_open(sd_ckpt *c, const char *path, sd_error *err) {
    memset(c, 0, sizeof *c);
    int rc = sd_mapfile_open(&c->map, path, err);
    if (rc < 0) return rc;
    loader L;
    memset(&L, 0, sizeof L);
    L.c = c;
    L.path = path;
    L.err = err;
    const unsigned char *p = c->map.data;
    size_t n = c->map.size;
    if (n >= 4 && !memcmp(p, "PK\x03\x04", 4)) {
        rc = open_zip(&L);
    } else if (n >= 2 && p[0] == 0x80) {
        c->legacy = 1;
        rc = open_legacy(&L);
    } else if (n >= 262 && !memcmp(p + 257, "ustar", 5)) {
        rc = sd_err(err, SD_EUNSUPPORTED, "%s: tar-format PyTorch checkpoints (before 0.4) are not supported", path);
    } else {
        rc = sd_err(err, SD_EINPUT, "%s: not a PyTorch checkpoint (neither a ZIP archive nor a pickle)", path);
    }
    pk_doc_free(&L.doc);
    free(L.recs);
    free(L.prefix);
    sd_zip_close(&L.zip);
    if (rc < 0) sd_ckpt_close(c);
    return rc;
}

void sd_ckpt_close(sd_ckpt *c) {
    sd_weights_free(&c->all);
    for (int i = 0; i < c->nowned; i++) free(c->owned[i]);
    free(c->owned);
    sd_mapfile_close(&c->map);
    memset(c, 0, sizeof *c);
}

const sd_tensor *sd_ckpt_find(const sd_ckpt *c, const char *name) { return sd_weights_find(&c->all, name); }

int sd_ckpt_to_weights(sd_weights *w, const sd_ckpt *c, const char *prefix, const char *label, sd_error *err) {
    size_t pl = prefix ? strlen(prefix) : 0;
    int n = c->all.n;
    const char **names = malloc((n ? (size_t)n : 1) * sizeof *names);
    const sd_tensor **ts = malloc((n ? (size_t)n : 1) * sizeof *ts);
    if (!names || !ts) {
        free(names);
        free(ts);
        return sd_err(err, SD_ENOMEM, "out of memory");
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (pl && strncmp(c->all.tensors[i].name, prefix, pl)) continue;
        names[k] = c->all.tensors[i].name + pl;
        ts[k] = &c->all.tensors[i];
        k++;
    }
    int rc = sd_weights_from_list(w, names, ts, k, label ? label : c->map.path, err);
    free(names);
    free(ts);
    return rc;
}
