"""Training recipes (`sharpkd train`): every shipped model's recipe runs end to end on tiny data (--quick: every
stage one step), resumes by skipping finished stages, and writes the one sidecar schema; the finishing steps
(coring, float16) as library calls and `sharpkd core`."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from sharpkd.cli import main
from sharpkd.models import build_model, load_weights, save_weights
from sharpkd.models.weights import (read_sidecar, shipped_names, shipped_weights_path, sidecar_path,
                                   sidecar_problems)
from sharpkd.training.recipes import RECIPE_DIR, load_training_recipe, recipe_names

from util import make_image_folder


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A data root with a `faces` folder inside (student_lk's last stage reads it)."""
    root = tmp_path_factory.mktemp("data")
    make_image_folder(root, n=8, size=40)
    make_image_folder(root / "faces", n=8, size=40, seed=1)
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One runs folder for every recipe: those a recipe builds on are trained once, beside it."""
    return tmp_path_factory.mktemp("runs")


def _dtypes(path) -> set[str]:
    with safe_open(str(path), "pt") as f:
        return {str(f.get_tensor(k).dtype) for k in f.keys()}


@pytest.mark.parametrize("name", ["teacher_seed", "student_seed", "student_lk", "teacher", "student"])
def test_each_shipped_recipe_runs_every_stage_and_finishing_step(name, data_root, runs, monkeypatch):
    monkeypatch.setenv("SHARPKD_SHARED_DATA", str(data_root))  # sidecars give data folders relative to it
    recipe = load_training_recipe(name)
    assert main(["train", name, "--data", str(data_root), "--out", str(runs / name), "--quick"]) == 0
    model, meta = load_weights(runs / name / "model.safetensors")
    assert sidecar_problems(meta) == [] and meta["recipe"] == name and meta["command"].startswith("sharpkd train")
    # every stage ran, in order, after those of the weights it started from; each is a run of its own
    own = [s for s in meta["stages"] if s["name"].startswith(f"{name}/")]
    assert [s["name"] for s in own] == [f"{name}/{s['name']}" for s in recipe["stages"]]
    assert meta["stages"][-len(own):] == own and all(s["epochs"] == 1 and s["val_metrics"] for s in own)
    assert all((runs / name / s["name"] / "model.safetensors").is_file() for s in recipe["stages"])
    assert [s["data"]["folder"] for s in own] == [s.get("data", ".") for s in recipe["stages"]]
    shipped = read_sidecar(name)  # the recipe builds the shipped model's architecture
    assert (meta["arch"], meta["parameters"]) == (shipped["arch"], shipped["parameters"])
    finishing = recipe["finishing"]
    assert meta["finishing"]["dtype"] == finishing.get("dtype", "float32")
    assert ("torch.float16" in _dtypes(runs / name / "model.safetensors")) == (finishing.get("dtype") == "float16")
    assert model.arch_kwargs.get("shrink", 0) == finishing.get("core", 0) == meta["finishing"].get("core", 0)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_a_rerun_skips_finished_stages_and_resumes_an_unfinished_one(data_root, runs):
    out = runs / "again"  # beside the other runs: teacher_seed, which it builds on, is trained once
    args = ["train", "student_lk", "--data", str(data_root), "--out", str(out), "--quick"]
    assert main(args) == 0
    first, last = out / "kd46" / "model.safetensors", out / "faces_anneal" / "model.safetensors"
    for path in (out / "model.safetensors", last, sidecar_path(last)):  # as if stopped in the last stage
        path.unlink()
    stamp = first.stat().st_mtime_ns
    assert main(args) == 2  # an unfinished stage is neither started over nor resumed without a flag
    assert main(args + ["--resume"]) == 0
    assert first.stat().st_mtime_ns == stamp and last.is_file() and (out / "model.safetensors").is_file()
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert main(args) == 0 and (out / "model.safetensors").stat().st_mtime_ns == stamp  # finished: nothing to do


def test_float16_weights_load_and_run_at_half_the_size(tmp_path):
    torch.manual_seed(0)
    model = build_model("unet_deep").eval()  # not residual: the output is not the input at init
    full = save_weights(model, tmp_path / "f32.safetensors")
    half = save_weights(model, tmp_path / "f16.safetensors", dtype=torch.float16)
    assert _dtypes(half) == {"torch.float16", "torch.float32", "torch.int64"}  # BatchNorm statistics stay float32
    assert 0.45 < half.stat().st_size / full.stat().st_size < 0.55
    loaded, _ = load_weights(half)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert b.dtype == torch.float32 and not torch.equal(a, b) and torch.allclose(a, b, atol=1e-2)


def test_core_command_cores_the_residual_and_keeps_the_sidecar(tmp_path, capsys):
    torch.manual_seed(0)
    model = build_model("fast_unet", residual=True, scale=4, luma=True).eval()
    torch.nn.init.normal_(model.head[1].weight, std=0.05)  # a residual of either side of 4/255 (zero at init)
    src = save_weights(model, tmp_path / "s.safetensors", stages=[{"name": "s", "command": "x", "epochs": 1}],
                       role="kept", finishing={"dtype": "float32"})
    out = tmp_path / "cored.safetensors"
    assert main(["core", str(src), "4", "-o", str(out)]) == 0
    cored, meta = load_weights(out)
    assert cored.arch_kwargs["shrink"] == 4.0 and cored.shrink == 4 / 255 and meta["finishing"]["core"] == 4.0
    assert meta["role"] == "kept" and meta["stages"] == read_sidecar(src)["stages"] and sidecar_problems(meta) == []
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), cored.state_dict().values()))
    x = torch.full((1, 3, 16, 16), 0.5) + torch.rand(1, 3, 16, 16) / 10
    with torch.no_grad():
        r, t = model(x) - x, 4 / 255
        assert (r.abs() < t).any() and (r.abs() > t).any()
        assert torch.allclose(cored(x) - x, r - r.clamp(-t, t), atol=1e-6)  # small changes dropped, large shrunk
    capsys.readouterr()
    assert main(["core", str(src), "4", "-o", str(out)]) == 2  # never over an existing file without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    unet = save_weights(build_model("unet", residual=True), tmp_path / "u.safetensors")
    assert main(["core", str(unet), "4", "-o", str(tmp_path / "u2.safetensors")]) == 2  # no coring in this arch
    assert not (tmp_path / "u2.safetensors").exists()


@pytest.mark.parametrize("name", shipped_names())
def test_every_shipped_sidecar_follows_the_schema_and_names_its_recipe(name):
    meta = json.loads(sidecar_path(shipped_weights_path(name)).read_text())
    assert sidecar_problems(meta) == []
    assert meta["recipe"] == name and (RECIPE_DIR / f"{name}.yaml").is_file()
    recipe = load_training_recipe(name)
    own = [s["name"].partition("/")[2] for s in meta["stages"] if s["name"].startswith(f"{name}/")]
    assert own == [s["name"] for s in recipe["stages"]]  # the recorded stages are the recipe's
    assert all(s["command"] for s in meta["stages"])
    assert meta["finishing"].get("core") == recipe["finishing"].get("core")
    assert meta["finishing"].get("dtype", "float32") == recipe["finishing"].get("dtype", "float32")


def test_bad_recipes_are_one_line_errors_before_any_work(tmp_path, data_root, capsys):
    bad = tmp_path / "bad.yaml"
    for text, words in (("stages: []\n", "list of stages"),
                        ("stages:\n  - {name: a, config: teacher, lr_typo: 1}\n", "unknown keys lr_typo"),
                        ("stages:\n  - {name: a, config: teacher, init: nowhere}\n", "neither an earlier stage"),
                        ("stages:\n  - {name: a, config: teacher, init: teacher/nowhere}\n", "RECIPE/STAGE"),
                        ("stages:\n  - {name: a, config: teacher, max_time: soon}\n", "DD:HH:MM:SS"),
                        ("stages:\n  - {name: a, config: nope}\n", "config"),
                        ("stages:\n  - {name: a, config: teacher, data: missing}\n", "data folder")):
        bad.write_text(text)
        assert main(["train", str(bad), "--data", str(data_root), "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
    assert main(["train", "studnet", "--data", str(data_root)]) == 2
    assert "student" in capsys.readouterr().err and set(recipe_names()) == set(shipped_names())
    assert not (tmp_path / "run").exists()
