"""``quantize_model``: learned or fixed bit-width quantization of a trained frozen model, with report and ONNX."""
from __future__ import annotations

import copy
import functools
import json
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import nni
import torch
import torch.nn.functional as F
from nni.compression import TorchEvaluator
from nni.compression.base.compressor import Quantizer
from nni.compression.distillation import DynamicLayerwiseDistiller
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from nni_kws.search.recalibrate import calibration_batches, recalibrate_bn
from nni_kws.training import TrainingDiverged, accuracy, distillation_loss

from .checkpoint import EpochCheckpoint, loader_seed, model_digest
from .export import deploy_model, export_onnx, onnx_agreement
from .fixed import FIXED_QUANTIZERS, fixed_quantizer
from .learned_bits import QPARAM_LR_SCALE, LearnedBitwidthQuantizer
from .prepare import biased_layers, config_list, input_layers, output_layer, prepare_model, unsigned_inputs
from .report import bit_report
from .sensitivity import sensitivity_bits

__all__ = ["METHODS", "QuantResult", "TrainingDiverged", "check_args", "quantize_model", "tune_lr", "make_evaluator",
           "float_fine_tune"]

_logger = logging.getLogger(__name__)

METHODS = ("trained", "fixed")


@dataclass
class QuantResult:
    """What :func:`quantize_model` returns."""
    model: nn.Module  #: the fake-quant model (NNI-wrapped, eval mode)
    report: dict[str, Any]  #: JSON-able: per-layer bits, averages, sizes, accuracies, ONNX check
    onnx_path: Path | None  #: the QDQ ONNX file (``None`` without ``out_dir``)
    quantizer: Quantizer = field(repr=False)  #: the NNI quantizer (calibration config, learned bits)
    float_model: nn.Module = field(repr=False)  #: the float model it started from (SincConv baked, BN folded)


def _training_step(batch: Any, model: nn.Module) -> torch.Tensor:
    x, y = batch
    device = next(model.parameters()).device
    return F.cross_entropy(model(x.to(device)), y.to(device))


def _training_func(model: nn.Module, optimizers: torch.optim.Optimizer, training_step: Callable,
                   lr_schedulers: Any = None, max_steps: int | None = None, max_epochs: int | None = None, *,
                   loader: DataLoader, progress: bool, status: Callable[[], dict[str, Any]],
                   checkpoint: EpochCheckpoint | None = None, freeze_bn_after: int | None = None) -> None:
    """NNI ``training_func``: stops at ``max_steps`` or after ``max_epochs``, whichever comes first;
    with ``checkpoint``, saves after every epoch and starts from the saved state when resuming. From step
    ``freeze_bn_after`` on, BatchNorm normalises with its running statistics and stops updating them."""
    if max_steps is None and max_epochs is None:
        raise ValueError("give max_steps or max_epochs")
    epochs = max_epochs if max_epochs is not None else math.ceil(max_steps / len(loader))
    first, step = checkpoint.load(model, optimizers, lr_schedulers, loader) if checkpoint else (0, 0)
    if max_steps is not None and step >= max_steps:
        return
    with warnings.catch_warnings():
        # NNI patches optimizer.step after the scheduler wrapped it; torch then warns, wrongly, about the call order.
        warnings.filterwarnings("ignore", message=r"Seems like `optimizer.step\(\)` has been overridden")
        for epoch in range(first, epochs):
            model.train()
            bn_frozen = False  # model.train() above undid an earlier epoch's freeze
            total, count = 0.0, 0
            bar = tqdm(loader, desc=f"quantize epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
            for batch in bar:
                if not bn_frozen and freeze_bn_after is not None and step >= freeze_bn_after:
                    freeze_batchnorm(model)
                    bn_frozen = True
                optimizers.zero_grad()
                loss = training_step(batch, model)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(f"quantization-aware training diverged (loss {float(loss.detach())} at "
                                           f"epoch {epoch + 1}, step {step + 1}); try a lower learning rate")
                loss.backward()
                optimizers.step()
                if lr_schedulers is not None:
                    lr_schedulers.step()
                step, total, count = step + 1, total + float(loss.detach()), count + 1
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", **status())
                if max_steps is not None and step >= max_steps:
                    break
            _logger.info("quantize epoch %d/%d: loss %.4f %s", epoch + 1, epochs, total / max(count, 1),
                         " ".join(f"{k}={v}" for k, v in status().items()))
            if checkpoint is not None:
                checkpoint.save(epoch + 1, step, model, optimizers, lr_schedulers, loader)
            if max_steps is not None and step >= max_steps:
                return


def freeze_batchnorm(model: nn.Module) -> None:
    """BatchNorm layers to eval mode inside a training model: they normalise with, and keep, their running
    statistics. Late in quantization-aware training this removes the batch-to-batch jitter of the statistics and
    trains the network as it will be evaluated (Jacob et al. 2018, "Quantization and Training of Neural Networks
    for Efficient Integer-Arithmetic-Only Inference", section 3.2; Krishnamoorthi 2018, section 3.2.1)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            module.eval()


def make_evaluator(model: nn.Module, train_loader: DataLoader, *, lr: float, steps: int, progress: bool = True,
                   status: Callable[[], dict[str, Any]] = dict, checkpoint: EpochCheckpoint | None = None,
                   freeze_bn_after: int | None = None) -> TorchEvaluator:
    """NNI ``TorchEvaluator``: traced Adam (no weight decay: it would pull log step sizes to 0) + cosine schedule."""
    optimizer = nni.trace(torch.optim.Adam)(model.parameters(), lr=lr)
    scheduler = nni.trace(torch.optim.lr_scheduler.CosineAnnealingLR)(optimizer, T_max=max(1, steps))
    train = functools.partial(_training_func, loader=train_loader, progress=progress, status=status,
                              checkpoint=checkpoint, freeze_bn_after=freeze_bn_after)
    return TorchEvaluator(train, optimizer, _training_step, lr_schedulers=scheduler)


def check_args(method: str, bits: int, min_bits: int, weight_budget_bits: float | None, act_budget_bits: float | None,
               budget_weight: float, epochs: int | None, max_steps: int | None, lr: float, fixed_algorithm: str,
               input_bits: int | None, distill: float, hard_budget_fraction: float = 0.75,
               init_bits: str = "sensitivity", freeze_bn_fraction: float = 0.0,
               loaders: Mapping[str, DataLoader | None] | None = None, names: Mapping[str, str] | None = None) -> None:
    """Refuse invalid :func:`quantize_model` arguments, each error naming the argument (as ``names`` calls it: the
    CLI passes its option names, so that it can check before loading anything)."""
    def n(arg: str) -> str:
        return (names or {}).get(arg, arg)

    if method not in METHODS:
        raise ValueError(f"{n('method')} must be one of {METHODS}, got {method!r}")
    for name, value in (("bits", bits), ("input_bits", input_bits)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 8):
            raise ValueError(f"{n(name)} must be an int in 2..8, got {value!r}")
    if bits is None:
        raise ValueError(f"{n('bits')} must be an int in 2..8, got None")
    if epochs is None and max_steps is None:
        raise ValueError(f"give {n('epochs')} or {n('max_steps')}")
    for name, value in (("epochs", epochs), ("max_steps", max_steps)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{n(name)} must be a positive int, got {value!r}")
    if not lr > 0:
        raise ValueError(f"{n('lr')} must be > 0, got {lr!r}")
    if not distill >= 0:
        raise ValueError(f"{n('distill')} must be >= 0, got {distill!r}")
    if init_bits not in ("sensitivity", "budget"):
        raise ValueError(f"{n('init_bits')} must be 'sensitivity' or 'budget', got {init_bits!r}")
    for name, fraction in (("hard_budget_fraction", hard_budget_fraction), ("freeze_bn_fraction", freeze_bn_fraction)):
        if not 0 <= fraction <= 1:
            raise ValueError(f"{n(name)} must be in [0, 1], got {fraction!r}")
    if method == "fixed":
        if weight_budget_bits is not None or act_budget_bits is not None:
            raise ValueError(f"bit budgets ({n('weight_budget_bits')}, {n('act_budget_bits')}) only apply to "
                             f"{n('method')} trained (fixed uses {n('bits')} everywhere)")
        if fixed_algorithm not in FIXED_QUANTIZERS:
            raise ValueError(f"{n('fixed_algorithm')} must be one of {sorted(FIXED_QUANTIZERS)}, "
                             f"got {fixed_algorithm!r}")
    else:
        if not isinstance(min_bits, int) or not 2 <= min_bits <= bits:
            raise ValueError(f"{n('min_bits')} must be an int in 2..{n('bits')}={bits}, got {min_bits!r}")
        for name, budget in (("weight_budget_bits", weight_budget_bits), ("act_budget_bits", act_budget_bits)):
            if budget is not None and not min_bits <= budget <= bits:
                raise ValueError(f"{n(name)}={budget!r} is outside [{n('min_bits')}, {n('bits')}] "
                                 f"= [{min_bits}, {bits}]")
        if input_bits is not None and input_bits < min_bits:
            raise ValueError(f"{n('input_bits')}={input_bits} is below {n('min_bits')}={min_bits}")
        if not budget_weight >= 0:
            raise ValueError(f"{n('budget_weight')} must be >= 0, got {budget_weight!r}")
    for name, loader in (loaders or {}).items():
        if loader is not None and len(loader) == 0:
            raise ValueError(f"{name} is empty")


def _fine_tune(quantizer: Quantizer, float_model: nn.Module, example: torch.Tensor, distill: float,
               max_steps: int | None, epochs: int | None) -> None:
    """``quantizer.compress``, fused with NNI's logit distiller (KL to the float model, T = 2) when ``distill``."""
    if not distill:
        quantizer.compress(max_steps, epochs)
        return
    device = example.device
    distiller = DynamicLayerwiseDistiller.from_compressor(
        quantizer, [{"op_names": [output_layer(float_model, example)], "target_names": ["_output_"],
                     "lambda": distill, "apply_method": "kl"}],
        teacher_model=copy.deepcopy(float_model).eval(),
        teacher_predict=lambda batch, model: model(batch[0].to(device)))
    distiller.compress(max_steps, epochs)
    distiller.unwrap_teacher_model()
    distiller.unwrap_model()  # hand the shared wrappers back to the quantizer
    quantizer.wrap_model()


def quantize_model(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader, *, method: str = "trained",
                   bits: int = 8, weight_budget_bits: float | None = None, act_budget_bits: float | None = None,
                   budget_weight: float = 1.0, min_bits: int = 2, epochs: int | None = 3, max_steps: int | None = None,
                   lr: float = 1e-3, distill: float = 1.0, fixed_algorithm: str = "qat", input_bits: int | None = None,
                   fold_bn: bool = False, qparam_lr_scale: float = QPARAM_LR_SCALE, range_init: str = "mse",
                   strict_budget: bool = True, hard_budget_fraction: float = 0.75, freeze_bits: bool = True,
                   fill_budget: bool = True, init_bits: str = "sensitivity", freeze_bn_fraction: float = 0.0,
                   bn_batches: int = 0, checkpoint_dir: str | Path | None = None, resume: bool = False,
                   out_dir: str | Path | None = None, test_loader: DataLoader | None = None,
                   extra_loaders: Mapping[str, DataLoader] | None = None,
                   float_accuracy: Mapping[str, float] | None = None, progress: bool = True) -> QuantResult:
    """Quantize a trained frozen model (weights and inputs of every ``Conv1d``/``Linear``) by fine-tuning.

    ``method='trained'``: :class:`~nni_kws.quant.LearnedBitwidthQuantizer`, bit-widths learned in
    ``[min_bits, bits]`` under the optional budgets (average bits per weight / per activation) with
    penalty weight ``budget_weight``. ``method='fixed'``: NNI's QAT (``fixed_algorithm='qat'``) or LSQ
    quantizer at ``bits`` everywhere. Both fine-tune with Adam at ``lr`` and a cosine schedule for
    ``epochs`` epochs (or ``max_steps`` steps) on cross-entropy plus ``distill`` times the KL divergence
    to the float model's logits (NNI's ``DynamicLayerwiseDistiller`` fused with the quantizer; 0: off).
    BN stays float and unfolded unless ``fold_bn`` (as in the ICPR code; folding it into the convs
    before per-tensor quantization costs much accuracy at 4 bits). The raw waveform, where the first
    layer reads it, is left float by default (``None``: the microphone's 16-bit PCM), or quantized at
    ``input_bits`` (int8 containers: 8 bits at most, which loses the quiet parts of a clip ahead of the
    SincConv's log compression); it is the sensor's format, not an activation: outside the budgets and
    the averages. The input model is not modified.

    Budgets are met (``strict_budget``, the default): once the first ``1 - hard_budget_fraction`` of the
    optimizer steps have chosen the bit-widths, they are lowered until both averages are within their budgets
    (:meth:`~nni_kws.quant.LearnedBitwidthQuantizer.project_to_budget`; ``fill_budget``, the default: then
    those that still fit under the budgets are raised again) and, with ``freeze_bits`` (the default), kept for
    the rest: the levels stay pinned while the step sizes go on learning. Without ``freeze_bits`` they are
    projected after every step of that last part instead (and at the end). With ``strict_budget=False`` a
    violation is only logged and reported (``report['budget_violation']``). ``qparam_lr_scale`` and
    ``range_init`` are passed to the quantizer: ``lr`` is the weights' rate and the (log-domain) step
    sizes and ranges move ``qparam_lr_scale`` times faster, because a trained model's weights want small
    steps (a large weight rate costs accuracy even at 8 bits, where nothing needs to adapt) while the
    grids must move far from their initialisation at low bit-widths. ``init_bits``: learned bit-widths start where a
    per-tensor PTQ sensitivity on the first batch spends the budget (``'sensitivity'``, the default:
    :func:`~nni_kws.quant.sensitivity.sensitivity_bits`; the projection then spares the sensitive
    tensors too), or at ``ceil(budget)`` everywhere (``'budget'``).

    ``freeze_bn_fraction``: for that last fraction of the optimizer steps BatchNorm uses and keeps its running
    statistics (:func:`freeze_batchnorm`; 0: batch statistics throughout).

    ``bn_batches``: after fine-tuning, BatchNorm running statistics are re-estimated (plain average) over
    that many training batches through the quantized network (0: keep the statistics that fine-tuning
    accumulated with momentum, partly from earlier, different quantization grids).

    Per-epoch checkpoints go to ``checkpoint_dir`` (default ``<out_dir>/checkpoints``; none without
    either); ``resume=True`` continues from the last one (a finished run resumes to its end without
    training), which gives the uninterrupted run's result; a checkpoint of other settings is refused.

    Accuracy before (float) and after (fake-quant) is measured on ``val_loader``, ``test_loader`` and
    every ``extra_loaders`` entry (``float_accuracy``: the float accuracies per loader name, when already
    known, to skip measuring them again). With ``out_dir``: ``model_qdq.onnx`` (QDQ int8, checked against the
    fake-quant model with onnxruntime on the test set, else the validation set) and ``quant_report.json``.
    """
    loaders = {"val": val_loader, "test": test_loader, **(extra_loaders or {})}
    check_args(method, bits, min_bits, weight_budget_bits, act_budget_bits, budget_weight, epochs, max_steps, lr,
               fixed_algorithm, input_bits, distill, hard_budget_fraction, init_bits, freeze_bn_fraction,
               {"train_loader": train_loader, **loaders})
    start = time.monotonic()
    float_model = prepare_model(model, fold_bn)
    device = next(float_model.parameters()).device
    before = {name: float_accuracy[name] if float_accuracy and name in float_accuracy else accuracy(float_model, loader)
              for name, loader in loaders.items() if loader is not None}
    example = next(iter(train_loader))[0].to(device)
    raw = input_layers(float_model, example)
    if input_bits is not None and not raw:
        _logger.warning("input_bits=%d has no effect: no quantized layer reads the raw waveform (a feature front end, "
                        "such as MFCC, comes first)", input_bits)
    model_inputs = [f"{name}._input_0" for name in raw] if input_bits is not None else []

    qmodel = copy.deepcopy(float_model)
    steps = min(s for s in (max_steps, epochs and epochs * len(train_loader)) if s)
    status: dict[str, Callable[[], dict[str, Any]]] = {"fn": dict}
    if checkpoint_dir is None and out_dir is not None:
        checkpoint_dir = Path(out_dir) / "checkpoints"
    settings = dict(method=method, bits=bits, weight_budget_bits=weight_budget_bits, act_budget_bits=act_budget_bits,
                    budget_weight=budget_weight, min_bits=min_bits, epochs=epochs, max_steps=max_steps, lr=lr,
                    distill=distill, fixed_algorithm=fixed_algorithm, input_bits=input_bits, fold_bn=fold_bn,
                    qparam_lr_scale=qparam_lr_scale, range_init=range_init, strict_budget=strict_budget,
                    hard_budget_fraction=hard_budget_fraction, init_bits=init_bits, train_batches=len(train_loader),
                    bn_batches=bn_batches, freeze_bits=freeze_bits, fill_budget=fill_budget,
                    freeze_bn_fraction=freeze_bn_fraction, float_model=model_digest(float_model),
                    data_seed=loader_seed(train_loader))
    checkpoint = EpochCheckpoint(Path(checkpoint_dir), settings, resume) if checkpoint_dir is not None else None
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint_dir (or out_dir, whose checkpoints/ folder is used)")
    freeze_bn_after = math.floor((1 - freeze_bn_fraction) * steps) if freeze_bn_fraction else None
    evaluator = make_evaluator(qmodel, train_loader, lr=lr, steps=steps, progress=progress,
                               status=lambda: status["fn"](), checkpoint=checkpoint, freeze_bn_after=freeze_bn_after)
    unsigned = unsigned_inputs(float_model, example)
    initial_bits, sensitivity = None, None
    if method == "trained" and init_bits == "sensitivity" and (weight_budget_bits or act_budget_bits):
        initial_bits, sensitivity = sensitivity_bits(
            float_model, example, {"weight": weight_budget_bits, "activation": act_budget_bits}, min_bits, bits,
            exclude=[f"{name}._input_0" for name in raw], range_init=range_init)
    int32_bias = [n for n in biased_layers(float_model) if input_bits or n not in raw]
    if method == "trained":
        configs = config_list(unsigned, bits, input_layers=raw, input_bits=input_bits, int32_bias=int32_bias)
        quantizer: Quantizer = LearnedBitwidthQuantizer(
            qmodel, configs, evaluator, min_bits=min_bits, weight_budget_bits=weight_budget_bits,
            act_budget_bits=act_budget_bits, budget_weight=budget_weight, budget_exclude=model_inputs,
            qparam_lr_scale=qparam_lr_scale, range_init=range_init, strict_budget=strict_budget,
            initial_bits=initial_bits, sensitivity=sensitivity, freeze_bits=freeze_bits, fill_budget=fill_budget,
            hard_budget_after=math.floor((1 - hard_budget_fraction) * steps) if strict_budget else None)
        quantizer.track_forward(example)  # initialise step sizes and ranges from a real batch
        if checkpoint is not None:
            checkpoint.extra["quantizer_steps"] = (lambda: quantizer.steps_done,
                                                   lambda n: setattr(quantizer, "steps_done", n))
            checkpoint.extra["frozen_levels"] = (quantizer.frozen_levels, quantizer.restore_frozen_levels)
        status["fn"] = lambda: {f"{kind[0]}_bits": f"{float(quantizer.average_bits(kind).detach()):.2f}"
                                for kind in ("weight", "activation")}
    else:
        quantizer = fixed_quantizer(qmodel, unsigned, bits, evaluator, fixed_algorithm, input_layers=raw,
                                    input_bits=input_bits, int32_bias=int32_bias)
        for name in ("is_init", "current_step"):  # NNI's LSQ: scales initialised (else redone); QAT: steps counted
            if checkpoint is not None and hasattr(quantizer, name):
                checkpoint.extra[name] = (functools.partial(getattr, quantizer, name),
                                          functools.partial(setattr, quantizer, name))
    _fine_tune(quantizer, float_model, example, distill, max_steps, epochs)
    if bn_batches:  # running statistics of the quantized network, not a blend of the whole fine-tuning
        recalibrate_bn(qmodel, calibration_batches(train_loader, bn_batches))
    qmodel.eval()
    with torch.no_grad():
        qmodel(example)  # record activation shapes of this model for the report

    report: dict[str, Any] = {
        "method": method, "bits": bits, "input_bits": input_bits, "fold_bn": fold_bn,
        **({"min_bits": min_bits, "weight_budget_bits": weight_budget_bits, "act_budget_bits": act_budget_bits,
            "budget_weight": budget_weight, "qparam_lr_scale": qparam_lr_scale, "range_init": range_init,
            "strict_budget": strict_budget, "init_bits": init_bits, "freeze_bits": freeze_bits,
            "fill_budget": fill_budget,
            **({"initial_bits": initial_bits, "sensitivity_kl_at_4_bits": sensitivity} if initial_bits else {})}
           if method == "trained" else {"fixed_algorithm": fixed_algorithm}),
        "epochs": epochs, "max_steps": max_steps, "lr": lr, "distill": distill, "bn_batches": bn_batches,
        "freeze_bn_fraction": freeze_bn_fraction,
        "accuracy": {name: {"before": before[name], "after": accuracy(qmodel, loader)}
                     for name, loader in loaders.items() if loader is not None},
        **bit_report(quantizer, float_model, model_inputs),
    }
    if method == "trained":
        budgets = {"weight": weight_budget_bits, "activation": act_budget_bits}
        violated = {kind: report[f"avg_bits_per_{kind}"] for kind, budget in budgets.items()
                    if budget is not None and report[f"avg_bits_per_{kind}"] > budget + 1e-9}
        report["budget_met"] = not violated
        if violated and strict_budget:  # the projection guarantees it; this would be a bug
            raise RuntimeError(f"strict budget not met after projection: {violated} vs {budgets}")
        if violated:
            _logger.warning("BUDGET VIOLATED (strict_budget=False): average bits %s exceed budgets %s", violated,
                            budgets)
            report["budget_violation"] = violated
    onnx_path = None
    if out_dir is not None:
        out_dir = Path(out_dir)
        onnx_path = export_onnx(deploy_model(quantizer), out_dir / "model_qdq.onnx", example[:1].cpu())
        checked_on = "test" if test_loader is not None else "val"
        report["onnx"] = {"path": onnx_path.name, "bytes": onnx_path.stat().st_size, "checked_on": checked_on,
                          **onnx_agreement(qmodel, onnx_path, loaders[checked_on])}
    report["time_s"] = round(time.monotonic() - start, 1)
    if out_dir is not None:
        (out_dir / "quant_report.json").write_text(json.dumps(report, indent=2) + "\n")
    _logger.info("quantized (%s): %.2f bits/weight, %.2f bits/activation, val accuracy %.4f -> %.4f", method,
                 report["avg_bits_per_weight"], report["avg_bits_per_activation"],
                 report["accuracy"]["val"]["before"], report["accuracy"]["val"]["after"])
    return QuantResult(qmodel, report, onnx_path, quantizer, float_model)


def float_fine_tune(model: nn.Module, train_loader: DataLoader, *, epochs: int, lr: float, distill: float = 1.0,
                    progress: bool = True) -> nn.Module:
    """:func:`quantize_model`'s fine-tuning without quantizers (same preparation, Adam, cosine schedule, and
    cross-entropy plus ``distill`` times NNI's logit KL at T = 2 to the starting model): the control that tells
    what the fine-tuning itself gains from what quantization costs. Returns the fine-tuned copy (eval mode)."""
    teacher = prepare_model(model).eval()
    student = copy.deepcopy(teacher)
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs * len(train_loader)))

    def step(batch: Any, model: nn.Module) -> torch.Tensor:
        x = batch[0].to(next(model.parameters()).device)
        logits = model(x)
        loss = F.cross_entropy(logits, batch[1].to(x.device))
        if distill:
            with torch.no_grad():
                target = teacher(x)
            loss = loss + distill * distillation_loss(logits, target, 2.0)
        return loss

    _training_func(student, optimizer, step, scheduler, max_epochs=epochs, loader=train_loader, progress=progress,
                   status=dict)
    return student.eval()


def tune_lr(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader, lrs: Sequence[float],
            **kwargs: Any) -> tuple[float, dict[float, float | None]]:
    """The learning rate among ``lrs`` whose :func:`quantize_model` run (``kwargs``) ends with the best
    accuracy on ``val_loader`` (a validation split: never the data reported on), and every rate's
    accuracy (``None`` where training diverged); ties go to the first rate."""
    if not lrs:
        raise ValueError("lrs is empty")
    scores: dict[float, float | None] = {}
    for lr in lrs:
        seed = torch.initial_seed()
        try:
            report = quantize_model(model, train_loader, val_loader, lr=lr, **kwargs).report
            scores[lr] = report["accuracy"]["val"]["after"]
        except TrainingDiverged:
            scores[lr] = None
        torch.manual_seed(seed)  # every rate starts from the same random state
    finite = {lr: acc for lr, acc in scores.items() if acc is not None}
    if not finite:
        raise TrainingDiverged(f"training diverged at every learning rate {list(lrs)}")
    best = max(finite, key=lambda lr: (finite[lr], -list(lrs).index(lr)))
    _logger.info("tuned lr: %s (val accuracy per lr: %s)", best, scores)
    return best, scores
