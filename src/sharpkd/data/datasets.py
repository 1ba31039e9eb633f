"""Image sources (any folder, the CelebA layout, paired blur/sharp folders), the seeded split, and the
torch datasets that turn sharp images into training crops and fixed validation pairs."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import BadImageError, SharpkdError
from .degradations import Pipeline
from .io import is_image_file, read_rgb, to_float, to_uint8

log = logging.getLogger("sharpkd")

CELEBA_DIR, CELEBA_PARTITION = "img_align_celeba", "list_eval_partition.txt"
CELEBA_SPLITS = {"0": "train", "1": "val", "2": "test"}


def list_images(root: str | os.PathLike) -> list[Path]:
    """Image files under `root`, recursively, in a stable order (hidden files and folders ignored)."""
    root = Path(root)
    if not root.is_dir():
        raise SharpkdError(f"{root}: not a folder")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".") and is_image_file(f)]
    return found


def split_of(relpath: str, seed: int = 0, val_fraction: float = 0.2) -> str:
    """'train' or 'val' from a hash of the seed and the file's name: adding files moves no other file, and
    a file lands in the same split whether the data commands are pointed at its folder or at a parent."""
    digest = hashlib.sha256(f"{seed}:{Path(relpath).name}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def read_celeba_partition(path: str | os.PathLike) -> dict[str, str]:
    """`list_eval_partition.txt` ("000001.jpg 0" per line) as {file name: 'train'|'val'|'test'}."""
    parts = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or fields[1] not in CELEBA_SPLITS:
            raise SharpkdError(f"{path}:{n}: expected '<file> <0|1|2>', got {line.strip()!r}")
        parts[fields[0]] = CELEBA_SPLITS[fields[1]]
    return parts


def _celeba_layout(root: Path) -> tuple[Path, Path] | None:
    for images, partition in ((root / CELEBA_DIR, root / CELEBA_PARTITION),
                              (root, root.parent / CELEBA_PARTITION)):
        if images.is_dir() and images.name == CELEBA_DIR and partition.is_file():
            return images, partition
    return None


@dataclass
class SplitFiles:
    """The image files of one folder, assigned to splits."""

    root: Path
    splits: dict[str, list[Path]] = field(default_factory=dict)
    layout: str = "folder"

    def files(self, split: str) -> list[Path]:
        if split == "all":
            return sorted(p for files in self.splits.values() for p in files)
        return self.splits.get(split, [])


def split_folder(root: str | os.PathLike, seed: int = 0, val_fraction: float = 0.2) -> SplitFiles:
    """Assign the images under `root` to train/val (and test, for CelebA's official partition)."""
    root = Path(root)
    celeba = _celeba_layout(root)
    if celeba:
        images, partition = celeba
        parts = read_celeba_partition(partition)
        out = SplitFiles(root, {"train": [], "val": [], "test": []}, layout="celeba")
        for p in list_images(images):
            if p.name in parts:
                out.splits[parts[p.name]].append(p)
        return out
    out = SplitFiles(root, {"train": [], "val": []})
    for p in list_images(root):
        out.splits[split_of(str(p.relative_to(root)), seed, val_fraction)].append(p)
    return out


def _fit(img: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downscale (area) so the shorter side is at most `max_side`; small images are kept as they are."""
    h, w = img.shape[:2]
    if not max_side or min(h, w) <= max_side:
        return img
    s = max_side / min(h, w)
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def load_images(paths: list[Path], max_side: int | None = 256, what: str = "images") -> list[np.ndarray]:
    """Decode each file once (downscaled to `max_side`), skipping unreadable ones with a warning each."""
    images, bad = [], 0
    for p in paths:
        try:
            images.append(_fit(read_rgb(p), max_side))
        except BadImageError as exc:
            log.warning("skipping %s", exc)
            bad += 1
    if bad:
        log.warning("skipped %d unreadable file(s) of %d %s", bad, len(paths), what)
    return images


def load_split_images(root: str | os.PathLike, split: str, seed: int = 0, max_side: int | None = 256,
                      limit: int | None = None) -> list[np.ndarray]:
    """The decoded images of one split; a one-line error when none can be read."""
    files = split_folder(root, seed).files(split)[:limit]
    if not files:
        raise SharpkdError(f"{root}: no image files in the {split} split (looked for "
                           f"{', '.join(('jpg', 'jpeg', 'png', 'webp', 'bmp', 'tif'))})")
    images = load_images(files, max_side, what=f"{split} images in {root}")
    if not images:
        raise SharpkdError(f"{root}: none of the {len(files)} image file(s) in the {split} split could be read")
    return images


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator, scale=(0.35, 1.0),
                flip: bool = True) -> np.ndarray:
    """A random square of `scale` x the shorter side, resized to size x size, maybe mirrored."""
    h, w = img.shape[:2]
    side = max(1, min(h, w, round(rng.uniform(*scale) * min(h, w))))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = img[y:y + side, x:x + side]
    if side != size:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)
    if flip and rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The seed recipe's whole-image mode: the centred square, resized to size x size."""
    h, w = img.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    crop = img[y:y + s, x:x + s]
    return crop if s == size else cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_CUBIC)


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    """uint8 (B,)H,W,3 -> float (B,)3,H,W in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(batch))
    return to_float(t.permute(0, 3, 1, 2) if t.ndim == 4 else t.permute(2, 0, 1))


class SharpCrops(Dataset):
    """`epoch_size` sharp crops drawn afresh each time (random image, random-scale crop, flip).

    Returns uint8 HxWx3 arrays; `DegradeCollate` blurs the batch, so every epoch sees new degradations."""

    def __init__(self, images: list[np.ndarray], size: int = 128, epoch_size: int = 6400,
                 scale=(0.35, 1.0), whole_image: bool = False):
        if not images:
            raise SharpkdError("no images to draw training crops from")
        self.images, self.size, self.epoch_size, self.scale, self.whole = images, size, epoch_size, scale, whole_image

    def __len__(self):
        return self.epoch_size

    def __getitem__(self, i):
        rng = np.random.default_rng(torch.randint(2**62, (1,)).item())
        img = self.images[rng.integers(len(self.images))]
        if self.whole:
            crop = center_crop(img, self.size)
            return np.ascontiguousarray(crop[:, ::-1]) if rng.random() < 0.5 else crop
        return random_crop(img, self.size, rng, self.scale)


class DegradeCollate:
    """Collate uint8 crops into a batch and degrade it in one go: returns (blurry, sharp) float tensors."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    def __call__(self, crops):
        sharp = to_tensor(np.stack(crops))
        rng = np.random.default_rng(torch.randint(2**62, (1,)).item())
        blurry, _ = self.pipeline(sharp, rng)
        return blurry, sharp


@dataclass
class PairRecord:
    source: str
    ops: list[dict]


class FixedPairs(Dataset):
    """`count` blurry/sharp pairs fixed by `seed`: pair i always comes from the same image, crop and
    degradation, so epochs, runs and models compare on the same data."""

    def __init__(self, images: list[np.ndarray], pipeline: Pipeline, count: int = 1600, size: int = 128,
                 seed: int = 0, names: list[str] | None = None, whole_image: bool = False, batch: int = 64,
                 start: int = 0):
        if not images:
            raise SharpkdError("no images to make pairs from")
        sharp, self.records = [], []
        for i in range(start, start + count):
            rng = np.random.default_rng([seed, i])
            k = i % len(images)
            img = images[k]
            sharp.append(center_crop(img, size) if whole_image else random_crop(img, size, rng, flip=True))
            self.records.append(PairRecord(names[k] if names else str(k), pipeline.sample(rng)))
        self.sharp = to_tensor(np.stack(sharp))
        self.blurry = torch.cat([pipeline.apply(self.sharp[j:j + batch], [r.ops for r in self.records[j:j + batch]])
                                 for j in range(0, count, batch)])
        # Stored as 8-bit, as a pair written to disk would be: training, evaluation and files agree exactly.
        self.blurry = to_float(to_uint8(self.blurry))

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return self.blurry[i], self.sharp[i]


class PairTensors(Dataset):
    """Pairs held as uint8 (N, 3, H, W) tensors (a quarter of float32's memory), plus any extra targets of
    the same shape (a teacher's outputs); items come out as float in [0, 1]."""

    def __init__(self, *tensors: torch.Tensor):
        if not tensors or any(t.dtype != torch.uint8 or t.shape != tensors[0].shape for t in tensors):
            raise ValueError("PairTensors needs uint8 tensors of one shape")
        self.tensors = tensors

    def __len__(self):
        return len(self.tensors[0])

    def __getitem__(self, i):
        return tuple(to_float(t[i]) for t in self.tensors)


def fixed_pair_tensors(images: list[np.ndarray], pipeline: Pipeline, count: int, size: int = 128, seed: int = 0,
                       chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """`FixedPairs`' `count` seeded pairs as uint8 (blurry, sharp), made `chunk` at a time to bound memory."""
    blurry, sharp = [], []
    for start in range(0, count, chunk):
        part = FixedPairs(images, pipeline, count=min(chunk, count - start), size=size, seed=seed, start=start)
        blurry.append(to_uint8(part.blurry))
        sharp.append(to_uint8(part.sharp))
    return torch.cat(blurry), torch.cat(sharp)


def find_pair_folders(root: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Every `blur/` folder under `root` with a `sharp/` sibling (GoPro: `*/blur`, `*/sharp`); hidden folders (an
    unfinished make-pairs) are left out."""
    root = Path(root)
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if "blur" in dirnames and "sharp" in dirnames:
            found.append((Path(dirpath) / "blur", Path(dirpath) / "sharp"))
    return found


def check_manifest(root: str | os.PathLike) -> None:
    """A folder laid out as make-pairs writes one (`{train,val}/{blur,sharp}/`) is a dataset only with the
    manifest.json that make-pairs writes last, listing exactly its files: else a one-line error (an interrupted
    or mixed-up dataset is not read). Other paired folders (GoPro's `*/blur`, `*/sharp`) need no manifest."""
    root = Path(root)
    folders = [root / s / k for s in ("train", "val") for k in ("blur", "sharp")]
    if not any(f.is_dir() for f in folders):
        return
    manifest = root / "manifest.json"
    try:
        listed = [(p["split"], p["file"]) for p in json.loads(manifest.read_text())["pairs"]]
    except FileNotFoundError:
        raise SharpkdError(f"{root}: laid out as a make-pairs dataset but has no manifest.json (make-pairs writes "
                           "it last: an interrupted run?); make the dataset again") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SharpkdError(f"{manifest}: not a make-pairs manifest ({type(exc).__name__}: {exc})") from None
    for f in folders:
        found = {p.relative_to(f).as_posix() for p in list_images(f)} if f.is_dir() else set()
        if found != {name for split, name in listed if split == f.parent.name}:
            raise SharpkdError(f"{f}: its files are not the pairs that {manifest} lists (a dataset changed or mixed "
                               "with another after make-pairs); make the dataset again")


def paired_files(root: str | os.PathLike, split: str | None = None) -> list[tuple[Path, Path]]:
    """(blurry, sharp) file pairs matched by name under `root` (restricted to `root/split` if it exists), checked
    against its manifest where it is laid out as a make-pairs dataset (`check_manifest`)."""
    root = Path(root)
    check_manifest(root)
    if split and (root / split).is_dir():
        root = root / split
    pairs = []
    for blur_dir, sharp_dir in find_pair_folders(root):
        sharp = {p.relative_to(sharp_dir).with_suffix("").as_posix(): p for p in list_images(sharp_dir)}
        for b in list_images(blur_dir):
            key = b.relative_to(blur_dir).with_suffix("").as_posix()
            if key in sharp:
                pairs.append((b, sharp[key]))
    if not pairs:
        raise SharpkdError(f"{root}: no blur/ and sharp/ folders with matching file names")
    return pairs


class PairedFolder(Dataset):
    """Pairs read as they are from disk. With `crop`, aligned random crops of that size (training);
    without, whole images (evaluation; the default collate then needs equal sizes, or batch 1)."""

    def __init__(self, pairs: list[tuple[Path, Path]], crop: int | None = None, epoch_size: int | None = None):
        self.pairs, self.crop = [], crop
        bad = 0
        for b, s in pairs:
            try:
                bi, si = read_rgb(b), read_rgb(s)
            except BadImageError as exc:
                log.warning("skipping pair %s", exc)
                bad += 1
                continue
            if bi.shape != si.shape:
                log.warning("skipping pair %s: size %s differs from %s", b, bi.shape[:2], si.shape[:2])
                bad += 1
                continue
            self.pairs.append((bi, si))
        if bad:
            log.warning("skipped %d of %d pairs", bad, len(pairs))
        if not self.pairs:
            raise SharpkdError("no readable blurry/sharp pairs")
        self.epoch_size = epoch_size or len(self.pairs)

    def __len__(self):
        return self.epoch_size

    def __getitem__(self, i):
        b, s = self.pairs[i % len(self.pairs)]
        if self.crop:
            rng = np.random.default_rng(torch.randint(2**62, (1,)).item())
            h, w = b.shape[:2]
            c = min(self.crop, h, w)
            y, x = rng.integers(0, h - c + 1), rng.integers(0, w - c + 1)
            b, s = b[y:y + c, x:x + c], s[y:y + c, x:x + c]
            if rng.random() < 0.5:
                b, s = b[:, ::-1], s[:, ::-1]
        return to_tensor(b), to_tensor(s)
