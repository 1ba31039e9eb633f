"""TeacherUNet: the seed's high-capacity U-Net (about 469K parameters)."""
from __future__ import annotations

import torch
from torch import nn

from .common import RestorationNet
from .registry import register_model


class DoubleConv(nn.Sequential):
    """(Conv3x3 - BatchNorm - LeakyReLU) x 2."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1, inplace=True))


@register_model("unet")
class TeacherUNet(RestorationNet):
    """Two poolings, a dropout bottleneck, transposed-conv upsampling and concatenated skips."""

    def __init__(self, width: int = 32, dropout: float = 0.3, residual: bool = False):
        super().__init__(residual)
        c1, c2, c3 = width, 2 * width, 4 * width
        self.enc1, self.enc2 = DoubleConv(3, c1), DoubleConv(c1, c2)
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = nn.Sequential(DoubleConv(c2, c3), nn.Dropout(dropout))
        self.up2, self.dec2 = nn.ConvTranspose2d(c3, c2, 2, stride=2), DoubleConv(2 * c2, c2)
        self.up1, self.dec1 = nn.ConvTranspose2d(c2, c1, 2, stride=2), DoubleConv(2 * c1, c1)
        self.head = nn.Conv2d(c1, 3, 3, padding=1)
        self.init_output()

    def middle(self, b: torch.Tensor) -> torch.Tensor:
        """What follows the bottleneck at 1/4 resolution: nothing here; a grown teacher adds its core."""
        return b

    def body(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.middle(self.bottleneck(self.pool(e2)))
        d2 = self.dec2(torch.cat([self.up2(b), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.head(d1)
