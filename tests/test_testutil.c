/*
 * Tests for the test helpers themselves (tests/testutil.c): a checker that
 * passes what it should reject hides every bug behind it.
 *
 * A helper that "fails" longjmps out of the running cmocka test, so each case
 * runs in a child process with its own one-test group; the child's exit
 * status is the number of tests that failed there.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct close_case {
    const char *what;
    float got[3], want[3];
    double atol;
    int should_fail;
} close_case;

static const close_case *current;

static void run_current(void **state) {
    (void)state;
    tu_expect_close(current->what, current->got, current->want, 3, current->atol);
}

/* 1 when tu_expect_close failed on c (in a child process), 0 when it passed. */
static int expect_close_fails(const close_case *c) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) _exit(100);
        current = c;
        const struct CMUnitTest one[] = {cmocka_unit_test(run_current)};
        _exit(cmocka_run_group_tests_name("child", one, NULL, NULL));
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_true(WEXITSTATUS(st) <= 1);
    return WEXITSTATUS(st);
}

static void test_expect_close_fails_on_nan_on_either_side_and_on_differences_beyond_atol(void **state) {
    (void)state;
    const close_case cases[] = {
        {"equal", {1, 2, 3}, {1, 2, 3}, 0, 0},
        {"within atol", {1, 2, 3.0005f}, {1, 2, 3}, 1e-3, 0},
        {"beyond atol", {1, 2, 3.01f}, {1, 2, 3}, 1e-3, 1},
        {"NaN == NaN", {1, NAN, 3}, {1, NAN, 3}, 1e-3, 1},
        {"NaN got", {NAN, 2, 3}, {1, 2, 3}, 1e9, 1},
        {"NaN want", {1, 2, 3}, {1, 2, NAN}, 1e9, 1},
        {"equal infinities", {INFINITY, -INFINITY, 0}, {INFINITY, -INFINITY, 0}, 0, 0},
        {"infinity against a number", {INFINITY, 2, 3}, {1e30f, 2, 3}, 1e9, 1},
        {"opposite infinities", {INFINITY, 2, 3}, {-INFINITY, 2, 3}, 1e9, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (expect_close_fails(&cases[i]) != cases[i].should_fail)
            fail_msg("tu_expect_close on '%s' %s", cases[i].what, cases[i].should_fail ? "passed" : "failed");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expect_close_fails_on_nan_on_either_side_and_on_differences_beyond_atol),
    };
    return cmocka_run_group_tests_name("testutil", tests, NULL, NULL);
}
