"""The students' U-Net (`StudentUNet`) and the seed student, `LightStudentUNet`: a ~20K-parameter
depthwise-separable U-Net distilled from the teacher. The variant in `student_lk` is a configuration of the same
definition."""
from __future__ import annotations

import torch
from torch import nn

from .common import RestorationNet, SeparableConv, upsample
from .registry import register_model


class DilatedBottleneck(nn.Module):
    """Separable conv with dilation 2: a wider receptive field at 1/4 resolution for a few weights.

    On CPU, bf16 autocast with channels_last makes the dilated depthwise conv produce non-finite
    gradients (torch 2.13, oneDNN); it is computed in fp32, which costs little at 1/4 resolution."""

    def __init__(self, cin: int, cout: int, kernel: int = 3):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, kernel, padding=kernel - 1, dilation=2, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1)
        self.act = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            y = self.depthwise(x.float())
        return self.act(self.pointwise(y))


class ChannelNorm(nn.LayerNorm):
    """Layer norm over each pixel's channels of an NCHW tensor (NAFNet's LayerNorm2d; the same at any frame size)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class GatedBlock(nn.Module):
    """x + project(SimpleGate(depthwise(expand(norm(x))))). `project` starts at zero, so the block starts as the
    identity; `norm` is a `ChannelNorm` with `norm=True`, else nothing.

    NAFNet scales the branch by a learned per-channel beta instead; under bf16 autocast that fp32 product with a
    bf16 activation is a mixed-dtype multiply that slows training on a CPU, and a zero-initialised last conv does the same job."""

    def __init__(self, c: int, norm: bool = False):
        super().__init__()
        self.expand = nn.Conv2d(c, 2 * c, 1)
        self.depthwise = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c, bias=False)
        self.project = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)
        self.norm = ChannelNorm(c) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.depthwise(self.expand(self.norm(x))).chunk(2, dim=1)
        return x + self.project(a * b)


class StudentUNet(RestorationNet):
    """The students' U-Net, one definition for the seed student and its variants: a separable encoder at full and
    1/2 resolution, a dilated bottleneck at 1/4, a decoder with additive skips, then a head.

    - `kernel`: the depthwise kernel of every separable conv but the first (on the 3 input channels);
    - `upsampling`: "transposed" (a 2x2 stride-2 transposed conv) or "nearest" (a 1x1 conv then nearest 2x,
      4x fewer weights)."""

    def __init__(self, width: int = 16, residual: bool = False, kernel: int = 3, upsampling: str = "transposed"):
        super().__init__(residual)
        if upsampling not in ("transposed", "nearest"):
            raise ValueError(f"upsampling must be 'transposed' or 'nearest', not {upsampling!r}")
        c1, c2, c3 = width, 2 * width, 4 * width

        def up(cin: int, cout: int) -> nn.Module:
            return nn.ConvTranspose2d(cin, cout, 2, stride=2) if upsampling == "transposed" else upsample(cin, cout)

        self.enc1 = nn.Sequential(SeparableConv(3, c1), SeparableConv(c1, c1, kernel))
        self.enc2 = nn.Sequential(SeparableConv(c1, c2, kernel), SeparableConv(c2, c2, kernel))
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DilatedBottleneck(c2, c3, kernel)
        self.up2 = up(c3, c2)
        self.dec2 = nn.Sequential(SeparableConv(c2, c2, kernel), SeparableConv(c2, c2, kernel))
        self.up1 = up(c2, c1)
        self.dec1 = SeparableConv(c1, c1, kernel)
        self.refine = nn.Sequential(nn.Conv2d(c1, c1, 3, padding=1), nn.LeakyReLU(0.1, inplace=True))
        self.head = nn.Conv2d(c1, 3, 1)
        self.init_output()

    def body(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bottleneck(self.pool(e2))
        d2 = self.dec2(self.up2(b) + e2)
        d1 = self.dec1(self.up1(d2) + e1)
        return self.head(self.refine(d1))


@register_model("ds_unet")
class LightStudentUNet(StudentUNet):
    """The seed student: 3x3 kernels, transposed-conv upsampling, a full-resolution refinement conv."""

    def __init__(self, width: int = 16, residual: bool = False):
        super().__init__(width, residual)
