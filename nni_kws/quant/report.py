"""Bit-width report of a quantized model: per layer, averages and size, JSON-able.

Definitions (also written into every report under ``"definitions"``):

- *bits per weight* = ``Σ_l N_l b_l / Σ_l N_l`` over the quantized weight tensors (``N_l``: elements of
  the weight of layer ``l``; the SincConv front end counts as its baked ``Conv1d`` weights, not its
  cut-off frequencies; biases, float BN and other parameters excluded);
- *bits per activation* = ``Σ_a M_a b_a / Σ_a M_a`` over the quantized activation tensors (the inputs of
  the quantized layers; ``M_a``: elements per clip, batch dimension excluded), except the model input
  (the raw waveform, reported on its own as ``model_input_bits``);
- the plain means over tensors (``*_layer_mean``) are given too;
- *size* = weights packed at their bit-widths (``ceil(N_l b_l / 8)`` bytes per tensor) + 4 bytes per
  other parameter (biases as int32 or float, unfolded BN) + 4 bytes per quantized tensor (its float32 scale).
"""
from __future__ import annotations

import math
from typing import Any, Iterable

from nni.compression.base.compressor import Quantizer
from nni.compression.base.target_space import TargetType
from torch import nn

__all__ = ["DEFINITIONS", "PCM_BITS", "target_rows", "summarize", "size_bytes", "bit_report"]

#: Bits of a waveform the quantized model reads unquantized (``model_input_bits`` None): the microphone's 16-bit PCM.
PCM_BITS = 16

DEFINITIONS = {
    "avg_bits_per_weight": "sum_l N_l*b_l / sum_l N_l over quantized weight tensors (N_l = elements; the SincConv "
                           "front end counts as its baked Conv1d weights; biases and float BN excluded)",
    "avg_bits_per_activation": "sum_a M_a*b_a / sum_a M_a over quantized activations (inputs of the quantized "
                               "layers; M_a = elements per clip, batch excluded), without the model input",
    "model_input_bits": "bits of the raw waveform where the first layer reads it (not in the averages; null: not "
                        "quantized, the microphone's 16-bit PCM)",
    "*_layer_mean": "plain mean of b over the quantized tensors of that kind",
    "size_bytes": "packed weights (ceil(N_l*b_l/8) bytes each) + 4 bytes per other parameter (biases as int32 "
                  "or float, unfolded BN) + 4 bytes per quantized weight or activation (float32 scale)",
    "float_size_bytes": "4 bytes per parameter of the float model (after Conv+BN folding)",
}


def target_rows(quantizer: Quantizer, model_inputs: Iterable[str] = ()) -> list[dict[str, Any]]:
    """One row per quantized target: layer, type, target, kind, numel (per clip for activations), bits, signed.

    ``kind`` is ``'weight'``, ``'bias'``, ``'activation'``, or ``'input'`` for the targets named in
    ``model_inputs`` (``'<layer>._input_0'``). Activation sizes come from the shapes NNI records on
    the last forward (run one first).
    """
    model_inputs = set(model_inputs)
    calibration = quantizer.get_calibration_config()
    rows = []
    for module_name, wrapper in quantizer._module_wrappers.items():
        for target_name, target_space in wrapper.quantization_target_spaces.items():
            config = calibration[module_name][target_name]
            is_param = target_space.type is TargetType.PARAMETER
            shape = target_space.shape
            if shape is None:
                raise ValueError(f"no shape recorded for {module_name}.{target_name}: run a forward pass first")
            kind = ("bias" if target_name == "bias" else "weight") if is_param else \
                "input" if f"{module_name}.{target_name}" in model_inputs else "activation"
            rows.append(dict(layer=module_name, type=type(wrapper.module).__name__, target=target_name, kind=kind,
                             numel=math.prod(shape if is_param else shape[1:]), bits=int(config["quant_bits"]),
                             signed=not str(config["quant_dtype"]).startswith("uint")))
    return rows


def _mean(rows: list[dict[str, Any]], weighted: bool) -> float | None:
    if not rows:
        return None
    if weighted:
        return sum(r["numel"] * r["bits"] for r in rows) / sum(r["numel"] for r in rows)
    return sum(r["bits"] for r in rows) / len(rows)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Averages of :func:`target_rows` (see the module docstring for the definitions)."""
    weights = [r for r in rows if r["kind"] == "weight"]
    acts = [r for r in rows if r["kind"] == "activation"]
    act_bytes = [math.ceil(r["numel"] * r["bits"] / 8) for r in acts]
    inputs = [r["bits"] for r in rows if r["kind"] == "input"]
    return {
        "avg_bits_per_weight": _mean(weights, True),
        "avg_bits_per_activation": _mean(acts, True),
        "avg_bits_per_weight_layer_mean": _mean(weights, False),
        "avg_bits_per_activation_layer_mean": _mean(acts, False),
        "quantized_weights": sum(r["numel"] for r in weights),
        "quantized_activations_per_clip": sum(r["numel"] for r in acts),
        "weight_bits_total": sum(r["numel"] * r["bits"] for r in weights),
        "activation_bytes_total": sum(act_bytes),
        "activation_bytes_max": max(act_bytes, default=0),
        "model_input_bits": inputs[0] if len(inputs) == 1 else (inputs or None),
    }


def size_bytes(model: nn.Module, rows: list[dict[str, Any]], exclude: set[int] = frozenset()) -> dict[str, int]:
    """Model size at the rows' bit-widths and in float32; parameters whose ``id`` is in ``exclude`` are skipped."""
    params = sum(p.numel() for p in model.parameters() if id(p) not in exclude)
    weights = [r for r in rows if r["kind"] == "weight"]
    packed = sum(math.ceil(r["numel"] * r["bits"] / 8) for r in weights)
    other = params - sum(r["numel"] for r in weights)
    scales = 4 * sum(r["kind"] != "bias" for r in rows)
    return {"size_bytes": packed + 4 * other + scales, "packed_weight_bytes": packed,
            "other_param_bytes": 4 * other, "scale_bytes": scales, "float_size_bytes": 4 * params,
            "parameters": params}


def bit_report(quantizer: Quantizer, model: nn.Module | None = None,
               model_inputs: Iterable[str] | None = None) -> dict[str, Any]:
    """Per-layer bits, averages, sizes and definitions; JSON-able.

    ``model``: the float model for the parameter count (default: the quantizer's model, less the
    quantizer's own parameters such as step sizes). ``model_inputs``: see :func:`target_rows` (default:
    the quantizer's ``budget_exclude``, if any).
    """
    if model_inputs is None:
        model_inputs = getattr(quantizer, "budget_exclude", ())
    model = model if model is not None else quantizer.bound_model
    own = {id(p) for params in quantizer.patch_optimizer_param_group().values() for p in params}
    order = {name.replace("._nni_wrapper", ""): i for i, (name, _) in enumerate(model.named_modules())}
    rows = sorted(target_rows(quantizer, model_inputs), key=lambda r: (order.get(r["layer"], len(order)), r["target"]))
    layers: dict[str, dict[str, Any]] = {}
    for r in rows:
        layer = layers.setdefault(r["layer"], {"name": r["layer"], "type": r["type"]})
        if r["target"] == "weight":
            layer.update(weight_bits=r["bits"], weight_numel=r["numel"])
        elif r["target"] == "bias":
            layer.update(bias_bits=r["bits"])
        elif r["target"] == "_input_0":
            layer.update(act_bits=r["bits"], act_numel=r["numel"], act_signed=r["signed"],
                         **({"model_input": True} if r["kind"] == "input" else {}))
        else:
            layer[f"{r['target']}_bits"] = r["bits"]
    return {**summarize(rows), **size_bytes(model, rows, own), "layers": list(layers.values()),
            "definitions": DEFINITIONS}
