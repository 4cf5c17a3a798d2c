"""Quantization through NNI's compression framework: learned bit-widths, fixed baseline, report, ONNX export."""
from __future__ import annotations

import argparse
import copy
import json
import math
from pathlib import Path
from typing import Any

import nni
import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from nni.compression import TorchEvaluator
from nni.compression.quantization import QATQuantizer
from onnx import numpy_helper
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from nni_kws.quant import (
    QPARAM_LR_SCALE,
    LearnedBitwidthQuantizer,
    TrainingDiverged,
    U3ClampRound,
    bit_report,
    config_list,
    deploy_model,
    export_onnx,
    fixed_quantizer,
    onnx_agreement,
    prepare_model,
    quantize_model,
    unsigned_inputs,
)
from nni_kws.space import KwsSpace, build_space, random_arch


def _tiny_model(seed: int = 0, frontend: str = "sinc") -> nn.Module:
    torch.manual_seed(seed)
    space = build_space("tiny")
    return space.freeze({**random_arch(space, seed), "frontend": frontend})


def _data(n: int = 32, seed: int = 0, length: int = 16000) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(n, 1, length, generator=g), torch.randint(0, 12, (n,), generator=g)


def _evaluator(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 5e-3) -> TorchEvaluator:
    def training_step(batch, model):
        return F.cross_entropy(model(batch[0]), batch[1])

    def training_func(model, optimizers, training_step, lr_schedulers=None, max_steps=None, max_epochs=None):
        for step in range(max_steps):
            i = (step * 8) % len(x)
            optimizers.zero_grad()
            training_step((x[i:i + 8], y[i:i + 8]), model).backward()
            optimizers.step()

    return TorchEvaluator(training_func, nni.trace(torch.optim.Adam)(model.parameters(), lr=lr), training_step)


def _learned(model: nn.Module, x: torch.Tensor, y: torch.Tensor, max_bits: int = 8,
             **kwargs) -> LearnedBitwidthQuantizer:
    model = prepare_model(model)
    quantizer = LearnedBitwidthQuantizer(model, config_list(unsigned_inputs(model, x[:8]), max_bits),
                                         _evaluator(model, x, y), **kwargs)
    quantizer.track_forward(x[:8])
    return quantizer


def test_frozen_kws_space_root_is_harmless() -> None:
    space = build_space("tiny")
    model = _tiny_model()
    assert isinstance(model, KwsSpace)  # freeze keeps the root class: a ModelSpace, hence an NNI Mutable
    x, y = _data(8)
    quantizer = _learned(model, x, y)
    wrapped = {type(w.module).__name__ for w in quantizer._module_wrappers.values()}
    assert wrapped == {"Conv1d", "Linear"}  # the root and every other module are left alone
    with pytest.raises(ValueError, match="search space"):
        prepare_model(space)


def test_u3_gradients_match_the_autograd_reference() -> None:
    torch.manual_seed(0)
    x = torch.randn(200, requires_grad=True)
    for signed in (True, False):
        step, qrange = torch.tensor([0.3], requires_grad=True), torch.tensor([1.1], requires_grad=True)
        out = U3ClampRound.apply(x, step, qrange, signed)
        grads = torch.autograd.grad((out * torch.arange(200.0)).sum(), (x, step, qrange))
        # Reference: clamp / round-with-straight-through composed by autograd (Uhlich et al.'s gradients).
        low = -qrange if signed else torch.zeros(1)
        clipped = torch.minimum(torch.maximum(x, low), qrange) / step
        ref = (clipped + (clipped.round() - clipped).detach()) * step
        ref_grads = torch.autograd.grad((ref * torch.arange(200.0)).sum(), (x, step, qrange))
        assert torch.equal(out, ref)
        for got, want in zip(grads, ref_grads):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)  # sums in another order
        assert len(torch.unique(out)) <= (2 if signed else 1) * round(1.1 / 0.3) + 1


def test_gradients_reach_step_and_range_parameters() -> None:
    x, y = _data(8)
    # Bits start at ceil(budget) = 3, above the budget: the penalty reaches every range too.
    quantizer = _learned(_tiny_model(), x, y, weight_budget_bits=2.5, act_budget_bits=2.5)
    loss = F.cross_entropy(quantizer.bound_model(x), y) + quantizer.budget_penalty()
    loss.backward()
    for module_name, ts in quantizer._target_spaces.items():
        wrapper = quantizer._module_wrappers[module_name]
        for target_name in ts:
            for kind in ("step", "range"):
                grad = getattr(wrapper, f"{target_name}_{kind}_param").grad
                assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, \
                    (module_name, target_name, kind)


def _train(quantizer: LearnedBitwidthQuantizer, steps: int) -> dict[str, float]:
    quantizer.compress(max_steps=steps, max_epochs=None)
    return {kind: float(quantizer.average_bits(kind).detach()) for kind in ("weight", "activation")}


def test_tighter_budget_gives_fewer_bits() -> None:
    x, y = _data(32)
    loose = _train(_learned(_tiny_model(), x, y), 25)
    tight = _train(_learned(_tiny_model(), x, y, weight_budget_bits=3, act_budget_bits=3, budget_weight=1.0), 25)
    assert tight["weight"] < loose["weight"] - 1.5, (loose, tight)
    assert tight["activation"] < loose["activation"] - 1.5, (loose, tight)
    # Below the starting point ceil(2.5) = 3 bits, only the penalty can take them.
    tighter = _train(_learned(_tiny_model(), x, y, weight_budget_bits=2.5, act_budget_bits=2.5), 25)
    assert tighter["weight"] < 2.9 and tighter["activation"] < 2.9, tighter


def test_budget_penalty_pulls_only_on_targets_that_can_give_up_a_bit() -> None:
    x, y = _data(32)
    at_budget = _learned(_tiny_model(), x, y, weight_budget_bits=3, act_budget_bits=3)  # all start at ceil(3)
    assert at_budget.budget_penalty() == 0  # met exactly: no pull (the straight-through sum must not leak one)
    names = sorted(f"{m}.{t}" for m, targets in at_budget.learned_bits().items() for t in targets)
    at_min = {"classifier.weight", "classifier._input_0"}  # at min_bits = 2; the others at ceil(2.5) = 3, so both
    assert at_min < set(names)  # averages exceed 2.5 and the penalty pulls on the weights and on the activations
    quantizer = _learned(_tiny_model(), x, y, weight_budget_bits=2.5, act_budget_bits=2.5,
                         initial_bits={name: 2 for name in at_min})
    penalty = quantizer.budget_penalty()
    assert penalty > 0
    penalty.backward()
    for name in names:
        module, target = name.rsplit(".", 1)
        grad = getattr(quantizer._module_wrappers[module], f"{target}_step_param").grad
        pulled = grad is not None and bool(grad.abs().sum() > 0)
        assert pulled == (name not in at_min), name  # a 2-bit grid would only widen its step


def test_freeze_bits_keeps_the_projected_bit_widths_while_step_sizes_learn() -> None:
    x, y = _data(32)
    kwargs = dict(weight_budget_bits=3.5, act_budget_bits=3.5, strict_budget=True, hard_budget_after=5)

    def trained(steps: int, freeze: bool) -> tuple[dict[str, int], dict[str, float]]:
        torch.manual_seed(0)
        quantizer = _learned(_tiny_model(), x, y, freeze_bits=freeze, **kwargs)
        quantizer.compress(max_steps=steps, max_epochs=None)
        steps_now = {key: float(quantizer._target_spaces[key.rsplit(".", 1)[0]][key.rsplit(".", 1)[1]].scale)
                     for key in quantizer._levels()}
        return quantizer._levels(), steps_now

    at_freeze, steps_at_freeze = trained(6, True)  # the projection happens after step 6
    later, steps_later = trained(20, True)
    assert later == at_freeze  # every target keeps its levels (hence its bits) ...
    assert steps_later != steps_at_freeze  # ... while step sizes go on learning
    assert trained(20, False)[0] != at_freeze  # projecting every step instead moves the grids


def test_frozen_bit_widths_give_the_step_size_the_clipping_gradient_too() -> None:
    """Pinned levels ``n`` tie ``q_max = n·d`` in the forward pass: the step size gets the gradient of the rounded
    and of the clipped values (as LSQ's one scale does), the range parameter none (it is only kept in sync)."""
    x, y = _data(16)
    quantizer = _learned(_tiny_model(), x, y, weight_budget_bits=3.5, act_budget_bits=3.5, strict_budget=True,
                         hard_budget_after=0, freeze_bits=True)
    quantizer.compress(max_steps=2, max_epochs=None)  # projected and pinned after the first step
    wrapper = quantizer._module_wrappers["classifier"]
    n = quantizer._levels()["classifier.weight"]
    for param in wrapper.parameters():
        param.grad = None
    loss = F.cross_entropy(quantizer.bound_model(x), y)
    quantized = wrapper.module.weight  # this forward pass's fake-quantized weight
    quantized.retain_grad()
    loss.backward()
    assert wrapper.weight_range_param.grad is None
    # Reference: the U3 quantizer composed by autograd from the same upstream gradient, tied and untied.
    k, weight = quantizer.qparam_lr_scale, wrapper.quantization_target_spaces["weight"].target.detach()
    param = wrapper.weight_step_param.detach().clone().requires_grad_()

    def step_grad(tie: bool) -> torch.Tensor:
        step = torch.exp(k * param)
        quantized_again = U3ClampRound.apply(weight, step, n * (step if tie else step.detach()), True)
        return torch.autograd.grad(quantized_again, param, quantized.grad)[0]

    tied, rounding_only = step_grad(True), step_grad(False)
    torch.testing.assert_close(wrapper.weight_step_param.grad, tied)
    assert not torch.allclose(tied, rounding_only)  # the clipped values' share is there


def test_a_frozen_quantizer_projects_to_a_tighter_budget() -> None:
    """Pinned levels are bit-widths too: lowering one lowers its pin (else the projection could not meet the budget)."""
    x, y = _data(16)
    quantizer = _learned(_tiny_model(), x, y, weight_budget_bits=3.5, act_budget_bits=3.5, strict_budget=True,
                         hard_budget_after=0, freeze_bits=True)
    quantizer.compress(max_steps=2, max_epochs=None)  # projected and pinned after the first step
    quantizer.weight_budget_bits = quantizer.act_budget_bits = 2.5
    assert set(quantizer.over_budget()) == {"weight", "activation"}
    quantizer.project_to_budget()
    assert not quantizer.over_budget()
    assert quantizer.frozen_levels() == quantizer._levels()  # the pins follow


def test_fill_budget_raises_the_bit_widths_that_still_fit_under_the_budget() -> None:
    """All start at ceil(2.8) = 3 bits; the projection lowers whole tensors to 2 until the averages meet 2.8, and
    the fill spends what is left: checked against sizes and bits read from the model, not the quantizer's sums."""
    x, y = _data(32)
    budget = 2.8

    def projected(fill: bool) -> dict[str, dict[str, tuple[int, int]]]:
        quantizer = _learned(_tiny_model(), x, y, weight_budget_bits=budget, act_budget_bits=budget,
                             fill_budget=fill)
        quantizer.project_to_budget()
        bits = {f"{m}.{t}": b for m, targets in quantizer.learned_bits().items() for t, b in targets.items()}
        sizes = {f"{m}.{t}": (quantizer.bound_model.get_submodule(m).weight.numel() if t == "weight"
                              else math.prod(ts.shape[1:]))
                 for m, targets in quantizer._target_spaces.items() for t, ts in targets.items() if t != "bias"}
        return {kind: {k: (bits[k], sizes[k]) for k in bits if k.endswith(".weight") == (kind == "weight")}
                for kind in ("weight", "activation")}

    without, with_fill = projected(False), projected(True)
    for kind in ("weight", "activation"):
        before, after = without[kind], with_fill[kind]
        count = sum(n for _, n in after.values())
        average = {name: sum(b * n for b, n in run.values()) / count for name, run in (("before", before),
                                                                                        ("after", after))}
        assert average["before"] < average["after"] <= budget, (kind, average)
        assert all(after[k][0] >= before[k][0] for k in after)  # the fill only raises
        spare = (budget - average["after"]) * count
        assert not [k for k, (b, n) in after.items() if b < 8 and n <= spare], (kind, spare)  # nothing else fits


def test_qparam_lr_scale_sets_how_fast_step_sizes_learn() -> None:
    x, y = _data(32)

    def log_step_change(scale: float) -> float:
        """Mean |log| change of every learned step size over 8 optimizer steps."""
        quantizer = _learned(_tiny_model(), x, y, qparam_lr_scale=scale)
        keys = [key.rsplit(".", 1) for key in quantizer._levels()]
        before = [float(quantizer._target_spaces[m][t].scale) for m, t in keys]
        quantizer.compress(max_steps=8, max_epochs=None)
        after = [float(quantizer._target_spaces[m][t].scale) for m, t in keys]
        return sum(abs(math.log(a / b)) for a, b in zip(after, before)) / len(keys)

    slow, fast = log_step_change(1.0), log_step_change(QPARAM_LR_SCALE)
    assert slow > 0 and fast > 10 * slow, (slow, fast)  # Adam moves log(d) / k by about lr per step


def test_pipeline_quantize_stage_depends_on_qparam_lr_scale() -> None:
    from nni_kws.pipeline.config import PipelineConfig, options_mismatch, stage_options

    default = stage_options(PipelineConfig(), "quantize")
    slow = stage_options(PipelineConfig(qparam_lr_scale=1), "quantize")
    assert options_mismatch(default, slow) == f"qparam-lr-scale={QPARAM_LR_SCALE}, not 1"
    older = {k: v for k, v in default.items() if k != "qparam_lr_scale"}  # a stage stored before the option existed
    assert options_mismatch(older, default) is None and options_mismatch(older, slow) is not None
    fixed = dict(quant_method="fixed", bits=4)
    assert options_mismatch(stage_options(PipelineConfig(**fixed), "quantize"),
                            stage_options(PipelineConfig(**fixed, qparam_lr_scale=1), "quantize")) is None


def test_learned_bits_stay_in_bounds() -> None:
    x, y = _data(16)
    # A budget below min_bits and a heavy penalty push every bit-width down against the lower bound.
    quantizer = _learned(_tiny_model(), x, y, max_bits=6, min_bits=3, weight_budget_bits=2, act_budget_bits=2,
                         budget_weight=100.0)
    _train(quantizer, 15)
    bits = [b for targets in quantizer.learned_bits().values() for b in targets.values()]
    assert bits and all(3 <= b <= 6 for b in bits) and min(bits) == 3, bits
    # The fake-quantized weights take at most the 2^b - 1 values of their (signed, symmetric) grid.
    calibration = quantizer.get_calibration_config()
    for name, wrapper in quantizer._module_wrappers.items():
        cfg = calibration[name]["weight"]
        weight = wrapper.quantization_target_spaces["weight"]
        q = torch.round(wrapper.patch_helper("weight", weight.target).detach() / cfg["scale"])
        assert q.abs().max() <= cfg["qmax"] <= 2 ** (cfg["quant_bits"] - 1) - 1
        assert len(torch.unique(q)) <= 2 ** cfg["quant_bits"] - 1
    # Ranges pushed far up are projected back to max_bits after the optimizer step.
    with torch.no_grad():
        for wrapper in quantizer._module_wrappers.values():
            wrapper.weight_range_param.add_(1.0)
    quantizer.project_qparams()
    assert {t["weight"] for t in quantizer.learned_bits().values()} == {6}


def test_report_definitions_on_two_layers() -> None:
    model = nn.Sequential(nn.Conv1d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 5))
    x, y = torch.randn(8, 1, 10), torch.randint(0, 5, (8,))
    configs = [{"op_names": ["0"], "target_names": ["_input_", "weight"], "quant_dtype": "int4"},
               {"op_names": ["3"], "target_names": ["_input_", "weight"], "quant_dtype": "int8",
                "target_settings": {"_input_": {"quant_dtype": "uint8"}}}]
    quantizer = LearnedBitwidthQuantizer(model, configs, _evaluator(model, x, y))
    quantizer.track_forward(x)  # initial bits = the configured maximum: 4 for layer 0, 8 for layer 3
    report = bit_report(quantizer)
    # weights: conv 12 at 4 bits, linear 160 at 8 bits; activations per clip: 10 at 4 bits, 32 at 8 bits
    assert report["avg_bits_per_weight"] == pytest.approx((12 * 4 + 160 * 8) / 172)
    assert report["avg_bits_per_activation"] == pytest.approx((10 * 4 + 32 * 8) / 42)
    assert report["avg_bits_per_weight_layer_mean"] == report["avg_bits_per_activation_layer_mean"] == 6
    assert report["packed_weight_bytes"] == 12 * 4 // 8 + 160
    assert report["size_bytes"] == 166 + 4 * (4 + 5) + 4 * 4  # + float biases + one float32 scale per tensor
    assert report["float_size_bytes"] == 4 * (12 + 4 + 160 + 5)
    rows = [(layer["name"], layer["weight_bits"], layer["act_bits"], layer["act_signed"]) for layer in report["layers"]]
    assert rows == [("0", 4, 4, True), ("3", 8, 8, False)]
    assert "avg_bits_per_weight" in report["definitions"]
    json.dumps(report)


def test_fold_batchnorm_keeps_the_function() -> None:
    model = _tiny_model(frontend="conv").eval()
    x, _ = _data(4)
    folded = prepare_model(model, fold_bn=True)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in folded.modules()) == 0
    torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def speech_clips(tmp_path_factory) -> Path:
    """A few espeak-synthesized Speech Commands clips (2 voices, the 10 keywords and one unknown word)."""
    from nni_kws.data.synth import synthesize_dataset

    return synthesize_dataset(tmp_path_factory.mktemp("speech") / "ds", speakers=3, seed=1, noise_seconds=2,
                              words=("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "bed"),
                              progress=False)


@pytest.mark.parametrize("fold_bn,input_bits", [(False, None), (True, 8)])
def test_quantize_model_exports_onnx_that_agrees(fold_bn: bool, input_bits: int | None, speech_clips: Path,
                                                 tmp_path: Path) -> None:
    from nni_kws.data.datamodule import SpeechCommandsDataModule

    data = SpeechCommandsDataModule(speech_clips, batch_size=8, cache=True)
    train = data.train_dataloader()
    clips = DataLoader(ConcatDataset([data.dataset(s) for s in ("training", "validation", "testing")]),
                       batch_size=16)  # every synthesized word clip (and silence), un-augmented for the check
    for ds in clips.dataset.datasets:
        ds.augment = False
    model = _tiny_model(frontend="sinc")
    result = quantize_model(model, train, clips, method="trained", bits=6, weight_budget_bits=4, act_budget_bits=5,
                            epochs=1, out_dir=tmp_path, test_loader=clips, fold_bn=fold_bn, input_bits=input_bits,
                            progress=False)
    assert isinstance(model.frontend[0], torch.nn.Module) and type(model.frontend[0]).__name__ == "SincConv1d"
    report = json.loads((tmp_path / "quant_report.json").read_text())
    # Same function under onnxruntime: logits within float rounding of the fake-quant model's, on speech.
    logits = torch.cat([result.model(x) for x, _ in clips])
    assert report["onnx"]["clips"] == len(clips.dataset) >= 30
    assert report["onnx"]["max_abs_logit_diff"] <= 1e-4 * max(1.0, float(logits.abs().max())), report["onnx"]
    assert report["onnx"]["agreement"] == 1.0
    assert set(report["accuracy"]) == {"val", "test"} and set(report["accuracy"]["test"]) == {"before", "after"}
    assert report["model_input_bits"] == input_bits
    assert [layer.get("model_input", False) for layer in report["layers"]][:2] == [input_bits is not None, False]
    # int32 biases on the grid d_input * d_weight
    biased = [layer["name"] for layer in report["layers"] if layer.get("bias_bits") == 32]
    assert biased == ["classifier"] if not fold_bn else len(biased) > 1  # + the convs' folded BN
    x = next(iter(clips))[0]

    graph = onnx.load(str(result.onnx_path)).graph
    ops = [n.op_type for n in graph.node]
    inputs = len(report["layers"]) - (input_bits is None)  # a float model input has no QDQ
    assert ops.count("DequantizeLinear") == len(report["layers"]) + inputs  # weights and inputs
    assert ops.count("QuantizeLinear") == inputs  # inputs only: weights are stored as integers
    int_weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer
                   if i.data_type == onnx.TensorProto.INT8 and i.dims}  # not the scalar zero points
    assert len(int_weights) == len(report["layers"])
    for layer in report["layers"]:  # every weight uses at most 2^b - 1 of the int8 container's values
        assert any(len(np.unique(w)) <= 2 ** layer["weight_bits"] - 1 and w.size == layer["weight_numel"]
                   for w in int_weights.values())
    # The deployable torch model (QDQ layers) computes the fake-quant model's function.
    torch.testing.assert_close(deploy_model(result.quantizer)(x), result.model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("algorithm", ["qat", "lsq"])
def test_fixed_baselines_with_folded_batchnorm_export_onnx_that_agrees(algorithm: str, speech_clips: Path,
                                                                       tmp_path: Path) -> None:
    """NNI's QAT and LSQ with folded BatchNorm: the folded biases are added on the accumulator grid, as onnxruntime
    adds them (before, a float bias made the exported model disagree on most clips at 4 bits)."""
    from nni_kws.data.datamodule import SpeechCommandsDataModule

    data = SpeechCommandsDataModule(speech_clips, batch_size=8, cache=True)
    torch.manual_seed(0)
    result = quantize_model(_tiny_model(frontend="sinc"), data.train_dataloader(), data.val_dataloader(),
                            method="fixed", fixed_algorithm=algorithm, bits=4, epochs=1, fold_bn=True, out_dir=tmp_path,
                            test_loader=data.test_dataloader(), progress=False)
    logits = torch.cat([result.model(x) for x, _ in data.test_dataloader()])
    onnx_check = result.report["onnx"]
    assert onnx_check["agreement"] == 1.0 and onnx_check["clips"] == len(data.dataset("testing")), onnx_check
    assert onnx_check["max_abs_logit_diff"] <= 1e-4 * max(1.0, float(logits.abs().max())), onnx_check
    assert len([layer for layer in result.report["layers"] if layer.get("bias_bits") == 32]) > 1


@pytest.mark.parametrize("model", ["mfcc-space", "tc-resnet8"])
def test_spectral_front_ends_quantize_and_export(model: str, speech_clips: Path, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """An MFCC front end (the space's, TC-ResNet8's) exports to ONNX (torch.stft cannot: its DFT becomes a
    convolution) and agrees with the fake-quant model; TC-ResNet8's classifier is the last layer of a
    Sequential head, which logit distillation must find (it took the whole head before)."""
    from nni_kws.baselines import build_baseline
    from nni_kws.data.datamodule import SpeechCommandsDataModule

    data = SpeechCommandsDataModule(speech_clips, batch_size=8, cache=True)
    torch.manual_seed(0)
    space = build_space("tiny", frontend="mfcc")
    net = space.freeze(random_arch(space, 0)) if model == "mfcc-space" else build_baseline(model)
    result = quantize_model(net, data.train_dataloader(), data.val_dataloader(), method="trained",
                            weight_budget_bits=4, act_budget_bits=4, epochs=1, out_dir=tmp_path, input_bits=8,
                            test_loader=data.test_dataloader(), progress=False)
    # no layer reads the waveform itself: input_bits is reported as unused, and said so
    assert result.report["model_input_bits"] is None and "input_bits=8 has no effect" in caplog.text
    onnx_check = result.report["onnx"]
    logits = torch.cat([result.model(x) for x, _ in data.test_dataloader()])
    assert onnx_check["clips"] == len(data.dataset("testing")) and onnx_check["agreement"] == 1.0, onnx_check
    # the DFT's float rounding (~2e-5 of the spectrum) can move an activation across a quantization step
    assert onnx_check["max_abs_logit_diff"] <= 5e-2 * float(logits.abs().max()), onnx_check


@pytest.mark.parametrize("algorithm", ["qat", "lsq"])
def test_fixed_baseline_runs_on_a_conv1d_model(algorithm: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 8, 9, stride=4), nn.ReLU(), nn.Conv1d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
                          nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 12))
    x, y = _data(16, length=400)
    unsigned = unsigned_inputs(model, x)
    assert unsigned == {"0": False, "2": True, "6": True}
    float_weight = model[2].weight.detach().clone()
    quantizer = fixed_quantizer(model, unsigned, 4, _evaluator(model, x, y, lr=1e-3), algorithm)
    if algorithm == "lsq":  # the LSQ paper's step size (NNI's own LSQ starts at 0.01), before any step
        quantizer.track_forward(x)
        weight = quantizer._module_wrappers["2"].quantization_target_spaces["weight"]
        torch.testing.assert_close(weight.scale, (2 * float_weight.abs().mean() / 7 ** 0.5).view(1))
    _, calibration = quantizer.compress(max_steps=4, max_epochs=None)
    model.eval()
    assert {t["quant_bits"] for targets in calibration.values() for t in targets.values()} == {4}
    report = bit_report(quantizer, model)
    assert report["avg_bits_per_weight"] == report["avg_bits_per_activation"] == 4
    path = export_onnx(deploy_model(quantizer), tmp_path / "fixed.onnx", x[:1])
    assert onnx_agreement(model, path, [(x, y)])["agreement"] >= 0.999


def test_1d_pooling_layers_are_registered_with_nni() -> None:
    model = nn.Sequential(nn.Conv1d(1, 4, 3), nn.ReLU(), nn.AvgPool1d(2), nn.AdaptiveAvgPool1d(1))
    x = torch.randn(4, 1, 20)
    config = [{"op_types": ["AvgPool1d", "AdaptiveAvgPool1d"], "target_names": ["_output_"], "quant_dtype": "uint8",
               "quant_scheme": "affine"}]
    quantizer = QATQuantizer(model, config, _evaluator(model, x, torch.zeros(4, dtype=torch.long)))
    assert set(quantizer._module_wrappers) == {"2", "3"}


def test_bad_arguments_give_clear_errors() -> None:
    model = _tiny_model()
    x, y = _data(8)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    cases = [
        (dict(method="learned"), "method must be one of"),
        (dict(bits=9), "bits must be an int in 2..8"),
        (dict(bits=4, weight_budget_bits=5), r"weight_budget_bits=5 is outside \[min_bits, bits\]"),
        (dict(method="fixed", bits=4, act_budget_bits=3), r"budgets \(weight_budget_bits, act_budget_bits\) only apply "
                                                          "to method trained"),
        (dict(epochs=0), "epochs must be a positive int"),
        (dict(lr=0), "lr must be > 0"),
        (dict(method="fixed", bits=4, fixed_algorithm="dorefa"), "fixed_algorithm must be one of"),
        (dict(min_bits=4, input_bits=3), "input_bits=3 is below min_bits=4"),
        (dict(distill=-1), "distill must be >= 0"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            quantize_model(model, loader, loader, progress=False, **kwargs)
    with pytest.raises(ValueError, match="val is empty"):
        quantize_model(model, loader, DataLoader(TensorDataset(x[:0], y[:0])), progress=False)
    with pytest.raises(ValueError, match="search space"):
        quantize_model(build_space("tiny"), loader, loader, progress=False)
    nan_loader = DataLoader(TensorDataset(torch.full_like(x, float("nan")), y), batch_size=8)
    with pytest.raises(TrainingDiverged, match="diverged .* try a lower learning rate"):
        quantize_model(model, nan_loader, loader, method="fixed", bits=4, progress=False)
    prepared = prepare_model(model)
    evaluator = _evaluator(prepared, x, y)
    with pytest.raises(ValueError, match="symmetric"):
        LearnedBitwidthQuantizer(prepared, [{"op_types": ["Conv1d"], "quant_dtype": "int8", "quant_scheme": "affine",
                                             "target_names": ["weight"]}], evaluator)
    with pytest.raises(ValueError, match="min_bits must be an int >= 2"):
        LearnedBitwidthQuantizer(prepare_model(model), [{"op_types": ["Conv1d"], "quant_dtype": "int8",
                                                         "target_names": ["weight"]}], evaluator, min_bits=1)
    with pytest.raises(ValueError, match="selects no module"):
        LearnedBitwidthQuantizer(prepare_model(model), [{"op_types": ["Conv2d"], "quant_dtype": "int8"}], evaluator)


def test_cli_quantizes_a_saved_model(tiny_gsc: Path, tmp_path: Path, capsys) -> None:
    from nni_kws.cli import main
    from nni_kws.space import save_arch

    space = build_space("tiny")
    arch = {**random_arch(space, 1), "frontend": "conv"}
    torch.save(space.freeze(arch).state_dict(), tmp_path / "model.pt")
    save_arch(arch, tmp_path / "arch.json", preset="tiny")
    out, threads = tmp_path / "q", torch.get_num_threads()
    other = 2 if threads == 1 else 1
    assert main(["quantize", str(tmp_path), "--method", "fixed", "--bits", "4", "--data", str(tiny_gsc),
                 "--epochs", "1", "--batch-size", "16", "--out", str(out), "--no-progress",
                 "--threads", str(other)]) == 0
    assert torch.get_num_threads() == threads  # --threads holds for the command only
    report = json.loads((out / "quant_report.json").read_text())
    assert report["avg_bits_per_weight"] == 4 and report["onnx"]["agreement"] >= 0.999
    assert "bits/weight" in capsys.readouterr().out
    assert main(["quantize", str(tmp_path / "missing"), "--bits", "4", "--data", str(tiny_gsc)]) == 2
    assert main(["quantize", str(tmp_path), "--method", "fixed", "--data", str(tiny_gsc)]) == 2
    assert "--method fixed needs --bits" in capsys.readouterr().err
    assert main(["quantize", str(tmp_path), "--bits", "4", "--data", str(tiny_gsc), "--threads", "-1"]) == 2
    assert "--threads must be >= 0" in capsys.readouterr().err
    # option errors name the command's options, and come before any data is read (there is none here)
    for options, message in ((["--weight-budget", "1.5"], "--weight-budget=1.5 is outside [--min-bits, --bits]"),
                             (["--fixed-algorithm", "lsq"], "--fixed-algorithm applies to --method fixed")):
        assert main(["quantize", str(tmp_path), "--data", str(tmp_path / "no-data"), *options]) == 2
        assert message in capsys.readouterr().err


def _gsc_loaders(root: Path, seed: int = 3) -> tuple[DataLoader, DataLoader]:
    from nni_kws.data.datamodule import SpeechCommandsDataModule

    data = SpeechCommandsDataModule(root, batch_size=16, seed=seed, cache=True)
    return data.train_dataloader(), data.val_dataloader()


@pytest.mark.parametrize("method", ["trained", "lsq"])
def test_interrupted_quantization_resumes_to_the_uninterrupted_result(method: str, tiny_gsc: Path,
                                                                      tmp_path: Path) -> None:
    """Bit for bit; also NNI's LSQ, which initialises its scales on the first step unless told it has."""
    kwargs = dict(method="trained", bits=6, weight_budget_bits=3, act_budget_bits=4, epochs=3, progress=False)
    if method == "lsq":
        kwargs = dict(method="fixed", fixed_algorithm="lsq", bits=4, epochs=3, progress=False)
    model = _tiny_model(frontend="sinc")
    reference = quantize_model(model, *_gsc_loaders(tiny_gsc), **kwargs)  # augmentation and shuffling on

    train, val = _gsc_loaders(tiny_gsc)
    dataset = train.dataset
    calls = {"n": 0}

    class Interrupted(type(dataset)):  # Ctrl-C in the middle of epoch 2 (the example batch, epoch 1, 2 batches)
        def __getitem__(self, i):
            calls["n"] += 1
            if calls["n"] > 16 + len(dataset) + 32:
                raise KeyboardInterrupt
            return super().__getitem__(i)

    dataset.__class__ = Interrupted
    with pytest.raises(KeyboardInterrupt):
        quantize_model(model, train, val, checkpoint_dir=tmp_path, resume=True, **kwargs)
    assert torch.load(tmp_path / "last.pt", weights_only=False)["epoch"] == 1

    resumed = quantize_model(model, *_gsc_loaders(tiny_gsc), checkpoint_dir=tmp_path, resume=True, **kwargs)
    assert resumed.report["accuracy"] == reference.report["accuracy"]
    assert resumed.report["layers"] == reference.report["layers"]
    want, got = reference.model.state_dict(), resumed.model.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    # A finished run resumes to itself without training; other settings refuse the checkpoint.
    again = quantize_model(model, *_gsc_loaders(tiny_gsc), checkpoint_dir=tmp_path, resume=True, **kwargs)
    assert again.report["accuracy"] == reference.report["accuracy"]
    with pytest.raises(ValueError, match="settings differ: .*lr"):
        quantize_model(model, *_gsc_loaders(tiny_gsc), checkpoint_dir=tmp_path, resume=True, **{**kwargs, "lr": 3e-3})
    # ... and so do another float model of the same architecture, and loaders of another seed
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    with pytest.raises(ValueError, match=r"settings differ: \['float_model'\]"):
        quantize_model(other, *_gsc_loaders(tiny_gsc), checkpoint_dir=tmp_path, resume=True, **kwargs)
    with pytest.raises(ValueError, match=r"settings differ: \['data_seed'\]"):
        quantize_model(model, *_gsc_loaders(tiny_gsc, seed=4), checkpoint_dir=tmp_path, resume=True, **kwargs)


def test_strict_budget_is_met_and_approached(tiny_gsc: Path) -> None:
    kwargs = dict(method="trained", bits=8, epochs=1, progress=False)
    # One short epoch: the penalty alone leaves 2.5-bit budgets unmet (bits start at ceil(2.5) = 3).
    loose = quantize_model(_tiny_model(), *_gsc_loaders(tiny_gsc), weight_budget_bits=2.5, act_budget_bits=2.5,
                           strict_budget=False, init_bits="budget", **kwargs).report
    assert not loose["budget_met"] and set(loose["budget_violation"]) == {"weight", "activation"}
    for budget, init in ((2.5, "budget"), (3.0, "budget"), (3.0, "sensitivity")):
        report = quantize_model(_tiny_model(), *_gsc_loaders(tiny_gsc), weight_budget_bits=budget,
                                act_budget_bits=budget, init_bits=init, **kwargs).report
        # Recomputed from the per-layer bits: the budget is met, and not by a wide margin.
        for kind, numel, bits in (("weight", "weight_numel", "weight_bits"), ("activation", "act_numel", "act_bits")):
            rows = [layer for layer in report["layers"]
                    if bits in layer and not (kind == "activation" and layer.get("model_input"))]
            average = sum(layer[numel] * layer[bits] for layer in rows) / sum(layer[numel] for layer in rows)
            assert average == pytest.approx(report[f"avg_bits_per_{kind}"])
            assert budget - 0.5 <= average <= budget, (kind, budget, average)
        assert report["budget_met"]
    high = quantize_model(_tiny_model(), *_gsc_loaders(tiny_gsc), weight_budget_bits=8, act_budget_bits=8,
                          **kwargs).report
    assert min(high["avg_bits_per_weight"], high["avg_bits_per_activation"]) > 6


def _quantize_benchmark() -> Any:
    """``benchmarks/quantize.py`` as a module."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "quantize.py"
    spec = importlib.util.spec_from_file_location("bench_quantize", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_benchmark_reuses_a_saved_float_model_only_when_made_with_the_same_settings(tmp_path: Path) -> None:
    bench = _quantize_benchmark()
    args = argparse.Namespace(work=str(tmp_path), reuse=True)
    trainings = []

    def train() -> tuple[nn.Module, dict]:
        trainings.append(nn.Linear(2, 2))
        return trainings[-1], {"seconds": len(trainings)}

    first, _ = bench.saved_or_trained(args, "float", {"epochs": 3}, nn.Linear(2, 2), train)
    again, record = bench.saved_or_trained(args, "float", {"epochs": 3}, nn.Linear(2, 2), train)
    assert len(trainings) == 1 and record == {"seconds": 1} and torch.equal(again.weight, first.weight)
    with pytest.raises(SystemExit, match='"epochs": {"saved": 3, "now": 4}'):
        bench.saved_or_trained(args, "float", {"epochs": 4}, nn.Linear(2, 2), train)


def _verdict_row(method: str, bits: float, seed: int, dev_val: float = 0.8, heldout: float = 0.8) -> dict[str, Any]:
    """A benchmark result row with only what ``verdict`` reads."""
    return {"method": method, "bits": bits, "seed": seed, "accuracy": {"dev_val": dev_val, "heldout": heldout},
            "drop_points_heldout": 0.0, "within_bits": True}


def test_benchmark_verdict_lets_the_mean_over_seeds_decide_where_every_seed_ran() -> None:
    bench = _quantize_benchmark()

    def row(method: str, bits: float, seed: int, heldout: float) -> dict[str, Any]:
        return _verdict_row(method, bits, seed, heldout=heldout)

    rows = [row("learned", 8, 0, 0.85), row("lsq", 8, 0, 0.86),  # LSQ ahead at the curve seed ...
            row("learned", 8, 1, 0.87), row("lsq", 8, 1, 0.85), row("learned", 8, 2, 0.86), row("lsq", 8, 2, 0.85),
            row("learned", 2.5, 0, 0.75), row("lsq", 2, 0, 0.70)]  # 2.5 bits: the curve seed only
    args = argparse.Namespace(seeds=[0, 1, 2], curve_seeds=[0])
    verdict = bench.verdict(rows, args)
    assert not verdict["learned_vs_lsq_per_budget"]["8"]["learned_better"]
    assert verdict["learned_vs_lsq_mean_over_seeds"] == {"8": {"learned": pytest.approx(0.86),
                                                               "lsq": pytest.approx(2.56 / 3), "learned_better": True,
                                                               "seeds": 3}}
    assert verdict["learned_beats_lsq_everywhere"]  # ... learned ahead on the mean over three seeds, which decides
    rows[-2] = row("learned", 2.5, 0, 0.69)
    assert not bench.verdict(rows, args)["learned_beats_lsq_everywhere"]  # where one seed ran, it decides


def test_benchmark_verdict_picks_the_learned_variant_by_mean_dev_val_where_every_seed_ran() -> None:
    bench = _quantize_benchmark()
    row = _verdict_row  # row(method, bits, seed, dev_val)
    args = argparse.Namespace(seeds=[0, 1, 2], curve_seeds=[0])
    rows = [row("learned", 3, 0, 0.82), row("learned", 3, 1, 0.84), row("learned", 3, 2, 0.85),
            row("learned_nofreeze", 3, 0, 0.83), row("learned_nofreeze", 3, 1, 0.83),  # ahead at seed 0 only
            row("learned_nofreeze", 6, 0, 0.86), row("learned", 6, 0, 0.85)]  # 6 bits: seed 0 only
    assert bench.verdict(rows, args)["learned_variant_per_budget"] == {"3": "learned", "6": "learned_nofreeze"}
    rows.append(row("learned_nofreeze", 3, 2, 0.86))  # now it ran every seed: mean 0.84 vs 0.8367
    assert bench.verdict(rows, args)["learned_variant_per_budget"]["3"] == "learned_nofreeze"
    over = [{**row("learned_pinned3_weights", 3, seed, 0.9), "within_bits": False} for seed in (0, 1, 2)]
    assert bench.verdict(rows + over, args)["learned_variant_per_budget"]["3"] == "learned_nofreeze"  # over budget


def test_curve_plots_the_learned_variant_the_verdict_chose_at_each_budget() -> None:
    from nni_kws.quant.plot import _points, _verdict_variants

    def row(method: str, bits: float, acc: float) -> dict[str, Any]:
        return {"method": method, "bits": bits, "seed": 0, "accuracy": {"heldout": acc},
                "avg_bits_per_weight": bits, "avg_bits_per_activation": bits}

    runs = [row("learned", 4, 0.85), row("learned", 3, 0.82), row("learned_pinned3", 3, 0.81),
            row("learned_pinned3", 4, 0.5), row("lsq", 3, 0.8)]
    shown = _verdict_variants(runs, {"4": "learned", "3": "learned_pinned3"})
    assert _points(shown, "learned", "weight") == [(3, 81.0), (4, 85.0)]
    assert _points(shown, "lsq", "weight") == [(3, 80.0)]
    assert _points(_verdict_variants(runs, {}), "learned", "weight") == [(3, 82.0), (4, 85.0)]


def test_benchmark_quick_mode_writes_the_verdict_and_the_curve(real_test_root: Path, tmp_path: Path) -> None:
    from nni_kws.quant.plot import plot_quantize_curve

    bench = _quantize_benchmark()
    out = tmp_path / "quantize.json"
    assert bench.main(["--quick", "--quiet", "--real-test", str(real_test_root), "--work", str(tmp_path / "work"),
                       "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    runs = {(r["method"], r["bits"]): r for r in result["runs"]}
    assert set(runs) == {("learned", 4), ("learned", 3), ("lsq", 4), ("lsq", 3), ("qat", 4), ("float", 32)}
    assert set(result["lr_tuning"]) >= {"learned", "lsq", "qat"}
    verdict = result["verdict"]
    assert runs[("learned", 3)]["avg_bits_per_weight"] <= 3 and runs[("learned", 3)]["avg_bits_per_activation"] <= 3
    # drops count from the float control (the float model fine-tuned the same way), the float model's on the side
    control = runs[("float", 32)]["accuracy"]["heldout"]
    assert verdict["drops_from"] == "float control"
    for key, run in (("drop_pts_at_4bits", ("learned", 4)), ("drop_pts_at_3bits", ("learned", 3)),
                     ("fixed_lsq_drop_pts_at_4bits", ("lsq", 4))):
        assert verdict[key] == round(100 * (control - runs[run]["accuracy"]["heldout"]), 2)
        assert verdict["drop_pts_from_float_model"][f"{run[0]}@{run[1]}"] == runs[run]["drop_points_heldout"]
    assert verdict["learned_vs_lsq_mean_over_seeds"]["3"] == {
        "learned": runs[("learned", 3)]["accuracy"]["heldout"], "lsq": runs[("lsq", 3)]["accuracy"]["heldout"],
        "learned_better": runs[("learned", 3)]["accuracy"]["heldout"] > runs[("lsq", 3)]["accuracy"]["heldout"],
        "seeds": 1}
    # --resume keeps every finished run (rerunning one would change at least its time_s) and the tuned rates.
    assert bench.main(["--quick", "--quiet", "--real-test", str(real_test_root), "--work", str(tmp_path / "work"),
                       "--out", str(out), "--resume"]) == 0
    resumed = json.loads(out.read_text())
    assert resumed["runs"] == result["runs"] and resumed["lr_tuning"] == result["lr_tuning"]
    png = plot_quantize_curve(out, tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_float_fine_tune_trains_a_copy_and_distills_towards_the_starting_model() -> None:
    from nni_kws.quant import float_fine_tune
    from nni_kws.training import predict

    x, y = _data(32, seed=1)
    train, whole = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True), DataLoader(TensorDataset(x, y))
    model = _tiny_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    start_preds = predict(prepare_model(model).eval(), whole)[0]
    assert (start_preds == y).float().mean() < 0.2  # untrained
    torch.manual_seed(0)
    plain = float_fine_tune(model, train, epochs=15, lr=1e-2, distill=0, progress=False)
    torch.manual_seed(0)
    distilled = float_fine_tune(model, train, epochs=15, lr=1e-2, distill=50, progress=False)
    assert all(torch.equal(start[k], v) for k, v in model.state_dict().items())  # the input model is not modified
    assert (predict(plain, whole)[0] == y).float().mean() >= 0.8  # it memorises the 32 clips
    agreement = {name: (predict(m, whole)[0] == start_preds).float().mean() for name, m in
                 (("plain", plain), ("distilled", distilled))}
    assert agreement["distilled"] > agreement["plain"] + 0.2, agreement


def test_allocate_bits_matches_the_brute_force_optimum() -> None:
    import itertools

    from nni_kws.quant.sensitivity import allocate_bits

    sensitivity = {"a": 1.0, "b": 0.05, "c": 0.01, "d": 0.3}
    numel = {t: 100 for t in sensitivity}  # equal sizes: the greedy steps are optimal for this convex cost
    for budget in (2.5, 3, 4, 5.25):
        got = allocate_bits(sensitivity, numel, budget, min_bits=2, max_bits=8)

        def cost(bits):
            return sum(sensitivity[t] * 4.0 ** (4 - b) for t, b in zip(sensitivity, bits))

        feasible = [bits for bits in itertools.product(range(2, 9), repeat=4) if sum(bits) <= 4 * budget]
        best = min(feasible, key=cost)
        assert cost([got[t] for t in sensitivity]) == pytest.approx(cost(best)), (budget, got, best)
        assert sum(got.values()) / 4 <= budget and sum(got.values()) / 4 > budget - 0.25
        assert got["a"] == max(got.values()) and got["c"] == min(got.values())


def test_bn_batches_reestimate_batchnorm_statistics_of_the_quantized_model() -> None:
    x, y = _data(48, seed=4)
    train = DataLoader(TensorDataset(x, y), batch_size=16)  # unshuffled: the first 2 batches are known
    val = DataLoader(TensorDataset(x[:16], y[:16]), batch_size=16)
    kwargs = dict(method="trained", bits=8, weight_budget_bits=4, act_budget_bits=4, epochs=1, progress=False)
    torch.manual_seed(0)
    plain = quantize_model(_tiny_model(), train, val, **kwargs).model
    torch.manual_seed(0)
    qmodel = quantize_model(_tiny_model(), train, val, bn_batches=2, **kwargs).model
    norms = {name: m for name, m in qmodel.named_modules() if isinstance(m, nn.BatchNorm1d)}
    assert norms
    # Reference: each BN input's per-channel batch mean and unbiased variance, averaged over the 2 batches,
    # recorded by hooks on a copy running those batches in train mode (as the fine-tuned model sees them).
    probe = copy.deepcopy(qmodel).train()
    seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in norms}
    modules = dict(probe.named_modules())
    for name in norms:
        modules[name].register_forward_pre_hook(
            lambda m, args, name=name: seen[name].append((args[0].mean(dim=(0, 2)), args[0].var(dim=(0, 2)))))
    with torch.no_grad():
        for i in range(2):
            probe(x[16 * i:16 * (i + 1)])
    plain_norms = dict(plain.named_modules())
    for name, bn in norms.items():
        mean = torch.stack([m for m, _ in seen[name]]).mean(0)
        var = torch.stack([v for _, v in seen[name]]).mean(0)
        torch.testing.assert_close(bn.running_mean, mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_var, var, rtol=1e-4, atol=1e-5)
        assert bn.momentum == plain_norms[name].momentum  # restored after the re-estimation
    assert any(not torch.allclose(bn.running_mean, plain_norms[name].running_mean) for name, bn in norms.items())


def test_freeze_bn_fraction_stops_batchnorm_updates_for_that_last_fraction_of_the_steps() -> None:
    x, y = _data(48, seed=5)
    train = DataLoader(TensorDataset(x, y), batch_size=16)  # 3 batches: 6 optimizer steps in 2 epochs
    val = DataLoader(TensorDataset(x[:16], y[:16]), batch_size=16)
    kwargs = dict(method="trained", bits=8, weight_budget_bits=4, act_budget_bits=4, epochs=2, progress=False)

    def updates(fraction: float) -> tuple[int, nn.Module]:
        """BatchNorm updates (train-mode forwards counted by ``num_batches_tracked``) during quantize_model."""
        torch.manual_seed(0)
        model = _tiny_model()
        before = [int(m.num_batches_tracked) for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
        qmodel = quantize_model(model, train, val, freeze_bn_fraction=fraction, **kwargs).model
        after = [int(m.num_batches_tracked) for m in qmodel.modules() if isinstance(m, nn.BatchNorm1d)]
        assert before and len(set(a - b for a, b in zip(after, before))) == 1
        return after[0] - before[0], qmodel

    plain, half, whole = updates(0.0)[0], updates(0.5)[0], updates(1.0)
    assert plain - half == 3 and plain - whole[0] == 6  # 3 of the 6 steps, and all of them, ran with frozen BN
    float_norms = [m for m in prepare_model(_tiny_model()).modules() if isinstance(m, nn.BatchNorm1d)]
    frozen_norms = [m for m in whole[1].modules() if isinstance(m, nn.BatchNorm1d)]
    for reference, bn in zip(float_norms, frozen_norms):  # frozen from the first step: the float statistics
        torch.testing.assert_close(bn.running_mean, reference.running_mean)
        torch.testing.assert_close(bn.running_var, reference.running_var)
    with pytest.raises(ValueError, match="freeze_bn_fraction"):
        quantize_model(_tiny_model(), train, val, freeze_bn_fraction=1.5, **kwargs)
