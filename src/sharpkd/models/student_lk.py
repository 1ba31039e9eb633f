"""LargeKernelStudentUNet: the seed student with 7x7 depthwise kernels, at ~20K parameters.

Evaluated by blur kind and strength, the seed student's gap to the teacher is in long motion blur (lengths
11-15 px), not in Gaussian blur. Undoing a long
motion blur takes long, oriented filters. A depthwise kernel costs k*k weights per channel, so 7x7 kernels are
cheap in parameters; they are paid for by replacing the 2x2 transposed convs (40% of the seed student's weights)
with a 1x1 conv and nearest 2x upsampling. Every depthwise kernel but the first (on the 3 input channels) is 7x7,
and an output pixel sees 56-59 px of input each way, against 21-22 px for the seed student and the teacher
(measured from the gradient of one output pixel). Everything else is the seed student's."""
from __future__ import annotations

from .registry import register_model
from .student import StudentUNet


@register_model("lk_unet")
class LargeKernelStudentUNet(StudentUNet):
    """Separable encoder/decoder with 7x7 depthwise kernels, a 7x7 dilated bottleneck, nearest upsampling."""

    def __init__(self, width: int = 16, residual: bool = False, kernel: int = 7):
        super().__init__(width, residual, kernel=kernel, upsampling="nearest")
