"""`sharpkd train-teacher` and `sharpkd distill`: build recipe, data, model, Lightning trainer; fit; then
restore the best checkpoint and write the run folder (weights + sidecar, metrics.csv, curves, epoch table)."""
from __future__ import annotations

import json
import logging
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import (EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar,
                                         TQDMProgressBar)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from ..errors import SharpkdError
from ..fileio import atomic_path, write_text
from .. import sysinfo
from ..models import SelfEnsemble, build_model, count_parameters, load_weights, resolve_weights, save_weights
from .config import OVERRIDABLE, load_recipe
from .datamodule import DeblurDataModule
from .module import RestorationModule, saved_schedule
from .teacher_cache import cached_teacher_outputs
from .report import epoch_rows, epoch_table, plot_curves, write_metrics_csv

log = logging.getLogger("sharpkd")
SITTINGS = "sittings.jsonl"  # one line per start or resume of a run: its log folder, command, start time
INIT_WEIGHTS = "init_weights.json"  # what an --init-weights run started from, kept for its resumed sittings


def log_folders(out: Path) -> list[Path]:
    """The run's CSV log folders in the order they were written: logs, logs_resumed1, ..., logs_resumed10."""
    number = lambda p: int(re.sub(r"\D", "", p.name) or 0)  # noqa: E731
    return sorted((p for p in out.glob("logs*") if p.is_dir()), key=number)


def record_sitting(out: Path, log_version: str, command: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / SITTINGS, "a") as f:
        f.write(json.dumps({"log": log_version, "command": command, "hardware": hardware(),
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


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def hardware() -> str:
    return sysinfo.describe()


def total_wall(history: list[dict]) -> float | None:
    """Training wall time over all sittings (None if one is unknown)."""
    walls = [h["wall_time_s"] for h in history]
    return None if not walls or None in walls else round(sum(walls), 1)


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


def run_training(recipe_name: str, args) -> int:
    overrides = {k: getattr(args, k, None) for k in OVERRIDABLE}
    recipe = load_recipe(recipe_name, args.config, overrides)
    out = Path(args.out)
    ckpt_dir = out / "checkpoints"
    resume = ckpt_dir / "last.ckpt" if args.resume else None
    # With several processes (--devices N), the others run this function too: only rank 0 checks the folder
    # (the others start once it has written its first files) and only it deletes or writes.
    rank_zero = rank_zero_only.rank == 0
    if resume and not resume.is_file():
        raise SharpkdError(f"--resume: no checkpoint at {resume}")
    init = getattr(args, "init_weights", None)
    if resume and init:
        raise SharpkdError("--resume and --init-weights exclude each other: a resumed run keeps its own weights")
    if resume and getattr(args, "overwrite", False):
        raise SharpkdError("--resume and --overwrite exclude each other: continue the run, or start it over")
    if resume:  # the LR schedule's saved state only fits the same kind of schedule
        kind = saved_schedule(load_checkpoint(resume))
        if kind != recipe["schedule"]:
            raise SharpkdError(f"--resume: {out} was trained with the {kind} LR schedule; pass --schedule {kind}")
    if not resume and rank_zero and out.exists() and not out.is_dir():
        raise SharpkdError(f"--out {out}: exists and is not a folder")
    if not resume and rank_zero and not getattr(args, "overwrite", False) and (found := earlier_run(out)):
        raise SharpkdError(f"{out} already holds {found}: pass --resume to continue it, --overwrite to delete it "
                           "and start over, or another --out")
    L.seed_everything(recipe["seed"], workers=True, verbose=False)
    # Each (re)start logs to its own CSV folder (Lightning would overwrite); the epoch table merges them.
    previous_logs = [p / "metrics.csv" for p in log_folders(out) if (p / "metrics.csv").is_file()] if resume else []
    log_version = f"logs_resumed{len(previous_logs)}" if resume else "logs"
    if not resume and rank_zero:  # a fresh run (--overwrite): nothing of an earlier run here may mix with it
        for old in [ckpt_dir, out / "tb", *out.glob("logs*")]:
            shutil.rmtree(old, ignore_errors=True)
        for name in (SITTINGS, INIT_WEIGHTS, "model.safetensors", "model.json", "metrics.csv", "curves.png",
                     "epochs.md"):
            (out / name).unlink(missing_ok=True)
    command = "sharpkd " + " ".join(shlex.quote(a) for a in getattr(args, "argv", sys.argv[1:]))

    teacher, teacher_meta = None, {}
    tta = recipe["teacher_tta"]
    if recipe_name.startswith("student") and recipe["loss"].get("alpha"):
        teacher, teacher_meta = load_weights(args.teacher)
        if tta > 1:
            teacher = SelfEnsemble(teacher, tta)
    init_start, init_meta = None, None
    if init:  # checked before minutes of data preparation; building models here must not move the seeded RNG
        with torch.random.fork_rng():
            init_start, start_meta = load_weights(init)
            probe = build_model(recipe["arch"], residual=bool(recipe.get("residual", False)))
        if (init_start.arch_name, init_start.arch_kwargs) != (probe.arch_name, probe.arch_kwargs):
            raise SharpkdError(f"--init-weights {init}: a {init_start.arch_name} {init_start.arch_kwargs} model, but "
                               f"the recipe builds {probe.arch_name} {probe.arch_kwargs}")
        init_meta = {"weights": str(resolve_weights(init)), "recipe": start_meta.get("recipe"),
                     "epochs": start_meta.get("epochs"), "val_metrics": start_meta.get("val_metrics"),
                     "history": start_meta.get("history")}  # how the starting weights were trained
    if resume and (out / INIT_WEIGHTS).is_file():  # a resumed --init-weights run keeps what it started from
        init_meta = json.loads((out / INIT_WEIGHTS).read_text())
    elif init_meta and rank_zero:  # (--init-weights excludes --resume: a fresh run)
        write_text(out / INIT_WEIGHTS, json.dumps(init_meta, indent=2) + "\n")
    data = DeblurDataModule(args.data, preset=recipe["preset"], crop=recipe["crop"],
                            batch_size=recipe["batch_size"], epoch_size=recipe["epoch_size"],
                            val_size=recipe["val_size"], seed=recipe["seed"], limit_images=recipe["limit_images"],
                            num_workers=recipe["num_workers"], split_seed=recipe["split_seed"],
                            train_pairs=recipe["train_pairs"])
    data.setup("fit")
    if teacher is not None and data.fixed_pairs:
        if torch.cuda.is_available():
            teacher.cuda()
        data.add_train_targets(cached_teacher_outputs(teacher, resolve_weights(args.teacher),
                                                      data.train_set.tensors[0],
                                                      getattr(args, "cache_dir", None) or out / "cache"))
        teacher.cpu()
    model = build_model(recipe["arch"], residual=bool(recipe.get("residual", False)))
    if init_start is not None:
        model.load_state_dict(init_start.state_dict())
    module = RestorationModule(model, recipe["loss"], lr=recipe["lr"], lr_factor=recipe["lr_factor"],
                               lr_patience=recipe["lr_patience"], min_lr=recipe["min_lr"], teacher=teacher,
                               schedule=recipe["schedule"])
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best-{epoch:02d}", monitor="val_ssim", mode="max")
    # Lightning's save_last only writes when a new best is saved; --resume needs the latest epoch every time.
    last = ModelCheckpoint(dirpath=ckpt_dir, filename="last", enable_version_counter=False)
    bar = RichProgressBar() if sys.stdout.isatty() else TQDMProgressBar(refresh_rate=max(1, 6400 // recipe["batch_size"] // 10))
    trainer = L.Trainer(
        default_root_dir=out, max_epochs=recipe["max_epochs"], precision=recipe["precision"],
        accelerator=args.accelerator, devices=args.devices, strategy=args.strategy,
        max_time=getattr(args, "max_time", None), num_sanity_val_steps=0, log_every_n_steps=10,
        callbacks=[best, last, EarlyStopping("val_ssim", mode="max", patience=recipe["patience"]),
                   LearningRateMonitor("epoch"), bar],
        logger=[CSVLogger(out, name="", version=log_version), TensorBoardLogger(out, name="", version="tb")])
    if trainer.is_global_zero:
        record_sitting(out, log_version, command)
    trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume else None, weights_only=False)
    if not trainer.is_global_zero:
        return 0
    if not best.best_model_path:
        raise SharpkdError("training ended before the first validation: no weights written")
    state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
    module.on_load_checkpoint(state)
    module.load_state_dict(state["state_dict"])
    # A resumed run that had nothing left to train (max epochs already reached) writes no new log.
    rows = epoch_rows([p for p in [*previous_logs, out / log_version / "metrics.csv"] if p.is_file()])
    best_epoch = state["epoch"] + 1
    best_row = next((r for r in rows if r["epoch"] == best_epoch), {})
    with atomic_path(out / "metrics.csv") as tmp:
        write_metrics_csv(rows, tmp)
    title = f"{recipe_name} ({count_parameters(model):,} parameters)"
    with atomic_path(out / "curves.png") as tmp:
        plot_curves(rows, tmp, title)
    write_text(out / "epochs.md", f"# {title}\n\n{epoch_table(rows, best_epoch)}")
    history = sitting_history(out)
    save_weights(model, out / "model.safetensors", recipe=Path(recipe["recipe"]).stem,  # the YAML, --config too
                 data={**data.info, "epoch_size": recipe["epoch_size"], "crop": recipe["crop"]},
                 epochs=len(rows), best_epoch=best_epoch,
                 val_metrics={k.removeprefix("val_"): best_row[k] for k in ("val_ssim", "val_psnr", "val_mae", "val_loss")
                              if k in best_row},
                 training={k: recipe[k] for k in ("loss", "batch_size", "lr", "patience", "precision", "seed",
                                                   "split_seed", "train_pairs", "max_epochs", "residual", "schedule",
                                                   "teacher_tta")},
                 init_weights=init_meta,
                 teacher=({"weights": str(args.teacher), "val_metrics": teacher_meta.get("val_metrics")}
                          if teacher is not None else None),
                 command=command, git_commit=git_commit(), wall_time_s=total_wall(history),
                 hardware=hardware(), torch=torch.__version__, history=history)
    log.info("best epoch %d: %s; weights: %s", best_epoch,
             ", ".join(f"{k}={v:.4f}" for k, v in best_row.items() if k.startswith("val_")), out / "model.safetensors")
    return 0
