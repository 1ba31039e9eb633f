"""The frozen teacher's outputs on the fixed training pairs, computed once and kept on disk.

Distillation then costs a student step per sample instead of a teacher forward pass plus a student step
(more samples per second: scripts/bench_kd_cache.py measures it). The file is named by a hash of the
teacher's weights and of the blurry inputs, so it is reused exactly when both are the same (runs with other
--seed values share it; another --split-seed makes other pairs, hence another file)."""
from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from safetensors.torch import load_file, save_file
from torch import nn

from ..data import to_uint8
from ..fileio import atomic_path

log = logging.getLogger("sharpkd")


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()[:20]


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, blurry: torch.Tensor, batch: int = 64, bf16: bool = True) -> torch.Tensor:
    """The teacher's outputs (uint8) on uint8 inputs, batch by batch; bf16 autocast as in training."""
    teacher = teacher.eval()
    device = next(teacher.parameters()).device
    out = torch.empty_like(blurry)
    for i in range(0, len(blurry), batch):
        x = blurry[i:i + batch].to(device).float().div_(255).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out[i:i + batch] = to_uint8(teacher(x).float()).cpu()
    return out


def cached_teacher_outputs(teacher: nn.Module, weights_file: str | os.PathLike, blurry: torch.Tensor,
                           cache_dir: str | os.PathLike) -> torch.Tensor:
    """`teacher_outputs`, read from `cache_dir` when this teacher already ran on these inputs."""
    key = _digest(Path(weights_file).read_bytes(), blurry.numpy().tobytes())
    path = Path(cache_dir) / f"teacher-{key}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    # The processes of a multi-process run (and runs started side by side) need the same file: the first one
    # computes it under the lock, the others wait for it and read it.
    lock = FileLock(f"{path}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("teacher outputs: another process is computing %s; waiting for it", path.name)
        lock.acquire()
    try:
        if path.is_file():
            out = load_file(str(path))["teacher"]
            if out.shape == blurry.shape and out.dtype == torch.uint8:
                log.info("teacher outputs: read %d from %s", len(out), path)
                return out
        started = time.time()
        out = teacher_outputs(teacher, blurry)
        with atomic_path(path) as tmp:
            save_file({"teacher": out}, str(tmp),
                      metadata={"weights": str(weights_file), "pairs": str(len(out))})
        log.info("teacher outputs: %d computed in %.0f s, cached in %s", len(out), time.time() - started, path)
        return out
    finally:
        lock.release()
