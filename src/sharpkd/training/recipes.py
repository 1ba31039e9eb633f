"""Training recipes: how each shipped model is rebuilt, `sharpkd train NAME --data DIR`.

A recipe (src/sharpkd/recipes/NAME.yaml) lists its stages in order, then its finishing steps. A stage is a base
config (src/sharpkd/configs) with the keys that stage overrides, plus `name`, `data` (a folder relative to the
data root), `init` and `teacher` (an earlier stage of the recipe, another recipe, or RECIPE/STAGE) and
`max_time`. Each stage trains in a run folder of its own, RUN/STAGE; a finished stage (its model.safetensors) is
skipped on a rerun, and `resume` continues an unfinished one. Other recipes a stage names are trained first,
beside RUN (RUN/../RECIPE), unless already finished there. The finishing steps (`core`, `dtype`; see
`models.weights.finish_weights`) write RUN/model.safetensors."""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from ..errors import SharpkdError
from ..models.weights import finish_weights
from .callbacks import git_commit
from .config import CONFIG_DIR, load_recipe, read_yaml
from .run import TrainOptions, run_training

log = logging.getLogger("sharpkd")
RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"
STAGE_KEYS = ("name", "config", "data", "init", "teacher", "max_time")  # the others override the config's keys
FINISHING_KEYS = ("core", "dtype")
# --quick: every stage and finishing step of a recipe on a few small crops, in seconds (a smoke test)
QUICK = {"max_epochs": 1, "epoch_size": 4, "val_size": 4, "crop": 32, "batch_size": 4, "num_workers": 0}


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def load_training_recipe(name: str) -> dict:
    """The recipe `name` (a shipped recipe, or a YAML file), checked: {name, stages, finishing}."""
    file = Path(name) if Path(name).suffix in (".yaml", ".yml") else RECIPE_DIR / f"{name}.yaml"
    if not file.is_file():
        raise SharpkdError(f"unknown recipe {name!r}; shipped recipes: {', '.join(recipe_names())} (or a .yaml file)")
    recipe = read_yaml(file)
    recipe = recipe if isinstance(recipe, dict) else {}
    stages, finishing = recipe.get("stages"), recipe.get("finishing") or {}
    if not isinstance(stages, list) or not stages or not all(isinstance(s, dict) for s in stages):
        raise SharpkdError(f"{file}: `stages` must be a list of stages")
    if unknown := (set(recipe) - {"stages", "finishing"}) | (set(finishing) - set(FINISHING_KEYS)):
        raise SharpkdError(f"{file}: unknown keys {', '.join(sorted(unknown))}")
    names = []
    for i, stage in enumerate(stages, 1):
        where = f"{file}: stage {stage.get('name', i)}"
        config = CONFIG_DIR / f"{stage.get('config')}.yaml"
        if not stage.get("name") or stage["name"] in names or not config.is_file():
            raise SharpkdError(f"{where}: each stage needs a name of its own and a config of {CONFIG_DIR}")
        base = load_recipe(stage["config"], stage["config"])
        if unknown := set(stage) - set(STAGE_KEYS) - set(base):
            raise SharpkdError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        _seconds(stage.get("max_time"))  # a malformed one fails here, before any stage trains
        for key in ("init", "teacher"):
            ref = stage.get(key)
            if ref is not None and ref not in names and not _recipe_has(*ref.partition("/")[::2]):
                raise SharpkdError(f"{where}: {key} {ref!r} is neither an earlier stage, a recipe nor RECIPE/STAGE")
        names.append(stage["name"])
    return {"name": file.stem, "stages": stages, "finishing": finishing}


def _recipe_has(recipe: str, stage: str) -> bool:
    """Whether `recipe` is a shipped recipe, with a stage named `stage` where one is given."""
    file = RECIPE_DIR / f"{recipe}.yaml"
    return file.is_file() and (not stage or stage in [s["name"] for s in read_yaml(file)["stages"]])


def _seconds(max_time: str | None) -> float:
    """DD:HH:MM:SS in seconds (None: no limit)."""
    if max_time is None:
        return float("inf")
    try:
        days, hours, minutes, seconds = (int(x) for x in str(max_time).split(":"))
    except ValueError:
        raise SharpkdError(f"max time {max_time!r}: DD:HH:MM:SS expected") from None
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def train_recipe(name: str, opts: TrainOptions, quick: bool = False, until: str | None = None,
                 chain: tuple[str, ...] = ()) -> Path:
    """Train the recipe `name` into the run folder `opts.out` and finish it: RUN/model.safetensors (with
    `until`, only up to that stage: its weights). `opts` gives the data root, resume/overwrite (for this recipe's
    stages; the recipes it needs are never overwritten), hardware, a cap on each stage's max_time, overrides
    for every stage (e.g. num_workers) and the command line; `quick` runs every stage for QUICK's few steps."""
    recipe, out = load_training_recipe(name), Path(opts.out)
    name = recipe["name"]
    if name in chain:
        raise SharpkdError(f"recipes {' -> '.join([*chain, name])} need each other")
    final = out / "model.safetensors" if until is None else out / until / "model.safetensors"
    if final.is_file() and not opts.overwrite:
        log.info("%s: finished, %s", name, final)
        return final
    if until is not None and until not in [s["name"] for s in recipe["stages"]]:
        raise SharpkdError(f"recipe {name} has no stage {until!r}")
    for stage in recipe["stages"]:
        if not (folder := Path(opts.data) / stage.get("data", ".")).is_dir():
            raise SharpkdError(f"recipe {name}, stage {stage['name']}: data folder {folder} not found")
    done: dict[str, Path] = {}

    def weights(ref: str) -> Path:
        if ref in done:
            return done[ref]
        other, _, stage = ref.partition("/")
        return train_recipe(other, replace(opts, out=out.parent / other, overwrite=False), quick, stage or None,
                            (*chain, name))

    for i, stage in enumerate(recipe["stages"], 1):
        stage_out, settings = out / stage["name"], {k: v for k, v in stage.items() if k not in STAGE_KEYS}
        done[stage["name"]] = stage_out / "model.safetensors"
        if done[stage["name"]].is_file() and not opts.overwrite:
            log.info("%s: stage %d/%d %s finished", name, i, len(recipe["stages"]), stage["name"])
        else:
            overrides = {**settings, **{k: v for k, v in opts.overrides.items() if v is not None}}
            if quick:
                pairs = load_recipe(stage["config"], stage["config"], overrides)["train_pairs"]
                overrides.update(QUICK, train_pairs=min(pairs, QUICK["epoch_size"]))
            resume = opts.resume and (stage_out / "checkpoints" / "last.ckpt").is_file()
            init = weights(stage["init"]) if stage.get("init") and not resume else None  # a resumed run has its own
            teacher = weights(stage["teacher"]) if stage.get("teacher") else None
            max_time = min(stage.get("max_time"), opts.max_time, key=_seconds)
            log.info("%s: stage %d/%d %s", name, i, len(recipe["stages"]), stage["name"])
            run_training("student_kd" if teacher else "teacher", replace(
                opts, data=Path(opts.data) / stage.get("data", "."), out=stage_out, config=stage["config"],
                overrides=overrides, teacher=teacher or "teacher", init_weights=init, resume=resume,
                cache_dir=out / "cache", max_time=None if quick else max_time, name=f"{name}/{stage['name']}"))
        if stage["name"] == until:
            return done[until]
    if rank_zero_only.rank == 0:  # with several processes (--devices N) rank 0 alone writes
        finish_weights(done[recipe["stages"][-1]["name"]], final, **recipe["finishing"], recipe=name,
                       command=opts.command, git_commit=git_commit(), torch=torch.__version__)
        log.info("%s: %s", name, final)
    return final
