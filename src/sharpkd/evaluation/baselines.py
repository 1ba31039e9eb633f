"""Classical baselines: unsharp masking, and Richardson-Lucy deconvolution given the true kernel (an oracle:
no blind method knows the kernel, so it bounds what classical deconvolution can do here)."""
from __future__ import annotations

import kornia
import numpy as np
import torch

from ..data.degradations import kernel_from_params


def unsharp_mask(x: torch.Tensor, sigma: float = 1.5, amount: float = 1.0) -> torch.Tensor:
    k = 2 * int(np.ceil(3 * sigma)) + 1
    blurred = kornia.filters.gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="reflect")
    return (x + amount * (x - blurred)).clamp(0, 1)


def _stack(kernels: list[np.ndarray]) -> torch.Tensor:
    size = max(k.shape[0] for k in kernels)
    out = np.zeros((len(kernels), size, size), np.float32)
    for i, k in enumerate(kernels):
        o = (size - k.shape[0]) // 2
        out[i, o:o + k.shape[0], o:o + k.shape[1]] = k
    return torch.from_numpy(out)


def richardson_lucy(x: torch.Tensor, kernels: list[np.ndarray], iterations: int = 30, eps: float = 1e-6) -> torch.Tensor:
    """Batched Richardson-Lucy: each image of `x` (B,3,H,W) with its own kernel."""
    k = _stack(kernels).to(x)
    k_flip = torch.flip(k, dims=(-2, -1))
    est = x.clone()
    for _ in range(iterations):
        reblurred = kornia.filters.filter2d(est, k, border_type="reflect")
        est = est * kornia.filters.filter2d(x / (reblurred + eps), k_flip, border_type="reflect")
    return est.clamp(0, 1)


def true_kernels(ops_per_sample: list[list[dict]]) -> list[np.ndarray] | None:
    """The blur kernel of each sample when every sample's degradation is a single known blur."""
    kernels = []
    for ops in ops_per_sample:
        blurs = [o for o in ops if o["op"].endswith("Blur")]
        if len(ops) != 1 or len(blurs) != 1:
            return None
        kernels.append(kernel_from_params(blurs[0]))
    return kernels
