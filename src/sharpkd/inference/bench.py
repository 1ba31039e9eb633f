"""`sharpkd bench`: end-to-end latency (uint8 frame in, uint8 frame out) of each model on each backend, at
several frame sizes, with MACs and the speed ratios measured in the same run, and the share of CPU time a
hypervisor took during each row (`steal`)."""
from __future__ import annotations

import logging
import statistics
import time

import numpy as np
import torch

from .. import sysinfo
from ..errors import SharpkdError
from ..models import count_macs, count_parameters, load_or_build, model_name
from ..models.weights import file_sha256, resolve_weights
from .openvino_backend import require_openvino
from .openvino_backend import version as openvino_version
from .sharpener import Sharpener, TorchBackend

log = logging.getLogger("sharpkd")

# backend label -> (Sharpener backend, torch precision)
VARIANTS = {"torch": ("torch", "fp32"), "torch-bf16": ("torch", "bf16"), "onnx": ("onnx", "fp32"),
            "openvino": ("openvino", "fp32"), "openvino-bf16": ("openvino", "bf16")}


def installed_backends() -> list[str]:
    """Every backend label this machine runs as shipped: onnx, openvino where installed (and openvino-bf16 where
    the CPU computes bf16 natively), torch."""
    if not openvino_version():
        return ["onnx", "torch"]
    return ["onnx", "openvino", *(["openvino-bf16"] if sysinfo.native_bf16() else []), "torch"]


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'1280x720,640x360' -> [(1280, 720), (640, 360)] as (width, height)."""
    sizes = []
    for part in text.split(","):
        try:
            w, h = (int(v) for v in part.lower().strip().split("x"))
        except ValueError:
            raise SharpkdError(f"bad size {part!r}: use WIDTHxHEIGHT, e.g. 1280x720") from None
        if w < 1 or h < 1:
            raise SharpkdError(f"bad size {part!r}: width and height must be >= 1")
        sizes.append((w, h))
    return sizes


def time_frames(sharpener: Sharpener, frame: np.ndarray, frames: int, warmup: int, max_seconds: float) -> list[float]:
    for _ in range(warmup):
        sharpener.sharpen(frame, tile=0)
    times = []
    start = time.perf_counter()
    while len(times) < frames:
        t = time.perf_counter()
        sharpener.sharpen(frame, tile=0)  # the backend returns host arrays: GPU work is synchronised
        times.append(time.perf_counter() - t)
        if time.perf_counter() - start > max_seconds and len(times) >= 5:
            break
    return times


def hardware(threads: int | None = None) -> dict:
    import onnxruntime

    hw = {**sysinfo.hardware(threads), "onnxruntime": onnxruntime.__version__}
    if openvino_version():
        hw["openvino"] = openvino_version()
    return hw


def run_bench(sizes: list[tuple[int, int]], models=("student",), backends=None, frames: int = 100, warmup: int = 3,
              max_seconds: float = 10.0, threads: int | None = None, progress=None) -> dict:
    """Median latency and FPS for every (model, backend, size), each case timed for `frames` frames or
    `max_seconds`; ratios between models and between backends. `models`: shipped names or weights paths (trained
    weights), or architecture names (untrained: speed does not depend on the weights). `backends`: labels of
    `VARIANTS` (default `installed_backends()`)."""
    backends = installed_backends() if backends is None else backends
    for label in backends:
        if label not in VARIANTS:
            raise SharpkdError(f"unknown backend {label!r}; choose from {', '.join(VARIANTS)}")
    if any(VARIANTS[label][0] == "openvino" for label in backends):
        require_openvino()
    loaded = {name: load_or_build(name) for name in models}  # every name checked before any timing
    rows = []
    for source, (net, meta, trained) in loaded.items():
        name = model_name(source)
        if trained:  # the onnx and openvino backends share one cached ONNX export of these weights
            meta = {**meta, "_weights_sha": file_sha256(resolve_weights(source))}
        for label in backends:
            backend, precision = VARIANTS[label]
            sh = Sharpener(net, meta, threads=threads, name=name, backend=backend, precision=precision, tile=0)
            for w, h in sizes:
                frame = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
                before = sysinfo.cpu_times()
                times = time_frames(sh, frame, frames, warmup, max_seconds)
                steal = sysinfo.steal_share(before, sysinfo.cpu_times())
                med = statistics.median(times)
                row = {"model": name, "backend": label, "described": sh.describe(), "width": w, "height": h,
                       "trained_weights": trained,
                       "params": count_parameters(net), "gmacs": count_macs(net, h, w) / 1e9,
                       "threads": sh.threads, "frames": len(times), "median_ms": med * 1e3,
                       "p90_ms": float(np.percentile(times, 90)) * 1e3, "fps": 1.0 / med, "steal": steal}
                rows.append(row)
                if progress:
                    progress(row)
            if isinstance(sh.backend, TorchBackend):
                sh.backend.model.to(memory_format=torch.contiguous_format)
    return {"hardware": hardware(threads), "threads": threads or torch.get_num_threads(), "rows": rows,
            "ratios": ratios(rows)}


def ratios(rows: list[dict]) -> list[dict]:
    """Speed-ups measured in the same run: each model vs the teacher on the same backend and size, each
    backend vs PyTorch fp32 for the same model and size, and OpenVINO vs onnxruntime."""
    by = {(r["model"], r["backend"], r["width"], r["height"]): r["median_ms"] for r in rows}
    out = []
    for (m, b, w, h), ms in by.items():
        if m != "teacher" and ("teacher", b, w, h) in by:
            out.append({"kind": f"{m} vs teacher", "backend": b, "size": f"{w}x{h}",
                        "speedup": by[("teacher", b, w, h)] / ms})
        if b != "torch" and (m, "torch", w, h) in by:
            out.append({"kind": f"{b} vs torch", "model": m, "size": f"{w}x{h}",
                        "speedup": by[(m, "torch", w, h)] / ms})
        if b.startswith("openvino") and (m, "onnx", w, h) in by:
            out.append({"kind": f"{b} vs onnx", "model": m, "size": f"{w}x{h}",
                        "speedup": by[(m, "onnx", w, h)] / ms})
    return out
