"""What a run leaves besides weights: the epoch table (Markdown) and the training curves (PNG)."""
from __future__ import annotations

import csv
from pathlib import Path


def epoch_rows(metrics_csvs: str | Path | list) -> list[dict]:
    """One row per epoch from Lightning's CSV logs (train and validation lines merged; with several files,
    as after a resume, later files win for the epochs they repeat). An epoch cut off before its end is left out."""
    rows: dict[int, dict] = {}
    files = [metrics_csvs] if isinstance(metrics_csvs, (str, Path)) else metrics_csvs
    for path in files:
        with open(path) as f:
            lr = None  # LearningRateMonitor writes the epoch's LR on a line of its own (no epoch) before it
            for line in csv.DictReader(f):
                if not line.get("epoch"):
                    lr = next((float(v) for k, v in line.items() if k.startswith("lr-") and v), lr)
                    continue
                row = rows.setdefault(int(float(line["epoch"])), {"epoch": int(float(line["epoch"])) + 1})
                if lr is not None:
                    row["lr"], lr = lr, None
                for key, value in line.items():
                    if value not in ("", None) and key not in ("epoch", "step") and not key.endswith("_step"):
                        row["lr" if key.startswith("lr-") else key.removesuffix("_epoch")] = float(value)
    # An epoch interrupted before its end has step lines and an LR but no epoch metrics: not an epoch.
    return [rows[k] for k in sorted(rows) if set(rows[k]) - {"epoch", "lr"}]


def write_metrics_csv(rows: list[dict], path: str | Path) -> None:
    """The merged per-epoch metrics as one CSV: epoch, train_loss, val_loss, val_ssim, val_psnr, val_mae, lr."""
    keys = ["epoch"] + sorted({k for r in rows for k in r} - {"epoch"})
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def epoch_table(rows: list[dict], best_epoch: int | None = None) -> str:
    cols = [("epoch", "Epoch", "{:d}"), ("train_loss", "Train loss", "{:.4f}"), ("val_loss", "Val loss", "{:.4f}"),
            ("val_ssim", "Val SSIM", "{:.4f}"), ("val_psnr", "Val PSNR (dB)", "{:.2f}"),
            ("val_mae", "Val MAE", "{:.4f}"), ("lr", "LR", "{:.1e}")]
    out = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [(fmt.format(r[k]) if k in r else "") for k, _, fmt in cols]
        if r["epoch"] == best_epoch:
            cells[0] += " (best)"
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def plot_curves(rows: list[dict], path: str | Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        pts = [(r["epoch"], r[key]) for r in rows if key in r]
        if pts:
            axes[0].plot(*zip(*pts), marker="o", label=label)
    axes[0].set(title="loss", xlabel="epoch")
    axes[0].legend()
    for ax, key, name in ((axes[1], "val_ssim", "validation SSIM"), (axes[2], "val_mae", "validation MAE")):
        pts = [(r["epoch"], r[key]) for r in rows if key in r]
        if pts:
            ax.plot(*zip(*pts), marker="o", color="tab:green" if "ssim" in key else "tab:red")
        ax.set(title=name, xlabel="epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
        if epochs:
            ax.set_xticks(epochs if len(epochs) <= 20 else epochs[:: max(1, len(epochs) // 10)])
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
