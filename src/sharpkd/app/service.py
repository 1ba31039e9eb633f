"""What the web app does, as plain functions and no Gradio: load the two models once, decode an upload with
the library's checks, optionally blur it, run teacher and student, time them and score them.

The UI (`ui.py`) and the HTTP API (Gradio's endpoints on the same functions) both call `AppService`."""
from __future__ import annotations

import logging
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.degradations import GaussianBlur, MotionBlur, Pipeline
from ..data.io import DEFAULT_MAX_PIXELS, decode_image, write_image
from ..errors import BadImageError, SharpkdError
from ..metrics import psnr, ssim
from ..models import count_macs
from ..models.weights import load_or_build, model_name, resolve_weights

log = logging.getLogger("sharpkd")

MODEL_ROLES = ("teacher", "student")
BLUR_KINDS = ("Gaussian", "Motion")
EXAMPLES = ("astronaut", "coffee", "chelsea")  # scikit-image sample photos: no files shipped, no download
STRENGTH_RANGE = (1.0, 10.0)


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
        """uint8 HxWx3 -> (uint8 HxWx3, latency in ms)."""
        t0 = time.perf_counter()
        out = self.sharpener.sharpen(rgb)
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
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
    y = Pipeline(step).apply(x, [[op]])[0]
    return (y.permute(1, 2, 0) * 255 + 0.5).to(torch.uint8).numpy(), op


def _tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0


def quality(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """SSIM and PSNR (dB) of uint8 images, through sharpkd.metrics (the numbers of the evaluation)."""
    p, t = _tensor(pred), _tensor(target)
    return {"ssim": round(float(ssim(p, t)), 4), "psnr": round(float(psnr(p, t)), 2)}


def example_images(folder: str | os.PathLike | None = None) -> list[str]:
    """Write scikit-image's sample photos as PNGs into a cache folder (once) and return their paths."""
    import skimage.data

    folder = Path(folder or Path(tempfile.gettempdir()) / "sharpkd-app-examples")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in EXAMPLES:
        path = folder / f"{name}.png"
        if not path.is_file():
            write_image(path, np.ascontiguousarray(getattr(skimage.data, name)()[..., :3]))
        paths.append(str(path))
    return paths


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

    # ---------------------------------------------------------------------------------------------- images
    def decode(self, source: str | os.PathLike | bytes | None, name: str | None = None) -> np.ndarray:
        """An upload (path or bytes) as uint8 RGB; BadImageError with one line for anything unusable."""
        if source is None or (not isinstance(source, bytes) and not str(source)):
            raise BadImageError("no image: upload a JPG, PNG or WebP file, or pick an example")
        label = name or (Path(source).name if not isinstance(source, bytes) else "upload")
        return decode_image(source, self.max_pixels, name=label).rgb

    def sharpen(self, rgb: np.ndarray, role: str = "student") -> tuple[np.ndarray, float]:
        if role not in self.models:
            raise SharpkdError(f"unknown model {role!r}; choose from {', '.join(MODEL_ROLES)}")
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
        original = self.decode(source, name)
        h, w = original.shape[:2]
        report: dict = {"width": w, "height": h, "blur": None}
        inp = original
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
        """One dict per model: parameters, MACs, training data and validation metrics (from the sidecar)."""
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
                "data": m.meta.get("data"), "val_metrics": m.meta.get("val_metrics"),
                "curves": str(self.curves_image(m)) if self.curves_image(m) else None,
                "sidecar": m.meta}

    @staticmethod
    def curves_image(m: LoadedModel) -> Path | None:
        """The training curves PNG: the sidecar's `curves` entry (relative to the weights), else
        `<weights stem>_curves.png` or `curves.png` next to the weights."""
        if m.weights_path is None:
            return None
        folder = m.weights_path.parent
        candidates = []
        for key in ("curves", "curves_png", "training_curves"):
            if isinstance(m.meta.get(key), str):
                candidates.append(folder / m.meta[key])
        candidates += [folder / f"{m.weights_path.stem}_curves.png", folder / f"{m.weights_path.stem}.curves.png",
                       folder / "curves.png"]
        return next((p for p in candidates if p.is_file()), None)


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
