"""GatedStudentUNet: the seed student's U-Net with NAFNet-style gated blocks, at the same ~20K parameters.

In the seed student 40% of the weights sit in one 2x2 transposed conv (64 -> 32 channels, 8.2K parameters).
Here upsampling is a 1x1 conv and nearest 2x (2.1K), and the freed weights buy depth: gated blocks
(1x1 expand to 2c, depthwise 3x3, SimpleGate = product of the two halves, zero-initialised 1x1 project,
residual add; NAFNet, Chen et al. 2022, without its normalisation and global channel
attention, whose statistics would differ between 128-px training crops and full frames). The product of two
learned maps gives the small net multiplicative interactions that stacked LeakyReLU convs must spend width on.
Separable convs, the dilated bottleneck and additive skips are the seed student's."""
from __future__ import annotations

import torch
from torch import nn

from .common import RestorationNet, SeparableConv, upsample
from .registry import register_model
from .student import DilatedBottleneck, LightStudentUNet


class GatedBlock(nn.Module):
    """x + project(SimpleGate(depthwise(expand(x)))). `project` starts at zero, so the block starts as the identity.

    NAFNet scales the branch by a learned per-channel beta instead; under bf16 autocast that fp32 product with a
    bf16 activation is a mixed-dtype multiply that halved the training speed on this CPU (49 against 109
    samples/s for the whole student, 1 thread), and a zero-initialised last conv does the same job."""

    def __init__(self, c: int):
        super().__init__()
        self.expand = nn.Conv2d(c, 2 * c, 1)
        self.depthwise = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c, bias=False)
        self.project = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.depthwise(self.expand(x)).chunk(2, dim=1)
        return x + self.project(a * b)


@register_model("student_gated")
class GatedStudentUNet(RestorationNet):
    """Separable convs + gated blocks at full and half resolution, dilated bottleneck at 1/4, additive skips."""

    def __init__(self, width: int = 16, residual: bool = False):
        super().__init__(residual)
        c1, c2, c3 = width, 2 * width, 4 * width
        self.enc1 = nn.Sequential(SeparableConv(3, c1), GatedBlock(c1))
        self.enc2 = nn.Sequential(SeparableConv(c1, c2), GatedBlock(c2))
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DilatedBottleneck(c2, c3)
        self.up2 = upsample(c3, c2)
        self.dec2 = nn.Sequential(GatedBlock(c2), GatedBlock(c2))
        self.up1 = upsample(c2, c1)
        self.dec1 = nn.Sequential(GatedBlock(c1), GatedBlock(c1))
        self.refine = nn.Identity()  # the gated blocks refine; the seed student's extra conv is left out
        self.head = nn.Conv2d(c1, 3, 3, padding=1)
        self.init_output()

    body = LightStudentUNet.body  # the seed student's forward: the same layers by the same names
