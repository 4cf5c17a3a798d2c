"""1-D mixed operations: NNI's one-shot strategies on KwsSpace, and exact export of searched models."""
from __future__ import annotations

import warnings

import nni
import pytest
import torch
import torch.nn.functional as F
from nni.nas.nn.pytorch import ModelSpace, MutableBatchNorm1d, MutableConv1d
from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule
from nni.nas.strategy import DARTS, GumbelDARTS, Proxyless, RandomOneShot
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nni_kws.search import run_search
from nni_kws.space import build_space, random_arch, space_choices, validate_arch
from nni_kws.space.mixed_ops import MixedBatchNorm1d, MixedConv1d, derive_model, oneshot_hooks

warnings.filterwarnings("ignore", category=RuntimeWarning, module="nni")


PLAIN = {"KwsSpace", "Sequential", "ConvFrontEnd", "SincFrontEnd", "ConvBNReLU1d", "MBConv1d", "Conv1d", "BatchNorm1d",
         "ReLU", "AvgPool1d", "AdaptiveAvgPool1d", "Linear", "Identity", "SincConv1d", "LogCompression"}


def _resample(supernet: nn.Module) -> dict:
    memo: dict = {}
    for m in supernet.modules():
        if isinstance(m, BaseSuperNetModule):
            memo.update(m.resample(memo))
    return memo


def _set_one_hot(supernet: nn.Module, arch: dict, choices: dict) -> None:
    """Put (numerically) all probability on ``arch`` in a DARTS supernet."""
    with torch.no_grad():
        for m in supernet.modules():
            alpha = getattr(m, "_arch_alpha", None)
            items = alpha.items() if isinstance(alpha, nn.ParameterDict) else \
                [(m.label, alpha)] if isinstance(alpha, nn.Parameter) else []
            for label, a in items:
                a.fill_(-1e4)
                a[choices[label].index(arch[label])] = 1e4


def _randomise_bn(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)


def test_darts_converts_only_searched_layers_and_every_alpha_gets_a_gradient():
    torch.manual_seed(0)
    space = build_space("tiny")
    supernet = DARTS().mutate_model(space)
    mixed = [m for m in supernet.modules() if isinstance(m, (MixedConv1d, MixedBatchNorm1d))]
    assert len(mixed) == 3 * 5  # 3 blocks x (expand, dw, project convs + expand, dw BNs)
    # layers with fixed arguments stay as they were (no mixed-op overhead)
    assert not isinstance(supernet.classifier, MixedConv1d)
    dw = supernet.stages[0][0][1][0]
    assert isinstance(dw, MixedConv1d) and dw.weight.shape == (16, 1, 5)  # max width 8*2, max kernel 5
    # A real loss: the plain sum of the logits gives the alphas gradients at rounding level (~1e-8) under
    # batch-statistics BatchNorm, and one of them came out exactly 0.
    F.cross_entropy(supernet(torch.randn(4, 1, 16000)), torch.arange(4)).backward()
    alphas = {n: p for n, p in supernet.named_parameters() if "_arch_alpha" in n}
    assert alphas and all(p.grad is not None and p.grad.abs().sum() > 1e-5 for p in alphas.values())


@pytest.mark.parametrize("strategy, coarse", [(DARTS, False), (GumbelDARTS, False), (RandomOneShot, False),
                                              (Proxyless, True), (DARTS, True)])
def test_every_strategy_builds_a_working_supernet(strategy, coarse):
    torch.manual_seed(0)
    supernet = strategy().mutate_model(build_space("tiny", coarse=coarse))
    _resample(supernet)
    out = supernet(torch.randn(2, 1, 16000))
    assert out.shape == (2, 12)
    out.sum().backward()


def test_path_sampling_runs_the_sampled_slice():
    torch.manual_seed(0)
    supernet = RandomOneShot().mutate_model(build_space("tiny"))
    sample = _resample(supernet)
    dw = supernet.stages[0][0][1][0]
    k, e = sample["s0_i0_k"], sample["s0_i0_e"]
    x = torch.randn(2, 8 * e, 250)
    expected = nn.functional.conv1d(x, dw.weight[:8 * e, :, (5 - k) // 2:(5 - k) // 2 + k], None, 2, (k - 1) // 2,
                                    1, 8 * e)
    torch.testing.assert_close(dw(x), expected)


def test_proxyless_refuses_mixed_ops_with_a_clear_message():
    with pytest.raises(TypeError, match="coarse=True"):
        Proxyless().mutate_model(build_space("tiny"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_derived_model_is_plain_and_equals_the_supernet_at_one_hot(seed):
    torch.manual_seed(seed)
    space = build_space("tiny")
    choices = space_choices(space)
    supernet = DARTS().mutate_model(space)  # in place: space is the supernet now
    _randomise_bn(supernet)
    arch = random_arch(space, seed)
    _set_one_hot(supernet, arch, choices)
    child = derive_model(build_space("tiny"), arch, supernet)
    assert {type(m).__name__ for m in child.modules()} <= PLAIN
    assert not any(isinstance(m, (MutableConv1d, MutableBatchNorm1d)) for m in child.modules())
    x = torch.randn(3, 1, 16000)
    supernet.eval(), child.eval()
    with torch.no_grad():
        torch.testing.assert_close(child(x), supernet(x), rtol=1e-5, atol=1e-6)
    # also from the supernet alone (a fresh copy of the space is built from its init arguments)
    fresh = derive_model(supernet, arch, supernet).eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), child(x))


def test_derived_model_inherits_sliced_weights_without_a_supernet_fresh():
    torch.manual_seed(0)
    space = build_space("tiny")
    supernet = RandomOneShot().mutate_model(space)
    arch = {**random_arch(space, 0), "s0_i0_k": 3, "s0_i0_e": 1}
    child = derive_model(build_space("tiny"), arch, supernet)
    sup_dw, child_dw = supernet.stages[0][0][1][0], child.stages[0][0][1][0]
    assert type(child_dw) is nn.Conv1d and child_dw.weight.shape == (8, 1, 3) and child_dw.padding == (1,)
    torch.testing.assert_close(child_dw.weight, sup_dw.weight[:8, :, 1:4])
    plain = derive_model(build_space("tiny"), arch)  # no supernet: fresh weights
    assert not torch.equal(plain.stages[0][0][1][0].weight, child_dw.weight)


def test_coarse_proxyless_export_keeps_the_candidate_weights():
    torch.manual_seed(0)
    space = build_space("tiny", coarse=True)
    supernet = Proxyless().mutate_model(space)
    arch = random_arch(space, 3)
    child = derive_model(build_space("tiny", coarse=True), arch, supernet)
    chosen = supernet.stages[0][0][arch["s0_i0"]]
    torch.testing.assert_close(child.stages[0][0][1][0].weight, chosen[1][0].weight)  # fixed MutableConv1d inside
    torch.testing.assert_close(child.stages[0][0][1][1].running_var, chosen[1][1].running_var)


@pytest.mark.parametrize("strategy, coarse", [("darts", False), ("gumbel", False), ("random", False),
                                              ("proxyless", True), ("enas", False)])
def test_short_real_search(strategy, coarse, tmp_path):
    if strategy == "enas":
        pytest.importorskip("tianshou", reason="NNI's ENAS needs tianshou")
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(8, 1, 16000), torch.randint(0, 12, (8,)))
    loader = DataLoader(data, batch_size=4)
    space = build_space("tiny", coarse=coarse)
    result = run_search(space, loader, loader, strategy=strategy, epochs=1, out_dir=tmp_path, progress=False)
    validate_arch(build_space("tiny", coarse=coarse), result.arch)
    assert len(result.history) == 1 and (tmp_path / "history.jsonl").is_file()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert result.meta["strategy"] == strategy and result.meta["epochs"] == 1
    if strategy != "random":
        assert set(result.probs) == set(result.arch)
        assert result.history[0]["arch"] == result.arch
    child = derive_model(build_space("tiny", coarse=coarse), result.arch, result.supernet)
    assert child(torch.randn(2, 1, 16000)).shape == (2, 12)


def _random_alphas(supernet: nn.Module) -> list[nn.Parameter]:
    """The architecture weights of a DARTS supernet, drawn at random (uniform ones would hide a candidate whose
    weight lands on another candidate's slice)."""
    alphas = [p for n, p in supernet.named_parameters() if "_arch_alpha" in n]
    with torch.no_grad():
        for alpha in alphas:
            alpha.normal_()
    return alphas


def _assert_same_function(ours: torch.Tensor, nnis: torch.Tensor, inputs: list[torch.Tensor]) -> None:
    """Equal values, and equal gradients with respect to ``inputs`` (of a random projection)."""
    torch.testing.assert_close(ours, nnis)
    probe = torch.randn_like(ours)
    got = torch.autograd.grad((ours * probe).sum(), inputs, allow_unused=True, retain_graph=True)
    want = torch.autograd.grad((nnis * probe).sum(), inputs, allow_unused=True, retain_graph=True)
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if g is not None:
            torch.testing.assert_close(g, w)


def test_weighted_kernel_is_nnis_weighted_slicing():
    """Differentiable mode builds each searched axis' mask once (``_weighted_kernel``); it must be the function
    NNI's weighted slicing computes (``_freeze_weight_impl`` with the weight dicts), gradients included."""
    torch.manual_seed(0)
    supernet = DARTS().mutate_model(build_space("tiny"))
    alphas = _random_alphas(supernet)
    convs = [m for m in supernet.modules() if isinstance(m, MixedConv1d)]
    searched = {name for m in convs for name in m.mutable_arguments}
    assert {"in_channels", "out_channels", "kernel_size", "groups"} <= searched  # every axis is covered below
    for conv in convs:
        args = {name: conv.forward_argument(name) for name in ("in_channels", "out_channels", "kernel_size", "groups")}
        assert any(isinstance(v, dict) for v in args.values())
        fast, fast_bias = conv._weighted_kernel(**args)
        reference = conv._freeze_weight_impl(**args)
        assert (fast_bias is None) == (reference["bias"] is None)
        _assert_same_function(fast, reference["weight"], [conv.weight, *alphas])
        grads = torch.autograd.grad(fast.sum(), alphas, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads)  # the alphas of this layer move


class _TwoLabelWidth(ModelSpace):
    """A conv whose width is the product of two choices, two of which give the same width (2*2 = 4*1)."""

    def __init__(self) -> None:
        super().__init__()
        width = nni.choice("a", [2, 4]) * nni.choice("b", [1, 2])
        self.conv = MutableConv1d(1, width, nni.choice("k", [3, 5]), padding=2)
        self.bn = MutableBatchNorm1d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    def extra_oneshot_hooks(self, strategy: object) -> list:
        return oneshot_hooks(strategy)


@pytest.mark.parametrize("space", [lambda: build_space("tiny"), _TwoLabelWidth])
def test_forward_argument_is_nnis_differentiable_policy(space):
    """The mixed ops enumerate an argument's choices once; each value's weight must be what NNI's differentiable
    policy computes on every forward, gradients included."""
    torch.manual_seed(0)
    supernet = DARTS().mutate_model(space())
    mixed = [m for m in supernet.modules() if isinstance(m, (MixedConv1d, MixedBatchNorm1d))]
    alphas = _random_alphas(supernet)
    compared = 0
    for op in mixed:
        for name in op.mutable_arguments:
            ours, nnis = op.forward_argument(name), op.sampling_policy.forward_argument(op, name)
            assert list(ours) == list(nnis)
            for value in ours:
                _assert_same_function(ours[value], nnis[value], alphas)
                compared += 1
    assert compared > len(mixed)
