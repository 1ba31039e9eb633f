#!/usr/bin/env bash
# Retrain every shipped model, then measure them: one step per model, in dependency order.
#   scripts/reproduce.sh [DATA] [MODEL...]    (DATA: the shared data root, default $SHARPKD_SHARED_DATA or ../shared/data)
# Each step is resumable: run the script again after an interruption and it continues (--resume) where a
# run folder holds checkpoints. Pass model names to run only those steps. The shipped weights' sidecars hold
# the exact commands and hardware of the original runs (`sharpkd models`); on a CPU without native bf16 the
# recipes train in fp32 (`precision: auto`), so a rerun lands close to, not bit-equal with, the shipped numbers.
# Add `--accelerator gpu` to the training commands on a GPU.
set -euo pipefail
DATA=${1:-${SHARPKD_SHARED_DATA:-../shared/data}}
shift || true
ONLY=" $* "
R=runs/reproduce
mkdir -p "$R"

want() { [[ "$ONLY" == "  " || "$ONLY" == *" $1 "* ]]; }

# train CMD... --out DIR: start, or resume a run folder that holds checkpoints; skip a finished one.
train() {
  local out=${*: -1}
  if [[ -f "$out/model.safetensors" ]]; then echo "done: $out"; return; fi
  if [[ -f "$out/checkpoints/last.ckpt" ]]; then sharpkd "$@" --resume; else sharpkd "$@"; fi
}

# The seed recipe: the 469K teacher on the seed's blur (105 min of training), and the seed's 20K student
# distilled from it (26 epochs, plateau schedule).
if want teacher_seed; then
  train train-teacher --data "$DATA" --max-time 00:01:45:00 --out "$R/teacher_seed"
fi
if want student_seed; then
  train distill --data "$DATA" --teacher "$R/teacher_seed/model.safetensors" --seed 0 --max-epochs 26 \
    --cache-dir "$R/cache" --out "$R/student_seed"
fi
# The best student on the seed's blur: the large-kernel design, 46 KD epochs, then 10 cosine epochs on the faces alone.
if want student_lk; then
  train distill --data "$DATA" --teacher "$R/teacher_seed/model.safetensors" --arch lk_unet --seed 0 \
    --max-epochs 46 --cache-dir "$R/cache" --out "$R/student_lk46"
  train distill --data "$DATA/faces" --teacher "$R/teacher_seed/model.safetensors" --arch lk_unet --seed 0 \
    --schedule cosine --max-epochs 10 --init-weights "$R/student_lk46/model.safetensors" --cache-dir "$R/cache" \
    --out "$R/student_lk"
fi
# The default student, real time: the pixel-unshuffle-by-4, one-residual-plane design on the seed's blur (the student_fast recipe), 5
# cosine epochs x 3,200 fixed pairs, then 6 more x 6,400 from them; then (after teacher, below) distilled from the
# call teacher on the call degradations (the student_call recipe).
if want student; then
  train distill --data "$DATA" --teacher "$R/teacher_seed/model.safetensors" --config student_fast \
    --train-pairs 3200 --epoch-size 3200 --val-size 400 --max-epochs 5 --schedule cosine --lr 2e-3 \
    --cache-dir "$R/cache_fast" --out "$R/student_fast_search"
  train distill --data "$DATA" --teacher "$R/teacher_seed/model.safetensors" --config student_fast \
    --init-weights "$R/student_fast_search/model.safetensors" --train-pairs 3200 --epoch-size 6400 --val-size 1600 \
    --max-epochs 6 --schedule cosine --lr 1e-3 --cache-dir "$R/cache_fast" --out "$R/student_fast"
fi
# The call teacher: the seed teacher fine-tuned on the camera-to-call mixture, 5 cosine epochs x 1,600 samples
# with the seed loss, then 12 with Charbonnier + 0.2 (1 - SSIM) (the teacher_call recipe; 80 min on 2 cores), then
# 10 with each frame's pixel error weighed by 1 / its input's (teacher_call_relative; 27 min on 2 cores), then 10
# more of the same from lr 1e-4 (33 min), then 20 from lr 1.5e-4 (28 min); then grown into unet_deep (a
# zero-initialised low-resolution core; 2.15M parameters) and trained 26 more epochs (teacher_deep_call; 68 min);
# then 12 cosine epochs x 58,112 samples, two thirds call and one third the seed's blur, at batch 64: the shipped
# teacher (10 min on one NVIDIA H200: add --accelerator gpu --num-workers 14 there, the data pipeline is the limit;
# about 18 hours on 2 cores).
if want teacher; then
  train train-teacher --data "$DATA" --preset call --init-weights "$R/teacher_seed/model.safetensors" \
    --schedule cosine --lr 3e-4 --max-epochs 5 --epoch-size 1600 --val-size 400 --out "$R/teacher_call_seedloss"
  train train-teacher --data "$DATA" --config src/sharpkd/configs/teacher_call.yaml \
    --init-weights "$R/teacher_call_seedloss/model.safetensors" --out "$R/teacher_call2"
  train train-teacher --data "$DATA" --config teacher_call_relative \
    --init-weights "$R/teacher_call2/model.safetensors" --out "$R/teacher_call3"
  train train-teacher --data "$DATA" --config teacher_call_relative --lr 1e-4 \
    --init-weights "$R/teacher_call3/model.safetensors" --out "$R/teacher_call4"
  train train-teacher --data "$DATA" --config teacher_call_relative --lr 1.5e-4 --max-epochs 20 \
    --init-weights "$R/teacher_call4/model.safetensors" --out "$R/teacher_call5"
  train train-teacher --data "$DATA" --config teacher_deep_call \
    --init-weights "$R/teacher_call5/model.safetensors" --out "$R/teacher_call"
  train train-teacher --data "$DATA" --config teacher_deep_call --preset call+call+seed \
    --init-weights "$R/teacher_call/model.safetensors" --batch-size 64 --lr 2e-4 --epoch-size 58112 --max-epochs 12 \
    --val-size 400 --out "$R/teacher"
fi
# then two rounds of 16 epochs distilled from the 2.15M call stage ($R/teacher_call) on the call degradations
# (the student_call recipe), and one on fresh call pairs from teacher
if want student; then
  train distill --data "$DATA" --config student_call --teacher "$R/teacher_call/model.safetensors" \
    --init-weights "$R/student_fast/model.safetensors" --seed 0 --cache-dir "$R/cache_call" --out "$R/student"
  train distill --data "$DATA" --config student_call --teacher "$R/teacher_call/model.safetensors" \
    --init-weights "$R/student/model.safetensors" --seed 0 --cache-dir "$R/cache_call" --out "$R/student2"
  # then from teacher on fresh call pairs (teacher run on every batch; --max-time stopped the original run 9 steps
  # into epoch 23 of 25 on 2 cores)
  train distill --data "$DATA" --config student_call --teacher "$R/teacher/model.safetensors" \
    --init-weights "$R/student2/model.safetensors" --train-pairs 0 --epoch-size 9600 --max-epochs 25 --lr 1e-3 \
    --seed 0 --max-time 00:01:25:00 --out "$R/student3"
  # and once more from those weights at half the learning rate, on new draws (seed 2; 73 min on 2 cores)
  train distill --data "$DATA" --config student_call --teacher "$R/teacher/model.safetensors" \
    --init-weights "$R/student3/model.safetensors" --train-pairs 0 --epoch-size 9600 --max-epochs 24 --lr 5e-4 \
    --seed 2 --max-time 00:01:30:00 --out "$R/student4"
  # the shipped student cores its residual: changes under 4/255 dropped (docs/results.md)
  python scripts/shrink_residual.py "$R/student4/model.safetensors" 4 "$R/student4/student.safetensors"
fi

# The numbers of docs/results.md: validation faces with the seed's blur, and the benchmark suite.
if want evaluate; then
  sharpkd evaluate --data "$DATA/faces" --preset seed --out reports/faces_seed \
    --models teacher,teacher_seed,student,student_lk,student_seed
  sharpkd evaluate --suite --data "$DATA" --count 200 --out reports/suite \
    --models teacher,teacher_seed,student,student_lk,student_seed
  sharpkd bench --sizes 640x360,1280x720 --models teacher,teacher_seed,student,student_lk,student_seed --backends onnx \
    --json reports/bench.json
fi
