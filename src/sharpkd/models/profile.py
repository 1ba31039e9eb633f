"""Multiply-accumulates of a forward pass, counted exactly for convolutions (the only heavy layers here)."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def count_macs(model: nn.Module, height: int, width: int) -> int:
    """MACs of one forward pass on a 1x3xHxW input (convolutions and transposed convolutions)."""
    total = 0

    def conv_hook(m: nn.Conv2d, inp, out):
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def convt_hook(m: nn.ConvTranspose2d, inp, out):
        nonlocal total
        total += inp[0].numel() * (m.out_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    hooks = [m.register_forward_hook(conv_hook if type(m) is nn.Conv2d else convt_hook)
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    was_training = model.training
    try:
        model.eval()(torch.zeros(1, 3, height, width, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total
