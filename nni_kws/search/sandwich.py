"""Single-path supernet training with the sandwich rule (BigNAS, Yu et al. 2020; OFA, Cai et al. 2020).

Uniform single-path training (SPOS, NNI's ``RandomOneShot``) updates a block that only deep paths use
as often as those paths are drawn, so in a short search the deep paths' weights stay behind and their
inherited accuracy underrates them: the selection then favours shallow networks. The sandwich rule
trains, in every step, the largest path, the smallest path and ``n_random`` uniformly drawn paths on
the same batch, so every weight of the largest network is updated every step and the smallest one
bounds the other end. The step's loss is the mean over those paths (one SGD step per batch, so the
learning rate means what it means for a single path).

The paths of one step share the batch, and they share the front end too when it is not a choice drawn
per path (one front end, or one supernet per front end): it then runs once per step
(:func:`front_end_once`), not once per path.

The trained supernet does not depend on a budget (paths are drawn from the whole space); the budget
applies when an architecture is picked from it (evolution over recalibrated candidates), so one
training serves every budget, as in once-for-all.
"""
from __future__ import annotations

import contextlib
import functools
import random
from typing import Any, Iterator, Mapping

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from nni.mutable import Categorical
from nni.nas.oneshot.pytorch.sampling import RandomSamplingLightningModule
from nni.nas.strategy import RandomOneShot
from torch import nn

from nni_kws.space import FRONTEND_LABEL
from nni_kws.space.labels import label_kind
from nni_kws.training import distillation_loss

__all__ = ["SeededSampling", "SeededRandomOneShot", "SandwichModule", "SandwichOneShot", "extreme_arch",
           "front_end_once"]


def extreme_arch(choices: Mapping[str, list[Any]], largest: bool) -> dict[str, Any]:
    """The largest (or smallest) path: the max (min) of every numeric label (depth, kernel, expansion), the min
    (max) of a searched stride (the longer sequence is the larger network); a non-numeric label (the front end)
    is drawn at random, as it has no size order."""
    arch = {}
    for label, values in choices.items():
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            arch[label] = max(values) if largest != (label_kind(label) == "stride") else min(values)
        else:
            arch[label] = random.choice(list(values))
    return arch


@contextlib.contextmanager
def front_end_once(model: nn.Module) -> Iterator[None]:
    """Within the block, ``model.frontend`` computes its output once per input tensor and hands the same
    output to every later call with that tensor.

    Why: on raw audio the front end (a filterbank over 16,000 samples) is a large part of a small path's
    step, and every path of a sandwich step sends the same batch through it. The gradients are unchanged
    (autograd sums the paths' gradients at the shared output); the front end's BatchNorm updates its running
    statistics once per step instead of once per path (candidates are recalibrated before they are scored).
    """
    frontend, cache = model.frontend, {}

    def forward(x: torch.Tensor) -> torch.Tensor:
        if cache.get("input") is not x:
            cache["input"], cache["output"] = x, type(frontend).forward(frontend, x)
        return cache["output"]

    frontend.forward = forward
    try:
        yield
    finally:
        del frontend.forward


class SeededSampling(RandomSamplingLightningModule):
    """``RandomSamplingLightningModule`` whose paths are drawn with Python's ``random``.

    Why: NNI 3.0's ``Categorical.random()`` draws from a fresh, unseeded ``np.random.RandomState()``, so
    two single-path searches with one seed train different paths and a resumed search is not the
    uninterrupted one. Python's ``random`` is what the search seeds every epoch
    (:class:`~nni_kws.training.EpochSeeding`).

    ``fixed``: ``{label: value}`` that every trained path takes (one supernet per front end,
    :mod:`.split`); the other labels are drawn as usual.
    """

    def __init__(self, training_module: pl.LightningModule, filter: Any = None,  # noqa: A002  NNI's name
                 fixed: Mapping[str, Any] | None = None) -> None:
        super().__init__(training_module, filter=filter)
        self.fixed = dict(fixed or {})

    @functools.cached_property
    def choices(self) -> dict[str, list[Any]]:
        """``{label: values}`` of the supernet's choices, ``fixed`` ones with their one value (read once)."""
        choices = {label: list(m.values) for label, m in self.model.simplify().items() if isinstance(m, Categorical)}
        unknown = [label for label in self.fixed if label not in choices or self.fixed[label] not in choices[label]]
        if unknown:
            raise ValueError(f"fixed choices {unknown} are not choices of the space ({sorted(choices)})")
        return {label: [self.fixed[label]] if label in self.fixed else values for label, values in choices.items()}

    def use_path(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """Set every supernet module to the path ``arch`` (NNI's modules take a fixed value from ``memo``)."""
        memo = dict(arch)
        for module in self.supernet_modules():
            memo.update(module.resample(memo=memo))
        return memo

    def resample(self) -> dict[str, Any]:
        """A uniformly drawn path (redrawn until it passes ``filter``), set on the supernet."""
        return self._repeat_until_valid(
            lambda: self.use_path({label: random.choice(values) for label, values in self.choices.items()}))


class SeededRandomOneShot(RandomOneShot):
    """NNI's ``RandomOneShot`` (SPOS: uniform single paths) with seeded path draws (:class:`SeededSampling`)."""

    def __init__(self, fixed: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fixed = dict(fixed or {})

    def configure_oneshot_module(self, training_module: pl.LightningModule) -> SeededSampling:
        return SeededSampling(training_module, filter=self.filter, fixed=self.fixed)


class SandwichModule(SeededSampling):
    """Single-path training whose step averages the loss of the largest, the smallest and ``n_random``
    random paths on one batch (see the module docstring).

    ``inplace_distill``: the largest path learns from the labels and every other path from the largest
    path's (detached) predictions, as in US-Nets and BigNAS: the small paths then learn what the large one
    can tell them instead of fitting hard labels they cannot reach, which makes their inherited accuracy
    closer to what they reach alone."""

    def __init__(self, training_module: pl.LightningModule, n_random: int = 1, inplace_distill: bool = False,
                 fixed: Mapping[str, Any] | None = None) -> None:
        super().__init__(training_module, fixed=fixed)
        if n_random < 0:
            raise ValueError(f"n_random must be >= 0, got {n_random}")
        self.n_random, self.inplace_distill = n_random, inplace_distill

    @functools.cached_property
    def shares_front_end(self) -> bool:
        """Whether every path takes the same front end (not a choice, or one fixed for this supernet)."""
        return hasattr(self.model, "frontend") and len(self.choices.get(FRONTEND_LABEL, [None])) == 1

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        with front_end_once(self.model) if self.shares_front_end else contextlib.nullcontext():
            return self._sandwich_step(batch, batch_idx)

    def _sandwich_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        choices = self.choices
        paths = [extreme_arch(choices, True), extreme_arch(choices, False)]
        losses, teacher = [], None
        for i in range(len(paths) + self.n_random):
            if i < len(paths):
                self.use_path(paths[i])
            else:
                self.resample()  # uniform over the whole space
            if not self.inplace_distill:
                loss = self.training_module.training_step(batch, batch_idx)
                losses.append(loss["loss"] if isinstance(loss, dict) else loss)
                continue
            logits = self.training_module(batch[0])
            if teacher is None:  # the largest path learns from the labels, the others from it
                losses.append(F.cross_entropy(logits, batch[1], label_smoothing=self.training_module.label_smoothing))
                teacher = logits.detach()
            else:
                losses.append(distillation_loss(logits, teacher, 1.0))
        loss = torch.stack(losses).mean()
        if self.inplace_distill:
            self.log("train_loss", loss, prog_bar=True, batch_size=len(batch[1]))
        return loss


class SandwichOneShot(SeededRandomOneShot):
    """NNI's ``RandomOneShot`` (single-path mixed operations and hooks) trained with the sandwich rule."""

    def __init__(self, n_random: int = 1, inplace_distill: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_random, self.inplace_distill = n_random, inplace_distill

    def configure_oneshot_module(self, training_module: pl.LightningModule) -> SandwichModule:
        return SandwichModule(training_module, n_random=self.n_random, inplace_distill=self.inplace_distill,
                              fixed=self.fixed)
