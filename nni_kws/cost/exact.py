"""Exact costs of one architecture from its units, and the torch FLOP counter used to check them.

Definitions (batch 1, one 16,000-sample clip):

- ``params``: ``sum(p.numel())`` of the frozen model (SincConv: 2 per filter, BN: 2 per channel).
- ``macs``: multiply-accumulates of conv and linear layers, front end included:
  ``C_out·T_out·(C_in/groups)·k`` per conv (SincConv: ``C_out·T_out·k``;
  Conv2d: ``C_out·H·W·(C_in/groups)·kh·kw``), ``in·out`` per linear; plus, by default, the MFCC /
  log-mel feature extraction (window, FFT, power, mel, log, DCT; defined in :mod:`nni_kws.cost.frontend`). BN, ReLU,
  pooling, adds and bias adds are not counted. ``ops = 2·macs`` (the FLOPs convention of the paper and of
  ``torch.utils.flop_counter``).
- ``frontend_macs``: the feature-extraction part of ``macs`` (0 for raw-audio front ends, whose
  SincConv or conv is a layer counted above). A cost model built with ``include_frontend=False``
  leaves it out of ``macs`` but still reports it on this line.
- ``weight_bytes``: ``Σ_layers ceil(params · bits / 8)``; ``bits`` is one int or
  ``{layer name: bits}`` (names as in ``model.named_modules()``; unlisted layers at ``default_bits``).
- ``peak_activation_bytes``: MCUNet-style: the largest live set over layers in execution order,
  a live set being a layer's input + output tensors; in-place ops (BN, ReLU, log, dropout) add
  nothing; inside a block with an identity shortcut the block input stays live as well. Times
  ``act_bits / 8``. The input waveform counts as the first layer's input (at ``input_bits``, where given:
  a quantized model reads its waveform at another width than its activations).
- ``latency_ms``: latency-table prediction (sum of unit entries + per-model overhead), or None.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .layers import Bits, Unit

if TYPE_CHECKING:
    from .latency import LatencyTable

__all__ = ["COSTS", "exact_costs", "torch_conv_linear_macs"]

COSTS = ("params", "macs", "frontend_macs", "ops", "weight_bytes", "peak_activation_bytes", "latency_ms")


def exact_costs(units: Sequence[Unit], bits: Bits = 32, act_bits: int = 32, default_bits: int = 32,
                lut: "LatencyTable | None" = None, fallback: str | None = None,
                input_bits: int | None = None) -> dict[str, Any]:
    """All costs of an architecture given as its units (see :meth:`SpaceTable.units`)."""
    peak_bits = max(u.peak_bits(act_bits, input_bits if i == 0 else None) for i, u in enumerate(units))
    macs = sum(u.macs for u in units)
    return {
        "params": sum(u.params for u in units),
        "macs": macs,
        "frontend_macs": sum(u.feature_macs for u in units),
        "ops": 2 * macs,
        "weight_bytes": sum(u.weight_bytes(bits, default_bits) for u in units),
        "peak_activation_bytes": math.ceil(peak_bits / 8),
        "latency_ms": lut.predict(units, fallback) if lut is not None else None,
    }


def torch_conv_linear_macs(model: nn.Module, input_samples: int = 16000) -> int:
    """Half the conv + linear FLOPs that ``torch.utils.flop_counter.FlopCounterMode`` counts for a
    batch-1 forward (``aten.convolution`` and ``aten.addmm``/``aten.mm`` of ``nn.Linear``)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(torch.zeros(1, 1, input_samples))
    counts = counter.get_flop_counts()
    conv = counts["Global"].get(torch.ops.aten.convolution, 0)
    # matmuls inside Linear modules only (the MFCC front end also multiplies matrices)
    linear = sum(flops for scope, ops in counts.items() if scope != "Global" and scope.endswith(_linear_names(model))
                 for op, flops in ops.items() if op in (torch.ops.aten.addmm, torch.ops.aten.mm))
    return (conv + linear) // 2


def _linear_names(model: nn.Module) -> tuple[str, ...]:
    return tuple("." + name for name, m in model.named_modules() if isinstance(m, nn.Linear)) or ("\0",)
