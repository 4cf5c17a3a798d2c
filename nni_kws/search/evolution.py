"""Search over a trained supernet: score candidates with inherited, recalibrated weights and pick the
best one within the budgets by regularized evolution (Real et al. 2019), as SPOS does after training
a single-path supernet (``RandomOneShot``).

Hand-written instead of NNI's ``RegularizedEvolution`` because that strategy drives a multi-trial
engine (one trial process per model, weights trained from scratch), while here every candidate is
scored in-process on the shared supernet weights in a second or two.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from torch import nn

from nni_kws.space import active_arch
from nni_kws.training import accuracy

from .recalibrate import Batch, inherited_model

__all__ = ["CandidateScorer", "EvolutionResult", "arch_key", "network_key", "random_archs", "mutate_arch",
           "evolution_search"]

Arch = dict[str, Any]


def arch_key(arch: Mapping[str, Any]) -> str:
    """A canonical string of an architecture dict (the key results are stored under)."""
    return json.dumps(dict(arch), sort_keys=True, default=str)


def network_key(arch: Mapping[str, Any]) -> str:
    """A canonical string of the network an architecture builds (for caches and de-duplication): labels of blocks
    beyond their stage's depth are left out (:func:`~nni_kws.space.active_arch`), so that candidates differing only
    there count once."""
    return arch_key(active_arch(arch))


def random_archs(choices: Mapping[str, Sequence[Any]], n: int, *, seed: int = 0,
                 accept: Callable[[Mapping[str, Any]], bool] | None = None, max_tries: int = 10_000,
                 at_least: int | None = None) -> list[Arch]:
    """``n`` architectures of distinct networks (:func:`network_key`) drawn uniformly from ``choices`` that
    ``accept`` lets through.

    Raises ``ValueError`` when fewer than ``at_least`` (default ``n``) are found in ``max_tries`` draws (a budget
    that (almost) nothing meets, or a space smaller than ``n``).
    """
    rng, found = random.Random(seed), {}
    for _ in range(max_tries):
        if len(found) == n:
            break
        arch = {label: rng.choice(list(values)) for label, values in choices.items()}
        key = network_key(arch)
        if key not in found and (accept is None or accept(arch)):
            found[key] = arch
    if len(found) < (n if at_least is None else at_least):
        raise ValueError(f"found only {len(found)} of {n} distinct architectures within the budget in {max_tries} "
                         "draws; loosen the budget or ask for fewer")
    return list(found.values())


def mutate_arch(arch: Mapping[str, Any], choices: Mapping[str, Sequence[Any]], rng: random.Random,
                prob: float = 0.2) -> Arch:
    """A copy of ``arch`` with each label that builds something (:func:`~nni_kws.space.active_arch`) re-drawn (to
    another value) with probability ``prob``; at least one."""
    active = active_arch(arch)
    labels = [label for label, values in choices.items() if len(values) > 1 and label in active]
    changed = [label for label in labels if rng.random() < prob] or [rng.choice(labels)]
    child = dict(arch)
    for label in changed:
        child[label] = rng.choice([v for v in choices[label] if v != arch[label]])
    return child


class CandidateScorer:
    """Validation accuracy of architectures with inherited supernet weights and recalibrated BatchNorm.

    Scores are cached per architecture; the same calibration batches serve every candidate.
    """

    def __init__(self, space: nn.Module, supernet: nn.Module, calibration: Iterable[Batch],
                 val_loader: Iterable) -> None:
        self.space, self.supernet, self.val_loader = space, supernet, val_loader
        self.calibration = list(calibration)
        self.cache: dict[str, float] = {}

    def model(self, arch: Mapping[str, Any]) -> nn.Module:
        return inherited_model(self.space, arch, self.supernet, self.calibration)

    def __call__(self, arch: Mapping[str, Any]) -> float:
        key = network_key(arch)
        if key not in self.cache:
            self.cache[key] = accuracy(self.model(arch), self.val_loader)  # type: ignore[arg-type]
        return self.cache[key]


@dataclass
class EvolutionResult:
    """The best architecture found, its score, and every evaluated ``(arch, score)`` in order."""

    arch: Arch
    score: float
    evaluated: list[tuple[Arch, float]] = field(default_factory=list)


def evolution_search(choices: Mapping[str, Sequence[Any]], score: Callable[[Mapping[str, Any]], float], *,
                     accept: Callable[[Mapping[str, Any]], bool] | None = None, population: int = 8,
                     sample: int = 3, cycles: int = 16, mutation_prob: float = 0.2, seed: int = 0) -> EvolutionResult:
    """Regularized evolution: start from ``population`` random accepted architectures, then for each
    cycle mutate the best of ``sample`` random members, add the child (if accepted) and drop the oldest.

    Evaluates at most ``population + cycles`` architectures (cached ones cost nothing).
    """
    rng = random.Random(seed)
    # as many distinct networks as the budgets leave, up to the population
    members = [(a, score(a)) for a in random_archs(choices, population, seed=seed, accept=accept, at_least=1)]
    evaluated = list(members)
    for _ in range(cycles):
        parent = max(rng.sample(members, min(sample, len(members))), key=lambda m: m[1])[0]
        for _ in range(100):  # a child that meets the budgets
            child = mutate_arch(parent, choices, rng, mutation_prob)
            if accept is None or accept(child):
                break
        else:
            continue
        members.append((child, score(child)))
        evaluated.append(members[-1])
        members.pop(0)
    best = max(evaluated, key=lambda m: m[1])
    return EvolutionResult(arch=dict(best[0]), score=best[1], evaluated=evaluated)
