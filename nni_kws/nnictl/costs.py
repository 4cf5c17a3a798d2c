"""Hardware costs of an architecture as the NNI metrics a trial reports (``params``, ``macs``,
``peak_act_kb``, ``latency_ms``: the budget names of :mod:`nni_kws.cost.budgets`)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

from nni_kws.cost import CostModel
from nni_kws.cost.budgets import metric_costs
from nni_kws.space import space_by_name

__all__ = ["arch_costs", "space_cost_model"]


@lru_cache(maxsize=8)
def space_cost_model(space: str, lut: str | None = None, num_classes: int = 12) -> CostModel:
    """The (cached) :class:`CostModel` of the space named ``space`` with a ``num_classes`` classifier."""
    return CostModel(space_by_name(space, num_classes=num_classes), lut=lut)


def arch_costs(arch: Mapping[str, Any], space: str, lut: str | None = None, num_classes: int = 12) -> dict[str, float]:
    """``{metric: value}`` of ``arch`` in the space named ``space`` (``small``, ``small-mfcc``, ...), with a
    classifier of ``num_classes`` outputs.

    ``latency_ms`` needs a latency table (``lut``, measured with ``nni-kws profile``); without
    one it is left out rather than guessed.
    """
    return metric_costs(space_cost_model(space, None if lut is None else str(lut), num_classes).exact(dict(arch)))
