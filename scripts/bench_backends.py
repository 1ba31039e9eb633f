"""Time onnxruntime against OpenVINO (fp32, and bf16 where the CPU has it) on the same models and frames: uint8
frame in, uint8 frame out, as `sharpkd bench`. The backends take turns frame by frame (the order rotating every
frame), so that a change of load during the run weighs on all of them alike and the ratios stay fair. Prints a
Markdown table naming the CPU and writes JSON. Run it on an otherwise idle machine, with the extra installed
(pip install -e '.[openvino]'):

    python scripts/bench_backends.py --out reports/bench_backends.json --markdown reports/bench_backends.md
    python scripts/bench_backends.py --frames 3 --out /tmp/bench_backends.json   # a quick check that it runs
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from sharpkd import sysinfo
from sharpkd.errors import SharpkdError
from sharpkd.fileio import write_text
from sharpkd.inference.bench import parse_sizes
from sharpkd.inference.openvino_backend import cpu_supports_bf16, require_openvino
from sharpkd.inference.sharpener import Sharpener
from sharpkd.models import count_parameters, load_or_build, model_name
from sharpkd.models.weights import file_sha256, resolve_weights

# label -> (Sharpener backend, precision)
VARIANTS = {"onnx": ("onnx", "fp32"), "openvino": ("openvino", "fp32"), "openvino-bf16": ("openvino", "bf16")}
REFERENCE = "onnx"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--models", default="student,student_lk,teacher", help="comma list of shipped names or paths")
parser.add_argument("--sizes", default="1280x720,640x360", help="comma list of WIDTHxHEIGHT")
parser.add_argument("--backends", default=",".join(VARIANTS),
                    help=f"comma list of {', '.join(VARIANTS)} (openvino-bf16 is left out where the CPU has no bf16)")
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--frames", type=int, default=100, help="timed frames per backend, model and size")
parser.add_argument("--warmup", type=int, default=5, help="untimed frames per backend first")
parser.add_argument("--out", default="reports/bench_backends.json", help="the JSON report")
parser.add_argument("--markdown", help="also write the Markdown table here")


def photo(w: int, h: int) -> np.ndarray:
    """A real photo at w x h (the output differences are read on it; the speed does not depend on content)."""
    import skimage.data
    from PIL import Image

    return np.asarray(Image.fromarray(skimage.data.astronaut()).resize((w, h), Image.BICUBIC))


def measure(models, sizes, labels, threads, frames, warmup, progress) -> list[dict]:
    rows = []
    for source in models:
        net, meta, trained = load_or_build(source)
        if trained:  # one ONNX export shared by onnxruntime and OpenVINO
            meta = {**meta, "_weights_sha": file_sha256(resolve_weights(source))}
        name = model_name(source)
        runners = {label: Sharpener(net, meta, threads=threads, name=name, backend=VARIANTS[label][0],
                                    precision=VARIANTS[label][1], tile=0) for label in labels}
        for w, h in sizes:
            frame = photo(w, h)
            outputs = {}
            for label, sh in runners.items():  # warm-up: OpenVINO compiles this input size here
                for _ in range(max(1, warmup)):
                    outputs[label] = sh.sharpen(frame, tile=0)
            times = {label: [] for label in labels}
            for i in range(frames):
                for label in labels[i % len(labels):] + labels[:i % len(labels)]:
                    t = time.perf_counter()
                    runners[label].sharpen(frame, tile=0)
                    times[label].append(time.perf_counter() - t)
            ref_ms = statistics.median(times[REFERENCE]) * 1e3 if REFERENCE in times else None
            for label in labels:
                med = statistics.median(times[label]) * 1e3
                diff = (int(np.abs(outputs[label].astype(int) - outputs[REFERENCE].astype(int)).max())
                        if REFERENCE in outputs else None)
                row = {"model": name, "trained_weights": trained, "params": count_parameters(net), "width": w,
                       "height": h, "backend": label, "engine": runners[label].backend.describe(),
                       "described": runners[label].describe(), "threads": threads,
                       "frames": len(times[label]), "median_ms": med,
                       "p95_ms": float(np.percentile(times[label], 95)) * 1e3,
                       "mean_ms": statistics.fmean(times[label]) * 1e3, "fps": 1e3 / med,
                       "speedup_vs_onnx": ref_ms / med if ref_ms else None, "max_diff_255_vs_onnx": diff}
                rows.append(row)
                progress(row)
        del runners
    return rows


def markdown(report: dict) -> str:
    hw = report["hardware"]
    simd = ", ".join(hw["simd"]) or "none of " + "/".join(sysinfo.SIMD_FLAGS)
    lines = [f"CPU: {hw['cpu']} ({hw['physical_cores']} physical cores, {hw['logical_cpus']} logical, SIMD {simd}, "
             f"{hw['memory_gb']} GB); {report['threads']} threads; onnxruntime {hw['onnxruntime']}, "
             f"openvino {hw['openvino']}; load average {report['load_average_start']} at the start, "
             f"{report['load_average_end']} at the end; {report['frames']} frames per row, the backends "
             f"interleaved frame by frame; uint8 frame in and out.", ""]
    if report["skipped"]:
        lines += [f"Not measured: {report['skipped']}.", ""]
    lines += ["| model | size | backend | median ms | p95 ms | FPS | vs onnxruntime | max diff vs onnxruntime |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        speedup = "" if r["speedup_vs_onnx"] is None else f"{r['speedup_vs_onnx']:.2f}x"
        diff = "" if r["max_diff_255_vs_onnx"] is None else f"{r['max_diff_255_vs_onnx']}/255"
        lines.append(f"| {r['model']} | {r['width']}x{r['height']} | {r['engine']} "
                     f"| {r['median_ms']:.1f} | {r['p95_ms']:.1f} | {r['fps']:.1f} | {speedup} | {diff} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    args = parser.parse_args()
    ov = require_openvino()
    import onnxruntime

    labels = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in labels if b not in VARIANTS]
    if unknown or not labels:
        raise SharpkdError(f"unknown backend {(unknown or [''])[0]!r}; choose from {', '.join(VARIANTS)}")
    if args.frames < 1 or args.threads < 1:
        raise SharpkdError("--frames and --threads must be >= 1")
    skipped = ""
    if "openvino-bf16" in labels and not cpu_supports_bf16():
        labels.remove("openvino-bf16")
        skipped = "openvino-bf16 (OpenVINO's CPU plugin finds no bf16 support on this CPU)"
    models, sizes = args.models.split(","), parse_sizes(args.sizes)
    for source in models:
        load_or_build(source)  # every name checked before any timing
    hw = {**sysinfo.hardware(args.threads), "onnxruntime": onnxruntime.__version__,
          "openvino": ov.__version__.split("-")[0]}
    if hw["load_average_1min"] and hw["load_average_1min"] > 0.5:
        print(f"note: load average {hw['load_average_1min']}: the machine is not idle, the times will be too slow "
              f"(the ratios stay comparable)", file=sys.stderr)

    def progress(r):
        print(f"{r['model']:>14} {r['width']:>5}x{r['height']:<5} {r['backend']:>14} {r['median_ms']:8.1f} ms "
              f"(p95 {r['p95_ms']:.1f})  {r['described']}", file=sys.stderr, flush=True)

    rows = measure(models, sizes, labels, args.threads, args.frames, args.warmup, progress)
    end = sysinfo.hardware(args.threads)["load_average_1min"]
    report = {"hardware": hw, "threads": args.threads, "frames": args.frames, "warmup": args.warmup,
              "load_average_start": hw["load_average_1min"], "load_average_end": end, "skipped": skipped,
              "command": "python scripts/bench_backends.py " + " ".join(sys.argv[1:]), "rows": rows}
    table = markdown(report)
    print(table, end="")
    write_text(args.out, json.dumps(report, indent=2) + "\n")
    if args.markdown:
        write_text(args.markdown, table)
    print(f"wrote {args.out}" + (f" and {args.markdown}" if args.markdown else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SharpkdError as exc:
        print(f"bench_backends: error: {exc}", file=sys.stderr)
        sys.exit(2)
