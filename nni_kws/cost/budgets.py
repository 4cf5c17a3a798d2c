"""One vocabulary for hardware costs and budgets, shared by the CLI, the search, nnictl trials and tuners.

A *budget* is named like the metric a trial reports to NNI (what the web UI lists next to ``default``):
``params``, ``macs``, ``peak_act_kb`` and ``latency_ms``. Each maps onto a key of
:meth:`~nni_kws.cost.CostModel.exact` with a scale; a kB is 1,000 bytes everywhere (:data:`KB`).
The CLI option of budget ``NAME`` is ``--max-NAME`` (``PipelineConfig.max_NAME``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

__all__ = ["KB", "Budget", "BUDGETS", "budget_option", "metric_costs", "with_kb", "parse_budgets", "check_budget",
           "over_budget", "budget_penalty", "budget_filter", "require_lut", "infeasible_budget", "describe_budgets",
           "OverBudget", "describe_over_budget"]

KB = 1000  #: bytes per kB, in budgets, metrics and reports alike (SI, as MCU datasheets count flash/RAM)


@dataclass(frozen=True)
class Budget:
    """A budgetable cost: its metric name, the :class:`CostModel` key it reads, and ``cost key = scale × metric``."""

    name: str
    cost_key: str
    scale: float
    text: str  # how a report writes "name <= limit"

    def describe(self, limit: float) -> str:
        return self.text.format(limit)


BUDGETS: dict[str, Budget] = {b.name: b for b in (
    Budget("macs", "macs", 1.0, "MACs ≤ {:,.0f}"),
    Budget("params", "params", 1.0, "params ≤ {:,.0f}"),
    Budget("peak_act_kb", "peak_activation_bytes", float(KB), "peak activations ≤ {:g} kB"),
    Budget("latency_ms", "latency_ms", 1.0, "latency ≤ {:g} ms"),
)}


def budget_option(name: str) -> str:
    """The :class:`~nni_kws.pipeline.PipelineConfig` field (and ``--max-...`` option) of budget ``name``."""
    return f"max_{name}"


def metric_costs(exact: Mapping[str, Any]) -> dict[str, float]:
    """``{budget name: value}`` from a :meth:`CostModel.exact` dict (costs it lacks, e.g. latency, left out)."""
    out: dict[str, float] = {}
    for name, budget in BUDGETS.items():
        value = exact.get(budget.cost_key)
        if value is None:
            continue
        value = float(value) / budget.scale
        out[name] = int(value) if budget.scale == 1.0 and value.is_integer() else round(value, 4)
    return out


def with_kb(costs: Mapping[str, float]) -> dict[str, float]:
    """``costs`` plus ``weight_kb`` and ``peak_act_kb`` (from the byte counts), for tables and plots."""
    out = dict(costs)
    if "weight_bytes" in out:
        out["weight_kb"] = out["weight_bytes"] / KB
    if "peak_activation_bytes" in out:
        out["peak_act_kb"] = out["peak_activation_bytes"] / KB
    return out


def check_budget(name: str, limit: Any) -> float:
    """``limit`` as a float, or a ``ValueError`` naming the budget: unknown name, not a number, not finite, <= 0."""
    if name not in BUDGETS:
        raise ValueError(f"unknown budget {name!r}; choose from {', '.join(BUDGETS)}")
    try:
        value = float(limit)
    except (TypeError, ValueError):
        raise ValueError(f"budget {name!r} must be a number, got {limit!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"budget {name!r} must be a positive finite number, got {limit!r}")
    return value


def parse_budgets(budgets: Mapping[str, Any] | Iterable[str] | None) -> dict[str, float]:
    """Budgets as ``{name: limit}`` from a mapping or from ``["params=20000", "latency_ms=5"]``."""
    if not budgets:
        return {}
    items = budgets.items() if isinstance(budgets, Mapping) else (_split(b) for b in budgets)
    return {name: check_budget(name, limit) for name, limit in items}


def _split(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep:
        raise ValueError(f"a budget reads NAME=LIMIT (e.g. params=20000), got {item!r}")
    return name.strip(), value.strip()


def _check_known(costs: Mapping[str, float], budgets: Mapping[str, float]) -> None:
    for name in budgets:
        if name not in costs:
            raise ValueError(f"budget {name!r} cannot be checked: no {name} without a latency table (lut)")


def over_budget(costs: Mapping[str, float], budgets: Mapping[str, float]) -> list[str]:
    """Names of the budgets that ``costs`` (in budget units) exceed; empty when within every budget."""
    _check_known(costs, budgets)
    return [name for name, limit in budgets.items() if costs[name] > limit]


def budget_penalty(costs: Mapping[str, float], budgets: Mapping[str, float]) -> float:
    """Σ max(0, cost / budget − 1): 0 within budget, the relative overshoot otherwise (the float hinge;
    :class:`~nni_kws.search.penalty.ResourcePenalty` is its differentiable twin)."""
    _check_known(costs, budgets)
    return sum(max(0.0, costs[name] / limit - 1.0) for name, limit in budgets.items())


def budget_filter(costs_of: Callable[[Mapping[str, Any]], Mapping[str, float]],
                  budgets: Mapping[str, float]) -> Callable[[Mapping[str, Any]], bool]:
    """A sample filter (NNI's ``Filter`` middleware, ``RandomOneShot(filter=...)``): True when
    ``costs_of(sample)`` is within every budget. Keys of ``budgets`` and of the costs must match."""
    def within(sample: Mapping[str, Any]) -> bool:
        costs = costs_of(sample)
        return all(costs.get(name) is not None and costs[name] <= limit for name, limit in budgets.items())
    return within


def require_lut(budgets: Mapping[str, float], lut: Any) -> None:
    """``ValueError`` when a ``latency_ms`` budget comes without a latency table to check it."""
    if "latency_ms" in budgets and lut is None:
        raise ValueError("a latency_ms budget needs a latency table (lut), measured with `nni-kws profile`")


def infeasible_budget(budgets: Mapping[str, float], cost_model: Any) -> tuple[str, float, float] | None:
    """``(name, limit, cheapest)`` of the first budget below the cheapest architecture of ``cost_model``'s space
    (a :class:`~nni_kws.cost.CostModel`; ``latency_ms`` only when it has a latency table), else None."""
    for name, limit in budgets.items():
        budget = BUDGETS[name]
        if name == "latency_ms" and cost_model.lut is None:
            continue
        cheapest = cost_model.cheapest(budget.cost_key)[1] / budget.scale
        if limit < cheapest:
            return name, limit, cheapest
    return None


def describe_budgets(budgets: Mapping[str, float]) -> str:
    """``'MACs ≤ 7,000,000, latency ≤ 2 ms'`` (or ``'none'``)."""
    return ", ".join(BUDGETS[name].describe(limit) for name, limit in budgets.items()) or "none"


class OverBudget(ValueError):
    """The searched architecture exceeds a budget (a run stops unless ``allow_over_budget``)."""

    exit_code = 3  # of the nni-kws command: not a usage error (2), not a crash (1)


def describe_over_budget(over: Mapping[str, Mapping[str, float]]) -> str:
    """``'macs 7,512,000 > 7,000,000'`` for each exceeded budget."""
    return ", ".join(f"{name} {v['value']:,.6g} > {v['limit']:,.6g}" for name, v in over.items())
