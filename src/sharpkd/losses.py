"""Training losses: the teacher's CombinedLoss and the student's KDLoss, computed in fp32 with autocast off
(inside a bf16-mixed training step, SSIM in bf16 is too coarse to train on)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .metrics import image_mse, ssim


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3,
                reduction: str = "mean") -> torch.Tensor:
    """Mean of sqrt((pred - target)^2 + eps^2): L1 with a smooth minimum. Its gradient keeps its size as the
    error shrinks (MSE's vanishes), so small errors on nearly clean frames still count. `reduction="image"`:
    one value per image, shape (B,)."""
    err = torch.sqrt((pred - target).pow(2) + eps * eps)
    return err.flatten(1).mean(1) if reduction == "image" else err.mean()


PIXEL_LOSSES = ("mse", "relative")
RELATIVE_FLOOR = 1e-5  # added to the input's MSE: caps the weight of a nearly perfect input (50 dB)


def relative_weights(inp: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image weights proportional to 1 / the input's Charbonnier error, with mean 1 over the batch (shape
    (B,)): a frame's pixel error counts relative to how far its input already was, so a good frame (input
    L1 ~0.007) weighs about 4x a degraded one (~0.03) instead of less. The metric is a mean of per-image PSNRs;
    a batch-mean pixel loss lets the degraded frames' large errors outvote a good frame's damage."""
    w = 1 / charbonnier(inp, target, reduction="image")
    return w / w.mean()


class CombinedLoss(nn.Module):
    """mse_weight * MSE + ssim_weight * (1 - SSIM) [+ charbonnier_weight * Charbonnier] against ground truth.

    `relative=True` weighs each image's pixel terms (MSE, Charbonnier) by `relative_weights` of its input; it
    needs the input."""

    def __init__(self, mse_weight: float = 0.5, ssim_weight: float = 0.5, charbonnier_weight: float = 0.0,
                 relative: bool = False):
        super().__init__()
        self.mse_weight, self.ssim_weight, self.charbonnier_weight = mse_weight, ssim_weight, charbonnier_weight
        self.relative = relative

    @torch.autocast("cpu", enabled=False)
    @torch.autocast("cuda", enabled=False)
    def forward(self, pred: torch.Tensor, target: torch.Tensor, inp: torch.Tensor | None = None) -> torch.Tensor:
        pred, target = pred.float(), target.float()
        pixel = self.mse_weight * image_mse(pred, target)  # per image: images of a batch share one size
        if self.charbonnier_weight:
            pixel = pixel + self.charbonnier_weight * charbonnier(pred, target, reduction="image")
        if self.relative:
            if inp is None:
                raise ValueError("CombinedLoss(relative=True) needs the input")
            pixel = pixel * relative_weights(inp.float(), target)
        return pixel.mean() + self.ssim_weight * (1 - ssim(pred, target))


class KDLoss(nn.Module):
    """alpha * MSE(student, teacher) + beta * MSE(student, GT) + gamma * (1 - SSIM(student, GT)).

    With `teacher=None` (or alpha=0) the teacher term is dropped: the no-KD ablation. With `guard=True` the
    teacher term of a sample whose teacher output is further from the ground truth (MSE) than the input itself
    pulls toward the input instead: where the teacher would damage a frame (a good frame, mostly), the student
    learns to leave it alone rather than copy the damage.

    `pixel="relative"` divides each image's squared error, in both MSE terms, by its input's MSE against the
    ground truth. MSE averages errors over the batch, so a good frame (input error ~1e-4) barely counts beside
    a bad one (~1e-3): a student trained on it damaged good frames by more than it gained on bad ones. `relative`
    counts each frame by its error relative to its input's, as a mean PSNR does (its first-order change), without
    the log's pull toward an exact copy (a PSNR loss, log MSE -> -inf as a guarded target is matched, trained the
    student into the identity)."""

    def __init__(self, alpha: float = 0.7, beta: float = 0.3, gamma: float = 0.1, guard: bool = False,
                 pixel: str = "mse"):
        super().__init__()
        if pixel not in PIXEL_LOSSES:
            raise ValueError(f"pixel loss {pixel!r}: choose from {', '.join(PIXEL_LOSSES)}")
        self.alpha, self.beta, self.gamma, self.guard, self.pixel = alpha, beta, gamma, guard, pixel

    @staticmethod
    def guarded(teacher: torch.Tensor, inp: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per sample, the teacher's output or the input, whichever is closer to the ground truth (MSE; the
        teacher on a tie)."""
        closer = image_mse(teacher, target) <= image_mse(inp, target)
        return torch.where(closer[:, None, None, None], teacher, inp)

    @torch.autocast("cpu", enabled=False)
    @torch.autocast("cuda", enabled=False)
    def forward(self, student: torch.Tensor, target: torch.Tensor,
                teacher: torch.Tensor | None = None,
                inp: torch.Tensor | None = None) -> torch.Tensor:
        student, target = student.float(), target.float()
        if inp is None and (self.pixel == "relative" or (self.guard and teacher is not None and self.alpha)):
            raise ValueError(f"KDLoss(guard={self.guard}, pixel={self.pixel!r}) needs the input")
        if self.pixel == "relative":
            scale = 1 / (image_mse(inp.float(), target) + RELATIVE_FLOOR)

            def pixel(a, b):
                return (image_mse(a, b) * scale).mean()
        else:
            pixel = F.mse_loss
        loss = self.beta * pixel(student, target) + self.gamma * (1 - ssim(student, target))
        if teacher is not None and self.alpha:
            teacher = self.guarded(teacher.float(), inp.float(), target) if self.guard else teacher.float()
            loss = loss + self.alpha * pixel(student, teacher)
        return loss
