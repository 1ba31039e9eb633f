"""The model zoo: one way to find weights (name or path), `sharpkd models` read from the sidecars, sidecars
without the training machine's paths, and commands that say which model ran on which backend."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sharpkd import cli
from sharpkd.errors import SharpkdError
from sharpkd.models import build_model, count_parameters, load_weights, resolve_weights, save_weights
from sharpkd.models import weights as weights_mod
from sharpkd.models.weights import shipped_names, shipped_weights_path, sidecar_path
from sharpkd.models.zoo import (README_END, README_START, gain_share, list_models, models_page, readme_table,
                                 speed_class, with_readme_table)


def SUITE(ssim: float, psnr: float) -> dict:
    """A sidecar's `suite` entry: the model at (ssim, psnr) on faces' `call` crops, the input at (0.75, 26.0)."""
    row = {"ssim": ssim, "psnr": psnr, "input": {"ssim": 0.75, "psnr": 26.0}, "unsharp": {"ssim": 0.7, "psnr": 25.0}}
    return {"commands": ["sharpkd evaluate --suite"], "count": 8, "size": 32, "seed": 0,
            "datasets": {"faces": {"call": row, "call@1280x720": row}}}


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """A weights folder of its own: two models with sidecars, one weights file without."""
    monkeypatch.setattr(weights_mod, "WEIGHTS_DIR", tmp_path)
    torch.manual_seed(0)
    save_weights(build_model("ds_unet"), tmp_path / "small.safetensors", role="for tests", purpose="a small model",
                 recipe="student_kd", command="sharpkd distill --data x", val_metrics={"ssim": 0.8, "psnr": 27.0},
                 speed={"ms_720p": 20.0, "fps": 50.0, "backend": "onnx", "threads": 2, "cpu": "test CPU",
                        "command": "zoo_speed"}, suite=SUITE(0.80, 27.0))
    save_weights(build_model("ds_unet"), tmp_path / "twin.safetensors", role="same architecture",
                 data={"preset": "call+seed"}, suite=SUITE(0.85, 30.0))
    save_weights(build_model("unet"), tmp_path / "big.safetensors")
    sidecar_path(tmp_path / "big.safetensors").unlink()
    return tmp_path


def test_shipped_models_are_the_weights_files_with_a_sidecar(zoo):
    assert shipped_names() == ["small", "twin"]
    assert resolve_weights("small") == zoo / "small.safetensors"


def test_unknown_name_lists_the_shipped_models(zoo):
    with pytest.raises(SharpkdError) as e:
        resolve_weights("smal")
    msg = str(e.value)
    assert "unknown model 'smal'" in msg and "did you mean 'small'" in msg and "small, twin" in msg
    assert "\n" not in msg
    with pytest.raises(SharpkdError, match="weights file not found"):
        resolve_weights(zoo / "missing.safetensors")


def test_unknown_model_on_the_command_line(tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    assert cli.main(["sharpen", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--model", "studnet"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'studnet'" in err and "did you mean 'student'" in err
    assert all(name in err for name in shipped_names()) and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_models_are_listed_from_their_sidecars(zoo):
    rows = {m["name"]: m for m in list_models()}
    assert set(rows) == {"small", "twin"}
    small, twin = rows["small"], rows["twin"]
    assert small["role"] == "for tests" and small["parameters"] == 20_702 and small["arch"] == "ds_unet"
    assert small["speed_class"] == "real time" and small["suite"]["datasets"]["faces"]["call"]["ssim"] == 0.80
    assert small["command"] == "sharpkd distill --data x"
    # the same architecture shares its speed
    assert twin["speed"]["measured_on"] == "small" and twin["speed_class"] == "real time"
    assert [speed_class(f) for f in (60, 30, 12, 2)] == ["real time", "real time", "interactive", "offline"]
    # the share of a reference's gain over the input: (30 - 26) / (27 - 26)
    assert gain_share(twin, small, "faces", "call") == pytest.approx(4.0)
    assert gain_share(twin, small, "faces", "seed") is None


def test_models_command(zoo, capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "small  (ds_unet, 20,702 parameters)" in out and "for tests" in out
    assert "real time: 20.0 ms (onnx, 2 threads, test CPU)" in out
    assert "SSIM / PSNR 0.8000 / 27.00 on faces, call (input 0.7500 / 26.00)" in out
    assert "sharpkd distill --data x" in out
    assert cli.main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listed] == ["small", "twin"]


def test_the_zoo_page_and_the_readme_table_read_the_sidecars(zoo):
    models = list_models()
    page = models_page(models)
    assert "| `small` | 0.8000 / 27.00 | 0.8000 / 27.00 |" in page and "| input | 0.7500 / 26.00 |" in page
    assert "Share of" not in page  # no model named teacher here
    table = readme_table(models)
    assert "| `small` | for tests | 20,702 | 20.0 ms | 0.8000 / 27.00 | 0.8000 / 27.00 |" in table
    readme = f"intro\n{README_START}\nold table\n{README_END}\nrest\n"
    assert with_readme_table(readme, table) == f"intro\n{README_START}\n{table}\n{README_END}\nrest\n"
    assert with_readme_table("no markers", table) == "no markers"


def test_every_shipped_model_says_what_it_is_for_and_how_good_it_is():
    models = list_models()
    for m in models:
        assert m["role"] and m["purpose"] and m["parameters"] and m["command"] and m["suite"], m["name"]
    # one suite run: every sidecar holds the same input and unsharp-mask figures
    bases = {json.dumps({ds: {f: (r["input"], r["unsharp"]) for f, r in fams.items()}
                         for ds, fams in m["suite"]["datasets"].items()}, sort_keys=True) for m in models}
    assert len(bases) == 1


def test_the_zoo_page_and_the_readme_are_current():
    """docs/models.md and the README's table are what the sidecars say (`python scripts/zoo_page.py --write`)."""
    root = Path(__file__).resolve().parent.parent
    models = list_models()
    assert (root / "docs" / "models.md").read_text() == models_page(models)
    readme = (root / "README.md").read_text()
    assert README_START in readme and with_readme_table(readme, readme_table(models)) == readme


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@pytest.mark.parametrize("name", shipped_names())
def test_shipped_sidecars_hold_no_absolute_path(name):
    meta = json.loads(sidecar_path(shipped_weights_path(name)).read_text())
    assert not [s for s in _strings(meta) if os.path.isabs(s) or s.startswith("~")]
    assert meta["data"]["root"] and not os.path.isabs(meta["data"]["folder"])


def test_saved_sidecars_keep_paths_relative(tmp_path, monkeypatch):
    shared = tmp_path / "shared" / "data"
    (shared / "faces").mkdir(parents=True)
    monkeypatch.setenv("SHARPKD_SHARED_DATA", str(shared))
    start = save_weights(build_model("ds_unet"), tmp_path / "runs" / "a" / "model.safetensors")
    run = tmp_path / "runs" / "b"
    stage = {"name": "b", "command": "sharpkd distill", "data": {"folder": str(shared / "faces")},
             "teacher": {"weights": str(shipped_weights_path("teacher"))}, "init_weights": {"weights": str(start)}}
    save_weights(build_model("ds_unet"), run / "model.safetensors", data=stage["data"], stages=[stage])
    _, meta = load_weights(run)
    assert meta["data"] == meta["stages"][0]["data"] == {"root": "$SHARPKD_SHARED_DATA", "folder": "faces"}
    assert meta["stages"][0]["teacher"]["weights"] == "teacher"  # a shipped model's file is named by its name
    assert meta["stages"][0]["init_weights"]["weights"] == "../a/model.safetensors"  # else relative to the run
    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    save_weights(build_model("ds_unet"), run / "model.safetensors", data={"folder": str(elsewhere)})
    assert load_weights(run)[1]["data"] == {"root": "mine", "folder": "."}


# ------------------------------------------------------------------------- commands name the model they run
@pytest.fixture(autouse=False)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SHARPKD_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.mark.parametrize("backend,says", [("torch", "on torch fp32"), ("onnx", "on onnxruntime")])
def test_sharpen_names_the_model_and_backend(tmp_path, weights, capsys, backend, says, _cache):
    Image.fromarray(np.zeros((9, 13, 3), np.uint8)).save(tmp_path / "a.png")
    assert cli.main(["sharpen", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--model", str(weights),
                     "--backend", backend, "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert f"model student (LightStudentUNet, 20,702 parameters) {says}, 1 threads" in out


def test_sharpen_names_a_shipped_model(tmp_path, capsys):
    Image.fromarray(np.zeros((9, 13, 3), np.uint8)).save(tmp_path / "a.png")
    assert cli.main(["sharpen", str(tmp_path / "a.png"), "-o", str(tmp_path / "o")]) == 0
    net, _ = load_weights("student")
    assert f"model student ({type(net).__name__}, {count_parameters(net):,} parameters) on " in \
        capsys.readouterr().out  # the fastest backend here (auto)


def test_video_names_the_model_and_backend(tmp_path, weights, capsys):
    from test_video import make_clip

    make_clip(tmp_path / "in.mp4", audio=False, n=3)
    assert cli.main(["video", str(tmp_path / "in.mp4"), "-o", str(tmp_path / "out.mp4"), "--model", str(weights),
                     "--threads", "1", "--self-ensemble", "2"]) == 0
    out = capsys.readouterr().out
    assert "model student (LightStudentUNet, 20,702 parameters) on " in out  # the backend `auto` picked, and why:
    assert ", 1 threads, self-ensemble of 2; auto: " in out and "torch " in out and "onnx " in out


def test_demo_names_both_models(tmp_path, capsys):
    assert cli.main(["demo", "-o", str(tmp_path / "demo.png")]) == 0
    out = capsys.readouterr().out
    teacher, _ = load_weights("teacher")
    assert f"teacher: model teacher (DeepTeacherUNet, {count_parameters(teacher):,} parameters) on torch fp32" in out
    assert "student: model student (" in out and (tmp_path / "demo.png").is_file()
