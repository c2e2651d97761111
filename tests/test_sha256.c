/* Tests for core/sha256: FIPS 180 vectors, block-boundary lengths, streaming, files. */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"

static void expect_hex(const void *data, size_t n, const char *want) {
    char hex[SD_SHA256_HEX_LEN + 1];
    sd_sha256_buffer(data, n, hex);
    assert_string_equal(hex, want);
}

/* The examples of FIPS 180-2 Appendix B / NIST's SHA-256 example file. */
static void test_sha256_matches_fips180_vectors(void **state) {
    (void)state;
    expect_hex("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect_hex("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    expect_hex(m448, strlen(m448), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    expect_hex(m896, strlen(m896), "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    size_t n = 1000000;
    char *a = malloc(n);
    assert_non_null(a);
    memset(a, 'a', n);
    expect_hex(a, n, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

/* Lengths around the 55/56/64-byte padding edges (expected values from coreutils sha256sum). */
static void test_sha256_pads_correctly_at_block_boundaries(void **state) {
    (void)state;
    static const struct {
        size_t n;
        const char *hex;
    } cases[] = {
        {55, "595615dbe4f0f407ae397d08b4c2cb870cb9b0e11937416f950c5160acf9c005"},
        {56, "784f623b787495078e93ff28a25b581df0584055a7e71d8cd90c454716b92f51"},
        {63, "5ca3e1ef5207490eac01a795e5cc94d59582a5118bf9534665c8668d87aa647c"},
        {64, "2fcd5a0d60e4c941381fcc4e00a4bf8be422c3ddfafb93c809e8d1e2bfffae8e"},
        {65, "1b3cd1877ab2f2f19f7be001722554f336cb799df0329de0bb4c118dc6abc06d"},
        {119, "faef67da856d6fd9c8d12f9ed0a4fefd3cf0ce085ab43e2907418d457e3c354b"},
        {120, "c9512b08619c19fbb503c7da6b46ef20301e5f7a7a5f43989182398536f5c5c8"},
        {1000, "915e53a44c18b19bb06ba5b3f5fcaf1dc4651e8404c63425cfc6174e74659d87"},
    };
    char buf[1000];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (char)('a' + i % 26);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) expect_hex(buf, cases[i].n, cases[i].hex);
}

/* Feeding the message in pieces of any size gives the one-shot digest. */
static void test_sha256_streaming_equals_one_shot(void **state) {
    (void)state;
    size_t n = 5000;
    unsigned char *m = malloc(n);
    assert_non_null(m);
    for (size_t i = 0; i < n; i++) m[i] = (unsigned char)(i * 131 + 7);
    char want[SD_SHA256_HEX_LEN + 1], got[SD_SHA256_HEX_LEN + 1];
    sd_sha256_buffer(m, n, want);
    static const size_t pieces[] = {1, 3, 55, 63, 64, 65, 127, 1000};
    for (size_t k = 0; k < sizeof pieces / sizeof pieces[0]; k++) {
        sd_sha256 c;
        sd_sha256_init(&c);
        for (size_t off = 0; off < n; off += pieces[k])
            sd_sha256_update(&c, m + off, off + pieces[k] <= n ? pieces[k] : n - off);
        uint8_t d[SD_SHA256_DIGEST_LEN];
        sd_sha256_final(&c, d);
        sd_sha256_to_hex(d, got);
        assert_string_equal(got, want);
    }
    free(m);
}

/*
 * Every file of a MANIFEST.json (root: the folder above its golden/) has the recorded size and
 * SHA-256, a copy_of entry the digest of the file it names, and the sizes add up to total_bytes:
 * the reference data the tests read is intact. Returns the number of files checked.
 */
static int check_manifest(const char *root_rel) {
    char rel[512];
    snprintf(rel, sizeof rel, "%s%sgolden/MANIFEST.json", root_rel, *root_rel ? "/" : "");
    json_error_t jerr;
    json_t *root = json_load_file(tu_path(rel), 0, &jerr);
    if (!root) fail_msg("cannot read %s: %s", rel, jerr.text);
    json_t *files = json_object_get(root, "files");
    assert_true(json_is_array(files));
    assert_true(json_array_size(files) > 0);
    json_int_t total = 0;
    int checked = 0;
    size_t i;
    json_t *f;
    json_array_foreach(files, i, f) {
        const char *path = json_string_value(json_object_get(f, "path"));
        const char *sha = json_string_value(json_object_get(f, "sha256"));
        json_t *jb = json_object_get(f, "bytes");
        if (!path || !sha || !json_is_integer(jb)) fail_msg("%s: entry %zu lacks path, sha256 or bytes", rel, i);
        snprintf(rel, sizeof rel, "%s%s%s", root_rel, *root_rel ? "/" : "", path);
        char hex[SD_SHA256_HEX_LEN + 1];
        sd_error err = {0};
        if (sd_sha256_file(tu_path(rel), hex, &err) < 0) fail_msg("%s", err.msg);
        if (strcmp(hex, sha) != 0) fail_msg("%s: got %s, manifest says %s", rel, hex, sha);
        char *data = NULL;
        size_t len = 0;
        if (sd_fs_read_file(tu_path(rel), &data, &len, &err) < 0) fail_msg("%s", err.msg);
        free(data);
        if ((json_int_t)len != json_integer_value(jb))
            fail_msg("%s: %zu bytes, manifest says %lld", rel, len, (long long)json_integer_value(jb));
        total += json_integer_value(jb);
        const char *copy_of = json_string_value(json_object_get(f, "copy_of"));
        if (copy_of) {
            size_t k;
            json_t *g;
            int found = 0;
            json_array_foreach(files, k, g) {
                const char *gp = json_string_value(json_object_get(g, "path"));
                if (gp && !strcmp(gp, copy_of)) {
                    found = 1;
                    assert_string_equal(json_string_value(json_object_get(g, "sha256")), sha);
                }
            }
            if (!found) fail_msg("%s: copy_of '%s' is not in the manifest", path, copy_of);
        }
        checked++;
    }
    assert_int_equal(total, json_integer_value(json_object_get(root, "total_bytes")));
    json_decref(root);
    return checked;
}

static void test_sha256_every_testdata_manifest_file_matches(void **state) {
    (void)state;
    /* testdata's models/ and golden/ (113 files, ~62 MB), and ext/'s (58 files) */
    assert_int_equal(check_manifest(""), 113);
    assert_int_equal(check_manifest("ext"), 58);
}

static void test_sha256_file_reports_missing_file(void **state) {
    (void)state;
    char hex[SD_SHA256_HEX_LEN + 1];
    sd_error err = {0};
    assert_int_equal(sd_sha256_file(tu_tmp("does-not-exist.bin"), hex, &err), SD_ENOTFOUND);
    assert_non_null(strstr(err.msg, "does-not-exist.bin"));
    assert_true(sd_sha256_is_hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    assert_false(sd_sha256_is_hex("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"));
    assert_false(sd_sha256_is_hex("abc"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_matches_fips180_vectors),
        cmocka_unit_test(test_sha256_pads_correctly_at_block_boundaries),
        cmocka_unit_test(test_sha256_streaming_equals_one_shot),
        cmocka_unit_test(test_sha256_every_testdata_manifest_file_matches),
        cmocka_unit_test(test_sha256_file_reports_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
