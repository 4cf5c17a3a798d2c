"""Fixed bit-width baseline: NNI's own ``QATQuantizer`` or ``LsqQuantizer`` on the same layers.

Same targets as the learned quantizer (weights and inputs of every ``Conv1d``/``Linear``), all at
``bits``: weights ``int{bits}`` symmetric; inputs ``int{bits}`` symmetric, or ``uint{bits}`` when
non-negative (post-ReLU), affine for QAT (its symmetric ``uint`` mode puts the zero point mid-range)
and symmetric for LSQ (the only scheme it supports); the raw waveform at ``input_bits``.

NNI 3.0's ``LsqQuantizer`` starts every step size at 0.01 (its LSQ-paper initialisation is commented
out), which clips 4-bit weights of magnitude 0.3 to 0.07 and collapses the model to one class before
Adam can move the steps; :func:`fixed_quantizer` restores the paper's ``s = 2 mean|x| / sqrt(qmax)``
(Esser et al. 2020) from the first batch, so the baseline is LSQ as published.
"""
from __future__ import annotations

import functools
from typing import Dict, Sequence, Type

import torch
from nni.compression.base.compressor import Quantizer
from nni.compression.base.wrapper import ModuleWrapper
from nni.compression.quantization import LsqQuantizer, QATQuantizer
from nni.compression.utils import Evaluator

from . import apply_methods  # noqa: F401  (registers 'fixed_int32_bias' with NNI)
from .prepare import config_list

__all__ = ["FIXED_QUANTIZERS", "fixed_quantizer"]

FIXED_QUANTIZERS: Dict[str, Type[Quantizer]] = {"qat": QATQuantizer, "lsq": LsqQuantizer}


def fixed_quantizer(model: torch.nn.Module, unsigned: dict[str, bool], bits: int, evaluator: Evaluator,
                    algorithm: str = "qat", *, input_layers: Sequence[str] = (), input_bits: int | None = None,
                    int32_bias: Sequence[str] = ()) -> Quantizer:
    """NNI's QAT (``algorithm='qat'``) or LSQ quantizer on ``model`` at ``bits`` for every target.

    ``unsigned``: ``{layer: input is non-negative}`` from :func:`~nni_kws.quant.prepare.unsigned_inputs`;
    the inputs of ``input_layers`` (which read the raw waveform) get ``input_bits`` instead, if given. The biases of
    ``int32_bias`` are rounded to their layer's accumulator grid, as integer engines add them (NNI's QAT and LSQ
    would leave them float, so onnxruntime's int32 bias would differ from the fake-quant model's: with folded
    BatchNorm, at 4 bits, the exported model then agreed on under half of the clips).
    """
    if algorithm not in FIXED_QUANTIZERS:
        raise ValueError(f"fixed quantizer must be one of {sorted(FIXED_QUANTIZERS)}, got {algorithm!r}")
    scheme = "affine" if algorithm == "qat" else "symmetric"
    configs = config_list(unsigned, bits, unsigned_scheme=scheme, input_layers=input_layers, input_bits=input_bits,
                          int32_bias=int32_bias)
    quantizer = FIXED_QUANTIZERS[algorithm](model, configs, evaluator)
    for target_spaces in quantizer._target_spaces.values():
        if "bias" in target_spaces:  # after NNI set its own apply methods (QAT keeps them from its first step)
            target_spaces["bias"].apply_method = "fixed_int32_bias"
    if algorithm == "lsq":
        for wrapper in quantizer._module_wrappers.values():
            wrapper.register_track_func(functools.partial(_lsq_paper_init, quantizer))  # runs after NNI's own
    return quantizer


@torch.no_grad()
def _lsq_paper_init(quantizer: Quantizer, wrapper: ModuleWrapper, target_name: str, target: torch.Tensor) -> None:
    """Track func: until the first optimizer step, LSQ's step size is ``2 mean|x| / sqrt(qmax)`` of the target."""
    if quantizer.is_init or not quantizer.check_target(wrapper, target_name) or not isinstance(target, torch.Tensor):
        return
    target_space = wrapper.quantization_target_spaces[target_name]
    if target_space._scaler is None:  # per tensor (the only granularity the baseline uses)
        target_space.scale.data = (2 * target.abs().mean() / target_space.qmax ** 0.5).clamp_min(1e-8).view(1)
