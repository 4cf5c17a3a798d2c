"""Where quantization loses accuracy: quantize one layer (or one kind of tensor) at a time, no fine-tuning.

Post-training quantization of a chosen subset of targets with the learned quantizer's own grid
(symmetric per tensor, range from ``range_init``) tells which tensors a bit-width hurts before any
quantization-aware training can compensate: per layer and per target (weight or input activation),
and for all weights / all activations / everything at once. Each row gives accuracy and the top-1
agreement with the float model (less noisy than an accuracy difference on a small set).
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from nni_kws.training import predict

from .learned_bits import LearnedBitwidthQuantizer
from .prepare import input_layers, unsigned_inputs

__all__ = ["ptq_quantizer", "agreement", "layer_sensitivity"]

_logger = logging.getLogger(__name__)


def ptq_quantizer(float_model: nn.Module, example: torch.Tensor, bits: int,
                  targets: Mapping[str, Sequence[str]], range_init: str = "mse") -> LearnedBitwidthQuantizer:
    """A copy of ``float_model`` with ``targets`` (``{layer: ['weight', '_input_']}``) fake-quantized at
    ``bits`` (ranges initialised on ``example``, nothing trained); the quantizer holds the copy."""
    model = copy.deepcopy(float_model).eval()
    unsigned = unsigned_inputs(model, example)
    raw = set(input_layers(model, example))
    configs = []
    for layer, names in targets.items():
        if layer not in unsigned:
            raise ValueError(f"{layer!r} is not a quantizable layer (Conv1d / Linear) of the model")
        settings = {"_input_": {"quant_dtype": f"uint{bits}"}} if unsigned[layer] and layer not in raw else {}
        configs.append({"op_names": [layer], "target_names": list(names), "quant_dtype": f"int{bits}",
                        "quant_scheme": "symmetric", **({"target_settings": settings} if settings else {})})
    quantizer = LearnedBitwidthQuantizer(model, configs, min_bits=min(bits, 8), range_init=range_init)
    with torch.no_grad():
        quantizer.track_forward(example)
    model.eval()
    return quantizer


def agreement(model: nn.Module, loader: DataLoader, reference: torch.Tensor | None = None) -> dict[str, float]:
    """Accuracy of ``model`` and its top-1 agreement with ``reference`` predictions (if given) on ``loader``."""
    preds, labels = predict(model, loader)
    out = {"accuracy": float((preds == labels).float().mean())}
    if reference is not None:
        out["agreement"] = float((preds == reference).float().mean())
    return out


def layer_sensitivity(float_model: nn.Module, example: torch.Tensor, loader: DataLoader,
                      bits: Iterable[int] = (3,), group_bits: Iterable[int] = (8, 6, 4, 3, 2),
                      range_init: str = "mse") -> dict[str, Any]:
    """PTQ accuracy of quantizing each layer's weight, then each layer's input, alone at each of ``bits``;
    then all weights, all inputs (except the raw waveform) and both together at each of ``group_bits``."""
    float_model = copy.deepcopy(float_model).eval()
    float_preds, labels = predict(float_model, loader)
    layers = list(unsigned_inputs(float_model, example))
    raw = set(input_layers(float_model, example))
    result: dict[str, Any] = {"float_accuracy": float((float_preds == labels).float().mean()),
                              "range_init": range_init, "layers": layers, "rows": []}
    bits, group_bits = list(bits), list(group_bits)
    for b in sorted(set(bits) | set(group_bits), reverse=True):
        groups: dict[str, dict[str, list[str]]] = {}
        for layer in layers if b in bits else ():
            groups[f"{layer}.weight"] = {layer: ["weight"]}
            groups[f"{layer}._input_0"] = {layer: ["_input_"]}
        if b in group_bits:
            groups["all weights"] = {layer: ["weight"] for layer in layers}
            groups["all activations"] = {layer: ["_input_"] for layer in layers if layer not in raw}
            groups["all weights and activations"] = {layer: ["weight"] + ([] if layer in raw else ["_input_"])
                                                     for layer in layers}
        for name, targets in groups.items():
            quantizer = ptq_quantizer(float_model, example, b, targets, range_init)
            row = {"targets": name, "bits": b, **agreement(quantizer.bound_model, loader, float_preds)}
            _logger.info("PTQ %s", row)
            result["rows"].append(row)
    return result
