"""`Sharpener`: a loaded model that sharpens uint8 RGB frames of any size, on PyTorch, onnxruntime or OpenVINO
(an optional extra).

Frames run at their own resolution. The model sees H and W padded up to its `multiple` (reflect, or
replicate for tiny frames, exactly as `models.common.pad_to_multiple`), and the output is cropped back. On the
onnx and openvino backends frames (and their tiles) run through the model's uint8 frames graph
(`onnx_backend.FrameNet`: the conversions to and from float inside the graph); self-ensembles run the float core
graph.
Above a pixel budget (the model's own where it names one), frames are cut into overlapping tiles aligned to the
model's pooling grid so that memory stays bounded; the overlap covers the receptive field, so tiled and untiled outputs agree."""
from __future__ import annotations

import logging
import math
import os
import statistics
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from ..data.io import batch_to_rgb, rgb_to_batch
from ..errors import SharpkdError
from ..models.common import dihedral
from ..models.weights import describe_model, file_sha256, load_weights, model_name, resolve_weights
from ..sysinfo import native_bf16
from .onnx_backend import OnnxBackend, onnx_bytes_for
from .openvino_backend import OpenVinoBackend, require_openvino
from .openvino_backend import version as openvino_version

log = logging.getLogger("sharpkd")

BACKENDS = ("torch", "onnx", "openvino")
AUTO = "auto"  # the fastest of the installed backends, timed at load
ONNX_BACKENDS = ("onnx", "openvino")  # the backends that run an ONNX graph
PRECISIONS = ("fp32", "bf16")
DEFAULT_TILE = 512
DEFAULT_TILE_OVERLAP = 32
AUTO_TILE_PIXELS = 4_200_000  # above this (a bit more than 1920x2160), frames are tiled automatically, unless the
# model names its own `auto_tile_pixels` (a model without full-resolution layers needs far less memory per pixel)


def pad_array(x: np.ndarray, multiple: int) -> np.ndarray:
    """(B,C,H,W) float array padded at the bottom/right to a multiple, as `models.common.pad_to_multiple`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return x
    mode = "reflect" if h > ph and w > pw else "edge"
    return np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode=mode)


def tile_windows(h: int, w: int, tile: int, overlap: int, multiple: int) -> Iterator[tuple[tuple, tuple]]:
    """Each tile's output window (y0, y1, x0, x1) and the input window around it with `overlap` pixels of
    context (sy0, sy1, sx0, sx1). Tile size and overlap are rounded up to `multiple`, so tile origins fall on
    the model's pooling grid and a tiled result equals the untiled one away from the image border."""
    tile = max(multiple, -(-tile // multiple) * multiple)
    overlap = -(-max(overlap, 0) // multiple) * multiple
    for y0 in range(0, h, tile):
        y1 = min(h, y0 + tile)
        for x0 in range(0, w, tile):
            x1 = min(w, x0 + tile)
            yield (y0, y1, x0, x1), (max(0, y0 - overlap), min(h, y1 + overlap), max(0, x0 - overlap),
                                     min(w, x1 + overlap))


def in_tiles(sharpen, rgb: np.ndarray, tile: int, overlap: int, multiple: int) -> np.ndarray:
    """uint8 HxWx3 `rgb` through `sharpen` (uint8 in, uint8 out) tile by tile on the grid of `tile_windows`; only
    one tile is in flight at a time, and rounding is per pixel, so the result is that of the tiled float path."""
    out = np.empty_like(rgb)
    for (y0, y1, x0, x1), (sy0, sy1, sx0, sx1) in tile_windows(*rgb.shape[:2], tile, overlap, multiple):
        res = sharpen(np.ascontiguousarray(rgb[sy0:sy1, sx0:sx1]))
        out[y0:y1, x0:x1] = res[y0 - sy0:y1 - sy0, x0 - sx0:x1 - sx0]
    return out


class TorchBackend:
    """PyTorch, channels-last. `precision='bf16'` runs under bfloat16 autocast (faster on CPUs with bf16
    support, about 1/255 away from fp32 on outputs); the default is fp32."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, precision: str = "fp32", device: str = "cpu"):
        if precision not in PRECISIONS:
            raise SharpkdError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        self.device = torch.device(device)
        self.model = model.eval().to(self.device).to(memory_format=torch.channels_last)
        self.precision = precision
        self.multiple = getattr(model, "multiple", 4)

    def describe(self) -> str:
        return f"torch {self.precision}" + ("" if self.device.type == "cpu" else f" on {self.device}")

    @torch.inference_mode()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            y = self.model(t)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return y.float().cpu().numpy()


class Sharpener:
    """Sharpen uint8 HxWx3 RGB arrays (any H, W >= 1) with a restoration model.

    `sharpen(rgb) -> rgb` for one image, `sharpen_frames(frames)` for a stream (video). `name` is the model's
    label and `meta` its weights sidecar (training recipe, metrics)."""

    def __init__(self, model: torch.nn.Module | None = None, meta: dict | None = None, threads: int | None = None,
                 name: str = "model", backend: str | TorchBackend | OnnxBackend | OpenVinoBackend = "torch",
                 precision: str = "fp32", tile: int | None = None, tile_overlap: int = DEFAULT_TILE_OVERLAP,
                 auto_tile_pixels: int | None = None, self_ensemble: int = 1):
        if self_ensemble not in (1, 2, 8):
            raise SharpkdError(f"self-ensemble must be 1, 2 or 8, not {self_ensemble}")
        self.self_ensemble = self_ensemble
        if threads:
            torch.set_num_threads(threads)
        self.meta, self.name = meta or {}, name
        self._frames_spec = None  # (backend, model, threads, precision, graph) of the uint8 frames graph
        self.threads = threads or torch.get_num_threads()
        if isinstance(backend, str):
            if backend not in BACKENDS:
                raise SharpkdError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
            if model is None:
                raise SharpkdError("a model is needed to build a backend")
            if backend == "torch":
                backend = TorchBackend(model, precision)
            else:
                if backend == "openvino":
                    require_openvino()  # before the export: a missing extra is said at once
                backend = self._onnx_backend(backend, model, threads, precision, graph="core")
                self._frames_spec = (backend.name, model, threads, precision, backend.frames_graph)
        self.backend = backend
        self._frames_backend = None
        self._frames_lock = threading.Lock()
        self.model = model
        if isinstance(backend, (OnnxBackend, OpenVinoBackend)):
            self.threads = backend.threads
        self.multiple = backend.multiple
        self.tile, self.tile_overlap = tile, tile_overlap
        self.auto_tile_pixels = auto_tile_pixels or getattr(model, "auto_tile_pixels", AUTO_TILE_PIXELS)
        self.timings: dict[str, float] = {}  # with backend 'auto': each candidate's ms per frame at load

    def _onnx_backend(self, kind: str, model: torch.nn.Module, threads: int | None, precision: str, graph: str):
        data = onnx_bytes_for(model, cache_key=self.meta.get("_weights_sha"), graph=graph)
        multiple = getattr(model, "multiple", 4)
        if kind == "onnx":
            return OnnxBackend(data, threads=threads, multiple=multiple)
        return OpenVinoBackend(data, threads=threads, multiple=multiple, precision=precision)

    def frames_backend(self) -> OnnxBackend | OpenVinoBackend | None:
        """The backend on the model's uint8 frames graph (onnx and openvino backends built from a model; None
        otherwise), exported or read from the cache at the first whole frame."""
        if self._frames_spec is None:
            return None
        with self._frames_lock:
            if self._frames_backend is None:
                self._frames_backend = self._onnx_backend(*self._frames_spec)
            return self._frames_backend

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def backend_label(self) -> str:
        """The backend and the precision it runs in, as `sharpkd bench` names them: 'onnx', 'torch-bf16' ..."""
        precision = getattr(self.backend, "ran_precision", getattr(self.backend, "precision", "fp32"))
        return self.backend.name + ("" if precision == "fp32" else f"-{precision}")

    def describe(self) -> str:
        """One line naming the model and what runs it, for command output: 'model student (LightStudentUNet,
        20,702 parameters) on torch fp32, 2 threads'."""
        ensemble = f", self-ensemble of {self.self_ensemble}" if self.self_ensemble > 1 else ""
        auto = ("; auto: " + ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(self.timings.items(), key=lambda kv: kv[1]))
                if self.timings else "")
        return (f"model {describe_model(self.name, self.model, self.meta)} on {self.backend.describe()}, "
                f"{self.threads} threads{ensemble}{auto}")

    # ------------------------------------------------------------------------------------------- arrays
    def run_array(self, x: np.ndarray) -> np.ndarray:
        """(B,3,H,W) float32 in [0, 1] -> (B,3,H,W) float32 in [0, 1], no tiling: one pass, or the mean of
        `self_ensemble` passes over flipped and transposed copies (see `models.SelfEnsemble`)."""
        return np.clip(self._run(x), 0.0, 1.0)

    def _run(self, x: np.ndarray) -> np.ndarray:
        """`run_array` before the clip to [0, 1]; the array returned is the caller's to overwrite."""
        n = self.self_ensemble
        if n == 1:
            return self._pass(x)  # a fresh array from the backend (or a crop of one)
        return sum(dihedral(self._pass(np.ascontiguousarray(dihedral(x, k))), k, inverse=True)
                   for k in range(n)) / np.float32(n)

    def _pass(self, x: np.ndarray) -> np.ndarray:
        h, w = x.shape[-2:]
        return self.backend(pad_array(x, self.multiple))[..., :h, :w]

    def _tile_size(self, h: int, w: int) -> int:
        if self.tile is None:
            return DEFAULT_TILE if h * w > self.auto_tile_pixels else 0
        return self.tile if self.tile and max(h, w) > self.tile else 0

    def run_tiled(self, x: np.ndarray, tile: int, overlap: int) -> np.ndarray:
        """As `run_array`, in tiles of `tile` output pixels with `overlap` pixels of context on each side.
        Tile origins are aligned to the model's multiple so that its pooling grid is the same as untiled."""
        out = np.empty(x.shape, dtype=np.float32)
        for (y0, y1, x0, x1), (sy0, sy1, sx0, sx1) in tile_windows(*x.shape[-2:], tile, overlap, self.multiple):
            res = self.run_array(np.ascontiguousarray(x[..., sy0:sy1, sx0:sx1]))
            out[..., y0:y1, x0:x1] = res[..., y0 - sy0:y1 - sy0, x0 - sx0:x1 - sx0]
        return out

    # ------------------------------------------------------------------------------------------- images
    def sharpen(self, image: np.ndarray, tile: int | None = None, tile_overlap: int | None = None) -> np.ndarray:
        """uint8 HxWx3 RGB -> uint8 HxWx3 RGB of the same size. `tile` overrides the sharpener's setting
        (0: never tile)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
            raise SharpkdError(f"expected an HxWx3 RGB array, got shape {image.shape}")
        if image.dtype != np.uint8:
            raise SharpkdError(f"expected a uint8 image, got {image.dtype}")
        h, w = image.shape[:2]
        size = self._tile_size(h, w) if tile is None else (tile if tile and max(h, w) > tile else 0)
        overlap = self.tile_overlap if tile_overlap is None else tile_overlap
        if self.self_ensemble == 1 and (frames := self.frames_backend()) is not None:
            if not size:
                return self._sharpen_frame(frames, image)
            return in_tiles(lambda t: self._sharpen_frame(frames, t), image, size, overlap, self.multiple)
        x = rgb_to_batch(image, channels_last=isinstance(self.backend, TorchBackend))
        if size:
            y = self.run_tiled(x, size, overlap)
        else:
            y = self._run(x)  # batch_to_rgb clips
        return batch_to_rgb(y)

    def _sharpen_frame(self, backend, image: np.ndarray) -> np.ndarray:
        """One whole frame through the uint8 frames graph: padded as `pad_array` pads (OpenCV's reflect-101 is
        numpy's 'reflect'), split into planes, run, merged and cropped back."""
        import cv2

        h, w = image.shape[:2]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        image = np.ascontiguousarray(image)
        if ph or pw:
            border = cv2.BORDER_REFLECT_101 if h > ph and w > pw else cv2.BORDER_REPLICATE
            image = cv2.copyMakeBorder(image, 0, ph, 0, pw, border)
        out = cv2.merge(list(backend(np.stack(cv2.split(image))[None])[0]))
        return np.ascontiguousarray(out[:h, :w]) if ph or pw else out

    def sharpen_frames(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Sharpen a stream of frames lazily (one in, one out)."""
        for f in frames:
            yield self.sharpen(f)

    def __repr__(self) -> str:
        return f"Sharpener({self.name!r}, backend={self.backend_name!r}, threads={self.threads})"


def auto_candidates(model: str | os.PathLike, precision: str | None = None) -> list[tuple[str, str]]:
    """(backend, precision) pairs that backend 'auto' times: onnxruntime and PyTorch, OpenVINO where installed; in
    bf16 too where the CPU computes it natively (outputs within about 1/255 of fp32), unless `precision` says."""
    backends = ONNX_BACKENDS if str(model).endswith(".onnx") else ("onnx", "torch", "openvino")
    backends = [b for b in backends if b != "openvino" or openvino_version()]
    precisions = [precision] if precision else ["fp32"] + (["bf16"] if native_bf16() else [])
    return [(b, p) for b in backends for p in precisions if not (b == "onnx" and p == "bf16")]


def fastest(model: str | os.PathLike = "student", size: tuple[int, int] = (1280, 720), threads: int | None = None,
            precision: str | None = None, frames: int = 6, max_seconds: float = 3.0, **options) -> Sharpener:
    """The `Sharpener` of `model` on whichever candidate backend (`auto_candidates`) runs a `size` (W, H) frame
    fastest on this machine, back to back as a stream runs it. Candidates take turns, so that a change in the
    machine's load hits them alike; each turn starts with an untimed frame, because a backend that has just run
    leaves its threads spinning on the cores for a while (after onnxruntime, PyTorch's next frame took twice its
    time). `frames` timed frames per candidate after a round of warm-up, fewer (two) once the timed turns have
    taken `max_seconds` (a slow model on large frames); its `timings` keep the medians."""
    shs = {}
    for backend, prec in auto_candidates(model, precision):
        sh = load(model, backend=backend, threads=threads, precision=prec, **options)
        shs[sh.backend_label] = sh  # an OpenVINO bf16 that runs fp32 on this CPU counts once
    frame = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    times = {label: [] for label in shs}
    per_turn = 2
    for rnd in range(1 + math.ceil(frames / per_turn)):  # the first round warms up
        if rnd == 1:
            start = time.perf_counter()
        elif rnd > 1 and time.perf_counter() - start > max_seconds:
            break
        for label, sh in shs.items():
            sh.sharpen(frame)
            for _ in range(per_turn):
                t = time.perf_counter()
                sh.sharpen(frame)
                if rnd:
                    times[label].append(time.perf_counter() - t)
    timings = {label: statistics.median(ts) * 1e3 for label, ts in times.items()}
    best = shs[min(timings, key=timings.get)]
    best.timings = timings
    log.info("backend auto at %dx%d: %s", *size, ", ".join(f"{k} {v:.1f} ms" for k, v in timings.items()))
    return best


def load(model: str | os.PathLike = "student", backend: str = "torch", threads: int | None = None,
         precision: str | None = None, tile: int | None = None, tile_overlap: int = DEFAULT_TILE_OVERLAP,
         self_ensemble: int = 1, size: tuple[int, int] = (1280, 720)) -> Sharpener:
    """A `Sharpener` for a shipped model's name (`sharpkd models` lists them), a .safetensors path, or (with
    backend='onnx' or 'openvino') a .onnx file. With backend='onnx' or 'openvino' and safetensors weights, the
    model is exported to ONNX once and cached. `precision` 'bf16': torch under bfloat16 autocast, or OpenVINO's
    bf16 inference precision where the CPU has it (onnxruntime runs fp32). `self_ensemble` 2 or 8: each frame is sharpened that many times (flipped, transposed) and
    the results averaged, for a better picture at that many times the cost. `backend='auto'`: the fastest
    candidate on a frame of `size` (W, H), timed at load (`fastest`)."""
    if backend == AUTO:
        return fastest(model, size, threads=threads, precision=precision, tile=tile, tile_overlap=tile_overlap,
                       self_ensemble=self_ensemble)
    if backend not in BACKENDS:
        raise SharpkdError(f"backend must be one of {', '.join(BACKENDS)}, {AUTO}, not {backend!r}")
    precision = precision or "fp32"
    if str(model).endswith(".onnx"):
        if backend not in ONNX_BACKENDS:
            raise SharpkdError(f"{model}: an .onnx model needs --backend onnx or openvino")
        if not Path(model).is_file():
            raise SharpkdError(f"ONNX model not found: {model}")
        be = OnnxBackend(model, threads=threads) if backend == "onnx" else OpenVinoBackend(
            model, threads=threads, precision=precision)
        return Sharpener(None, be.meta, threads=threads, name=Path(model).stem, backend=be, tile=tile,
                         tile_overlap=tile_overlap, self_ensemble=self_ensemble)
    path = resolve_weights(model)
    net, meta = load_weights(path)
    if backend in ONNX_BACKENDS:
        meta = {**meta, "_weights_sha": file_sha256(path)}
    return Sharpener(net, meta, threads=threads, name=model_name(model), backend=backend, precision=precision,
                     tile=tile, tile_overlap=tile_overlap, self_ensemble=self_ensemble)
