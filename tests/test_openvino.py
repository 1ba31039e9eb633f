"""The OpenVINO backend (optional extra): parity with PyTorch for the shipped students, one compiled model per input
size, .onnx files, bench, and a one-line error where openvino is not installed."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import sharpkd
from sharpkd import cli
from sharpkd.data.io import to_float
from sharpkd.errors import SharpkdError
from sharpkd.inference.openvino_backend import OpenVinoBackend, available

needs_openvino = pytest.mark.skipif(not available(), reason="openvino is not installed (pip install -e '.[openvino]')")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SHARPKD_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def image():
    """A real photo, blurred as in training, at an odd size (101x77: the model pads to its multiple)."""
    from sharpkd.inference.export import calibration_images

    return np.ascontiguousarray(calibration_images(1)[0][:101, :77])


@needs_openvino
@pytest.mark.parametrize("name", ["student", "student_lk"])
def test_openvino_matches_torch_fp32_on_a_real_image(name, image):
    ref = sharpkd.load(name, backend="torch", threads=2)
    ov = sharpkd.load(name, backend="openvino", threads=2)
    assert ov.backend_name == "openvino" and "on openvino fp32, 2 threads" in ov.describe()
    x = to_float(image.transpose(2, 0, 1)[None])
    assert np.abs(ov.run_array(x) - ref.run_array(x)).max() <= 1e-4  # the tolerance of `sharpkd export`
    a, b = ref.sharpen(image), ov.sharpen(image)
    assert b.shape == image.shape and b.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    m = ov.multiple  # the frame ran through the uint8 graph, padded to the model's multiple
    assert ov.frames_backend().compiled_shapes() == [(1, 3, -(-101 // m) * m, -(-77 // m) * m)]


@needs_openvino
def test_one_compiled_model_per_input_size_most_recent_kept():
    from sharpkd.inference.onnx_backend import onnx_bytes_for
    from sharpkd.models.weights import file_sha256, resolve_weights

    net = sharpkd.load_weights("student")[0]
    graph = onnx_bytes_for(net, cache_key=file_sha256(resolve_weights("student")))  # exported above
    be = OpenVinoBackend(graph, threads=1, multiple=net.multiple, max_shapes=2)
    m = net.multiple  # the core graph takes multiples of it
    xs = {hw: np.random.default_rng(hw[0]).random((1, 3, *hw), dtype=np.float32)
          for hw in [(m, m), (2 * m, m), (m, 2 * m)]}
    first = be(xs[m, m])
    be(xs[2 * m, m])
    again = be(xs[m, m])  # from the cache: the output is a copy, not the request's reused buffer
    assert be(xs[m, 2 * m]).shape == (1, 3, m, 2 * m)
    assert be.compiled_shapes() == [(1, 3, m, m), (1, 3, m, 2 * m)]
    np.testing.assert_array_equal(first, again)
    from sharpkd.inference.openvino_backend import cpu_supports_bf16

    bf16 = OpenVinoBackend(graph, threads=1, precision="bf16")
    assert bf16.describe() == ("openvino bf16" if cpu_supports_bf16() else "openvino bf16 requested, fp32 on this CPU")


@needs_openvino
def test_an_onnx_file_runs_on_openvino(tmp_path, image):
    from sharpkd.inference.onnx_backend import export_onnx

    net = sharpkd.load_weights("student")[0]
    export_onnx(net, tmp_path / "fast.onnx")
    a = sharpkd.load(str(tmp_path / "fast.onnx"), backend="onnx").sharpen(image)
    b = sharpkd.load(str(tmp_path / "fast.onnx"), backend="openvino").sharpen(image)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(SharpkdError, match="not a loadable ONNX model"):
        sharpkd.load(str(tmp_path / "bad.onnx"), backend="openvino")


@needs_openvino
def test_bench_times_openvino_against_onnxruntime():
    from sharpkd.inference.bench import run_bench

    r = run_bench([(24, 16)], models=("student",), backends=("onnx", "openvino"), frames=2, warmup=0,
                  threads=1)
    assert [row["backend"] for row in r["rows"]] == ["onnx", "openvino"]
    assert any(q["kind"] == "openvino vs onnx" for q in r["ratios"]) and r["hardware"]["openvino"]


def test_without_openvino_one_line_says_how_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    with pytest.raises(SharpkdError, match=r"pip install -e '\.\[openvino\]'"):
        sharpkd.load("student", backend="openvino")
    img = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    assert cli.main(["sharpen", str(img), "-o", str(tmp_path / "out"), "--model", "student",
                     "--backend", "openvino"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install -e '.[openvino]'" in err
