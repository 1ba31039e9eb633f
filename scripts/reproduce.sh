#!/usr/bin/env bash
# Reproduce the shipped weights and docs/results.md on a CPU (about 2 hours on 2 cores; a GPU is much faster:
# add --accelerator gpu). DATA is the shared data folder (faces + natural scenes).
set -euo pipefail
DATA=${1:-${SHARPKD_SHARED_DATA:-../shared/data}}

sharpkd train-teacher --data "$DATA" --out runs/teacher --max-time 00:00:35:00
# The students: same data, seed and epoch budget (10 x 3,200 samples); one thread each, run side by side.
OMP_NUM_THREADS=1 sharpkd distill --no-kd --data "$DATA" --out runs/student_nokd --epoch-size 3200 --max-epochs 10 &
OMP_NUM_THREADS=1 sharpkd distill --data "$DATA" --teacher runs/teacher/model.safetensors --out runs/student \
    --epoch-size 3200 --max-epochs 10 --max-time 00:00:28:00 &
OMP_NUM_THREADS=1 sharpkd distill --arch student_fast --data "$DATA" --teacher runs/teacher/model.safetensors \
    --out runs/student_fast --epoch-size 3200 --max-epochs 10 --max-time 00:00:28:00 &
wait

MODELS=teacher=runs/teacher/model.safetensors,student=runs/student/model.safetensors
MODELS=$MODELS,student_nokd=runs/student_nokd/model.safetensors,student_fast=runs/student_fast/model.safetensors
sharpkd evaluate --data "$DATA/faces" --preset seed --models "$MODELS" --out reports/faces_seed
sharpkd evaluate --data "$DATA/faces" --preset videocall --models "$MODELS" --out reports/faces_videocall
sharpkd evaluate --data "$DATA" --preset seed --models "$MODELS" --out reports/all_seed

# Ship: weights + sidecar + curves into the package.
for run in teacher student student_nokd student_fast; do
  cp runs/$run/model.safetensors src/sharpkd/weights/$run.safetensors
  cp runs/$run/model.json src/sharpkd/weights/$run.json
  cp runs/$run/curves.png src/sharpkd/weights/${run}_curves.png
done
