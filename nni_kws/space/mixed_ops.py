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
from nni.nas.oneshot.pytorch.supermodule.differentiable import MixedOpDifferentiablePolicy
from nni.nas.oneshot.pytorch.supermodule.operation import MixedBatchNorm2d, MixedConv2d, MixedOperation
from torch import nn

__all__ = ["MixedConv1d", "MixedBatchNorm1d", "MIXED_OPERATIONS_1D", "oneshot_hooks", "fresh_space", "derive_model"]


def _has_mutables(module: nn.Module) -> bool:
    return bool(getattr(module, "mutables", None))


def _outcomes(expression: Any) -> tuple[list[str], list[tuple[Any, tuple[int, ...]]]]:
    """The labels an argument's expression depends on, and each of its outcomes: the value it takes for one
    choice of every label, and the indices of those choices (``traverse_all_options`` without the weights)."""
    categoricals = expression.simplify()
    labels, memo, table = list(categoricals), {}, []
    for value in expression.grid(memo=memo):
        table.append((value, tuple(categoricals[label].values.index(memo[label]) for label in labels)))
    return labels, table


class _Mixed1dMixin:
    """What the 1-D mixed ops share: ``mutate`` as ``MixedOperation.mutate``, except that layers whose
    arguments are all fixed stay plain (NNI converts them too, which only slows the supernet down), and a
    faster ``forward_argument`` in differentiable mode."""

    @classmethod
    def mutate(cls, module: nn.Module, name: str, memo: dict[str, Any], mutate_kwargs: dict[str, Any]) -> Any:
        if not (isinstance(module, cls.bound_type) and _has_mutables(module)):  # type: ignore[attr-defined]
            return None
        return super().mutate(module, name, memo, mutate_kwargs)  # type: ignore[misc]

    def forward_argument(self, name: str) -> Any:
        """As NNI's ``MixedOpDifferentiablePolicy.forward_argument`` in differentiable mode (each value of the
        argument with the summed joint probability of the label choices that give it), but with the choices
        enumerated once per layer: NNI traverses the expression on every forward, a cost measured in
        ``benchmarks/results/search.json`` (``full_iteration.tried``). Path sampling is NNI's."""
        op = cast(Any, self)
        if type(op.sampling_policy) is not MixedOpDifferentiablePolicy or name not in op.mutable_arguments:
            return super().forward_argument(name)  # type: ignore[misc]
        outcomes = op.__dict__.setdefault("_argument_outcomes", {})
        if name not in outcomes:
            outcomes[name] = _outcomes(op.mutable_arguments[name])
        labels, table = outcomes[name]
        probs = [op._softmax(op._arch_alpha[label]).unbind() for label in labels]
        weights: dict[Any, Any] = {}
        for value, indices in table:
            weight = probs[0][indices[0]]
            for label_probs, index in zip(probs[1:], indices[1:]):
                weight = weight * label_probs[index]
            weights[value] = weights[value] + weight if value in weights else weight
        return dict(sorted(weights.items()))


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
        # NNI's Conv2d version keeps ``bias: None``, which breaks ``freeze`` for bias-free convs.
        return {name: value for name, value in rv.items() if value is not None}

    def _in_channels_per_group(self, in_channels: int_or_int_dict, groups: int_or_int_dict) -> Any:
        """Input channels per group: ``in_channels // groups`` (a ``MaybeWeighted`` when ``in_channels`` is
        searched), or for a searched ``groups`` the constant ratio (depthwise), as an int, worked out once per layer."""
        if not isinstance(groups, dict):
            return _W(in_channels) // groups
        if "_depthwise_in_per_group" in self.__dict__:
            return self.__dict__["_depthwise_in_per_group"]
        if "in_channels" not in self.mutable_arguments or "groups" not in self.mutable_arguments:
            raise ValueError("a mutable groups needs mutable in_channels with a constant "
                             "in_channels / groups ratio")
        try:
            per_group = evaluate_constant(self.mutable_arguments["in_channels"] / self.mutable_arguments["groups"])
        except ValueError:
            raise ValueError("in_channels / groups must be constant (depthwise) for differentiable search") from None
        if per_group != int(per_group):
            raise ValueError(f"input channels per group is not an integer: {per_group}")
        self.__dict__["_depthwise_in_per_group"] = int(per_group)
        return int(per_group)

    def _freeze_weight_impl(self, in_channels: int_or_int_dict, out_channels: int_or_int_dict,
                            kernel_size: scalar_or_scalar_dict[int], groups: int_or_int_dict) -> dict[str, Any]:
        # Same as MixedConv2d._freeze_weight_impl with one kernel axis (that one unpacks two).
        out_channels_ = _W(out_channels)
        weight = _S(self.weight)[:out_channels_]
        weight = _S(weight)[:, :self._in_channels_per_group(in_channels, groups)]
        kernel_ = _W(self._to_int(kernel_size))
        left = (self.kernel_size[0] - kernel_) // 2
        weight = _S(weight)[:, :, left:left + kernel_]
        bias = _S(self.bias)[:out_channels_] if self.bias is not None else None
        return {"weight": weight, "bias": bias}

    def _span_mask(self, size: int, spans: list[tuple[int, int, Any]]) -> torch.Tensor:
        """``sum_v p_v * 1[start_v <= i < stop_v]`` over ``i < size``, for ``spans`` [(start_v, stop_v, p_v)]: the
        weighted mask of one axis, with the 0/1 rows cached per module."""
        cache = self.__dict__.setdefault("_span_rows", {})
        key = (size, tuple((start, stop) for start, stop, _ in spans), self.weight.device, self.weight.dtype)
        if key not in cache:
            rows = torch.zeros(len(spans), size, device=self.weight.device, dtype=self.weight.dtype)
            for row, (start, stop, _) in enumerate(spans):
                rows[row, start:stop] = 1
            cache[key] = rows
        probs = [p if torch.is_tensor(p) else torch.tensor(p, device=self.weight.device) for _, _, p in spans]
        return torch.stack(probs).to(self.weight.dtype) @ cache[key]

    def _weighted_kernel(self, in_channels: int_or_int_dict, out_channels: int_or_int_dict,
                         kernel_size: scalar_or_scalar_dict[int], groups: int_or_int_dict
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The kernel and bias of differentiable mode: the largest kernel times one weighted mask per searched
        axis (:meth:`_span_mask`). The same function as NNI's weighted slicing (``Slicable`` over
        ``MaybeWeighted``), which builds, weights and sums one full-size mask per candidate and axis on every
        forward: about a dozen tensor ops per axis, where this takes three (a stack, a product, a multiply)."""
        weight, bias = self.weight, self.bias
        c_out, c_in, k_max = weight.shape
        if isinstance(out_channels, dict):
            out_mask = self._span_mask(c_out, [(0, c, p) for c, p in out_channels.items()])
            weight = weight * out_mask[:, None, None]
            bias = bias * out_mask if bias is not None else None
        else:
            weight, bias = weight[:out_channels], bias[:out_channels] if bias is not None else None
        if isinstance(in_channels, dict) and not isinstance(groups, dict):
            weight = weight * self._span_mask(c_in, [(0, c // groups, p) for c, p in in_channels.items()])[:, None]
        else:
            per_group = self._in_channels_per_group(in_channels, groups)
            weight = weight[:, :per_group if isinstance(per_group, int) else per_group.evaluate()]
        if isinstance(kernel_size, dict):
            spans = [((k_max - k) // 2, (k_max - k) // 2 + k, p) for k, p in
                     ((self._to_int(k), p) for k, p in kernel_size.items())]
            weight = weight * self._span_mask(k_max, spans)
        else:
            left = (k_max - self._to_int(kernel_size)) // 2
            weight = weight[:, :, left:left + self._to_int(kernel_size)]
        return weight, bias

    def forward_with_args(self, in_channels: int_or_int_dict, out_channels: int_or_int_dict,
                          kernel_size: scalar_or_scalar_dict[int], stride: int, padding: scalar_or_scalar_dict[int],
                          dilation: int, groups: int_or_int_dict, inputs: torch.Tensor) -> torch.Tensor:
        if any(isinstance(arg, dict) for arg in (stride, dilation)):
            raise ValueError(
                "stride and dilation of a Conv1d must not be mutable for differentiable one-shot strategies")
        if any(isinstance(arg, dict) for arg in (in_channels, out_channels, kernel_size, groups)):
            weight, bias = self._weighted_kernel(in_channels, out_channels, kernel_size, groups)
        else:
            params = self._freeze_weight_impl(in_channels, out_channels, kernel_size, groups)
            weight, bias = params["weight"], params["bias"]
        if isinstance(groups, dict):  # depthwise: as many groups as the (max-width) input has channel groups
            groups = inputs.size(1) // self._in_channels_per_group(in_channels, groups)
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
