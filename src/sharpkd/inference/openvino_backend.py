"""The OpenVINO side of inference: `OpenVinoBackend` runs the core ONNX graph of a model (see `onnx_backend`),
or a standalone `.onnx` file, with OpenVINO on the CPU. OpenVINO is an optional extra:
`pip install -e '.[openvino]'`.

The graph is read once; it is compiled for each input size it sees (static shapes run faster than a dynamic
graph on OpenVINO's CPU plugin), and the last `max_shapes` compiled sizes are kept. Compiled with a latency
hint (one stream), `threads` inference threads (default: one per physical core) and fp32 precision unless
`precision='bf16'` asks for bfloat16 where the CPU has it."""
from __future__ import annotations

import importlib.util
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..errors import SharpkdError
from ..sysinfo import physical_cores

INSTALL_HINT = "install the extra: pip install -e '.[openvino]'"
PRECISIONS = ("fp32", "bf16")


def available() -> bool:
    """Whether the openvino package is installed (without importing it)."""
    try:
        return importlib.util.find_spec("openvino") is not None
    except (ImportError, ValueError):
        return False


def require_openvino():
    """The openvino module, or a one-line SharpkdError saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise SharpkdError(f"the openvino backend needs the openvino package; {INSTALL_HINT}") from None
    return openvino


def version() -> str | None:
    """openvino's version, or None where it is not installed."""
    if not available():
        return None
    try:
        return require_openvino().__version__.split("-")[0]
    except SharpkdError:
        return None


def cpu_supports_bf16(core=None) -> bool:
    """Whether OpenVINO's CPU plugin can run bfloat16 here (AVX-512 BF16 or AMX); False without openvino."""
    if core is None:
        if not available():
            return False
        core = require_openvino().Core()
    try:
        return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # openvino's own error types: a CPU plugin that cannot say has no bf16 to offer
        return False


def _onnx_metadata(data: bytes) -> dict:
    import onnx

    try:
        return {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    except Exception:  # onnx's DecodeError and friends; openvino reports a bad graph below
        return {}


class OpenVinoBackend:
    """OpenVINO on a `.onnx` file or bytes: same call interface as `OnnxBackend` ((B,3,H,W) float32 in and out,
    or uint8 frames).
    One compiled model per input shape (the `max_shapes` most recent are kept: more than the 9 tile shapes of
    one tiled frame, which would otherwise be compiled again for every frame). Calls are serialised: one
    inference request per compiled model, each using all `threads`."""

    name = "openvino"
    frames_graph = "frames"  # the frames graph this runtime runs faster (it fuses the broadcast add)

    def __init__(self, model: str | os.PathLike | bytes, threads: int | None = None, multiple: int | None = None,
                 precision: str = "fp32", max_shapes: int = 16):
        ov = require_openvino()
        if precision not in PRECISIONS:
            raise SharpkdError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        label = "model bytes" if isinstance(model, bytes) else str(model)
        if isinstance(model, bytes):
            data = model
        else:
            try:
                data = Path(model).read_bytes()
            except OSError as exc:
                raise SharpkdError(f"{label}: cannot read ({exc.strerror or exc})") from None
        self._ov = ov
        self.core = ov.Core()
        try:
            self.graph = self.core.read_model(data)
        except Exception as exc:  # openvino raises its own exception types
            raise SharpkdError(f"{label}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        self.meta = _onnx_metadata(data)
        self.multiple = multiple or int(self.meta.get("multiple", 8))
        self.threads = threads or physical_cores()
        self.precision = precision
        hint = ov.properties.hint
        self.config = {ov.properties.inference_num_threads: self.threads,
                       hint.performance_mode: hint.PerformanceMode.LATENCY,
                       hint.inference_precision: ov.Type.bf16 if precision == "bf16" else ov.Type.f32}
        self.max_shapes = max(1, max_shapes)
        self._requests: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()
        # the precision the CPU plugin runs: fp32 where bf16 was not asked for or the CPU has none; read back
        # from the first compiled model
        self.ran_precision = "bf16" if precision == "bf16" and cpu_supports_bf16(self.core) else "fp32"

    def describe(self) -> str:
        if self.ran_precision != self.precision:
            return f"openvino {self.precision} requested, {self.ran_precision} on this CPU"
        return f"openvino {self.precision}"

    def compiled_shapes(self) -> list[tuple]:
        return list(self._requests)

    def _request(self, shape: tuple):
        req = self._requests.get(shape)
        if req is not None:
            self._requests.move_to_end(shape)
            return req
        graph = self.graph.clone()
        try:
            graph.reshape({graph.inputs[0]: self._ov.PartialShape(list(shape))})
            compiled = self.core.compile_model(graph, "CPU", self.config)
        except Exception as exc:  # openvino raises its own exception types
            raise SharpkdError(f"openvino cannot compile the model for input {'x'.join(map(str, shape))} "
                               f"({str(exc).splitlines()[0]})") from None
        if not self._requests:
            got = compiled.get_property(self._ov.properties.hint.inference_precision)
            self.ran_precision = {self._ov.Type.bf16: "bf16", self._ov.Type.f16: "fp16"}.get(got, "fp32")
        req = compiled.create_infer_request()
        self._requests[shape] = req
        while len(self._requests) > self.max_shapes:
            self._requests.popitem(last=False)
        return req

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """float32 (B, 3, H, W) in and out, or uint8 on a frames graph."""
        x = np.ascontiguousarray(x, dtype=np.uint8 if x.dtype == np.uint8 else np.float32)
        with self._lock:
            req = self._request(tuple(x.shape))
            # outputs are copied out of the request (share_outputs=False): the next call reuses its buffers
            return req.infer({0: x}, share_inputs=True, share_outputs=False)[0]
