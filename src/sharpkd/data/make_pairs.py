"""`sharpkd make-pairs`: write a fixed blurry/sharp dataset to disk with a manifest of every degradation."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .datasets import FixedPairs, load_images, split_folder
from .degradations import build_degradation
from .io import write_image
from ..errors import SharpkdError


def make_pairs(src: str | os.PathLike, out: str | os.PathLike, count: int = 8000, preset: str = "seed",
               size: int = 128, seed: int = 0, val_fraction: float = 0.2, max_side: int = 256,
               whole_image: bool = False, progress=None) -> dict:
    """Write `OUT/{train,val}/{blur,sharp}/NNNNN.png` and `OUT/manifest.json`; returns the manifest."""
    src, out = Path(src), Path(out)
    pipeline = build_degradation(preset)
    files = split_folder(src, seed, val_fraction)
    n_val = round(count * val_fraction)
    plan = {"train": count - n_val, "val": n_val}
    manifest = {"source": str(src), "preset": preset, "size": size, "seed": seed, "count": count,
                "whole_image": whole_image, "layout": files.layout, "pairs": []}
    for split_i, (split, n) in enumerate(plan.items()):
        paths = files.files(split)
        images = load_images(paths, max_side, what=f"{split} images") if paths else []
        if n and not images:
            raise SharpkdError(f"{src}: no readable image in the {split} split")
        names = [str(p.relative_to(src)) for p in paths]
        manifest[f"{split}_images"] = len(images)
        for start in range(0, n, 512):
            chunk = FixedPairs(images, pipeline, count=min(512, n - start), size=size, seed=seed + split_i,
                               names=names, whole_image=whole_image, start=start)
            for j, rec in enumerate(chunk.records):
                name = f"{start + j:05d}.png"
                for kind, t in (("blur", chunk.blurry[j]), ("sharp", chunk.sharp[j])):
                    arr = (t.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
                    write_image(out / split / kind / name, arr)
                manifest["pairs"].append({"split": split, "file": name, "source": rec.source, "ops": rec.ops})
            if progress:
                progress(min(n, start + 512), n, split)
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / "manifest.json")
    return manifest
