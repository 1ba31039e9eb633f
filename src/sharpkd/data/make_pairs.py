"""`sharpkd make-pairs`: write a fixed blurry/sharp dataset to disk with a manifest of every degradation."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .datasets import FixedPairs, load_images, split_folder
from .degradations import build_degradation
from .io import to_uint8, write_image
from ..errors import SharpkdError
from ..fileio import atomic_folder, remove_stale_temps, write_text


def make_pairs(src: str | os.PathLike, out: str | os.PathLike, count: int = 8000, preset: str = "seed",
               size: int = 128, seed: int = 0, val_fraction: float = 0.2, max_side: int = 256,
               whole_image: bool = False, progress=None, overwrite: bool = False) -> dict:
    """Write `OUT/{train,val}/{blur,sharp}/NNNNN.png` and `OUT/manifest.json`; returns the manifest.

    Both splits are read and checked before anything is written. The dataset is built in a hidden folder beside
    OUT and takes OUT's place when complete (its manifest written last), so OUT holds a whole dataset, the old
    one or the new, whatever stops the call (an error, Ctrl-C, a kill: what a killed call left is swept by the
    next). A dataset already at OUT is replaced only with `overwrite`; a folder of other files, never."""
    src, out = Path(src), Path(out)
    remove_stale_temps([out])
    if out.exists() and not out.is_dir():
        raise SharpkdError(f"{out}: exists and is not a folder")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    foreign = [name for name in held if name not in ("train", "val", "manifest.json")]
    if foreign:
        raise SharpkdError(f"{out}: holds {', '.join(foreign[:3])}, which make-pairs does not write: choose a new or "
                           "empty folder")
    if held and not overwrite:
        raise SharpkdError(f"{out}: holds a dataset; pass --overwrite to replace it, or choose another folder")
    pipeline = build_degradation(preset)
    files = split_folder(src, seed, val_fraction)
    n_val = round(count * val_fraction)
    plan = {"train": count - n_val, "val": n_val}
    manifest = {"source": str(src), "preset": preset, "size": size, "seed": seed, "count": count,
                "whole_image": whole_image, "layout": files.layout, "pairs": []}
    total = sum(len(files.files(split)) for split in plan)
    images, names = {}, {}
    for split, n in plan.items():
        paths = files.files(split)
        if n and not paths:
            raise SharpkdError(f"{src}: no image file in the {split} split ({total} image file(s) in all; the "
                               f"split puts about {val_fraction:.0%} of them in val): make-pairs needs images in "
                               "both train and val")
        images[split] = load_images(paths, max_side, what=f"{split} images") if paths else []
        if n and not images[split]:
            raise SharpkdError(f"{src}: none of the {len(paths)} image file(s) in the {split} split could be read")
        names[split] = [str(p.relative_to(src)) for p in paths]
        manifest[f"{split}_images"] = len(images[split])
    with atomic_folder(out) as tmp:
        for split_i, (split, n) in enumerate(plan.items()):
            for start in range(0, n, 512):
                chunk = FixedPairs(images[split], pipeline, count=min(512, n - start), size=size,
                                   seed=seed + split_i, names=names[split], whole_image=whole_image, start=start)
                for j, rec in enumerate(chunk.records):
                    name = f"{start + j:05d}.png"
                    for kind, t in (("blur", chunk.blurry[j]), ("sharp", chunk.sharp[j])):
                        write_image(tmp / split / kind / name, to_uint8(t).permute(1, 2, 0).numpy())
                    manifest["pairs"].append({"split": split, "file": name, "source": rec.source, "ops": rec.ops})
                if progress:
                    progress(min(n, start + 512), n, split)
        write_text(tmp / "manifest.json", json.dumps(manifest, indent=1))
    return manifest
