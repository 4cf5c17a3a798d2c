"""Turn a frozen KWS model into what the quantizers see, and build their NNI config lists.

``prepare_model`` bakes :class:`~nni_kws.space.blocks.SincConv1d` into a plain ``Conv1d`` (NNI
quantizes ``weight`` parameters, which SincConv does not have) and folds every ``Conv1d → BatchNorm1d``
pair into the conv (``torch.nn.utils.fusion.fuse_conv_bn_eval``), so the weights the quantizer
learns are the ones an integer engine runs. BN layers that do not directly follow a conv (the SincNet
front end's BN after the log compression) stay float.

The frozen root is still a :class:`~nni_kws.space.KwsSpace` (a ``ModelSpace``); that is harmless for
NNI's compression: modules are selected by class name (``Conv1d``, ``Linear``), never the root, and a
frozen space holds no mutable module (``check_plain_model`` verifies it).
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from nni.mutable import Mutable
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from nni_kws.space.blocks import SincConv1d, bake_sinc

from .settings import register_1d_settings

__all__ = ["QUANT_OP_TYPES", "prepare_model", "fold_batchnorm", "check_plain_model", "unsigned_inputs",
           "config_list"]

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


def prepare_model(model: nn.Module) -> nn.Module:
    """A deep copy of a frozen model in eval mode with SincConv baked and Conv+BN folded."""
    check_plain_model(model)
    model = copy.deepcopy(model).eval()
    bake_sinc(model)
    fold_batchnorm(model)
    if not any(type(m).__name__ in QUANT_OP_TYPES for m in model.modules()):
        raise ValueError(f"the model has no {' / '.join(QUANT_OP_TYPES)} layer to quantize")
    assert not any(isinstance(m, SincConv1d) for m in model.modules())
    return model


@torch.no_grad()
def unsigned_inputs(model: nn.Module, example: torch.Tensor) -> dict[str, bool]:
    """``{layer name: True if its input was >= 0 on example}`` for every quantized layer (post-ReLU inputs)."""
    seen: dict[str, bool] = {}
    hooks = [m.register_forward_pre_hook(lambda m, args, name=name: seen.__setitem__(
                 name, seen.get(name, True) and bool(args[0].min() >= 0)))
             for name, m in model.named_modules() if type(m).__name__ in QUANT_OP_TYPES]
    was_training = model.training
    try:
        model.eval()
        model(example)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return seen


def config_list(unsigned: dict[str, bool], bits: int, unsigned_scheme: str = "symmetric") -> list[dict[str, Any]]:
    """NNI config list: every layer's ``weight`` as ``int{bits}`` symmetric, its input as ``int{bits}``,
    or ``uint{bits}`` (with ``unsigned_scheme``) when it is non-negative."""
    if not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an int in 2..8 (int8 containers), got {bits!r}")
    groups = {flag: sorted(name for name, u in unsigned.items() if u is flag) for flag in (False, True)}
    configs = []
    for flag, names in groups.items():
        if not names:
            continue
        config: dict[str, Any] = {"op_names": names, "target_names": ["_input_", "weight"],
                                  "quant_dtype": f"int{bits}", "quant_scheme": "symmetric"}
        if flag:
            config["target_settings"] = {"_input_": {"quant_dtype": f"uint{bits}", "quant_scheme": unsigned_scheme}}
        configs.append(config)
    return configs
