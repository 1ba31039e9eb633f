"""Helpers for the tests: the shared real images (skipped cleanly where absent) and tiny generated data."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data() -> Path:
    """`SHARPKD_SHARED_DATA`, or ../shared/data beside the repository; skips the test where it is absent."""
    path = Path(os.environ.get("SHARPKD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not (path / "faces").is_dir():
        pytest.skip(f"shared data not found at {path} (set SHARPKD_SHARED_DATA)")
    return path


def real_faces(n: int = 4, side: int = 128) -> list[np.ndarray]:
    """`n` real CelebA-HQ faces, downscaled so the short side is `side` (CelebA-HQ is soft at full size)."""
    from sharpkd.data.datasets import _fit
    from sharpkd.data.io import read_rgb

    files = sorted((shared_data() / "faces" / "celeba_hq").glob("*.jpg"))[:n]
    return [_fit(read_rgb(f), side) for f in files]


def make_image_folder(root: Path, n: int = 16, size: int = 48, seed: int = 0) -> Path:
    """`n` small textured RGB PNGs (random shapes on gradients: real edges for blur to remove)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        img = np.stack([(xx * rng.uniform(1, 5) + yy * rng.uniform(1, 5)) % 256 for _ in range(3)], -1)
        for _ in range(6):
            y0, x0 = rng.integers(0, size - 8, 2)
            h, w = rng.integers(4, size // 2, 2)
            img[y0:y0 + h, x0:x0 + w] = rng.integers(0, 256, 3)
        Image.fromarray(img.astype(np.uint8)).save(root / f"img{i:02d}.png")
    return root


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
