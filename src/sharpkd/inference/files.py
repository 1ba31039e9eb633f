"""`sharpkd sharpen`: image files and folders (recursive) at full resolution, one PNG out per image in."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..data.io import is_image_file, read_image, write_image
from ..errors import BadImageError, SharpkdError
from ..fileio import remove_stale_temps
from .sharpener import Sharpener

log = logging.getLogger("sharpkd")


@dataclass
class Job:
    src: Path
    dst: Path


@dataclass
class Result:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_output_folder(outdir: str | os.PathLike) -> Path:
    """`outdir` exists as a folder or can be made one: else a one-line error, before any work."""
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise SharpkdError(f"-o {outdir}: exists and is not a folder (sharpen writes its images into a folder)")
    parent = outdir
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise SharpkdError(f"-o {outdir}: cannot make this folder, {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SharpkdError(f"-o {outdir}: {parent} is not writable")
    return outdir


def plan(inputs: list[str | os.PathLike], outdir: str | os.PathLike, overwrite: bool = False) -> list[Job]:
    """Map inputs to outputs: a file goes to OUTDIR/<stem>.png; a folder's images (recursive; hidden files, and
    OUTDIR where it lies inside the folder, left out) to OUTDIR/<path relative to the folder, stem>.png.
    Everything is checked before any image is read: missing inputs, a folder without images, an OUTDIR that cannot
    be a folder, two inputs that would write the same output, and (unless `overwrite`) an output that exists
    already (one of the inputs, or any other file: the run replaces no file it did not write)."""
    outdir = check_output_folder(outdir)
    out_resolved = outdir.resolve()
    jobs: list[Job] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            inside = p.resolve() != out_resolved and out_resolved.is_relative_to(p.resolve())
            files = sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f) and
                           not any(part.startswith(".") for part in f.relative_to(p).parts) and
                           not (inside and f.resolve().is_relative_to(out_resolved)))
            if not files:
                raise SharpkdError(f"{p}: no image files in this folder")
            jobs += [Job(f, outdir / f.relative_to(p).with_suffix(".png")) for f in files]
        elif p.is_file():
            jobs.append(Job(p, outdir / (p.stem + ".png")))
        else:
            raise SharpkdError(f"{p}: no such file or folder")
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.dst in seen and seen[job.dst].resolve() != job.src.resolve():
            raise SharpkdError(f"{job.src} and {seen[job.dst]} would both be written to {job.dst}")
        seen[job.dst] = job.src
    if not overwrite:
        originals = {job.src.resolve() for job in jobs}
        clash = [job for job in jobs if job.dst.resolve() in originals]
        if clash:
            more = f" (and {len(clash) - 1} more)" if len(clash) > 1 else ""
            raise SharpkdError(f"{clash[0].dst} is an input{more}: writing there would replace the original; "
                               "choose another -o folder, or pass --overwrite to replace the originals")
        taken = [job.dst for job in jobs if os.path.lexists(job.dst)]
        if taken:
            more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
            raise SharpkdError(f"{taken[0]} exists{more}: sharpen replaces no file it did not write; choose another "
                               "-o folder, or pass --overwrite to replace it")
    return jobs


def timing_size(jobs: list[Job], most: int = 1280 * 720) -> tuple[int, int]:
    """(W, H) on which backend 'auto' times the backends: the first readable input's, scaled down to `most`
    pixels (a small image is timed small; a large one is timed no better for the cost)."""
    from PIL import Image

    for job in jobs:
        try:
            with Image.open(job.src) as im:
                w, h = im.size
        except (OSError, Image.DecompressionBombError):  # a bad file is reported when its turn comes
            continue
        scale = min(1.0, (most / (w * h)) ** 0.5)
        return max(1, int(w * scale)), max(1, int(h * scale))
    return 1280, 720


def sharpen_files(sharpener: Sharpener, inputs: list[str | os.PathLike], outdir: str | os.PathLike,
                  progress: bool | None = None, on_error=None, overwrite: bool = False) -> Result:
    """Sharpen every image; a bad one is reported (`on_error(path, message)`) and the others still go through.
    Each output is written atomically, so an interrupted run leaves no half-written file, and what a killed run
    left beside this run's outputs (hidden temporary files) is removed first. An output that exists already is
    refused before any work unless `overwrite` (`plan`)."""
    jobs = plan(inputs, outdir, overwrite=overwrite)
    remove_stale_temps(job.dst for job in jobs)
    result = Result()
    if progress is None:
        progress = len(jobs) > 1
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="img", desc="sharpen", dynamic_ncols=True, leave=True)
    try:
        for job in jobs:
            try:
                img = read_image(job.src)
                if img.high_bit_depth:
                    msg = f"{job.src}: 16-bit input, output is 8-bit"
                    result.warnings.append(msg)
                    log.warning(msg)
                out = sharpener.sharpen(img.rgb)
                write_image(job.dst, out, alpha=img.alpha, grayscale=img.grayscale)
                result.written.append(job.dst)
            except (BadImageError, OSError, MemoryError) as exc:
                msg = str(exc) if isinstance(exc, BadImageError) else f"{job.src}: {type(exc).__name__}: {exc}"
                result.failed.append((job.src, msg))
                if on_error:
                    _report(bar, on_error, job.src, msg)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return result


def _report(bar, on_error, path, msg) -> None:
    """Print an error above the progress bar rather than through it."""
    if bar is None:
        on_error(path, msg)
        return
    from tqdm import tqdm

    with tqdm.external_write_mode():
        on_error(path, msg)
