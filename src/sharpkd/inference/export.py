"""`sharpkd export`: the standalone ONNX model of a model (see `onnx_backend` for the graphs), its parity with
PyTorch on real images, and int8 quantisation."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.io import to_float, to_uint8
from ..errors import SharpkdError
from ..fileio import atomic_path, write_bytes
from ..models.weights import describe_model, load_weights, model_name
from .onnx_backend import OPSET, OnnxBackend, export_onnx, quiet
from .sharpener import Sharpener, TorchBackend


def calibration_pairs(n: int = 6, size: int = 256, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(blurry, sharp) uint8 crops of real photos bundled with scikit-image, blurred by the seed preset (the
    degradations the models are trained on)."""
    import skimage.data

    from ..data.degradations import build_degradation

    rng = np.random.default_rng(seed)
    pipeline = build_degradation("seed")
    names = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "cat")
    out = []
    for i in range(n):
        img = getattr(skimage.data, names[i % len(names)])()
        h, w = img.shape[:2]
        s = min(size, h, w)
        y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
        sharp = np.ascontiguousarray(img[y:y + s, x:x + s, :3])
        blurry, _ = pipeline(to_float(torch.from_numpy(sharp).permute(2, 0, 1)[None]), rng)
        out.append((to_uint8(blurry[0].permute(1, 2, 0)).numpy(), sharp))
    return out


def calibration_images(n: int = 6, size: int = 256, seed: int = 0) -> list[np.ndarray]:
    return [b for b, _ in calibration_pairs(n, size, seed)]


def parity(onnx_model: str | os.PathLike | bytes, model: nn.Module, images: list[np.ndarray]) -> float:
    """Max abs difference (on [0, 1] floats) between onnxruntime and fp32 PyTorch on real images."""
    be = OnnxBackend(onnx_model, threads=None)
    worst = 0.0
    with torch.inference_mode():
        for img in images:
            x = to_float(img.transpose(2, 0, 1)[None])
            ref = model.float().eval()(torch.from_numpy(x)).numpy()
            got = be(x)
            worst = max(worst, float(np.abs(ref - got).max()))
    return worst


def quantize_int8(fp32_path: str | os.PathLike, out_path: str | os.PathLike, images: list[np.ndarray]) -> Path:
    """Static int8 quantisation (QDQ, per-channel weights) calibrated on `images`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"image": to_float(img.transpose(2, 0, 1)[None])} for img in images])

        def get_next(self):
            return next(self.items, None)

    out_path = Path(out_path)
    with atomic_path(out_path) as tmp, quiet():
        quantize_static(str(fp32_path), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out_path


def compare_quality(ref, other, pairs) -> dict:
    """SSIM against the sharp images of two sharpeners' outputs on blurry inputs, the loss of `other`, and
    how far its outputs are from `ref`'s (SSIM between them, max difference in 1/255 steps)."""
    from ..metrics import ssim

    def t(a):
        return to_float(torch.from_numpy(a).permute(2, 0, 1)[None])

    s_ref, s_oth, s_cross, worst = [], [], [], 0
    for blurry, sharp in pairs:
        a, b = ref.sharpen(blurry), other.sharpen(blurry)
        s_ref.append(float(ssim(t(a), t(sharp))))
        s_oth.append(float(ssim(t(b), t(sharp))))
        s_cross.append(float(ssim(t(b), t(a))))
        worst = max(worst, int(np.abs(a.astype(int) - b.astype(int)).max()))
    return {"ssim_ref": float(np.mean(s_ref)), "ssim": float(np.mean(s_oth)),
            "ssim_loss": float(np.mean(s_ref) - np.mean(s_oth)), "ssim_vs_ref": float(np.mean(s_cross)),
            "max_diff_255": worst}


def export_model(model_source: str | os.PathLike, out: str | os.PathLike, quantize: str | None = None,
                 tolerance: float = 1e-4) -> dict:
    """`sharpkd export`: write the standalone ONNX model to `out` once it matches PyTorch on real images; with
    `quantize='int8'`, `out` is the int8 model, quantised from that checked fp32 model (a temporary file) and
    scored against it. Returns a report."""
    net, meta = load_weights(model_source)
    out = Path(out)
    data = export_onnx(net)
    images = calibration_images()
    # odd sizes too, so the in-graph padding is checked
    images.append(np.ascontiguousarray(images[0][:101, :77]))
    diff = parity(data, net, images)
    if diff > tolerance:
        raise SharpkdError(f"{out}: onnxruntime differs from PyTorch by {diff:.2e} > {tolerance:.0e}")
    report = {"model": str(model_source), "arch": getattr(net, "arch_name", "?"),
              "described": describe_model(model_name(model_source), net), "onnx": str(out), "quantize": quantize,
              "opset": OPSET, "max_abs_diff": diff, "tolerance": tolerance}
    if quantize != "int8":
        write_bytes(out, data)
        return report
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        fp32.write_bytes(data)
        quantize_int8(fp32, out, calibration_images(n=12, seed=1))
    quality = compare_quality(Sharpener(net, meta, backend=TorchBackend(net)),
                              Sharpener(None, backend=OnnxBackend(out)), calibration_pairs(n=6, seed=2))
    return {**report, **{f"int8_{k}": v for k, v in quality.items()}}
