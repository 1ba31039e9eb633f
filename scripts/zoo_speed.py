"""Measure every shipped model at 1280x720 (onnxruntime, uint8 frame in and out) and, with --write, record the
result as the `speed` entry of its sidecar, which `sharpkd models` reads. Run it on an otherwise idle machine:

    python scripts/zoo_speed.py --write
    python scripts/zoo_speed.py --sizes 64x48 --frames 3   # a quick check that it runs (writes nothing)
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys

from sharpkd.fileio import write_text
from sharpkd.inference.bench import parse_sizes, run_bench
from sharpkd.models.weights import shipped_names, shipped_weights_path, sidecar_path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--models", help="comma list (default: every shipped model)")
parser.add_argument("--sizes", default="1280x720", help="WIDTHxHEIGHT; only 1280x720 is written")
parser.add_argument("--backend", default="onnx", choices=("onnx", "torch", "torch-bf16"))
parser.add_argument("--frames", type=int, default=100)
parser.add_argument("--max-seconds", type=float, default=20.0)
parser.add_argument("--threads", type=int)
parser.add_argument("--write", action="store_true", help="record the 1280x720 results in the sidecars")
args = parser.parse_args()

names = args.models.split(",") if args.models else shipped_names()
report = run_bench(parse_sizes(args.sizes), models=names, backends=(args.backend,), frames=args.frames,
                   max_seconds=args.max_seconds, threads=args.threads,
                   progress=lambda r: print(f"{r['model']:>28} {r['width']}x{r['height']} {r['median_ms']:8.1f} ms "
                                            f"{r['fps']:6.1f} FPS ({r['frames']} frames, CPU stolen "
                                            f"{'?' if r['steal'] is None else format(r['steal'], '.0%')})", flush=True))
hw = report["hardware"]
print(f"hardware: {hw['cpu']}, {hw['physical_cores']} cores, load average {hw['load_average_1min']}")
command = "python scripts/zoo_speed.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
for r in report["rows"]:
    if not args.write or (r["width"], r["height"]) != (1280, 720) or r["model"] not in shipped_names():
        continue
    side = sidecar_path(shipped_weights_path(r["model"]))
    meta = json.loads(side.read_text())
    meta["speed"] = {"ms_720p": round(r["median_ms"], 1), "fps": round(r["fps"], 1), "backend": r["backend"],
                     "threads": r["threads"], "cpu": hw["cpu"], "load_average_1min": hw["load_average_1min"],
                     "cpu_stolen": r["steal"],
                     "command": command}
    write_text(side, json.dumps(meta, indent=2) + "\n")
    print(f"wrote the speed of {r['model']} into {side.name}")
