/* Tests for `sdrender bench`: its command line (a real run needs 2 GB of random weights, see make bench). */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static void test_bench_rejects_sizes_that_are_not_multiples_of_8(void **state) {
    (void)state;
    char *out = NULL;
    int rc = tu_sh(&out, "%s bench -W 100 -H 64 2>&1", tu_bin());
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "multiples of 8"));
    assert_non_null(strstr(out, "sdrender: "));
    free(out);
    rc = tu_sh(&out, "%s bench --steps 0 2>&1", tu_bin());
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "--steps"));
    free(out);
}

static void test_bench_help_lists_the_json_option(void **state) {
    (void)state;
    char *out = NULL;
    assert_int_equal(tu_sh(&out, "%s bench --help", tu_bin()), 0);
    assert_non_null(strstr(out, "--json"));
    assert_non_null(strstr(out, "--threads"));
    free(out);
}

static void test_bench_model_option_fails_cleanly_until_wired(void **state) {
    (void)state;
    char *out = NULL;
    int rc = tu_sh(&out, "%s bench -m /nonexistent/model 2>&1", tu_bin());
    assert_true(rc == 2 || rc == 1);
    assert_non_null(strstr(out, "/nonexistent/model"));
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bench_rejects_sizes_that_are_not_multiples_of_8),
        cmocka_unit_test(test_bench_help_lists_the_json_option),
        cmocka_unit_test(test_bench_model_option_fails_cleanly_until_wired),
    };
    return cmocka_run_group_tests_name("bench", tests, NULL, NULL);
}
