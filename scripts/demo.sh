#!/bin/sh
# The main job end to end on the demo model that ships inside sdrender (no downloads):
#   init-model --demo -> enqueue a prompt set at 4 CFG scales -> mpirun -np 3 sdrender run
#   -> metrics per CFG scale against the procedural reference set -> report (HTML).
# Usage: scripts/demo.sh [path/to/sdrender]   (make demo builds it first)
# Everything goes to build/demo/: model/, real/ (reference pictures), jobs.db, out/*.png,
# report/index.html. Rerunning resumes the render (from scratch when the demo model changed) and
# rescores; DEMO_PROMPTS, DEMO_REAL,
# DEMO_RANKS and DEMO_CFGS change the sizes.
set -eu
BIN=${1:-build/sdrender}
DEMO=${DEMO_DIR:-build/demo}
NP=${DEMO_RANKS:-3}
NPROMPTS=${DEMO_PROMPTS:-48}
NREAL=${DEMO_REAL:-500}
CFGS=${DEMO_CFGS:-1 2 4 8}
mkdir -p "$DEMO"

echo "== 1. the demo model (7 M parameters, trained on procedural shapes; see README)"
"$BIN" init-model --demo "$DEMO/model"
# a render made with another demo model (an older sdrender) starts over; the reference set stays
stamp=$(cd "$DEMO/model" && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-64)
if [ -f "$DEMO/jobs.db" ] && [ "$(cat "$DEMO/model.sha256" 2>/dev/null)" != "$stamp" ]; then
    echo "the demo model changed since $DEMO/jobs.db was rendered: starting the render over"
    rm -rf "$DEMO/jobs.db" "$DEMO/jobs.db-wal" "$DEMO/jobs.db-shm" "$DEMO/out" "$DEMO/report"
fi
echo "$stamp" >"$DEMO/model.sha256"

echo "== 2. $NREAL reference pictures and $NPROMPTS prompts (seeds the model was not trained on)"
[ -f "$DEMO/real/captions.txt" ] || "$BIN" shapes -o "$DEMO/real" -n "$NREAL" --seed 7
# No trained Inception ships with sdrender (nothing is downloaded), so FID, precision/recall,
# density and coverage use a random-weight Inception: comparable between these runs only.
[ -f "$DEMO/real.npz" ] || "$BIN" stats -q --images "$DEMO/real" -o "$DEMO/real.npz" --inception random
if [ ! -f "$DEMO/jobs.db" ]; then
    "$BIN" shapes --captions-only -o "$DEMO/prompts" -n "$NPROMPTS" --seed 99
    # one row per prompt and CFG scale; the same seed for a prompt at every scale
    : >"$DEMO/prompts.jsonl"
    for g in $CFGS; do
        awk -v g="$g" '{ gsub(/"/, "\\\""); printf "{\"prompt\": \"%s\", \"seed\": %d, \"cfg_scale\": %s}\n", $0, NR, g }' \
            "$DEMO/prompts/captions.txt" >>"$DEMO/prompts.jsonl"
    done
    "$BIN" enqueue --db "$DEMO/jobs.db" --steps 20 --sampler euler -W 64 -H 64 "$DEMO/prompts.jsonl"
fi

echo "== 3. render with $NP MPI ranks (rank 0 hands out jobs, the others render)"
# root needs --allow-run-as-root; more ranks than cores needs --oversubscribe and one thread per rank
MPIRUN_FLAGS="--oversubscribe -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1"
[ "$(id -u)" = 0 ] && MPIRUN_FLAGS="$MPIRUN_FLAGS --allow-run-as-root"
# shellcheck disable=SC2086
mpirun $MPIRUN_FLAGS -np "$NP" "$BIN" run --db "$DEMO/jobs.db" -m "$DEMO/model" --out "$DEMO/out"
"$BIN" status --db "$DEMO/jobs.db"

echo "== 4. scores per CFG scale against the reference pictures"
for g in $CFGS; do
    echo "-- cfg_scale $g"
    "$BIN" metrics -q --db "$DEMO/jobs.db" --where "cfg_scale=$g" --real "$DEMO/real.npz" --inception random
done

echo "== 5. report"
"$BIN" report --db "$DEMO/jobs.db" -o "$DEMO/report"
echo "open $DEMO/report/index.html (pictures: $DEMO/out/*.png; PNG info holds the prompt, seed and settings)"
