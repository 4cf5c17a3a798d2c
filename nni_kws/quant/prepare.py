"""Turn a frozen KWS model into what the quantizers see, and build their NNI config lists.

``prepare_model`` bakes :class:`~nni_kws.space.blocks.SincConv1d` into a plain ``Conv1d`` (NNI
quantizes ``weight`` parameters, which SincConv does not have). BatchNorm stays a float layer, as in
the ICPR code; with ``fold_bn`` every ``Conv1d → BatchNorm1d`` pair is folded into the conv
(``torch.nn.utils.fusion.fuse_conv_bn_eval``) so the quantized weights are the ones an integer engine
runs, which per-tensor quantization pays for at 4 bits (folded depthwise weights differ in scale by
channel). A BN that does not directly follow a conv (the SincNet front end's) always stays float.

The frozen root is still a :class:`~nni_kws.space.KwsSpace` (a ``ModelSpace``); that is harmless for
NNI's compression: modules are selected by class name (``Conv1d``, ``Linear``), never the root, and a
frozen space holds no mutable module (``check_plain_model`` verifies it).
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
from nni.mutable import Mutable
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from nni_kws.space.blocks import SincConv1d, bake_sinc

from .settings import register_1d_settings

__all__ = ["QUANT_OP_TYPES", "prepare_model", "fold_batchnorm", "check_plain_model", "unsigned_inputs",
           "input_layers", "output_layer", "biased_layers", "config_list"]

#: Layers whose weights and inputs are quantized.
QUANT_OP_TYPES = ("Conv1d", "Linear")

register_1d_settings()


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold each ``Conv1d`` directly followed by ``BatchNorm1d`` in an ``nn.Sequential`` (in place, eval mode)."""
    for module in list(model.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = module._modules[first], module._modules[second]
            if type(conv) is nn.Conv1d and type(bn) is nn.BatchNorm1d and bn.track_running_stats:
                module._modules[first] = fuse_conv_bn_eval(conv.eval(), bn.eval())
                module._modules[second] = nn.Identity()
    return model


def check_plain_model(model: nn.Module) -> None:
    """Raise ``ValueError`` if ``model`` is a search space or holds NNI mutable modules.

    The root of ``space.freeze(arch)`` is still a ``KwsSpace`` (hence a ``Mutable``) but with nothing
    left to decide (``simplify()`` is empty), so it passes.
    """
    if isinstance(model, Mutable) and model.simplify():
        raise ValueError(f"{type(model).__name__} is a search space with undecided choices "
                         f"({', '.join(sorted(model.simplify()))}); quantize space.freeze(arch)")
    for name, module in model.named_modules():
        if name and isinstance(module, Mutable):
            raise ValueError(f"model holds the NNI mutable {type(module).__name__} at {name!r}; "
                             "quantize a frozen model (space.freeze(arch))")


def prepare_model(model: nn.Module, fold_bn: bool = False) -> nn.Module:
    """A deep copy of a frozen model in eval mode with SincConv baked (and Conv+BN folded with ``fold_bn``)."""
    check_plain_model(model)
    model = copy.deepcopy(model).eval()
    bake_sinc(model)
    if fold_bn:
        fold_batchnorm(model)
    unsupported = [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    if unsupported:  # they would stay float while the report counted the bits of the other layers only
        raise ValueError(f"the model has 2-D/3-D convolutions ({', '.join(unsupported[:3])}"
                         f"{', ...' if len(unsupported) > 3 else ''}): the quantizer handles "
                         f"{' / '.join(QUANT_OP_TYPES)} layers only (as in the 1-D search space)")
    if not any(type(m).__name__ in QUANT_OP_TYPES for m in model.modules()):
        raise ValueError(f"the model has no {' / '.join(QUANT_OP_TYPES)} layer to quantize")
    assert not any(isinstance(m, SincConv1d) for m in model.modules())
    return model


def _quantized_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if type(m).__name__ in QUANT_OP_TYPES]


@torch.no_grad()
def _inputs(model: nn.Module, example: torch.Tensor) -> dict[str, tuple[bool, bool]]:
    """``{layer: (input >= 0, input is the model input)}`` over one eval-mode forward of ``example``."""
    seen: dict[str, tuple[bool, bool]] = {}

    def hook(name: str, args: tuple) -> None:
        nonneg, raw = seen.get(name, (True, False))
        seen[name] = (nonneg and bool(args[0].min() >= 0), raw or args[0] is example)

    hooks = [m.register_forward_pre_hook(lambda m, args, name=name: hook(name, args))
             for name, m in _quantized_layers(model)]
    was_training = model.training
    try:
        model.eval()
        model(example)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return seen


def unsigned_inputs(model: nn.Module, example: torch.Tensor) -> dict[str, bool]:
    """``{layer name: True if its input was >= 0 on example}`` for every quantized layer (post-ReLU inputs)."""
    return {name: nonneg for name, (nonneg, _) in _inputs(model, example).items()}


def input_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """The quantized layers that read the model input itself (the raw waveform), if any."""
    return [name for name, (_, raw) in _inputs(model, example).items() if raw]


@torch.no_grad()
def output_layer(model: nn.Module, example: torch.Tensor) -> str:
    """The module whose output is the model's output (the classifier), for logit distillation."""
    outputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda m, args, out, name=name: outputs.__setitem__(name, out))
             for name, m in model.named_modules() if name]
    try:
        result = model.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    names = [name for name, out in outputs.items() if out is result]
    if not names:
        raise ValueError("no module returns the model's output (is the last operation a module?)")
    return names[0]  # the innermost (hooks fire on exit): the Linear, not a Sequential head that ends with it


def biased_layers(model: nn.Module) -> list[str]:
    """The quantized layers that have a bias (after BN folding, most convs)."""
    return [name for name, m in _quantized_layers(model) if getattr(m, "bias", None) is not None]


def config_list(unsigned: dict[str, bool], bits: int, unsigned_scheme: str = "symmetric", *,
                input_layers: Sequence[str] = (), input_bits: int | None = None,
                int32_bias: Sequence[str] = ()) -> list[dict[str, Any]]:
    """NNI config list over the layers of ``unsigned`` (``{layer: input is non-negative}``).

    Every layer's ``weight`` is ``int{bits}`` symmetric and its input ``int{bits}``, or ``uint{bits}``
    (with ``unsigned_scheme``) when non-negative; the inputs of ``input_layers`` (the model input) are
    ``int{input_bits}``, or not quantized when ``input_bits`` is ``None``; layers in ``int32_bias`` also
    get an ``'int32'`` ``bias`` target.
    """
    for name, value in (("bits", bits), ("input_bits", input_bits)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 8):
            raise ValueError(f"{name} must be an int in 2..8 (int8 containers), got {value!r}")
    groups: dict[tuple[bool, bool, bool], list[str]] = {}
    for name, nonneg in sorted(unsigned.items()):
        raw = name in input_layers
        groups.setdefault((nonneg and not raw, name in int32_bias, raw), []).append(name)
    configs = []
    for (nonneg, bias, raw), names in groups.items():
        if bias and raw and input_bits is None:
            raise ValueError(f"an int32 bias needs a quantized input; layers {names} read the float model input")
        settings: dict[str, dict[str, Any]] = {}
        if nonneg:
            settings["_input_"] = {"quant_dtype": f"uint{bits}", "quant_scheme": unsigned_scheme}
        if raw and input_bits is not None:
            settings["_input_"] = {"quant_dtype": f"int{input_bits}"}
        if bias:
            settings["bias"] = {"quant_dtype": "int32"}
        targets = ([] if raw and input_bits is None else ["_input_"]) + ["weight"] + (["bias"] if bias else [])
        configs.append({"op_names": names, "target_names": targets,
                        "quant_dtype": f"int{bits}", "quant_scheme": "symmetric",
                        **({"target_settings": settings} if settings else {})})
    return configs
