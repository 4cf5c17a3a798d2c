"""Sub-networks with inherited supernet weights: BatchNorm recalibration, single-path (hard Gumbel)
training, evolution over candidates, and a search that learns a separable task."""
from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nni_kws.cost import CostModel
from nni_kws.search import (
    ResourcePenalty,
    calibration_batches,
    evolution_search,
    inherited_model,
    random_archs,
    recalibrate_bn,
    run_search,
)
from nni_kws.search.strategy import PathGumbel
from nni_kws.space import active_arch, build_space, space_choices
from nni_kws.space.mixed_ops import derive_model
from nni_kws.training import accuracy

warnings.filterwarnings("ignore", category=RuntimeWarning, module="nni")
logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)

CLASSES = 4


def separable_clips(per_class: int, seed: int) -> TensorDataset:
    """Class ``c``: a 0.5 s tone at ``300·2^c`` Hz at a random onset and gain over faint noise; trivially separable
    by frequency (chance is 1/4)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(8000) / 16000
    xs, ys = [], []
    for c in range(CLASSES):
        for _ in range(per_class):
            x = 0.01 * torch.randn(16000, generator=g)
            start = int(torch.randint(0, 8000, (1,), generator=g))
            gain = 0.3 + 0.4 * float(torch.rand(1, generator=g))
            x[start:start + 8000] += gain * torch.sin(2 * math.pi * 300 * 2**c * t) * torch.hann_window(8000)
            xs.append(x)
            ys.append(c)
    return TensorDataset(torch.stack(xs).unsqueeze(1), torch.tensor(ys))


@pytest.fixture(scope="module")
def task() -> tuple[DataLoader, DataLoader]:
    return (DataLoader(separable_clips(12, seed=0), batch_size=16, shuffle=True,
                       generator=torch.Generator().manual_seed(0)),
            DataLoader(separable_clips(6, seed=1), batch_size=24))


@pytest.fixture(scope="module")
def cost_model() -> CostModel:
    return CostModel("tiny")


@pytest.fixture(scope="module")
def darts_search(task, cost_model):
    """A short mixture-DARTS search (4 epochs) on the separable task, under a feasible MAC budget."""
    torch.manual_seed(0)
    train, val = task
    budget = _feasible_budget(cost_model)
    return budget, run_search(build_space("tiny"), train, val, strategy="darts", epochs=4, learning_rate=0.05,
                              arc_learning_rate=0.05, penalties=[ResourcePenalty("macs", budget, 10.0)],
                              cost_model=cost_model, progress=False)


def _feasible_budget(cost_model: CostModel) -> float:
    """A MAC budget between the cheapest and the dearest architecture of the space (from the cost model)."""
    cheapest = {label: values[0] for label, values in cost_model.choices.items()}  # values ordered cheap -> dear
    dearest = {label: values[-1] for label, values in cost_model.choices.items()}
    lo, hi = cost_model.exact(cheapest)["macs"], cost_model.exact(dearest)["macs"]
    return lo + 0.3 * (hi - lo)


def test_search_on_a_separable_task_learns_it_and_meets_the_budget(darts_search, task, cost_model):
    budget, result = darts_search
    assert cost_model.exact(result.arch)["macs"] <= budget
    model = inherited_model(build_space("tiny"), result.arch, result.supernet, calibration_batches(task[0], 3))
    assert accuracy(model, task[1]) >= 0.6  # chance: 0.25


def test_recalibration_resets_bn_statistics_to_the_calibration_average_and_is_deterministic(darts_search, task):
    _, result = darts_search
    batches = calibration_batches(task[0], 3)
    inherited = derive_model(build_space("tiny"), result.arch, result.supernet)
    before = accuracy(inherited, task[1])

    # independent reference: the first BatchNorm's input, batch by batch, in train mode
    first_bn = next(m for m in inherited.modules() if isinstance(m, nn.BatchNorm1d))
    calibrated = derive_model(build_space("tiny"), result.arch, result.supernet)
    bn = next(m for m in calibrated.modules() if isinstance(m, nn.BatchNorm1d))
    seen: list[torch.Tensor] = []
    hook = bn.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach()))
    recalibrate_bn(calibrated, batches)
    hook.remove()
    assert len(seen) == len(batches)
    means = torch.stack([x.mean(dim=(0, 2)) for x in seen]).mean(0)

    torch.testing.assert_close(bn.running_mean, means)
    assert not torch.allclose(first_bn.running_mean, bn.running_mean)  # the supernet's statistics were replaced
    assert bn.momentum == first_bn.momentum and not calibrated.training
    after = accuracy(calibrated, task[1])
    assert after != before

    again = recalibrate_bn(derive_model(build_space("tiny"), result.arch, result.supernet), batches)
    for (key, value), other in zip(calibrated.state_dict().items(), again.state_dict().values()):
        assert torch.equal(value, other), key
    assert accuracy(again, task[1]) == after


def test_hard_gumbel_runs_exactly_the_drawn_path(task, cost_model):
    """With one-hot draws the supernet's forward equals the derived sub-network with inherited weights."""
    torch.manual_seed(0)
    train, _ = task
    result = run_search(build_space("tiny"), train, train, strategy="gumbel-hard", epochs=1, progress=False,
                        strategy_kwargs={"warmup_epochs": 0})
    supernet = result.supernet
    choices = cost_model.choices
    arch = {label: values[i % len(values)] for i, (label, values) in enumerate(choices.items())}
    module_alphas = {}
    for m in supernet.modules():
        for label, alpha in (getattr(m, "_arch_alpha", None) or {}).items() if isinstance(
                getattr(m, "_arch_alpha", None), nn.ParameterDict) else []:
            module_alphas[label] = alpha
        if isinstance(getattr(m, "_arch_alpha", None), nn.Parameter):
            module_alphas[m.label] = m._arch_alpha
    gumbels = [m for m in supernet.modules() if isinstance(m, PathGumbel)]
    assert gumbels and all(g.hard for g in gumbels)
    for g in gumbels:
        g.clear()
        for label, alpha in module_alphas.items():
            g._draws[id(alpha)] = nn.functional.one_hot(torch.tensor(choices[label].index(arch[label])),
                                                        len(choices[label])).float()
    x = next(iter(train))[0][:8]
    supernet.train()
    derived = derive_model(build_space("tiny"), arch, supernet).train()
    with torch.no_grad():
        torch.testing.assert_close(supernet(x), derived(x), rtol=1e-4, atol=1e-5)


def test_evolution_finds_the_best_architecture_within_the_budget(cost_model):
    choices = space_choices(build_space("tiny"))
    budget = _feasible_budget(cost_model)

    def within(a):
        return cost_model.exact(a)["macs"] <= budget

    def score(a):  # prefers larger kernels and expansions of the blocks built: pulls against the budget
        return sum(choices[label].index(v) for label, v in active_arch(a).items() if label.endswith(("_k", "_e")))

    everything = [dict(zip(choices, values)) for values in itertools.product(*choices.values())]  # 2^8
    best = max(score(a) for a in everything if within(a))
    found = evolution_search(choices, score, accept=within, population=8, cycles=60, seed=0)
    assert within(found.arch) and found.score == best
    assert all(within(a) for a, _ in found.evaluated)
    with pytest.raises(ValueError, match="within the budget"):
        random_archs(choices, 3, accept=lambda a: False, max_tries=50)


def test_pipeline_searched_row_and_init_weights_are_recalibrated(tiny_gsc, tmp_path):
    """The search stage's "searched" accuracy and ``init_weights.pt`` (``--init supernet``) come from the
    inherited network with recalibrated BatchNorm: statistics equal to a recalibration done here."""
    from nni_kws.files import load_torch
    from nni_kws.pipeline import PipelineConfig, run_pipeline
    from nni_kws.pipeline.stages import Pipeline

    cfg = PipelineConfig(out=str(tmp_path / "r"), data=str(tiny_gsc), real_test=None, preset="tiny", search_epochs=2,
                         warmup_epochs=1, arch_every=2, strategy="gumbel-hard", calib_batches=2, batch_size=16,
                         progress=False, max_macs=3.3e5)
    searched = run_pipeline(cfg, ["search"])["search"]
    assert searched["strategy"] == "gumbel-hard" and searched["warmup_epochs"] == 1 and searched["arch_every"] == 2
    assert searched["costs"]["macs"] <= 3.3e5
    pipe = Pipeline(dataclasses.replace(cfg, init="supernet"))
    model = pipe._initial_model(searched["arch"])
    weights = load_torch(tmp_path / "r" / "search" / "init_weights.pt")
    bn_means = [k for k in weights if k.endswith("running_mean")]
    assert bn_means and all(torch.equal(model.state_dict()[k], weights[k]) for k in weights)
    # re-estimated from exactly calib_batches training batches (the supernet's BatchNorms saw every search step)
    counts = {int(v) for k, v in weights.items() if k.endswith("num_batches_tracked")}
    assert counts == {2}
    assert searched["test_acc"] == accuracy(model.eval(), pipe.loader("test"))

