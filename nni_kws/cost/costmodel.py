"""``CostModel``: exact and expected costs of a KWS space, in one object."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from nni_kws.space import KwsSpace, build_space

from .exact import exact_costs
from .expectation import Probs, expected_costs, probs_from_alphas
from .latency import LatencyTable
from .layers import Bits, Layer, SpaceTable, Unit, space_table

__all__ = ["CostModel"]


class CostModel:
    """Costs of every architecture of a space (definitions in :mod:`nni_kws.cost.exact`).

    Parameters
    ----------
    space
        A :class:`KwsSpace`, its constructor kwargs, or a preset name ('tiny', 'small', 'paper').
    lut
        A :class:`LatencyTable` (or its JSON path) measured for this space; without it
        ``latency_ms`` is None.
    fallback
        ``None``: a layer missing from the table raises; ``'macs'``: MAC-proportional estimate + warning.
    include_frontend
        Count MFCC feature extraction (:mod:`nni_kws.cost.frontend`) in ``macs`` (default) or only on
        its own ``frontend_macs`` line (the convention of MAC counts that leave the features out).

    Example
    -------
    >>> cm = CostModel("small")
    >>> cm.exact(arch)["macs"]                                       # an int
    >>> cm.expected(cm.probs_from_alphas(alphas))["latency_ms"].backward()   # DARTS penalty
    """

    def __init__(self, space: KwsSpace | Mapping[str, Any] | str = "paper",
                 lut: LatencyTable | str | Path | None = None, fallback: str | None = None,
                 include_frontend: bool = True) -> None:
        if isinstance(space, str):
            space = build_space(space)
        elif not isinstance(space, KwsSpace):
            space = KwsSpace(**space)
        self.space = space
        self.include_frontend = include_frontend
        self.table: SpaceTable = space_table(space, include_features=include_frontend)
        self.lut = LatencyTable.load(lut) if isinstance(lut, (str, Path)) else lut
        self.fallback = fallback

    @property
    def choices(self) -> dict[str, list[Any]]:
        """``{label: values}`` of the space."""
        return self.table.choices

    def units(self, arch: Mapping[str, Any]) -> list[Unit]:
        """Latency units (front end, active blocks, head) of ``arch`` in execution order."""
        return self.table.units(arch)

    def layers(self, arch: Mapping[str, Any]) -> list[Layer]:
        """Every leaf layer of ``arch`` with shapes, params and MACs (names as in the frozen model)."""
        return [layer for unit in self.units(arch) for layer in unit.layers]

    def exact(self, arch: Mapping[str, Any], bits: Bits = 32, act_bits: int = 32,
              default_bits: int = 32, input_bits: int | None = None) -> dict[str, Any]:
        """``params``, ``macs``, ``frontend_macs``, ``ops``, ``weight_bytes``, ``peak_activation_bytes`` (ints),
        ``latency_ms`` (float, None without a table) of one architecture dict (the input waveform at ``input_bits``,
        default ``act_bits``)."""
        return exact_costs(self.units(arch), bits, act_bits, default_bits, self.lut, self.fallback, input_bits)

    def expected(self, probs: Probs, bits: Bits = 32, act_bits: int = 32, default_bits: int = 32,
                 temperature: float = 0.01) -> dict[str, Any]:
        """The same keys as :meth:`exact`, as differentiable scalar tensors under ``probs``
        (``{label: {value: prob}}``); see :mod:`nni_kws.cost.expectation` for the peak-memory rule."""
        return expected_costs(self.table, probs, bits, act_bits, default_bits, self.lut, self.fallback, temperature)

    def probs_from_alphas(self, alphas: Mapping[str, Any]) -> dict[str, dict[Any, Any]]:
        """``{label: {value: softmax(alpha)[i]}}`` for logits ordered like :attr:`choices`."""
        return probs_from_alphas(alphas, self.choices)

    def one_hot(self, arch: Mapping[str, Any]) -> dict[str, dict[Any, float]]:
        """Probabilities putting all mass on ``arch`` (``expected(one_hot(a)) == exact(a)``)."""
        return {label: {v: float(v == arch[label]) for v in values} for label, values in self.choices.items()}

    def cheapest(self, cost: str) -> tuple[dict[str, Any], float]:
        """``(arch, value)`` of the architecture with the smallest ``cost`` (a key of :meth:`exact`).

        Coordinate descent over the labels from the smallest value of each: exact for costs that add up
        over layers (params, MACs, latency) since each label then moves the total on its own; for the
        peak activation (a maximum over layers) it is the smallest found along the way.
        """
        arch = {label: min(values, key=lambda v: (isinstance(v, str), v)) for label, values in self.choices.items()}
        best = self.exact(arch)[cost]
        if best is None:
            raise ValueError(f"no {cost} without a latency table (lut)")
        changed = True
        while changed:
            changed = False
            for label, values in self.choices.items():
                for value in values:
                    value_cost = self.exact({**arch, label: value})[cost]
                    if value_cost < best:
                        arch, best, changed = {**arch, label: value}, value_cost, True
        return arch, float(best)
