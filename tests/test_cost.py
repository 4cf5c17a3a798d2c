"""Cost model: counts by hand and against torch, expectations, NNI profilers, latency table, CLI."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from nni.nas.oneshot.pytorch.profiler import ExpectationProfilerPenalty, RangeProfilerFilter
from nni.nas.oneshot.pytorch.supermodule._expression_utils import expression_expectation

from nni_kws.cli import main as cli_main
from nni_kws.cost import (
    CostModel,
    KwsLatencyProfiler,
    KwsMacsProfiler,
    KwsParamsProfiler,
    KwsPeakMemoryProfiler,
    KwsWeightBytesProfiler,
    LatencyTable,
    UnknownConfiguration,
    exact_costs,
    torch_conv_linear_macs,
)
from nni_kws.cost.layers import Layer, Unit
from nni_kws.space import build_space, random_arch, save_arch

SPACES = {"tiny": {}, "small": {}, "tiny-coarse": dict(coarse=True), "tiny-mfcc": dict(frontend="mfcc"),
          "tiny-strided": dict(strides=((1, 2), (1, 2)))}  # at stride 1 stage 0 keeps width and length: a shortcut


@pytest.fixture(scope="module")
def models() -> dict[str, CostModel]:
    return {name: CostModel(build_space(name.split("-")[0], **kw)) for name, kw in SPACES.items()}


@pytest.fixture(scope="module")
def tiny_lut(models: dict[str, CostModel]) -> LatencyTable:
    cm = models["tiny"]
    # thread CPU time and min: few repeats stay sane on a busy 2-core machine (wall clock did not)
    return LatencyTable.measure(cm.space, repeats=5, rounds=1, calibration=2, clock="cpu", statistic="min",
                                table=cm.table, progress=False)


def conv(c_in: int, c_out: int, k: int, t_out: int, groups: int = 1) -> int:
    return c_out * t_out * (c_in // groups) * k


def test_tiny_arch_by_hand(models: dict[str, CostModel]) -> None:
    # 'tiny': 8 filters of 33 taps, stride 16, pool 4 → 8 x 250; stages 8 (stride 2) and 12 (stride 2).
    arch = {"frontend": "conv", "s0_i0_k": 3, "s0_i0_e": 2, "s1_depth": 1, "s1_i0_k": 5, "s1_i0_e": 1,
            "s1_i1_k": 3, "s1_i1_e": 2}
    cm = models["tiny"]
    macs = (conv(1, 8, 33, 1000)                                                      # front end, T 16000 → 1000
            + conv(8, 16, 1, 250) + conv(16, 16, 3, 125, 16) + conv(16, 8, 1, 125)    # s0: e=2, T 250 → 125
            + conv(8, 8, 1, 125) + conv(8, 8, 5, 63, 8) + conv(8, 12, 1, 63)          # s1_i0: e=1 keeps its 1x1 conv
            + 12 * 12)                                                                # classifier
    params = ((8 * 33 + 16) + (8 * 16 + 32 + 16 * 3 + 32 + 16 * 8 + 16)
              + (8 * 8 + 16 + 8 * 5 + 16 + 8 * 12 + 24) + (12 * 12 + 12))
    costs = cm.exact(arch)
    model = cm.space.freeze(arch)
    assert costs["macs"] == macs and costs["ops"] == 2 * macs
    assert costs["params"] == params == sum(p.numel() for p in model.parameters())
    assert costs["weight_bytes"] == 4 * params
    # Peak: the front-end conv holds the waveform (16000) and its output (8 x 1000).
    assert costs["peak_activation_bytes"] == 4 * (16000 + 8000)
    assert cm.exact(arch, act_bits=4, input_bits=16)["peak_activation_bytes"] == 2 * 16000 + 8000 // 2
    assert costs["latency_ms"] is None
    # 8-bit convs/linear, BN left at the default 32 bits
    bits = {layer.name: 8 for layer in cm.layers(arch) if layer.op in ("Conv1d", "Linear")}
    bn = sum(layer.params for layer in cm.layers(arch) if layer.op == "BatchNorm1d")
    assert cm.exact(arch, bits=bits)["weight_bytes"] == (params - bn) + 4 * bn


def test_peak_memory_two_layers_by_hand() -> None:
    a = Layer("a", "Conv1d", (4, 10), (8, 10), 32, 320, 1, 1, 1)
    relu = Layer("r", "ReLU", (8, 10), (8, 10), 0, 0)
    b = Layer("b", "Conv1d", (8, 10), (4, 10), 32, 320, 1, 1, 1)
    plain = Unit("u", "test", (), (a, relu, b))
    residual = Unit("u", "test", (), (a, relu, b), residual=True)
    assert plain.peak_elems == 40 + 80                   # a: in + out; b: 80 + 40; ReLU is in place
    assert residual.peak_elems == 80 + 40 + 40           # b runs while the block input (40) is kept
    assert exact_costs([plain], act_bits=8)["peak_activation_bytes"] == 120
    # a quantized model reading a 16-bit waveform: the first unit's input at 16 bits, the rest at 8
    assert plain.peak_bits(8, input_bits=16) == 40 * 16 + 80 * 8      # a, over b's (80 + 40) * 8
    assert residual.peak_bits(8, input_bits=16) == 40 * 16 + (80 + 40) * 8  # b with the 16-bit block input kept
    assert exact_costs([plain, plain], act_bits=8, input_bits=16)["peak_activation_bytes"] == (40 * 16 + 80 * 8) / 8


@pytest.mark.parametrize("name", list(SPACES))
def test_params_and_macs_match_torch_on_random_archs(models: dict[str, CostModel], name: str) -> None:
    cm = models[name]
    for seed in range(3):
        arch = random_arch(cm.space, seed)
        model = cm.space.freeze(arch)
        costs = cm.exact(arch)
        assert costs["params"] == sum(p.numel() for p in model.parameters())
        # FlopCounterMode counts 2 x MAC of convs and linears; MFCC extraction is on its own line (test_baselines)
        assert costs["macs"] - costs["frontend_macs"] == torch_conv_linear_macs(model)
        assert (costs["frontend_macs"] > 0) == name.endswith("mfcc")
        names = dict(model.named_modules())
        assert all(layer.name in names for layer in cm.layers(arch))


def test_mfcc_extraction_in_macs_unless_excluded(models: dict[str, CostModel]) -> None:
    cm = models["tiny-mfcc"]
    excluded = CostModel(cm.space, include_frontend=False)
    # 51 frames of the 640-point STFT: window 640, rfft 640·(log2 640 + 1), power 321·2, mel 321·40, log 40, DCT 40·40
    frontend = 51 * (640 + math.ceil(640 * (math.log2(640) + 1)) + 321 * 2 + 321 * 40 + 40 + 40 * 40)
    for seed in range(2):
        arch = random_arch(cm.space, seed)
        costs, without = cm.exact(arch), excluded.exact(arch)
        assert costs["frontend_macs"] == without["frontend_macs"] == frontend
        assert costs["macs"] == without["macs"] + frontend == torch_conv_linear_macs(cm.space.freeze(arch)) + frontend
        assert float(excluded.expected(excluded.one_hot(arch))["macs"]) == pytest.approx(without["macs"])


def test_expectation_at_one_hot_equals_exact(models: dict[str, CostModel], tiny_lut: LatencyTable) -> None:
    for name in ("small", "tiny-coarse", "tiny-strided"):
        cm = models[name]
        for seed in range(4):
            arch = random_arch(cm.space, seed)
            exact, expected = cm.exact(arch, bits=6), cm.expected(cm.one_hot(arch), bits=6, temperature=0)
            for key in ("params", "macs", "frontend_macs", "ops", "weight_bytes", "peak_activation_bytes"):
                assert float(expected[key]) == pytest.approx(exact[key], rel=1e-6), (name, key)
            assert expected["latency_ms"] is None
    cm = CostModel(models["tiny"].space, tiny_lut)
    for seed in range(4):
        arch = random_arch(cm.space, seed)
        assert float(cm.expected(cm.one_hot(arch))["latency_ms"]) == pytest.approx(cm.exact(arch)["latency_ms"])


def test_expectation_over_searched_strides_is_the_mean_over_their_networks(models: dict[str, CostModel]) -> None:
    """A stage's stride sets the length every later unit sees, so a later unit's cost depends on every earlier
    stride: under uniform strides (the rest one-hot) the expectation is the plain mean over the 4 stride pairs."""
    cm = models["tiny-strided"]
    arch = random_arch(cm.space, 0)
    probs = {**cm.one_hot(arch), "s0_stride": {1: 0.5, 2: 0.5}, "s1_stride": {1: 0.5, 2: 0.5}}
    networks = [cm.exact({**arch, "s0_stride": a, "s1_stride": b}) for a in (1, 2) for b in (1, 2)]
    expected = cm.expected(probs)
    for key in ("params", "macs", "weight_bytes"):
        assert float(expected[key]) == pytest.approx(sum(n[key] for n in networks) / 4, rel=1e-6), key
    assert len({n["macs"] for n in networks}) == 4  # every stride pair costs differently


def test_gradients_reach_alphas(models: dict[str, CostModel], tiny_lut: LatencyTable) -> None:
    cm = CostModel(models["tiny"].space, tiny_lut)
    for key in ("params", "latency_ms", "peak_activation_bytes"):
        alphas = {label: torch.zeros(len(values), requires_grad=True) for label, values in cm.choices.items()}
        cost = cm.expected(cm.probs_from_alphas(alphas))[key]
        assert cost.ndim == 0
        cost.backward()
        grads = {label: alpha.grad for label, alpha in alphas.items()}
        if key == "peak_activation_bytes":  # only the position holding the (smooth) max matters
            assert any(g is not None and g.abs().sum() > 0 for g in grads.values())
        else:
            assert all(g is not None and g.abs().sum() > 0 for g in grads.values()), (key, grads)


def test_nni_profilers(models: dict[str, CostModel], tiny_lut: LatencyTable) -> None:
    cm = models["small"]
    macs = KwsMacsProfiler(cm)
    archs = [random_arch(cm.space, seed) for seed in range(20)]
    budget = sorted(cm.exact(a)["macs"] for a in archs)[10]
    keep = RangeProfilerFilter(macs, max=budget)
    assert [keep(a) for a in archs] == [cm.exact(a)["macs"] <= budget for a in archs]
    assert 0 < sum(keep(a) for a in archs) < len(archs)
    for profiler, key in [(macs, "macs"), (KwsParamsProfiler(cm), "params"),
                          (KwsWeightBytesProfiler(cm, bits=4), "weight_bytes"),
                          (KwsPeakMemoryProfiler(cm), "peak_activation_bytes")]:
        for arch in archs[:5]:
            exact = cm.exact(arch, bits=4)[key]
            assert profiler.profile(arch) == exact == profiler.expression.evaluate(arch), key
    # NNI's expectation of our expression = our differentiable expectation
    torch.manual_seed(0)
    probs = cm.probs_from_alphas({label: torch.randn(len(v)) for label, v in cm.choices.items()})
    ours = cm.expected(probs)
    assert float(expression_expectation(macs.expression, probs)) == pytest.approx(float(ours["macs"]), rel=1e-5)
    penalty = ExpectationProfilerPenalty(KwsParamsProfiler(cm), baseline=float(ours["params"]))
    loss, details = penalty(torch.tensor(1.0), probs)
    assert float(loss) == pytest.approx(1.0, abs=1e-4)
    # latency profiler on the tiny space
    tiny = CostModel(models["tiny"].space, tiny_lut)
    latency = KwsLatencyProfiler(tiny)
    arch = random_arch(tiny.space, 0)
    assert latency.profile(arch) == pytest.approx(latency.expression.evaluate(arch)) == tiny.exact(arch)["latency_ms"]
    with pytest.raises(ValueError, match="latency table"):
        KwsLatencyProfiler(models["tiny"])


def test_latency_table_round_trip_and_unknown_configuration(models: dict[str, CostModel], tiny_lut: LatencyTable,
                                                            tmp_path: Path) -> None:
    cm = CostModel(models["tiny"].space, tiny_lut)
    arch = random_arch(cm.space, 0)
    assert set(tiny_lut.entries) == set(cm.table.all_units())
    assert cm.exact(arch)["latency_ms"] > 0
    assert tiny_lut.device["threads"] == 1 and tiny_lut.device["torch"] == torch.__version__
    loaded = LatencyTable.load(tiny_lut.save(tmp_path / "lut.json"))
    assert loaded.entries == tiny_lut.entries and loaded.overhead_ms == tiny_lut.overhead_ms
    from_file = CostModel(cm.space, tmp_path / "lut.json")
    assert from_file.exact(arch)["latency_ms"] == pytest.approx(cm.exact(arch)["latency_ms"])

    other = CostModel(build_space("tiny", widths=(8, 16)), loaded)  # a stage the table has never seen
    arch = random_arch(other.space, 0)
    with pytest.raises(UnknownConfiguration, match=r"no entry for layer 'stages\.1\.0'.*mbconv\(c_in=8,c_out=16"):
        other.exact(arch)
    with pytest.warns(UserWarning, match="MAC-proportional"):
        assert CostModel(other.space, loaded, fallback="macs").exact(arch)["latency_ms"] > 0
    with pytest.raises(ValueError, match="not a latency table"):
        (tmp_path / "bad.json").write_text("{}")
        LatencyTable.load(tmp_path / "bad.json")


@pytest.mark.parametrize("name", ["tiny", "tiny-mfcc"])  # MFCC: its STFT goes to ONNX as a DFT convolution
def test_onnxruntime_backend(models: dict[str, CostModel], name: str) -> None:
    cm = models[name]
    lut = LatencyTable.measure(cm.space, "onnxruntime", repeats=2, rounds=1, calibration=1, table=cm.table,
                               progress=False)
    assert lut.backend == "onnxruntime" and "onnxruntime" in lut.device
    assert all(ms > 0 for ms in lut.entries.values())


def test_cli_profile_and_cost(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    lut = tmp_path / "lut.json"
    assert cli_main(["profile", "--preset", "tiny", "--repeats", "5", "--rounds", "1", "--calibration", "2",
                     "--clock", "cpu", "--statistic", "min", "--out", str(lut)]) == 0
    assert json.loads(lut.read_text())["device"]["clock"] == "cpu"
    arch = save_arch(random_arch(build_space("tiny"), 3), tmp_path / "arch.json", preset="tiny")
    capsys.readouterr()
    assert cli_main(["cost", str(arch), "--lut", str(lut), "--bits", "8"]) == 0
    costs = json.loads(capsys.readouterr().out)
    assert costs["latency_ms"] > 0 and costs["ops"] == 2 * costs["macs"]
    assert costs["weight_bytes"] == costs["params"]
    assert cli_main(["cost", str(arch), "--preset", "small"]) == 2
    assert "missing label" in capsys.readouterr().err
