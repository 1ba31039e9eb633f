#!/usr/bin/env bash
# Reproduce the shipped weights and docs/results.md on a CPU (about 16 hours on 2 cores; a GPU is much
# faster: add --accelerator gpu). DATA is the shared data folder (faces + natural scenes).
set -euo pipefail
DATA=${1:-${SHARPKD_SHARED_DATA:-../shared/data}}
T=runs/teacher/model.safetensors
# Students: 6,400 pairs per epoch drawn from 16,000 fixed training pairs; the teacher's outputs on them are
# computed once into runs/cache and shared by every KD run. One thread each, run side by side. The KD/no-KD
# seeds were trained 6 epochs, resumed to 16 (session 3), then to 28 (session 4): same epochs for all four.
# The strong-KD run (teacher weight 14) starts from a copy of the KD seed-0 run at epoch 16.
S="--max-epochs 6 --cache-dir runs/cache"
L="--max-epochs 16 --cache-dir runs/cache"
LL="--max-epochs 26 --cache-dir runs/cache --resume"
export OMP_NUM_THREADS=1

# The teacher: 35.5 minutes, then resumed to 105 minutes of training in all (the timer counts both).
OMP_NUM_THREADS=2 sharpkd train-teacher --data "$DATA" --out runs/teacher --max-time 00:00:35:00
OMP_NUM_THREADS=2 sharpkd train-teacher --data "$DATA" --out runs/teacher --resume --max-time 00:01:45:00

for seed in 0 1; do
  sharpkd distill --data "$DATA" --teacher $T --out runs/student_s$seed --seed $seed $L &
  sharpkd distill --no-kd --data "$DATA" --out runs/student_nokd_s$seed --seed $seed $L &
  wait
done
for seed in 0 1; do  # branches at epoch 16 (-a: the log times give the wall times)
  cp -a runs/student_s$seed runs/student_kdstrong_s$seed; cp -a runs/student_s$seed runs/student_nokdstrong_s$seed
  cp -a runs/student_s$seed runs/student_e16_s$seed  # session 6's reference at 16 epochs
done
for seed in 0 1; do
  sharpkd distill --data "$DATA" --teacher $T --out runs/student_s$seed --seed $seed $LL &
  sharpkd distill --no-kd --data "$DATA" --out runs/student_nokd_s$seed --seed $seed $LL &
done
sharpkd distill --config src/sharpkd/configs/student_kd_strong.yaml --data "$DATA" --teacher $T \
  --out runs/student_kdstrong_s0 --seed 0 $LL &
wait  # the recorded runs were stopped after epoch 26 (then --resume --max-epochs 26)
sharpkd distill --config src/sharpkd/configs/student_kd_strong.yaml --data "$DATA" --teacher $T \
  --out runs/student_kdstrong_s1 --seed 1 --max-epochs 26 --cache-dir runs/cache --resume
# Session 5. Strong KD's control: the same branches at epoch 16, no teacher, its weight moved to the GT MSE.
for seed in 0 1; do
  sharpkd distill --config src/sharpkd/configs/student_nokd_strong.yaml --data "$DATA" \
    --out runs/student_nokdstrong_s$seed --seed $seed --max-epochs 26 --resume &
done
# An annealing phase for strong KD and no KD: 5 epochs from the 26-epoch weights, lr 1e-3 -> 1e-6 on a cosine.
A="--schedule cosine --max-epochs 5 --cache-dir runs/cache"
for seed in 0 1; do
  sharpkd distill --config src/sharpkd/configs/student_kd_strong.yaml --data "$DATA" --teacher $T $A --seed $seed \
    --init-weights runs/student_kdstrong_s$seed/model.safetensors --out runs/student_kdstrong_anneal_s$seed &
done
sharpkd distill --no-kd --data "$DATA" $A --seed 0 --init-weights runs/student_nokd_s0/model.safetensors \
  --out runs/student_nokd_anneal_s0
sharpkd distill --no-kd --data "$DATA" $A --seed 1 --init-weights runs/student_nokd_s1/model.safetensors \
  --out runs/student_nokd_anneal_s1
wait
for seed in 0 1; do  # the same phase for the seed recipe's KD students and for the control
  sharpkd distill --data "$DATA" --teacher $T $A --seed $seed --init-weights runs/student_s$seed/model.safetensors \
    --out runs/student_anneal_s$seed &
  sharpkd distill --config src/sharpkd/configs/student_nokd_strong.yaml --data "$DATA" $A --seed $seed \
    --init-weights runs/student_nokdstrong_s$seed/model.safetensors --out runs/student_nokdstrong_anneal_s$seed &
done
wait
# Session 6: two ~20K students of another design, the seed's KD recipe, seed 0, to 16 epochs; then the same
# 5-epoch annealing phase for them and for the KD seed-0 student at 16 epochs (runs/student_e16_s0, copied above).
K="--data $DATA --teacher $T --cache-dir runs/cache --seed 0"
sharpkd distill $K --arch student_gated --max-epochs 16 --out runs/student_gated_s0 &
sharpkd distill $K --arch student_lk --max-epochs 16 --out runs/student_lk_s0 &
wait
sharpkd distill $K $A --init-weights runs/student_e16_s0/model.safetensors --out runs/student_e16_anneal_s0 &
sharpkd distill $K $A --arch student_lk --init-weights runs/student_lk_s0/model.safetensors --out runs/student_lk_anneal_s0 &
wait
sharpkd distill $K $A --arch student_gated --init-weights runs/student_gated_s0/model.safetensors \
  --out runs/student_gated_anneal_s0
# Session 7: the large-kernel student's KD ablation and second seed (KD seed 1, no KD seed 0), same recipe.
K1="--data $DATA --teacher $T --cache-dir runs/cache --seed 1 --arch student_lk"
N="--no-kd --data $DATA --arch student_lk"
sharpkd distill $K1 --max-epochs 16 --out runs/student_lk_s1 &
sharpkd distill $N --max-epochs 16 --seed 0 --out runs/student_lk_nokd_s0 &
wait
sharpkd distill $K1 $A --init-weights runs/student_lk_s1/model.safetensors \
  --out runs/student_lk_anneal_s1 &
sharpkd distill $N $A --seed 0 --init-weights runs/student_lk_nokd_s0/model.safetensors --out runs/student_lk_nokd_anneal_s0 &
wait
# Sessions 8-9 take runs further: `extend FROM TO EPOCHS flags` copies a run folder and resumes the copy to EPOCHS;
# `anneal RUN flags` trains RUN's 5-epoch cosine phase into RUN's name with _anneal before the seed.
extend() { local from=$1 to=$2 epochs=$3; shift 3; cp -a runs/$from runs/$to
           sharpkd distill "$@" --max-epochs $epochs --resume --out runs/$to; }
anneal() { local run=$1; shift
           sharpkd distill "$@" $A --init-weights runs/$run/model.safetensors --out runs/${run%_s*}_anneal_${run##*_}; }
KL="$K --arch student_lk"
# Session 8: the no-KD twin of KD seed 1; and the KD seed-0 run resumed from epoch 16 to 26, then annealed.
sharpkd distill $N --max-epochs 16 --seed 1 --out runs/student_lk_nokd_s1 &
extend student_lk_s0 student_lk26_s0 26 $KL &
wait
anneal student_lk_nokd_s1 $N --seed 1 & anneal student_lk26_s0 $KL &
wait
# Then: the no-KD run taken the same way from epoch 16 to 26, and the 26-epoch KD run taken on to 36.
extend student_lk_nokd_s0 student_lk_nokd26_s0 26 $N --seed 0 & extend student_lk26_s0 student_lk36_s0 36 $KL &
wait
anneal student_lk_nokd26_s0 $N --seed 0 & anneal student_lk36_s0 $KL &
wait
# Session 9: the seed-1 twins of the 26-epoch KD and no-KD runs (copies at epoch 16), each then annealed.
extend student_lk_s1 student_lk26_s1 26 $K1 & extend student_lk_nokd_s1 student_lk_nokd26_s1 26 $N --seed 1 &
wait
anneal student_lk26_s1 $K1 & anneal student_lk_nokd26_s1 $N --seed 1 &
wait
# Then: KD seed 0 from 36 to 46 epochs, no KD seed 0 from 26 to 36, each then annealed.
extend student_lk36_s0 student_lk46_s0 46 $KL & extend student_lk_nokd26_s0 student_lk_nokd36_s0 36 $N --seed 0 &
wait
anneal student_lk46_s0 $KL & anneal student_lk_nokd36_s0 $N --seed 0 &
wait
# Session 10: the same annealing phase on the faces alone (same name-hashed split, so the same validation faces).
F="--data $DATA/faces --teacher $T --cache-dir runs/cache --arch student_lk --seed 0 --schedule cosine --max-epochs 5"
for e in 36 46; do sharpkd distill $F --init-weights runs/student_lk${e}_s0/model.safetensors --out runs/student_lk${e}_faces_anneal_s0 & done
wait
# Then: no KD the same way (from 36 epochs), and KD from 46 epochs with a 10-epoch phase.
sharpkd distill --no-kd --data $DATA/faces --arch student_lk --seed 0 --schedule cosine --max-epochs 5 --init-weights runs/student_lk_nokd36_s0/model.safetensors --out runs/student_lk_nokd36_faces_anneal_s0 &
sharpkd distill $F --max-epochs 10 --init-weights runs/student_lk46_s0/model.safetensors --out runs/student_lk46_faces_anneal10_s0 &
wait
# And the seed-1 26-epoch KD and no-KD students, the same 5-epoch phase on the faces.
sharpkd distill ${F/--seed 0/--seed 1} --init-weights runs/student_lk26_s1/model.safetensors --out runs/student_lk26_faces_anneal_s1 &
sharpkd distill --no-kd --data $DATA/faces --arch student_lk --seed 1 --schedule cosine --max-epochs 5 --init-weights runs/student_lk_nokd26_s1/model.safetensors --out runs/student_lk_nokd26_faces_anneal_s1 &
wait
# Session 11: a second 10-epoch phase on the faces from that student (--lr 3e-4), with the teacher's targets and
# with the x8 self-ensembled teacher's (--teacher-tta 8: its outputs averaged over flips and transposes).
R="$F --max-epochs 10 --lr 3e-4 --init-weights runs/student_lk46_faces_anneal10_s0/model.safetensors"
sharpkd distill $R --out runs/student_lk46_faces_reanneal_s0 &
sharpkd distill $R --teacher-tta 8 --out runs/student_lk46_faces_reanneal_tta8_s0 &
wait
# Feature distillation (KD + attention transfer), seed 0, the teacher run on every batch (no cache).
sharpkd distill --config src/sharpkd/configs/student_kd_at.yaml --data "$DATA" --teacher $T --out runs/student_at_s0 \
  --seed 0 --max-epochs 10 &  # the recorded run was stopped by --max-time after 10 epochs
# Control: no teacher, but its weight moved to the ground-truth MSE (the KD loss's MSE:SSIM balance).
sharpkd distill --no-kd --config src/sharpkd/configs/student_gtmse.yaml --data "$DATA" --out runs/student_gtmse $S &
# Trained on the videocall preset (no teacher: the seed-trained teacher does worse than its input there).
sharpkd distill --no-kd --preset videocall --data "$DATA" --out runs/student_videocall $S &
wait
OMP_NUM_THREADS=2 sharpkd distill --arch student_fast --data "$DATA" --teacher $T --out runs/student_fast $S

MODELS=teacher=$T,student=runs/student_s0/model.safetensors,student_nokd=runs/student_nokd_s0/model.safetensors
MODELS=$MODELS,student@1=runs/student_s1/model.safetensors,student_nokd@1=runs/student_nokd_s1/model.safetensors
MODELS=$MODELS,student_gtmse=runs/student_gtmse/model.safetensors,student_fast=runs/student_fast/model.safetensors
MODELS=$MODELS,student_videocall=runs/student_videocall/model.safetensors,student_at=runs/student_at_s0/model.safetensors
MODELS=$MODELS,student_kdstrong=runs/student_kdstrong_s0/model.safetensors
sharpkd evaluate --data "$DATA/faces" --preset seed --models "$MODELS" --out reports/faces_seed
sharpkd evaluate --data "$DATA/faces" --preset videocall --models "$MODELS" --out reports/faces_videocall
sharpkd evaluate --data "$DATA" --preset seed --models "$MODELS" --out reports/all_seed
# Session 5: the control and the annealed students, per seed (reports/faces_seed_s5 and _s5_s1).
for seed in 0 1; do
  M=student=runs/student_s$seed/model.safetensors,student_nokd=runs/student_nokd_s$seed/model.safetensors
  for m in kdstrong nokdstrong kdstrong_anneal nokd_anneal anneal nokdstrong_anneal; do
    M=$M,student_$m=runs/student_${m}_s$seed/model.safetensors
  done
  if [ $seed = 0 ]; then
    sharpkd evaluate --data "$DATA/faces" --preset seed --models "teacher=$T,$M" --out reports/faces_seed_s5
    sharpkd evaluate --data "$DATA/faces" --preset videocall --models "teacher=$T,$M" --out reports/faces_videocall_s5
  else
    sharpkd evaluate --data "$DATA/faces" --preset seed --models "$M" --out reports/faces_seed_s5_s1
  fi
done

# Session 6: the new designs at 16 epochs and annealed, against the seed student at the same epochs.
M=teacher=$T
for m in e16 e16_anneal gated gated_anneal lk lk_anneal kdstrong_anneal; do M=$M,student_$m=runs/student_${m}_s0/model.safetensors; done
sharpkd evaluate --data "$DATA/faces" --preset seed --models "$M" --out reports/faces_seed_s6
sharpkd evaluate --data "$DATA/faces" --preset videocall --models "$M" --out reports/faces_videocall_s6
# Session 7: the large-kernel student's KD ablation (KD seeds 0 and 1, no KD seed 0).
M=teacher=$T,student_lk=runs/student_lk_s0/model.safetensors,student_lk@1=runs/student_lk_s1/model.safetensors
M=$M,student_lk_nokd=runs/student_lk_nokd_s0/model.safetensors,student_lk_anneal=runs/student_lk_anneal_s0/model.safetensors
M=$M,student_lk_anneal@1=runs/student_lk_anneal_s1/model.safetensors
M=$M,student_lk_nokd_anneal=runs/student_lk_nokd_anneal_s0/model.safetensors
C=student_lk:student_lk_nokd,student_lk_anneal:student_lk_nokd_anneal
sharpkd evaluate --data "$DATA/faces" --preset seed --models "$M" --compare "$C" --out reports/faces_seed_s7
sharpkd evaluate --data "$DATA/faces" --preset videocall --models "$M" --compare "$C" --out reports/faces_videocall_s7
# `models A B ...`: the teacher and the seed-0 runs student_A, student_B, ... as evaluate's --models list.
models() { local m M=teacher=$T; for m; do M=$M,student_$m=runs/student_${m}_s0/model.safetensors; done; echo $M; }
# Session 8: two seeds of each (KD, no KD), at 16 epochs and annealed; and 26 + 5 epochs against 16 + 5.
M=$M,student_lk_nokd@1=runs/student_lk_nokd_s1/model.safetensors
M=$M,student_lk_nokd_anneal@1=runs/student_lk_nokd_anneal_s1/model.safetensors
M=$M,student_lk26=runs/student_lk26_s0/model.safetensors,student_lk26_anneal=runs/student_lk26_anneal_s0/model.safetensors
C=$C,student_lk@1:student_lk_nokd@1,student_lk_anneal@1:student_lk_nokd_anneal@1
C=$C,student_lk26:student_lk,student_lk26_anneal:student_lk_anneal
sharpkd evaluate --data "$DATA/faces" --preset seed --models "$M" --compare "$C" --out reports/faces_seed_s8
sharpkd evaluate --data "$DATA/faces" --preset videocall --models "$M" --compare "$C" --out reports/faces_videocall_s8
M=$(models lk26 lk_nokd26 lk36)
sharpkd evaluate --data "$DATA/faces" --preset seed --models "$M" --compare student_lk26:student_lk_nokd26,student_lk36:student_lk26 \
  --out reports/faces_seed_s8a
for m in lk26_anneal lk_nokd26_anneal lk36_anneal; do M=$M,student_$m=runs/student_${m}_s0/model.safetensors; done
C=student_lk26:student_lk_nokd26,student_lk26_anneal:student_lk_nokd26_anneal
C=$C,student_lk36:student_lk26,student_lk36_anneal:student_lk26_anneal
sharpkd evaluate --data "$DATA/faces" --preset seed --models "$M" --compare "$C" --out reports/faces_seed_s8b
sharpkd evaluate --data "$DATA/faces" --preset videocall --models "$M" --compare "$C" --out reports/faces_videocall_s8b
# Session 9: KD against no KD at 26 and 26 + 5 epochs, two seeds each (Welch's t-test on the seed means).
M=teacher=$T
for m in lk26 lk_nokd26 lk26_anneal lk_nokd26_anneal; do
  M=$M,student_$m=runs/student_${m}_s0/model.safetensors,student_$m@1=runs/student_${m}_s1/model.safetensors
done
C=student_lk26:student_lk_nokd26,student_lk26_anneal:student_lk_nokd26_anneal
C=$C,student_lk26@1:student_lk_nokd26@1,student_lk26_anneal@1:student_lk_nokd26_anneal@1
sharpkd evaluate --data "$DATA/faces" --preset seed --models "$M" --compare "$C" --out reports/faces_seed_s9
sharpkd evaluate --data "$DATA/faces" --preset videocall --models "$M" --compare "$C" --out reports/faces_videocall_s9
M=$(models lk36 lk_nokd36 lk46)
sharpkd evaluate --data "$DATA/faces" --preset seed --models "$M" --compare student_lk36:student_lk_nokd36,student_lk46:student_lk36 \
  --out reports/faces_seed_s9a
# Session 10: the same runs annealed (36 + 5 no KD, 46 + 5 KD), against the 36 + 5 KD student.
M=$(models lk36 lk36_anneal lk_nokd36 lk_nokd36_anneal lk46 lk46_anneal)
C=student_lk36:student_lk_nokd36,student_lk36_anneal:student_lk_nokd36_anneal
C=$C,student_lk46:student_lk36,student_lk46_anneal:student_lk36_anneal
for p in seed videocall; do sharpkd evaluate --data "$DATA/faces" --preset $p --models "$M" --compare "$C" --out reports/faces_${p}_s10; done
M=$(models lk36_anneal lk36_faces_anneal lk46_anneal lk46_faces_anneal)
C=student_lk36_faces_anneal:student_lk36_anneal,student_lk46_faces_anneal:student_lk46_anneal
for p in seed videocall; do sharpkd evaluate --data "$DATA/faces" --preset $p --models "$M" --compare "$C" --out reports/faces_${p}_s10b; done
M=$(models lk36_faces_anneal lk_nokd36_faces_anneal lk_nokd36_anneal)
C=student_lk36_faces_anneal:student_lk_nokd36_faces_anneal,student_lk_nokd36_faces_anneal:student_lk_nokd36_anneal
for p in seed videocall; do sharpkd evaluate --data "$DATA/faces" --preset $p --models "$M" --compare "$C" --out reports/faces_${p}_s10c; done
M=$(models lk46_faces_anneal lk46_faces_anneal10)
for p in seed videocall; do
  sharpkd evaluate --data "$DATA/faces" --preset $p --models "$M" --compare student_lk46_faces_anneal10:student_lk46_faces_anneal --out reports/faces_${p}_s10d
done
M=; for m in lk26_anneal lk_nokd26_anneal lk26_faces_anneal lk_nokd26_faces_anneal; do M=$M${M:+,}student_$m=runs/student_${m}_s1/model.safetensors; done
C=student_lk26_faces_anneal:student_lk_nokd26_faces_anneal,student_lk26_faces_anneal:student_lk26_anneal,student_lk_nokd26_faces_anneal:student_lk_nokd26_anneal
sharpkd evaluate --data "$DATA/faces" --preset seed --models "$M" --compare "$C" --out reports/faces_seed_s10e
# Session 11: the re-anneals, and self-ensembles (every model as the mean of 2 or 8 flipped/transposed passes).
M=$(models lk46_faces_anneal10 lk46_faces_reanneal lk46_faces_reanneal_tta8)
C=student_lk46_faces_reanneal_tta8:student_lk46_faces_reanneal,student_lk46_faces_reanneal:student_lk46_faces_anneal10
for p in seed videocall; do sharpkd evaluate --data "$DATA/faces" --preset $p --models "$M" --compare "$C" --out reports/faces_${p}_s11; done
for n in 2 8; do
  sharpkd evaluate --data "$DATA/faces" --preset seed --models "$(models lk46_faces_anneal10)" --self-ensemble $n --out reports/faces_seed_s11_x$n
done

# Ship: weights + sidecar + curves into the package (seed 0 runs).
ship() { cp runs/$1/model.safetensors src/sharpkd/weights/$2.safetensors; cp runs/$1/model.json src/sharpkd/weights/$2.json
         cp runs/$1/curves.png src/sharpkd/weights/$2_curves.png; }
ship teacher teacher; ship student_s0 student; ship student_nokd_s0 student_nokd
ship student_fast student_fast; ship student_videocall student_videocall
ship student_kdstrong_s0 student_kdstrong; ship student_kdstrong_anneal_s0 student_kdstrong_anneal
ship student_lk_anneal_s0 student_lk_anneal; ship student_lk26_anneal_s0 student_lk26_anneal
ship student_lk36_anneal_s0 student_lk36_anneal; ship student_lk46_anneal_s0 student_lk46_anneal
ship student_lk46_faces_anneal10_s0 student_lk46_faces_anneal10

python scripts/annotate_sidecars.py seed=reports/faces_seed/report.json videocall=reports/faces_videocall/report.json
python scripts/annotate_sidecars.py seed=reports/faces_seed_s5/report.json  # student_kdstrong_anneal
python scripts/annotate_sidecars.py seed=reports/faces_seed_s6/report.json  # student_lk_anneal
python scripts/annotate_sidecars.py seed=reports/faces_seed_s8/report.json  # student_lk26_anneal
python scripts/annotate_sidecars.py seed=reports/faces_seed_s8b/report.json  # student_lk36_anneal
python scripts/annotate_sidecars.py seed=reports/faces_seed_s10/report.json  # student_lk46_anneal
python scripts/annotate_sidecars.py seed=reports/faces_seed_s10d/report.json  # student_lk46_faces_anneal10
