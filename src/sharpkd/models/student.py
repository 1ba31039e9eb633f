"""LightStudentUNet: the seed's ~20K-parameter depthwise-separable U-Net, distilled from the teacher."""
from __future__ import annotations

import torch
from torch import nn

from .common import RestorationNet, SeparableConv
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


@register_model("student")
class LightStudentUNet(RestorationNet):
    """Separable encoder/decoder, dilated bottleneck, additive skips, a full-resolution refinement conv."""

    def __init__(self, width: int = 16, residual: bool = False):
        super().__init__(residual)
        c1, c2, c3 = width, 2 * width, 4 * width
        self.enc1 = nn.Sequential(SeparableConv(3, c1), SeparableConv(c1, c1))
        self.enc2 = nn.Sequential(SeparableConv(c1, c2), SeparableConv(c2, c2))
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DilatedBottleneck(c2, c3)
        self.up2 = nn.ConvTranspose2d(c3, c2, 2, stride=2)
        self.dec2 = nn.Sequential(SeparableConv(c2, c2), SeparableConv(c2, c2))
        self.up1 = nn.ConvTranspose2d(c2, c1, 2, stride=2)
        self.dec1 = SeparableConv(c1, c1)
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
