"""Differentiable expected costs under architecture probabilities (for DARTS-style search).

``probs`` has the format of NNI's ``expression_expectation``: ``{label: {value: prob}}`` with
probabilities as torch tensors (e.g. ``softmax(alpha)``), so gradients reach the alphas.
Labels are taken as independent, as NNI does.

- params, MACs, weight bytes, latency are sums over positions, hence exactly
  ``E = Σ_positions P(active) · Σ_candidates P(candidate) · cost(candidate)`` where a block ``i``
  of stage ``j`` is active with ``P(s{j}_depth > i)`` and a candidate's probability is the product
  over its labels (``k`` and ``e`` jointly, or the coarse ``k{k}e{e}`` label, or ``frontend``).
  At one-hot probabilities this equals the exact cost.
- peak activation memory is a max, whose expectation does not factorise. We use a smooth max
  (log-sum-exp) of the *expected* per-position peaks ``m_p``: ``τ·log Σ exp(m_p/τ)`` with
  ``τ = temperature · max_p max_candidate peak`` (a constant). It overestimates the hard max of the
  ``m_p`` by at most ``τ·log(#positions)``; ``temperature=0`` gives that hard max (exact at
  one-hot, subgradient to the arg-max position only).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import torch

from .layers import Bits, Decision, SpaceTable, Unit

if TYPE_CHECKING:
    from .latency import LatencyTable

__all__ = ["Probs", "expected_costs", "probs_from_alphas"]

Probs = Mapping[str, Mapping[Any, Any]]


def probs_from_alphas(alphas: Mapping[str, torch.Tensor],
                      choices: Mapping[str, Sequence[Any]]) -> dict[str, dict[Any, torch.Tensor]]:
    """``{label: {value: softmax(alpha)[i]}}`` from one logit vector per label (ordered as ``choices``)."""
    return {label: dict(zip(choices[label], torch.softmax(alpha, -1))) for label, alpha in alphas.items()}


def _dist(probs: Probs, label: str, values: Sequence[Any]) -> dict[Any, torch.Tensor]:
    if label not in probs:
        raise ValueError(f"probabilities lack label {label!r} (values {list(values)})")
    dist = probs[label]
    if not isinstance(dist, Mapping):  # a vector ordered like the space's values
        dist = dict(zip(values, dist))
    missing = [v for v in values if v not in dist]
    if missing:
        raise ValueError(f"probabilities of label {label!r} lack value {missing[0]!r}")
    return {v: torch.as_tensor(dist[v]) for v in values}


def _weights(decision: Decision, probs: Probs, choices: Mapping[str, Sequence[Any]]) -> list[tuple[torch.Tensor, Unit]]:
    """(P(position active and this candidate), candidate) for every candidate of a position."""
    active = torch.ones(())
    if decision.depth is not None:
        label, i = decision.depth
        active = sum((p for d, p in _dist(probs, label, choices[label]).items() if d > i), torch.zeros(()))
    dists = [_dist(probs, label, choices[label]) for label in decision.labels]
    out = []
    for combo, unit in decision.candidates.items():
        weight = active
        for dist, value in zip(dists, combo):
            weight = weight * dist[value]
        out.append((weight, unit))
    return out


def expected_costs(table: SpaceTable, probs: Probs, bits: Bits = 32, act_bits: int = 32, default_bits: int = 32,
                   lut: "LatencyTable | None" = None, fallback: str | None = None,
                   temperature: float = 0.01) -> dict[str, Any]:
    """Expected ``params``, ``macs``, ``ops``, ``weight_bytes``, ``latency_ms`` (None without a table)
    and smoothed ``peak_activation_bytes``, as scalar tensors differentiable w.r.t. ``probs``."""
    positions = [_weights(d, probs, table.choices) for d in table.decisions]

    def expect(cost: Callable[[Unit], float]) -> torch.Tensor:
        return sum((w * cost(u) for pos in positions for w, u in pos), torch.zeros(()))

    macs = expect(lambda u: u.macs)
    peaks = torch.stack([sum((w * u.peak_elems for w, u in pos), torch.zeros(())) for pos in positions])
    scale = act_bits / 8
    if temperature > 0:
        tau = temperature * max(u.peak_elems for d in table.decisions for u in d.candidates.values())
        peak = tau * torch.logsumexp(peaks / tau, 0)
    else:
        peak = peaks.max()
    latency = None
    if lut is not None:
        latency = lut.overhead_ms + expect(lambda u: lut.lookup(u, fallback))
    return {
        "params": expect(lambda u: u.params),
        "macs": macs,
        "frontend_macs": expect(lambda u: u.feature_macs),
        "ops": 2 * macs,
        "weight_bytes": expect(lambda u: u.weight_bytes(bits, default_bits)),
        "peak_activation_bytes": peak * scale,
        "latency_ms": latency,
    }

