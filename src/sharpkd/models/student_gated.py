"""GatedStudentUNet: the seed student's U-Net with NAFNet-style gated blocks, at the same ~20K parameters.

In the seed student 40% of the weights sit in one 2x2 transposed conv (64 -> 32 channels, 8.2K parameters).
Here upsampling is a 1x1 conv and nearest 2x (2.1K), and the freed weights buy depth: gated blocks
(1x1 expand to 2c, depthwise 3x3, SimpleGate = product of the two halves, zero-initialised 1x1 project,
residual add; NAFNet, Chen et al. 2022, without its normalisation and global channel
attention, whose statistics would differ between 128-px training crops and full frames). The product of two
learned maps gives the small net multiplicative interactions that stacked LeakyReLU convs must spend width on.
Separable convs, the dilated bottleneck and additive skips are the seed student's."""
from __future__ import annotations

from .registry import register_model
from .student import GatedBlock, StudentUNet  # noqa: F401  (GatedBlock: defined with the students' blocks)


@register_model("student_gated")
class GatedStudentUNet(StudentUNet):
    """Separable convs + gated blocks at full and half resolution, dilated bottleneck at 1/4, additive skips."""

    def __init__(self, width: int = 16, residual: bool = False):
        super().__init__(width, residual, upsampling="nearest", gated=True)
