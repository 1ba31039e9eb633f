"""ONNX export with dynamic height and width, a parity check against PyTorch, and int8 quantisation.

Two graphs come out of one model:
- standalone (what `sharpkd export` writes): any H, W >= 3; the model pads to its multiple and crops inside
  the graph, as in PyTorch;
- core (what the onnx backend of `Sharpener` runs): H, W must be multiples of the model's `multiple` and the
  caller pads; without the pad/crop copies it is a few ms faster per 720p frame."""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import SharpkdError

log = logging.getLogger("sharpkd")
OPSET = 18


class CoreNet(nn.Module):
    """A RestorationNet without its pad/crop: input H and W must be multiples of `multiple`."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.multiple = getattr(net, "multiple", 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = self.net.body(x)
        if getattr(self.net, "residual", False):
            return (x + raw).clamp(0, 1)
        return torch.sigmoid(raw)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _quiet():
    """torch.onnx prints progress lines and warnings meant for developers."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    loggers.append(logging.getLogger())  # onnxruntime.quantization warns on the root logger
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def export_onnx(model: nn.Module, path: str | os.PathLike | None = None, standalone: bool = True,
                opset: int = OPSET) -> bytes:
    """Export to ONNX (opset >= 17) with dynamic H and W; returns the model bytes and writes `path` if given
    (atomically). Metadata: arch, multiple, standalone."""
    import onnx

    model = model.float().eval().to(memory_format=torch.contiguous_format)
    multiple = getattr(model, "multiple", 4)
    if standalone:
        net, example = model, torch.rand(1, 3, 8 * multiple + 3, 12 * multiple + 1)
        dims = {2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    else:
        net, example = CoreNet(model).eval(), torch.rand(1, 3, 8 * multiple, 12 * multiple)
        dims = {2: multiple * torch.export.Dim("hblocks", min=1, max=16384 // multiple),
                3: multiple * torch.export.Dim("wblocks", min=1, max=16384 // multiple)}
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(net, (example,), dynamo=True, opset_version=opset, input_names=["image"],
                                        output_names=["sharpened"], dynamic_shapes={"x": dims}, verbose=False)
    except Exception as exc:  # the exporter's own error types
        raise SharpkdError(f"ONNX export failed: {str(exc).splitlines()[0]}") from exc
    proto = program.model_proto
    props = {"arch": getattr(model, "arch_name", type(model).__name__), "multiple": str(multiple),
             "standalone": str(standalone).lower(), "producer": "sharpkd"}
    for k, v in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    proto.graph.input[0].type.tensor_type.shape.dim[3].dim_param = "width"
    data = proto.SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(data))
    if path is not None:
        _atomic_write(path, data)
    return data


def _atomic_write(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def cache_dir() -> Path:
    base = os.environ.get("SHARPKD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sharpkd")
    return Path(base) / "onnx"


def onnx_bytes_for(model: nn.Module, cache_key: str | None = None) -> bytes:
    """The core ONNX graph of `model`, from the cache when its weights were exported before."""
    if cache_key:
        cached = cache_dir() / f"{cache_key[:24]}-{torch.__version__.split('+')[0]}-core.onnx"
        if cached.is_file():
            return cached.read_bytes()
    data = export_onnx(model, standalone=False)
    if cache_key:
        try:
            _atomic_write(cached, data)
        except OSError as exc:  # a read-only home is no reason to fail
            log.debug("could not cache %s: %s", cached, exc)
    return data


# ------------------------------------------------------------------------------------------ checks
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
        t = torch.from_numpy(sharp).permute(2, 0, 1)[None].float() / 255
        blurry, _ = pipeline(t, rng)
        out.append(((blurry[0].clamp(0, 1).permute(1, 2, 0) * 255 + 0.5).to(torch.uint8).numpy(), sharp))
    return out


def calibration_images(n: int = 6, size: int = 256, seed: int = 0) -> list[np.ndarray]:
    return [b for b, _ in calibration_pairs(n, size, seed)]


def parity(onnx_model: str | os.PathLike | bytes, model: nn.Module, images: list[np.ndarray]) -> float:
    """Max abs difference (on [0, 1] floats) between onnxruntime and fp32 PyTorch on real images."""
    from .sharpener import OnnxBackend

    be = OnnxBackend(onnx_model, threads=None)
    worst = 0.0
    with torch.inference_mode():
        for img in images:
            x = img.transpose(2, 0, 1)[None].astype(np.float32) / 255
            ref = model.float().eval()(torch.from_numpy(x)).numpy()
            got = be(x)
            worst = max(worst, float(np.abs(ref - got).max()))
    return worst


def quantize_int8(fp32_path: str | os.PathLike, out_path: str | os.PathLike, images: list[np.ndarray]) -> Path:
    """Static int8 quantisation (QDQ, per-channel weights) calibrated on `images`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"image": img.transpose(2, 0, 1)[None].astype(np.float32) / 255} for img in images])

        def get_next(self):
            return next(self.items, None)

    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    try:
        with _quiet():
            quantize_static(str(fp32_path), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out_path


def compare_quality(ref, other, pairs) -> dict:
    """SSIM against the sharp images of two sharpeners' outputs on blurry inputs, the loss of `other`, and
    how far its outputs are from `ref`'s (SSIM between them, max difference in 1/255 steps)."""
    from ..metrics import ssim

    def t(a):
        return torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255

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
    """`sharpkd export`: write the standalone ONNX model, check it against PyTorch on real images, optionally
    add an int8 model. Returns a report."""
    from ..models.weights import load_weights
    from .sharpener import OnnxBackend, Sharpener, TorchBackend

    net, meta = load_weights(model_source)
    out = Path(out)
    export_onnx(net, out, standalone=True)
    images = calibration_images()
    # odd sizes too, so the in-graph padding is checked
    images.append(np.ascontiguousarray(images[0][:101, :77]))
    diff = parity(out, net, images)
    report = {"model": str(model_source), "arch": getattr(net, "arch_name", "?"), "onnx": str(out),
              "opset": OPSET, "max_abs_diff": diff, "tolerance": tolerance, "parity_ok": diff <= tolerance}
    if diff > tolerance:
        raise SharpkdError(f"{out}: onnxruntime differs from PyTorch by {diff:.2e} > {tolerance:.0e}")
    if quantize == "int8":
        qpath = out.with_name(out.stem + ".int8.onnx")
        quantize_int8(out, qpath, calibration_images(n=12, seed=1))
        ref = Sharpener(net, meta, backend=TorchBackend(net))
        q = Sharpener(None, backend=OnnxBackend(qpath))
        quality = compare_quality(ref, q, calibration_pairs(n=6, seed=2))
        report.update({"int8": str(qpath), **{f"int8_{k}": v for k, v in quality.items()}})
    return report
