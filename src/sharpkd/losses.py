"""Training losses: the teacher's CombinedLoss and the student's KDLoss, computed in fp32 with autocast off
(inside a bf16-mixed training step, SSIM in bf16 is too coarse to train on)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .metrics import ssim


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean of sqrt((pred - target)^2 + eps^2): L1 with a smooth minimum. Its gradient keeps its size as the
    error shrinks (MSE's vanishes), so small errors on nearly clean frames still count."""
    return torch.sqrt((pred - target).pow(2) + eps * eps).mean()


class CombinedLoss(nn.Module):
    """mse_weight * MSE + ssim_weight * (1 - SSIM) [+ charbonnier_weight * Charbonnier] against ground truth."""

    def __init__(self, mse_weight: float = 0.5, ssim_weight: float = 0.5, charbonnier_weight: float = 0.0):
        super().__init__()
        self.mse_weight, self.ssim_weight, self.charbonnier_weight = mse_weight, ssim_weight, charbonnier_weight

    @torch.autocast("cpu", enabled=False)
    @torch.autocast("cuda", enabled=False)
    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target = pred.float(), target.float()
        loss = self.mse_weight * F.mse_loss(pred, target) + self.ssim_weight * (1 - ssim(pred, target))
        if self.charbonnier_weight:
            loss = loss + self.charbonnier_weight * charbonnier(pred, target)
        return loss


class KDLoss(nn.Module):
    """alpha * MSE(student, teacher) + beta * MSE(student, GT) + gamma * (1 - SSIM(student, GT)).

    With `teacher=None` (or alpha=0) the teacher term is dropped: the no-KD ablation. With `guard=True` the
    teacher term of a sample whose teacher output is further from the ground truth (MSE) than the input itself
    pulls toward the input instead: where the teacher would damage a frame (a good frame, mostly), the student
    learns to leave it alone rather than copy the damage."""

    def __init__(self, alpha: float = 0.7, beta: float = 0.3, gamma: float = 0.1, guard: bool = False):
        super().__init__()
        self.alpha, self.beta, self.gamma, self.guard = alpha, beta, gamma, guard

    @staticmethod
    def guarded(teacher: torch.Tensor, inp: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per sample, the teacher's output or the input, whichever is closer to the ground truth."""
        worse = (teacher - target).pow(2).mean((1, 2, 3)) > (inp - target).pow(2).mean((1, 2, 3))
        return torch.where(worse[:, None, None, None], inp, teacher)

    @torch.autocast("cpu", enabled=False)
    @torch.autocast("cuda", enabled=False)
    def forward(self, student: torch.Tensor, target: torch.Tensor, teacher: torch.Tensor | None = None,
                inp: torch.Tensor | None = None) -> torch.Tensor:
        student, target = student.float(), target.float()
        loss = self.beta * F.mse_loss(student, target) + self.gamma * (1 - ssim(student, target))
        if teacher is not None and self.alpha:
            teacher = teacher.float()
            if self.guard:
                if inp is None:
                    raise ValueError("KDLoss(guard=True) needs the input")
                teacher = self.guarded(teacher, inp.float(), target)
            loss = loss + self.alpha * F.mse_loss(student, teacher)
        return loss
