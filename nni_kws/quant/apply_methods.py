"""The apply methods of :class:`~nni_kws.quant.learned_bits.LearnedBitwidthQuantizer`, registered with NNI's
``quant_apply_methods`` (as NNI's LSQ registers ``lsq_clamp_round``): the U3 fake quantizer and the int32 bias grid
(also for NNI's QAT and LSQ baselines)."""
from __future__ import annotations

from typing import Any

import torch
from nni.compression.base.apply_method import quant_apply_methods
from nni.compression.base.target_space import QuantizationTargetSpace
from torch import Tensor

from .bit_budget import is_signed, qparams

__all__ = ["U3ClampRound", "learned_bits_clamp_round", "int32_bias_round", "fixed_int32_bias_round"]


class U3ClampRound(torch.autograd.Function):
    """``round(clip(x, low, q_max) / d) * d`` with Uhlich et al.'s straight-through gradients.

    ``x`` gets the output gradient inside ``(low, q_max)``; ``q_max`` gets it where ``x`` is clipped
    (``-1`` at the negative end); ``d`` gets ``round(x/d) - x/d`` of the clipped ``x``. Written as one
    function, as NNI's LSQ is: composing clamp/round with autograd costs several times more.
    Rounding is half to even, as in ONNX ``QuantizeLinear``.
    """

    @staticmethod
    def forward(ctx: Any, target: Tensor, step: Tensor, qrange: Tensor, signed: bool) -> Tensor:
        low = -qrange if signed else torch.zeros_like(qrange)
        scaled = torch.clamp(target, low, qrange) / step
        ctx.save_for_backward(target, step, qrange)
        ctx.signed = signed
        return torch.round(scaled) * step

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> Any:
        target, step, qrange = ctx.saved_tensors
        above = target >= qrange
        below = target <= -qrange if ctx.signed else target <= 0
        scaled = torch.clamp(target, -qrange if ctx.signed else torch.zeros_like(qrange), qrange) / step
        grad_target = grad_output.masked_fill(above | below, 0.0)
        grad_step = (grad_output * (torch.round(scaled) - scaled)).sum().view_as(step)
        clipped = above.to(grad_output.dtype) - (below.to(grad_output.dtype) if ctx.signed else 0)
        grad_range = (grad_output * clipped).sum().view_as(qrange)
        return grad_target, grad_step, grad_range, None


def learned_bits_clamp_round(target: Tensor, target_space: QuantizationTargetSpace) -> Tensor:
    """Apply method ``'learned_bits'``: the U3 quantizer with the target's learned ``d`` and ``q_max``."""
    step, qrange = qparams(target_space)
    return U3ClampRound.apply(target, step, qrange, is_signed(target_space))


def _round_to(target: Tensor, scale: Tensor) -> Tensor:
    """``target`` rounded to multiples of ``scale``, straight-through and with the scale detached."""
    scale = scale.detach()
    return target + (torch.round(target / scale) * scale - target).detach()


def int32_bias_round(target: Tensor, target_space: QuantizationTargetSpace) -> Tensor:
    """Apply method ``'int32_bias'``: round a bias to its layer's accumulator grid ``d_input * d_weight``.

    Integer engines add the bias as an int32 at that scale (onnxruntime rewrites a float Conv/Gemm bias
    between QDQ inputs so); emulating it keeps the fake-quant model and the exported one bit-compatible.
    The scale is not learned through the bias (straight-through, detached).
    """
    targets = target_space._wrapper.quantization_target_spaces
    return _round_to(target, qparams(targets["_input_0"])[0] * qparams(targets["weight"])[0])


def fixed_int32_bias_round(target: Tensor, target_space: QuantizationTargetSpace) -> Tensor:
    """Apply method ``'fixed_int32_bias'``: :func:`int32_bias_round` for NNI's QAT and LSQ, whose scales are the target
    spaces' own (``|s|``: LSQ's step size may go negative; the grid is the same)."""
    targets = target_space._wrapper.quantization_target_spaces
    scales = [targets[name].scale for name in ("_input_0", "weight")]
    if any(scale is None for scale in scales):  # before QAT has seen a batch
        return target
    return _round_to(target, scales[0].abs() * scales[1].abs())


quant_apply_methods["learned_bits"] = learned_bits_clamp_round
quant_apply_methods["int32_bias"] = int32_bias_round
quant_apply_methods["fixed_int32_bias"] = fixed_int32_bias_round
