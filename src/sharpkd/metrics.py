"""Image quality metrics on [0, 1] images (B,3,H,W), computed in fp32. SSIM: 11x11 Gaussian window,
sigma 1.5, data range 1, channel mean (torchmetrics; matches scikit-image's gaussian_weights SSIM).

Every metric runs with autocast off: SSIM's variances (E[x^2] - E[x]^2) computed in bf16 are noise, and a
loss built on them trained a teacher that darkened its outputs (far below the input in PSNR)."""
from __future__ import annotations

import functools

import torch
from torchmetrics.functional.image import structural_similarity_index_measure


BORDER = 5  # half the 11x11 window


def fp32(metric):
    @functools.wraps(metric)
    def wrapped(pred: torch.Tensor, target: torch.Tensor, *args, **kwargs):
        with torch.autocast(pred.device.type, enabled=False):
            return metric(pred.float(), target.float(), *args, **kwargs)
    return wrapped


@fp32
def ssim(pred: torch.Tensor, target: torch.Tensor, reduction: str | None = "elementwise_mean") -> torch.Tensor:
    """Mean SSIM; `reduction=None` gives one value per image. As scikit-image does, the 5-pixel border
    where the window leaves the image is left out of the mean (torchmetrics 1.9 averages it in)."""
    _, full = structural_similarity_index_measure(pred, target, gaussian_kernel=True, sigma=1.5, kernel_size=11,
                                                  data_range=1.0, reduction="none", return_full_image=True)
    if min(full.shape[-2:]) > 2 * BORDER:
        full = full[..., BORDER:-BORDER, BORDER:-BORDER]
    per_image = full.flatten(1).mean(1)
    return per_image.mean() if reduction == "elementwise_mean" else per_image


@fp32
def image_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each image of a batch: shape (B,)."""
    return (a - b).pow(2).flatten(1).mean(1)


def psnr(pred: torch.Tensor, target: torch.Tensor, reduction: str | None = "elementwise_mean") -> torch.Tensor:
    """PSNR in dB, computed per image then averaged (the usual restoration convention). A perfect match
    (a flat, saturated crop) counts as 100 dB instead of infinity, so one such image cannot make the mean
    infinite."""
    mse = image_mse(pred, target).clamp_min(1e-10)
    per_image = 10 * torch.log10(1.0 / mse)
    return per_image.mean() if reduction == "elementwise_mean" else per_image


@fp32
def mae(pred: torch.Tensor, target: torch.Tensor, reduction: str | None = "elementwise_mean") -> torch.Tensor:
    per_image = (pred.float() - target.float()).abs().flatten(1).mean(1)
    return per_image.mean() if reduction == "elementwise_mean" else per_image


def quality(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """SSIM, PSNR and MAE of a batch, as plain floats."""
    return {"ssim": ssim(pred, target).item(), "psnr": psnr(pred, target).item(), "mae": mae(pred, target).item()}
