"""FastStudentUNet: the seed student's recipe behind a pixel-unshuffle front end, for real time on a CPU.

Space-to-depth by 2 turns an HxWx3 frame into (H/2)x(W/2)x12 before the first conv, and the head predicts
12 channels that pixel-shuffle back to HxWx3: no layer runs at full resolution, so the work and the
memory traffic per pixel drop about 4x against the seed student (whose most expensive layers are its
full-resolution refinement conv and decoder). Same building blocks (depthwise-separable convs, additive skips,
a dilated bottleneck), about 20K parameters; distilled from the teacher like the seed student
(`sharpkd distill --arch fast_unet`).

`scale=4` unshuffles by 4 (48 channels at 1/4 resolution, then 1/8 and 1/16): a third of the MACs again, and
wider layers for the same time (`width=24, scale=4`: 35K parameters, 0.46 GMACs per 720p frame against 0.73 for
`width=16, scale=2`; `width=32, scale=4`: 60K parameters, 0.73 GMACs). `kernel` sets every depthwise kernel (3: at
1/4 resolution a 3x3 kernel already spans 12 px of the frame; 5 and 7 trained worse there).

`shrink` (with `residual=True`) soft-thresholds the predicted residual by that many 8-bit steps (`r - clip(r, -t, t)`),
the coring of a classic unsharp mask: changes smaller than the threshold are dropped, so a good frame's fine texture
and noise are left alone instead of being nudged. The shipped `student` applies it to weights trained without it
(`sharpkd core`, its recipe's finishing step `core`; fine-tuning with it in place undid its gain, docs/results.md).
A shrinking model's last layer is not zeroed at init: a residual of zero, inside the dead zone, has no gradient.

`luma` (with `residual=True`) predicts one residual plane, added to R, G and B alike: the head writes and the
coring read one full-resolution plane instead of three (the head and what follows it are the model's only
full-resolution work). The shipped `student` is `width=32, scale=4, luma=True`."""
from __future__ import annotations

import torch
from torch import nn

from .common import RestorationNet, SeparableConv, upsample
from .registry import register_model
from .student import DilatedBottleneck


@register_model("fast_unet")
class FastStudentUNet(RestorationNet):
    """Pixel-unshuffle(scale) -> separable U-Net at 1/scale, 1/2scale, 1/4scale resolution -> pixel-shuffle(scale)."""

    # No layer at full resolution: a 3840x2160 frame whole needs little more memory than a small one, so the
    # `Sharpener` tiles only above 4x its default pixel budget.
    auto_tile_pixels = 16_800_000

    def __init__(self, width: int = 16, residual: bool = False, scale: int = 2, kernel: int = 3,
                 shrink: float = 0.0, luma: bool = False):
        super().__init__(residual)
        if shrink < 0 or (shrink and not residual):
            raise ValueError("shrink is a threshold >= 0 on a residual: it needs residual=True")
        if luma and not residual:
            raise ValueError("luma is one residual plane added to R, G and B: it needs residual=True")
        self.shrink = shrink / 255
        self.multiple = 4 * scale  # unshuffle by `scale`, then two 2x poolings
        c1, c2, c3 = width, 2 * width, 4 * width
        # A 2x2 stride-2 conv is exactly pixel-unshuffle(2) followed by a 1x1 conv, and a 2x2 stride-2
        # transposed conv is a 1x1 conv to 12 channels followed by pixel-shuffle(2): the same model, without the
        # two 6-D transposes that cost more than all the convs together in onnxruntime.
        k = kernel
        self.stem = nn.Sequential(nn.Conv2d(3, c1, scale, stride=scale), nn.LeakyReLU(0.1, inplace=True),
                                  SeparableConv(c1, c1, k))
        self.enc2 = nn.Sequential(SeparableConv(c1, c2, k), SeparableConv(c2, c2, k))
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = nn.Sequential(DilatedBottleneck(c2, c3, k), SeparableConv(c3, c3, k))
        self.up2 = upsample(c3, c2)
        self.dec2 = nn.Sequential(SeparableConv(c2, c2, k), SeparableConv(c2, c2, k))
        self.up1 = upsample(c2, c1)
        self.dec1 = SeparableConv(c1, c1, k)
        self.head = nn.Sequential(nn.Conv2d(c1, c1, k, padding=k // 2, groups=c1, bias=False),
                                  nn.ConvTranspose2d(c1, 1 if luma else 3, scale, stride=scale))
        if not shrink:
            self.init_output()

    def input_conv(self) -> nn.Conv2d:
        return self.stem[0]

    def body(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.stem(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bottleneck(self.pool(e2))
        d2 = self.dec2(self.up2(b) + e2)
        d1 = self.dec1(self.up1(d2) + e1)
        r = self.head(d1)
        return r - r.clamp(-self.shrink, self.shrink) if self.shrink else r
