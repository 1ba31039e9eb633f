"""The web app's bundled examples: scikit-image's sample photos degraded as the models meet them, by the project's
own degradations with fixed seeds, written as small JPEGs into the package (src/sharpkd/app/examples/).

    python scripts/make_examples.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image

from sharpkd.data.degradations import build_degradation
from sharpkd.data.io import to_float, to_uint8

OUT = Path(__file__).resolve().parents[1] / "src" / "sharpkd" / "app" / "examples"
# file stem (the app's label): sample photo, degradation preset, seed (a draw with blur and noise; call: and a codec)
EXAMPLES = {"video-call-frame": ("astronaut", "call", 10), "camera-shake": ("chelsea", "shake-noise", 1)}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for stem, (photo, preset, seed) in EXAMPLES.items():
        sharp = to_float(torch.from_numpy(getattr(skimage.data, photo)()[..., :3]).permute(2, 0, 1)[None])
        degraded, ops = build_degradation(preset)(sharp, np.random.default_rng(seed))
        path = OUT / f"{stem}.jpg"
        Image.fromarray(to_uint8(degraded[0].permute(1, 2, 0)).numpy()).save(path, quality=90)
        print(f"{path}: {photo}, {', '.join(o['op'] for o in ops[0])}, {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
