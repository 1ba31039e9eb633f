"""Saving and loading weights: a `.safetensors` file (no pickle) and a JSON sidecar saying what it is and
how it was trained. Training, inference, export and the app all go through here."""
from __future__ import annotations

import difflib
import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import SharpkdError
from .common import count_parameters
from .registry import MODELS, build_model

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
SUFFIX = ".safetensors"
# the architectures' earlier registry names: weights saved under them still load
RENAMED_ARCHS = {"teacher": "unet", "teacher_deep": "unet_deep", "student": "ds_unet", "student_fast": "fast_unet",
                 "student_lk": "lk_unet"}


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def shipped_names() -> list[str]:
    """The models shipped in the package: every weights file in the weights folder with a JSON sidecar beside it."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob(f"*{SUFFIX}") if sidecar_path(p).is_file())


def shipped_weights_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}{SUFFIX}"


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_weights(source: str | os.PathLike) -> Path:
    """The weights file of `source`: a shipped model's name, a .safetensors path, or a run folder (its
    model.safetensors). Every part of the package that loads weights finds them here. An unknown name is a
    one-line error that lists the shipped ones."""
    s = str(source)
    names = shipped_names()
    if s in names:
        return shipped_weights_path(s)
    path = Path(s)
    if path.is_dir():
        path = path / f"model{SUFFIX}"
    if path.is_file():
        return path
    if s and path.name == s and not path.suffix:  # a bare word: meant as a model's name
        close = difflib.get_close_matches(s, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SharpkdError(f"unknown model {s!r}{hint}; shipped models: {', '.join(names) or 'none'} "
                           f"(or give a {SUFFIX} path)")
    raise SharpkdError(f"weights file not found: {path}")


def model_name(source: str | os.PathLike) -> str:
    """How outputs name a model: the shipped name, else the weights file's stem (the run folder's name for a
    run's model.safetensors)."""
    path = Path(str(source))
    if str(source) in shipped_names() or not path.suffix and not path.is_dir():
        return str(source)
    if path.is_dir() or path.name == f"model{SUFFIX}":
        return (path if path.is_dir() else path.parent).resolve().name
    return path.stem


def describe_model(name: str, model: nn.Module | None, meta: dict | None = None) -> str:
    """'student (LightStudentUNet, 20,702 parameters)': a model's name, class and size, for command output."""
    meta = meta or {}
    if model is not None:
        return f"{name} ({type(model).__name__}, {count_parameters(model):,} parameters)"
    arch = meta.get("arch")
    return f"{name} ({arch})" if arch else name


SHARED_DATA_ENV = "SHARPKD_SHARED_DATA"


def portable_data(data: dict) -> dict:
    """A sidecar's `data` entry without the training machine's paths: `folder` relative to the data root named in
    `root`: `$SHARPKD_SHARED_DATA` when the folder is inside it, else the folder itself (by its name)."""
    folder = data.get("folder")
    if not folder or not Path(folder).is_absolute():
        return data
    folder, shared = Path(folder).resolve(), os.environ.get(SHARED_DATA_ENV)
    rest = {k: v for k, v in data.items() if k not in ("root", "folder")}
    if shared and folder.is_relative_to(Path(shared).resolve()):
        return {"root": f"${SHARED_DATA_ENV}", "folder": folder.relative_to(Path(shared).resolve()).as_posix(), **rest}
    return {"root": folder.name, "folder": ".", **rest}


def portable_weights(ref: str, run: str | os.PathLike) -> str:
    """A weights reference in a sidecar: a shipped name stays; a file with the same bytes as a shipped model
    becomes its name; a relative path stays as the command gave it; an absolute one is written relative to the
    run folder `run`."""
    names = shipped_names()
    if ref in names:
        return ref
    path = Path(ref)
    if path.is_file():
        size, sha = path.stat().st_size, None
        for name in names:
            shipped = shipped_weights_path(name)
            if shipped.stat().st_size == size and (sha := sha or file_sha256(path)) == file_sha256(shipped):
                return name
    if path.is_absolute():
        return Path(os.path.relpath(path, Path(run).resolve())).as_posix()
    return ref


def portable_meta(meta: dict, run: str | os.PathLike) -> dict:
    """`meta` (and each of its `stages`) with its paths made portable (see `portable_data`, `portable_weights`):
    no absolute path of the training machine goes into a sidecar."""
    meta = dict(meta)
    if isinstance(meta.get("data"), dict):
        meta["data"] = portable_data(meta["data"])
    for key in ("teacher", "init_weights"):
        if isinstance(meta.get(key), dict) and isinstance(meta[key].get("weights"), str):
            meta[key] = {**meta[key], "weights": portable_weights(meta[key]["weights"], run)}
    if isinstance(meta.get("stages"), list):
        meta["stages"] = [portable_meta(stage, run) for stage in meta["stages"]]
    return meta


# The sidecar: what every weights file the project writes says of itself, one schema (`sidecar_problems` checks
# it). Training writes the first group; `role` and `purpose` are written by hand, `speed` and `suite` by
# scripts/zoo_speed.py and scripts/zoo_suite.py, and every writer keeps the keys it does not write.
SIDECAR = {
    "arch": "the registered architecture", "arch_kwargs": "its options", "parameters": "the parameter count",
    "recipe": "the training recipe that rebuilds it (`sharpkd train RECIPE`; null for a run of train-teacher "
              "or distill)",
    "command": "the command that wrote the file (null where none did: sidecars older than the recipes)",
    "data": "the last stage's data: what the model is trained for (its `preset`)",
    "stages": "every training stage that led to the weights, first to last (keys: STAGE)",
    "finishing": "steps after training: `core` (coring threshold, 8-bit steps), `dtype` (storage type)",
    "git_commit": "the code that wrote the file", "torch": "the PyTorch version that wrote it",
    "notes": "facts of how it was made that no other key holds", "curves": "its training-curves PNG",
    "role": "what it is for, in a few words", "purpose": "what it is for", "speed": "its 1280x720 speed",
    "suite": "its benchmark-suite figures",
}
STAGE = {
    "name": "RECIPE/STAGE for a stage of a recipe, else the run folder's name",
    "command": "the command that started the stage", "config": "its base config (src/sharpkd/configs)",
    "data": "its data: folder relative to the data root, preset, images, pairs", "training": "its settings",
    "teacher": "the teacher it was distilled from (null: trained on ground truth)",
    "init_weights": "the weights it started from (null: from scratch)", "epochs": "epochs trained",
    "best_epoch": "the epoch whose weights it kept", "val_metrics": "that epoch's validation metrics",
    "wall_time_s": "training time, all sittings", "hardware": "where it trained",
    "sittings": "each start or resume: command, epochs, start time, wall time, hardware",
    "git_commit": "the code it trained with", "torch": "the PyTorch version it trained with",
    "note": "facts of the stage that no other key holds",
}
FINISHING = ("core", "dtype", "command", "note")
SIDECAR_REQUIRED, STAGE_REQUIRED = ("arch", "arch_kwargs", "parameters", "stages"), ("name", "command")


def sidecar_problems(meta: dict) -> list[str]:
    """What in `meta` does not follow the sidecar schema (SIDECAR, STAGE, FINISHING): missing or unknown keys."""
    problems = [f"missing {k}" for k in SIDECAR_REQUIRED if k not in meta]
    problems += [f"unknown key {k}" for k in meta if k not in SIDECAR]
    problems += [f"finishing: unknown key {k}" for k in meta.get("finishing") or {} if k not in FINISHING]
    for i, stage in enumerate(meta.get("stages") or []):
        problems += [f"stage {i + 1}: missing {k}" for k in STAGE_REQUIRED if k not in stage]
        problems += [f"stage {i + 1}: unknown key {k}" for k in stage if k not in STAGE]
    return problems


def save_weights(model: nn.Module, path: str | os.PathLike, dtype: torch.dtype = torch.float32, **meta) -> Path:
    """Write `path` (.safetensors) and its JSON sidecar atomically. `meta` goes into the sidecar (SIDECAR), its
    paths made portable (`portable_meta`). `dtype` stores the parameters (torch.float16: half the file);
    buffers such as BatchNorm statistics stay float32. Loading casts them back to float32."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"arch": model.arch_name, "arch_kwargs": model.arch_kwargs, "parameters": count_parameters(model),
            **portable_meta(meta, path.parent)}
    params = {name for name, _ in model.named_parameters()}
    state = {k: v.detach().to(dtype if k in params else torch.float32).contiguous().cpu()
             for k, v in model.state_dict().items() if v.is_floating_point()}
    state.update({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not v.is_floating_point()})
    tmp_w, tmp_j = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".json.tmp")
    save_file(state, tmp_w, metadata={"arch": model.arch_name, "arch_kwargs": json.dumps(model.arch_kwargs)})
    tmp_j.write_text(json.dumps(info, indent=2, default=str) + "\n")
    os.replace(tmp_w, path)
    os.replace(tmp_j, sidecar_path(path))
    return path


def read_sidecar(path: str | os.PathLike) -> dict:
    """The JSON sidecar of the weights `path` ({} where there is none); a damaged one is a one-line error."""
    side = sidecar_path(resolve_weights(path))
    if not side.is_file():
        return {}
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        raise SharpkdError(f"{side}: damaged sidecar, not readable JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise SharpkdError(f"{side}: damaged sidecar, a JSON object expected, not {type(meta).__name__}")
    return meta


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
    where = sidecar_path(path) if meta.get("arch") else path  # the file that records the architecture
    try:
        arch = meta.get("arch") or header.get("arch")
        kwargs = meta.get("arch_kwargs") or json.loads(header.get("arch_kwargs", "{}"))
    except ValueError as exc:
        raise SharpkdError(f"{path}: damaged arch_kwargs in the file's metadata ({exc})") from None
    if not arch:
        raise SharpkdError(f"{path}: no architecture recorded in the file or its sidecar")
    arch = RENAMED_ARCHS.get(str(arch), arch)
    if not isinstance(arch, str) or arch not in MODELS:
        raise SharpkdError(f"{where}: unknown architecture {arch!r}; known: {', '.join(sorted(MODELS))}")
    if not isinstance(kwargs, dict):
        raise SharpkdError(f"{where}: arch_kwargs must be a JSON object, not {type(kwargs).__name__}")
    try:
        model = build_model(arch, **kwargs)
    except (SharpkdError, TypeError, ValueError, RuntimeError) as exc:  # options the architecture cannot take
        raise SharpkdError(f"{where}: {arch} cannot be built with arch_kwargs {json.dumps(kwargs)} "
                           f"({str(exc).splitlines()[0]})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise SharpkdError(f"{path}: weights do not fit the {arch} architecture ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), meta


DTYPES = {"float32": torch.float32, "float16": torch.float16}


def finish_weights(source: str | os.PathLike, dst: str | os.PathLike, core: float | None = None,
                   dtype: str | None = None, **meta) -> Path:
    """Write the weights of `source` to `dst` finished. `core`: the same tensors rebuilt with the residual cored
    by that many 8-bit steps (arch_kwargs `shrink`: changes smaller than it are dropped, larger ones shrunk by it);
    `dtype`: the storage type of the parameters (float16 or float32; default: the source's). The sidecar is the
    source's with its `finishing` updated and `meta` on top."""
    model, side = load_weights(source)
    dtype = dtype or (side.get("finishing") or {}).get("dtype", "float32")
    if dtype not in DTYPES:
        raise SharpkdError(f"dtype {dtype!r}: choose from {', '.join(DTYPES)}")
    if core is not None:
        if core < 0:
            raise SharpkdError(f"coring threshold {core}: must be >= 0 (8-bit steps)")
        try:
            cored = build_model(model.arch_name, **{**model.arch_kwargs, "shrink": float(core)})
        except (SharpkdError, ValueError) as exc:  # no `shrink` option, or not a residual model
            raise SharpkdError(f"{source}: {model.arch_name} cannot core its residual ({exc})") from None
        cored.load_state_dict(model.state_dict())
        model = cored.eval()
    finishing = {**(side.get("finishing") or {}), **({} if core is None else {"core": float(core)}), "dtype": dtype}
    kept = {k: v for k, v in side.items() if k not in ("arch", "arch_kwargs", "parameters")}
    return save_weights(model, dst, dtype=DTYPES[dtype], **{**kept, "finishing": finishing, **meta})


def load_or_build(source: str | os.PathLike) -> tuple[nn.Module, dict, bool]:
    """(model, sidecar, trained): the weights of `source` (as `load_weights`), or, when `source` names an
    architecture (`ds_unet`, not a shipped model), that architecture untrained (seeded, the global RNG
    untouched): speed does not depend on the weights (`sharpkd bench --models fast_unet`)."""
    if str(source) in MODELS and str(source) not in shipped_names():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return build_model(str(source)).eval(), {}, False
    model, meta = load_weights(source)
    return model, meta, True
