"""Fixed bit-width baseline: NNI's own ``QATQuantizer`` or ``LsqQuantizer`` on the same layers.

Same targets as the learned quantizer (weights and inputs of every ``Conv1d``/``Linear``), all at
``bits``: weights ``int{bits}`` symmetric; inputs ``int{bits}`` symmetric, or ``uint{bits}`` when
non-negative (post-ReLU), affine for QAT (its symmetric ``uint`` mode puts the zero point mid-range)
and symmetric for LSQ (the only scheme it supports); the raw waveform at ``input_bits``.
"""
from __future__ import annotations

from typing import Dict, Sequence, Type

import torch
from nni.compression.base.compressor import Quantizer
from nni.compression.quantization import LsqQuantizer, QATQuantizer
from nni.compression.utils import Evaluator

from .prepare import config_list

__all__ = ["FIXED_QUANTIZERS", "fixed_quantizer"]

FIXED_QUANTIZERS: Dict[str, Type[Quantizer]] = {"qat": QATQuantizer, "lsq": LsqQuantizer}


def fixed_quantizer(model: torch.nn.Module, unsigned: dict[str, bool], bits: int, evaluator: Evaluator,
                    algorithm: str = "qat", *, input_layers: Sequence[str] = (),
                    input_bits: int | None = None) -> Quantizer:
    """NNI's QAT (``algorithm='qat'``) or LSQ quantizer on ``model`` at ``bits`` for every target.

    ``unsigned``: ``{layer: input is non-negative}`` from :func:`~nni_kws.quant.prepare.unsigned_inputs`;
    the inputs of ``input_layers`` (which read the raw waveform) get ``input_bits`` instead, if given.
    """
    if algorithm not in FIXED_QUANTIZERS:
        raise ValueError(f"fixed quantizer must be one of {sorted(FIXED_QUANTIZERS)}, got {algorithm!r}")
    scheme = "affine" if algorithm == "qat" else "symmetric"
    configs = config_list(unsigned, bits, unsigned_scheme=scheme, input_layers=input_layers, input_bits=input_bits)
    return FIXED_QUANTIZERS[algorithm](model, configs, evaluator)
