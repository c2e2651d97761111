/*
 * Tests for scripts/check-layout.sh (run by `make check`): on a minimal tree of its own (the
 * repository's Makefile and script, one small file per folder) it passes, and each kind of
 * misplaced file or library use makes it fail with a message naming the file.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes text to tree/rel, making its folder. */
static void layout_write(const char *tree, const char *rel, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", tree, rel);
    char *slash = strrchr(path, '/');
    *slash = 0;
    sd_error err = {0};
    if (sd_fs_mkdirs(path, &err) < 0) fail_msg("%s", err.msg);
    *slash = '/';
    FILE *f = fopen(path, "w");
    if (!f) fail_msg("cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/*
 * A fresh tree tmp/name that check-layout.sh accepts: the repository's Makefile and
 * scripts/check-layout.sh, and a .c file in each folder the Makefile builds.
 */
static const char *layout_tree(const char *name) {
    const char *tree = tu_tmp(name);
    assert_int_equal(tu_sh(NULL, "rm -rf '%s' && mkdir -p '%s/scripts' && cp '%s/Makefile' '%s/' && "
                                 "cp '%s/scripts/check-layout.sh' '%s/scripts/'",
                           tree, tree, tu_src(), tree, tu_src(), tree),
                     0);
    layout_write(tree, "core/base/x.c", "int x_one(void) { return 1; }\n");
    layout_write(tree, "core/base/x.h", "int x_one(void);\n");
    layout_write(tree, "cmd/main.c", "int main(void) { return 0; }\n");
    layout_write(tree, "jobs/j.c",
                 "#include <sqlite3.h>\nint j_open(sqlite3 **db) { return sqlite3_open(\"j.db\", db); }\n");
    layout_write(tree, "mpi/m.c", "#include <mpi.h>\nint m_init(void) { return MPI_Init(0, 0); }\n");
    layout_write(tree, "tests/test_x.c", "int main(void) { return 0; }\n");
    return tree;
}

/* Runs the tree's own check-layout.sh on it: its exit status, and its output in *out (caller frees). */
static int layout_check(const char *tree, char **out) {
    return tu_sh(out, "sh '%s/scripts/check-layout.sh' '%s' 2>&1", tree, tree);
}

/* Adds rel to a fresh tree and expects check-layout.sh to fail saying `want`. */
static void expect_refused(const char *name, const char *rel, const char *text, const char *want) {
    const char *tree = layout_tree(name);
    layout_write(tree, rel, text);
    char *out = NULL;
    int rc = layout_check(tree, &out);
    if (rc == 0 || !strstr(out, want))
        fail_msg("check-layout.sh with %s: exit %d, expected a failure saying '%s'; it said:\n%s", rel, rc, want, out);
    free(out);
}

static void test_layout_a_clean_tree_passes(void **state) {
    (void)state;
    const char *tree = layout_tree("clean");
    char *out = NULL;
    int rc = layout_check(tree, &out);
    if (rc != 0 || strstr(out, "layout:")) fail_msg("check-layout.sh failed on a clean tree (exit %d):\n%s", rc, out);
    free(out);
}

static void test_layout_refuses_a_c_file_at_the_top_of_core(void **state) {
    (void)state;
    expect_refused("top", "core/top.c", "int top(void) { return 0; }\n", "core/top.c is at the top of core/");
}

static void test_layout_refuses_a_file_nested_below_a_core_subsystem(void **state) {
    (void)state;
    expect_refused("deep", "core/a/b/deep.c", "int deep(void) { return 0; }\n", "core/a/b/deep.c is nested too deep");
}

static void test_layout_refuses_a_c_file_the_makefile_does_not_build(void **state) {
    (void)state;
    expect_refused("unbuilt", "tests/helper.c", "int helper(void) { return 0; }\n",
                   "tests/helper.c is not built by the Makefile");
}

static void test_layout_refuses_an_mpi_call_in_core(void **state) {
    (void)state;
    expect_refused("mpi", "core/base/uses_mpi.c", "int uses_mpi(void) { return MPI_Init(0, 0); }\n",
                   "only mpi/ may use MPI: core/base/uses_mpi.c");
}

static void test_layout_refuses_a_sqlite_call_in_cmd(void **state) {
    (void)state;
    expect_refused("sqlite", "cmd/uses_db.c",
                   "struct sqlite3;\nint sqlite3_open(const char *, struct sqlite3 **);\n"
                   "int uses_db(struct sqlite3 **db) { return sqlite3_open(\"x.db\", db); }\n",
                   "only jobs/ may use SQLite: cmd/uses_db.c");
}

static void test_layout_accepts_mpi_and_sqlite_named_only_in_comments(void **state) {
    (void)state;
    const char *tree = layout_tree("comments");
    layout_write(tree, "core/base/note.c",
                 "/* rank 0 calls MPI_Init in mpi/, not here */\nint note(void) { return 0; } // nor MPI_Reduce\n");
    layout_write(tree, "cmd/note.c", "/*\n * the job database is opened with sqlite3_open in jobs/\n */\n"
                                     "int cmd_note(void) { return 0; } // SQLITE_OK\n");
    char *out = NULL;
    int rc = layout_check(tree, &out);
    if (rc != 0) fail_msg("check-layout.sh refused MPI/SQLite names in comments (exit %d):\n%s", rc, out);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_a_clean_tree_passes),
        cmocka_unit_test(test_layout_refuses_a_c_file_at_the_top_of_core),
        cmocka_unit_test(test_layout_refuses_a_file_nested_below_a_core_subsystem),
        cmocka_unit_test(test_layout_refuses_a_c_file_the_makefile_does_not_build),
        cmocka_unit_test(test_layout_refuses_an_mpi_call_in_core),
        cmocka_unit_test(test_layout_refuses_a_sqlite_call_in_cmd),
        cmocka_unit_test(test_layout_accepts_mpi_and_sqlite_named_only_in_comments),
    };
    return cmocka_run_group_tests_name("layout", tests, NULL, NULL);
}
