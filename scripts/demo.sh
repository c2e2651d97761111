#!/bin/sh
# The main job end to end on a tiny model made on the spot (no downloads):
#   init-model -> enqueue 12 prompts -> mpirun -np 3 sdrender run -> status.
# Usage: scripts/demo.sh [path/to/sdrender]   (make demo builds it first)
# Everything goes to build/demo/ (model, jobs.db, out/*.png). Rerunning resumes.
set -eu
BIN=${1:-build/sdrender}
DEMO=${DEMO_DIR:-build/demo}
NP=${DEMO_RANKS:-3}
mkdir -p "$DEMO"

echo "== 1. a tiny random-weight SD 1.x model (its images are noise; see README for real checkpoints)"
[ -f "$DEMO/model/model_index.json" ] || "$BIN" init-model --tiny "$DEMO/model"

echo "== 2. enqueue 12 prompts into $DEMO/jobs.db"
if [ ! -f "$DEMO/jobs.db" ]; then
    cat > "$DEMO/prompts.txt" <<'P'
a lighthouse on a cliff at sunset
a bowl of ramen, studio lighting
an astronaut riding a horse on mars
a watercolor painting of a fox in the snow
a red bicycle leaning against a brick wall
a bonsai tree in a glass dome
a cozy cabin in a snowy forest at night
a macro photo of a dew drop on a leaf
a steampunk airship above the clouds
a bowl of fruit in the style of cezanne
a city street in the rain, neon reflections
a portrait of a cat wearing a tiny hat
P
    "$BIN" enqueue --db "$DEMO/jobs.db" --steps 10 --sampler euler_a -W 64 -H 64 "$DEMO/prompts.txt"
fi

echo "== 3. render with $NP MPI ranks (rank 0 hands out jobs, the others render)"
# root needs these flags; more ranks than cores needs --oversubscribe and one thread per rank
MPIRUN_FLAGS="--oversubscribe -x OMP_NUM_THREADS=1"
[ "$(id -u)" = 0 ] && MPIRUN_FLAGS="$MPIRUN_FLAGS --allow-run-as-root"
# shellcheck disable=SC2086
mpirun $MPIRUN_FLAGS -np "$NP" "$BIN" run --db "$DEMO/jobs.db" -m "$DEMO/model" --out "$DEMO/out"

echo "== 4. status"
"$BIN" status --db "$DEMO/jobs.db"
echo "images: $DEMO/out/*.png (PNG info holds the prompt, seed and settings)"
