#!/usr/bin/env bash
# Retrain every shipped model from its recipe (src/sharpkd/recipes, `sharpkd train NAME`), then measure them.
#   scripts/reproduce.sh [DATA] [MODEL...]    (DATA: the shared data root, default $SHARPKD_SHARED_DATA or ../shared/data)
# Resumable: run the script again after an interruption and finished stages are skipped, an unfinished one
# continues from its last checkpoint. Pass model names (or `evaluate`) to run only those steps; a recipe trains
# the recipes it builds on first. The shipped sidecars hold the commands and hardware of the original runs
# (`sharpkd models`); on a CPU without native bf16 the recipes train in fp32 (`precision: auto`), so a rerun
# lands close to, not bit-equal with, the shipped numbers. More `sharpkd train` flags go in $TRAIN_FLAGS, e.g.
# TRAIN_FLAGS="--accelerator gpu --num-workers 14" on a GPU.
set -euo pipefail
DATA=${1:-${SHARPKD_SHARED_DATA:-../shared/data}}
shift || true
ONLY=" $* "
R=runs/reproduce

want() { [[ "$ONLY" == "  " || "$ONLY" == *" $1 "* ]]; }

for name in teacher_seed student_seed student_lk teacher student; do
  # shellcheck disable=SC2086
  if want "$name"; then sharpkd train "$name" --data "$DATA" --out "$R/$name" --resume ${TRAIN_FLAGS:-}; fi
done

# The numbers of docs/results.md: validation faces with the seed's blur, and the benchmark suite.
if want evaluate; then
  sharpkd evaluate --data "$DATA/faces" --preset seed --out reports/faces_seed \
    --models teacher,teacher_seed,student,student_lk,student_seed
  sharpkd evaluate --suite --data "$DATA" --count 200 --out reports/suite \
    --models teacher,teacher_seed,student,student_lk,student_seed
  sharpkd bench --sizes 640x360,1280x720 --models teacher,teacher_seed,student,student_lk,student_seed --backends onnx \
    --json reports/bench.json
fi
