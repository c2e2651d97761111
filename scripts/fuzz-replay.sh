#!/bin/sh
# Replays the fuzz corpora and regression inputs through the harnesses built with the normal compiler
# (make check): for each build/.../fuzz-replay/fuzz_NAME, the files of tests/fuzz/corpus/NAME and
# tests/fuzz/regress/NAME (those that exist). Exits non-zero when one harness fails, and when one
# takes over 120 s (a hang; all of a harness's inputs take well under a second).
set -u
# (SANITIZE=1) ASan refuses allocations over 256 MiB too, inside libpng and the other shared libraries
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:max_allocation_size_mb=256}"
failed=""
for b in "$@"; do
    name=$(basename "$b" | sed 's/^fuzz_//')
    dirs=""
    for d in tests/fuzz/corpus/"$name" tests/fuzz/regress/"$name"; do
        [ -d "$d" ] && dirs="$dirs $d"
    done
    [ -z "$dirs" ] && continue
    # shellcheck disable=SC2086
    timeout 120 "$b" $dirs || failed="$failed $name"
done
if [ -n "$failed" ]; then
    echo "FAILED fuzz replays:$failed"
    exit 1
fi
echo "All fuzz corpora and regression inputs replayed"
