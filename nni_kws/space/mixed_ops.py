"""1-D mixed operations for NNI's one-shot strategies, and export of searched models.

NNI 3.0 ships weight-sharing ("mixed") versions of ``Conv2d``/``BatchNorm2d`` only, so a
``MutableConv1d`` with a mutable kernel or width stops DARTS with *"dangling mutables"*.
:class:`MixedConv1d` and :class:`MixedBatchNorm1d` follow NNI's ``MixedConv2d``/``MixedBatchNorm2d``
(FBNetV2-style slicing: channel prefix, centred kernel) and work with every sampling policy NNI
has: differentiable (DARTS, GumbelDARTS: weighted masks over the largest kernel) and path
sampling (RandomOneShot, ENAS: the sampled slice). :func:`oneshot_hooks` is what
``KwsSpace.extra_oneshot_hooks`` returns, so no user wiring is needed.

:func:`derive_model` turns an architecture into a deployable model of plain ``nn.Conv1d`` /
``nn.BatchNorm1d`` layers, optionally inheriting the (sliced) supernet weights.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping, cast

import torch
import torch.nn.functional as F
from nni.nas.nn.pytorch import ModelSpace, MutableBatchNorm1d, MutableConv1d, ParametrizedModule
from nni.nas.oneshot.pytorch.supermodule._expression_utils import evaluate_constant
from nni.nas.oneshot.pytorch.supermodule._operation_utils import MaybeWeighted as _W
from nni.nas.oneshot.pytorch.supermodule._operation_utils import Slicable as _S
from nni.nas.oneshot.pytorch.supermodule._operation_utils import int_or_int_dict, scalar_or_scalar_dict
from nni.nas.oneshot.pytorch.supermodule.operation import MixedBatchNorm2d, MixedConv2d, MixedOperation
from torch import nn

__all__ = ["MixedConv1d", "MixedBatchNorm1d", "MIXED_OPERATIONS_1D", "oneshot_hooks", "fresh_space", "derive_model"]


def _has_mutables(module: nn.Module) -> bool:
    return bool(getattr(module, "mutables", None))


class _Mixed1dMixin:
    """``mutate`` shared by the 1-D mixed ops: as ``MixedOperation.mutate``, except that layers
    whose arguments are all fixed stay plain (NNI converts them too, which only slows the
    supernet down)."""

    @classmethod
    def mutate(cls, module: nn.Module, name: str, memo: dict[str, Any], mutate_kwargs: dict[str, Any]) -> Any:
        if not (isinstance(module, cls.bound_type) and _has_mutables(module)):  # type: ignore[attr-defined]
            return None
        return super().mutate(module, name, memo, mutate_kwargs)  # type: ignore[misc]


class MixedConv1d(_Mixed1dMixin, MixedOperation, nn.Conv1d):
    """Mixed ``Conv1d``: the 1-D twin of NNI's ``MixedConv2d``.

    Supported mutable arguments: ``in_channels``, ``out_channels`` (prefix slices), ``kernel_size``
    (odd; the smaller kernel is the centre of the largest one), ``padding`` (the largest is used in
    differentiable mode, where every kernel is a masked version of the largest, so 'same' padding
    stays exact for odd kernels), ``groups`` (only when proportional to the channels, i.e. depthwise
    ``groups == channels``), and ``stride``/``dilation`` in path sampling only.
    """

    bound_type = MutableConv1d
    argument_list = ["in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"]

    # Max over options (min for groups, corrected for depthwise) -- NNI's rule carries over unchanged.
    super_init_argument = MixedConv2d.super_init_argument

    @staticmethod
    def _to_int(value: Any) -> Any:
        return value[0] if isinstance(value, tuple) else value

    def freeze_weight(self, in_channels: int_or_int_dict, out_channels: int_or_int_dict,
                      kernel_size: scalar_or_scalar_dict[int], groups: int_or_int_dict, **kwargs: Any) -> Any:
        rv = self._freeze_weight_impl(in_channels, out_channels, kernel_size, groups)
        rv.pop("in_channels_per_group", None)
        # NNI's Conv2d version keeps ``bias: None``, which breaks ``freeze`` for bias-free convs.
        return {name: value for name, value in rv.items() if value is not None}

    def _freeze_weight_impl(self, in_channels: int_or_int_dict, out_channels: int_or_int_dict,
                            kernel_size: scalar_or_scalar_dict[int], groups: int_or_int_dict) -> dict[str, Any]:
        # Same as MixedConv2d._freeze_weight_impl with one kernel axis (that one unpacks two).
        in_channels_, out_channels_ = _W(in_channels), _W(out_channels)
        weight = _S(self.weight)[:out_channels_]
        in_channels_per_group = None
        if not isinstance(groups, dict):
            weight = _S(weight)[:, :in_channels_ // groups]
        else:
            if "in_channels" not in self.mutable_arguments or "groups" not in self.mutable_arguments:
                raise ValueError("a mutable groups needs mutable in_channels with a constant "
                                 "in_channels / groups ratio")
            try:
                in_channels_per_group = evaluate_constant(self.mutable_arguments["in_channels"]
                                                          / self.mutable_arguments["groups"])
            except ValueError:
                raise ValueError(
                    "in_channels / groups must be constant (depthwise) for differentiable search") from None
            if in_channels_per_group != int(in_channels_per_group):
                raise ValueError(f"input channels per group is not an integer: {in_channels_per_group}")
            in_channels_per_group = int(in_channels_per_group)
            weight = _S(weight)[:, :in_channels_per_group]

        kernel_ = _W(self._to_int(kernel_size))
        left = (self.kernel_size[0] - kernel_) // 2
        weight = _S(weight)[:, :, left:left + kernel_]
        bias = _S(self.bias)[:out_channels_] if self.bias is not None else None
        return {"weight": weight, "bias": bias, "in_channels_per_group": in_channels_per_group}

    def forward_with_args(self, in_channels: int_or_int_dict, out_channels: int_or_int_dict,
                          kernel_size: scalar_or_scalar_dict[int], stride: int, padding: scalar_or_scalar_dict[int],
                          dilation: int, groups: int_or_int_dict, inputs: torch.Tensor) -> torch.Tensor:
        if any(isinstance(arg, dict) for arg in (stride, dilation)):
            raise ValueError(
                "stride and dilation of a Conv1d must not be mutable for differentiable one-shot strategies")
        params = self._freeze_weight_impl(in_channels, out_channels, kernel_size, groups)
        weight, bias = params["weight"], params["bias"]
        if isinstance(groups, dict):  # depthwise: as many groups as the (max-width) input has channel groups
            groups = inputs.size(1) // cast(int, params["in_channels_per_group"])
        if isinstance(kernel_size, dict) or isinstance(padding, dict):
            if isinstance(self.padding, str):
                raise ValueError(f'padding="{self.padding}" is not supported with a mutable kernel size')
            padding = self.padding[0]  # the largest, matching the (masked) largest kernel
        padding = self._to_int(padding)
        if self.padding_mode != "zeros":
            pad = (padding, padding)
            return F.conv1d(F.pad(inputs, pad, mode=self.padding_mode), weight, bias,
                            self._to_int(stride), 0, self._to_int(dilation), cast(int, groups))
        return F.conv1d(inputs, weight, bias, self._to_int(stride), padding, self._to_int(dilation), cast(int, groups))


class MixedBatchNorm1d(_Mixed1dMixin, MixedOperation, nn.BatchNorm1d):
    """Mixed ``BatchNorm1d``: prefix of the affine weights and running statistics.

    ``F.batch_norm`` is rank-agnostic, so NNI's ``MixedBatchNorm2d`` methods are reused as they are;
    in differentiable mode the largest ``num_features`` is used (the masked channels are zeroed
    again by the next convolution's input slice).
    """

    bound_type = MutableBatchNorm1d
    argument_list = ["num_features", "eps", "momentum"]

    super_init_argument = MixedBatchNorm2d.super_init_argument
    freeze_weight = MixedBatchNorm2d.freeze_weight
    forward_with_args = MixedBatchNorm2d.forward_with_args


MIXED_OPERATIONS_1D: list[type[MixedOperation]] = [MixedConv1d, MixedBatchNorm1d]


def _refuse_mixed_op(module: nn.Module, name: str, memo: dict[str, Any], mutate_kwargs: dict[str, Any]) -> None:
    if isinstance(module, (MutableConv1d, MutableBatchNorm1d)) and _has_mutables(module):
        raise TypeError(f"module {name!r} searches a kernel size or width, but Proxyless samples whole paths "
                        "and has no mixed operations; build the space with coarse=True (a LayerChoice of whole "
                        "blocks) or use DARTS/GumbelDARTS/RandomOneShot")


def oneshot_hooks(strategy: Any = None) -> list:
    """Mutation hooks that add the 1-D mixed operations to a one-shot ``strategy``.

    Returned by ``KwsSpace.extra_oneshot_hooks``; pass them as ``mutation_hooks=`` for other spaces.
    The sampling policy (weighted or sampled slices) comes from the strategy's ``run_hook``.
    Proxyless gets a hook that refuses mutable layers: it inherits DARTS' ``run_hook``, so mixed
    ops would silently be softmax-weighted there instead of path-sampled.
    """
    from nni.nas.oneshot.pytorch.strategy import Proxyless

    if isinstance(strategy, Proxyless):
        return [_refuse_mixed_op]
    return [op.mutate for op in MIXED_OPERATIONS_1D]


def fresh_space(space: ModelSpace) -> ModelSpace:
    """A new, untouched copy of ``space`` (one-shot strategies mutate the space they get in place)."""
    kwargs = getattr(space, "trace_kwargs", None)
    if kwargs is None:
        raise TypeError(f"{type(space).__name__} does not record its init arguments; pass a fresh space instead")
    return type(space)(*getattr(space, "trace_args", ()), **kwargs)


def _unwrap_fixed_layers(module: nn.Module) -> nn.Module:
    """Replace (in place) every ``Mutable*`` layer whose arguments are all fixed by its plain torch
    class holding the same weights.

    Hand-written because ``ParametrizedModule.freeze`` re-creates such layers with *fresh* weights,
    so ``supernet.freeze(arch)`` alone is weight-preserving only for mixed operations (e.g. the
    fixed 1x1 projections, the front-end BN, and everything inside Proxyless' LayerChoices).
    """
    for name, child in list(module.named_children()):
        if isinstance(child, ParametrizedModule) and not _has_mutables(child) and child._bound_type is not None:
            plain = child._bound_type(*child.trace_args, **child.trace_kwargs)
            plain.load_state_dict(child.state_dict())
            setattr(module, name, plain)
        else:
            _unwrap_fixed_layers(child)
    return module


def derive_model(space: ModelSpace, arch: Mapping[str, Any], supernet: nn.Module | None = None) -> nn.Module:
    """The plain torch model of ``arch`` (``nn.Conv1d``/``nn.BatchNorm1d``, no NNI classes).

    ``space`` may be a fresh space or the supernet itself (a fresh copy is built from its init
    arguments). With ``supernet`` (a space mutated and trained by a one-shot strategy), the
    derived model inherits the supernet's weights: NNI's ``supernet.freeze(arch)`` picks the
    chosen candidates and depth and slices the mixed operations (channel prefix, kernel centre),
    and the plain model loads that state dict, so retraining can start from the supernet
    ("inherited weights", as in ProxylessNAS).
    """
    from nni.nas.oneshot.pytorch.strategy import is_supernet

    base = fresh_space(space) if is_supernet(space) else space
    model = base.freeze(dict(arch))
    if supernet is None:
        return model
    if not is_supernet(supernet):
        raise TypeError("supernet must be a model space mutated by a one-shot strategy")
    with torch.no_grad():
        source = _unwrap_fixed_layers(copy.deepcopy(supernet))
        inherited = cast(ModelSpace, source).freeze(dict(arch)).state_dict()
    missing, unexpected = model.load_state_dict(inherited, strict=False)
    # BatchNorm's num_batches_tracked is the only key the sliced state may lack.
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise RuntimeError(f"supernet weights do not fit the derived model: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")
    return model.to(next(supernet.parameters()).device)
