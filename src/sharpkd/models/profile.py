"""Multiply-accumulates of a forward pass, from PyTorch's FLOP counter (convolutions are the only heavy layers
here; it counts them exactly, 2 FLOPs per MAC)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def count_macs(model: nn.Module, height: int, width: int) -> int:
    """MACs of one forward pass on a 1x3xHxW input (convolutions, transposed convolutions, matrix products)."""
    was_training = model.training
    device = next(model.parameters()).device
    try:
        with FlopCounterMode(display=False) as counter:
            model.eval()(torch.zeros(1, 3, height, width, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
