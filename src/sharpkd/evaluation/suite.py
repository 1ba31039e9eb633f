"""The benchmark suite: does a model help, family by family?

Fixed, seeded pairs from the validation split of a data root, in families that each isolate one real
condition of a video call (the `seed` blur, camera shake with sensor noise, a low-bandwidth transmission, the
whole `call` mixture, and a good frame), on square crops; and whole call-sized frames (`call@1280x720`: the
centred 16:9 view of each validation portrait at least that large, background included, scaled down to the
frame and put through a family), on the first data set
(its faces). Every model is scored against the input and an unsharp mask, with a 95% bootstrap interval over
the pairs for each difference. Writes `suite.md`, `suite.json` (with every pair's scores, for paired tests and
breakdowns) and one picture grid per family.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import scipy.stats
import torch

from ..data.datasets import FixedPairs, load_split_images, to_tensor
from ..data.io import to_float, to_uint8
from ..data.degradations import build_degradation
from ..errors import SharpkdError
from ..metrics import mae, psnr, ssim
from ..models import SelfEnsemble, count_parameters, load_weights
from .baselines import unsharp_mask

log = logging.getLogger("sharpkd")

CROP_FAMILIES = ("seed", "shake-noise", "low-bandwidth", "call", "clean")
FRAME_FAMILIES = ("call@640x360", "clean@640x360", "call@1280x720", "clean@1280x720")
FAMILIES = CROP_FAMILIES + FRAME_FAMILIES
INPUT, UNSHARP = "input", "unsharp mask"
METRICS = ("ssim", "psnr", "mae")


def parse_family(spec: str) -> tuple[str, tuple[int, int] | None]:
    """`call` -> ("call", None): square crops; `call@1280x720` -> ("call", (1280, 720)): whole frames."""
    preset, _, size = spec.partition("@")
    if not size:
        return preset, None
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        w = h = 0
    if not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise SharpkdError(f"family {spec!r}: the frame size is WxH, each side 16-4096 (e.g. call@1280x720)")
    return preset, (w, h)


def _view(shape: tuple[int, ...], size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """(y, x, h, w) of the largest centred view of an image of `shape` with the aspect of `size` (w, h); None where
    it is smaller than `size`."""
    (w, h), (ih, iw) = size, shape[:2]
    cw, ch = (iw, round(iw * h / w)) if iw * h <= ih * w else (round(ih * w / h), ih)
    return ((ih - ch) // 2, (iw - cw) // 2, ch, cw) if cw >= w and ch >= h else None


def frame_view(img: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    """The largest centred view of `img` with the aspect of `size` (w, h), scaled down to it: a call-sized frame
    of a photo, its background included. None where the view is smaller than the frame: an enlarged photo is
    soft, and a model that sharpens it would be scored against a soft original."""
    if not (v := _view(img.shape, size)):
        return None
    (y, x, ch, cw), (w, h) = v, size
    view = img[y:y + ch, x:x + cw]
    return cv2.resize(view, (w, h), interpolation=cv2.INTER_AREA) if (cw, ch) != (w, h) else view


def fixed_frames(images: list[np.ndarray], preset: str, size: tuple[int, int], count: int,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(blurry, sharp): one frame per image at least as large as the frame (at most `count`), each through its own
    seeded degradation."""
    pipeline = build_degradation(preset)
    frames = [f for f in (frame_view(img, size) for img in images) if f is not None][:count]
    if not frames:
        raise SharpkdError(f"no validation image is as large as a {size[0]}x{size[1]} frame")
    sharp = to_tensor(np.stack(frames))
    blurry = torch.cat([pipeline.apply(sharp[i:i + 1], [pipeline.sample(np.random.default_rng([seed, i]))])
                        for i in range(len(sharp))])
    return to_float(to_uint8(blurry)), sharp


@dataclass
class SuiteOptions:
    data: Path                                   # a data root: its faces/ folder (if any) and the whole root
    models: list[tuple[str, str]]                # (name, shipped name or .safetensors path)
    families: tuple[str, ...] = FAMILIES
    count: int = 800                             # pairs per family and data set
    size: int = 128
    seed: int = 0
    compare: list[tuple[str, str]] = field(default_factory=list)  # extra paired differences A - B
    self_ensemble: int = 1
    grid_samples: int = 4


def datasets(root: Path) -> list[tuple[str, Path]]:
    """`faces` (root/faces, when there is one) and `all` (the whole root: faces and natural scenes)."""
    root = Path(root)
    if not root.is_dir():
        raise SharpkdError(f"{root}: not a folder")
    return ([("faces", root / "faces")] if (root / "faces").is_dir() else []) + [("all", root)]


def load_models(specs: list[tuple[str, str]], self_ensemble: int = 1) -> dict[str, torch.nn.Module]:
    """Every model, loaded before any work starts (a missing one is a one-line error)."""
    models = {}
    for name, source in specs:
        model, _ = load_weights(source)
        model = model.float().eval().to(memory_format=torch.channels_last)
        models[name] = SelfEnsemble(model, self_ensemble) if self_ensemble > 1 else model
    return models


@torch.inference_mode()
def _run(model, x: torch.Tensor, batch: int = 64) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch].contiguous(memory_format=torch.channels_last)).float().clamp(0, 1)
                      for i in range(0, len(x), batch)])


def per_pair(out: torch.Tensor, sharp: torch.Tensor, batch: int = 64) -> dict[str, np.ndarray]:
    """SSIM, PSNR and MAE of every pair (in chunks: SSIM's maps for many pairs at once take GBs)."""
    return {name: torch.cat([f(out[i:i + batch], sharp[i:i + batch], reduction=None)
                             for i in range(0, len(out), batch)]).double().numpy()
            for name, f in (("ssim", ssim), ("psnr", psnr), ("mae", mae))}


def difference(a: np.ndarray, b: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict:
    """Mean of a - b over the same pairs with a 95% bootstrap interval (percentile, over the pairs)."""
    d = a - b
    if len(d) < 2 or np.allclose(d, d[0]):
        return {"mean": float(d.mean()), "ci95": [float(d.mean())] * 2}
    ci = scipy.stats.bootstrap((d,), np.mean, n_resamples=resamples, method="percentile", vectorized=True,
                               random_state=np.random.default_rng(seed)).confidence_interval
    return {"mean": float(d.mean()), "ci95": [float(ci.low), float(ci.high)]}


def run_family(images: list[np.ndarray], family: str, models: dict, opts: SuiteOptions) -> dict:
    preset, frame = parse_family(family)
    if frame:
        blurry, sharp = fixed_frames(images, preset, frame, opts.count, opts.seed)
    else:
        pairs = FixedPairs(images, build_degradation(preset), count=opts.count, size=opts.size, seed=opts.seed)
        blurry, sharp = pairs.blurry, pairs.sharp
    batch = max(1, 64 * 128 * 128 // (blurry.shape[-1] * blurry.shape[-2]))  # whole frames: one at a time
    n = opts.grid_samples if not frame else min(2, opts.grid_samples)
    samples, scores = {"ground truth": sharp[:n]}, {}
    for name, run in [(INPUT, lambda x: x), (UNSHARP, unsharp_mask)] + [
            (name, lambda x, m=model: _run(m, x, batch)) for name, model in models.items()]:
        out = torch.cat([run(blurry[i:i + batch]) for i in range(0, len(blurry), batch)])
        scores[name], samples[name] = per_pair(out, sharp, batch), out[:n]
    rows = {name: {m: float(v[m].mean()) for m in METRICS} for name, v in scores.items()}
    for name in scores:
        if name != INPUT:
            rows[name]["vs_input"] = {m: difference(scores[name][m], scores[INPUT][m]) for m in ("ssim", "psnr")}
    comparisons = [{"a": a, "b": b, **{m: difference(scores[a][m], scores[b][m]) for m in ("ssim", "psnr")}}
                   for a, b in opts.compare if a in scores and b in scores]
    return {"pairs": len(sharp), "rows": rows, "comparisons": comparisons,
            "per_pair": {name: {m: [round(float(v), 6) for v in s[m]] for m in METRICS} for name, s in scores.items()},
            "_sample": {name: samples[name] for name in [*scores, "ground truth"]}}


def run_suite(opts: SuiteOptions, progress=None) -> dict:
    """Every family on every data set of `opts.data`; returns the results (pictures under `_samples`)."""
    for f in opts.families:
        build_degradation(parse_family(f)[0])  # an unknown family fails before any work
    models = load_models(opts.models, opts.self_ensemble)
    result = {"families": list(opts.families), "models": [n for n, _ in opts.models], "count": opts.count,
              "size": opts.size, "seed": opts.seed, "self_ensemble": opts.self_ensemble, "datasets": {},
              "_samples": {}}
    for k, (ds_name, folder) in enumerate(datasets(opts.data)):
        families = [f for f in opts.families if k == 0 or not parse_family(f)[1]]  # whole frames: the first set
        if not families:
            continue
        frames = [parse_family(f)[1] for f in families if parse_family(f)[1]]
        images = load_split_images(folder, "val", seed=opts.seed)
        full = load_split_images(folder, "val", seed=opts.seed, max_side=2 * max(w for w, _ in frames)) if frames \
            else images
        entry = {"folder": folder.name if ds_name == "faces" else ".", "val_images": len(images), "families": {}}
        for size in {f for f in frames if not any(_view(img.shape, f) for img in full)}:
            log.warning("%s: no validation image is as large as a %dx%d frame: its families are left out",
                        folder, *size)
            families = [f for f in families if parse_family(f)[1] != size]
        for family in families:
            fam = run_family(full if parse_family(family)[1] else images, family, models, opts)
            result["_samples"][(ds_name, family)] = fam.pop("_sample")
            entry["families"][family] = fam
            if progress:
                progress(ds_name, family, fam)
        result["datasets"][ds_name] = entry
    result["parameters"] = {name: count_parameters(m) for name, m in models.items()}
    return result


def helps_everywhere(result: dict, name: str) -> bool:
    """Above the input in SSIM and PSNR on every family of every data set."""
    return all(f["rows"][name]["ssim"] > f["rows"][INPUT]["ssim"] and f["rows"][name]["psnr"] > f["rows"][INPUT]["psnr"]
               for ds in result["datasets"].values() for f in ds["families"].values())


def _ci(d: dict, digits: int) -> str:
    return f"{d['mean']:+.{digits}f} ({d['ci95'][0]:+.{digits}f} to {d['ci95'][1]:+.{digits}f})"


def suite_markdown(result: dict) -> str:
    methods = [INPUT, UNSHARP, *result["models"]]
    lines = ["# Benchmark suite\n",
             f"{result['count']} fixed {result['size']}x{result['size']} crops per family and data set, and for the "
             f"`FAMILY@WxH` families (first data set) one whole frame per image at least that large, scaled down, "
             f"from the validation split (seed "
             f"{result['seed']})"
             + (f"; every model run as the mean of {result['self_ensemble']} passes" if result["self_ensemble"] > 1
                else "") + ". Cells: SSIM / PSNR (dB). Families: "
             + ", ".join(f"`{f}`" for f in result["families"]) + ".\n"]
    for ds_name, ds in result["datasets"].items():
        fams = list(ds["families"])
        lines += [f"\n## {ds_name} ({ds['val_images']} validation images)\n",
                  "| method | " + " | ".join(fams) + " | above the input everywhere |",
                  "|---|" + "---|" * (len(fams) + 1)]
        for m in methods:
            cells = [f"{ds['families'][f]['rows'][m]['ssim']:.4f} / {ds['families'][f]['rows'][m]['psnr']:.2f}"
                     for f in fams]
            above = "" if m == INPUT else ("yes" if all(
                ds["families"][f]["rows"][m]["ssim"] > ds["families"][f]["rows"][INPUT]["ssim"]
                and ds["families"][f]["rows"][m]["psnr"] > ds["families"][f]["rows"][INPUT]["psnr"] for f in fams)
                else "no")
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {above} |")
        lines += ["\nDifference from the input, SSIM and PSNR (dB), with 95% bootstrap intervals over the pairs:\n",
                  "| method | " + " | ".join(fams) + " |", "|---|" + "---|" * len(fams)]
        for m in methods[1:]:
            cells = [f"{_ci(ds['families'][f]['rows'][m]['vs_input']['ssim'], 4)}<br>"
                     f"{_ci(ds['families'][f]['rows'][m]['vs_input']['psnr'], 2)} dB" for f in fams]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        for f in fams:
            for c in ds["families"][f]["comparisons"]:
                lines.append(f"\n`{f}`: {c['a']} minus {c['b']}: SSIM {_ci(c['ssim'], 4)}, PSNR {_ci(c['psnr'], 3)} dB.")
    if result.get("parameters"):
        lines.append("\nParameters: " + ", ".join(f"{k} {v:,}" for k, v in result["parameters"].items()) + ".")
    lines.append("\nMetrics: SSIM (11x11 Gaussian window, sigma 1.5, 5-px border left out), PSNR and MAE on [0, 1], "
                 "fp32.\n")
    return "\n".join(lines)


def save_family_grid(samples: dict[str, torch.Tensor], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = list(samples)
    n = len(samples[cols[0]])
    fig, axes = plt.subplots(n, len(cols), figsize=(2.0 * len(cols), 2.0 * n + 0.4), squeeze=False)
    gt = samples["ground truth"]
    for r in range(n):
        for c, name in enumerate(cols):
            ax = axes[r][c]
            ax.imshow(samples[name][r].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
            if name != "ground truth":
                ax.set_xlabel(f"{psnr(samples[name][r:r + 1], gt[r:r + 1]).item():.1f} dB", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_suite(result: dict, out: Path) -> list[Path]:
    """suite.md, suite.json and grid_<dataset>_<family>.png under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "suite.md", out / "suite.json"]
    written[0].write_text(suite_markdown(result))
    written[1].write_text(json.dumps({k: v for k, v in result.items() if not k.startswith("_")}, indent=2))
    for (ds_name, family), samples in result["_samples"].items():
        path = out / f"grid_{ds_name}_{family}.png"
        save_family_grid(samples, path, f"{family} on {ds_name} (PSNR under each picture)")
        written.append(path)
    return written
