"""Pieces shared by the architectures."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad H and W up to a multiple (reflect where possible) so any input size fits the U-Net."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export():
        # Branch-free for export, so the graph keeps dynamic H and W (a zero pad is a no-op). Reflect needs
        # H, W >= 3: callers of an exported model pad smaller inputs themselves (see inference/onnx_backend).
        return F.pad(x, (0, pw, 0, ph), mode="reflect"), (h, w)
    if ph or pw:
        mode = "reflect" if h > ph and w > pw else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


class SeparableConv(nn.Sequential):
    """Depthwise kxk (optionally dilated) then pointwise 1x1: the student's building block."""

    def __init__(self, cin: int, cout: int, k: int = 3, dilation: int = 1, act: bool = True):
        super().__init__(
            nn.Conv2d(cin, cin, k, padding=dilation * (k // 2), dilation=dilation, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1),
            *([nn.LeakyReLU(0.1, inplace=True)] if act else []))


def upsample(cin: int, cout: int) -> nn.Sequential:
    """1x1 conv then nearest 2x: the students' cheap alternative to a 2x2 transposed conv (4x fewer weights)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 1), nn.Upsample(scale_factor=2, mode="nearest"))


class RestorationNet(nn.Module):
    """Base of the fully convolutional restorers: pads any HxW to `multiple`, crops back, output in [0, 1].

    Subclasses implement `body(x) -> raw output`. With `residual=False` (the seed recipe) the output is
    sigmoid(raw); with `residual=True` it is clamp(x + raw), a global residual variant."""

    multiple = 4

    def __init__(self, residual: bool = False):
        super().__init__()
        self.residual = residual

    def body(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def input_conv(self) -> nn.Conv2d | None:
        """The conv through which alone `body` reads its input, if there is one: scaling its weights scales the
        input (the uint8 frames graph folds its 1/255 into them). None: the input is read otherwise too."""
        return None

    def init_output(self) -> None:
        """With a global residual, start as the identity: zero the last layer of `self.head` (a short teacher run
        started this way ends above the input, one with the default initialisation below it)."""
        if self.residual:
            last = [m for m in self.head.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))][-1]
            nn.init.zeros_(last.weight)
            if last.bias is not None:
                nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, (h, w) = pad_to_multiple(x, self.multiple)
        raw = self.body(padded)[..., :h, :w]
        if self.residual:
            return (x + raw.to(x.dtype)).clamp(0, 1)
        return torch.sigmoid(raw)


def dihedral(x, k: int, inverse: bool = False):
    """The k-th (0-7) of the eight flips and transposes of the last two axes (bit 0: flip W, bit 1: flip H,
    bit 2: swap H and W), or its inverse; on a torch tensor or a numpy array."""
    flip = (lambda a, axis: a.flip(axis)) if isinstance(x, torch.Tensor) else np.flip
    ops = (lambda a: flip(a, -1), lambda a: flip(a, -2), lambda a: a.swapaxes(-1, -2))
    bits = [i for i in range(3) if k >> i & 1]
    for i in reversed(bits) if inverse else bits:
        x = ops[i](x)
    return x


class SelfEnsemble(nn.Module):
    """A restorer averaged over transforms of its input (each output mapped back): `n=2` the horizontal flip,
    `n=8` all flips and transposes. n times the compute for a better output (docs/results.md)."""

    def __init__(self, model: nn.Module, n: int = 8):
        super().__init__()
        if n not in (1, 2, 8):
            raise ValueError(f"self-ensemble of 1, 2 or 8 transforms, not {n}")
        self.model, self.n = model, n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(dihedral(self.model(dihedral(x, k)), k, inverse=True) for k in range(self.n)) / self.n


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
