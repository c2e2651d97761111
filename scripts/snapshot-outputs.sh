#!/bin/sh
# Writes the images a refactoring must not change into OUT, so that two commits can be
# compared byte for byte (cmp -r, or sha256sum):
#   - every golden pipeline of test_pipeline (SDRENDER_TEST_PNG_DIR),
#   - the README's generate examples (txt2img, img2img, inpainting) on the tiny test models,
#   - the demo's 12 jobs rendered by `run` under mpirun (3 ranks), and a tiny model from init-model.
# Usage: scripts/snapshot-outputs.sh OUT [BUILD]     (BUILD defaults to build; run `make tests` first)
# The reference data is read from $SDRENDER_TESTDATA (default ../shared/testdata).
set -eu
OUT=${1:?usage: scripts/snapshot-outputs.sh OUT [BUILD]}
BUILD=${2:-build}
TD=${SDRENDER_TESTDATA:-../shared/testdata}
export SDRENDER_TESTDATA="$TD"
BIN="$BUILD/sdrender"
rm -rf "$OUT"
mkdir -p "$OUT/pipeline" "$OUT/readme" "$OUT/demo"
OUT=$(cd "$OUT" && pwd)

SDRENDER_TEST_PNG_DIR="$OUT/pipeline" "$BUILD/tests/test_pipeline" >/dev/null

"$BIN" generate -m "$TD/models/tiny-sd15" \
    -p "a photograph of an astronaut riding a horse" -n "blurry, low quality" \
    --sampler euler_a --steps 10 --seed 42 -W 96 -H 96 -o "$OUT/readme/astronaut.png" >/dev/null
"$BIN" generate -m "$TD/models/tiny-sd15" -p "a red cube" --sampler ddim \
    -i "$TD/golden/pipeline_sd15_img2img_ddim_96.input.png" --strength 0.6 --seed 7 -o "$OUT/readme/i2i.png" >/dev/null
"$BIN" generate -m "$TD/models/tiny-inpaint" -p "a red cube" --seed 7 \
    -i "$TD/golden/pipeline_inpaint_pndm_96.input.png" \
    --mask "$TD/golden/pipeline_inpaint_pndm_96.mask.png" -o "$OUT/readme/inpaint.png" >/dev/null

# the demo: init-model (its weights are part of the snapshot) + 12 jobs on 3 ranks
DEMO_DIR="$OUT/demo/work" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    scripts/demo.sh "$BIN" >/dev/null
mv "$OUT/demo/work/out" "$OUT/demo/out"
mv "$OUT/demo/work/model" "$OUT/demo/model"
rm -rf "$OUT/demo/work"
n=$(find "$OUT" -type f | wc -l)
echo "snapshot: $n files in $OUT"
