"""Failures a user can cause are one line and an exit code, never a traceback: damaged weight sidecars, output paths
of `live` that cannot be written, and Ctrl-C or SIGTERM during training (which keeps the best epoch so far)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sharpkd.cli import main
from sharpkd.errors import SharpkdError
from sharpkd.models import load_weights

from test_live import _write_video
from util import REPO_ROOT, make_image_folder

DAMAGES = ("not JSON", "a list", "binary", "negative width", "kwargs a list", "unknown arch")


def _sidecar(weights: Path, damage: str) -> bytes:
    """The sidecar of `weights`, damaged."""
    meta = json.loads(weights.with_suffix(".json").read_text())
    changed = {"negative width": {"arch_kwargs": {**meta["arch_kwargs"], "width": -3}},
               "kwargs a list": {"arch_kwargs": [1]}, "unknown arch": {"arch": "nope"}}
    raw = {"not JSON": b"{broken", "a list": b"[]", "binary": b"\xff\xfe\x00\x81"}
    return raw[damage] if damage in raw else json.dumps({**meta, **changed[damage]}).encode()


def _damaged(weights: Path, folder: Path, damage: str = "not JSON") -> Path:
    """A copy of `weights` in `folder` with its sidecar damaged."""
    folder.mkdir(parents=True, exist_ok=True)
    path = Path(shutil.copy(weights, folder / "damaged.safetensors"))
    path.with_suffix(".json").write_bytes(_sidecar(weights, damage))
    return path


def _one_error(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sharpkd: error: ") and "Traceback" not in text, text
    return lines[0]


def _run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sharpkd.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return _write_video(tmp_path_factory.mktemp("errors") / "clip.mp4")


@pytest.fixture
def no_model(monkeypatch):
    """Fails a test whose command gets as far as loading the model (its error had to come first)."""
    import sharpkd.inference

    def load(*args, **kwargs):
        raise AssertionError("the model was loaded before the error")
    monkeypatch.setattr(sharpkd.inference, "load", load)


# ------------------------------------------------------------------------------------------ damaged sidecars
@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_sidecar_is_an_error_that_names_it(damage, weights, tmp_path):
    path = _damaged(weights, tmp_path, damage)
    with pytest.raises(SharpkdError, match=str(path.with_suffix(".json"))):
        load_weights(path)


@pytest.mark.parametrize("command", ["sharpen", "video", "export", "evaluate", "live", "distill"])
def test_every_command_that_loads_weights_names_the_damaged_sidecar(command, weights, video, tmp_path, capsys):
    bad = str(_damaged(weights, tmp_path / "w"))
    image = make_image_folder(tmp_path / "images", n=4, size=32)
    argv = {"sharpen": ["sharpen", str(image), "-o", str(tmp_path / "out"), "--model", bad],
            "video": ["video", str(video), "-o", str(tmp_path / "out.mp4"), "--model", bad, "--backend", "torch"],
            "export": ["export", "--model", bad, "-o", str(tmp_path / "m.onnx")],
            "evaluate": ["evaluate", "--data", str(image), "--count", "2", "--size", "16", "--models", f"bad={bad}",
                         "--out", str(tmp_path / "report")],
            "live": ["live", "--source", str(video), "--benchmark", "1", "--model", bad, "--backend", "torch"],
            "distill": ["distill", "--data", str(image), "--teacher", bad, "--out", str(tmp_path / "run")]}[command]
    assert main(argv) == 2
    assert "damaged.json: damaged sidecar, not readable JSON" in _one_error(capsys.readouterr().err)


def test_serve_with_a_damaged_sidecar_is_one_line(weights, tmp_path):
    r = _run("serve", "--teacher", str(_damaged(weights, tmp_path)), "--port", "1")
    assert r.returncode == 2 and "damaged.json: damaged sidecar" in _one_error(r.stderr)


def test_models_with_a_damaged_shipped_sidecar_is_one_line(weights, tmp_path, monkeypatch, capsys):
    import sharpkd.models.weights

    monkeypatch.setattr(sharpkd.models.weights, "WEIGHTS_DIR", _damaged(weights, tmp_path, "a list").parent)
    assert main(["models"]) == 2
    assert "damaged.json: damaged sidecar, a JSON object expected" in _one_error(capsys.readouterr().err)


# ---------------------------------------------------------------------------------- live's output paths
def test_live_out_a_folder_fails_before_the_model_loads(video, tmp_path, capsys, no_model):
    assert main(["live", "--source", str(video), "--sink", "file", "-o", str(tmp_path)]) == 2
    assert f"--out {tmp_path}: is a folder" in _one_error(capsys.readouterr().err)


def test_live_json_that_cannot_be_written_fails_before_the_model_loads(video, tmp_path, capsys, no_model):
    (tmp_path / "file").write_text("mine")
    assert main(["live", "--source", str(video), "--benchmark", "1", "--json", str(tmp_path / "file/sub/b.json")]) == 2
    assert "cannot make its folder" in _one_error(capsys.readouterr().err)
    assert (tmp_path / "file").read_text() == "mine"


def test_live_json_and_out_folders_are_made_as_for_video(video, weights, tmp_path):
    out, report = tmp_path / "new" / "rec.mp4", tmp_path / "nodir" / "sub" / "b.json"
    assert main(["live", "--source", str(video), "--benchmark", "1", "--json", str(report), "--model", str(weights),
                 "--backend", "torch", "--threads", "1", "--sink", "file", "-o", str(out)]) == 0
    assert json.loads(report.read_text())["paced"]["frames"] == 1 and out.stat().st_size > 0
    assert sorted(p.name for p in report.parent.iterdir()) == ["b.json"]


# ------------------------------------------------------------------------------- signals during training
@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_signal_during_training_stops_it_and_keeps_the_best_epoch(sig, code, word, tmp_path):
    data, run = make_image_folder(tmp_path / "data", n=6, size=32), tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sharpkd.cli", "train-teacher", "--data", str(data), "--out", str(run),
         "--max-epochs", "1000", "--patience", "1000", "--epoch-size", "8", "--val-size", "4", "--crop", "32",
         "--batch-size", "4", "--num-workers", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 180
        while not (run / "checkpoints" / "last.ckpt").is_file():  # an epoch has finished
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
            time.sleep(0.1)
        proc.send_signal(sig)
        err = proc.communicate(timeout=120)[1]
    finally:
        proc.kill()
    lines = err.splitlines()
    assert proc.returncode == code and lines[-1] == f"sharpkd: {word}" and "Traceback" not in err, err
    assert not [line for line in lines if line.strip() in ("sharpkd:", "")], err
    model, meta = load_weights(run / "model.safetensors")
    assert meta["stages"][-1]["epochs"] >= 1 and meta["stages"][-1]["val_metrics"]["ssim"] > 0
