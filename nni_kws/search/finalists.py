"""A finalist stage after a one-shot search: multi-fidelity selection (as in successive halving).

Inherited supernet accuracy ranks architectures only roughly, and the top candidates of an evolution
often differ by less than that ranking's noise. So the ``k`` best distinct candidates by inherited
validation accuracy are each trained from scratch for a few epochs on the training loader, and the
one with the best validation accuracy wins. It costs ``k`` short trainings (one more for each front end
missing from the ``k``, see :data:`COVERED_CHOICES`); it selects on the validation loader only (never on
a test split). With ``folds``, each of a finalist's trainings holds apart other speakers (cross-validation),
so that the pick does not fit the chance errors of one small validation split.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from torch import nn
from torch.utils.data import DataLoader

from nni_kws.space import FRONTEND_LABEL
from nni_kws.training import accuracy, train_from_scratch

from .evolution import network_key

__all__ = ["COVERED_CHOICES", "FinalistResult", "top_distinct", "finalist_search"]

#: Choices whose every value gets a finalist. Supernets rank across front ends unreliably: one of three
#: compact supernets put only conv front ends among its best candidates, which scored 52-63 % on dev-val
#: as finalists, where the other two supernets' SincConv finalists scored 67-75 %
#: (benchmarks/results/search_quality.json at 3a0c2df, ``sandwich/*/s2``). So the best candidate of each
#: front end is trained too, and dev-val decides between them.
COVERED_CHOICES = (FRONTEND_LABEL,)


@dataclass
class FinalistResult:
    """The winner, and every finalist as ``{"arch", "inherited_val_acc", "val_acc"}`` in rank order (those
    added to cover a choice last, marked ``"covers": True``); with several seeds also each training's
    ``"val_accs"`` and the size of its validation set, ``"val_clips"``."""

    arch: dict[str, Any]
    finalists: list[dict[str, Any]] = field(default_factory=list)


def top_distinct(scored: Sequence[tuple[Mapping[str, Any], float]], k: int,
                 cover: Sequence[str] = ()) -> list[tuple[dict[str, Any], float]]:
    """The ``k`` best distinct networks of ``(arch, score)`` pairs (first occurrence wins a tie), then,
    for each label in ``cover``, the best one of every value of that label which those miss."""
    best: dict[str, tuple[dict[str, Any], float]] = {}
    for arch, score in scored:
        key = network_key(arch)
        if key not in best or score > best[key][1]:
            best[key] = (dict(arch), score)
    ranked = sorted(best.values(), key=lambda m: -m[1])
    top = ranked[:k]
    for label in cover:
        for arch, score in ranked[k:]:
            if label in arch and arch[label] not in {a.get(label) for a, _ in top}:
                top.append((arch, score))
    return top


def finalist_search(scored: Sequence[tuple[Mapping[str, Any], float]], build: Callable[[Mapping[str, Any]], nn.Module],
                    train_loader: DataLoader, val_loader: DataLoader, *, k: int, epochs: int, seed: int = 0,
                    seeds: int = 1, cover: Sequence[str] = COVERED_CHOICES,
                    folds: Sequence[tuple[DataLoader, DataLoader]] | None = None, **fit_kwargs: Any) -> FinalistResult:
    """Train the ``k`` best candidates of ``scored`` (and the best of each value of the ``cover`` choices they
    miss) from scratch for ``epochs`` and pick by validation accuracy, averaged over ``seeds`` trainings (seeds
    ``seed``, ``seed + 1``...): one short training's validation accuracy moves between seeds by more than good
    candidates differ (benchmarks/results/search_quality_wide.json).

    ``folds``: one ``(train, validation)`` loader pair per seed, used instead of ``train_loader`` and
    ``val_loader`` by that seed's training (e.g. from
    :meth:`~nni_kws.data.datamodule.SpeechCommandsDataModule.val_folds`).
    """
    if k < 1 or epochs < 1 or seeds < 1:
        raise ValueError(f"finalists need k, epochs and seeds >= 1, got k={k}, epochs={epochs}, seeds={seeds}")
    if folds is not None and len(folds) != seeds:
        raise ValueError(f"finalists need one fold per seed, got {len(folds)} folds for {seeds} seeds")
    loaders = list(folds) if folds is not None else [(train_loader, val_loader)] * seeds
    val_clips = [len(val.dataset) for _, val in loaders]
    rows = []
    for rank, (arch, inherited) in enumerate(top_distinct(scored, k, cover)):
        accs = []
        for training_seed, (train, val) in zip(range(seed, seed + seeds), loaders):
            model = train_from_scratch(lambda: build(arch), training_seed, train, val, epochs=epochs, **fit_kwargs)
            accs.append(accuracy(model, val))
        rows.append({"arch": arch, "inherited_val_acc": inherited, "val_acc": sum(accs) / seeds,
                     **({"val_accs": accs, "val_clips": val_clips} if seeds > 1 else {}),
                     **({"covers": True} if rank >= k else {})})
    winner = max(rows, key=lambda r: r["val_acc"])  # max keeps the first (best inherited) on a tie
    return FinalistResult(arch=dict(winner["arch"]), finalists=rows)
