"""Where quantization loses accuracy: quantize one layer (or one kind of tensor) at a time, no fine-tuning.

Post-training quantization of a chosen subset of targets with the learned quantizer's own grid
(symmetric per tensor, range from ``range_init``) tells which tensors a bit-width hurts before any
quantization-aware training can compensate: per layer and per target (weight or input activation),
and for all weights / all activations / everything at once. Each row gives accuracy and the top-1
agreement with the float model (less noisy than an accuracy difference on a small set).

The same measurement, as a KL divergence on one batch, steers where the learned bit-widths start:
:func:`allocate_bits` spends a bit budget where quantization noise costs most (the SincConv front
end's output, whose log compression makes 4 bits ruinous, gets more than an inner 1x1 conv).
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from nni_kws.training import predict

from .learned_bits import LearnedBitwidthQuantizer
from .prepare import input_layers, unsigned_inputs

__all__ = ["ptq_quantizer", "agreement", "layer_sensitivity", "target_sensitivity", "allocate_bits",
           "sensitivity_bits"]

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


@torch.no_grad()
def target_sensitivity(float_model: nn.Module, example: torch.Tensor, targets: Sequence[tuple[str, str]],
                       probe_bits: int = 4, range_init: str = "mse") -> dict[str, float]:
    """``{'<layer>.<target>': KL(float || quantized)}`` on ``example``, quantizing that target alone at
    ``probe_bits`` (``target``: ``'weight'`` or ``'_input_0'``)."""
    float_model = copy.deepcopy(float_model).eval()
    reference = F.log_softmax(float_model(example), dim=1)
    out = {}
    for layer, target in targets:
        quantizer = ptq_quantizer(float_model, example, probe_bits, {layer: [target.replace("_input_0", "_input_")]},
                                  range_init)
        logits = quantizer.bound_model(example)
        out[f"{layer}.{target}"] = float(F.kl_div(F.log_softmax(logits, dim=1), reference, log_target=True,
                                                  reduction="batchmean"))
    return out


def allocate_bits(sensitivity: Mapping[str, float], numel: Mapping[str, int], budget: float, min_bits: int,
                  max_bits: int, probe_bits: int = 4) -> dict[str, int]:
    """Bits per target with ``Σ numel·b / Σ numel <= budget``: from ``max_bits``, lower one bit at a time the
    target whose modelled loss grows least per bit-element saved.

    The loss model is quantization noise power: ``s_t · 4^(probe_bits - b)`` for a target whose
    ``sensitivity`` is ``s_t`` at ``probe_bits`` (each bit fewer quadruples the noise).
    """
    if not min_bits <= budget:
        raise ValueError(f"budget {budget} is below min_bits {min_bits}")
    bits = {t: max_bits for t in numel}
    total = sum(numel.values())
    used = sum(numel[t] * b for t, b in bits.items())
    floor = 1e-9  # insensitive targets still get an order among themselves (largest first)
    while used > budget * total + 1e-9:
        candidates = [t for t, b in bits.items() if b > min_bits]
        if not candidates:
            break
        best = min(candidates, key=lambda t: 3 * max(sensitivity.get(t, 0.0), floor)
                   * 4.0 ** (probe_bits - bits[t]) / numel[t])
        bits[best] -= 1
        used -= numel[best]
    return bits


@torch.no_grad()
def sensitivity_bits(float_model: nn.Module, example: torch.Tensor, budgets: Mapping[str, float | None],
                     min_bits: int, max_bits: int, exclude: Iterable[str] = (), probe_bits: int = 4,
                     range_init: str = "mse") -> tuple[dict[str, int], dict[str, float]]:
    """Starting bits of every quantized weight and layer input (``'<layer>.weight'`` / ``'<layer>._input_0'``)
    under ``budgets`` (``{'weight': bits, 'activation': bits}``; ``None``: ``max_bits``), from
    :func:`target_sensitivity` and :func:`allocate_bits`; also returns the sensitivities.
    ``exclude``: targets not quantized or outside the budgets (the raw waveform)."""
    model = copy.deepcopy(float_model).eval()
    layers = dict(model.named_modules())
    names = list(unsigned_inputs(model, example))
    shapes: dict[str, int] = {}
    hooks = [layers[n].register_forward_pre_hook(lambda m, args, n=n: shapes.__setitem__(n, args[0][0].numel()))
             for n in names]
    try:
        model(example)
    finally:
        for h in hooks:
            h.remove()
    exclude = set(exclude)
    numel = {"weight": {f"{n}.weight": layers[n].weight.numel() for n in names},
             "activation": {f"{n}._input_0": shapes[n] for n in names if f"{n}._input_0" not in exclude}}
    targets = [tuple(t.rsplit(".", 1)) for kind in numel for t in numel[kind]]
    sens = target_sensitivity(model, example, targets, probe_bits, range_init)
    bits: dict[str, int] = {}
    for kind, sizes in numel.items():
        budget = budgets.get(kind)
        bits.update(allocate_bits(sens, sizes, budget, min_bits, max_bits, probe_bits) if budget is not None
                    else {t: max_bits for t in sizes})
    return bits, sens
