"""Which term of the distillation loss steers the student? Per-term loss, gradient norm over the student's
weights, and the cosine between the terms' gradients, on validation faces with the `seed` blur.

A teacher term whose gradient points where the ground-truth term's already points (cosine near 1) adds
nothing a larger ground-truth weight would not: that is what output distillation reduces to when the
teacher is much closer to the ground truth than the student can get.

    python scripts/kd_gradients.py [--data ../shared/data/faces] [--student student] [--teacher teacher]
"""
import argparse

import torch
import torch.nn.functional as F

from sharpkd.data import build_degradation, fixed_pair_tensors, load_split_images
from sharpkd.losses import KDLoss, attention_transfer
from sharpkd.metrics import ssim
from sharpkd.models import build_model, load_weights
from sharpkd.models.weights import resolve_weights
from sharpkd.training.module import ATTENTION_LAYERS, FeatureTaps

p = argparse.ArgumentParser()
p.add_argument("--data", default="../shared/data/faces")
p.add_argument("--student", default="student", help="weights of a trained student (name or path)")
p.add_argument("--teacher", default="teacher")
p.add_argument("--count", type=int, default=64, help="validation pairs in the batch")
p.add_argument("--threads", type=int, default=1)
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

blurry, sharp = fixed_pair_tensors(load_split_images(args.data, "val", limit=args.count), build_degradation("seed"),
                                   args.count, seed=5)
blurry, sharp = blurry.float() / 255, sharp.float() / 255
teacher = load_weights(resolve_weights(args.teacher))[0].eval()
teacher_taps = FeatureTaps(teacher, ATTENTION_LAYERS)
with torch.no_grad():
    target_t = teacher(blurry)
teacher_features = dict(teacher_taps.features)
print(f"MSE to ground truth: blurry {F.mse_loss(blurry, sharp):.5f}, teacher {F.mse_loss(target_t, sharp):.5f}")

trained = load_weights(resolve_weights(args.student))[0]
for label, student in (("trained", trained), ("initialised", build_model("student", residual=trained.residual))):
    student.train()
    taps = FeatureTaps(student, ATTENTION_LAYERS)
    out = student(blurry)
    params = list(student.parameters())
    terms = {
        "0.7*MSE(s,teacher)": 0.7 * F.mse_loss(out, target_t),
        "0.3*MSE(s,GT)": 0.3 * F.mse_loss(out, sharp),
        "0.1*(1-SSIM(s,GT))": 0.1 * (1 - ssim(out, sharp)),
        "0.1*(1-SSIM(s,teacher))": 0.1 * (1 - ssim(out, target_t)),
        "attention transfer": attention_transfer([(taps.features[n], teacher_features[n]) for n in ATTENTION_LAYERS]),
    }
    terms["KD loss (seed)"] = KDLoss()(out, sharp, target_t)
    grads = {k: torch.cat([g.flatten() for g in torch.autograd.grad(v, params, retain_graph=True,
                                                                      materialize_grads=True)])
             for k, v in terms.items()}
    print(f"\n{label} student: MSE to ground truth {F.mse_loss(out, sharp):.5f}, to teacher {F.mse_loss(out, target_t):.5f}")
    names = list(terms)
    print(f"{'term':26s} {'loss':>8s} {'|grad|':>8s}  " + " ".join(f"cos{i}" for i in range(len(names))))
    for i, k in enumerate(names):
        cos = " ".join(f"{F.cosine_similarity(grads[k], grads[j], dim=0).item():+.2f}" for j in names)
        print(f"{i} {k:24s} {terms[k].item():8.5f} {grads[k].norm().item():8.5f}  {cos}")
