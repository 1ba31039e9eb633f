"""Where on a family a model gains or loses: its mean PSNR and SSIM difference from the input within each quarter
of the pairs, ranked by the input's own PSNR (worst input first), from the per-pair scores of a `suite.json`.

    sharpkd evaluate --suite --data ../shared/data --count 200 --seed 1 --models student,teacher --out reports/s1
    python scripts/suite_quartiles.py reports/s1/suite.json --family clean --models student,teacher
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("suite_json")
parser.add_argument("--family", default="clean")
parser.add_argument("--dataset", default="faces")
parser.add_argument("--models", help="comma list (default: every model of the run)")
parser.add_argument("--parts", type=int, default=4)
args = parser.parse_args()

report = json.load(open(args.suite_json))
try:
    fam = report["datasets"][args.dataset]["families"][args.family]
    scores = fam["per_pair"]
except KeyError:
    sys.exit(f"{args.suite_json}: no per-pair scores for {args.dataset} / {args.family}")
models = args.models.split(",") if args.models else report["models"]
missing = [m for m in models if m not in scores]
if missing:
    sys.exit(f"{args.suite_json}: no model {', '.join(missing)}")
inp = {m: np.asarray(v) for m, v in scores["input"].items()}
order = np.argsort(inp["psnr"])
parts = np.array_split(order, args.parts)
print(f"`{args.family}` on {args.dataset}, {len(order)} pairs; difference from the input, SSIM / PSNR (dB)\n")
print("| input PSNR (mean of the part) | " + " | ".join(models) + " |")
print("|---|" + "---|" * len(models))
for idx in parts:
    cells = [f"{np.mean(np.asarray(scores[m]['ssim'])[idx] - inp['ssim'][idx]):+.4f} / "
             f"{np.mean(np.asarray(scores[m]['psnr'])[idx] - inp['psnr'][idx]):+.2f}" for m in models]
    print(f"| {inp['psnr'][idx].mean():.2f} dB ({len(idx)} pairs) | " + " | ".join(cells) + " |")
