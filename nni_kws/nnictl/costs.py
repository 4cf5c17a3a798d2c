"""Hardware costs of an architecture as NNI metrics, and budget checks shared by the trial,
the hardware-aware tuner and the multi-trial filters.

The metric names are those the web UI shows next to ``default`` (the accuracy):
``params``, ``macs``, ``latency_ms`` and ``peak_act_kb``.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable, Mapping

__all__ = ["COST_METRICS", "space_by_name", "arch_costs", "parse_budgets", "require_lut", "over_budget",
           "budget_penalty"]

#: Metric name -> (key of ``CostModel.exact``, scale). Budgets use the metric names.
COST_METRICS: dict[str, tuple[str, float]] = {
    "params": ("params", 1.0),
    "macs": ("macs", 1.0),
    "latency_ms": ("latency_ms", 1.0),
    "peak_act_kb": ("peak_activation_bytes", 1 / 1024),
}


def space_by_name(name: str) -> Any:
    """The space named like its search-space file: ``'small'`` → preset small, ``'small-mfcc'`` →
    preset small with the MFCC front end (``search_spaces/<name>.json``)."""
    from nni_kws.space import build_space
    preset, _, frontend = name.partition("-")
    return build_space(preset, **({"frontend": frontend} if frontend else {}))


@lru_cache(maxsize=8)
def _cost_model(space: str, lut: str | None) -> Any:
    from nni_kws.cost import CostModel  # heavy; only when costs are asked for
    return CostModel(space_by_name(space), lut=lut)


def arch_costs(arch: Mapping[str, Any], preset: str, lut: str | None = None) -> dict[str, float]:
    """``{metric: value}`` for the metrics of :data:`COST_METRICS`, from the analytic cost model
    (``preset``: a space name of :func:`space_by_name`).

    ``latency_ms`` needs a latency table (``lut``, measured with ``nni-kws profile``); without
    one it is left out rather than guessed.
    """
    exact = _cost_model(preset, None if lut is None else str(lut)).exact(dict(arch))
    out: dict[str, float] = {}
    for name, (key, scale) in COST_METRICS.items():
        if exact.get(key) is None:
            continue
        value = exact[key] * scale
        out[name] = int(value) if scale == 1.0 and float(value).is_integer() else round(float(value), 4)
    return out


def parse_budgets(budgets: Mapping[str, Any] | Iterable[str] | None) -> dict[str, float]:
    """Budgets as ``{metric: limit}`` from a mapping or ``["params=20000", "latency_ms=5"]``.

    Raises ``ValueError`` naming an unknown metric or a non-positive limit.
    """
    if not budgets:
        return {}
    items = budgets.items() if isinstance(budgets, Mapping) else (_split(b) for b in budgets)
    out = {}
    for name, limit in items:
        if name not in COST_METRICS:
            raise ValueError(f"unknown budget {name!r}; choose from {', '.join(COST_METRICS)}")
        try:
            out[name] = float(limit)
        except (TypeError, ValueError):
            raise ValueError(f"budget {name!r} must be a number, got {limit!r}") from None
        if out[name] <= 0:
            raise ValueError(f"budget {name!r} must be positive, got {limit!r}")
    return out


def require_lut(budgets: Mapping[str, float], lut: Any) -> None:
    """``ValueError`` when a ``latency_ms`` budget comes without a latency table to check it."""
    if "latency_ms" in budgets and lut is None:
        raise ValueError("a latency_ms budget needs a latency table (lut), measured with `nni-kws profile`")


def _split(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep:
        raise ValueError(f"a budget reads NAME=LIMIT (e.g. params=20000), got {item!r}")
    return name.strip(), value.strip()


def over_budget(costs: Mapping[str, float], budgets: Mapping[str, float]) -> list[str]:
    """Names of the budgets that ``costs`` exceed (empty when within every budget)."""
    _check_known(costs, budgets)
    return [name for name, limit in budgets.items() if costs[name] > limit]


def budget_penalty(costs: Mapping[str, float], budgets: Mapping[str, float]) -> float:
    """Σ max(0, cost / budget − 1): 0 within budget, the relative overshoot otherwise."""
    _check_known(costs, budgets)
    return sum(max(0.0, costs[name] / limit - 1.0) for name, limit in budgets.items())


def _check_known(costs: Mapping[str, float], budgets: Mapping[str, float]) -> None:
    for name in budgets:
        if name not in costs:
            raise ValueError(f"budget {name!r} cannot be checked: no {name} without a latency table (lut)")
