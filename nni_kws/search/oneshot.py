"""``run_search``: one-shot architecture search on a KWS space with NNI's strategies.

The strategy runs in-process on NNI's sequential engine (what ``NasExperiment`` picks for one-shot
strategies, without its experiment folder and manager), with :class:`~nni_kws.training.KwsModule`
as the training recipe inside a Lightning evaluator whose trainer adds what a long search needs:
a checkpoint every epoch (supernet weights, alphas, optimizers, epoch) for ``resume``, a CSV log,
``history.jsonl`` (expected and exact costs, argmax architecture per epoch) and a progress bar.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import nni
import pytorch_lightning as pl
import torch
from nni.nas.evaluator.pytorch import Lightning
from nni.nas.execution import SequentialExecutionEngine
from nni.nas.space import RawFormatModelSpace
from nni.nas.strategy import DARTS, ENAS, RandomOneShot
from nni.nas.strategy.base import Strategy
from torch import nn
from torch.utils.data import DataLoader

from nni_kws.cost.budgets import budget_filter
from nni_kws.files import check_checkpoint
from nni_kws.space.labels import label_kind
from nni_kws.training import (
    EpochSeeding,
    KwsModule,
    TrainingDiverged,
    derived_seed,
    make_trainer,
    reseed_loaders,
    seed_everything,
)

from .history import SearchHistory
from .penalty import ResourcePenalty
from .sandwich import SandwichOneShot, SeededRandomOneShot
from .split import SplitSupernet
from .strategy import (
    ResourceDARTS,
    ResourceGumbelDARTS,
    ResourceProxyless,
    arch_probs,
    argmax_arch,
    most_likely_within,
)

__all__ = ["STRATEGIES", "WEIGHTS_ONLY", "SearchResult", "check_searched_strides", "check_split", "make_strategy",
           "run_search"]

_logger = logging.getLogger(__name__)

#: Strategy names of :func:`run_search`: ``darts`` trains the softmax mixture of all candidates;
#: ``gumbel`` a Gumbel-softmax sample; ``gumbel-hard`` one path per step (straight-through Gumbel),
#: so the derived path is the one that was trained; ``random`` trains uniformly sampled single paths
#: (SPOS) and then picks the architecture by evolution over the recalibrated supernet; ``sandwich`` the
#: same with the sandwich rule (largest, smallest and random paths every step, :mod:`.sandwich`); ``proxyless``
#: needs ``KwsSpace(coarse=True)``; ``enas`` needs ``tianshou`` (and ``gym``), which NNI 3.0
#: imports with the pre-0.5 API.
STRATEGIES: tuple[str, ...] = ("darts", "gumbel", "gumbel-hard", "proxyless", "random", "sandwich", "enas")
_DIFFERENTIABLE = ("darts", "gumbel", "gumbel-hard", "proxyless")
#: Strategies that train weights only and pick the architecture by evolution (and optional finalists).
WEIGHTS_ONLY: tuple[str, ...] = ("random", "sandwich")


@dataclass
class SearchResult:
    """What a search found: the architecture dict, its per-label probabilities (differentiable
    strategies; ``{}`` otherwise), one record per epoch, how it searched, and the trained supernet."""

    arch: dict[str, Any]
    probs: dict[str, dict[Any, float]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # strategy, epochs, penalties: for the caller's arch.json
    supernet: nn.Module | None = None


def make_strategy(name: str, *, penalties: Sequence[ResourcePenalty] = (), cost_model: Any = None,
                  arc_learning_rate: float = 3e-3, **kwargs: Any) -> Strategy:
    """An NNI one-shot strategy by name, resource-aware where the strategy allows it.

    Differentiable strategies get the penalties in their architecture loss; ``random`` turns them
    into a hard budget filter on sampled paths (targets only); ``sandwich`` trains every path and
    leaves the budget to the evolution; ``enas`` takes none. ``random`` and ``sandwich`` take
    ``fixed={label: value}``: every trained path has that value (one supernet of a split).
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown search strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    if name in _DIFFERENTIABLE:
        if name == "gumbel-hard":
            kwargs = {"hard": True, **kwargs}
        cls = {"darts": ResourceDARTS, "gumbel": ResourceGumbelDARTS, "gumbel-hard": ResourceGumbelDARTS,
               "proxyless": ResourceProxyless}[name]
        return cls(penalties=penalties, cost_model=cost_model, arc_learning_rate=arc_learning_rate, **kwargs)
    if name == "random":
        kwargs.pop("warmup_epochs", None)  # all of a RandomOneShot search is weight training
        return SeededRandomOneShot(filter=_budget_filter(penalties, cost_model), **kwargs)
    if name == "sandwich":  # the budget applies to the evolution only: one supernet serves every budget
        kwargs.pop("warmup_epochs", None)
        return SandwichOneShot(**kwargs)
    if penalties:
        raise ValueError("the enas strategy takes no resource penalties; use darts, gumbel or proxyless")
    try:
        import tianshou  # noqa: F401  pylint: disable=unused-import
    except ImportError:
        raise ValueError("the enas strategy needs tianshou (NNI 3.0 uses its pre-0.5 API) and gym; "
                         "install them or use darts, gumbel, proxyless or random") from None
    return ENAS(**kwargs)


def _budget_filter(penalties: Sequence[ResourcePenalty], cost_model: Any) -> Callable[[Mapping[str, Any]], bool] | None:
    """The penalties' targets as a hard filter on sampled architectures (None without penalties)."""
    if not penalties:
        return None
    return budget_filter(cost_model.exact, {p.resource: p.target for p in penalties})


def _last_checkpoint(out_dir: Path | None) -> Path | None:
    ckpt = out_dir / "checkpoints" / "last.ckpt" if out_dir is not None else None
    return ckpt if ckpt is not None and ckpt.is_file() else None


def _trainer(epochs: int, out_dir: Path | None, progress: bool, callbacks: list[pl.Callback]) -> pl.Trainer:
    return make_trainer(epochs, out_dir=out_dir, progress=progress, keep_best=False, callbacks=callbacks,
                        trainer_cls=nni.trace(pl.Trainer), log_every_n_steps=1, what="search")


class _DropNniFailureLines(logging.Filter):
    """NNI logs "Model 1 fails to be executed" / "Strategy failed to execute" for *any* exception in
    the one-shot run, also for a requested stop or a divergence; run_search re-raises it anyway."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("fails to be executed" in message or "Strategy failed to execute" in message)


_NNI_LOGGERS = ("nni.nas.execution.sequential", "nni.nas.strategy.base")


def _evolve(space: nn.Module, supernet: nn.Module, train_loader: DataLoader, val_loader: DataLoader,
            accept: Callable[[Mapping[str, Any]], bool] | None, calib_batches: int, seed: int,
            options: Mapping[str, Any] | None, finalists: Mapping[str, Any] | None = None,
            fit_kwargs: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pick an architecture of a trained single-path supernet by evolution over recalibrated candidates,
    then (``finalists={"k": .., "epochs": ..[, "seeds": .., "cover": .., "folds": ..]}``,
    :func:`.finalists.finalist_search`'s arguments) among the best ``k`` by short standalone training."""
    from nni_kws.space import build_model, space_choices
    from nni_kws.space.mixed_ops import fresh_space

    from .evolution import CandidateScorer, evolution_search
    from .finalists import finalist_search
    from .recalibrate import calibration_batches

    base = fresh_space(space)
    scorer = CandidateScorer(base, supernet, calibration_batches(train_loader, calib_batches), val_loader)
    found = evolution_search(space_choices(base), scorer, accept=accept, seed=seed, **dict(options or {}))
    info = {"evaluated": len(found.evaluated), "best_val_acc": found.score, "calib_batches": calib_batches,
            **dict(options or {})}
    if not finalists:
        return found.arch, info
    final = finalist_search(found.evaluated, lambda a: build_model(a, fresh_space(space)), train_loader, val_loader,
                            seed=seed, **dict(finalists), **dict(fit_kwargs or {}))
    info["finalists"] = final.finalists
    return final.arch, info


def check_split(split: str | None, strategy: str, choices: Mapping[str, Any]) -> None:
    """``split`` (None: none) must name one of ``choices``, and only strategies that pick by evolution split."""
    if split is None:
        return
    if strategy not in WEIGHTS_ONLY:
        raise ValueError(f"split needs a strategy that picks by evolution ({', '.join(WEIGHTS_ONLY)}), "
                         f"got {strategy!r}")
    if split not in choices:
        raise ValueError(f"split must be a choice of the space ({', '.join(choices)}), got {split!r}")


def check_searched_strides(strategy: str | Strategy, choices: Mapping[str, Any]) -> None:
    """A space that searches a stride (``s{j}_stride``) needs a path-sampling strategy: a stride changes the
    length of every later sequence, and the DARTS family mixes every candidate of a label in one forward."""
    strides = [label for label in choices if label_kind(label) == "stride"]
    if strides and strategy in _DIFFERENTIABLE:
        raise ValueError(f"{strategy} mixes every candidate of a label, but a searched stride ({strides[0]}) "
                         f"changes the sequence length; search this space with {' or '.join(WEIGHTS_ONLY)}")


def run_search(space: nn.Module, train_loader: DataLoader, val_loader: DataLoader, *,
               strategy: str | Strategy = "darts", epochs: int, penalties: Sequence[ResourcePenalty] = (),
               cost_model: Any = None,
               arc_learning_rate: float = 3e-3, learning_rate: float = 0.05, out_dir: str | Path | None = None,
               seed: int = 0, resume: bool = False, progress: bool = True,
               strategy_kwargs: Mapping[str, Any] | None = None,
               calib_batches: int = 16, evolution: Mapping[str, Any] | None = None,
               finalists: Mapping[str, Any] | None = None, split: str | None = None,
               **module_kwargs: Any) -> SearchResult:
    """Search ``space`` (mutated in place into the supernet) and return the chosen architecture.

    Parameters
    ----------
    space
        A fresh :class:`~nni_kws.space.KwsSpace` (``coarse=True`` for ``proxyless``).
    train_loader, val_loader
        Weights train on the first; the architecture step (DARTS family) or the validation
        metrics (``random``) use the second.
    strategy
        One of :data:`STRATEGIES`, or a ready NNI one-shot strategy object (then ``penalties``,
        ``arc_learning_rate`` and ``strategy_kwargs`` are its own business).
    epochs
        Search epochs (the total, also when resuming).
    penalties, cost_model
        Resource penalties and the :class:`~nni_kws.cost.CostModel` giving expected costs; the cost
        model defaults to one of ``space`` (then also used for the history's costs).
    arc_learning_rate, learning_rate
        Adam step for the architecture logits; SGD step for the weights.
    out_dir
        Where ``checkpoints/last.ckpt``, ``history.jsonl`` and CSV logs go (the caller writes ``arch.json``).
    seed
        Seeds the alphas' initialisation, sampling and data order.
    resume
        Continue from ``out_dir/checkpoints/last.ckpt`` if it exists (weights, alphas, optimizers,
        epoch); history records of epochs after that checkpoint are dropped.
    progress
        Lightning's progress bar.
    strategy_kwargs
        Extra strategy arguments (e.g. ``warmup_epochs``: weight-only epochs before the first
        architecture step; ``arch_every``; ``temperature`` for ``gumbel``).
    penalties (again)
        Differentiable strategies return the argmax architecture; if a penalty's target (a budget) is
        exceeded by it, :func:`~nni_kws.search.strategy.most_likely_within` moves it within (the
        argmax is kept in ``meta['argmax_over_budget']``).
    calib_batches, evolution
        ``random`` only: the architecture is chosen by :func:`~nni_kws.search.evolution.evolution_search`
        (arguments ``evolution``) among candidates within the budgets, each scored on ``val_loader``
        with inherited weights whose BatchNorm is recalibrated on ``calib_batches`` training batches.
        ``sandwich`` also.
    finalists
        ``random``/``sandwich`` only, optional ``{"k": int, "epochs": int, "seeds": int, "cover": labels,
        "folds": loader pairs}``: the ``k`` best distinct candidates of the evolution (and the best of each front
        end they miss) are trained from scratch for ``epochs`` on ``train_loader`` (same recipe; ``seeds`` times,
        default 1; with ``folds``, training ``i`` on the ``i``-th ``(train, val)`` pair) and the one with the
        best validation accuracy (mean over the seeds) is returned (:mod:`.finalists`; costs about ``k * seeds`` short
        trainings).
    split
        ``random``/``sandwich`` only, optional: the label of a choice (:data:`~.split.SPLIT_CHOICE`, the front
        end) whose every value gets its own supernet, trained for ``epochs`` with that value fixed (in
        ``out_dir/<label>-<value>``; ``space`` itself stays untouched); a candidate inherits from the supernet
        of its value (:class:`~.split.SplitSupernet`). A choice with one value trains one supernet.
    **module_kwargs
        :class:`~nni_kws.training.KwsModule` arguments (``weight_decay``, ``label_smoothing``...).
    """
    from nni_kws.space import KwsSpace, space_choices
    from nni_kws.space.mixed_ops import fresh_space

    out = Path(out_dir) if out_dir is not None else None
    if cost_model is None and isinstance(space, KwsSpace):
        from nni_kws.cost import CostModel
        cost_model = CostModel(space)  # before the strategy mutates the space
    choices = space_choices(space)
    check_split(split, strategy, choices)
    check_searched_strides(strategy, choices)
    split_values = choices[split] if split is not None else []

    def train(fixed: Mapping[str, Any], folder: Path | None) -> tuple[Strategy, SearchHistory]:
        seed_everything(seed)
        part = fresh_space(space) if fixed else space  # a split's supernets start alike (and resume alike)
        if isinstance(strategy, Strategy):
            if penalties or strategy_kwargs:
                raise ValueError("pass penalties and strategy arguments to the strategy object itself")
            strat = strategy
        else:
            strat = make_strategy(strategy, penalties=penalties, cost_model=cost_model,
                                  arc_learning_rate=arc_learning_rate,
                                  **({"fixed": fixed} if fixed else {}), **dict(strategy_kwargs or {}))
        history = _train_supernet(part, strat, train_loader, val_loader, epochs=epochs, out=folder, resume=resume,
                                  seed=seed, progress=progress, cost_model=cost_model,
                                  module_kwargs={"learning_rate": learning_rate, **module_kwargs})
        return strat, history

    if len(split_values) > 1:  # one supernet per value, each in its own folder (and checkpoint)
        parts = {value: train({split: value}, out / f"{split}-{value}" if out is not None else None)
                 for value in split_values}
        strat = next(iter(parts.values()))[0]
        supernet: nn.Module = SplitSupernet(split, {value: s.supernet for value, (s, _) in parts.items()})  # type: ignore
        records = [{split: value, **r} for value, (_, h) in parts.items() for r in h.records]
    else:
        strat, history = train({}, out)
        supernet, records = strat.supernet, list(history.records)  # type: ignore[attr-defined]

    probs: dict[str, dict[Any, float]] = {}
    meta: dict[str, Any] = {"strategy": strategy if isinstance(strategy, str) else type(strategy).__name__,
                            "epochs": epochs, "penalties": [p.to_dict() for p in penalties],
                            **{k: v for k, v in dict(strategy_kwargs or {}).items()
                               if k in ("warmup_epochs", "arch_every")}}
    if len(split_values) > 1:
        meta["split"] = split
    if isinstance(strat, DARTS):  # also GumbelDARTS and Proxyless
        oneshot = strat.oneshot_module  # type: ignore[attr-defined]
        with torch.no_grad():
            probs = {label: {v: float(p) for v, p in dist.items()} for label, dist in arch_probs(oneshot).items()}
        if not all(math.isfinite(p) for dist in probs.values() for p in dist.values()):
            raise TrainingDiverged("search diverged (the architecture probabilities are not finite); "
                                   "try a lower learning rate (--lr, --arc-lr)")
        arch = argmax_arch(probs)
        if penalties and cost_model is not None:
            within = most_likely_within(probs, cost_model.exact, {p.resource: p.target for p in penalties})
            if within != arch:
                meta["argmax_over_budget"] = {"arch": arch, "costs": {p.resource: cost_model.exact(arch)[p.resource]
                                                                      for p in penalties}}
                arch = within
    elif isinstance(strat, RandomOneShot) and isinstance(space, KwsSpace):
        after = derived_seed(seed, "search", "evolution")  # the same after a resumed search
        seed_everything(after)
        reseed_loaders([train_loader, val_loader], after)
        arch, meta["evolution"] = _evolve(space, supernet, train_loader, val_loader,
                                          _budget_filter(penalties, cost_model), calib_batches, seed, evolution,
                                          finalists, {"learning_rate": learning_rate, **module_kwargs})
    else:
        arch = dict(strat.oneshot_module.export())  # type: ignore[attr-defined]
    return SearchResult(arch=arch, probs=probs, history=records, meta=meta, supernet=supernet)


def _train_supernet(space: nn.Module, strat: Strategy, train_loader: DataLoader, val_loader: DataLoader, *,
                    epochs: int, out: Path | None, resume: bool, seed: int, progress: bool, cost_model: Any,
                    module_kwargs: Mapping[str, Any]) -> SearchHistory:
    """Run the one-shot strategy on ``space`` (mutated into its supernet), resuming from ``out``'s checkpoint."""
    history = SearchHistory(out / "history.jsonl" if out is not None else None, cost_model)
    ckpt = _last_checkpoint(out) if resume else None
    if ckpt is not None:
        check_checkpoint(ckpt)
        _logger.info("resuming the search from %s", ckpt)
    elif history.path is not None and history.path.exists():
        history.path.unlink()  # a fresh search in an old folder

    module = nni.trace(KwsModule)(**module_kwargs)
    seeding = EpochSeeding(seed, "search", [train_loader, val_loader])
    evaluator = Lightning(module, _trainer(epochs, out, progress, [seeding, history]),
                          train_dataloaders=train_loader, val_dataloaders=val_loader,
                          fit_kwargs={"ckpt_path": str(ckpt)} if ckpt else None)
    quiet = _DropNniFailureLines()
    for name in _NNI_LOGGERS:
        logging.getLogger(name).addFilter(quiet)
    try:
        strat(RawFormatModelSpace(space, evaluator), SequentialExecutionEngine())
    finally:
        for name in _NNI_LOGGERS:
            logging.getLogger(name).removeFilter(quiet)
    return history
