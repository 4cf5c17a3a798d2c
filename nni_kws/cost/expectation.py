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

import math
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


def _vector(probs: Probs, label: str, values: Sequence[Any]) -> torch.Tensor:
    """``P(label = v)`` for each of ``values``, as one tensor (per-value tensors are stacked, keeping their graph)."""
    if label not in probs:
        raise ValueError(f"probabilities lack label {label!r} (values {list(values)})")
    dist = probs[label]
    dtype = torch.get_default_dtype()
    if not isinstance(dist, Mapping):  # a vector ordered like the space's values
        vector = torch.as_tensor(dist, dtype=dtype)
        if vector.shape != (len(values),):
            raise ValueError(f"probabilities of label {label!r} have shape {tuple(vector.shape)}, "
                             f"not ({len(values)},) (values {list(values)})")
        return vector
    missing = [v for v in values if v not in dist]
    if missing:
        raise ValueError(f"probabilities of label {label!r} lack value {missing[0]!r}")
    return torch.stack([torch.as_tensor(dist[v], dtype=dtype) for v in values])


def _weights(decision: Decision, vectors: Mapping[str, torch.Tensor],
             choices: Mapping[str, Sequence[Any]]) -> torch.Tensor:
    """P(position active and this candidate) for every candidate of a position, in ``candidates`` order:
    the outer product of the labels' distributions, read at each candidate's values, times P(active)."""
    joint, strides = torch.ones(()), []
    for label in decision.labels:
        joint = joint.unsqueeze(-1) * vectors[label]
    for i in range(len(decision.labels)):
        strides.append(math.prod(len(choices[label]) for label in decision.labels[i + 1:]))
    index = [sum(choices[label].index(value) * stride for label, value, stride in zip(decision.labels, combo, strides))
             for combo in decision.candidates]
    weights = joint.reshape(-1)[torch.tensor(index)]
    if decision.depth is not None:
        label, i = decision.depth
        weights = weights * vectors[label][torch.tensor([d > i for d in choices[label]])].sum()
    return weights


def expected_costs(table: SpaceTable, probs: Probs, bits: Bits = 32, act_bits: int = 32, default_bits: int = 32,
                   lut: "LatencyTable | None" = None, fallback: str | None = None,
                   temperature: float = 0.01) -> dict[str, Any]:
    """Expected ``params``, ``macs``, ``ops``, ``weight_bytes``, ``latency_ms`` (None without a table)
    and smoothed ``peak_activation_bytes``, as scalar tensors differentiable w.r.t. ``probs``.

    Vectorised (one weight per candidate of every position, one matrix of their costs): the DARTS penalty
    runs once per architecture step, and a sum of one tensor op per candidate and cost took 5 % of that step.
    """
    labels = {label for d in table.decisions for label in d.labels} | {d.depth[0] for d in table.decisions if d.depth}
    vectors = {label: _vector(probs, label, table.choices[label]) for label in table.choices if label in labels}
    weights = torch.cat([_weights(d, vectors, table.choices) for d in table.decisions])
    units = [u for d in table.decisions for u in d.candidates.values()]
    columns: list[Callable[[Unit], float]] = [lambda u: u.params, lambda u: u.macs, lambda u: u.feature_macs,
                                              lambda u: u.weight_bytes(bits, default_bits)]
    if lut is not None:
        columns.append(lambda u: lut.lookup(u, fallback))
    totals = weights @ torch.tensor([[column(u) for column in columns] for u in units], dtype=weights.dtype)
    params, macs, frontend_macs, weight_bytes, *latency = totals.unbind()

    position = torch.tensor([p for p, d in enumerate(table.decisions) for _ in d.candidates])
    peak_elems = torch.tensor([u.peak_elems for u in units], dtype=weights.dtype)
    peaks = torch.zeros(len(table.decisions), dtype=weights.dtype).index_add(0, position, weights * peak_elems)
    if temperature > 0:
        tau = temperature * float(peak_elems.max())
        peak = tau * torch.logsumexp(peaks / tau, 0)
    else:
        peak = peaks.max()
    return {
        "params": params,
        "macs": macs,
        "frontend_macs": frontend_macs,
        "ops": 2 * macs,
        "weight_bytes": weight_bytes,
        "peak_activation_bytes": peak * (act_bits / 8),
        "latency_ms": lut.overhead_ms + latency[0] if lut is not None else None,
    }
