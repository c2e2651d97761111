/* Tests for core/formats/npz.c: NumPy .npz statistics files, stored and deflated, and their failure modes. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npz.h"
#include "ziptest.h"

/* A .npy image exactly as numpy 1.24 writes it: version 1.0, header padded to 64 bytes. */
static size_t make_npy(unsigned char *out, const char *descr, const char *shape, const void *data, size_t nbytes,
                       int version) {
    char dict[256];
    int dl = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    size_t pre = version == 1 ? 10 : 12;
    size_t total = pre + (size_t)dl + 1, padded = (total + 63) / 64 * 64;
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (unsigned char)version;
    out[7] = 0;
    size_t hl = padded - pre;
    out[8] = (unsigned char)hl;
    out[9] = (unsigned char)(hl >> 8);
    if (version != 1) out[10] = out[11] = 0;
    memcpy(out + pre, dict, (size_t)dl);
    memset(out + pre + dl, ' ', padded - total);
    out[padded - 1] = '\n';
    memcpy(out + padded, data, nbytes);
    return padded + nbytes;
}

static void test_npz_round_trip_keeps_names_dtypes_shapes_and_bytes(void **state) {
    (void)state;
    double mu[5], sigma[25];
    float feat[7 * 5];
    int64_t n = 7;
    uint8_t flags[3] = {1, 0, 255};
    for (int i = 0; i < 5; i++) mu[i] = 1.0 / (i + 1);
    for (int i = 0; i < 25; i++) sigma[i] = (i % 6 == 0) ? 2.0 : 0.1 * i;
    for (int i = 0; i < 35; i++) feat[i] = (float)i * 0.25f - 3.0f;
    sd_tensor ts[] = {
        {.name = "mu", .dtype = SD_F64, .ndim = 1, .shape = {5}, .data = mu, .nbytes = sizeof mu},
        {.name = "sigma", .dtype = SD_F64, .ndim = 2, .shape = {5, 5}, .data = sigma, .nbytes = sizeof sigma},
        {.name = "features", .dtype = SD_F32, .ndim = 2, .shape = {7, 5}, .data = feat, .nbytes = sizeof feat},
        {.name = "n", .dtype = SD_I64, .ndim = 0, .data = &n, .nbytes = 8},
        {.name = "flags", .dtype = SD_U8, .ndim = 1, .shape = {3}, .data = flags, .nbytes = 3},
    };
    const char *path = tu_tmp("stats.npz");
    sd_error err = {0};
    if (sd_npz_write(path, ts, 5, &err) < 0) fail_msg("%s", err.msg);
    sd_npz z;
    if (sd_npz_open(&z, path, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(z.n, 5);
    for (int i = 0; i < 5; i++) {
        const sd_tensor *t = sd_npz_find(&z, ts[i].name);
        assert_non_null(t);
        assert_int_equal(t->dtype, ts[i].dtype);
        assert_true(sd_tensor_has_shape(t, ts[i].ndim, ts[i].shape));
        assert_int_equal(t->nbytes, ts[i].nbytes);
        assert_memory_equal(t->data, ts[i].data, t->nbytes);
        /* every array starts on a 64-byte boundary of the file, so it can be used in place */
        assert_int_equal(((const unsigned char *)t->data - z.map.data) % 64, 0);
    }
    assert_int_equal(z.nowned, 0);
    const sd_tensor *s;
    assert_int_equal(sd_npz_get(&z, "sigma", SD_F64, 2, (int64_t[]){5, 5}, &s, &err), 0);
    assert_int_equal(sd_npz_get(&z, "features", SD_F32, 2, (int64_t[]){-1, 5}, &s, &err), 0);
    assert_int_equal(sd_npz_get(&z, "sigma", SD_F32, 2, (int64_t[]){5, 5}, &s, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "dtype F64, expected F32"));
    assert_int_equal(sd_npz_get(&z, "sigma", SD_F64, 2, (int64_t[]){5, 6}, &s, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "shape [5, 5], expected [5, 6]"));
    assert_int_equal(sd_npz_get(&z, "features", SD_F32, 2, (int64_t[]){-1, 4}, &s, &err), SD_EINPUT);
    assert_int_equal(sd_npz_get(&z, "mu2", SD_F64, 1, (int64_t[]){5}, &s, &err), SD_EINPUT);
    assert_non_null(strstr(err.msg, "no array 'mu2'"));
    assert_null(s);
    sd_npz_close(&z);
    /* the same file parsed member by member as plain .npy images */
    sd_mapfile m;
    assert_int_equal(sd_mapfile_open(&m, path, &err), 0);
    assert_memory_equal(m.data, "PK\x03\x04", 4);
    sd_mapfile_close(&m);
}

/* pytorch-fid (np.savez, ZIP64 local headers) and clean-fid (np.savez_compressed) layouts. */
static void test_npz_reads_numpy_stored_zip64_and_deflated_archives(void **state) {
    (void)state;
    double mu[3] = {0.5, -1.25, 3.0}, sigma[9] = {1, 0.5, 0, 0.5, 2, 0.25, 0, 0.25, 3};
    unsigned char a[512], b[512];
    size_t al = make_npy(a, "<f8", "(3,)", mu, sizeof mu, 1);
    size_t bl = make_npy(b, "<f8", "(3, 3)", sigma, sizeof sigma, 2);
    for (int mode = 0; mode < 3; mode++) {
        tzip zb = {0};
        tz_add64(&zb, "mu.npy", a, al, mode == 2, mode == 1);
        tz_add64(&zb, "sigma.npy", b, bl, mode == 2, mode == 1);
        tz_add(&zb, "README.txt", "not an array", 12, 0); /* ignored, as np.load's keys would */
        tz_finish(&zb);
        const char *path = tu_tmp("numpy.npz");
        tz_write(&zb, path, zb.n);
        sd_npz z;
        sd_error err = {0};
        if (sd_npz_open(&z, path, &err) < 0) fail_msg("mode %d: %s", mode, err.msg);
        assert_int_equal(z.n, 2);
        assert_int_equal(z.nowned, mode == 2 ? 2 : 0);
        const sd_tensor *t;
        assert_int_equal(sd_npz_get(&z, "mu", SD_F64, 1, (int64_t[]){3}, &t, &err), 0);
        double v[9];
        sd_dtype_convert_to_f64(v, t->data, t->dtype, 3);
        assert_memory_equal(v, mu, sizeof mu);
        assert_int_equal(sd_npz_get(&z, "sigma", SD_F64, 2, (int64_t[]){3, 3}, &t, &err), 0);
        sd_dtype_convert_to_f64(v, t->data, t->dtype, 9);
        assert_memory_equal(v, sigma, sizeof sigma);
        sd_npz_close(&z);
        tz_free(&zb);
    }
}

typedef struct bad_npy {
    const char *what;
    const char *header; /* the dict literal; NULL: use raw */
    size_t data_bytes;
    const char *expect;
} bad_npy;

static const bad_npy bad_npys[] = {
    {"unsupported dtype", "{'descr': '<c16', 'fortran_order': False, 'shape': (2,), }", 32, "dtype '<c16'"},
    {"big-endian", "{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }", 16, "big-endian"},
    {"object array", "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", 16, "not supported"},
    {"Fortran order", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24, "Fortran"},
    {"missing shape", "{'descr': '<f4', 'fortran_order': False, }", 8, "malformed .npy header"},
    {"negative dimension", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", 8, "malformed"},
    {"unknown key", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1, }", 8, "malformed"},
    {"not a dict", "['descr', '<f4']", 8, "malformed"},
    {"data too short", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20, "needs 24 bytes"},
    {"data too long", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 12, "found 12"},
};

static void test_npz_rejects_malformed_npy_headers(void **state) {
    (void)state;
    unsigned char buf[1024], zeros[64] = {0};
    sd_error err = {0};
    sd_tensor t;
    for (size_t i = 0; i < sizeof bad_npys / sizeof bad_npys[0]; i++) {
        const bad_npy *c = &bad_npys[i];
        size_t dl = strlen(c->header), total = 10 + dl + 1, padded = (total + 63) / 64 * 64;
        memcpy(buf, "\x93NUMPY\x01\x00", 8);
        buf[8] = (unsigned char)(padded - 10);
        buf[9] = 0;
        memcpy(buf + 10, c->header, dl);
        memset(buf + 10 + dl, ' ', padded - total);
        buf[padded - 1] = '\n';
        memcpy(buf + padded, zeros, c->data_bytes);
        int rc = sd_npz_parse_npy(buf, padded + c->data_bytes, "case.npy", &t, &err);
        if (rc >= 0) fail_msg("'%s' was accepted", c->what);
        if (!strstr(err.msg, c->expect)) fail_msg("'%s': message '%s' lacks '%s'", c->what, err.msg, c->expect);
    }
    /* broken preambles */
    assert_true(sd_npz_parse_npy("\x93NUMPX\x01\x00\x00\x00", 10, "m.npy", &t, &err) < 0);
    assert_non_null(strstr(err.msg, "magic"));
    assert_true(sd_npz_parse_npy("\x93NUMPY\x01\x00\xff\x00{}", 12, "m.npy", &t, &err) < 0);
    assert_non_null(strstr(err.msg, "runs past"));
    assert_true(sd_npz_parse_npy("\x93NUMPY\x09\x00\x00\x00", 10, "m.npy", &t, &err) < 0);
    assert_non_null(strstr(err.msg, "version 9"));
    /* a good one for contrast: 0-d and the spacing numpy 1.x writes for 1-d */
    size_t n = make_npy(buf, "<i8", "()", "\x05\0\0\0\0\0\0\0", 8, 1);
    assert_int_equal(sd_npz_parse_npy(buf, n, "ok.npy", &t, &err), 0);
    assert_int_equal(t.ndim, 0);
    assert_int_equal(t.dtype, SD_I64);
    /* and the same inside an archive: the error names the file and member */
    tzip zb = {0};
    const char *h = bad_npys[8].header;
    size_t dl = strlen(h), total = 10 + dl + 1, padded = (total + 63) / 64 * 64;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(padded - 10);
    buf[9] = 0;
    memcpy(buf + 10, h, dl);
    memset(buf + 10 + dl, ' ', padded - total);
    buf[padded - 1] = '\n';
    tz_add(&zb, "features.npy", buf, padded + 20, 1);
    tz_finish(&zb);
    const char *path = tu_tmp("bad.npz");
    tz_write(&zb, path, zb.n);
    sd_npz z;
    assert_true(sd_npz_open(&z, path, &err) < 0);
    assert_non_null(strstr(err.msg, "bad.npz: features.npy"));
    /* truncated archive */
    tz_write(&zb, path, zb.n - 30);
    assert_true(sd_npz_open(&z, path, &err) < 0);
    assert_non_null(strstr(err.msg, "end-of-central-directory"));
    tz_free(&zb);
    /* not an archive at all */
    FILE *fp = fopen(path, "wb");
    fputs("mu,sigma\n1,2\n", fp);
    fclose(fp);
    assert_true(sd_npz_open(&z, path, &err) < 0);
    assert_non_null(strstr(err.msg, "ZIP archive"));
}

static void test_npz_write_refuses_unnamed_and_unsupported_arrays(void **state) {
    (void)state;
    float x[2] = {1, 2};
    sd_error err = {0};
    sd_tensor t = {.name = "", .dtype = SD_F32, .ndim = 1, .shape = {2}, .data = x, .nbytes = 8};
    assert_int_equal(sd_npz_write(tu_tmp("w.npz"), &t, 1, &err), SD_EINPUT);
    t.name = "x";
    t.dtype = SD_BF16; /* numpy has no bfloat16 */
    t.nbytes = 4;
    assert_int_equal(sd_npz_write(tu_tmp("w.npz"), &t, 1, &err), SD_EUNSUPPORTED);
    assert_false(sd_fs_is_file(tu_tmp("w.npz")));
    t.dtype = SD_F32;
    t.nbytes = 8;
    assert_int_equal(sd_npz_write("/nonexistent-dir/w.npz", &t, 1, &err), SD_EIO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_npz_round_trip_keeps_names_dtypes_shapes_and_bytes),
        cmocka_unit_test(test_npz_reads_numpy_stored_zip64_and_deflated_archives),
        cmocka_unit_test(test_npz_rejects_malformed_npy_headers),
        cmocka_unit_test(test_npz_write_refuses_unnamed_and_unsupported_arrays),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
