"""Resource-aware differentiable strategies: NNI's DARTS, GumbelDARTS and Proxyless whose
architecture step is penalised by differentiable expected hardware costs.

Why not ``DARTS(penalty=...)``: NNI's ``DartsLightningModule`` hands the penalty
``export_probs()``, which returns Python floats (``softmax(alpha).cpu().tolist()``), so the
penalty is a constant w.r.t. the architecture logits and never changes the search. Here the
probabilities are built as tensors from the supernet modules' ``_arch_alpha``, so both our
:class:`~nni_kws.search.penalty.ResourcePenalty` terms (through ``CostModel.expected``) and an
NNI ``ExpectationProfilerPenalty`` passed as ``penalty=`` reach the alphas.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterator, Mapping, Sequence, cast

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from nni.mutable import Categorical
from nni.nas.oneshot.pytorch.base_lightning import BaseOneShotLightningModule
from nni.nas.oneshot.pytorch.differentiable import DartsLightningModule, GumbelDartsLightningModule
from nni.nas.oneshot.pytorch.supermodule.differentiable import GumbelSoftmax
from nni.nas.oneshot.pytorch.supermodule.proxyless import ProxylessMixedRepeat
from nni.nas.strategy import DARTS, GumbelDARTS, Proxyless
from torch import nn

from nni_kws.cost.budgets import budget_penalty

from .penalty import ResourcePenalty, penalized_loss

__all__ = ["arch_alphas", "arch_probs", "argmax_arch", "most_likely_within", "PathGumbel", "ResourceDartsModule",
           "ResourceGumbelDartsModule",
           "ResourceDARTS", "ResourceGumbelDARTS", "ResourceProxyless"]


def _per_model(module: BaseOneShotLightningModule, key: str, compute: Callable[[], Any]) -> Any:
    """``compute()``, once per model of ``module``: the supernet keeps its modules and alphas during a search,
    and the walks over its modules that find them cost milliseconds on every architecture step otherwise."""
    cache = module.__dict__.setdefault("_per_model_cache", {})
    hit = cache.get(key)
    if hit is None or hit[0] is not module.model:
        hit = cache[key] = (module.model, compute())
    return hit[1]


def arch_alphas(module: BaseOneShotLightningModule) -> dict[str, nn.Parameter]:
    """``{label: alpha}`` of a differentiable supernet (one logit vector per label, shared by modules)."""
    return _per_model(module, "alphas", lambda: _find_alphas(module))


def _find_alphas(module: BaseOneShotLightningModule) -> dict[str, nn.Parameter]:
    alphas: dict[str, nn.Parameter] = {}
    for m in module.supernet_modules():
        alpha = getattr(m, "_arch_alpha", None)
        if isinstance(alpha, nn.Parameter):  # LayerChoice / InputChoice
            alphas.setdefault(cast(Any, m).label, alpha)
        elif isinstance(alpha, nn.ParameterDict):  # mixed operations, Repeat
            for label, a in alpha.items():
                alphas.setdefault(label, a)
    return alphas


def arch_probs(module: BaseOneShotLightningModule,
               device: torch.device | str | None = "cpu") -> dict[str, dict[Any, torch.Tensor]]:
    """``{label: {value: probability}}`` as tensors that keep the graph to the alphas.

    ``softmax(alpha)`` per label, except a depth searched by Proxyless, whose distribution follows
    from per-block skip gates (``ProxylessMixedRepeat.export_probs`` computes it with tensors).
    The plain softmax is used for GumbelDARTS too: the penalty is an expectation over the
    categorical distribution, not over one noisy Gumbel draw. By default the tensors are moved to
    the CPU, where the cost model's constants live (``.cpu()`` is differentiable).
    """
    values, repeats = _per_model(module, "labels", lambda: _space_labels(module))
    probs: dict[str, dict[Any, torch.Tensor]] = {}
    for label, alpha in arch_alphas(module).items():
        if label in values:  # moved as one vector: one copy per label from a GPU, not one per value
            probs[label] = dict(zip(values[label], torch.softmax(alpha, -1).to(device)))
    for m in repeats:
        for label, dist in m.export_probs({}).items():
            probs[label] = {v: torch.as_tensor(dist.get(v, 0.0), device=device) for v in values[label]}
    return probs


def _space_labels(module: BaseOneShotLightningModule) -> tuple[dict[str, list[Any]], list[ProxylessMixedRepeat]]:
    """The values of the space's categorical labels, and the Proxyless repeats (whose per-block skip gates are
    not labels of the space)."""
    values = {label: list(m.values) for label, m in module.model.simplify().items() if isinstance(m, Categorical)}
    repeats = [m for m in module.supernet_modules() if isinstance(m, ProxylessMixedRepeat)]
    for m in repeats:
        for block in list(m.blocks)[m.min_depth:]:
            values.pop(getattr(block, "label", None), None)
    return values, repeats


def argmax_arch(probs: Mapping[str, Mapping[Any, Any]]) -> dict[str, Any]:
    """The most likely value of every label (NNI's DARTS export; for Proxyless' depth NNI samples)."""
    return {label: max(dist, key=lambda v: float(dist[v])) for label, dist in probs.items()}


def most_likely_within(probs: Mapping[str, Mapping[Any, float]],
                       costs_of: Callable[[Mapping[str, Any]], Mapping[str, Any]],
                       limits: Mapping[str, float]) -> dict[str, Any]:
    """The argmax architecture, moved greedily into ``limits`` (``{cost key: limit}``) if it is over one.

    A penalty on *expected* costs can leave the argmax a little over budget. While over, the single-label
    change that gives up the least log-probability per unit of relative overshoot removed is applied
    (a greedy knapsack step); it stops when within every limit or when no change reduces the overshoot.
    """
    arch = argmax_arch(probs)

    def overshoot(a: Mapping[str, Any]) -> float:  # the float hinge of the budget vocabulary, on cost keys
        return budget_penalty(costs_of(a), limits)

    def logp(label: str, value: Any) -> float:
        return math.log(max(float(probs[label][value]), 1e-12))

    current = overshoot(arch) if limits else 0.0
    while current > 0:
        best: tuple[float, dict[str, Any], float] | None = None
        for label, dist in probs.items():
            for value in dist:
                if value == arch[label]:
                    continue
                candidate = {**arch, label: value}
                over = overshoot(candidate)
                if over < current:
                    score = (logp(label, arch[label]) - logp(label, value)) / (current - over)
                    if best is None or score < best[0]:
                        best = (score, candidate, over)
        if best is None:
            break
        _, arch, current = best
    return arch


class PathGumbel(GumbelSoftmax):
    """Gumbel-softmax that draws *one* sample per architecture label and step.

    NNI's ``GumbelSoftmax`` draws anew at every call, and a label is used by several modules (an
    expansion ratio sizes the expand conv, its BatchNorm, the depthwise and the projection conv), so
    one forward pass mixed different paths. Here a draw is cached per logit vector (labels share one
    ``alpha`` parameter) until :meth:`clear`, which the search module calls before each step.
    ``hard=True`` is the straight-through estimator: the forward pass runs exactly one path (a
    one-hot vector), the gradient is that of the soft sample, so the chosen path itself is trained.
    """

    def __init__(self, hard: bool = False, dim: int = -1) -> None:
        super().__init__(dim)
        self.hard = hard
        self._draws: dict[int, torch.Tensor] = {}

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        key = id(inputs)
        if key not in self._draws:
            self._draws[key] = F.gumbel_softmax(inputs, tau=self.tau, hard=self.hard, dim=self.dim)
        return self._draws[key]

    def clear(self) -> None:
        self._draws.clear()

    def __deepcopy__(self, memo: dict[int, Any]) -> "PathGumbel":
        # The cached draws hold autograd graphs, which deepcopy refuses; a copy starts empty.
        copy = PathGumbel(self.hard, self.dim)
        copy.tau = self.tau
        return copy


@contextlib.contextmanager
def _without_grad(params: Sequence[nn.Parameter]) -> Iterator[None]:
    """``params`` (those that require gradients) set not to require them inside the block: autograd then
    builds no gradient path to them, and backward skips that work."""
    frozen = [p for p in params if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


class ResourceDartsModule(DartsLightningModule):
    """``DartsLightningModule`` whose architecture loss includes resource penalties.

    Parameters
    ----------
    penalties
        :class:`ResourcePenalty` terms on ``cost_model.expected(probs)``.
    cost_model
        Anything with ``expected(probs) -> {resource: tensor}`` (:class:`nni_kws.cost.CostModel`).
    penalty
        Optionally NNI's ``ExpectationProfilerPenalty``; it now receives tensor probabilities.
    arch_every
        Architecture step on every ``arch_every``-th batch only (ICPR/ProxylessNAS: every 5th), so
        a search iteration costs less than a full DARTS iteration on average.
    **kwargs
        ``DartsLightningModule`` arguments (``arc_learning_rate``, ``warmup_epochs``...).
    """

    def __init__(self, training_module: pl.LightningModule, *, penalties: Sequence[ResourcePenalty] = (),
                 cost_model: Any = None, arch_every: int = 1, **kwargs: Any) -> None:
        super().__init__(training_module, **kwargs)
        if penalties and cost_model is None:
            raise ValueError("resource penalties need a cost model (nni_kws.cost.CostModel)")
        if arch_every < 1:
            raise ValueError(f"arch_every must be >= 1, got {arch_every}")
        self.penalties = list(penalties)
        self.cost_model = cost_model
        self.arch_every = arch_every

    def resample(self) -> dict[str, Any]:
        for m in self.modules():  # a fresh Gumbel draw per step (see PathGumbel)
            if isinstance(m, PathGumbel):
                m.clear()
        return super().resample()

    def arch_parameters(self) -> list[nn.Parameter]:
        # NNI returns ``list(set(...))``: an order that changes from run to run, so a resumed
        # checkpoint would load Adam's moments into the wrong alphas. Keep the module order.
        return list(_per_model(self, "arch_parameters", self._find_arch_parameters))

    def _find_arch_parameters(self) -> list[nn.Parameter]:
        params: dict[int, nn.Parameter] = {}
        for m in self.supernet_modules():
            for p in getattr(m, "arch_parameters", lambda: ())():
                params.setdefault(id(p), p)
        return list(params.values())

    def weights_frozen(self) -> contextlib.AbstractContextManager[None]:
        """Weights without gradients during the architecture step (forward and backward): first-order
        DARTS discards those gradients (the weight step zeroes them first), and not computing them
        saves a part of the backward pass."""
        def weights() -> list[nn.Parameter]:
            alphas = {id(p) for p in self.arch_parameters()}
            return [p for p in self.model.parameters() if id(p) not in alphas]
        return _without_grad(_per_model(self, "weights", weights))

    def alphas_frozen(self) -> contextlib.AbstractContextManager[None]:
        """Architecture weights without gradients during the weight step: NNI leaves them out of the weight
        optimizer, and the next architecture step zeroes their gradients before its own backward pass."""
        return _without_grad(self.arch_parameters())

    def expected_costs(self) -> dict[str, torch.Tensor]:
        """Expected costs under the current architecture distribution (differentiable)."""
        if self.cost_model is None:
            return {}
        return {k: v for k, v in self.cost_model.expected(arch_probs(self)).items() if v is not None}

    def penalize(self, loss: torch.Tensor) -> torch.Tensor:
        """Architecture loss with our penalties and NNI's (fixed) penalty; logs the terms."""
        details: dict[str, Any] = {}
        if self.penalties:
            loss, terms = penalized_loss(loss, self.expected_costs(), self.penalties)
            details.update({f"penalty/{k}": v.detach() for k, v in terms.items()})
        if self.penalty is not None:
            loss, nni_details = self.penalty(loss, arch_probs(self, device=None))
            details.update({f"penalty/nni_{k}": torch.as_tensor(v).detach().float() for k, v in nni_details.items()})
        if details:
            self.log_dict(details)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        # DartsLightningModule.training_step, with ``self.penalize`` in the architecture step
        # (NNI passes detached float probabilities to its penalty there).
        arc_optim = self.architecture_optimizers()
        if not isinstance(arc_optim, torch.optim.Optimizer):
            raise TypeError(f"expected a single architecture optimizer, found {arc_optim}")
        trn_batch, val_batch = batch["train"], batch["val"]

        warm = self.warmup_epochs == 0 or self.trainer.current_epoch >= self.warmup_epochs
        if warm and batch_idx % self.arch_every == 0:
            self.resample()
            arc_optim.zero_grad()
            with self.weights_frozen():  # built without weight gradients, so backward skips them
                arc_loss = self.training_module.training_step(val_batch, 2 * batch_idx)
                if isinstance(arc_loss, dict):
                    arc_loss = arc_loss["loss"]
                self.log("arch_loss", arc_loss.detach())
                arc_loss = self.penalize(arc_loss)
                self.manual_backward(arc_loss)
            arc_optim.step()

        self.resample()
        with self.alphas_frozen():
            loss_and_metrics = self.training_module.training_step(trn_batch, 2 * batch_idx + 1)
            w_step_loss = loss_and_metrics["loss"] if isinstance(loss_and_metrics, dict) else loss_and_metrics
            self.advance_optimization(w_step_loss, batch_idx, self.gradient_clip_val)
        self.advance_lr_schedulers(batch_idx)
        if batch_idx % self.log_prob_every_n_step == 0:
            self.log_probs(self.export_probs())
        return loss_and_metrics


class ResourceGumbelDartsModule(ResourceDartsModule, GumbelDartsLightningModule):
    """:class:`ResourceDartsModule` with GumbelDARTS' temperature annealing."""


class _ResourceAware:
    """Strategy mixin: build the resource-aware module instead of NNI's ``DartsLightningModule``."""

    module_class: type[ResourceDartsModule] = ResourceDartsModule

    def __init__(self, *, penalties: Sequence[ResourcePenalty] = (), cost_model: Any = None, arch_every: int = 1,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[call-arg]
        if penalties and cost_model is None:
            raise ValueError("resource penalties need a cost model (nni_kws.cost.CostModel)")
        self.penalties = list(penalties)
        self.cost_model = cost_model
        self.arch_every = arch_every

    def _module_kwargs(self, training_module: pl.LightningModule) -> dict[str, Any]:
        s = cast(DARTS, self)
        return dict(arc_learning_rate=s.arc_learning_rate, gradient_clip_val=s.gradient_clip_val,
                    log_prob_every_n_step=s.log_prob_every_n_step, warmup_epochs=s.warmup_epochs, penalty=s.penalty)

    def configure_oneshot_module(self, training_module: pl.LightningModule) -> BaseOneShotLightningModule:
        return self.module_class(training_module, penalties=self.penalties, cost_model=self.cost_model,
                                 arch_every=self.arch_every, **self._module_kwargs(training_module))


class ResourceDARTS(_ResourceAware, DARTS):
    """NNI's :class:`~nni.nas.strategy.DARTS` plus differentiable resource penalties.

    ``ResourceDARTS(penalties=[ResourcePenalty('macs', 2e6, 1.0)], cost_model=CostModel(space),
    arc_learning_rate=3e-3)``; every other argument is DARTS'.
    """


class ResourceGumbelDARTS(_ResourceAware, GumbelDARTS):
    """NNI's :class:`~nni.nas.strategy.GumbelDARTS` plus differentiable resource penalties, with one
    Gumbel draw per label and step (:class:`PathGumbel`); ``hard=True`` trains single paths
    (straight-through), which narrows the gap between the supernet and the derived network."""

    module_class = ResourceGumbelDartsModule

    def __init__(self, *, hard: bool = False, **kwargs: Any) -> None:
        self.hard = hard
        super().__init__(**kwargs)

    def configure_softmax(self) -> nn.Module:
        return PathGumbel(hard=self.hard)

    def _module_kwargs(self, training_module: pl.LightningModule) -> dict[str, Any]:
        # GumbelDARTS parses its temperature argument inside configure_oneshot_module; reuse it.
        nni_module = GumbelDARTS.configure_oneshot_module(self, training_module)
        scheduler = cast(GumbelDartsLightningModule, nni_module).temperature_scheduler
        return {**super()._module_kwargs(training_module), "temperature_scheduler": scheduler}


class ResourceProxyless(_ResourceAware, Proxyless):
    """NNI's :class:`~nni.nas.strategy.Proxyless` (binary gates, one path per step) plus
    differentiable resource penalties, as the ProxylessNAS latency loss. Needs ``coarse=True``."""
