/* Tests for core/formats/pickle.c, core/formats/zipread.c and core/formats/ckpt.c: PyTorch checkpoints without Python. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "pickle.h"
#include "zipread.h"
#include "pickletest.h"
#include "ziptest.h"

/* ------------------------------------------------------------ the reference files */

/* Every tensor of `st` appears in `w` with the same dtype, shape and bytes, and nothing else does. */
static void expect_same_tensors(const sd_weights *w, const st_file *st, const char *label) {
    assert_int_equal(w->n, st->n);
    for (int i = 0; i < st->n; i++) {
        const sd_tensor *want = &st->tensors[i];
        const sd_tensor *got = sd_weights_find(w, want->name);
        if (!got) fail_msg("%s: tensor '%s' missing", label, want->name);
        if (got->dtype != want->dtype || !sd_tensor_has_shape(got, want->ndim, want->shape) ||
            got->nbytes != want->nbytes || memcmp(got->data, want->data, want->nbytes))
            fail_msg("%s: tensor '%s' differs from the safetensors twin", label, want->name);
    }
}

static void test_ckpt_zip_pth_equals_its_safetensors_twin(void **state) {
    (void)state;
    sd_error err = {0};
    sd_ckpt ck;
    if (sd_ckpt_open(&ck, tu_path("checkpoints/clip_tiny_zip.pth"), &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(ck.legacy, 0);
    st_file st;
    tu_open(&st, "metrics/clip_tiny_random_fp16.safetensors");
    assert_int_equal(ck.all.n, 78);
    expect_same_tensors(&ck.all, &st, "clip_tiny_zip.pth");
    /* stored members are used in place: no copies */
    for (int i = 0; i < ck.all.n; i++) {
        const unsigned char *p = ck.all.tensors[i].data;
        assert_true(p >= ck.map.data && p + ck.all.tensors[i].nbytes <= ck.map.data + ck.map.size);
    }
    assert_int_equal(ck.nowned, 0);
    /* the 0-d logit_scale */
    const sd_tensor *ls = sd_ckpt_find(&ck, "logit_scale");
    assert_non_null(ls);
    assert_int_equal(ls->ndim, 0);
    float v;
    sd_tensor_to_f32(ls, &v);
    assert_true(v == 2.66015625f);
    st_close(&st);
    sd_ckpt_close(&ck);
}

static void test_ckpt_legacy_pth_equals_its_safetensors_twin(void **state) {
    (void)state;
    sd_error err = {0};
    sd_ckpt ck;
    if (sd_ckpt_open(&ck, tu_path("checkpoints/clip_tiny_legacy.pth"), &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(ck.legacy, 1);
    st_file st;
    tu_open(&st, "metrics/clip_tiny_random_fp16.safetensors");
    expect_same_tensors(&ck.all, &st, "clip_tiny_legacy.pth");
    st_close(&st);
    sd_ckpt_close(&ck);
}

static void test_ckpt_sd15_exposes_state_dict_like_the_single_file_safetensors(void **state) {
    (void)state;
    sd_error err = {0};
    sd_ckpt ck;
    if (sd_ckpt_open(&ck, tu_path("checkpoints/tiny-sd15.ckpt"), &err) < 0) fail_msg("%s", err.msg);
    st_file st;
    tu_open(&st, "models/tiny-sd15.safetensors");
    assert_int_equal(ck.all.n, 980);
    expect_same_tensors(&ck.all, &st, "tiny-sd15.ckpt");
    assert_null(sd_ckpt_find(&ck, "global_step"));
    /* a component table from the .ckpt equals the one from the safetensors file */
    sd_weights a, b;
    assert_int_equal(sd_ckpt_to_weights(&a, &ck, "model.diffusion_model.", "unet (ckpt)", &err), 0);
    assert_int_equal(sd_weights_from_st(&b, &st, "model.diffusion_model.", "unet (st)", &err), 0);
    assert_int_equal(a.n, 684);
    assert_int_equal(a.n, b.n);
    for (int i = 0; i < a.n; i++) {
        assert_string_equal(a.tensors[i].name, b.tensors[i].name);
        assert_int_equal(a.tensors[i].nbytes, b.tensors[i].nbytes);
        assert_memory_equal(a.tensors[i].data, b.tensors[i].data, a.tensors[i].nbytes);
    }
    const sd_tensor *t;
    assert_int_equal(sd_weights_get(&a, "input_blocks.0.0.weight", 4, (int64_t[]){32, 4, 3, 3}, &t, &err), 0);
    sd_weights_free(&a);
    sd_weights_free(&b);
    st_close(&st);
    sd_ckpt_close(&ck);
}

/* ------------------------------------------------------------ crafted checkpoints */

static void test_ckpt_reads_f32_bf16_f64_i64_storages_with_offsets(void **state) {
    (void)state;
    float f[10];
    uint16_t bf[6];
    double dd[4];
    int64_t ll[3] = {-5, 1LL << 40, 7};
    for (int i = 0; i < 10; i++) f[i] = (float)i * 0.5f;
    for (int i = 0; i < 6; i++) bf[i] = sd_dtype_f32_to_bf16((float)(i + 1));
    for (int i = 0; i < 4; i++) dd[i] = 1.0 / (i + 3);
    pb p = {0};
    pb_proto(&p);
    pb_op(&p, '}');
    pb_op(&p, '(');
    pb_str(&p, "a");
    pb_tensor(&p, "FloatStorage", "0", 10, 2, 2, (int64_t[]){2, 3}, (int64_t[]){3, 1});
    pb_str(&p, "b");
    pb_tensor(&p, "BFloat16Storage", "1", 6, 0, 1, (int64_t[]){6}, (int64_t[]){1});
    pb_str(&p, "c");
    pb_tensor(&p, "DoubleStorage", "2", 4, 3, 1, (int64_t[]){1}, (int64_t[]){1});
    pb_str(&p, "d");
    pb_tensor(&p, "LongStorage", "3", 3, 0, 0, NULL, NULL); /* 0-d scalar */
    pb_str(&p, "e");                                        /* shares storage 0, [5, 1] with a size-1 dim's odd stride */
    pb_tensor(&p, "FloatStorage", "0", 10, 5, 2, (int64_t[]){5, 1}, (int64_t[]){1, 99});
    pb_str(&p, "note");
    pb_str(&p, "not a tensor");
    pb_op(&p, 'u');
    pb_op(&p, '.');
    const char *keys[] = {"0", "1", "2", "3"};
    const void *data[] = {f, bf, dd, ll};
    size_t len[] = {sizeof f, sizeof bf, sizeof dd, sizeof ll};
    for (int deflate = 0; deflate < 2; deflate++) {
        const char *path = tu_tmp(deflate ? "types_deflated.pth" : "types.pth");
        write_ckpt(path, &p, 4, keys, data, len, deflate);
        sd_error err = {0};
        sd_ckpt ck;
        if (sd_ckpt_open(&ck, path, &err) < 0) fail_msg("%s", err.msg);
        assert_int_equal(ck.all.n, 5);
        assert_int_equal(ck.nowned, deflate ? 4 : 0);
        const sd_tensor *a = sd_ckpt_find(&ck, "a"), *b = sd_ckpt_find(&ck, "b"), *c = sd_ckpt_find(&ck, "c"),
                        *d = sd_ckpt_find(&ck, "d"), *e = sd_ckpt_find(&ck, "e");
        assert_true(a && b && c && d && e);
        assert_int_equal(a->dtype, SD_F32);
        assert_true(sd_tensor_has_shape(a, 2, (int64_t[]){2, 3}));
        float af[6];
        sd_tensor_to_f32(a, af);
        for (int i = 0; i < 6; i++) assert_true(af[i] == f[2 + i]);
        assert_int_equal(b->dtype, SD_BF16);
        float bfv[6];
        sd_tensor_to_f32(b, bfv);
        for (int i = 0; i < 6; i++) assert_true(bfv[i] == (float)(i + 1));
        assert_int_equal(c->dtype, SD_F64);
        double cv;
        memcpy(&cv, c->data, 8);
        assert_true(cv == dd[3]);
        assert_int_equal(d->dtype, SD_I64);
        assert_int_equal(d->ndim, 0);
        int64_t dv;
        memcpy(&dv, d->data, 8);
        assert_true(dv == -5);
        float ev[5];
        sd_tensor_to_f32(e, ev);
        for (int i = 0; i < 5; i++) assert_true(ev[i] == f[5 + i]);
        assert_null(sd_ckpt_find(&ck, "note"));
        sd_ckpt_close(&ck);
    }
    free(p.b);
}

static void test_ckpt_loads_state_dict_beside_unknown_training_objects_without_running_them(void **state) {
    (void)state;
    float f[4] = {1, 2, 3, 4};
    pb p = {0};
    pb_proto(&p);
    pb_op(&p, '}');
    pb_op(&p, '(');
    pb_str(&p, "callbacks"); /* a Lightning callback object, rebuilt by NEWOBJ + BUILD */
    pb_global(&p, "pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint");
    pb_op(&p, ')');
    pb_op(&p, 0x81);
    pb_op(&p, '}');
    pb_str(&p, "monitor");
    pb_str(&p, "val/loss");
    pb_op(&p, 's');
    pb_op(&p, 'b');
    pb_str(&p, "hook"); /* os.system("...") as a value outside the state dict: never called */
    pb_global(&p, "os", "system");
    pb_str(&p, "echo should-never-run");
    pb_op(&p, 0x85);
    pb_op(&p, 'R');
    pb_str(&p, "state_dict");
    pb_global(&p, "collections", "OrderedDict");
    pb_op(&p, ')');
    pb_op(&p, 'R');
    pb_op(&p, '(');
    pb_str(&p, "w");
    pb_tensor(&p, "FloatStorage", "0", 4, 0, 2, (int64_t[]){2, 2}, (int64_t[]){2, 1});
    pb_op(&p, 'u');
    pb_op(&p, '}'); /* state_dict._metadata, set by BUILD as OrderedDict.__reduce__ does */
    pb_str(&p, "_metadata");
    pb_op(&p, '}');
    pb_op(&p, 's');
    pb_op(&p, 'b');
    pb_str(&p, "global_step");
    pb_int(&p, 470000);
    pb_op(&p, 'u');
    pb_op(&p, '.');
    const char *keys[] = {"0"};
    const void *data[] = {f};
    size_t len[] = {sizeof f};
    const char *path = tu_tmp("lightning.ckpt");
    write_ckpt(path, &p, 1, keys, data, len, 0);
    sd_error err = {0};
    sd_ckpt ck;
    if (sd_ckpt_open(&ck, path, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(ck.all.n, 1);
    assert_non_null(sd_ckpt_find(&ck, "w"));
    sd_ckpt_close(&ck);
    free(p.b);
}

typedef struct bad_ckpt {
    const char *what;
    const char *expect; /* substring of the message */
} bad_ckpt;

/* Builds the pickle of bad case i into p; returns the storage length to write (bytes). */
static size_t build_bad(int i, pb *p) {
    pb_proto(p);
    pb_op(p, '}');
    pb_op(p, '(');
    pb_str(p, "w");
    size_t storage_bytes = 16; /* 4 floats */
    switch (i) {
    case 0: /* os.system(...) where a tensor should be */
        pb_global(p, "os", "system");
        pb_str(p, "echo pwned");
        pb_op(p, 0x85);
        pb_op(p, 'R');
        break;
    case 1: /* a forbidden global as the storage of _rebuild_tensor_v2 */
        pb_global(p, "torch._utils", "_rebuild_tensor_v2");
        pb_op(p, '(');
        pb_global(p, "os", "system");
        pb_str(p, "echo pwned");
        pb_op(p, 0x85);
        pb_op(p, 'R');
        pb_int(p, 0);
        pb_ints(p, 1, (int64_t[]){4});
        pb_ints(p, 1, (int64_t[]){1});
        pb_op(p, 0x89);
        pb_op(p, 'N');
        pb_op(p, 't');
        pb_op(p, 'R');
        break;
    case 2: /* unknown opcode */
        pb_op(p, 0xff);
        break;
    case 3: /* non-contiguous strides */
        pb_tensor(p, "FloatStorage", "0", 4, 0, 2, (int64_t[]){2, 2}, (int64_t[]){1, 2});
        break;
    case 4: /* size and stride of different lengths */
        pb_tensor2(p, "FloatStorage", "0", 4, 0, 2, (int64_t[]){2, 2}, 1, (int64_t[]){1});
        break;
    case 5: /* storage member shorter than numel says */
        pb_tensor(p, "FloatStorage", "0", 4, 0, 1, (int64_t[]){4}, (int64_t[]){1});
        storage_bytes = 8;
        break;
    case 6: /* tensor runs past its storage */
        pb_tensor(p, "FloatStorage", "0", 4, 2, 1, (int64_t[]){4}, (int64_t[]){1});
        break;
    case 7: /* storage type that is not a torch storage */
        pb_tensor(p, "FloatTensor", "0", 4, 0, 1, (int64_t[]){4}, (int64_t[]){1});
        break;
    case 8: /* memo read before any write */
        pb_op(p, 'h');
        pb_op(p, 7);
        break;
    case 9: /* stack underflow */
        pb_op(p, 'R');
        break;
    case 10: /* missing storage member */
        pb_tensor(p, "FloatStorage", "9", 4, 0, 1, (int64_t[]){4}, (int64_t[]){1});
        break;
    case 11: /* a negative dimension */
        pb_tensor(p, "FloatStorage", "0", 4, 0, 1, (int64_t[]){-4}, (int64_t[]){1});
        break;
    }
    pb_op(p, 'u');
    pb_op(p, '.');
    return storage_bytes;
}

static const bad_ckpt bad_ckpts[] = {
    {"os.system result in a tensor position", "os.system object"},
    {"os.system as a tensor's storage", "storage argument is a os.system object"},
    {"unknown opcode", "unknown pickle opcode 0xff"},
    {"non-contiguous strides", "not contiguous"},
    {"size and stride lengths differ", "stride has"},
    {"storage too short", "needs 16 bytes"},
    {"tensor past the end of its storage", "needs elements 2..6"},
    {"storage type is not a storage", "storage type global torch.FloatTensor"},
    {"memo read before write", "memo index 7 was never stored"},
    {"stack underflow", "stack underflow"},
    {"storage member missing", "storage '9' is missing"},
    {"negative dimension", "not a non-negative int"},
};

static void test_ckpt_rejects_each_malformed_pickle_with_a_clear_error(void **state) {
    (void)state;
    float f[4] = {1, 2, 3, 4};
    for (size_t i = 0; i < sizeof bad_ckpts / sizeof bad_ckpts[0]; i++) {
        pb p = {0};
        size_t slen = build_bad((int)i, &p);
        const char *keys[] = {"0"};
        const void *data[] = {f};
        size_t len[] = {slen};
        char name[64];
        snprintf(name, sizeof name, "bad%02zu.pth", i);
        const char *path = tu_tmp(name);
        write_ckpt(path, &p, 1, keys, data, len, 0);
        sd_error err = {0};
        sd_ckpt ck;
        int rc = sd_ckpt_open(&ck, path, &err);
        if (rc >= 0) fail_msg("case '%s' was accepted", bad_ckpts[i].what);
        if (!strstr(err.msg, bad_ckpts[i].expect))
            fail_msg("case '%s': message '%s' lacks '%s'", bad_ckpts[i].what, err.msg, bad_ckpts[i].expect);
        assert_non_null(strstr(err.msg, path)); /* names the file */
        free(p.b);
    }
}

/* ------------------------------------------------------------ broken containers */

static void copy_prefix(const char *src, const char *dst, size_t n, size_t flip_at, unsigned char flip) {
    char *buf;
    size_t len;
    assert_int_equal(sd_fs_read_file(src, &buf, &len, NULL), 0);
    if (n > len) n = len;
    if (flip_at < n) buf[flip_at] ^= (char)flip;
    FILE *fp = fopen(dst, "wb");
    assert_non_null(fp);
    if (n) assert_int_equal(fwrite(buf, 1, n, fp), n);
    fclose(fp);
    free(buf);
}

static void expect_open_fails(const char *path, const char *expect) {
    sd_error err = {0};
    sd_ckpt ck;
    if (sd_ckpt_open(&ck, path, &err) >= 0) fail_msg("%s was accepted", path);
    if (expect && !strstr(err.msg, expect)) fail_msg("%s: message '%s' lacks '%s'", path, err.msg, expect);
}

static void test_ckpt_rejects_truncated_and_corrupt_archives(void **state) {
    (void)state;
    const char *zip = tu_path("checkpoints/clip_tiny_zip.pth");
    const char *legacy = tu_path("checkpoints/clip_tiny_legacy.pth");
    char *buf;
    size_t zlen, llen;
    assert_int_equal(sd_fs_read_file(zip, &buf, &zlen, NULL), 0);
    free(buf);
    assert_int_equal(sd_fs_read_file(legacy, &buf, &llen, NULL), 0);
    free(buf);
    const char *t = tu_tmp("trunc.pth");
    copy_prefix(zip, t, zlen / 2, (size_t)-1, 0);
    expect_open_fails(t, "end-of-central-directory");
    copy_prefix(zip, t, zlen - 10, (size_t)-1, 0);
    expect_open_fails(t, "end-of-central-directory");
    copy_prefix(legacy, t, llen - 100, (size_t)-1, 0);
    expect_open_fails(t, "truncated");
    copy_prefix(legacy, t, 5000, (size_t)-1, 0);
    expect_open_fails(t, "truncated");
    copy_prefix(zip, t, 0, (size_t)-1, 0);
    expect_open_fails(t, "not a PyTorch checkpoint");
    /* bad central directory: break the signature of the first central entry */
    sd_mapfile m;
    assert_int_equal(sd_mapfile_open(&m, zip, NULL), 0);
    size_t cd = 0;
    for (size_t i = m.size - 22; i > 0; i--)
        if (!memcmp(m.data + i, "PK\x05\x06", 4)) {
            cd = (size_t)(m.data[i + 16] | (m.data[i + 17] << 8) | (m.data[i + 18] << 16) | ((size_t)m.data[i + 19] << 24));
            break;
        }
    sd_mapfile_close(&m);
    assert_true(cd > 0);
    copy_prefix(zip, t, zlen, cd + 1, 0xff);
    expect_open_fails(t, "central directory entry 0 is corrupt");
    /* a local header that is not where the directory says */
    copy_prefix(zip, t, zlen, 0, 0xff);
    expect_open_fails(t, "not a PyTorch checkpoint"); /* no longer starts with PK\3\4 */
    /* text file */
    FILE *fp = fopen(t, "wb");
    fputs("hello, not a checkpoint\n", fp);
    fclose(fp);
    expect_open_fails(t, "not a PyTorch checkpoint");
    expect_open_fails(tu_tmp("does-not-exist.pth"), "No such file");
}

/*
 * Robustness: every prefix of a real pickle, and many single-byte corruptions,
 * must load or fail cleanly (run under ASan by make SANITIZE=1).
 */
static void test_pickle_survives_truncation_and_byte_flips(void **state) {
    (void)state;
    sd_mapfile m;
    sd_error err = {0};
    assert_int_equal(sd_mapfile_open(&m, tu_path("checkpoints/clip_tiny_zip.pth"), &err), 0);
    sd_zip z;
    assert_int_equal(sd_zip_open(&z, m.data, m.size, "clip_tiny_zip.pth", &err), 0);
    const sd_zip_entry *e = sd_zip_find(&z, "clip_tiny_zip/data.pkl");
    assert_non_null(e);
    const void *p;
    void *owned;
    assert_int_equal(sd_zip_read(&z, e, 1, &p, &owned, &err), 0);
    size_t n = (size_t)e->size;
    pk_doc doc;
    assert_int_equal(pk_load(&doc, p, n, "data.pkl", NULL, &err), 0);
    assert_non_null(pk_dict_get(doc.root, "logit_scale"));
    pk_doc_free(&doc);
    for (size_t k = 0; k < n; k += 7) {
        if (pk_load(&doc, p, k, "prefix", NULL, &err) == 0) fail_msg("a %zu-byte prefix loaded", k);
    }
    unsigned char *copy = malloc(n);
    assert_non_null(copy);
    uint32_t seed = 12345;
    int failed = 0;
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(copy, p, n);
        seed = seed * 1664525u + 1013904223u;
        size_t at = (seed >> 8) % n;
        seed = seed * 1664525u + 1013904223u;
        copy[at] ^= (unsigned char)(1u << ((seed >> 16) & 7));
        if (pk_load(&doc, copy, n, "flipped", NULL, &err) < 0) failed++;
        else pk_doc_free(&doc);
    }
    assert_true(failed > 0);
    free(copy);
    sd_zip_close(&z);
    sd_mapfile_close(&m);
}

static void test_zip_reads_deflated_members_and_checks_crc(void **state) {
    (void)state;
    char text[2000];
    for (size_t i = 0; i < sizeof text; i++) text[i] = (char)('a' + (i * 7) % 26);
    tzip z = {0};
    tz_add(&z, "plain", text, sizeof text, 0);
    tz_add(&z, "packed", text, sizeof text, 1);
    tz_add(&z, "empty", "", 0, 1);
    tz_finish(&z);
    sd_error err = {0};
    sd_zip zr;
    assert_int_equal(sd_zip_open(&zr, z.b, z.n, "mem.zip", &err), 0);
    assert_int_equal(zr.n, 3);
    const sd_zip_entry *e = sd_zip_find(&zr, "packed");
    assert_non_null(e);
    assert_int_equal(e->method, 8);
    assert_true(e->comp_size < e->size);
    const void *out;
    void *owned;
    assert_int_equal(sd_zip_read(&zr, e, 0, &out, &owned, &err), 0);
    assert_non_null(owned);
    assert_memory_equal(out, text, sizeof text);
    free(owned);
    e = sd_zip_find(&zr, "empty");
    assert_int_equal(sd_zip_read(&zr, e, 0, &out, &owned, &err), 0);
    free(owned);
    e = sd_zip_find(&zr, "plain");
    assert_int_equal(sd_zip_read(&zr, e, 1, &out, &owned, &err), 0);
    assert_null(owned);
    assert_ptr_equal(out, z.b + e->offset);
    assert_null(sd_zip_find(&zr, "nope"));
    sd_zip_close(&zr);
    /* corrupt the deflated payload: a zlib or CRC error, never a crash */
    const sd_zip_entry *pk;
    assert_int_equal(sd_zip_open(&zr, z.b, z.n, "mem.zip", &err), 0);
    pk = sd_zip_find(&zr, "packed");
    unsigned char *b = z.b;
    b[pk->offset + pk->comp_size / 2] ^= 0x55;
    int rc = sd_zip_read(&zr, pk, 0, &out, &owned, &err);
    assert_true(rc < 0);
    assert_non_null(strstr(err.msg, "packed"));
    /* stored member with a flipped byte: CRC catches it when asked */
    const sd_zip_entry *pl = sd_zip_find(&zr, "plain");
    b[pl->offset + 3] ^= 1;
    rc = sd_zip_read(&zr, pl, 1, &out, &owned, &err);
    assert_true(rc < 0);
    assert_non_null(strstr(err.msg, "CRC-32"));
    sd_zip_close(&zr);
    /* the directory claims more entries than it holds */
    b[z.n - 22 + 10] = 50;
    b[z.n - 22 + 8] = 50;
    assert_true(sd_zip_open(&zr, z.b, z.n, "mem.zip", &err) < 0);
    assert_non_null(strstr(err.msg, "too small for 50 entries"));
    tz_free(&z);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ckpt_zip_pth_equals_its_safetensors_twin),
        cmocka_unit_test(test_ckpt_legacy_pth_equals_its_safetensors_twin),
        cmocka_unit_test(test_ckpt_sd15_exposes_state_dict_like_the_single_file_safetensors),
        cmocka_unit_test(test_ckpt_reads_f32_bf16_f64_i64_storages_with_offsets),
        cmocka_unit_test(test_ckpt_loads_state_dict_beside_unknown_training_objects_without_running_them),
        cmocka_unit_test(test_ckpt_rejects_each_malformed_pickle_with_a_clear_error),
        cmocka_unit_test(test_ckpt_rejects_truncated_and_corrupt_archives),
        cmocka_unit_test(test_pickle_survives_truncation_and_byte_flips),
        cmocka_unit_test(test_zip_reads_deflated_members_and_checks_crc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
