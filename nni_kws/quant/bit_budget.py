"""The bit arithmetic of learned quantization grids, and the budget part of
:class:`~nni_kws.quant.LearnedBitwidthQuantizer` as a mixin (its own idea: average bits, the penalty
that pulls them to a budget, the final projection that meets it)."""
from __future__ import annotations

import logging
import math
from typing import Dict, Iterator

import torch
from nni.compression.base.target_space import QuantizationTargetSpace, TargetType
from torch import Tensor

__all__ = ["levels_for_bits", "bits_for_levels", "is_signed", "qparams", "pinned_levels_name", "numel",
           "BitBudgetMixin"]

_logger = logging.getLogger(__name__)


def levels_for_bits(bits: int, signed: bool) -> tuple[int, int]:
    """Smallest and largest number of positive levels ``n`` (grid ``-n..n`` or ``0..n``) that need ``bits``."""
    if signed:
        return (2 ** (bits - 2) if bits >= 2 else 0), 2 ** (bits - 1) - 1
    return 2 ** (bits - 1), 2 ** bits - 1


def bits_for_levels(levels: Tensor, signed: bool) -> Tensor:
    """Bits of a grid with ``levels`` positive levels: ``ceil(log2(n + 1))`` plus a sign bit when signed."""
    return torch.ceil(torch.log2(levels + 1)) + int(signed)


def is_signed(target_space: QuantizationTargetSpace) -> bool:
    return not (target_space.quant_dtype or "int8").startswith("uint")


def qparams(target_space: QuantizationTargetSpace) -> tuple[Tensor, Tensor]:
    """Step size ``d`` and dynamic range ``q_max`` of a target, differentiable; ``q_max = n·d`` while the
    target's levels ``n`` are pinned (:func:`pinned_levels_name`)."""
    wrapper, name = target_space._wrapper, target_space._target_name
    scale = getattr(wrapper, "_nni_kws_qparam_scale")
    step = torch.exp(scale * getattr(wrapper, f"{name}_step_param"))
    pinned = getattr(wrapper, pinned_levels_name(name), None)
    if pinned is not None:
        return step, step * pinned
    return step, torch.exp(scale * getattr(wrapper, f"{name}_range_param"))


def pinned_levels_name(target_name: str) -> str:
    """Wrapper attribute holding a target's pinned levels ``n`` (absent: ``d`` and ``q_max`` learn apart)."""
    return f"_nni_kws_{target_name}_pinned_levels"


def numel(target_space: QuantizationTargetSpace) -> int:
    """Elements of a parameter, or per example of an activation (recorded shape without the batch dim)."""
    shape = target_space.shape
    if not shape:
        return 0
    if target_space.type is not TargetType.PARAMETER:
        shape = shape[1:]
    return math.prod(shape)


class BitBudgetMixin:
    """Average bits per weight / activation under budgets (``weight_budget_bits``, ``act_budget_bits``,
    ``budget_exclude``, ``budget_weight``, ``min_bits``, ``sensitivity``, ``fill_budget`` set by the quantizer)."""

    def _budget(self, module_name: str, target_name: str, target_space: QuantizationTargetSpace) -> float | None:
        if f"{module_name}.{target_name}" in self.budget_exclude:
            return None
        return self.weight_budget_bits if target_space.type is TargetType.PARAMETER else self.act_budget_bits

    def target_bits(self, module_name: str, target_name: str) -> Tensor:
        """Bit-width of a target: exactly the integer value (so a met budget reads as met), with the gradient of
        ``log2(q_max / d + 1)`` unless the target is at ``min_bits`` (it cannot give up a bit: the penalty's pull
        would only widen its step size, and with it the grid, step after step)."""
        target_space = self._target_spaces[module_name][target_name]
        step, qrange = qparams(target_space)
        signed = is_signed(target_space)
        hard = bits_for_levels(torch.round(qrange / step), signed)
        soft = torch.log2(qrange / step + 1) + int(signed)
        # soft - soft.detach() is exactly 0: straight-through without the rounding of soft + (hard - soft)
        return (hard + (soft - soft.detach()) * (hard > self.min_bits)).squeeze()

    def _budgeted(self, kind: str) -> Iterator[tuple[str, str, QuantizationTargetSpace]]:
        """``(module, target, target space)`` of the initialised, non-empty targets of ``kind`` under its budget."""
        for module_name, target_name, target_space in self._targets():
            if (target_space.type is TargetType.PARAMETER) == (kind == "weight") and target_space.scale is not None \
                    and f"{module_name}.{target_name}" not in self.budget_exclude and numel(target_space):
                yield module_name, target_name, target_space

    def average_bits(self, kind: str) -> Tensor | None:
        """Parameter-weighted (``kind='weight'``) or element-weighted (``'activation'``) mean bits
        of the targets under budget (not in ``budget_exclude``).

        Activation sizes are per example (the batch dimension of the recorded shape is dropped);
        ``None`` while no target of that kind has been seen.
        """
        total, count = 0.0, 0
        for module_name, target_name, target_space in self._budgeted(kind):
            total = total + numel(target_space) * self.target_bits(module_name, target_name)
            count += numel(target_space)
        return total / count if count else None

    def _averages_over_budget(self) -> Iterator[tuple[str, Tensor, float]]:
        """``(kind, average bits, budget)`` of each kind whose average exceeds its budget."""
        for kind, budget in (("weight", self.weight_budget_bits), ("activation", self.act_budget_bits)):
            avg = self.average_bits(kind) if budget is not None else None
            if avg is not None and float(avg.detach()) > budget + 1e-9:
                yield kind, avg, budget

    def budget_penalty(self) -> Tensor | float:
        """``λ · Σ (average bits - budget)`` over the kinds above their budget (a hinge on the integer averages,
        the same test as :meth:`over_budget`)."""
        return self.budget_weight * sum((avg - budget for _, avg, budget in self._averages_over_budget()), 0.0)

    def over_budget(self) -> Dict[str, float]:
        """``{kind: average bits}`` of the kinds whose average exceeds its budget (empty: budgets met)."""
        return {kind: float(avg) for kind, avg, _ in self._averages_over_budget()}

    def _with_bits(self, kind: str) -> list[tuple[str, str, QuantizationTargetSpace, int]]:
        """:meth:`_budgeted` targets with their integer bit-widths."""
        return [(m, t, ts, int(self.target_bits(m, t))) for m, t, ts in self._budgeted(kind)]

    def _noise_per_element(self, module_name: str, target_name: str, target_space: QuantizationTargetSpace,
                           bits: int) -> float:
        """Modelled loss of one bit less (or gained by one bit more, from ``bits - 1``) per bit-element:
        quantization noise ``s_t · 4^-b`` with ``s_t`` from ``sensitivity`` (1 where unknown), over the size."""
        return self.sensitivity.get(f"{module_name}.{target_name}", 1.0) * 4.0 ** -bits / numel(target_space)

    @torch.no_grad()
    def _set_bits(self, module_name: str, target_name: str, target_space: QuantizationTargetSpace, bits: int) -> None:
        """``d = q_max / n`` for the most levels ``n`` of ``bits``: the range stays, the grid gets finer or coarser
        (a pinned grid is pinned to ``n``)."""
        n_new = levels_for_bits(bits, is_signed(target_space))[1]
        qrange = qparams(target_space)[1]
        wrapper = self._module_wrappers[module_name]
        if getattr(wrapper, pinned_levels_name(target_name), None) is not None:
            setattr(wrapper, pinned_levels_name(target_name), n_new)
        getattr(wrapper, f"{target_name}_step_param").fill_(float(torch.log(qrange / n_new)) / self.qparam_lr_scale)
        self._sync(target_space)

    @torch.no_grad()
    def project_to_budget(self) -> list[tuple[str, str, int]]:
        """Lower bit-widths one bit at a time until every average meets its budget, then (``fill_budget``) raise
        those that still fit; returns the changes ``(module, target, new bits)``.

        Each step lowers the target whose modelled loss grows least per bit-element saved
        (:meth:`_noise_per_element`, so the widest grids go first where no sensitivity is known); the budgets are
        >= ``min_bits``, so this always ends. Whole bits per tensor leave the averages below their budgets; the
        fill then raises, one bit at a time, the target whose modelled loss falls most per bit-element among those
        whose raise keeps the average within its budget.
        """
        changes = []
        for kind, budget in (("weight", self.weight_budget_bits), ("activation", self.act_budget_bits)):
            while budget is not None and kind in self.over_budget():
                lower = [(self._noise_per_element(m, t, ts, b), m, t, ts, b - 1)
                         for m, t, ts, b in self._with_bits(kind) if b > self.min_bits]
                if not lower:
                    raise RuntimeError(f"cannot meet the {kind} budget {budget}: every target is at min_bits")
                _, module_name, target_name, target_space, bits = min(lower, key=lambda c: c[0])
                self._set_bits(module_name, target_name, target_space, bits)
                changes.append((module_name, target_name, bits))
            while budget is not None and self.fill_budget:
                targets = self._with_bits(kind)
                count = sum(numel(ts) for _, _, ts, _ in targets)
                spare = budget * count - sum(numel(ts) * b for _, _, ts, b in targets)  # bit-elements left
                raise_ = [(self._noise_per_element(m, t, ts, b + 1), m, t, ts, b + 1) for m, t, ts, b in targets
                          if b < ts.quant_bits and numel(ts) <= spare + 1e-9 * count]
                if not raise_:
                    break
                _, module_name, target_name, target_space, bits = max(raise_, key=lambda c: c[0])
                self._set_bits(module_name, target_name, target_space, bits)
                changes.append((module_name, target_name, bits))
        for wrapper in self._module_wrappers.values():
            self._sync_bias(wrapper)
        if changes:
            _logger.info("budget projection changed %d bit-widths: %s", len(changes), changes)
        return changes
