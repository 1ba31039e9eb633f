"""Image quality metrics on [0, 1] images (B,3,H,W), computed in fp32. SSIM: 11x11 Gaussian window,
sigma 1.5, data range 1, channel mean (torchmetrics; matches scikit-image's gaussian_weights SSIM)."""
from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


def ssim(pred: torch.Tensor, target: torch.Tensor, reduction: str | None = "elementwise_mean") -> torch.Tensor:
    """Mean SSIM; `reduction=None` gives one value per image."""
    return structural_similarity_index_measure(pred.float(), target.float(), gaussian_kernel=True, sigma=1.5,
                                               kernel_size=11, data_range=1.0, reduction=reduction)


def psnr(pred: torch.Tensor, target: torch.Tensor, reduction: str | None = "elementwise_mean") -> torch.Tensor:
    """PSNR in dB, computed per image then averaged (the usual restoration convention)."""
    per_image = peak_signal_noise_ratio(pred.float(), target.float(), data_range=1.0, reduction="none",
                                        dim=(1, 2, 3))
    return per_image.mean() if reduction == "elementwise_mean" else per_image


def mae(pred: torch.Tensor, target: torch.Tensor, reduction: str | None = "elementwise_mean") -> torch.Tensor:
    per_image = (pred.float() - target.float()).abs().flatten(1).mean(1)
    return per_image.mean() if reduction == "elementwise_mean" else per_image


def quality(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """SSIM, PSNR and MAE of a batch, as plain floats."""
    return {"ssim": ssim(pred, target).item(), "psnr": psnr(pred, target).item(), "mae": mae(pred, target).item()}
