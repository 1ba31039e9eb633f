"""Measuring restorers against ground truth: baselines, reports, the demo."""
from .baselines import richardson_lucy, unsharp_mask
