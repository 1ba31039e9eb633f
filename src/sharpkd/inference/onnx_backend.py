"""The ONNX side of inference: a model's graph with dynamic height and width (`export_onnx`), the cache of the
graphs the onnx backend runs (`onnx_bytes_for`), and `OnnxBackend`, an onnxruntime session.

Three graphs come out of one model:
- standalone (what `sharpkd export` writes): float (B, 3, H, W) in [0, 1], any H, W >= 3; the model pads to its
  multiple and crops inside the graph, as in PyTorch;
- core: float (B, 3, H, W), H and W multiples of the model's `multiple`, the caller pads; without the pad/crop
  copies it is a few ms faster per 720p frame. `Sharpener` runs it for tiles and self-ensembles;
- frames: uint8 (1, 3, H, W) RGB planes in and out, H and W multiples of `multiple` (`FrameNet`): what
  `Sharpener` runs for a whole frame on the openvino backend; frames-concat, the same for onnxruntime (a one-plane
  residual copied to three planes before the add, see `FrameNet`).

`sharpener` (running models) and `export` (writing and checking ONNX files) both build on this module; it
imports neither."""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import SharpkdError
from ..fileio import write_bytes
from ..sysinfo import physical_cores

log = logging.getLogger("sharpkd")
OPSET = 18
GRAPHS = ("standalone", "core", "frames", "frames-concat")
GRAPH_VERSION = 2  # part of the cache's file names: raised when the graphs of the same weights change


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


class FrameNet(CoreNet):
    """A RestorationNet on 8-bit frames: uint8 (1, 3, H, W) RGB planes in and out, H and W multiples of
    `multiple`. The conversions a caller does around the core graph (/255, *255, rounding) run inside the graph
    on the runtime's threads, where OpenVINO fuses them with their neighbours, and a one-plane residual is scaled
    before it is added to three. Planes, not HxWx3: the caller splits and merges the channels with OpenCV, faster
    than a Transpose in either runtime (onnxruntime moves it up to the residual add, which then broadcasts along
    the innermost axis, much slower). Rounds half up where the float path rounds half
    to even: outputs agree within 1. `concat`: a one-plane residual is concatenated into three planes before the
    add, which onnxruntime then runs faster without broadcasting, and OpenVINO slower than the broadcast add
    it fuses. Where the model names its `input_conv`, the 1/255 is folded into that
    conv's weights (a copy of the model): one full-resolution division less."""

    def __init__(self, net: nn.Module, concat: bool = False):
        fold = hasattr(net, "input_conv") and net.input_conv() is not None
        if fold:
            net = copy.deepcopy(net)
            with torch.no_grad():
                net.input_conv().weight.div_(255)
        super().__init__(net)
        self.concat, self.folded = concat, fold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        raw = self.net.body(xf if self.folded else xf / 255)
        if getattr(self.net, "residual", False):
            r = raw * 255 + 0.5
            if self.concat and r.shape[1] == 1:
                r = torch.cat([r, r, r], dim=1)
            y = xf + r
        else:
            y = torch.sigmoid(raw) * 255 + 0.5
        return y.clamp(0, 255).to(torch.uint8)  # the cast truncates: as y >= 0, that rounds half up


@contextlib.contextmanager
def quiet():
    """torch.onnx and onnxruntime.quantization print progress lines and warnings meant for developers."""
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


def export_onnx(model: nn.Module, path: str | os.PathLike | None = None, graph: str = "standalone",
                opset: int = OPSET) -> bytes:
    """Export one of the `GRAPHS` (see the module's docstring) to ONNX (opset >= 17) with dynamic H and W; returns
    the model bytes and writes `path` if given (atomically). Metadata: arch, multiple, graph, standalone."""
    import onnx

    if graph not in GRAPHS:
        raise ValueError(f"graph must be one of {GRAPHS}, not {graph!r}")
    model = model.float().eval().to(memory_format=torch.contiguous_format)
    multiple = getattr(model, "multiple", 4)
    h, w = 8 * multiple, 12 * multiple
    blocks = {2: multiple * torch.export.Dim("hblocks", min=1, max=16384 // multiple),  # multiples of `multiple`
              3: multiple * torch.export.Dim("wblocks", min=1, max=16384 // multiple)}
    if graph == "standalone":
        net, example = model, torch.rand(1, 3, h + 3, w + 1)
        dims = {2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    elif graph == "core":
        net, example, dims = CoreNet(model).eval(), torch.rand(1, 3, h, w), blocks
    else:
        net = FrameNet(model, concat=graph == "frames-concat").eval()
        example, dims = torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8), blocks
    try:
        with quiet(), torch.no_grad():
            program = torch.onnx.export(net, (example,), dynamo=True, opset_version=opset, input_names=["image"],
                                        output_names=["sharpened"], dynamic_shapes={"x": dims}, verbose=False)
    except Exception as exc:  # the exporter's own error types
        raise SharpkdError(f"ONNX export failed: {str(exc).splitlines()[0]}") from exc
    proto = program.model_proto
    props = {"arch": getattr(model, "arch_name", type(model).__name__), "multiple": str(multiple),
             "graph": graph, "standalone": str(graph == "standalone").lower(), "producer": "sharpkd"}
    for k, v in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    for value in (proto.graph.input[0], proto.graph.output[0]):
        for axis, name in ((2, "height"), (3, "width")):
            value.type.tensor_type.shape.dim[axis].dim_param = name
    data = proto.SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(data))
    if path is not None:
        write_bytes(path, data)
    return data


def cache_dir() -> Path:
    base = os.environ.get("SHARPKD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sharpkd")
    return Path(base) / "onnx"


def onnx_bytes_for(model: nn.Module, cache_key: str | None = None, graph: str = "core") -> bytes:
    """The `graph` (one of `GRAPHS` but 'standalone') ONNX graph of `model`, from the cache when its weights were
    exported before."""
    if cache_key:
        torch_version = torch.__version__.split("+")[0]
        cached = cache_dir() / f"{cache_key[:24]}-{torch_version}-{graph}-v{GRAPH_VERSION}.onnx"
        if cached.is_file():
            return cached.read_bytes()
    data = export_onnx(model, graph=graph)
    if cache_key:
        try:
            write_bytes(cached, data)
        except OSError as exc:  # a read-only home is no reason to fail
            log.debug("could not cache %s: %s", cached, exc)
    return data


class OnnxBackend:
    """onnxruntime on a `.onnx` file or bytes (see `export_onnx`): all graph optimisations, one intra-op thread
    per physical core unless `threads` says otherwise."""

    name = "onnx"
    frames_graph = "frames-concat"  # the frames graph this runtime runs faster (`FrameNet`)

    def __init__(self, model: str | os.PathLike | bytes, threads: int | None = None, multiple: int | None = None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = threads or physical_cores()
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        src = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            label = "model bytes" if isinstance(model, bytes) else str(model)
            raise SharpkdError(f"{label}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        props = self.session.get_modelmeta().custom_metadata_map
        self.meta = dict(props)
        self.multiple = multiple or int(props.get("multiple", 8))
        self.input_name = self.session.get_inputs()[0].name
        self.threads = so.intra_op_num_threads

    def describe(self) -> str:
        return "onnxruntime"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """float32 (B, 3, H, W) in and out, or uint8 on a frames graph."""
        x = np.ascontiguousarray(x, dtype=np.uint8 if x.dtype == np.uint8 else np.float32)
        return self.session.run(None, {self.input_name: x})[0]
