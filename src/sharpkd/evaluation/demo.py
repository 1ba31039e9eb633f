"""`sharpkd demo`: blur a few bundled sample images, run teacher and student, print metrics, save a grid."""
from __future__ import annotations

import logging
import os

import numpy as np
import torch

from ..data.datasets import to_tensor
from ..data.degradations import build_degradation
from ..data.io import to_float, to_uint8, write_image
from ..metrics import quality
from ..models import count_parameters, describe_model, load_or_build, model_name

log = logging.getLogger("sharpkd")
SAMPLES = ("astronaut", "coffee", "chelsea")
COLUMNS = ("blurry", "teacher", "student", "sharp")
DEFAULT_OUT = "reports/demo.png"


def sample_images(names=SAMPLES) -> dict[str, np.ndarray]:
    """Sample photos bundled with scikit-image (no download)."""
    import skimage.data

    return {n: getattr(skimage.data, n)() for n in names}


def load_or_init(name: str, source: str | os.PathLike | None = None) -> tuple[torch.nn.Module, str]:
    """Weights from `source` (or the shipped ones); untrained weights, with a warning, when none exist."""
    model, _, trained = load_or_build(source or name)
    if not trained:
        log.warning("no shipped %s weights yet: using an untrained %s", name, name)
    return model, "trained" if trained else "untrained"


def labelled_row(tiles: list[np.ndarray], labels: tuple[str, ...], band: int = 32) -> np.ndarray:
    """uint8 HxWx3 tiles side by side under a white band that names each."""
    from PIL import Image, ImageDraw, ImageFont

    row = Image.new("RGB", (sum(t.shape[1] for t in tiles), band + max(t.shape[0] for t in tiles)), "white")
    draw, font, x = ImageDraw.Draw(row), ImageFont.load_default(size=band * 5 // 8), 0
    for tile, label in zip(tiles, labels):
        row.paste(Image.fromarray(tile), (x, band))
        draw.text((x + band // 4, band // 2), label, fill="black", font=font, anchor="lm")
        x += tile.shape[1]
    return np.asarray(row)


@torch.inference_mode()
def run_demo(out: str | os.PathLike = DEFAULT_OUT, preset: str = "seed", seed: int = 0,
             teacher: str | None = None, student: str | None = None) -> list[dict]:
    """Returns one row per (image, method) with SSIM/PSNR/MAE; writes the side-by-side picture to `out`, its
    columns named on it (blurry | teacher | student | sharp)."""
    pipeline = build_degradation(preset)
    models = {"teacher": load_or_init("teacher", teacher), "student": load_or_init("student", student)}
    rows, strips = [], []
    rng = np.random.default_rng(seed)
    for name, img in sample_images().items():
        sharp = to_tensor(img)[None]
        blurry, ops = pipeline(sharp, rng)
        blurry = to_float(to_uint8(blurry))  # 8-bit, as a camera delivers it
        outputs = {"blurry": blurry}
        for key, (model, state) in models.items():
            outputs[key] = model(blurry).float()
        for key, out_t in outputs.items():
            rows.append({"image": name, "method": key, **quality(out_t, sharp),
                         "weights": models[key][1] if key in models else "",
                         "degradation": ", ".join(o["op"] for o in ops[0])})
        strips.append(labelled_row([to_uint8(t[0].permute(1, 2, 0).numpy()) for t in (*outputs.values(), sharp)],
                                   COLUMNS))
    width = max(s.shape[1] for s in strips)
    write_image(out, np.concatenate([np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0)), constant_values=255)
                                     for s in strips]))
    sources = {"teacher": teacher or "teacher", "student": student or "student"}
    for key, (model, _) in models.items():
        for r in rows:
            if r["method"] == key:
                r["parameters"] = count_parameters(model)
                r["model"] = f"{describe_model(model_name(sources[key]), model)} on torch fp32"
    return rows
