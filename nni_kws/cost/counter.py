"""Costs of any torch model with the definitions of :mod:`nni_kws.cost.exact` (for peers and searched nets alike).

The space's :class:`~nni_kws.cost.CostModel` reads its tables off frozen models with forward hooks on
leaf modules; this counter runs the same hooks (:func:`~nni_kws.cost.layers.read_layers`) on an
arbitrary model and feeds the same :func:`~nni_kws.cost.exact.exact_costs`, so a hand-designed
peer and a searched architecture are costed by one code path (a test checks that the two agree
exactly on frozen space models).

Peak activation follows the project's rule: the largest input + output of an allocating layer,
plus the block input for layers inside a module with ``has_skip = True`` (an identity shortcut).
Tensors kept alive by other means (e.g. BC-ResNet's broadcast branch) are not seen, so for such
models the figure is a lower bound.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from .exact import exact_costs
from .layers import Bits, Layer, Unit, read_layers

__all__ = ["count_costs", "model_units"]


def _residual_block(layer: Layer, blocks: list[str]) -> str | None:
    """The innermost ``has_skip`` module holding ``layer``."""
    holders = [b for b in blocks if layer.name.startswith(b + ".")]
    return max(holders, key=len) if holders else None


def model_units(model: nn.Module, input_samples: int = 16000, include_frontend: bool = True) -> list[Unit]:
    """The model's layers grouped into units: one per residual block (``has_skip``), one per other layer."""
    layers = read_layers(model, input_samples, include_frontend)
    blocks = [name for name, m in model.named_modules() if name and getattr(m, "has_skip", False)]
    units: list[Unit] = []
    group: list[Layer] = []
    current: str | None = None
    for layer in layers + [None]:  # type: ignore[list-item]  # None flushes the last group
        block = _residual_block(layer, blocks) if layer is not None else None
        if group and (block is None or block != current):
            units.append(Unit(current or group[0].name, "block" if current else "layer", (), tuple(group),
                              residual=current is not None))
            group = []
        if layer is None:
            break
        current = block
        if block is None:
            units.append(Unit(layer.name, "layer", (), (layer,)))
        else:
            group.append(layer)
    return units


def count_costs(model: nn.Module, input_samples: int = 16000, bits: Bits = 32, act_bits: int = 32,
                default_bits: int = 32, include_frontend: bool = True) -> dict[str, Any]:
    """``params``, ``macs``, ``frontend_macs``, ``ops``, ``weight_bytes``, ``peak_activation_bytes`` of a model
    taking ``[B, 1, input_samples]`` (definitions in :mod:`nni_kws.cost.exact`; ``latency_ms`` is None)."""
    units = model_units(model, input_samples, include_frontend)
    costs = exact_costs(units, bits, act_bits, default_bits)
    leaf_params = costs["params"]
    costs["params"] = sum(p.numel() for p in model.parameters())
    if costs["params"] != leaf_params:  # a parameter outside every leaf would escape weight_bytes
        raise ValueError(f"{type(model).__name__}: {costs['params'] - leaf_params} parameters sit outside leaf "
                         "modules; the counter cannot attribute them to a layer")
    return costs
