"""Shared fixtures: tiny generated training data, untrained weights, and the `sharpkd_app_*` fixtures of the
web-app tests (test_app.py, test_browser.py): one real `sharpkd serve` process per test session, on a free
port, with small weights made here."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from util import stop_process  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARPKD_APP_MAX_MEGAPIXELS = 2.0  # small, so that the "too large" upload test stays cheap
SHARPKD_APP_START_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def sharpkd_app_weights(tmp_path_factory) -> dict[str, Path]:
    """Untrained weights of the shipped teacher's and student's architectures (from their sidecars) with JSON
    sidecars of their own (the shipped models' benchmark figures among them), and a training-curves PNG."""
    import torch
    from PIL import Image, ImageDraw

    from sharpkd.models import build_model, save_weights
    from sharpkd.models.weights import read_sidecar

    folder = tmp_path_factory.mktemp("app-weights")
    paths = {}
    for name in ("teacher", "student"):
        shipped = read_sidecar(name)
        torch.manual_seed(0)
        paths[name] = save_weights(
            build_model(shipped["arch"], **shipped["arch_kwargs"]), folder / f"{name}.safetensors",
            data={"dataset": "celeba_hq", "pairs": 64, "preset": "seed"}, suite=shipped["suite"])
    curves = Image.new("RGB", (480, 160), "white")
    draw = ImageDraw.Draw(curves)
    draw.line([(20, 20), (120, 90), (240, 120), (460, 135)], fill="blue", width=3)
    draw.text((200, 20), "test training curves", fill="black")
    curves.save(folder / "student_curves.png")
    return paths


@pytest.fixture(scope="session")
def sharpkd_app_server(sharpkd_app_weights, tmp_path_factory):
    """`sharpkd serve` in a subprocess; yields its URL (and stops it after the session)."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("app-server") / "serve.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "sharpkd.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--teacher", str(sharpkd_app_weights["teacher"]), "--student", str(sharpkd_app_weights["student"]),
           "--max-megapixels", str(SHARPKD_APP_MAX_MEGAPIXELS), "--threads", "1"]
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + SHARPKD_APP_START_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sharpkd serve exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(url + "config", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"sharpkd serve did not start in {SHARPKD_APP_START_TIMEOUT_S}s:\n"
                                   f"{log_path.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        stop_process(proc, 15)
        log.close()


@pytest.fixture(scope="session")
def sharpkd_app_face(tmp_path_factory) -> Path:
    """A real photo: a CelebA-HQ face from the shared data (SHARPKD_SHARED_DATA), else scikit-image's astronaut."""
    shared = Path(os.environ.get("SHARPKD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    faces = sorted((shared / "faces" / "celeba_hq").glob("*.jpg"))
    if faces:
        return faces[0]
    import skimage.data
    from PIL import Image

    path = tmp_path_factory.mktemp("app-face") / "astronaut.png"
    Image.fromarray(np.ascontiguousarray(skimage.data.astronaut())).save(path)
    return path


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> Path:
    """Untrained weights (seeded) of the seed student's architecture, `ds_unet` (a sigmoid output), saved with a
    sidecar: for inference, export and video tests."""
    import torch

    from sharpkd.models import build_model, save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "student.safetensors"
    save_weights(build_model("ds_unet"), path)
    return path


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """16 small generated images (48 px, both splits): training runs of seconds."""
    from util import make_image_folder

    return make_image_folder(tmp_path_factory.mktemp("tiny"), n=16, size=48)
