"""`sharpkd evaluate`: every method on the same validation pairs, with quality, size, MACs and CPU latency;
writes report.md, report.json and grid.png."""
from __future__ import annotations

import json
import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.stats
import torch

from ..data.datasets import FixedPairs, PairedFolder, load_split_images, paired_files
from ..data.degradations import build_degradation
from ..errors import SharpkdError
from ..metrics import mae, psnr, ssim
from ..models import SelfEnsemble, count_macs, count_parameters, load_weights
from .baselines import richardson_lucy, true_kernels, unsharp_mask

log = logging.getLogger("sharpkd")
GRID_METHODS = 4  # models shown in grid.png beside the input and the ground truth


@dataclass
class EvalOptions:
    """What `evaluate` scores: pairs made from `data` (sharp images) or read from `pairs` (blur/ + sharp/)."""

    models: list[tuple[str, str]]            # (name, shipped name or .safetensors path); `name@k`: seed k of name
    data: str | None = None
    pairs: str | None = None
    split: str = "val"
    preset: str = "seed"
    count: int = 1600
    size: int = 128
    seed: int = 0
    compare: list[tuple[str, str]] = field(default_factory=list)  # paired differences A - B (names from models)
    self_ensemble: int = 1


@torch.inference_mode()
def cpu_latency_ms(model: torch.nn.Module, size=(128, 128), runs: int = 30, warmup: int = 5) -> float:
    """Median latency of one batch-1 forward on CPU, float32 and channels_last."""
    model = model.cpu().eval().to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, *size).contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(warmup + runs):
        t = time.perf_counter()
        model(x)
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def _pairs(opts: EvalOptions):
    """(blurry, sharp, ops per sample or None, description) for the chosen split."""
    if opts.pairs:
        root = Path(opts.pairs)
        files = paired_files(root, opts.split)
        ds = PairedFolder(files)
        manifest_file = root / "manifest.json"
        ops = None
        if manifest_file.is_file():
            by_file = {(p["split"], p["file"]): p["ops"] for p in json.loads(manifest_file.read_text())["pairs"]}
            names = [(b.parent.parent.name, b.name) for b, _ in files]
            if all(n in by_file for n in names):
                ops = [by_file[n] for n in names]
        shapes = {b.shape for b, _ in ds.pairs}
        if len(shapes) != 1:
            raise SharpkdError(f"{root}: pairs of different sizes; evaluate them at one size (make-pairs --size)")
        from ..data.datasets import to_tensor

        blurry = torch.stack([to_tensor(b) for b, _ in ds.pairs])
        sharp = torch.stack([to_tensor(s) for _, s in ds.pairs])
        return blurry, sharp, ops, f"{len(ds.pairs)} pairs from {root}/{opts.split}"
    images = load_split_images(opts.data, opts.split, seed=opts.seed)
    ds = FixedPairs(images, build_degradation(opts.preset), count=opts.count, size=opts.size, seed=opts.seed)
    return ds.blurry, ds.sharp, [r.ops for r in ds.records], (
        f"{opts.count} fixed {opts.size}x{opts.size} pairs (preset {opts.preset}, seed {opts.seed}) from the "
        f"{len(images)} {opts.split}-split images of {opts.data}")


def _batched(fn, *xs, batch: int = 64) -> torch.Tensor:
    """fn over aligned chunks of `xs` (tensors or lists), concatenated: bounded memory for 1,600 pairs."""
    return torch.cat([fn(*(x[i:i + batch] for x in xs)) for i in range(0, len(xs[0]), batch)])


def parse_models(spec: str) -> list[tuple[str, str]]:
    """"teacher,student,student@1=runs/s1/model.safetensors" -> [(name, weights)]; `name@k` is another
    training seed of `name`, grouped with it in the seeds table."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, path = item.partition("=")
        out.append((name, path or name))
    return out


def parse_compare(spec: str | None) -> list[tuple[str, str]]:
    """"a:b,c@1:d" -> [("a", "b"), ("c@1", "d")]: model names as given to --models."""
    if not spec:
        return []
    pairs = [item.strip().split(":") for item in spec.split(",") if item.strip()]
    if any(len(p) != 2 or not all(p) for p in pairs):
        raise SharpkdError(f"--compare wants A:B pairs separated by commas, got {spec!r}")
    return [(a.strip(), b.strip()) for a, b in pairs]


def seed_groups(rows: list[dict], names: dict[str, str]) -> dict[str, list[dict]]:
    """The rows of each model name, its training seeds (`name`, `name@1`, ...) together."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r["method"] in names:
            groups.setdefault(names[r["method"]].partition("@")[0], []).append(r)
    return groups


def seed_summary(groups: dict[str, list[dict]]) -> list[dict]:
    """Mean and standard deviation over the training seeds of each model evaluated more than once."""
    out = []
    for base, runs in groups.items():
        if len(runs) > 1:
            entry = {"model": base, "runs": len(runs)}
            for m in ("ssim", "psnr"):
                v = [r[m] for r in runs]
                entry[m] = {"mean": statistics.mean(v), "sd": statistics.stdev(v), "min": min(v), "max": max(v)}
            out.append(entry)
    return out


def seed_difference(groups: dict[str, list[dict]], a: str, b: str) -> dict | None:
    """The difference of the seed means of models `a` and `b` (every `a@k`, every `b@k`) with Welch's t-test:
    does the gap exceed the run-to-run training noise? None unless each has two runs or more."""
    runs = {x: groups.get(x, []) for x in (a, b)}
    if min(len(v) for v in runs.values()) < 2:
        return None
    out = {"runs": [len(runs[a]), len(runs[b])]}
    for m in ("ssim", "psnr"):
        va, vb = ([r[m] for r in runs[x]] for x in (a, b))
        test = scipy.stats.ttest_ind(va, vb, equal_var=False)
        t, df, p = (float(v) if np.isfinite(v) else None for v in (test.statistic, test.df, test.pvalue))
        out[m] = {"difference": statistics.mean(va) - statistics.mean(vb), "t": t, "df": df, "p": p}  # no spread: None
    return out


def evaluate(opts: EvalOptions) -> dict:
    compare = opts.compare
    blurry, sharp, ops, description = _pairs(opts)
    passes = opts.self_ensemble
    if passes > 1:
        description += f"; every model run as the mean of {passes} flipped/transposed passes (self-ensemble)"
    kernels = true_kernels(ops) if ops else None
    methods = {"Blurry input": (None, lambda x: x), "Unsharp mask": (None, lambda x: _batched(unsharp_mask, x))}
    if kernels:
        methods["Richardson-Lucy (true kernel, oracle)"] = (
            None, lambda x: _batched(richardson_lucy, x, kernels))
    names = {}
    for name, source in opts.models:  # every model loads before any work: a missing one is a one-line error
        model, meta = load_weights(source)
        model = model.float().eval()
        if passes > 1:
            model = SelfEnsemble(model, passes)
        names[name] = name
        methods[name] = (model, lambda x, m=model: _batched(
            lambda b: m(b.contiguous(memory_format=torch.channels_last)).float().clamp(0, 1), x))
    rows, outputs, per_image_all = [], {}, {}
    for label, (model, fn) in methods.items():
        with torch.inference_mode():
            out = fn(blurry)
        outputs[label] = out
        # In chunks: SSIM's Gaussian maps for 1,600 pairs at once take several GB.
        per_image = {name: _batched(lambda o, s, f=f: f(o, s, reduction=None), out, sharp)
                     for name, f in (("ssim", ssim), ("psnr", psnr))}
        per_image_all[label] = per_image
        row = {"method": label, "ssim": per_image["ssim"].mean().item(), "psnr": per_image["psnr"].mean().item(),
               "mae": mae(out, sharp).item()}
        if model is not None:
            row.update(parameters=count_parameters(model), macs_128=count_macs(model, 128, 128),
                       macs_720p=count_macs(model, 720, 1280), latency_ms_128=cpu_latency_ms(model))
        rows.append(row)
        log.info("%-40s SSIM %.4f  PSNR %.2f dB  MAE %.4f", label, row["ssim"], row["psnr"], row["mae"])
    present = [(a, b) for a, b in compare if a in per_image_all and b in per_image_all]
    if len(present) < len(compare):
        log.warning("--compare: skipping pairs whose models were not evaluated: %s",
                    ", ".join(f"{a}:{b}" for a, b in compare if (a, b) not in present))
    comparisons = [paired_difference(per_image_all, a, b) for a, b in present]
    groups = seed_groups(rows, names)
    for c, (a, b) in zip(comparisons, present):
        if "@" not in a + b and (seeds := seed_difference(groups, a, b)):
            c["seeds"] = seeds
    return {"pairs": description, "split": opts.split, "threads": torch.get_num_threads(), "rows": rows,
            "comparisons": comparisons, "seeds": seed_summary(groups),
            "by_degradation": by_degradation(ops, per_image_all) if ops else [],
            "_outputs": outputs, "_blurry": blurry, "_sharp": sharp}


STRENGTH = ("sigma", "length", "radius", "max_length")  # the parameter that sets each blur's size


def by_degradation(ops: list[list[dict]], per_image: dict, bins: int = 3) -> list[dict]:
    """Mean SSIM and PSNR of every method per blur kind (each pair's first op) and per third of its strength:
    where the gap between the models lies."""
    first = [o[0] if o else {"op": "none"} for o in ops]
    groups = []
    for kind in sorted({f["op"] for f in first}):
        idx = [i for i, f in enumerate(first) if f["op"] == kind]
        key = next((k for k in STRENGTH if k in first[idx[0]]), None)
        parts = [(kind, idx)]
        if key is not None and len(idx) >= 3 * bins:
            values = np.array([first[i][key] for i in idx])
            edges = np.quantile(values, np.linspace(0, 1, bins + 1))
            which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
            parts = [(f"{kind}, {key} {edges[b]:.1f}-{edges[b + 1]:.1f}", [i for i, w in zip(idx, which) if w == b])
                     for b in range(bins)]
        for name, sel in parts:
            t = torch.tensor(sel)
            groups.append({"group": name, "pairs": len(sel),
                           **{m: {label: v[m][t].mean().item() for label, v in per_image.items()}
                              for m in ("ssim", "psnr")}})
    return groups


def paired_difference(per_image: dict, a: str, b: str, resamples: int = 2000, seed: int = 0) -> dict:
    """Mean per-pair difference a - b on the same pairs, with a 95% bootstrap interval over the pairs. It
    measures how much the evaluation set's sampling could move the gap, not run-to-run training noise."""
    out = {"a": a, "b": b}
    rng = np.random.default_rng(seed)
    for metric in ("ssim", "psnr"):
        d = (per_image[a][metric] - per_image[b][metric]).double().numpy()
        boot = d[rng.integers(0, len(d), (resamples, len(d)))].mean(1)
        out[metric] = {"mean": float(d.mean()), "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
                       "a_better_fraction": float((d > 0).mean())}
    return out


def _fmt_int(v):
    return f"{v:,}" if isinstance(v, int) else ""


def _welch(d: dict) -> str:
    return f"Welch t {d['t']:.1f}, {d['df']:.1f} df, p {d['p']:.2g}" if d["t"] is not None else "no spread to test"


def report_markdown(result: dict) -> str:
    lines = ["# Evaluation\n", f"Data: {result['pairs']}.\n",
             "| Method | SSIM | PSNR (dB) | MAE | Parameters | MACs 128x128 | MACs 1280x720 | CPU latency 128x128 (ms) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lat = f"{r['latency_ms_128']:.2f}" if "latency_ms_128" in r else ""
        macs = [f"{r[k] / 1e6:,.1f} M" if k in r else "" for k in ("macs_128", "macs_720p")]
        lines.append(f"| {r['method']} | {r['ssim']:.4f} | {r['psnr']:.2f} | {r['mae']:.4f} | "
                     f"{_fmt_int(r.get('parameters'))} | {macs[0]} | {macs[1]} | {lat} |")
    for c in result.get("comparisons", []):
        lines.append(f"\n{c['a']} minus {c['b']} on the same pairs: SSIM {c['ssim']['mean']:+.4f} "
                     f"(95% bootstrap interval {c['ssim']['ci95'][0]:+.4f} to {c['ssim']['ci95'][1]:+.4f}, "
                     f"better on {c['ssim']['a_better_fraction']:.0%} of pairs), PSNR {c['psnr']['mean']:+.3f} dB "
                     f"({c['psnr']['ci95'][0]:+.3f} to {c['psnr']['ci95'][1]:+.3f}).")
        if "seeds" in c:
            sd = c["seeds"]
            lines[-1] += (f" Across training seeds ({sd['runs'][0]} and {sd['runs'][1]} runs), the difference of "
                          f"the means: SSIM {sd['ssim']['difference']:+.4f} ({_welch(sd['ssim'])}), PSNR "
                          f"{sd['psnr']['difference']:+.3f} dB ({_welch(sd['psnr'])}).")
    if result.get("seeds"):
        lines += ["\nAcross training seeds (the run-to-run noise):\n",
                  "| Model | Runs | SSIM mean | SSIM sd | PSNR mean (dB) | PSNR sd |", "|---|---|---|---|---|---|"]
        lines += [f"| {g['model']} | {g['runs']} | {g['ssim']['mean']:.4f} | {g['ssim']['sd']:.4f} | "
                  f"{g['psnr']['mean']:.2f} | {g['psnr']['sd']:.3f} |" for g in result["seeds"]]
    if result.get("by_degradation"):
        groups = result["by_degradation"]
        lines += ["\nSSIM by blur kind and strength (thirds of each kind's pairs):\n",
                  "| Method | " + " | ".join(f"{g['group']} ({g['pairs']})" for g in groups) + " |",
                  "|---|" + "---|" * len(groups)]
        lines += [f"| {r['method']} | " + " | ".join(f"{g['ssim'][r['method']]:.4f}" for g in groups) + " |"
                  for r in result["rows"]]
    lines.append(f"\nLatency: median of 30 batch-1 forwards, fp32 + channels_last, "
                 f"{result['threads']} CPU threads. Metrics: SSIM (11x11 Gaussian, sigma 1.5), PSNR, MAE on [0, 1].\n")
    return "\n".join(lines)


def save_grid(result: dict, path: Path, samples: int = 6) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [(k, v) for k, v in result["_outputs"].items() if k in {r["method"] for r in result["rows"]
                                                                       if "parameters" in r}][:GRID_METHODS]
    cols = [("Blurry", result["_blurry"])] + models + [("Ground truth", result["_sharp"])]
    n = min(samples, len(result["_sharp"]))
    idx = np.linspace(0, len(result["_sharp"]) - 1, n).round().astype(int)
    fig, axes = plt.subplots(n, len(cols), figsize=(2.2 * len(cols), 2.2 * n), squeeze=False)
    for r, i in enumerate(idx):
        for c, (label, imgs) in enumerate(cols):
            ax = axes[r][c]
            ax.imshow(imgs[i].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=9)
            if label not in ("Ground truth",):
                ax.set_xlabel(f"SSIM {ssim(imgs[i:i + 1], result['_sharp'][i:i + 1]).item():.3f}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(result: dict, out: Path) -> list[Path]:
    """report.md, report.json and grid.png under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(report_markdown(result))
    (out / "report.json").write_text(json.dumps({k: v for k, v in result.items() if not k.startswith("_")}, indent=2))
    save_grid(result, out / "grid.png")
    return [out / "report.md", out / "report.json", out / "grid.png"]
