"""Resource-aware DARTS: penalties reach the architecture logits (NNI's do not), a larger λ gives a
cheaper architecture, and an interrupted search resumes to the same state."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import warnings

import pytest
import torch
from nni.nas.oneshot.pytorch.profiler import ExpectationProfilerPenalty
from nni.nas.strategy import DARTS
from torch.utils.data import DataLoader, Dataset, TensorDataset

from nni_kws.cost import CostModel, KwsMacsProfiler
from nni_kws.search import ResourceDARTS, ResourcePenalty, penalized_loss, run_search
from nni_kws.search.strategy import ResourceDartsModule
from nni_kws.space import build_space

warnings.filterwarnings("ignore", category=RuntimeWarning, module="nni")
logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)


ARC_LR = 0.05  # large, so that a few architecture steps show the effect


@pytest.fixture(scope="module")
def data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(8, 1, 16000, generator=g), torch.randint(0, 12, (8,), generator=g))


@pytest.fixture(scope="module")
def cost_model() -> CostModel:
    return CostModel("tiny")


@pytest.fixture(scope="module")
def budget(cost_model) -> float:
    """A MAC budget some tiny architectures meet: 15 % of the way from the cheapest to the dearest
    (the tiny raw-audio front end alone costs about 264k MACs)."""
    lo, hi = (cost_model.exact({label: values[i] for label, values in cost_model.choices.items()})["macs"]
              for i in (0, -1))
    return lo + 0.15 * (hi - lo)


def _search(data, strategy="darts", epochs=2, **kwargs):
    torch.manual_seed(0)  # same supernet weights in every run
    loader = DataLoader(data, batch_size=4)
    return run_search(build_space("tiny"), loader, loader, strategy=strategy, epochs=epochs,
                      arc_learning_rate=ARC_LR, progress=False, **kwargs)


def _flat(probs) -> torch.Tensor:
    return torch.tensor([p for label in sorted(probs) for p in probs[label].values()])


# ---- penalty arithmetic ----------------------------------------------------------------------

def test_penalty_forms_and_validation():
    loss, cost = torch.tensor(2.0), torch.tensor(150.0)
    hinge = ResourcePenalty("macs", 100, 0.5)
    assert float(penalized_loss(loss, {"macs": cost}, [hinge])[0]) == pytest.approx(2 + 0.5 * 0.5)
    assert float(penalized_loss(loss, {"macs": torch.tensor(50.0)}, [hinge])[0]) == pytest.approx(2.0)
    add = ResourcePenalty("macs", 100, 0.5, "add")
    assert float(penalized_loss(loss, {"macs": torch.tensor(50.0)}, [add])[0]) == pytest.approx(2 - 0.25)
    mul = ResourcePenalty("params", 100, 2.0, "mul-log")
    both, details = penalized_loss(loss, {"macs": cost, "params": cost}, [hinge, mul])
    assert float(both) == pytest.approx(2 * (math.log(150) / math.log(100)) ** 2 + 0.25)
    assert set(details) == {"hinge/macs", "mul-log/params"}
    for bad in [dict(resource="flops", target=1), dict(resource="macs", target=0), dict(resource="macs", target=1,
                form="mul-log"), dict(resource="macs", target=1, weight=-1), dict(resource="macs", target=1, form="x")]:
        with pytest.raises(ValueError):
            ResourcePenalty(**bad)
    with pytest.raises(ValueError, match="latency"):
        penalized_loss(loss, {"macs": cost, "latency_ms": None}, [ResourcePenalty("latency_ms", 5.0)])


@pytest.mark.parametrize("form", ["hinge", "add", "mul-log"])
def test_every_form_pushes_probability_towards_cheaper_choices(form, cost_model):
    alphas = {label: torch.zeros(len(values), requires_grad=True) for label, values in cost_model.choices.items()}
    expected = cost_model.expected(cost_model.probs_from_alphas(alphas))
    loss, _ = penalized_loss(torch.tensor(1.0), expected, [ResourcePenalty("macs", 1e5, 1.0, form)])
    loss.backward()
    for label in ("s0_i0_e", "s0_i0_k", "s1_depth"):  # values ordered cheap -> expensive
        grad = alphas[label].grad
        assert grad[-1] > 0 > grad[0], (label, grad)


# ---- the search ------------------------------------------------------------------------------

def test_larger_lambda_gives_cheaper_architectures(data, cost_model, budget, tmp_path):
    runs = {lam: _search(data, penalties=[ResourcePenalty("macs", budget, lam)] if lam else [],
                         cost_model=cost_model, out_dir=tmp_path / str(lam)) for lam in (0.0, 0.3, 30.0)}
    expected = [runs[lam].history[-1]["expected"]["macs"] for lam in sorted(runs)]
    exact = [cost_model.exact(runs[lam].arch)["macs"] for lam in sorted(runs)]
    assert expected[0] > expected[1] > expected[2], expected
    assert exact[0] >= exact[1] >= exact[2] and exact[0] > exact[2], exact
    assert exact[0] > budget >= exact[2]  # unconstrained it exceeds the budget; the strong penalty meets it
    # the strong penalty picks the cheapest block options
    arch = runs[30.0].arch
    assert arch["s1_depth"] == 1 and all(arch[f"s{i}_e"] == 1 for i in ("0_i0", "1_i0"))
    # logged every epoch, also to history.jsonl
    lines = [json.loads(line) for line in (tmp_path / "30.0" / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1]
    assert lines[-1]["arch"] == arch and lines[-1]["exact"]["macs"] == exact[2]
    assert lines[0]["expected"]["macs"] > lines[1]["expected"]["macs"]
    assert "penalty/hinge/macs" in lines[-1]["metrics"]


def test_our_penalty_moves_alphas_while_nni_darts_penalty_does_not(data, cost_model):
    def nni_penalty():
        return ExpectationProfilerPenalty(KwsMacsProfiler(build_space("tiny")), baseline=1e5, scale=100.0)

    baseline = _search(data, epochs=1, penalties=[], cost_model=cost_model).probs
    nni = _search(data, epochs=1, strategy=DARTS(arc_learning_rate=ARC_LR, penalty=nni_penalty())).probs
    ours = _search(data, epochs=1, penalties=[ResourcePenalty("macs", 1e5, 1.0, "add")], cost_model=cost_model).probs
    fixed = _search(data, epochs=1, strategy=ResourceDARTS(arc_learning_rate=ARC_LR, penalty=nni_penalty())).probs
    assert torch.equal(_flat(nni), _flat(baseline))  # NNI's penalty is a constant w.r.t. alpha
    assert (_flat(ours) - _flat(baseline)).abs().max() > 0.01
    assert (_flat(fixed) - _flat(baseline)).abs().max() > 0.01  # same NNI penalty, fed tensor probabilities
    assert cost_model.expected(ours)["macs"] < cost_model.expected(baseline)["macs"]


def test_gumbel_with_multiplicative_log_penalty(data, cost_model, budget):
    result = _search(data, strategy="gumbel", epochs=1, penalties=[ResourcePenalty("macs", budget, 8.0, "mul-log")],
                     cost_model=cost_model)
    record = result.history[-1]
    assert record["metrics"]["gumbel_temperature"] == pytest.approx(1.0)
    assert "penalty/mul-log/macs" in record["metrics"] and record["expected"]["macs"] > 0


class _Interrupting(Dataset):
    """Wraps a dataset and raises once, at a given fetch (a crash in the middle of a search)."""

    def __init__(self, base: Dataset, fail_at: int) -> None:
        self.base, self.fail_at, self.count = base, fail_at, 0

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i):
        self.count += 1
        if self.count == self.fail_at:
            raise RuntimeError("simulated crash")
        return self.base[i]


def test_interrupted_search_resumes_to_the_same_state(data, cost_model, budget, tmp_path):
    penalties = [ResourcePenalty("macs", budget, 1.0)]
    full = _search(data, epochs=2, penalties=penalties, cost_model=cost_model, out_dir=tmp_path / "full")

    torch.manual_seed(0)
    out = tmp_path / "crash"
    crashing = DataLoader(_Interrupting(data, fail_at=len(data) + 1), batch_size=4)  # first fetch of epoch 2
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_search(build_space("tiny"), crashing, DataLoader(data, batch_size=4), epochs=2, penalties=penalties,
                   cost_model=cost_model, arc_learning_rate=ARC_LR, out_dir=out, progress=False)
    assert len((out / "history.jsonl").read_text().splitlines()) == 1  # epoch 0 done and saved

    resumed = _search(data, epochs=2, penalties=penalties, cost_model=cost_model, out_dir=out, resume=True)
    assert [r["epoch"] for r in resumed.history] == [0, 1]
    assert [r["step"] for r in resumed.history] == [r["step"] for r in full.history]
    assert resumed.arch == full.arch
    torch.testing.assert_close(_flat(resumed.probs), _flat(full.probs))
    full_state, resumed_state = full.supernet.state_dict(), resumed.supernet.state_dict()
    for key, value in full_state.items():
        torch.testing.assert_close(resumed_state[key], value, msg=key)
    # resumed once more, from the checkpoint of its last epoch (as after a stop in a later stage): no training, and
    # the history read back whole
    again = _search(data, epochs=2, penalties=penalties, cost_model=cost_model, out_dir=out, resume=True)
    assert again.history == resumed.history and again.arch == full.arch


@pytest.mark.parametrize("strategy", ["darts", "gumbel-hard"])
def test_skipping_discarded_gradients_leaves_the_search_unchanged(data, cost_model, budget, strategy, monkeypatch):
    # Each step computes neither the weights' gradients in the architecture step nor the alphas' in the
    # weight step; with both computed, the search must end in the same supernet and alphas.
    penalties = [ResourcePenalty("macs", budget, 1.0)]
    fast = _search(data, strategy=strategy, penalties=penalties, cost_model=cost_model)
    monkeypatch.setattr(ResourceDartsModule, "weights_frozen", lambda self: contextlib.nullcontext())
    monkeypatch.setattr(ResourceDartsModule, "alphas_frozen", lambda self: contextlib.nullcontext())
    full = _search(data, strategy=strategy, penalties=penalties, cost_model=cost_model)
    torch.testing.assert_close(_flat(fast.probs), _flat(full.probs))
    assert not torch.equal(_flat(fast.probs), torch.full_like(_flat(fast.probs), _flat(fast.probs)[0]))
    for key, value in full.supernet.state_dict().items():
        torch.testing.assert_close(fast.supernet.state_dict()[key], value, msg=key)


def test_argmax_over_budget_is_moved_within_it(cost_model, budget):
    """A distribution whose argmax is the dearest architecture: the derived one is within the budget, keeps
    every label it can, and is the most likely architecture within the budget (brute force over the space)."""
    import itertools

    from nni_kws.search.strategy import most_likely_within

    choices = cost_model.choices
    probs = {label: {v: (0.6 if i == len(values) - 1 else 0.4 / (len(values) - 1)) for i, v in enumerate(values)}
             for label, values in choices.items()}
    probs["s1_i1_k"] = {3: 0.45, 5: 0.55}  # a label the budget barely cares about (block 2 of stage 1)
    dearest = {label: values[-1] for label, values in choices.items()}
    assert cost_model.exact(dearest)["macs"] > budget
    arch = most_likely_within(probs, cost_model.exact, {"macs": budget})
    assert cost_model.exact(arch)["macs"] <= budget

    def logp(a):
        return sum(math.log(probs[label][v]) for label, v in a.items())

    feasible = [dict(zip(choices, combo)) for combo in itertools.product(*choices.values())]
    feasible = [a for a in feasible if cost_model.exact(a)["macs"] <= budget]
    assert logp(arch) == pytest.approx(max(logp(a) for a in feasible))
    cheap = {label: values[0] for label, values in choices.items()}
    assert most_likely_within({k: {v: float(v == cheap[k]) + 0.1 for v in vals} for k, vals in choices.items()},
                              cost_model.exact, {"macs": budget}) == cheap  # argmax within: unchanged
