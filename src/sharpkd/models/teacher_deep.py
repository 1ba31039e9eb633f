"""DeepTeacherUNet: the seed teacher with a deeper, wider low-resolution core, grown from a trained `unet`.

The seed teacher sees about +-25 px and has two 3x3 convs at 1/4 resolution. A frame sent at 1/2-1/4 size and
coded there arrives with 8x8 codec blocks enlarged to 16-32 px and detail missing at that scale. This variant
keeps every tensor of the teacher and adds, after its bottleneck, a branch one level lower (1/8 resolution,
twice the bottleneck's width) of layer-normed gated blocks, and more of them at 1/4: an output pixel sees about
+-100 px, for 1.7M more weights and +37% MACs per pixel (a frame's cost stays mostly at full resolution). Every
added path ends in a zero-initialised conv, so the grown model computes exactly what the teacher it starts from does
(`--init-weights` of a trained `unet`), and training only has to add what the small one could not fit."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model
from .student import GatedBlock
from .teacher import TeacherUNet


@register_model("unet_deep")
class DeepTeacherUNet(TeacherUNet):
    """TeacherUNet + a zero-initialised branch at 1/8 resolution and gated blocks at 1/4, after the bottleneck."""

    grows_from = "unet"  # its weights load into this one; the added layers start as the identity
    multiple = 8

    def __init__(self, width: int = 32, dropout: float = 0.3, residual: bool = False, blocks: int = 4,
                 deep_blocks: int = 6):
        super().__init__(width, dropout, residual)
        c3 = 4 * width
        # Layer-normed: without the norms six stacked 256-channel gated blocks diverged under bf16 (non-finite loss
        # after 743 steps at lr 2e-4), each block multiplying two linear maps of its input.
        self.down3 = nn.Conv2d(c3, 2 * c3, 2, stride=2)
        self.deep = nn.Sequential(*[GatedBlock(2 * c3, norm=True) for _ in range(deep_blocks)])
        self.up3 = nn.ConvTranspose2d(2 * c3, c3, 2, stride=2)
        nn.init.zeros_(self.up3.weight)
        nn.init.zeros_(self.up3.bias)
        self.context = nn.Sequential(*[GatedBlock(c3, norm=True) for _ in range(blocks)])

    def middle(self, b: torch.Tensor) -> torch.Tensor:
        return self.context(b + self.up3(self.deep(self.down3(b))))
