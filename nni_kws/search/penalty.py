"""Resource penalties for the architecture step of differentiable search.

Each :class:`ResourcePenalty` turns an *expected* cost (a differentiable scalar from
``CostModel.expected``) and a target into a loss term. Forms, with ``r = E[cost] / target``:

- ``'hinge'`` (default): ``loss + λ·relu(r − 1)`` — free below the budget, linear above it;
- ``'add'``: ``loss + λ·(r − 1)`` — keeps pushing costs down below the budget too (ICPR ``add#linear``);
- ``'mul-log'``: ``loss · (log E / log T)^β`` with ``β = weight`` — FBNet / ICPR ``mul#log``,
  the paper's multiplicative trade-off (``β = 0`` switches it off).

NNI's ``ProfilerPenalty`` has the additive and ``(E/T)^β`` forms but no log form and, in DARTS,
receives detached probabilities; here the terms are written for tensors so gradients reach α.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import torch

__all__ = ["RESOURCES", "FORMS", "ResourcePenalty", "penalized_loss"]

#: Keys of ``CostModel.expected`` a penalty may target (MACs, parameters, peak activation memory
#: in bytes, latency in ms from a measured look-up table; also ``ops`` and ``weight_bytes``).
RESOURCES: tuple[str, ...] = ("macs", "params", "peak_activation_bytes", "latency_ms", "ops", "weight_bytes")
FORMS: tuple[str, ...] = ("hinge", "add", "mul-log")


@dataclass(frozen=True)
class ResourcePenalty:
    """Penalise an expected resource above (or relative to) ``target``.

    Parameters
    ----------
    resource
        One of :data:`RESOURCES`.
    target
        Budget in the cost model's unit (MACs, parameters, bytes, ms); > 0 (> 1 for ``'mul-log'``).
    weight
        λ for ``'hinge'``/``'add'``, the exponent β for ``'mul-log'``.
    form
        ``'hinge'``, ``'add'`` or ``'mul-log'`` (see the module docstring).
    """

    resource: str
    target: float
    weight: float = 1.0
    form: str = "hinge"

    def __post_init__(self) -> None:
        if self.resource not in RESOURCES:
            raise ValueError(f"unknown resource {self.resource!r}; choose from {', '.join(RESOURCES)}")
        if self.form not in FORMS:
            raise ValueError(f"unknown penalty form {self.form!r}; choose from {', '.join(FORMS)}")
        if not self.target > 0 or (self.form == "mul-log" and not self.target > 1):
            raise ValueError(f"target of {self.resource} must be > {1 if self.form == 'mul-log' else 0}, "
                             f"got {self.target}")
        if self.weight < 0 or not math.isfinite(self.weight):
            raise ValueError(f"penalty weight must be finite and >= 0, got {self.weight}")

    @property
    def multiplicative(self) -> bool:
        return self.form == "mul-log"

    def term(self, expected: torch.Tensor) -> torch.Tensor:
        """The additive term (``'hinge'``, ``'add'``) or the loss factor (``'mul-log'``)."""
        if self.form == "mul-log":
            # clamp: log of a cost below 1 (e.g. 0 latency) would flip the sign of the factor.
            return (torch.log(expected.clamp_min(1.0 + 1e-6)) / math.log(self.target)) ** self.weight
        ratio = expected / self.target - 1
        return self.weight * (torch.relu(ratio) if self.form == "hinge" else ratio)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ResourcePenalty":
        return cls(**data)


def penalized_loss(loss: torch.Tensor, expected: Mapping[str, Any],
                   penalties: Sequence[ResourcePenalty]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``loss · Π mul-log factors + Σ additive terms`` and the terms by name (for logging).

    ``expected`` is the output of ``CostModel.expected``; a resource it lacks (``latency_ms`` is
    None without a latency table) raises a ``ValueError`` naming it.
    """
    factor, added, details = torch.ones_like(loss), torch.zeros_like(loss), {}
    for pen in penalties:
        value = expected.get(pen.resource)
        if value is None:
            hint = " (give the cost model a latency look-up table)" if pen.resource == "latency_ms" else ""
            raise ValueError(f"the cost model gives no expected {pen.resource!r}{hint}")
        value = value.to(loss.device, loss.dtype) if isinstance(value, torch.Tensor) else torch.tensor(
            float(value), dtype=loss.dtype, device=loss.device)
        term = pen.term(value)
        details[f"{pen.form}/{pen.resource}"] = term
        if pen.multiplicative:
            factor = factor * term
        else:
            added = added + term
    return loss * factor + added, details
