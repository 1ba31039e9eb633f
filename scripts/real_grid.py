"""A picture grid of real blurry photos (no ground truth) through the given models: one row a photo, one column
a model, each cell the same crop at full resolution, so halos, amplified blocks and noise are visible.

    python scripts/real_grid.py --models teacher,student,student_lk --out docs/img/real_blurry.jpg
    python scripts/real_grid.py --models mine=runs/teacher/model.safetensors,teacher --photos 6

Reads `real_blurry/` beside the data root (SHARPKD_SHARED_DATA, default ../shared/data) or --folder.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from sharpkd import load
from sharpkd.data.io import read_rgb

# Photos with faces, text and fine texture, where over-sharpening shows first.
PHOTOS = ("mukta.jpg", "pietro.jpg", "singing.jpg", "text1.jpg", "night1.jpg", "car3.jpg", "book2.jpg",
          "Pantheon.jpg")


def crop_box(h: int, w: int, size: int) -> tuple[int, int]:
    """Top-left corner of a centred `size` square (the whole side where the photo is smaller)."""
    return max(0, (h - size) // 2), max(0, (w - size) // 2)


def main() -> int:
    root = Path(os.environ.get("SHARPKD_SHARED_DATA", "../shared/data"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="teacher,student,student_lk",
                    help="comma-separated shipped names or LABEL=weights.safetensors")
    ap.add_argument("--folder", type=Path, default=root.parent / "real_blurry")
    ap.add_argument("--photos", type=int, default=6, help="how many photos (from a fixed list, then by name)")
    ap.add_argument("--crop", type=int, default=256, help="side of the square crop shown, in pixels")
    ap.add_argument("--out", type=Path, default=Path("real_blurry.jpg"))
    args = ap.parse_args()

    if not args.folder.is_dir():
        raise SystemExit(f"error: no folder of real blurry photos at {args.folder} (give --folder)")
    found = sorted(p.name for p in args.folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    names = [n for n in PHOTOS if n in found] + [n for n in found if n not in PHOTOS]
    names = names[:args.photos]
    specs = [s.split("=", 1) if "=" in s else (s, s) for s in args.models.split(",") if s]
    sharpeners = {label: load(source, tile=0) for label, source in specs}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["input"] + list(sharpeners)
    fig, axes = plt.subplots(len(names), len(cols), figsize=(2.4 * len(cols), 2.4 * len(names) + 0.3),
                             squeeze=False)
    for r, name in enumerate(names):
        rgb = read_rgb(args.folder / name)
        y0, x0 = crop_box(*rgb.shape[:2], args.crop)
        # The model sees a margin around the crop, so the crop's edges are not the image border.
        m = 32
        sy0, sx0 = max(0, y0 - m), max(0, x0 - m)
        region = np.ascontiguousarray(rgb[sy0:y0 + args.crop + m, sx0:x0 + args.crop + m])
        cells = {"input": region}
        cells.update({label: s.sharpen(region) for label, s in sharpeners.items()})
        for c, label in enumerate(cols):
            ax = axes[r][c]
            ax.imshow(cells[label][y0 - sy0:y0 - sy0 + args.crop, x0 - sx0:x0 - sx0 + args.crop])
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=9)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(f"real blurry photos ({args.folder.name}/, no ground truth), {args.crop}x{args.crop} crops",
                 fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100, pil_kwargs={"quality": 88})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
