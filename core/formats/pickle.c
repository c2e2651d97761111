#include "pickle.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The virtual machine: a value stack, a stack of MARK positions and the memo. */
typedef struct vm {
    pk_doc *doc;
    const unsigned char *start, *p, *end;
    const char *label;
    sd_error *err;
    size_t op_off; /* offset of the opcode being executed */
    pk_obj **stack;
    size_t sp, scap;
    size_t *marks;
    size_t nmarks, mcap;
    pk_obj **memo;
    size_t memocap, memo_count;
} vm;

static int fail(vm *v, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(vm *v, int code, const char *fmt, ...) {
    char msg[SD_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sd_err(v->err, code, "%s: pickle offset %zu: %s", v->label, v->op_off, msg);
}

static int nomem(vm *v) { return fail(v, SD_ENOMEM, "out of memory"); }

/* ------------------------------------------------------------ objects */

static pk_obj *new_obj(vm *v, pk_kind kind) {
    pk_doc *d = v->doc;
    if (d->nobjs == d->capobjs) {
        size_t cap = d->capobjs ? d->capobjs * 2 : 256;
        pk_obj **n = realloc(d->objs, cap * sizeof *n);
        if (!n) return NULL;
        d->objs = n;
        d->capobjs = cap;
    }
    pk_obj *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->kind = kind;
    d->objs[d->nobjs++] = o;
    return o;
}

static void free_obj(pk_obj *o) {
    switch (o->kind) {
    case PK_INT: free((void *)o->u.i.bytes); break;
    case PK_STR:
    case PK_BYTES: free(o->u.str.s); break;
    case PK_TUPLE:
    case PK_LIST:
    case PK_SET: free(o->u.seq.items); break;
    case PK_DICT:
        free(o->u.dict.keys);
        free(o->u.dict.vals);
        break;
    case PK_GLOBAL:
        free(o->u.global.module);
        free(o->u.global.name);
        break;
    case PK_OPAQUE: free(o->u.opaque.what); break;
    default: break;
    }
    free(o);
}

void pk_doc_free(pk_doc *doc) {
    for (size_t i = 0; i < doc->nobjs; i++) free_obj(doc->objs[i]);
    free(doc->objs);
    memset(doc, 0, sizeof *doc);
}

static int seq_push(pk_obj *s, pk_obj *x) {
    if (s->u.seq.n == s->u.seq.cap) {
        size_t cap = s->u.seq.cap ? s->u.seq.cap * 2 : 4;
        pk_obj **n = realloc(s->u.seq.items, cap * sizeof *n);
        if (!n) return -1;
        s->u.seq.items = n;
        s->u.seq.cap = cap;
    }
    s->u.seq.items[s->u.seq.n++] = x;
    return 0;
}

static int dict_push(pk_obj *d, pk_obj *k, pk_obj *val) {
    if (d->u.dict.n == d->u.dict.cap) {
        size_t cap = d->u.dict.cap ? d->u.dict.cap * 2 : 8;
        pk_obj **nk = realloc(d->u.dict.keys, cap * sizeof *nk);
        if (!nk) return -1;
        d->u.dict.keys = nk;
        pk_obj **nv = realloc(d->u.dict.vals, cap * sizeof *nv);
        if (!nv) return -1;
        d->u.dict.vals = nv;
        d->u.dict.cap = cap;
    }
    d->u.dict.keys[d->u.dict.n] = k;
    d->u.dict.vals[d->u.dict.n] = val;
    d->u.dict.n++;
    return 0;
}

static pk_obj *new_str(vm *v, pk_kind kind, const unsigned char *s, size_t len) {
    pk_obj *o = new_obj(v, kind);
    if (!o) return NULL;
    o->u.str.s = malloc(len + 1);
    if (!o->u.str.s) return NULL;
    memcpy(o->u.str.s, s, len);
    o->u.str.s[len] = 0;
    o->u.str.len = len;
    return o;
}

static pk_obj *new_opaque(vm *v, const char *what) {
    pk_obj *o = new_obj(v, PK_OPAQUE);
    if (!o) return NULL;
    o->u.opaque.what = strdup(what);
    return o->u.opaque.what ? o : NULL;
}

/* ------------------------------------------------------------ stacks */

static int push(vm *v, pk_obj *o) {
    if (!o) return nomem(v);
    if (v->sp == v->scap) {
        size_t cap = v->scap ? v->scap * 2 : 64;
        pk_obj **n = realloc(v->stack, cap * sizeof *n);
        if (!n) return nomem(v);
        v->stack = n;
        v->scap = cap;
    }
    v->stack[v->sp++] = o;
    return 0;
}

static size_t base(const vm *v) { return v->nmarks ? v->marks[v->nmarks - 1] : 0; }

static int pop(vm *v, pk_obj **o) {
    if (v->sp <= base(v)) return fail(v, SD_EINPUT, "stack underflow (opcode 0x%02x)", v->start[v->op_off]);
    *o = v->stack[--v->sp];
    return 0;
}

static int top(vm *v, pk_obj **o) {
    if (v->sp <= base(v)) return fail(v, SD_EINPUT, "stack underflow (opcode 0x%02x)", v->start[v->op_off]);
    *o = v->stack[v->sp - 1];
    return 0;
}

static int push_mark(vm *v) {
    if (v->nmarks == v->mcap) {
        size_t cap = v->mcap ? v->mcap * 2 : 16;
        size_t *n = realloc(v->marks, cap * sizeof *n);
        if (!n) return nomem(v);
        v->marks = n;
        v->mcap = cap;
    }
    v->marks[v->nmarks++] = v->sp;
    return 0;
}

/* Pops back to the last MARK: the items above it are stack[*first .. *first + *n). */
static int pop_mark(vm *v, size_t *first, size_t *n) {
    if (!v->nmarks) return fail(v, SD_EINPUT, "MARK expected but none is open (opcode 0x%02x)", v->start[v->op_off]);
    size_t m = v->marks[--v->nmarks];
    *first = m;
    *n = v->sp - m;
    v->sp = m;
    return 0;
}

static int memo_put(vm *v, size_t idx, pk_obj *o) {
    /* A memo index never exceeds the number of objects a stream of this length can make. */
    if (idx > (size_t)(v->end - v->start)) return fail(v, SD_EINPUT, "memo index %zu is implausibly large", idx);
    if (idx >= v->memocap) {
        size_t cap = v->memocap ? v->memocap : 64;
        while (cap <= idx) cap *= 2;
        pk_obj **n = realloc(v->memo, cap * sizeof *n);
        if (!n) return nomem(v);
        memset(n + v->memocap, 0, (cap - v->memocap) * sizeof *n);
        v->memo = n;
        v->memocap = cap;
    }
    if (!v->memo[idx]) v->memo_count++;
    v->memo[idx] = o;
    return 0;
}

static int memo_get(vm *v, size_t idx) {
    if (idx >= v->memocap || !v->memo[idx]) return fail(v, SD_EINPUT, "memo index %zu was never stored", idx);
    return push(v, v->memo[idx]);
}

/* ------------------------------------------------------------ reading the stream */

static int need(vm *v, size_t n) {
    if ((size_t)(v->end - v->p) < n)
        return fail(v, SD_EINPUT, "stream ends inside an opcode argument (%zu bytes needed, %zu left); truncated?", n,
                    (size_t)(v->end - v->p));
    return 0;
}

static uint64_t le(const unsigned char *p, int n) {
    uint64_t x = 0;
    for (int i = n - 1; i >= 0; i--) x = (x << 8) | p[i];
    return x;
}

/* A newline-terminated argument of the text opcodes; *line is NUL-terminated in buf. */
static int read_line(vm *v, char *buf, size_t size) {
    const unsigned char *nl = memchr(v->p, '\n', (size_t)(v->end - v->p));
    if (!nl) return fail(v, SD_EINPUT, "text argument without a newline; truncated?");
    size_t n = (size_t)(nl - v->p);
    if (n >= size) return fail(v, SD_EINPUT, "text argument of %zu bytes is too long", n);
    memcpy(buf, v->p, n);
    buf[n] = 0;
    v->p = nl + 1;
    return 0;
}

/* A length-prefixed string or bytes argument (length of lenbytes bytes, little-endian). */
static int read_counted(vm *v, int lenbytes, pk_kind kind) {
    int rc = need(v, (size_t)lenbytes);
    if (rc < 0) return rc;
    uint64_t n = le(v->p, lenbytes);
    if (v->start[v->op_off] == 'T' && (n & 0x80000000u)) return fail(v, SD_EINPUT, "negative BINSTRING length");
    v->p += lenbytes;
    if (n > (uint64_t)(v->end - v->p))
        return fail(v, SD_EINPUT, "string of %llu bytes runs past the end of the stream; truncated?",
                    (unsigned long long)n);
    pk_obj *o = new_str(v, kind, v->p, (size_t)n);
    v->p += n;
    return push(v, o);
}

static int push_int(vm *v, int64_t x) {
    pk_obj *o = new_obj(v, PK_INT);
    if (o) o->u.i.v = x;
    return push(v, o);
}

/* LONG1/LONG4: n bytes of little-endian two's complement. */
static int read_long(vm *v, int lenbytes) {
    int rc = need(v, (size_t)lenbytes);
    if (rc < 0) return rc;
    uint64_t n = le(v->p, lenbytes);
    v->p += lenbytes;
    if (n > (uint64_t)(v->end - v->p))
        return fail(v, SD_EINPUT, "integer of %llu bytes runs past the end of the stream; truncated?",
                    (unsigned long long)n);
    pk_obj *o = new_obj(v, PK_INT);
    if (!o) return nomem(v);
    if (n <= 8) {
        uint64_t x = n ? le(v->p, (int)n) : 0;
        if (n && n < 8 && (v->p[n - 1] & 0x80)) x |= ~(uint64_t)0 << (8 * n); /* sign-extend */
        o->u.i.v = (int64_t)x;
    } else {
        unsigned char *b = malloc((size_t)n);
        if (!b) return nomem(v);
        memcpy(b, v->p, (size_t)n);
        o->u.i.big = 1;
        o->u.i.bytes = b;
        o->u.i.nbytes = (size_t)n;
    }
    v->p += n;
    return push(v, o);
}

/* ------------------------------------------------------------ globals and calls */

static const struct {
    const char *name;
    sd_dtype dtype;
} storage_types[] = {
    {"FloatStorage", SD_F32}, {"HalfStorage", SD_F16}, {"BFloat16Storage", SD_BF16}, {"DoubleStorage", SD_F64},
    {"LongStorage", SD_I64},  {"IntStorage", SD_I32},  {"ShortStorage", SD_I16},     {"CharStorage", SD_I8},
    {"ByteStorage", SD_U8},   {"BoolStorage", SD_BOOL},
};

static pk_obj *new_global(vm *v, const char *module, const char *name) {
    pk_obj *o = new_obj(v, PK_GLOBAL);
    if (!o) return NULL;
    o->u.global.module = strdup(module);
    o->u.global.name = strdup(name);
    if (!o->u.global.module || !o->u.global.name) return NULL;
    if (!strcmp(module, "torch._utils")) {
        if (!strcmp(name, "_rebuild_tensor_v2") || !strcmp(name, "_rebuild_tensor"))
            o->u.global.id = PK_G_REBUILD_TENSOR;
        else if (!strcmp(name, "_rebuild_parameter") || !strcmp(name, "_rebuild_parameter_with_state"))
            o->u.global.id = PK_G_REBUILD_PARAMETER;
    } else if (!strcmp(module, "torch") || !strcmp(module, "torch.cuda")) { /* CUDA storages load on the CPU */
        for (size_t i = 0; i < sizeof storage_types / sizeof storage_types[0]; i++)
            if (!strcmp(name, storage_types[i].name)) {
                o->u.global.id = PK_G_STORAGE_TYPE;
                o->u.global.dtype = storage_types[i].dtype;
            }
    } else if (!strcmp(module, "collections") && !strcmp(name, "OrderedDict")) {
        o->u.global.id = PK_G_ORDERED_DICT;
    }
    return o;
}

/* A placeholder for "callable(...)": remembers the callable's name only. */
static pk_obj *placeholder(vm *v, const pk_obj *callable) {
    char what[300];
    if (callable->kind == PK_GLOBAL)
        snprintf(what, sizeof what, "%s.%s", callable->u.global.module, callable->u.global.name);
    else
        snprintf(what, sizeof what, "result of calling a %s", pk_describe(callable, (char[128]){0}, 128));
    return new_opaque(v, what);
}

static int get_int(const pk_obj *o, int64_t *x) {
    if (!o || o->kind != PK_INT || o->u.i.big) return -1;
    *x = o->u.i.v;
    return 0;
}

static int int_tuple(vm *v, const pk_obj *t, const char *what, int64_t *out, int *n) {
    if (t->kind != PK_TUPLE && t->kind != PK_LIST)
        return fail(v, SD_EINPUT, "_rebuild_tensor_v2: %s is a %s, expected a tuple of ints", what,
                    pk_describe(t, (char[128]){0}, 128));
    if (t->u.seq.n > SD_MAX_DIMS)
        return fail(v, SD_EUNSUPPORTED, "_rebuild_tensor_v2: %s has %zu dimensions (at most %d supported)", what,
                    t->u.seq.n, SD_MAX_DIMS);
    for (size_t i = 0; i < t->u.seq.n; i++)
        if (get_int(t->u.seq.items[i], &out[i]) < 0 || out[i] < 0)
            return fail(v, SD_EINPUT, "_rebuild_tensor_v2: %s entry %zu is not a non-negative int", what, i);
    *n = (int)t->u.seq.n;
    return 0;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]) */
static int rebuild_tensor(vm *v, const pk_obj *args) {
    if (args->kind != PK_TUPLE || args->u.seq.n < 4)
        return fail(v, SD_EINPUT, "_rebuild_tensor_v2 called with %s, expected a tuple of at least 4 arguments",
                    pk_describe(args, (char[128]){0}, 128));
    pk_obj *const *a = args->u.seq.items;
    if (a[0]->kind != PK_PERSID)
        return fail(v, SD_EINPUT,
                    "_rebuild_tensor_v2: the storage argument is a %s, not a storage reference; refusing to load it",
                    pk_describe(a[0], (char[128]){0}, 128));
    pk_obj *t = new_obj(v, PK_TENSOR);
    if (!t) return nomem(v);
    t->u.tensor.storage = a[0];
    if (get_int(a[1], &t->u.tensor.offset) < 0 || t->u.tensor.offset < 0)
        return fail(v, SD_EINPUT, "_rebuild_tensor_v2: storage offset is not a non-negative int");
    int nd_size = 0, nd_stride = 0;
    int rc = int_tuple(v, a[2], "size", t->u.tensor.shape, &nd_size);
    if (rc == 0) rc = int_tuple(v, a[3], "stride", t->u.tensor.stride, &nd_stride);
    if (rc < 0) return rc;
    if (nd_size != nd_stride)
        return fail(v, SD_EINPUT, "_rebuild_tensor_v2: size has %d dimensions but stride has %d", nd_size, nd_stride);
    t->u.tensor.ndim = nd_size;
    return push(v, t);
}

/* callable(*args) without running anything: the few known globals, else a placeholder. */
static int call(vm *v, pk_obj *callable, pk_obj *args) {
    if (callable->kind == PK_GLOBAL) {
        switch (callable->u.global.id) {
        case PK_G_REBUILD_TENSOR: return rebuild_tensor(v, args);
        case PK_G_REBUILD_PARAMETER:
            if (args->kind != PK_TUPLE || args->u.seq.n < 1 || args->u.seq.items[0]->kind != PK_TENSOR)
                return fail(v, SD_EINPUT, "_rebuild_parameter: first argument is not a tensor");
            return push(v, args->u.seq.items[0]);
        case PK_G_ORDERED_DICT: {
            pk_obj *d = new_obj(v, PK_DICT);
            if (!d) return nomem(v);
            /* OrderedDict() or OrderedDict([(k, v), ...]) */
            if (args->kind == PK_TUPLE && args->u.seq.n == 1 &&
                (args->u.seq.items[0]->kind == PK_LIST || args->u.seq.items[0]->kind == PK_TUPLE)) {
                const pk_obj *l = args->u.seq.items[0];
                for (size_t i = 0; i < l->u.seq.n; i++) {
                    const pk_obj *pr = l->u.seq.items[i];
                    if (pr->kind != PK_TUPLE || pr->u.seq.n != 2)
                        return fail(v, SD_EINPUT, "OrderedDict: item %zu is not a (key, value) pair", i);
                    if (dict_push(d, pr->u.seq.items[0], pr->u.seq.items[1]) < 0) return nomem(v);
                }
            } else if (args->kind != PK_TUPLE || args->u.seq.n != 0) {
                return push(v, placeholder(v, callable));
            }
            return push(v, d);
        }
        default: break;
        }
    }
    return push(v, placeholder(v, callable));
}

/* ------------------------------------------------------------ containers */

static int make_seq(vm *v, pk_kind kind, size_t first, size_t n) {
    pk_obj *o = new_obj(v, kind);
    if (!o) return nomem(v);
    for (size_t i = 0; i < n; i++)
        if (seq_push(o, v->stack[first + i]) < 0) return nomem(v);
    return push(v, o);
}

/* Appends stack[first..first+n) to the list/set on top (items for a placeholder are dropped). */
static int append_items(vm *v, size_t first, size_t n) {
    pk_obj *l = NULL;
    int rc = top(v, &l);
    if (rc < 0) return rc;
    if (l->kind == PK_OPAQUE) return 0;
    if (l->kind != PK_LIST && l->kind != PK_SET)
        return fail(v, SD_EINPUT, "cannot append to a %s", pk_describe(l, (char[128]){0}, 128));
    for (size_t i = 0; i < n; i++)
        if (seq_push(l, v->stack[first + i]) < 0) return nomem(v);
    return 0;
}

static int set_items(vm *v, size_t first, size_t n) {
    if (n % 2) return fail(v, SD_EINPUT, "odd number of items (%zu) for a dict", n);
    pk_obj *d = NULL;
    int rc = top(v, &d);
    if (rc < 0) return rc;
    if (d->kind == PK_OPAQUE) return 0;
    if (d->kind != PK_DICT) return fail(v, SD_EINPUT, "cannot set items on a %s", pk_describe(d, (char[128]){0}, 128));
    for (size_t i = 0; i < n; i += 2)
        if (dict_push(d, v->stack[first + i], v->stack[first + i + 1]) < 0) return nomem(v);
    return 0;
}

/* ------------------------------------------------------------ the loop */

static int step(vm *v, int *stop) {
    v->op_off = (size_t)(v->p - v->start);
    int op = *v->p++;
    pk_obj *a = NULL, *b = NULL, *c = NULL;
    size_t first = 0, n = 0;
    int rc = 0;
    char line[512];
    switch (op) {
    case 0x80: /* PROTO */
        if ((rc = need(v, 1)) < 0) return rc;
        if (*v->p > 5) return fail(v, SD_EUNSUPPORTED, "pickle protocol %d is newer than 5", *v->p);
        v->p++;
        return 0;
    case 0x95: /* FRAME: an 8-byte length we do not need */
        if ((rc = need(v, 8)) < 0) return rc;
        v->p += 8;
        return 0;
    case '.': /* STOP */
        if ((rc = pop(v, &a)) < 0) return rc;
        v->doc->root = a;
        *stop = 1;
        return 0;
    case '(': return push_mark(v);
    case '0': /* POP: the top item, or the topmost mark when the stack above it is empty */
        if (v->sp > base(v)) {
            v->sp--;
            return 0;
        }
        return pop_mark(v, &first, &n);
    case '1': return pop_mark(v, &first, &n); /* POP_MARK */
    case '2': /* DUP */
        if ((rc = top(v, &a)) < 0) return rc;
        return push(v, a);
    case 'N': return push(v, new_obj(v, PK_NONE));
    case 0x88:
    case 0x89: {
        pk_obj *o = new_obj(v, PK_BOOL);
        if (o) o->u.b = op == 0x88;
        return push(v, o);
    }
    case 'J':
        if ((rc = need(v, 4)) < 0) return rc;
        n = (size_t)le(v->p, 4);
        v->p += 4;
        return push_int(v, (int32_t)(uint32_t)n);
    case 'K':
        if ((rc = need(v, 1)) < 0) return rc;
        return push_int(v, *v->p++);
    case 'M':
        if ((rc = need(v, 2)) < 0) return rc;
        n = (size_t)le(v->p, 2);
        v->p += 2;
        return push_int(v, (int64_t)n);
    case 0x8a: return read_long(v, 1);
    case 0x8b: return read_long(v, 4);
    case 'I':
    case 'L': { /* INT / LONG in text; "I01"/"I00" are True/False */
        if ((rc = read_line(v, line, sizeof line)) < 0) return rc;
        if (op == 'I' && (!strcmp(line, "01") || !strcmp(line, "00"))) {
            pk_obj *o = new_obj(v, PK_BOOL);
            if (o) o->u.b = line[1] == '1';
            return push(v, o);
        }
        size_t l = strlen(line);
        if (op == 'L' && l && line[l - 1] == 'L') line[--l] = 0;
        char *endp;
        errno = 0;
        long long x = strtoll(line, &endp, 10);
        if (!l || *endp || errno) return fail(v, SD_EUNSUPPORTED, "integer '%s' is not an int64", line);
        return push_int(v, x);
    }
    case 'F': {
        if ((rc = read_line(v, line, sizeof line)) < 0) return rc;
        char *endp;
        double x = strtod(line, &endp);
        if (!line[0] || *endp) return fail(v, SD_EINPUT, "bad float '%s'", line);
        pk_obj *o = new_obj(v, PK_FLOAT);
        if (o) o->u.f = x;
        return push(v, o);
    }
    case 'G': {
        if ((rc = need(v, 8)) < 0) return rc;
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++) bits = (bits << 8) | v->p[i]; /* big-endian */
        v->p += 8;
        pk_obj *o = new_obj(v, PK_FLOAT);
        if (o) memcpy(&o->u.f, &bits, 8);
        return push(v, o);
    }
    case 'X': return read_counted(v, 4, PK_STR);    /* BINUNICODE */
    case 0x8c: return read_counted(v, 1, PK_STR);   /* SHORT_BINUNICODE */
    case 0x8d: return read_counted(v, 8, PK_STR);   /* BINUNICODE8 */
    case 'T': return read_counted(v, 4, PK_STR);    /* BINSTRING (Python 2) */
    case 'U': return read_counted(v, 1, PK_STR);    /* SHORT_BINSTRING */
    case 'B': return read_counted(v, 4, PK_BYTES);  /* BINBYTES */
    case 'C': return read_counted(v, 1, PK_BYTES);  /* SHORT_BINBYTES */
    case 0x8e: return read_counted(v, 8, PK_BYTES); /* BINBYTES8 */
    case 0x96: return read_counted(v, 8, PK_BYTES); /* BYTEARRAY8 */
    case ')': return make_seq(v, PK_TUPLE, 0, 0);
    case ']': return make_seq(v, PK_LIST, 0, 0);
    case '}': return push(v, new_obj(v, PK_DICT));
    case 0x8f: return make_seq(v, PK_SET, 0, 0);
    case 0x85:
    case 0x86:
    case 0x87: { /* TUPLE1..3 */
        n = (size_t)(op - 0x84);
        if (v->sp < base(v) + n) return fail(v, SD_EINPUT, "stack underflow (TUPLE%zu)", n);
        v->sp -= n;
        return make_seq(v, PK_TUPLE, v->sp, n);
    }
    case 't':
        if ((rc = pop_mark(v, &first, &n)) < 0) return rc;
        return make_seq(v, PK_TUPLE, first, n);
    case 'l':
        if ((rc = pop_mark(v, &first, &n)) < 0) return rc;
        return make_seq(v, PK_LIST, first, n);
    case 0x91: /* FROZENSET */
        if ((rc = pop_mark(v, &first, &n)) < 0) return rc;
        return make_seq(v, PK_SET, first, n);
    case 'd': {
        if ((rc = pop_mark(v, &first, &n)) < 0) return rc;
        if (n % 2) return fail(v, SD_EINPUT, "odd number of items (%zu) for a dict", n);
        pk_obj *d = new_obj(v, PK_DICT);
        if (!d) return nomem(v);
        for (size_t i = 0; i < n; i += 2)
            if (dict_push(d, v->stack[first + i], v->stack[first + i + 1]) < 0) return nomem(v);
        return push(v, d);
    }
    case 'a':
        if ((rc = pop(v, &a)) < 0) return rc;
        return append_items(v, v->sp, 1); /* the popped item is still at stack[sp] */
    case 'e':
    case 0x90: /* APPENDS, ADDITEMS */
        if ((rc = pop_mark(v, &first, &n)) < 0) return rc;
        return append_items(v, first, n);
    case 's':
        if (v->sp < base(v) + 3) return fail(v, SD_EINPUT, "stack underflow (SETITEM)");
        v->sp -= 2;
        return set_items(v, v->sp, 2);
    case 'u':
        if ((rc = pop_mark(v, &first, &n)) < 0) return rc;
        return set_items(v, first, n);
    case 'q':
    case 'r':
    case 'p': { /* BINPUT, LONG_BINPUT, PUT */
        size_t idx;
        if (op == 'p') {
            if ((rc = read_line(v, line, sizeof line)) < 0) return rc;
            char *endp;
            idx = (size_t)strtoull(line, &endp, 10);
            if (!line[0] || *endp) return fail(v, SD_EINPUT, "bad PUT index '%s'", line);
        } else {
            int w = op == 'q' ? 1 : 4;
            if ((rc = need(v, (size_t)w)) < 0) return rc;
            idx = (size_t)le(v->p, w);
            v->p += w;
        }
        if ((rc = top(v, &a)) < 0) return rc;
        return memo_put(v, idx, a);
    }
    case 0x94: /* MEMOIZE */
        if ((rc = top(v, &a)) < 0) return rc;
        return memo_put(v, v->memo_count, a);
    case 'h':
    case 'j':
    case 'g': {
        size_t idx;
        if (op == 'g') {
            if ((rc = read_line(v, line, sizeof line)) < 0) return rc;
            char *endp;
            idx = (size_t)strtoull(line, &endp, 10);
            if (!line[0] || *endp) return fail(v, SD_EINPUT, "bad GET index '%s'", line);
        } else {
            int w = op == 'h' ? 1 : 4;
            if ((rc = need(v, (size_t)w)) < 0) return rc;
            idx = (size_t)le(v->p, w);
            v->p += w;
        }
        return memo_get(v, idx);
    }
    case 'c':
    case 'i': { /* GLOBAL, INST: "module\nname\n" */
        char mod[256];
        if ((rc = read_line(v, mod, sizeof mod)) < 0) return rc;
        if ((rc = read_line(v, line, sizeof line)) < 0) return rc;
        pk_obj *g = new_global(v, mod, line);
        if (!g) return nomem(v);
        if (op == 'c') return push(v, g);
        if ((rc = pop_mark(v, &first, &n)) < 0) return rc;
        return push(v, placeholder(v, g));
    }
    case 0x93: /* STACK_GLOBAL */
        if ((rc = pop(v, &b)) < 0 || (rc = pop(v, &a)) < 0) return rc;
        if (a->kind != PK_STR || b->kind != PK_STR) return fail(v, SD_EINPUT, "STACK_GLOBAL needs two strings");
        return push(v, new_global(v, a->u.str.s, b->u.str.s));
    case 'o': /* OBJ: MARK cls args... */
        if ((rc = pop_mark(v, &first, &n)) < 0) return rc;
        if (n < 1) return fail(v, SD_EINPUT, "OBJ without a class");
        return push(v, placeholder(v, v->stack[first]));
    case 'R': /* REDUCE */
        if ((rc = pop(v, &b)) < 0 || (rc = pop(v, &a)) < 0) return rc;
        return call(v, a, b);
    case 0x81: /* NEWOBJ cls args */
    case 0x92: /* NEWOBJ_EX cls args kwargs */
        if (op == 0x92 && (rc = pop(v, &c)) < 0) return rc;
        if ((rc = pop(v, &b)) < 0 || (rc = pop(v, &a)) < 0) return rc;
        if (a->kind == PK_GLOBAL && a->u.global.id == PK_G_ORDERED_DICT) return push(v, new_obj(v, PK_DICT));
        return push(v, placeholder(v, a));
    case 'b': /* BUILD: object state is never applied */
        if ((rc = pop(v, &a)) < 0) return rc;
        return top(v, &b);
    case 'Q': { /* BINPERSID */
        if ((rc = pop(v, &a)) < 0) return rc;
        pk_obj *o = new_obj(v, PK_PERSID);
        if (o) o->u.persid.pid = a;
        return push(v, o);
    }
    case 'P': { /* PERSID: text id */
        if ((rc = read_line(v, line, sizeof line)) < 0) return rc;
        pk_obj *s = new_str(v, PK_STR, (const unsigned char *)line, strlen(line));
        pk_obj *o = s ? new_obj(v, PK_PERSID) : NULL;
        if (o) o->u.persid.pid = s;
        return push(v, o);
    }
    case 'S':
    case 'V': return fail(v, SD_EUNSUPPORTED, "text string opcode '%c' (pickle protocol 0) is not supported", op);
    case 0x82:
    case 0x83:
    case 0x84: return fail(v, SD_EUNSUPPORTED, "extension-registry opcode 0x%02x is not supported", op);
    case 0x97:
    case 0x98: return fail(v, SD_EUNSUPPORTED, "out-of-band buffer opcode 0x%02x is not supported", op);
    default: return fail(v, SD_EINPUT, "unknown pickle opcode 0x%02x; not a pickle, or a corrupt one", op);
    }
}

int pk_load(pk_doc *doc, const void *data, size_t len, const char *label, size_t *used, sd_error *err) {
    memset(doc, 0, sizeof *doc);
    vm v;
    memset(&v, 0, sizeof v);
    v.doc = doc;
    v.start = v.p = data;
    v.end = v.start + len;
    v.label = label ? label : "pickle";
    v.err = err;
    int rc = 0, stop = 0;
    while (rc == 0 && !stop) {
        if (v.p >= v.end) {
            v.op_off = len;
            rc = fail(&v, SD_EINPUT, "stream ends without a STOP opcode; truncated?");
            break;
        }
        rc = step(&v, &stop);
    }
    free(v.stack);
    free(v.marks);
    free(v.memo);
    if (rc < 0) {
        pk_doc_free(doc);
        return rc;
    }
    if (used) *used = (size_t)(v.p - v.start);
    return 0;
}

const pk_obj *pk_dict_get(const pk_obj *d, const char *key) {
    if (!d || d->kind != PK_DICT) return NULL;
    /* The last assignment wins, as in Python. */
    for (size_t i = d->u.dict.n; i-- > 0;) {
        const pk_obj *k = d->u.dict.keys[i];
        if (k->kind == PK_STR && !strcmp(k->u.str.s, key)) return d->u.dict.vals[i];
    }
    return NULL;
}

const char *pk_describe(const pk_obj *o, char *buf, size_t size) {
    static const char *names[] = {"None",  "bool",  "int",    "float",       "str",    "bytes", "tuple", "list",
                                  "set",   "dict",  "global", "placeholder", "storage reference", "tensor", "mark"};
    if (!o) snprintf(buf, size, "nothing");
    else if (o->kind == PK_GLOBAL) snprintf(buf, size, "global %s.%s", o->u.global.module, o->u.global.name);
    else if (o->kind == PK_OPAQUE) snprintf(buf, size, "%s object", o->u.opaque.what);
    else snprintf(buf, size, "%s", names[o->kind]);
    return buf;
}
