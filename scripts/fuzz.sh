#!/bin/sh
# Runs each libFuzzer harness given on the command line for SECONDS seconds, one after the other
# (make fuzz FUZZ_S=SECONDS). New inputs go to $FUZZ_BUILD/corpus/NAME (the seeds in
# tests/fuzz/corpus/NAME and tests/fuzz/regress/NAME are read, never written); a crash, leak,
# timeout or out-of-memory leaves its input in $FUZZ_BUILD/artifacts/ and fails the run.
#   scripts/fuzz.sh SECONDS build/fuzz/fuzz_NAME...
# FUZZ_ARGS adds libFuzzer flags (e.g. FUZZ_ARGS=-jobs=2). Each run's log: $FUZZ_BUILD/logs/NAME.log.
set -u
secs=$1
shift
: "${FUZZ_BUILD:=build/fuzz}"
: "${FUZZ_ARGS:=}"
mkdir -p "$FUZZ_BUILD/artifacts" "$FUZZ_BUILD/logs"
failed=""
for b in "$@"; do
    name=$(basename "$b" | sed 's/^fuzz_//')
    work="$FUZZ_BUILD/corpus/$name"
    mkdir -p "$work"
    seeds=""
    for d in tests/fuzz/corpus/"$name" tests/fuzz/regress/"$name"; do
        [ -d "$d" ] && seeds="$seeds $d"
    done
    log="$FUZZ_BUILD/logs/$name.log"
    t0=$(date +%s)
    # rss 2 GB (a single malloc over it is reported too), 10 s per input, inputs up to 64 KB
    # shellcheck disable=SC2086
    "$b" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="$FUZZ_BUILD/artifacts/$name-" $FUZZ_ARGS "$work" $seeds >"$log" 2>&1
    rc=$?
    t1=$(date +%s)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed 's/^\(#[0-9]*\) *[A-Z]* *//')
    echo "fuzz $name: ${execs:-?} runs in $((t1 - t0)) s; ${last:-no stats}; corpus $(ls "$work" | wc -l) files"
    if [ $rc -ne 0 ]; then
        echo "fuzz $name: FAILED (exit $rc); the input is in $FUZZ_BUILD/artifacts/, the log in $log:"
        grep -E 'ERROR|SUMMARY|==[0-9]+==|fuzz:' "$log" | head -8
        failed="$failed $name"
    fi
done
if [ -n "$failed" ]; then
    echo "FAILED fuzz harnesses:$failed"
    exit 1
fi
