#!/bin/sh
# Times `sdrender stats` and `sdrender metrics` on generated images (not part of `make check`).
#
#   scripts/bench-metrics.sh [N] [RANKS]      default: 2000 images per side, 1 rank
#
# Makes N deterministic 64x64 "real" PNGs and N "fake" ones (scripts/bench-pngs.c: blobs on
# gradients, much quicker than rendering), then times
#   1. sdrender stats   --images real -o ref.npz            (N Inception forwards)
#   2. sdrender metrics --real ref.npz --fake fake          (N forwards + FID + precision/recall)
# with RANKS > 1 both run under mpirun -np RANKS. Inception weights: $INCEPTION (default: the
# random-weight test network, which costs the same as pytorch-fid's). The numbers are wall-clock
# seconds on whatever else the machine is doing.
set -eu
N=${1:-2000}
RANKS=${2:-1}
BUILD=${SDRENDER_BUILD:-build}
BIN=$BUILD/sdrender
INCEPTION=${INCEPTION:-${SDRENDER_TESTDATA:-../shared/testdata}/metrics/inception_random_fp16.safetensors}
[ -x "$BIN" ] || { echo "bench-metrics: build $BIN first (make)" >&2; exit 2; }
[ -f "$INCEPTION" ] || { echo "bench-metrics: no Inception weights at $INCEPTION (set INCEPTION=...)" >&2; exit 2; }
work=$(mktemp -d /tmp/sdrender-bench-metrics.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }

cc -O2 -o "$work/bench-pngs" scripts/bench-pngs.c $(pkg-config --cflags --libs libpng) -lm
mkdir -p "$work/real" "$work/fake"
t0=$(now)
"$work/bench-pngs" "$work/real" "$N" 0
"$work/bench-pngs" "$work/fake" "$N" 1
t1=$(now)
echo "bench-metrics: wrote 2 x $N PNGs (64x64) in $(secs "$t0" "$t1") s"

MPI=""
[ "$RANKS" -gt 1 ] && MPI="mpirun --allow-run-as-root --oversubscribe -np $RANKS"
t0=$(now)
$MPI "$BIN" stats --images "$work/real" -o "$work/ref.npz" --inception "$INCEPTION"
t1=$(now)
$MPI "$BIN" metrics --real "$work/ref.npz" --fake "$work/fake" --inception "$INCEPTION" --json "$work/m.json"
t2=$(now)
cat "$work/m.json"
s1=$(secs "$t0" "$t1")
s2=$(secs "$t1" "$t2")
echo "bench-metrics: $N images, $RANKS rank(s), $(nproc) cores on $(hostname)"
echo "bench-metrics: stats   $s1 s ($(echo "scale=2; $N / $s1" | bc) images/s)"
echo "bench-metrics: metrics $s2 s ($(echo "scale=2; $N / $s2" | bc) images/s, FID and precision/recall included)"
