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

    With `teacher=None` (or alpha=0) the teacher term is dropped: the no-KD ablation."""

    def __init__(self, alpha: float = 0.7, beta: float = 0.3, gamma: float = 0.1):
        super().__init__()
        self.alpha, self.beta, self.gamma = alpha, beta, gamma

    @torch.autocast("cpu", enabled=False)
    @torch.autocast("cuda", enabled=False)
    def forward(self, student: torch.Tensor, target: torch.Tensor, teacher: torch.Tensor | None = None) -> torch.Tensor:
        student, target = student.float(), target.float()
        loss = self.beta * F.mse_loss(student, target) + self.gamma * (1 - ssim(student, target))
        if teacher is not None and self.alpha:
            loss = loss + self.alpha * F.mse_loss(student, teacher.float())
        return loss
