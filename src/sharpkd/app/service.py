"""What the web app does, as plain functions and no Gradio: load the two models once, decode an upload with
the library's checks, optionally blur it, run teacher and student, time them and score them.

The UI (`ui.py`) and the HTTP API (Gradio's endpoints on the same functions) both call `AppService`."""
from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.degradations import GaussianBlur, MotionBlur, Pipeline
from ..data.io import DEFAULT_MAX_PIXELS, decode_image
from ..errors import BadImageError, SharpkdError
from ..inference.sharpener import DEFAULT_TILE_OVERLAP
from ..metrics import BORDER, psnr, ssim
from ..models import count_macs
from ..models.weights import load_or_build, model_name, resolve_weights

log = logging.getLogger("sharpkd")

MODEL_ROLES = ("teacher", "student")
BLUR_KINDS = ("Gaussian", "Motion")
# frames as the models meet them: scikit-image's sample photos through the project's degradations
# (scripts/make_examples.py), already degraded, so they run with Simulate blur off
EXAMPLES = Path(__file__).with_name("examples")
STRENGTH_RANGE = (1.0, 10.0)
# Memory per request: images above APP_TILE_PIXELS go through the models in APP_TILE tiles (the CLI's tiling);
# blur and scores run in strips of about STRIP_PIXELS; one image above LARGE_PIXELS is processed at a time.
APP_TILE = 512
APP_TILE_PIXELS = 1_000_000  # a 720p frame (0.92 MP) still runs in one pass
STRIP_PIXELS = 1_000_000
BLUR_CONTEXT = 32  # rows around a blur strip: more than the largest kernel's half-width (sigma 3: 9 px; 15 px motion: 8)
LARGE_PIXELS = 4_000_000


@dataclass
class LoadedModel:
    """One model of the app: its sharpener and what the Models tab says about it."""

    role: str
    sharpener: object  # sharpkd.inference.Sharpener (or any object with .sharpen(rgb) -> rgb)
    trained: bool
    source: str  # the weights file, or "untrained (no weights found)"
    meta: dict = field(default_factory=dict)
    weights_path: Path | None = None

    def sharpen(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """uint8 HxWx3 -> (uint8 HxWx3, latency in ms); above APP_TILE_PIXELS in tiles (`sharpen_in_tiles`)."""
        t0 = time.perf_counter()
        h, w = rgb.shape[:2]
        out = sharpen_in_tiles(self.sharpener, rgb) if h * w > APP_TILE_PIXELS else self.sharpener.sharpen(rgb)
        return out, (time.perf_counter() - t0) * 1000.0


def load_model(role: str, source: str | os.PathLike | None = None) -> LoadedModel:
    """Weights from `source`, or the shipped ones for `role`. Only when *no* path was given and nothing is
    shipped yet does it fall back to an untrained model (with a warning), so the app runs before training
    finishes; an explicit path that does not load is an error."""
    from ..inference import Sharpener

    net, meta, trained = load_or_build(source or role)
    if not trained:
        log.warning("no shipped %s weights yet: serving an untrained %s (train it, or pass --%s PATH)",
                    role, role, role)
        return LoadedModel(role, Sharpener(net, {}, name=f"{role} (untrained)"), trained=False,
                           source="untrained (no weights found)")
    path = resolve_weights(source or role)
    return LoadedModel(role, Sharpener(net, meta, name=model_name(source or role)), trained=True, source=str(path),
                       meta=dict(meta), weights_path=path)


def blur(rgb: np.ndarray, kind: str, strength: float) -> tuple[np.ndarray, dict]:
    """Blur a sharp image with the library's degradations: Gaussian sigma = 0.3 x strength (0.3-3 px, the
    training range is 0.5-3), or horizontal motion of 1.5 x strength pixels (1.5-15, training 3-15).
    Returns the blurred image quantised to uint8, as a camera would deliver it, and the op's parameters."""
    s = float(min(max(strength, STRENGTH_RANGE[0]), STRENGTH_RANGE[1]))
    if kind.lower().startswith("gauss"):
        op, step = {"op": "GaussianBlur", "sigma": round(0.3 * s, 3)}, GaussianBlur()
    elif kind.lower().startswith("motion"):
        op, step = {"op": "MotionBlur", "length": round(1.5 * s, 3), "angle": 0.0}, MotionBlur()
    else:
        raise SharpkdError(f"unknown blur {kind!r}; choose from {', '.join(BLUR_KINDS)}")
    # In strips of rows with BLUR_CONTEXT rows of real image around each: the same pixels as one pass, in the
    # memory of a strip.
    out = np.empty_like(rgb)
    pipeline, rows = Pipeline(step), _strip_rows(rgb)
    for r0 in range(0, rgb.shape[0], rows):
        r1 = min(rgb.shape[0], r0 + rows)
        c0, c1 = max(0, r0 - BLUR_CONTEXT), min(rgb.shape[0], r1 + BLUR_CONTEXT)
        y = pipeline.apply(_tensor(rgb[c0:c1]), [[op]])[0]
        out[r0:r1] = (y.permute(1, 2, 0)[r0 - c0:r1 - c0] * 255 + 0.5).to(torch.uint8).numpy()
    return out, op


def check_blur(kind: str, strength: float) -> None:
    """A request's blur settings: one of BLUR_KINDS and a number in STRENGTH_RANGE, else SharpkdError."""
    if kind not in BLUR_KINDS:
        raise SharpkdError(f"unknown blur {kind!r}; choose from {', '.join(BLUR_KINDS)}")
    lo, hi = STRENGTH_RANGE
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not lo <= strength <= hi:
        raise SharpkdError(f"blur strength {strength!r} is not a number from {lo:g} to {hi:g}")


def check_role(role: str) -> None:
    if role not in MODEL_ROLES:
        raise SharpkdError(f"unknown model {role!r}; choose from {', '.join(MODEL_ROLES)}")


def _tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255.0  # a copy: uploads are read-only


def _strip_rows(rgb: np.ndarray) -> int:
    return max(32, STRIP_PIXELS // max(1, rgb.shape[1]))


def quality(pred: np.ndarray, target: np.ndarray) -> dict[str, float | None]:
    """SSIM and PSNR (dB) of uint8 images, through sharpkd.metrics (the numbers of the evaluation), computed in
    strips of rows so that memory stays bounded: SSIM's mean over the image less its 5-pixel border is the
    row-weighted mean of the strips' (each strip read with 5 rows of context), PSNR comes from the summed
    squared error. SSIM is None for an image too small for its 11x11 window (under 6 pixels on a side)."""
    h, w = pred.shape[:2]
    rows = _strip_rows(pred)
    sq_err = 0.0
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        mse = 10 ** (-float(psnr(_tensor(pred[r0:r1]), _tensor(target[r0:r1]))) / 10)
        sq_err += mse * (r1 - r0) * w
    db = 10 * math.log10(1 / max(sq_err / (h * w), 1e-10))
    if min(h, w) <= BORDER:
        return {"ssim": None, "psnr": round(db, 2)}
    if h <= 2 * BORDER:  # no border to leave out (metrics.ssim averages the whole map)
        return {"ssim": round(float(ssim(_tensor(pred), _tensor(target))), 4), "psnr": round(db, 2)}
    total = 0.0
    for r0 in range(BORDER, h - BORDER, rows):
        r1 = min(h - BORDER, r0 + rows)
        part = slice(r0 - BORDER, r1 + BORDER)
        total += float(ssim(_tensor(pred[part]), _tensor(target[part]))) * (r1 - r0)
    return {"ssim": round(total / (h - 2 * BORDER), 4), "psnr": round(db, 2)}


def sharpen_in_tiles(sharpener, rgb: np.ndarray, tile: int | None = None,
                     overlap: int = DEFAULT_TILE_OVERLAP) -> np.ndarray:
    """`sharpener.sharpen(rgb)` tile by tile, on the grid of the CLI's tiling (`tile_windows`: tiles of `tile`
    (default APP_TILE) output pixels aligned to the model's multiple, `overlap` pixels of context), so the pixels
    are those of `sharpkd sharpen --tile`; only one tile's floats exist at a time, so memory grows with the tile,
    not the image."""
    m, tile = getattr(sharpener, "multiple", None), tile or APP_TILE
    h, w = rgb.shape[:2]
    if m is None or max(h, w) <= tile:
        return sharpener.sharpen(rgb)
    from ..inference.sharpener import in_tiles

    return in_tiles(lambda t: sharpener.sharpen(t, tile=0), rgb, tile, overlap, m)


def release_memory() -> None:
    """Give freed heap memory back to the system (glibc keeps it otherwise: the process would stay at its peak
    after one large image). A no-op where there is no glibc."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


_libc = None


def example_images(folder: str | os.PathLike | None = None) -> list[str]:
    """The example images of `folder` (default: the bundled ones), by name."""
    return sorted(str(p) for p in Path(folder or EXAMPLES).glob("*.jpg"))


class AppService:
    """The two models, loaded once, and everything the tabs and the API ask of them."""

    def __init__(self, teacher: str | os.PathLike | None = None, student: str | os.PathLike | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.max_pixels = max_pixels
        self.models = {"teacher": load_model("teacher", teacher), "student": load_model("student", student)}
        self._info: list[dict] | None = None
        self._lock = threading.Lock()
        self._large = threading.BoundedSemaphore(1)  # one image above LARGE_PIXELS at a time; the others wait
        self._busy, self._idle = 0, threading.Condition()  # images in hand (`job`), for `wait_idle`

    @contextlib.contextmanager
    def job(self, rgb: np.ndarray):
        """Hold for the work on one image: a large one waits for the large one in hand; the memory a job used is
        given back to the system when it is done."""
        large = rgb.shape[0] * rgb.shape[1] > LARGE_PIXELS
        with self._idle:
            self._busy += 1
        try:
            with self._large if large else contextlib.nullcontext():
                yield
        finally:
            release_memory()
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no image is in hand (at most `timeout_s` seconds); False if one still is."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout_s)

    # ---------------------------------------------------------------------------------------------- images
    def decode(self, source: str | os.PathLike | bytes | None, name: str | None = None) -> np.ndarray:
        """An upload (path or bytes) as uint8 RGB; BadImageError with one line for anything unusable."""
        if source is None or (not isinstance(source, bytes) and not str(source)):
            raise BadImageError("no image: upload a JPG, PNG or WebP file, or pick an example")
        label = name or (Path(source).name if not isinstance(source, bytes) else "upload")
        return decode_image(source, self.max_pixels, name=label).rgb

    def sharpen(self, rgb: np.ndarray, role: str = "student") -> tuple[np.ndarray, float]:
        check_role(role)
        return self.models[role].sharpen(rgb)

    @staticmethod
    def fit_frame(rgb: np.ndarray, max_side: int) -> np.ndarray:
        """Scale a frame down (area interpolation) so that its longer side is at most `max_side`."""
        h, w = rgb.shape[:2]
        if max(h, w) <= max_side:
            return rgb
        import cv2

        scale = max_side / max(h, w)
        return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)

    def compare(self, source, simulate_blur: bool = False, blur_kind: str = "Gaussian",
                strength: float = 4.0, name: str | None = None) -> dict:
        """The Image tab: decode, optionally blur, run both models. Returns the images and a JSON-able report
        (size, blur parameters, each model's latency, and SSIM/PSNR against the original when blurred)."""
        check_blur(blur_kind, strength)
        original = self.decode(source, name)
        h, w = original.shape[:2]
        report: dict = {"width": w, "height": h, "blur": None}
        inp = original
        with self.job(original):
            if simulate_blur:
                inp, op = blur(original, blur_kind, strength)
                report["blur"] = op
                report["input"] = quality(inp, original)
            outputs = {}
            for role in MODEL_ROLES:
                out, ms = self.sharpen(inp, role)
                outputs[role] = out
                report[role] = {"latency_ms": round(ms, 1), "trained": self.models[role].trained}
                if simulate_blur:
                    report[role].update(quality(out, original))
        return {"original": original, "input": inp, **outputs, "report": report}

    # ---------------------------------------------------------------------------------------------- models
    def model_info(self) -> list[dict]:
        """One dict per model: parameters, MACs, training data and the benchmark suite's figures (the sidecar's
        `suite`, as in docs/models.md and `sharpkd models`)."""
        with self._lock:
            if self._info is None:
                self._info = [self._describe(m) for m in self.models.values()]
            return self._info

    def _describe(self, m: LoadedModel) -> dict:
        net = m.sharpener.model if hasattr(m.sharpener, "model") else None
        params = m.meta.get("parameters")
        if params is None and net is not None:
            params = sum(p.numel() for p in net.parameters())
        macs = m.meta.get("macs_per_pixel")
        if macs is None and net is not None:
            try:
                macs = count_macs(net, 64, 64) / (64 * 64)
            except Exception as exc:  # a backend without a torch module: leave it out, say why in the log
                log.debug("MAC count failed for %s: %s", m.role, exc)
        return {"model": m.role, "status": "trained" if m.trained else "untrained", "weights": m.source,
                "arch": m.meta.get("arch", m.role), "parameters": params,
                "macs_per_pixel": round(macs, 1) if macs else None,
                "gmacs_720p": round(macs * 1280 * 720 / 1e9, 2) if macs else None,
                "data": m.meta.get("data"), "suite": m.meta.get("suite"),
                "curves": str(curves) if (curves := self.curves_image(m)) else None,
                "sidecar": m.meta}

    @staticmethod
    def curves_image(m: LoadedModel) -> Path | None:
        """The training curves PNG: the sidecar's `curves` entry (relative to the weights), else
        `<weights stem>_curves.png` or `curves.png` next to the weights. Only a file inside the weights' folder
        (links resolved): a sidecar entry that points elsewhere is ignored, with a warning."""
        if m.weights_path is None:
            return None
        folder = m.weights_path.parent.resolve()
        candidates = []
        for key in ("curves", "curves_png", "training_curves"):
            if isinstance(m.meta.get(key), str):
                candidates.append(folder / m.meta[key])
        candidates += [folder / f"{m.weights_path.stem}_curves.png", folder / f"{m.weights_path.stem}.curves.png",
                       folder / "curves.png"]
        for path in candidates:
            if not path.resolve().is_relative_to(folder):
                log.warning("ignoring %s: outside the folder of the %s weights (%s)", path, m.role, folder)
            elif path.is_file():
                return path.resolve()
        return None


def describe_value(value) -> str:
    """A sidecar entry as short text for a table cell."""
    if value is None or value == {} or value == []:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {describe_value(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(describe_value(v) for v in value)
    return str(value)
