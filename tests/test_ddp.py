"""Training on several processes (`--devices 2 --strategy ddp`, the gloo backend on CPU): the path a cluster of
GPUs takes. Lightning starts the second process by running the same command again, so the command runs in a
subprocess here; tiny data, one epoch, then one resumed epoch."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from sharpkd.models import build_model, load_weights, save_weights

from util import REPO_ROOT, make_image_folder

pytestmark = pytest.mark.slow


def _distill(*args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "sharpkd.cli", "distill", *args, "--devices", "2", "--strategy", "ddp",
                           "--accelerator", "cpu", "--epoch-size", "32", "--val-size", "8", "--crop", "32",
                           "--batch-size", "4", "--num-workers", "0", "--train-pairs", "16"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=540)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log  # two processes trained
    return log


def test_two_processes_train_resume_and_write_once(tmp_path):
    data = make_image_folder(tmp_path / "data", n=8, size=40)
    torch.manual_seed(0)
    teacher = save_weights(build_model("unet"), tmp_path / "teacher.safetensors")
    run = tmp_path / "run"
    common = ["--data", str(data), "--teacher", str(teacher), "--out", str(run)]

    log = _distill(*common, "--max-epochs", "1")
    # The teacher's outputs: computed once, then read by the other process.
    assert log.count("teacher outputs: 16 computed") == 1 and log.count("teacher outputs: read 16") == 1
    # One process writes the run: one sitting, one TensorBoard file, one "best epoch" line, whole files.
    assert log.count("best epoch 1") == 1
    assert len((run / "sittings.jsonl").read_text().splitlines()) == 1
    assert len(list((run / "tb").glob("events.*"))) == 1
    for name in ("model.safetensors", "model.json", "metrics.csv", "curves.png", "epochs.md", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    _, meta = load_weights(run / "model.safetensors")
    stage = meta["stages"][-1]
    assert stage["epochs"] == 1 and stage["sittings"][0]["command"].startswith("sharpkd distill")
    # An epoch is --epoch-size samples in all (32): 4 steps of 4 on each of the 2 processes.
    assert torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 4

    log = _distill(*common, "--max-epochs", "2", "--resume")
    assert log.count("teacher outputs: read 16") == 2 and "computed" not in log
    _, meta = load_weights(run / "model.safetensors")
    stage = meta["stages"][-1]
    assert stage["epochs"] == 2 and [h["epochs"] for h in stage["sittings"]] == ["1-1", "2-2"]
    assert torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 8
    assert len((run / "sittings.jsonl").read_text().splitlines()) == 2 and (run / "logs_resumed1").is_dir()
    assert len(list((run / "tb").glob("events.*"))) == 2
    assert [json.loads(line)["log"] for line in (run / "sittings.jsonl").read_text().splitlines()] == \
        ["logs", "logs_resumed1"]
