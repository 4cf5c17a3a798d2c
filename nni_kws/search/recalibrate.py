"""BatchNorm recalibration of sub-networks that inherit supernet weights (SPOS, OFA).

A sub-network sliced out of a supernet keeps the supernet's BatchNorm running statistics, which
were accumulated over *other* paths (or over the softmax mixture of all of them), so its eval-mode
accuracy says little about the architecture. Recalibration resets the running statistics and
re-estimates them with a few training batches in train mode; nothing else changes.

Deterministic: the statistics are a plain average over the given batches (``momentum=None``), and
:func:`calibration_batches` draws the batches once, so every candidate sees the same ones.
"""
from __future__ import annotations

import itertools
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .split import supernet_for

__all__ = ["calibration_batches", "recalibrate_bn", "inherited_model"]

Batch = Sequence[torch.Tensor]


def calibration_batches(loader: Iterable[Batch], batches: int) -> list[Batch]:
    """The first ``batches`` batches of ``loader``, kept as tensors so they can be reused."""
    if batches < 0:
        raise ValueError(f"calibration batches must be >= 0, got {batches}")
    return [tuple(t.clone() for t in batch) for batch in itertools.islice(loader, batches)]  # type: ignore[misc]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[Batch], *,
                   device: torch.device | str | None = None) -> nn.Module:
    """Reset every BatchNorm's running statistics and re-estimate them from ``batches`` (in place).

    The model runs in train mode without gradients; each BatchNorm's statistics become the average
    of the per-batch statistics (cumulative moving average). Returns the model in eval mode. A
    model without BatchNorm, or an empty ``batches``, is returned unchanged (in eval mode).
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    batches = list(batches)
    if norms and batches:
        device = device or next(model.parameters()).device
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        model.train()
        try:
            for batch in batches:
                model(batch[0].to(device))
        finally:
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
    return model.eval()


def inherited_model(space: nn.Module, arch: Mapping[str, Any], supernet: nn.Module,
                    batches: Iterable[Batch]) -> nn.Module:
    """The plain model of ``arch`` with the supernet's weights (of its own supernet where the search trained one
    per front end, :mod:`.split`) and recalibrated BatchNorm statistics."""
    from nni_kws.space.mixed_ops import derive_model

    return recalibrate_bn(derive_model(space, arch, supernet_for(supernet, arch)), batches)
