"""`Sharpener`: a loaded model that sharpens uint8 RGB frames of any size."""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from ..models.weights import load_weights


class Sharpener:
    """Sharpen uint8 HxWx3 RGB arrays with a restoration model (PyTorch backend)."""

    def __init__(self, model: torch.nn.Module, meta: dict | None = None, threads: int | None = None,
                 name: str = "model"):
        if threads:
            torch.set_num_threads(threads)
        self.model, self.meta, self.name = model.eval(), meta or {}, name
        self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def sharpen_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) float in [0, 1] -> same shape."""
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=x.device.type == "cpu"):
            return self.model(x).float().clamp(0, 1)

    def sharpen(self, image: np.ndarray) -> np.ndarray:
        """uint8 HxWx3 RGB -> uint8 HxWx3 RGB of the same size."""
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
        y = self.sharpen_tensor(x)[0]
        return (y.permute(1, 2, 0) * 255 + 0.5).to(torch.uint8).numpy()

    def sharpen_frames(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for f in frames:
            yield self.sharpen(f)


def load(model: str | os.PathLike = "student", backend: str = "torch", threads: int | None = None) -> Sharpener:
    """Load shipped weights by name ('student', 'teacher', 'student_nokd') or a .safetensors path."""
    net, meta = load_weights(model)
    return Sharpener(net, meta, threads=threads, name=str(model))
