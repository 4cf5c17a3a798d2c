"""NNI profilers on the KWS cost model (NNI's FLOPs/params profilers fail on Conv1d spaces).

Each is an :class:`nni.nas.profiler.ExpressionProfiler`: ``profile(sample)`` returns the exact
cost of an arch dict, and ``expression`` is the same cost as an NNI ``MutableExpression`` over the
space's labels — ``Σ_positions (s{j}_depth > i) * switch_case(label, {value: cost})`` (nested
switch_case for ``k`` and ``e``) — so ``RangeProfilerFilter``, the ``Filter`` middleware and
``ExpectationProfilerPenalty`` / ``expression_expectation`` accept it. Peak memory's expression is a
``MutableExpression.max`` over positions: fine for ``profile``/filters, but its expectation would
enumerate the whole space — use :meth:`CostModel.expected` (smooth max) for DARTS instead.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Callable, Mapping

from nni.mutable import MutableExpression
from nni.nas.profiler import ExpressionProfiler

from nni_kws.space import KwsSpace

from .costmodel import CostModel
from .latency import LatencyTable
from .layers import Bits, Decision, Unit

__all__ = ["KwsCostProfiler", "KwsMacsProfiler", "KwsParamsProfiler", "KwsWeightBytesProfiler",
           "KwsLatencyProfiler", "KwsPeakMemoryProfiler", "cost_expression"]


def _switch(mutables: Mapping[str, Any], labels: tuple[str, ...], costs: dict[tuple, float]) -> Any:
    if not labels:
        return costs[()]
    head, rest = labels[0], labels[1:]
    branches = {v: _switch(mutables, rest, {k[1:]: c for k, c in costs.items() if k[0] == v})
                for v in dict.fromkeys(k[0] for k in costs)}
    return MutableExpression.switch_case(mutables[head], branches)


def _position(mutables: Mapping[str, Any], decision: Decision, cost: Callable[[Unit], float]) -> Any:
    term = _switch(mutables, decision.labels, {k: cost(u) for k, u in decision.candidates.items()})
    if decision.depth is None:
        return term
    label, i = decision.depth
    return (mutables[label] > i) * term


def cost_expression(cost_model: CostModel, cost: Callable[[Unit], float], reduce: str = "sum",
                    constant: float = 0.0) -> Any:
    """``constant + Σ`` (or ``max``) over positions of the unit cost, as a ``MutableExpression``."""
    mutables = cost_model.space.simplify()
    terms = [_position(mutables, d, cost) for d in cost_model.table.decisions]
    if reduce == "max":
        return MutableExpression.max(terms)
    return sum(terms, constant)


class KwsCostProfiler(ExpressionProfiler):
    """Profiler of one key of :meth:`CostModel.exact` (``params``, ``macs``, ``weight_bytes``, ...)."""

    cost: str = "macs"

    def __init__(self, model_space: KwsSpace | CostModel, *, bits: Bits = 32, act_bits: int = 32,
                 lut: LatencyTable | str | Path | None = None, fallback: str | None = None) -> None:
        super().__init__(model_space if isinstance(model_space, KwsSpace) else model_space.space)
        if isinstance(model_space, CostModel):
            self.cost_model = model_space
            if lut is not None:  # same table, another latency table
                self.cost_model = copy.copy(model_space)
                self.cost_model.lut = LatencyTable.load(lut) if isinstance(lut, (str, Path)) else lut
                self.cost_model.fallback = fallback
        else:
            self.cost_model = CostModel(model_space, lut, fallback)
        self.bits, self.act_bits = bits, act_bits
        self.expression = self._expression()

    def _expression(self) -> Any:
        return cost_expression(self.cost_model, lambda u: float(getattr(u, self.cost)))

    def profile(self, sample: Mapping[str, Any]) -> float:
        return float(self.cost_model.exact(sample, self.bits, self.act_bits)[self.cost])


class KwsMacsProfiler(KwsCostProfiler):
    """Multiply-accumulates of conv and linear layers (front end included)."""
    cost = "macs"


class KwsParamsProfiler(KwsCostProfiler):
    """Number of parameters (``sum(p.numel())`` of the frozen model)."""
    cost = "params"


class KwsWeightBytesProfiler(KwsCostProfiler):
    """Weight memory in bytes at ``bits`` (an int or ``{layer name: bits}``)."""
    cost = "weight_bytes"

    def _expression(self) -> Any:
        return cost_expression(self.cost_model, lambda u: float(u.weight_bytes(self.bits)))


class KwsPeakMemoryProfiler(KwsCostProfiler):
    """Peak activation memory in bytes at ``act_bits`` (``max`` expression: no cheap expectation)."""
    cost = "peak_activation_bytes"

    def _expression(self) -> Any:
        return cost_expression(self.cost_model, lambda u: float(math.ceil(u.peak_elems * self.act_bits / 8)),
                               reduce="max")


class KwsLatencyProfiler(KwsCostProfiler):
    """Latency in ms predicted from a :class:`LatencyTable` (required)."""
    cost = "latency_ms"

    def __init__(self, model_space: KwsSpace | CostModel, lut: LatencyTable | str | Path | None = None,
                 fallback: str | None = None) -> None:
        if lut is None and not (isinstance(model_space, CostModel) and model_space.lut is not None):
            raise ValueError("KwsLatencyProfiler needs a latency table (lut=...), see `nni-kws profile`")
        super().__init__(model_space, lut=lut, fallback=fallback)

    def _expression(self) -> Any:
        lut, fallback = self.cost_model.lut, self.cost_model.fallback
        assert lut is not None
        return cost_expression(self.cost_model, lambda u: lut.lookup(u, fallback), constant=lut.overhead_ms)
