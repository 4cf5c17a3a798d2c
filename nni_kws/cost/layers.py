"""Per-layer cost table of a :class:`~nni_kws.space.KwsSpace`, read off real frozen models.

NNI's own profilers cannot do this: their symbolic shape inference has 2-D formulas only and
fails on ``Conv1d`` (see ``/work/shared/nni-notes.md`` §3). Instead we freeze a handful of
architectures that together contain every candidate of every decision, run one batch-1 forward
with hooks on the leaf modules, and record each layer's shapes, parameters and MACs. The table is
thus right by construction for whatever the space builds (e.g. the 1x1 expand conv that the
fine-grained space keeps even when ``e = 1``).

Vocabulary:

- :class:`Layer`: one leaf module of the frozen model (name as in ``model.named_modules()``).
- :class:`Unit`: a latency-table entry = the front end, one MBConv block, or the head (pool +
  classifier); identified by a geometry key such as ``mbconv(c_in=24,c_out=32,k=5,stride=2,...)``.
- :class:`Decision`: a position of the network whose unit depends on some labels (``frontend``;
  ``s{j}_i{i}_k``/``_e`` or coarse ``s{j}_i{i}``) and, for blocks, on ``s{j}_depth > i``.
"""
from __future__ import annotations

import collections
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Union

import torch
from torch import nn

from nni_kws.space import FRONTEND_LABEL, KwsSpace, space_choices
from nni_kws.space.labels import block_label, depth_label, expand_label, kernel_label, label_kind, parse_label

from .frontend import frontend_macs, spectral_settings

__all__ = ["Layer", "Unit", "Decision", "SpaceTable", "space_table", "unit_modules", "read_layers", "read_units",
           "is_feature_extractor", "Bits"]

Bits = Union[int, Mapping[str, int]]  # one bit-width for all weights, or {layer name: bits}
# Leaves that write a fresh output buffer; BN, ReLU, LogCompression, Dropout, Identity work in place.
# Feature extractors (MFCC, log-mel; see ``frontend.spectral_settings``) allocate too.
ALLOCATING = {"Conv1d", "Conv2d", "SincConv1d", "AvgPool1d", "AdaptiveAvgPool1d", "AvgPool2d", "AdaptiveAvgPool2d",
              "MaxPool2d", "Linear", "MFCC"}


@dataclass(frozen=True)
class Layer:
    """One leaf module with its batch-1 shapes (batch dimension dropped) and counts."""
    name: str
    op: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int
    macs: int
    kernel: int = 0
    stride: int = 0
    groups: int = 0
    feature_macs: int = 0  # MFCC/log-mel extraction MACs (nni_kws.cost.frontend), also in ``macs`` if included

    @property
    def allocates(self) -> bool:
        """Writes a fresh output buffer (conv, pooling, linear, feature extraction) rather than working in place."""
        return self.op in ALLOCATING or self.feature_macs > 0

    @property
    def in_elems(self) -> int:
        return math.prod(self.in_shape)

    @property
    def out_elems(self) -> int:
        return math.prod(self.out_shape)

    def weight_bytes(self, bits: Bits = 32, default_bits: int = 32) -> int:
        b = bits if isinstance(bits, int) else bits.get(self.name, default_bits)
        return math.ceil(self.params * b / 8)

    def signature(self) -> tuple:
        return (self.op, self.in_shape, self.out_shape, self.params, self.macs, self.kernel, self.stride, self.groups,
                self.feature_macs)


def is_feature_extractor(module: nn.Module) -> bool:
    """An MFCC / log-mel module: one opaque leaf whose cost is :func:`nni_kws.cost.frontend.frontend_macs`."""
    return spectral_settings(module) is not None


def _layer(name: str, module: nn.Module, x: torch.Tensor, y: torch.Tensor, include_features: bool = True) -> Layer:
    op = type(module).__name__
    in_shape, out_shape = tuple(x.shape[1:]), tuple(y.shape[1:])
    params = sum(p.numel() for p in module.parameters())
    macs, kernel, stride, groups = 0, 0, 0, 0
    if is_feature_extractor(module):
        features = frontend_macs(module, y)["total"]
        return Layer(name, op, in_shape, out_shape, params, features if include_features else 0,
                     feature_macs=features)
    if isinstance(module, nn.Conv2d):
        # C_out · H_out · W_out · (C_in / groups) · k_h · k_w; kernel/stride record the first (time or freq) axis
        kernel, stride, groups = int(module.kernel_size[0]), int(module.stride[0]), int(module.groups)
        macs = math.prod(out_shape) * (in_shape[0] // groups) * math.prod(module.kernel_size)
    elif isinstance(module, nn.Conv1d) or op == "SincConv1d":
        # MACs of a conv: C_out · T_out · (C_in / groups) · k. SincConv: C_in = groups = 1.
        kernel = int(module.kernel_size[0] if isinstance(module.kernel_size, tuple) else module.kernel_size)
        stride = int(module.stride[0] if isinstance(module.stride, tuple) else module.stride)
        groups = int(getattr(module, "groups", 1))
        c_in = in_shape[0]
        macs = out_shape[0] * out_shape[1] * (c_in // groups) * kernel
    elif isinstance(module, nn.Linear):
        macs = module.in_features * module.out_features * (math.prod(out_shape) // module.out_features)
    elif isinstance(module, nn.AvgPool1d):
        kernel, stride = int(module.kernel_size[0]), int(module.stride[0])
    return Layer(name, op, in_shape, out_shape, params, macs, kernel, stride, groups)


@dataclass(frozen=True)
class Unit:
    """A run of layers timed as one latency entry: front end, MBConv block or head.

    ``residual``: the unit input stays live until the end (identity shortcut of an MBConv block).
    """
    name: str
    kind: str
    config: tuple[tuple[str, Any], ...]
    layers: tuple[Layer, ...]
    residual: bool = False

    @property
    def key(self) -> str:
        return f"{self.kind}(" + ",".join(f"{k}={v}" for k, v in self.config) + ")"

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def feature_macs(self) -> int:
        return sum(layer.feature_macs for layer in self.layers)

    def weight_bytes(self, bits: Bits = 32, default_bits: int = 32) -> int:
        return sum(layer.weight_bytes(bits, default_bits) for layer in self.layers)

    @property
    def peak_elems(self) -> int:
        """Largest live set of any allocating layer: its input + output (+ the unit input while a
        residual block runs, for every layer after the first, whose input *is* the unit input)."""
        return self.peak_bits(1)

    def peak_bits(self, act_bits: int, input_bits: int | None = None) -> int:
        """:attr:`peak_elems` in bits: every tensor at ``act_bits``, except the unit's input at ``input_bits`` when
        given (the model's waveform, where the unit is the front end and the waveform is not quantized as the rest)."""
        live = [layer for layer in self.layers if layer.allocates]
        if not live:
            return 0
        unit_input = live[0].in_elems * (act_bits if input_bits is None else input_bits)
        keep = unit_input if self.residual else 0
        return max((keep + layer.in_elems * act_bits if i else unit_input) + layer.out_elems * act_bits
                   for i, layer in enumerate(live))

    def signature(self) -> tuple:
        return self.residual, tuple(layer.signature() for layer in self.layers)


def _unit(name: str, layers: list[Layer], residual: bool) -> Unit:
    """Name the unit's kind and geometry (the latency-table key) from its layers."""
    first, last = layers[0], layers[-1]
    convs = [layer for layer in layers if layer.op in ("Conv1d", "SincConv1d")]
    if name == "frontend":
        kind = "frontend-" + {"SincConv1d": "sinc", "Conv1d": "conv", "MFCC": "mfcc"}.get(first.op, first.op.lower())
        pool = next((layer.kernel for layer in layers if layer.op == "AvgPool1d"), 1)
        conv = convs[-1]  # the filterbank conv, or the MFCC stem
        config = dict(c_out=conv.out_shape[0], k=conv.kernel, stride=conv.stride, pool=pool, t_in=first.in_shape[-1])
    elif name.startswith("stages."):
        dw = convs[-2]  # expand? → depthwise → project
        kind = "mbconv"
        config = dict(c_in=first.in_shape[0], c_out=last.out_shape[0], k=dw.kernel, stride=dw.stride,
                      expand=dw.in_shape[0] // first.in_shape[0], t_in=first.in_shape[-1],
                      expand_conv=int(len(convs) == 3), skip=int(residual))
    else:
        kind = "head"
        linear = [layer for layer in layers if layer.op == "Linear"]
        config = dict(c_in=first.in_shape[0], t_in=first.in_shape[-1], classes=linear[-1].out_shape[-1])
    return Unit(name, kind, tuple(config.items()), tuple(layers), residual)


def _unit_name(layer_name: str) -> str:
    parts = layer_name.split(".")
    if parts[0] == "frontend":
        return "frontend"
    if parts[0] == "stages":
        return ".".join(parts[:3])
    return "head"


def _leaves(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Leaf modules in definition order; a feature extractor counts as one leaf (its STFT, mel and DCT
    are costed together by ``frontend_macs``)."""
    opaque: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(o + ".") for o in opaque):
            continue
        if is_feature_extractor(module):
            opaque.append(name)
            yield name, module
        elif not list(module.children()):
            yield name, module


def read_layers(model: nn.Module, input_samples: int = 16000, include_features: bool = True) -> list[Layer]:
    """Leaf layers of any model taking ``[1, 1, input_samples]``, in execution order, from one batch-1
    forward with leaf hooks (a leaf called twice is listed twice)."""
    layers: list[Layer] = []
    hooks = [module.register_forward_hook(
        lambda mod, args, out, name=name: layers.append(_layer(name, mod, args[0], out, include_features)))
        for name, module in _leaves(model)]
    device = next(model.parameters(), torch.empty(0)).device  # 'meta' is fine: only shapes are needed
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 1, input_samples, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return layers


def read_units(model: nn.Module, input_samples: int = 16000, include_features: bool = True) -> list[Unit]:
    """Units of a frozen model, in execution order, from one batch-1 forward with leaf hooks."""
    layers = read_layers(model, input_samples, include_features)
    groups: dict[str, list[Layer]] = {}
    for layer in layers:
        groups.setdefault(_unit_name(layer.name), []).append(layer)
    modules = dict(model.named_modules())
    return [_unit(name, group, bool(getattr(modules.get(name), "has_skip", False))) for name, group in groups.items()]


@dataclass(frozen=True)
class Decision:
    """A position whose unit is ``candidates[tuple(arch[l] for l in labels)]``; present iff
    ``arch[depth[0]] > depth[1]`` (blocks ``i < depth`` are active), always when ``depth`` is None."""
    name: str
    labels: tuple[str, ...]
    candidates: dict[tuple, Unit] = field(hash=False)
    depth: tuple[str, int] | None = None

    def unit(self, arch: Mapping[str, Any]) -> Unit | None:
        if self.depth is not None and arch[self.depth[0]] <= self.depth[1]:
            return None
        key = tuple(arch[label] for label in self.labels)
        try:
            return self.candidates[key]
        except KeyError:
            raise ValueError(f"{self.name}: no candidate for {dict(zip(self.labels, key))}") from None


@dataclass
class SpaceTable:
    """Every decision of a space with every candidate unit; ``units(arch)`` lists an arch's units."""
    choices: dict[str, list[Any]]
    decisions: list[Decision]
    input_samples: int = 16000
    harvest: list[dict[str, Any]] = field(default_factory=list)  # the archs frozen to read the table
    include_features: bool = True  # MFCC extraction MACs are part of ``macs``

    def units(self, arch: Mapping[str, Any]) -> list[Unit]:
        for label, values in self.choices.items():
            if label not in arch:
                raise ValueError(f"architecture lacks label {label!r} (choose from {values})")
            if arch[label] not in values:
                raise ValueError(f"label {label!r} has value {arch[label]!r}; allowed values are {values}")
        return [u for d in self.decisions if (u := d.unit(arch)) is not None]

    def all_units(self) -> dict[str, Unit]:
        """One unit per distinct latency key (the configurations a latency table must hold)."""
        return {u.key: u for d in self.decisions for u in d.candidates.values()}


def _stride_labels(choices: Mapping[str, list[Any]], last_stage: int | None = None) -> tuple[str, ...]:
    """The searched strides of stages ``0 .. last_stage`` (all stages: None): they set the length a unit sees."""
    strides = sorted((p.stage, label) for label in choices if (p := parse_label(label)) and p.kind == "stride")
    return tuple(label for stage, label in strides if last_stage is None or stage <= last_stage)


def _decision_labels(name: str, choices: Mapping[str, list[Any]]) -> tuple[tuple[str, ...], tuple[str, int] | None]:
    if name == "frontend":
        return ((FRONTEND_LABEL,) if FRONTEND_LABEL in choices else ()), None
    if name == "head":
        return _stride_labels(choices), None
    j, i = (int(part) for part in name.split(".")[1:])
    own = tuple(lab for lab in (block_label(j, i), kernel_label(j, i), expand_label(j, i)) if lab in choices)
    labels = _stride_labels(choices, j) + own
    depth = depth_label(j)
    return labels, ((depth, i) if depth in choices else None)


def _harvest_archs(choices: Mapping[str, list[Any]], decisions: list[tuple[str, tuple[str, ...]]]) -> list[dict]:
    """Few archs (max depth everywhere) that together hold every candidate of every decision: for every
    combination of the labels that several decisions share (searched strides), one arch per candidate of the
    decision with the most."""
    counts = collections.Counter(label for _, labels in decisions for label in labels)
    shared = [label for label in choices if counts[label] > 1]
    own = {name: tuple(lab for lab in labels if lab not in shared) for name, labels in decisions}
    combos = {name: list(itertools.product(*(choices[lab] for lab in labels))) for name, labels in own.items()}
    n = max((len(c) for c in combos.values()), default=1)
    archs = []
    for fixed in itertools.product(*(choices[lab] for lab in shared)):
        for r in range(n):
            arch = {label: values[-1] if label_kind(label) == "depth" else values[r % len(values)]
                    for label, values in choices.items()}
            arch.update(zip(shared, fixed))
            for name, labels in own.items():
                arch.update(zip(labels, combos[name][r % len(combos[name])]))
            archs.append(arch)
    return archs


def space_table(space: KwsSpace, input_samples: int = 16000, include_features: bool = True) -> SpaceTable:
    """Build the :class:`SpaceTable` of ``space`` (freezes ~|k|·|e| architectures, one per block configuration).
    ``include_features``: count MFCC extraction (``nni_kws.cost.frontend``) in the units' ``macs``."""
    choices = space_choices(space)
    names = ["frontend"] + [f"stages.{p.index}.{i}" for p in space.stage_plans for i in range(p.max_depth)] + ["head"]
    labelled = {name: _decision_labels(name, choices) for name in names}
    archs = _harvest_archs(choices, [(name, labels) for name, (labels, _) in labelled.items()])
    candidates: dict[str, dict[tuple, Unit]] = {name: {} for name in names}
    seen: dict[str, tuple] = {}
    for arch in archs:
        # meta: no real compute (only shapes are needed, the feature extractor's frame count included)
        for unit in read_units(space.freeze(arch).to("meta"), input_samples, include_features):
            if seen.setdefault(unit.key, unit.signature()) != unit.signature():
                raise RuntimeError(f"two different structures share the latency key {unit.key}")
            candidates[unit.name][tuple(arch[lab] for lab in labelled[unit.name][0])] = unit
    decisions = [Decision(name, labels, candidates[name], depth) for name, (labels, depth) in labelled.items()]
    return SpaceTable(choices, decisions, input_samples, archs, include_features)


def unit_modules(space: KwsSpace, table: SpaceTable) -> Iterator[tuple[Unit, nn.Module]]:
    """Each distinct unit of the table with a real torch module computing it (for timing)."""
    todo = set(table.all_units())
    for arch in table.harvest:
        if not todo:
            break
        model = space.freeze(arch).eval()
        modules = dict(model.named_modules())
        for unit in table.units(arch):
            if unit.key in todo:
                todo.discard(unit.key)
                yield unit, (_Head(model) if unit.name == "head" else modules[unit.name])


class _Head(nn.Module):
    """The tail of ``KwsSpace.forward``: global pool → flatten → dropout → classifier."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.pool, self.dropout, self.classifier = model.pool, model.dropout, model.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(x).flatten(1)))
