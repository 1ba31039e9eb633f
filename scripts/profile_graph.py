"""Where a model's frame time goes, and what int8 buys: two measurements of the core ONNX graph that the
onnx and openvino backends run (no uint8 conversions). Run on an otherwise idle machine.

    python scripts/profile_graph.py ops --model student            # onnxruntime's own profile, per operator
    python scripts/profile_graph.py ops --graph frames-concat      # ... of the uint8 graph whole frames run
    python scripts/profile_graph.py int8 --model student           # fp32 / bf16 / int8 on both runtimes
    python scripts/profile_graph.py int8 --size 64x48 --blocks 1   # a quick check that it runs

`ops`: the summed kernel time of each operator type and of the costliest nodes, per frame. `int8`: the graph
quantised as `sharpkd export --quantize int8` does (static QDQ, per-channel, calibrated on real images) and
timed against fp32 on onnxruntime and OpenVINO (OpenVINO bf16 too): blocks of frames per variant in turn, the
first frames of each block not counted (a runtime that has just run leaves its threads spinning), medians
and each variant's ratio to onnxruntime fp32; the largest output difference from fp32 in 1/255 steps."""
from __future__ import annotations

import argparse
import atexit
import collections
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from sharpkd import sysinfo
from sharpkd.inference.bench import parse_sizes
from sharpkd.inference.export import calibration_images, quantize_int8
from sharpkd.inference.onnx_backend import OnnxBackend, export_onnx
from sharpkd.inference.openvino_backend import OpenVinoBackend, require_openvino
from sharpkd.models import load_weights

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("what", choices=("ops", "int8"))
parser.add_argument("--model", default="student", help="a shipped name or a .safetensors path")
parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT, multiples of the model's multiple")
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--frames", type=int, default=40, help="ops: profiled frames")
parser.add_argument("--graph", choices=("core", "frames", "frames-concat"), default="core",
                    help="ops: the float core graph, or a uint8 frames graph (frames-concat: onnxruntime's)")
parser.add_argument("--blocks", type=int, default=8, help="int8: rounds of frames per variant")
args = parser.parse_args()

(w, h), = parse_sizes(args.size)
net, _ = load_weights(args.model)
tmp = Path(tempfile.mkdtemp(prefix="sharpkd-profile-"))
atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # also when a run fails
fp32 = tmp / "core.onnx"
export_onnx(net, fp32, graph="core")
frame = cv2.resize(calibration_images(n=1, size=512)[0], (w, h), interpolation=cv2.INTER_CUBIC)  # a real photo
x = np.ascontiguousarray(frame.transpose(2, 0, 1)[None] / 255, dtype=np.float32)
hw = sysinfo.hardware(args.threads)
print(f"{args.model} at {w}x{h} ({args.graph} graph), {hw['cpu']}, {args.threads} threads, "
      f"load average {hw['load_average_1min']}")

if args.what == "ops":
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
    so.enable_profiling, so.profile_file_prefix = True, str(tmp / "profile")
    graph = fp32
    if args.graph != "core":
        graph = tmp / "frames.onnx"
        export_onnx(net, graph, graph=args.graph)
    session = ort.InferenceSession(str(graph), so, providers=["CPUExecutionProvider"])
    planes = np.ascontiguousarray(frame.transpose(2, 0, 1)[None])  # uint8, as the Sharpener feeds a frames graph
    feed = {session.get_inputs()[0].name: planes if args.graph != "core" else x}
    for _ in range(3 + args.frames):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    by_type, by_node = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_type[e["args"]["op_name"]] += e["dur"]
            by_node[(e["args"]["op_name"], e["name"].removesuffix("_kernel_time"))] += e["dur"]
    runs = 3 + args.frames
    total = sum(by_type.values())
    print(f"summed kernel time per frame: {total / runs / 1e3:.1f} ms")
    for op, us in by_type.most_common():
        print(f"  {op:<16} {us / runs / 1e3:6.2f} ms  {100 * us / total:4.1f}%")
    print("costliest nodes:")
    for (op, node), us in by_node.most_common(6):
        print(f"  {op:<16} {node:<32} {us / runs / 1e3:6.2f} ms")
else:
    require_openvino()
    int8 = tmp / "core.int8.onnx"
    quantize_int8(fp32, int8, calibration_images(n=12, seed=1))  # as `sharpkd export --quantize int8`
    variants = {"onnxruntime fp32": OnnxBackend(fp32, args.threads),
                "onnxruntime int8": OnnxBackend(int8, args.threads),
                "openvino fp32": OpenVinoBackend(fp32, args.threads),
                "openvino bf16": OpenVinoBackend(fp32, args.threads, precision="bf16"),
                "openvino int8": OpenVinoBackend(int8, args.threads)}
    ref = np.rint(np.clip(variants["onnxruntime fp32"](x), 0, 1) * 255)
    times = {k: [] for k in variants}
    for _ in range(args.blocks):
        for name, run in variants.items():
            for i in range(18):
                t = time.perf_counter()
                run(x)
                if i >= 3:
                    times[name].append(time.perf_counter() - t)
    base = statistics.median(times["onnxruntime fp32"])
    print("| variant | median | ratio to onnxruntime fp32 | largest difference from fp32 |\n|---|---|---|---|")
    for name, run in variants.items():
        diff = np.abs(np.rint(np.clip(run(x), 0, 1) * 255) - ref).max()
        m = statistics.median(times[name])
        print(f"| {name} | {m * 1e3:.1f} ms | {m / base:.2f} | {diff:.0f}/255 |")
