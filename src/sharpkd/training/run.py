"""`sharpkd train-teacher` and `sharpkd distill` as a library call: check the run folder, build the recipe's data,
model and Lightning trainer, fit. `callbacks.RunRecord` writes what the run leaves (weights + sidecar,
metrics.csv, curves, epoch table)."""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import (EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar,
                                         TQDMProgressBar)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch import nn

from ..errors import SharpkdError
from ..fileio import write_text
from ..models import build_model, load_weights, resolve_weights
from .callbacks import SITTINGS, RunRecord, log_folders
from .config import load_recipe
from .datamodule import DeblurDataModule
from .module import RestorationModule, saved_schedule

INIT_WEIGHTS = "init_weights.json"  # what an --init-weights run started from, kept for its resumed sittings
SIDECAR_TRAINING = ("loss", "batch_size", "lr", "patience", "precision", "seed", "split_seed", "train_pairs",
                    "max_epochs", "residual", "schedule")  # the recipe keys a sidecar keeps


@dataclass
class TrainOptions:
    """Where a run reads and writes, how it starts and where it runs. The recipe's own values are changed
    through `overrides` (keys of `config.OVERRIDABLE`; None keeps the recipe's)."""

    data: str | Path                        # sharp images, or blur/ + sharp/ pairs
    out: str | Path                         # the run folder
    config: str | Path | None = None        # a YAML recipe in place of the packaged one
    overrides: dict = field(default_factory=dict)
    teacher: str | Path = "teacher"         # distillation's teacher: shipped name or weights file
    resume: bool = False                    # continue from out/checkpoints/last.ckpt
    overwrite: bool = False                 # delete a run found in `out` and start over
    init_weights: str | Path | None = None  # start from these weights with a fresh optimizer and schedule
    cache_dir: str | Path | None = None     # the teacher's cached outputs (default out/cache)
    accelerator: str = "auto"
    devices: str | int = "auto"
    strategy: str = "auto"
    max_time: str | None = None             # DD:HH:MM:SS
    command: str | None = None              # the command line, kept with the run
    name: str | None = None                 # the stage's name in the sidecar (default: the run folder's)
    recipe: str | None = None               # the training recipe the run is a stage of (`sharpkd train`)


def earlier_run(out: Path) -> str | None:
    """What an earlier run left in `out` (None if nothing): its weights, checkpoints or epoch logs."""
    if (out / "model.safetensors").exists():
        return "a finished run (model.safetensors)"
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("*.ckpt"))
    logs = [p.name for p in log_folders(out) if (p / "metrics.csv").is_file()]
    if ckpts or logs:
        return f"an unfinished run ({', '.join((ckpts + logs)[:3])}{', ...' if len(ckpts + logs) > 3 else ''})"
    return None


def load_checkpoint(path: Path) -> dict:
    """A checkpoint to resume from; a damaged one is a one-line error that names an earlier one that loads."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError ... for a damaged file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
    others = sorted((p for p in path.parent.glob("*.ckpt") if p != path), key=lambda p: p.stat().st_mtime,
                    reverse=True)
    for other in others:
        try:
            epoch = torch.load(other, map_location="cpu", weights_only=True)["epoch"] + 1
        except Exception:  # damaged too: try the next
            continue
        raise SharpkdError(f"--resume: {path} is damaged ({reason}); {other.name} loads (after epoch {epoch}): "
                           f"copy it to {path} and resume again to continue from there")
    raise SharpkdError(f"--resume: {path} is damaged ({reason}) and no other checkpoint in {path.parent} loads; "
                       "start over with --overwrite")


def check_start(out: Path, recipe: dict, opts: TrainOptions) -> Path | None:
    """The checkpoint to resume from (None: a fresh run), once the options and the run folder agree.

    With several processes (--devices N) the others run this too: only rank 0 checks the folder (the others
    start once it has written its first files)."""
    resume = out / "checkpoints" / "last.ckpt" if opts.resume else None
    if resume and not resume.is_file():
        raise SharpkdError(f"--resume: no checkpoint at {resume}")
    if resume and opts.init_weights:
        raise SharpkdError("--resume and --init-weights exclude each other: a resumed run keeps its own weights")
    if resume and opts.overwrite:
        raise SharpkdError("--resume and --overwrite exclude each other: continue the run, or start it over")
    if resume:  # the LR schedule's saved state only fits the same kind of schedule
        kind = saved_schedule(load_checkpoint(resume))
        if kind != recipe["schedule"]:
            raise SharpkdError(f"--resume: {out} was trained with the {kind} LR schedule; pass --schedule {kind}")
    elif rank_zero_only.rank == 0:
        if out.exists() and not out.is_dir():
            raise SharpkdError(f"--out {out}: exists and is not a folder")
        if not opts.overwrite and (found := earlier_run(out)):
            raise SharpkdError(f"{out} already holds {found}: pass --resume to continue it, --overwrite to delete "
                               "it and start over, or another --out")
    return resume


def clear_run(out: Path) -> None:
    """Remove what an earlier run left in `out`: nothing of it may mix with a fresh run (--overwrite)."""
    for old in [out / "checkpoints", out / "tb", *out.glob("logs*")]:
        shutil.rmtree(old, ignore_errors=True)
    for name in (SITTINGS, INIT_WEIGHTS, "model.safetensors", "model.json", "metrics.csv", "curves.png", "epochs.md"):
        (out / name).unlink(missing_ok=True)


def recipe_model(recipe: dict) -> nn.Module:
    """The recipe's architecture, untrained."""
    return build_model(recipe["arch"], residual=bool(recipe.get("residual", False)), **recipe["arch_kwargs"])


def starting_weights(recipe: dict, init: str | Path) -> tuple[nn.Module, dict]:
    """The model of `--init-weights` and how it was trained, checked against the recipe's architecture (before
    minutes of data preparation; building models here leaves the seeded RNG where it was)."""
    with torch.random.fork_rng():
        start, meta = load_weights(init)
        probe = recipe_model(recipe)
    # the same tensors, not the same keyword arguments: options without weights (a residual's shrink) may change.
    # An architecture grown from another (`grows_from`) takes all of its tensors and starts its own added layers.
    shapes = [{k: tuple(v.shape) for k, v in m.state_dict().items()} for m in (start, probe)]
    grows = getattr(probe, "grows_from", None) == start.arch_name and start.residual == probe.residual
    fits = shapes[0].items() <= shapes[1].items() if grows else shapes[0] == shapes[1]
    if not fits or (start.arch_name != probe.arch_name and not grows):
        raise SharpkdError(f"--init-weights {init}: a {start.arch_name} {start.arch_kwargs} model, but "
                           f"the recipe builds {probe.arch_name} {probe.arch_kwargs}")
    return start, {"weights": str(resolve_weights(init)), "stages": meta.get("stages") or []}


def build_trainer(recipe: dict, opts: TrainOptions, out: Path, log_version: str, best: ModelCheckpoint,
                  record: RunRecord) -> L.Trainer:
    # Lightning's save_last only writes when a new best is saved; --resume needs the latest epoch every time.
    last = ModelCheckpoint(dirpath=out / "checkpoints", filename="last", enable_version_counter=False)
    bar = (RichProgressBar() if sys.stdout.isatty()
           else TQDMProgressBar(refresh_rate=max(1, 6400 // recipe["batch_size"] // 10)))
    return L.Trainer(
        default_root_dir=out, max_epochs=recipe["max_epochs"], precision=recipe["precision"],
        accelerator=opts.accelerator, devices=opts.devices, strategy=opts.strategy, max_time=opts.max_time,
        num_sanity_val_steps=0, log_every_n_steps=10,
        callbacks=[best, last, EarlyStopping("val_ssim", mode="max", patience=recipe["patience"]),
                   LearningRateMonitor("epoch"), bar, record],
        # Each sitting (start or resume) logs to a CSV folder of its own (Lightning would overwrite the last).
        logger=[CSVLogger(out, name="", version=log_version), TensorBoardLogger(out, name="", version="tb")])


def run_training(recipe_name: str, opts: TrainOptions) -> Path | None:
    """Train the recipe `recipe_name` (teacher, student_kd, student_nokd; `opts.config` replaces its YAML) into
    `opts.out`. Returns the weights written (None in the other processes of a multi-process run)."""
    recipe = load_recipe(recipe_name, opts.config, opts.overrides)
    if recipe_name == "student_nokd" and recipe["loss"].get("alpha"):  # --no-kd with a --config of a KD recipe
        recipe["loss"] = {**recipe["loss"], "alpha": 0.0}
    out = Path(opts.out)
    resume = check_start(out, recipe, opts)
    start, init_meta = starting_weights(recipe, opts.init_weights) if opts.init_weights else (None, None)
    L.seed_everything(recipe["seed"], workers=True, verbose=False)
    log_version = (f"logs_resumed{sum((p / 'metrics.csv').is_file() for p in log_folders(out))}" if resume
                   else "logs")
    rank_zero = rank_zero_only.rank == 0  # only rank 0 deletes or writes
    if not resume and rank_zero:
        clear_run(out)
    if resume and (out / INIT_WEIGHTS).is_file():  # a resumed --init-weights run keeps what it started from
        init_meta = json.loads((out / INIT_WEIGHTS).read_text())
    elif init_meta and rank_zero:  # (--init-weights excludes --resume: a fresh run)
        write_text(out / INIT_WEIGHTS, json.dumps(init_meta, indent=2) + "\n")

    teacher, teacher_meta = None, {}
    if recipe_name.startswith("student") and recipe["loss"].get("alpha"):
        teacher, teacher_meta = load_weights(opts.teacher)
    data = DeblurDataModule(opts.data, preset=recipe["preset"], crop=recipe["crop"], batch_size=recipe["batch_size"],
                            epoch_size=recipe["epoch_size"], val_size=recipe["val_size"], seed=recipe["seed"],
                            limit_images=recipe["limit_images"], num_workers=recipe["num_workers"],
                            split_seed=recipe["split_seed"], train_pairs=recipe["train_pairs"], teacher=teacher,
                            teacher_file=resolve_weights(opts.teacher) if teacher is not None else None,
                            cache_dir=opts.cache_dir or out / "cache")
    data.setup("fit")  # before the model is built: data errors come first, and the seeded RNG's order is kept
    model = recipe_model(recipe)
    if start is not None:
        model.load_state_dict(start.state_dict(), strict=start.arch_name == model.arch_name)
    module = RestorationModule(model, recipe["loss"], lr=recipe["lr"], lr_factor=recipe["lr_factor"],
                               lr_patience=recipe["lr_patience"], min_lr=recipe["min_lr"], teacher=teacher,
                               schedule=recipe["schedule"])
    best = ModelCheckpoint(dirpath=out / "checkpoints", filename="best-{epoch:02d}", monitor="val_ssim", mode="max")
    record = RunRecord(out, log_version, best, title=recipe_name, about={
        "recipe": opts.recipe, "name": opts.name or out.resolve().name,
        "config": Path(recipe["recipe"]).stem,  # the YAML's name, --config's too
        "data": {"epoch_size": recipe["epoch_size"], "crop": recipe["crop"]},
        "training": {k: recipe[k] for k in SIDECAR_TRAINING},
        "init_weights": init_meta and {"weights": init_meta["weights"]},
        "stages_before": (init_meta or {}).get("stages", []),
        "teacher": None if teacher is None else {
            "weights": str(opts.teacher), "val_metrics": (teacher_meta.get("stages") or [{}])[-1].get("val_metrics")},
        "command": opts.command})
    trainer = build_trainer(recipe, opts, out, log_version, best, record)
    try:
        trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume else None, weights_only=False)
    except SystemExit:  # Lightning ends a fit stopped by Ctrl-C with sys.exit(1): raise the interruption itself
        if isinstance(record.interrupted, KeyboardInterrupt):
            raise record.interrupted from None
        raise
    return record.weights
