"""Recipes: a packaged YAML file per command, overridden by command-line flags."""
from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import SharpkdError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
OVERRIDABLE = ("max_epochs", "epoch_size", "val_size", "batch_size", "lr", "patience", "limit_images", "crop",
               "preset", "seed", "split_seed", "train_pairs", "precision", "num_workers", "arch", "schedule")


def read_yaml(file: Path):
    """A YAML file's content ({} when empty); a file that is not YAML is a one-line error."""
    try:
        return yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SharpkdError(f"{file}: not valid YAML ({str(exc).splitlines()[0]})") from None


def load_recipe(name: str, path: str | None = None, overrides: dict | None = None) -> dict:
    """The recipe `name` (teacher, student_kd, student_nokd) or the YAML at `path` (a file, or the name of a
    packaged recipe such as `student_call`), with `overrides` on top (None values are ignored)."""
    file = Path(path) if path else CONFIG_DIR / f"{name}.yaml"
    if path and not file.is_file() and (CONFIG_DIR / f"{path}.yaml").is_file():
        file = CONFIG_DIR / f"{path}.yaml"
    if not file.is_file():
        raise SharpkdError(f"recipe not found: {file}")
    recipe = read_yaml(file)
    recipe.setdefault("limit_images", None)
    recipe.setdefault("split_seed", 0)
    recipe.setdefault("train_pairs", 0)
    recipe.setdefault("schedule", "plateau")
    recipe.setdefault("arch_kwargs", {})  # the architecture's own options, e.g. {width: 32, scale: 4}
    for key, value in (overrides or {}).items():
        if value is not None:
            recipe[key] = value
    recipe["precision"] = resolve_precision(recipe.get("precision", "auto"))
    recipe["recipe"] = str(file)
    return recipe


def resolve_precision(precision: str) -> str:
    """`auto`: bf16 autocast where the hardware computes bf16 natively (a GPU, or a CPU with AVX512-BF16 or AMX),
    else fp32. On a CPU without it bf16 is emulated and slower than fp32; on a CPU with AMX
    bf16 + channels_last trains faster than fp32 (docs/results.md)."""
    if precision != "auto":
        return precision
    import torch

    from ..sysinfo import native_bf16

    native = torch.cuda.is_available() or native_bf16()
    return "bf16-mixed" if native else "32-true"
