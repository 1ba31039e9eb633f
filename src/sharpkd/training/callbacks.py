"""The run folder's records, kept by a Lightning callback: a line in sittings.jsonl as each start or resume of a
run begins; when training ends, the best checkpoint's weights with their sidecar, metrics.csv, curves.png and
epochs.md. With several processes (--devices N) rank 0 alone writes."""
from __future__ import annotations

import json
import logging
import re
import subprocess
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from .. import sysinfo
from ..errors import SharpkdError
from ..fileio import atomic_path, write_text
from ..models import count_parameters, save_weights
from .report import epoch_rows, epoch_table, plot_curves, write_metrics_csv

log = logging.getLogger("sharpkd")
SITTINGS = "sittings.jsonl"  # one line per start or resume of a run: its log folder, command, start time


def log_folders(out: Path) -> list[Path]:
    """The run's CSV log folders in the order they were written: logs, logs_resumed1, ..., logs_resumed10."""
    number = lambda p: int(re.sub(r"\D", "", p.name) or 0)  # noqa: E731
    return sorted((p for p in out.glob("logs*") if p.is_dir()), key=number)


def record_sitting(out: Path, log_version: str, command: str | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / SITTINGS, "a") as f:
        f.write(json.dumps({"log": log_version, "command": command, "hardware": sysinfo.describe(),
                            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "t0": time.time()}) + "\n")


def sitting_history(out: Path) -> list[dict]:
    """Every sitting of the run that trained at least one epoch: command, epochs, wall time (start to its log's
    last write, so a killed sitting counts up to its kill), hardware."""
    records = {}
    if (out / SITTINGS).is_file():
        for line in (out / SITTINGS).read_text().splitlines():
            rec = json.loads(line)
            records[rec["log"]] = rec
    history = []
    for folder in log_folders(out):
        csv_file = folder / "metrics.csv"
        rows = epoch_rows(csv_file) if csv_file.is_file() else []
        if not rows:
            continue
        rec = records.get(folder.name, {})
        wall = csv_file.stat().st_mtime - rec["t0"] if "t0" in rec else None
        history.append({"command": rec.get("command"), "epochs": f"{rows[0]['epoch']}-{rows[-1]['epoch']}",
                        "started": rec.get("started"), "wall_time_s": None if wall is None else round(wall, 1),
                        "hardware": rec.get("hardware")})
    return history


def total_wall(history: list[dict]) -> float | None:
    """Training wall time over all sittings (None if one is unknown)."""
    walls = [h["wall_time_s"] for h in history]
    return None if not walls or None in walls else round(sum(walls), 1)


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


class RunRecord(Callback):
    """Keeps the records of the run in `out` whose sitting logs to `out/log_version` (earlier sittings' logs are
    merged in). `about` is what the sidecar (`models.weights.SIDECAR`) says of how the run was made: recipe, name,
    config, data (added to the data module's own description), training, init_weights, teacher, command, and the
    stages before this one (those of its init weights)."""

    def __init__(self, out: Path, log_version: str, best: ModelCheckpoint, title: str, about: dict):
        self.out, self.log_version, self.best, self.title, self.about = out, log_version, best, title, about
        self.weights: Path | None = None  # written when training ends
        self.interrupted: BaseException | None = None  # what stopped the fit (Ctrl-C, SIGTERM, an error)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            record_sitting(self.out, self.log_version, self.about["command"])

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        if not self.best.best_model_path:
            raise SharpkdError("training ended before the first validation: no weights written")
        self.write(trainer, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """Ctrl-C or SIGTERM: the best epoch so far is written as at the end of a run (none before the first)."""
        self.interrupted = exception
        if (isinstance(exception, (KeyboardInterrupt, SIGTERMException)) and trainer.is_global_zero
                and self.best.best_model_path):
            self.write(trainer, pl_module)

    def write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The best checkpoint's weights with their sidecar, metrics.csv, curves.png and epochs.md."""
        state = torch.load(self.best.best_model_path, map_location="cpu", weights_only=True)
        pl_module.on_load_checkpoint(state)
        pl_module.load_state_dict(state["state_dict"])
        # Each sitting logs to a folder of its own; one that had nothing left to train (max epochs reached) wrote none.
        rows = epoch_rows([p / "metrics.csv" for p in log_folders(self.out) if (p / "metrics.csv").is_file()])
        best_epoch = state["epoch"] + 1
        best_row = next((r for r in rows if r["epoch"] == best_epoch), {})
        with atomic_path(self.out / "metrics.csv") as tmp:
            write_metrics_csv(rows, tmp)
        title = f"{self.title} ({count_parameters(pl_module.model):,} parameters)"
        with atomic_path(self.out / "curves.png") as tmp:
            plot_curves(rows, tmp, title)
        write_text(self.out / "epochs.md", f"# {title}\n\n{epoch_table(rows, best_epoch)}")
        history = sitting_history(self.out)
        about, data = self.about, {**trainer.datamodule.info, **self.about["data"]}
        stage = {"name": about["name"], "command": history[0]["command"] if history else about["command"],
                 "config": about["config"], "data": data, "training": about["training"], "teacher": about["teacher"],
                 "init_weights": about["init_weights"], "epochs": len(rows), "best_epoch": best_epoch,
                 "val_metrics": {k.removeprefix("val_"): best_row[k] for k in ("val_ssim", "val_psnr", "val_mae",
                                                                               "val_loss") if k in best_row},
                 "wall_time_s": total_wall(history), "hardware": sysinfo.describe(), "sittings": history,
                 "git_commit": git_commit(), "torch": torch.__version__}
        self.weights = save_weights(
            pl_module.model, self.out / "model.safetensors", recipe=about["recipe"], command=about["command"],
            data=data, stages=[*about["stages_before"], stage], git_commit=stage["git_commit"], torch=torch.__version__)
        log.info("best epoch %d: %s; weights: %s", best_epoch,
                 ", ".join(f"{k}={v:.4f}" for k, v in best_row.items() if k.startswith("val_")), self.weights)
