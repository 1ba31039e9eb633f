"""Saving and loading weights: a `.safetensors` file (no pickle) and a JSON sidecar saying what it is and
how it was trained. Training, inference, export and the app all go through here."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import SharpkdError
from .common import count_parameters
from .registry import build_model

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
SHIPPED = ("teacher", "student", "student_nokd", "student_fast", "student_videocall", "student_kdstrong",
           "student_kdstrong_anneal", "student_lk_anneal", "student_lk26_anneal",
           "student_lk36_anneal", "student_lk46_anneal", "student_lk46_faces_anneal10")


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def shipped_weights_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.safetensors"


def resolve_weights(source: str | os.PathLike) -> Path:
    """A shipped model name ('teacher', 'student', 'student_nokd') or a path to a .safetensors file."""
    s = str(source)
    path = shipped_weights_path(s) if s in SHIPPED else Path(s)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        hint = " (no trained weights shipped yet: train them, or pass a .safetensors path)" if s in SHIPPED else ""
        raise SharpkdError(f"weights file not found: {path}{hint}")
    return path


def save_weights(model: nn.Module, path: str | os.PathLike, **meta) -> Path:
    """Write `path` (.safetensors) and its JSON sidecar atomically. `meta` goes into the sidecar."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"arch": model.arch_name, "arch_kwargs": model.arch_kwargs, "parameters": count_parameters(model),
            **meta}
    state = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()
             if v.is_floating_point()}
    state.update({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not v.is_floating_point()})
    tmp_w, tmp_j = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".json.tmp")
    save_file(state, tmp_w, metadata={"arch": model.arch_name, "arch_kwargs": json.dumps(model.arch_kwargs)})
    tmp_j.write_text(json.dumps(info, indent=2, default=str) + "\n")
    os.replace(tmp_w, path)
    os.replace(tmp_j, sidecar_path(path))
    return path


def read_sidecar(path: str | os.PathLike) -> dict:
    side = sidecar_path(resolve_weights(path))
    return json.loads(side.read_text()) if side.is_file() else {}


def load_weights(source: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the architecture recorded with the weights, load them, and return (model in eval mode, sidecar)."""
    path = resolve_weights(source)
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            header = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise SharpkdError(f"{path}: not a readable safetensors weights file ({exc})") from None
    meta = read_sidecar(path)
    arch = meta.get("arch") or header.get("arch")
    kwargs = meta.get("arch_kwargs") or json.loads(header.get("arch_kwargs", "{}"))
    if not arch:
        raise SharpkdError(f"{path}: no architecture recorded in the file or its sidecar")
    model = build_model(arch, **kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise SharpkdError(f"{path}: weights do not fit the {arch} architecture ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), meta
