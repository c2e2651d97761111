#!/bin/sh
# Runs each test binary given on the command line, prints cmocka's output, and a
# one-line summary; exits non-zero when any test binary fails.
# The tests find the sdrender binary through SDRENDER_BIN and the reference
# data through SDRENDER_TESTDATA (default ../shared/testdata); test_layout finds the
# repository (its Makefile and scripts/) through SDRENDER_SRC (default ., where make check runs).
set -u
: "${SDRENDER_BUILD:=build}"
SDRENDER_BIN="${SDRENDER_BIN:-$SDRENDER_BUILD/sdrender}"
export SDRENDER_BIN
export SDRENDER_TESTDATA="${SDRENDER_TESTDATA:-../shared/testdata}"
export OMPI_MCA_rmaps_base_oversubscribe=1
# MPI's own allocations are not ours to check for leaks under ASan.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0}"
failed=""
n=0
start=$(date +%s)
for t in "$@"; do
    n=$((n + 1))
    echo "=== $t"
    if ! "$t"; then failed="$failed $(basename "$t")"; fi
done
end=$(date +%s)
if [ -n "$failed" ]; then
    echo "FAILED test programs:$failed ($n run, $((end - start)) s)"
    exit 1
fi
echo "All $n test programs passed ($((end - start)) s)"
