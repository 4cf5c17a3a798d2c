"""Range initialisations of learned quantization grids: ``f(x, signed, levels) -> q_max``."""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["mse_range", "max_range", "percentile_range", "RANGE_INITS"]


def mse_range(x: Tensor, signed: bool, levels: int, candidates: int = 24) -> Tensor:
    """The range ``q_max`` (among fractions of ``max |x|`` down to 5 %) whose ``levels``-level grid
    reconstructs ``x`` with the least squared error: the largest magnitude alone leaves too few
    levels for the bulk of a heavy-tailed activation at 2-4 bits."""
    x = x.flatten().float()
    if x.numel() > 2 ** 20:  # a random subset is as good for choosing one number
        x = x[torch.randint(x.numel(), (2 ** 20,), device=x.device)]
    top = (x.abs().max() if signed else x.max()).clamp_min(1e-8)
    best, best_err = top, float("inf")
    for fraction in torch.logspace(0, math.log10(0.05), candidates).tolist():
        q = top * fraction
        step = q / levels
        err = float(((torch.round(torch.clamp(x, -q if signed else 0, q) / step) * step - x) ** 2).sum())
        if err < best_err:
            best, best_err = q, err
    return best


def max_range(x: Tensor, signed: bool, levels: int) -> Tensor:
    """``q_max = max |x|`` (``max x`` unsigned): nothing clipped, the coarsest grid."""
    return (x.abs().max() if signed else x.max()).clamp_min(1e-8)


def percentile_range(x: Tensor, signed: bool, levels: int, q: float = 0.999) -> Tensor:
    """``q_max`` = the 99.9th percentile of ``|x|`` (of ``x`` unsigned): clips the rarest outliers only."""
    x = x.flatten().float()
    if x.numel() > 2 ** 20:
        x = x[torch.randint(x.numel(), (2 ** 20,), device=x.device)]
    return torch.quantile(x.abs() if signed else x.clamp_min(0), q).clamp_min(1e-8)


#: Range initialisations of :class:`LearnedBitwidthQuantizer`: ``f(x, signed, levels) -> q_max``.
RANGE_INITS = {"mse": mse_range, "max": max_range, "percentile": percentile_range}
