"""Distillation from the float model while the quantized copy fine-tunes, through NNI's ``DynamicLayerwiseDistiller``.

The logits' KL (``distill``) is the recipe's default. ``feature_distill`` adds the hidden states: every other
quantized layer's output is pulled towards the float model's output of the same layer (MSE), as layer-wise
distillation for low-bit networks does (e.g. Polino et al. 2018, "Model compression via distillation and
quantization"), so each grid learns to reproduce what its float layer computed rather than only the end result.
"""
from __future__ import annotations

import copy

import torch
from nni.compression.base.compressor import Quantizer
from nni.compression.distillation import DynamicLayerwiseDistiller
from torch import nn

from .prepare import QUANT_OP_TYPES, output_layer

__all__ = ["distilled_fine_tune", "feature_variances"]


@torch.no_grad()
def feature_variances(float_model: nn.Module, example: torch.Tensor) -> dict[str, float]:
    """``{layer: variance of its output on example}`` of every quantized layer but the model's output layer."""
    skip = output_layer(float_model, example)
    outputs: dict[str, float] = {}
    hooks = [m.register_forward_hook(lambda m, args, out, name=name: outputs.__setitem__(name, float(out.var())))
             for name, m in float_model.named_modules() if type(m).__name__ in QUANT_OP_TYPES and name != skip]
    try:
        float_model.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    return outputs


def distilled_fine_tune(quantizer: Quantizer, float_model: nn.Module, example: torch.Tensor, *, distill: float,
                        feature_distill: float, max_steps: int | None, epochs: int | None) -> None:
    """``quantizer.compress``, fused with NNI's distiller when ``distill`` or ``feature_distill`` is set: ``distill``
    times the KL to the float model's logits (T = 2), plus ``feature_distill`` times the mean over the other quantized
    layers of the MSE between their outputs and the float model's, each divided by the float output's variance on
    ``example`` (so that a layer counts alike whatever its scale)."""
    configs = []
    if distill:
        configs.append({"op_names": [output_layer(float_model, example)], "target_names": ["_output_"],
                        "lambda": distill, "apply_method": "kl"})
    if feature_distill:
        variances = feature_variances(float_model, example)
        configs += [{"op_names": [name], "target_names": ["_output_"], "apply_method": "mse",
                     "lambda": feature_distill / (len(variances) * max(var, 1e-12))} for name, var in variances.items()]
    if not configs:
        quantizer.compress(max_steps, epochs)
        return
    device = example.device
    distiller = DynamicLayerwiseDistiller.from_compressor(
        quantizer, configs, teacher_model=copy.deepcopy(float_model).eval(),
        teacher_predict=lambda batch, model: model(batch[0].to(device)))
    distiller.compress(max_steps, epochs)
    distiller.unwrap_teacher_model()
    distiller.unwrap_model()  # hand the shared wrappers back to the quantizer
    quantizer.wrap_model()
