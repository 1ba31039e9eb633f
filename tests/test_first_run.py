"""What a first run shows: the commands' defaults (backend auto, a one-minute bench, demo under reports/), the
demo's labelled picture, the web app's bundled examples, training's log lines, evaluate's latency in float32."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sharpkd import cli


def _args(*argv):
    return cli.build_parser().parse_args(list(argv))


def test_every_command_that_runs_a_model_on_frames_defaults_to_backend_auto():
    assert {_args(*argv).backend for argv in (["sharpen", "a.png", "-o", "o"], ["video", "a.mp4", "-o", "b.mp4"],
                                              ["live"])} == {"auto"}


def test_bench_defaults_to_the_student_at_720p_on_every_installed_backend(monkeypatch):
    from sharpkd.inference import bench

    args = _args("bench")
    assert (args.sizes, args.models, args.backends) == ("1280x720", "student", None)
    monkeypatch.setattr(bench, "openvino_version", lambda: "2025.0")
    monkeypatch.setattr(bench.sysinfo, "native_bf16", lambda: False)
    assert bench.installed_backends() == ["onnx", "openvino", "torch"]
    monkeypatch.setattr(bench.sysinfo, "native_bf16", lambda: True)
    assert bench.installed_backends() == ["onnx", "openvino", "openvino-bf16", "torch"]
    monkeypatch.setattr(bench, "openvino_version", lambda: None)
    assert bench.installed_backends() == ["onnx", "torch"]


def test_bench_runs_every_installed_backend_unless_told(monkeypatch):
    from sharpkd.inference import bench

    monkeypatch.setattr(bench, "installed_backends", lambda: ["onnx", "torch"])
    r = bench.run_bench([(64, 48)], frames=2, warmup=0)
    assert [(row["model"], row["backend"]) for row in r["rows"]] == [("student", "onnx"), ("student", "torch")]


def test_evaluate_times_latency_in_float32():
    from sharpkd.evaluation.report import cpu_latency_ms

    seen = []

    class Probe(torch.nn.Conv2d):
        def forward(self, x):
            y = super().forward(x)
            seen.append((torch.is_autocast_enabled("cpu"), y.dtype))
            return y

    assert cpu_latency_ms(Probe(3, 3, 3), size=(8, 8), runs=2, warmup=1) > 0
    assert seen == [(False, torch.float32)] * 3


def test_demo_writes_under_reports_and_names_its_columns_on_the_picture():
    from sharpkd.evaluation.demo import COLUMNS, labelled_row

    assert _args("demo").out == "reports/demo.png"  # ignored by git (.gitignore: reports/)
    tiles = [np.full((40, w, 3), 128, np.uint8) for w in (90, 90, 90, 90)]
    row = labelled_row(tiles, COLUMNS, band=32)
    assert row.shape == (72, 360, 3)
    assert (row[32:] == 128).all()  # the tiles, untouched, under the band
    for i in range(4):  # each column's name, in dark text on the white band
        band = row[:32, 90 * i:90 * (i + 1)]
        assert band.min() < 100 and np.median(band) == 255


def test_the_bundled_examples_are_small_degraded_frames_of_the_sample_photos():
    import skimage.data

    from sharpkd.app.service import example_images

    paths = example_images()
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["camera-shake.jpg", "video-call-frame.jpg"]
    for path, photo in zip(paths, ("chelsea", "astronaut")):
        sharp = getattr(skimage.data, photo)()[..., :3].astype(float)
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            degraded = np.asarray(im).astype(float)
        assert degraded.shape == sharp.shape
        psnr = 10 * np.log10(255 ** 2 / np.mean((degraded - sharp) ** 2))
        assert 20 < psnr < 32  # that photo, visibly degraded
    assert all(len(open(p, "rb").read()) < 80_000 for p in paths)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("configured_first", [True, False])  # logging set up, as `main` does, before Lightning's import
def test_training_prints_lightnings_lines_once_and_no_adverts(tmp_path, configured_first):
    """Lightning gives its loggers console handlers of their own besides the command's: each line came twice."""
    code = f"""if True:
        import logging, sys
        if {configured_first}:
            logging.basicConfig(level=logging.INFO, format="sharpkd: %(message)s", stream=sys.stderr)
        import sharpkd.training
        from lightning.pytorch.utilities.rank_zero import rank_zero_info
        sharpkd.training.run_training = lambda recipe, opts: [rank_zero_info(m) for m in (
            "GPU available: False, used: False", "\\U0001f4a1 Tip: For seamless cloud uploads, try installing ...")]
        from sharpkd.cli import main
        sys.exit(main(sys.argv[1:]))"""
    r = subprocess.run([sys.executable, "-c", code, "train-teacher", "--data", str(tmp_path), "--out",
                        str(tmp_path / "run")], capture_output=True, text=True, timeout=110)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("GPU available: False, used: False") == 1 and "Tip" not in r.stderr, r.stderr
