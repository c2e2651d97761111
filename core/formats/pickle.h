/*
 * pickle.h - a restricted, non-executing reader of Python pickle streams.
 *
 * PyTorch checkpoints are pickles. A real unpickler imports and calls any
 * global the stream names, which is how a malicious .ckpt runs code. This one
 * never executes anything: it builds a tree of plain objects (None, bools,
 * ints, floats, str, bytes, tuples, lists, dicts) and understands exactly
 * these globals:
 *
 *   torch._utils._rebuild_tensor_v2 / _rebuild_tensor  -> a PK_TENSOR record
 *   torch._utils._rebuild_parameter(_with_state)       -> its tensor argument
 *   torch.{Float,Half,BFloat16,Double,Long,Int,Short,Char,Byte,Bool}Storage
 *   (and the torch.cuda. ones of old GPU checkpoints)  -> a storage type (dtype)
 *   collections.OrderedDict                            -> a dict
 *
 * Every other global (os.system, numpy scalars, Lightning callbacks, ...)
 * stays a PK_GLOBAL, and calling or instantiating it (REDUCE, NEWOBJ, INST,
 * OBJ) yields a PK_OPAQUE placeholder that only remembers the global's name.
 * Callers that need tensors treat a placeholder as an error; elsewhere it is
 * harmless, so a checkpoint whose training state holds unknown objects still
 * loads. BUILD (setting object state) is ignored; items added to a placeholder
 * are dropped.
 *
 * Persistent ids (BINPERSID/PERSID) become PK_PERSID objects holding the id
 * (for PyTorch, the tuple ('storage', storage_type, key, location, numel));
 * resolving them is the caller's business (core/formats/ckpt.c).
 *
 * Opcodes: protocols 0-5 except the text-string forms (STRING, UNICODE), the
 * extension registry (EXT1/2/4) and out-of-band buffers; those, and any
 * unknown opcode, fail with the opcode and its offset. The object graph may
 * share nodes (memo) or even be cyclic, so walk it without recursion.
 */
#ifndef SD_PICKLE_H
#define SD_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "err.h"
#include "tensor.h"

typedef enum pk_kind {
    PK_NONE,
    PK_BOOL,
    PK_INT,     /* fits int64; larger integers set `big` and keep their bytes */
    PK_FLOAT,
    PK_STR,     /* str (UTF-8) or a Python 2 byte string */
    PK_BYTES,
    PK_TUPLE,
    PK_LIST,
    PK_SET,     /* set or frozenset, items in file order */
    PK_DICT,    /* insertion order kept */
    PK_GLOBAL,  /* a reference to module.name, never imported */
    PK_OPAQUE,  /* the result of calling an unknown global */
    PK_PERSID,  /* persistent id, unresolved */
    PK_TENSOR,  /* torch._utils._rebuild_tensor_v2(...) */
    PK_MARK     /* internal: never in a finished tree */
} pk_kind;

/* Globals the reader understands (pk_obj.u.global.id). */
typedef enum pk_global_id {
    PK_G_UNKNOWN = 0,
    PK_G_REBUILD_TENSOR,    /* _rebuild_tensor_v2 and the older _rebuild_tensor */
    PK_G_REBUILD_PARAMETER, /* _rebuild_parameter, _rebuild_parameter_with_state */
    PK_G_STORAGE_TYPE,      /* torch.FloatStorage etc.; dtype in u.global.dtype */
    PK_G_ORDERED_DICT
} pk_global_id;

typedef struct pk_obj pk_obj;
struct pk_obj {
    pk_kind kind;
    union {
        int b;
        struct {
            int64_t v;
            int big;                    /* did not fit int64: see bytes/nbytes */
            const unsigned char *bytes; /* little-endian two's complement (big only) */
            size_t nbytes;
        } i;
        double f;
        struct {
            char *s; /* NUL-terminated (a NUL inside is possible for bytes) */
            size_t len;
        } str;
        struct {
            pk_obj **items;
            size_t n, cap;
        } seq; /* TUPLE, LIST, SET */
        struct {
            pk_obj **keys, **vals;
            size_t n, cap;
        } dict;
        struct {
            char *module, *name;
            pk_global_id id;
            sd_dtype dtype; /* for PK_G_STORAGE_TYPE */
        } global;
        struct {
            char *what; /* "module.name" of the global that made it */
        } opaque;
        struct {
            pk_obj *pid;
        } persid;
        struct {
            pk_obj *storage; /* a PK_PERSID */
            int64_t offset;  /* in elements */
            int ndim;
            int64_t shape[SD_MAX_DIMS];
            int64_t stride[SD_MAX_DIMS];
        } tensor;
    } u;
};

/* One unpickled stream: every object lives until pk_doc_free. */
typedef struct pk_doc {
    pk_obj *root;
    pk_obj **objs; /* all allocated objects, for freeing */
    size_t nobjs, capobjs;
} pk_doc;

/*
 * Unpickles data[0..len) up to its STOP opcode. *used (may be NULL) gets the
 * number of bytes consumed, so several pickles in a row can be read (PyTorch's
 * legacy format). label names the stream in messages ("x.pth: data.pkl").
 * On failure doc is freed and err says what and at which offset.
 */
int pk_load(pk_doc *doc, const void *data, size_t len, const char *label, size_t *used, sd_error *err);
void pk_doc_free(pk_doc *doc);

/* Value for the string key in a PK_DICT, or NULL (also when d is not a dict). */
const pk_obj *pk_dict_get(const pk_obj *d, const char *key);

/* "dict", "tensor", "os.system object", ... for messages (buf used for names). */
const char *pk_describe(const pk_obj *o, char *buf, size_t size);

#endif
