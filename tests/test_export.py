"""ONNX export: dynamic height and width, parity with PyTorch, int8, and the student variants."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import sharpkd
from sharpkd import cli
from sharpkd.models import build_model, count_parameters, pad_to_multiple, save_weights


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SHARPKD_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def exported(weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "student.onnx"
    assert cli.main(["export", "--model", str(weights), "-o", str(out)]) == 0
    return out


def test_export_command_writes_dynamic_opset17_model(exported, capsys):
    m = onnx.load(str(exported))
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert dims[2].dim_param and dims[3].dim_param and not dims[2].dim_value
    assert {p.key: p.value for p in m.metadata_props}["arch"] == "ds_unet"


def test_export_reports_parity(weights, tmp_path, capsys):
    assert cli.main(["export", "--model", str(weights), "-o", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "max abs diff" in out and "OK" in out


@pytest.mark.parametrize("hw", [(7, 13), (37, 61), (128, 96), (3, 3)])
def test_onnxruntime_matches_pytorch(exported, weights, hw):
    net, _ = sharpkd.load_weights(weights)
    x = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(hw[0]))
    with torch.inference_mode():
        ref = net(x).numpy()
    sess = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-4


def test_onnx_backend_matches_torch_fp32_on_a_real_image(weights):
    from sharpkd.inference.export import calibration_images

    img = calibration_images(1)[0][:101, :77]
    a = sharpkd.load(str(weights), backend="torch").sharpen(img)
    b = sharpkd.load(str(weights), backend="onnx").sharpen(img)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


@pytest.mark.parametrize("model", ["weights", "student"])  # a sigmoid output; the shipped one-plane residual
def test_whole_frames_run_the_uint8_graph_within_1_of_the_float_graph(model, request):
    from sharpkd.data.io import batch_to_rgb, rgb_to_batch
    from sharpkd.inference.export import calibration_images

    name = str(request.getfixturevalue("weights")) if model == "weights" else model
    sh = sharpkd.load(name, backend="onnx")
    for img in (calibration_images(1)[0][:101, :77], np.full((1, 2, 3), 200, np.uint8)):  # reflect; replicate
        out = sh.sharpen(img)
        assert out.shape == img.shape and out.dtype == np.uint8 and out.flags.c_contiguous
        frames = sh.frames_backend()
        assert frames.session.get_inputs()[0].type == "tensor(uint8)" and frames.meta["graph"] == "frames-concat"
        ref = batch_to_rgb(sh.run_array(rgb_to_batch(img)))  # the float core graph, rounded half to even
        assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    assert sharpkd.load(name, backend="torch").frames_backend() is None


def test_frames_graph_folds_the_input_scale_into_the_first_conv_where_the_model_names_it(weights):
    from sharpkd.inference.onnx_backend import export_onnx

    student = sharpkd.load_weights("student")[0]
    before = student.input_conv().weight.clone()
    ops = {name: [n.op_type for n in onnx.load_from_string(export_onnx(net, graph="frames-concat")).graph.node]
           for name, net in [("student", student), ("seed", sharpkd.load_weights(weights)[0])]}
    assert "Div" not in ops["student"] and "Concat" in ops["student"]  # folded; one plane made three
    assert "Div" in ops["seed"]  # a model that names no input conv keeps the division
    assert torch.equal(student.input_conv().weight, before)  # the fold scaled a copy


def test_onnx_file_loads_as_a_sharpener(exported):
    sh = sharpkd.load(str(exported), backend="onnx")
    out = sh.sharpen(np.zeros((1, 1, 3), np.uint8))
    assert out.shape == (1, 1, 3) and out.dtype == np.uint8
    with pytest.raises(sharpkd.SharpkdError):
        sharpkd.load(str(exported), backend="torch")


def test_eager_padding_unchanged():
    """The export-friendly branch of pad_to_multiple is only taken while exporting."""
    x = torch.arange(2 * 5, dtype=torch.float32).reshape(1, 1, 2, 5)
    y, hw = pad_to_multiple(x, 4)
    assert hw == (2, 5) and y.shape == (1, 1, 4, 8)
    assert torch.equal(y[..., 3, :5], x[..., 1, :])  # replicate for tiny inputs
    x = torch.rand(1, 3, 6, 9)
    y, _ = pad_to_multiple(x, 4)
    assert torch.equal(y[..., 6, :9], x[..., 4, :])  # reflect otherwise


@pytest.mark.parametrize("name,kwargs,multiple", [("fast_unet", {}, 8), ("fast_unet", {"scale": 4}, 16),
                                                  ("fast_unet", {"scale": 4, "residual": True, "shrink": 1.0}, 16),
                                                  ("fast_unet", {"scale": 4, "residual": True, "luma": True}, 16),
                                                  ("lk_unet", {}, 4)])
def test_student_variants_run_any_size_and_export(name, kwargs, multiple, tmp_path):
    torch.manual_seed(0)
    net = build_model(name, **kwargs).eval()
    with torch.no_grad():  # move the zero-initialised layers, so that every branch counts in the parity check
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    assert 15_000 <= count_parameters(net) <= 25_000 and net.multiple == multiple
    for hw in [(1, 1), (7, 13), (37, 61)]:
        with torch.inference_mode():
            assert net(torch.rand(1, 3, *hw)).shape == (1, 3, *hw)
    save_weights(net, tmp_path / "f.safetensors")
    sh = sharpkd.load(str(tmp_path / "f.safetensors"), backend="onnx")
    img = np.random.default_rng(0).integers(0, 256, (37, 61, 3), dtype=np.uint8)
    ref = sharpkd.load(str(tmp_path / "f.safetensors")).sharpen(img)
    assert np.abs(sh.sharpen(img).astype(int) - ref.astype(int)).max() <= 1


def test_int8_export_writes_the_int8_model_to_out_and_nothing_else(tmp_path, capsys):
    torch.manual_seed(0)
    save_weights(build_model("fast_unet"), tmp_path / "f.safetensors")
    (tmp_path / "out").mkdir()
    assert cli.main(["export", "--model", str(tmp_path / "f.safetensors"), "-o", str(tmp_path / "out" / "f.onnx"),
                     "--quantize", "int8"]) == 0
    out = capsys.readouterr().out
    assert "SSIM" in out and "loss" in out
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["f.onnx"]  # no fp32 model beside it
    m = onnx.load(str(tmp_path / "out" / "f.onnx"))
    assert any(n.op_type in ("QuantizeLinear", "QLinearConv") for n in m.graph.node)


def test_export_that_fails_parity_writes_nothing(weights, tmp_path, monkeypatch):
    from sharpkd.inference import export

    monkeypatch.setattr(export, "parity", lambda *a: 1.0)
    assert cli.main(["export", "--model", str(weights), "-o", str(tmp_path / "m.onnx")]) == 2
    assert list(tmp_path.iterdir()) == []
