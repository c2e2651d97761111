/* Tests for core/safetensors: strict validation and round trips. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes an 8-byte length (hlen_override if non-zero, else strlen(header)), the header and ndata zero bytes. */
static void write_raw(const char *path, uint64_t hlen_override, const char *header, size_t hdr_bytes, size_t ndata) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    uint64_t hl = hlen_override ? hlen_override : hdr_bytes;
    unsigned char l8[8];
    for (int i = 0; i < 8; i++) l8[i] = (unsigned char)(hl >> (8 * i));
    fwrite(l8, 1, 8, fp);
    fwrite(header, 1, hdr_bytes, fp);
    for (size_t i = 0; i < ndata; i++) fputc(0, fp);
    fclose(fp);
}

typedef struct {
    const char *what;   /* the guarantee */
    const char *header; /* NULL: write raw_bytes as the whole file */
    uint64_t hlen;      /* 0: the header's length */
    size_t ndata;
    const char *expect; /* substring of the error message */
    int raw_len;        /* for header == NULL: file of this many zero bytes */
} bad_case;

static const bad_case bad_cases[] = {
    {"empty file", NULL, 0, 0, "too small", 0},
    {"file shorter than the length field", NULL, 0, 0, "too small", 5},
    {"header length over 100 MB", "{}", 200000000ULL, 0, "100 MB", 0},
    {"header length larger than the file", "{}", 4096, 0, "larger than the file", 0},
    {"header is not JSON", "{\"a\": [1, 2", 0, 0, "not valid JSON", 0},
    {"header is not UTF-8", "{\"\xff\xfe\": 1}", 0, 0, "not valid JSON", 0},
    {"header is a JSON array", "[1, 2, 3]", 0, 0, "not a JSON object", 0},
    {"entry is not an object", "{\"a\": 5}", 0, 0, "not an object", 0},
    {"missing dtype", "{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 0, 4, "dtype", 0},
    {"unknown dtype", "{\"a\": {\"dtype\": \"F8_E9\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 0, 4,
     "unknown dtype 'F8_E9'", 0},
    {"negative shape entry", "{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 0, 4,
     "shape entry 0", 0},
    {"too many dimensions",
     "{\"a\": {\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 1]}}", 0, 1, "dimensions", 0},
    {"shape and byte span disagree", "{\"a\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 20]}}", 0,
     24, "needs 24 bytes but data_offsets span 20", 0},
    {"shape product overflows",
     "{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 16], \"data_offsets\": [0, 8]}}", 0, 8, "needs",
     0},
    {"data_offsets of wrong arity", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 0, 4,
     "data_offsets must be", 0},
    {"data_offsets end before begin", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 0, 8,
     "before begin", 0},
    {"data_offsets beyond the data area", "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 0,
     12, "outside the data area", 0},
    {"overlapping tensors",
     "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, \"b\": {\"dtype\": \"F32\", \"shape\": [2], "
     "\"data_offsets\": [4, 12]}}",
     0, 12, "overlap", 0},
    {"duplicate tensor names",
     "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, \"a\": {\"dtype\": \"F32\", \"shape\": [1], "
     "\"data_offsets\": [4, 8]}}",
     0, 8, "twice", 0},
    {"non-string metadata", "{\"__metadata__\": {\"k\": 3}}", 0, 0, "__metadata__", 0},
};

static void test_safetensors_rejects_each_malformed_file_with_its_own_error(void **state) {
    (void)state;
    size_t ncases = sizeof bad_cases / sizeof bad_cases[0];
    assert_true(ncases >= 12);
    for (size_t i = 0; i < ncases; i++) {
        const bad_case *c = &bad_cases[i];
        char name[64];
        snprintf(name, sizeof name, "bad%02zu.safetensors", i);
        const char *path = tu_tmp(name);
        if (c->header) {
            write_raw(path, c->hlen, c->header, strlen(c->header), c->ndata);
        } else {
            FILE *fp = fopen(path, "wb");
            assert_non_null(fp);
            for (int k = 0; k < c->raw_len; k++) fputc(1, fp);
            fclose(fp);
        }
        st_file f;
        sd_error err = {0};
        int rc = st_open(&f, path, &err);
        if (rc != SD_EINPUT) fail_msg("case '%s': expected SD_EINPUT, got %d (%s)", c->what, rc, err.msg);
        if (!strstr(err.msg, c->expect))
            fail_msg("case '%s': message '%s' does not mention '%s'", c->what, err.msg, c->expect);
        if (!strstr(err.msg, path)) fail_msg("case '%s': message '%s' does not name the file", c->what, err.msg);
        assert_null(f.map);
    }
}

static void test_safetensors_missing_file_is_not_found(void **state) {
    (void)state;
    st_file f;
    sd_error err = {0};
    assert_int_equal(st_open(&f, tu_tmp("does-not-exist.safetensors"), &err), SD_ENOTFOUND);
    assert_non_null(strstr(err.msg, "does-not-exist"));
}

/* Every truncation of a valid file must fail cleanly (never crash or read past the end). */
static void test_safetensors_every_truncation_fails_cleanly(void **state) {
    (void)state;
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[3] = {0x3c00, 0x4000, 0xc000};
    sd_tensor ts[2] = {
        {.name = "a", .dtype = SD_F32, .ndim = 2, .shape = {2, 3}, .data = a, .nbytes = sizeof a},
        {.name = "b", .dtype = SD_F16, .ndim = 1, .shape = {3}, .data = b, .nbytes = sizeof b},
    };
    const char *path = tu_tmp("full.safetensors");
    assert_int_equal(st_write(path, ts, 2, NULL, NULL, 0, NULL), 0);
    char *buf;
    size_t len;
    assert_int_equal(sd_fs_read_file(path, &buf, &len, NULL), 0);
    for (size_t cut = 0; cut < len; cut++) {
        const char *p = tu_tmp("cut.safetensors");
        FILE *fp = fopen(p, "wb");
        fwrite(buf, 1, cut, fp);
        fclose(fp);
        st_file f;
        sd_error err = {0};
        if (st_open(&f, p, &err) == 0) fail_msg("truncation at %zu of %zu bytes was accepted", cut, len);
    }
    free(buf);
}

static void test_safetensors_round_trip_keeps_values_and_metadata(void **state) {
    (void)state;
    float a[6] = {1.5f, -2, 3, 4, 5, 6};
    uint16_t h[2] = {sd_dtype_f32_to_f16(0.5f), sd_dtype_f32_to_f16(-3.25f)};
    uint16_t bf[2] = {sd_dtype_f32_to_bf16(1.0f), sd_dtype_f32_to_bf16(-0.75f)};
    sd_tensor ts[3] = {
        {.name = "z.a", .dtype = SD_F32, .ndim = 2, .shape = {2, 3}, .data = a, .nbytes = sizeof a},
        {.name = "m.h", .dtype = SD_F16, .ndim = 1, .shape = {2}, .data = h, .nbytes = sizeof h},
        {.name = "b.bf", .dtype = SD_BF16, .ndim = 2, .shape = {1, 2}, .data = bf, .nbytes = sizeof bf},
    };
    const char *keys[] = {"format"}, *vals[] = {"pt"};
    const char *path = tu_tmp("rt.safetensors");
    assert_int_equal(st_write(path, ts, 3, keys, vals, 1, NULL), 0);
    st_file f;
    sd_error err = {0};
    assert_int_equal(st_open(&f, path, &err), 0);
    assert_int_equal(f.n, 3);
    assert_string_equal(st_metadata(&f, "format"), "pt");
    float out[6];
    sd_tensor_to_f32(tu_tensor(&f, "z.a"), out);
    tu_expect_close("z.a", out, a, 6, 0);
    sd_tensor_to_f32(tu_tensor(&f, "m.h"), out);
    assert_true(out[0] == 0.5f && out[1] == -3.25f);
    sd_tensor_to_f32(tu_tensor(&f, "b.bf"), out);
    assert_true(out[0] == 1.0f && out[1] == -0.75f);
    const sd_tensor *t;
    assert_int_equal(st_get(&f, "nope", &t, &err), SD_ENOTFOUND);
    assert_non_null(strstr(err.msg, "'nope'"));
    st_close(&f);
}

/* The reference files load and their integer/float contents decode. */
static void test_safetensors_reads_reference_files(void **state) {
    (void)state;
    st_file f;
    tu_open(&f, "golden/text_encoder_sd15.safetensors");
    const sd_tensor *ids = tu_tensor(&f, "input_ids");
    assert_int_equal(ids->dtype, SD_I64);
    assert_int_equal(ids->ndim, 2);
    assert_int_equal(ids->shape[0], 6);
    assert_int_equal(ids->shape[1], 77);
    float *v = tu_f32(&f, "input_ids", NULL);
    assert_true(v[0] == 49406.0f);
    free(v);
    st_close(&f);
    tu_open(&f, "models/tiny-sd15.safetensors");
    assert_int_equal(f.n, 980);
    st_close(&f);
}

static void test_f16_conversion_is_exact_for_all_halves(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = sd_dtype_f16_to_f32((uint16_t)h);
        if (f != f) continue; /* NaN payloads */
        assert_int_equal(sd_dtype_f32_to_f16(f), h);
    }
    /* bulk path equals the scalar path */
    uint16_t hs[100];
    float bulk[100];
    for (int i = 0; i < 100; i++) hs[i] = (uint16_t)(i * 653 + 17);
    sd_dtype_convert_to_f32(bulk, hs, SD_F16, 100);
    for (int i = 0; i < 100; i++) assert_true(bulk[i] == sd_dtype_f16_to_f32(hs[i]) || bulk[i] != bulk[i]);
    assert_int_equal(sd_dtype_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie rounds to even */
    assert_int_equal(sd_dtype_f32_to_f16(70000.0f), 0x7c00);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safetensors_rejects_each_malformed_file_with_its_own_error),
        cmocka_unit_test(test_safetensors_missing_file_is_not_found),
        cmocka_unit_test(test_safetensors_every_truncation_fails_cleanly),
        cmocka_unit_test(test_safetensors_round_trip_keeps_values_and_metadata),
        cmocka_unit_test(test_safetensors_reads_reference_files),
        cmocka_unit_test(test_f16_conversion_is_exact_for_all_halves),
    };
    return cmocka_run_group_tests_name("safetensors", tests, NULL, NULL);
}
