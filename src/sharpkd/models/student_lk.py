"""LargeKernelStudentUNet: the seed student with 7x7 depthwise kernels, at ~20K parameters.

Evaluated by blur kind and strength, the seed student's gap to the teacher is in long motion blur (lengths
11-15 px: SSIM 0.795 against the teacher's 0.880, from 0.765 blurry), not in Gaussian blur. Undoing a long
motion blur takes long, oriented filters. A depthwise kernel costs k*k weights per channel, so 7x7 kernels are
cheap in parameters; they are paid for by replacing the 2x2 transposed convs (40% of the seed student's weights)
with a 1x1 conv and nearest 2x upsampling. Every depthwise kernel but the first (on the 3 input channels) is 7x7,
and an output pixel sees 56-59 px of input each way, against 21-22 px for the seed student and the teacher
(measured from the gradient of one output pixel). Everything else is the seed student's."""
from __future__ import annotations

from torch import nn

from .common import RestorationNet, SeparableConv, upsample
from .registry import register_model
from .student import DilatedBottleneck, LightStudentUNet


@register_model("student_lk")
class LargeKernelStudentUNet(RestorationNet):
    """Separable encoder/decoder with 7x7 depthwise kernels, a 7x7 dilated bottleneck, additive skips."""

    def __init__(self, width: int = 16, residual: bool = False, kernel: int = 7):
        super().__init__(residual)
        c1, c2, c3 = width, 2 * width, 4 * width
        self.enc1 = nn.Sequential(SeparableConv(3, c1), SeparableConv(c1, c1, kernel))
        self.enc2 = nn.Sequential(SeparableConv(c1, c2, kernel), SeparableConv(c2, c2, kernel))
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DilatedBottleneck(c2, c3, kernel)
        self.up2 = upsample(c3, c2)
        self.dec2 = nn.Sequential(SeparableConv(c2, c2, kernel), SeparableConv(c2, c2, kernel))
        self.up1 = upsample(c2, c1)
        self.dec1 = SeparableConv(c1, c1, kernel)
        self.refine = nn.Sequential(nn.Conv2d(c1, c1, 3, padding=1), nn.LeakyReLU(0.1, inplace=True))
        self.head = nn.Conv2d(c1, 3, 1)
        self.init_output()

    body = LightStudentUNet.body  # the seed student's forward: the same layers by the same names
