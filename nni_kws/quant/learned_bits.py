# Learned bit-width quantization for NNI 3.0's compression framework (nni-kws).
# Licensed under the MIT license.

from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Sequence

import torch
from nni.compression.base.compressor import Compressor, Quantizer
from nni.compression.base.target_space import QuantizationTargetSpace, TargetType
from nni.compression.base.wrapper import ModuleWrapper
from nni.compression.utils import _EVALUATOR_DOCSTRING, Evaluator
from torch import Tensor

from . import apply_methods  # noqa: F401  (registers 'learned_bits' and 'int32_bias' with NNI)
from .bit_budget import BitBudgetMixin, bits_for_levels, is_signed, levels_for_bits, pinned_levels_name, qparams
from .ranges import RANGE_INITS, max_range, mse_range, percentile_range

__all__ = ["QPARAM_LR_SCALE", "LearnedBitwidthQuantizer", "levels_for_bits", "bits_for_levels", "mse_range",
           "max_range", "percentile_range", "RANGE_INITS"]

_logger = logging.getLogger(__name__)

#: Default rate of step sizes and ranges relative to the weights, chosen at 3-4 bits. With bit-widths moving to the
#: end, it drifted over long fine-tuning at 8 bits (benchmarks/results/quantize_e24.json); frozen (the default), it
#: holds there too (quantize_ft12_e24.json).
QPARAM_LR_SCALE = 60.0


class LearnedBitwidthQuantizer(BitBudgetMixin, Quantizer):
    __doc__ = r"""
    Quantizer that learns each target's bit-width, after `Mixed Precision DNNs: All you need is a good
    parametrization <https://arxiv.org/abs/1905.11452>`__ (Uhlich et al., ICLR 2020), parametrization U3.

    ..

        We show that a suitable parametrization of the quantizer is the key to achieve a stable training
        and a good final performance. Specifically, we propose to parametrize the quantizer with the step
        size and dynamic range. The bitwidth can then be inferred from them.

    Every target (weight or activation, per tensor, symmetric) gets a learned step size ``d`` and
    dynamic range ``q_max``; the forward pass is ``round(clip(x, -q_max, q_max) / d) * d`` (``[0, q_max]``
    for ``uint`` targets) with straight-through gradients, and the bit-width follows as
    ``b = ceil(log2(n + 1)) + 1`` (signed) or ``ceil(log2(n + 1))`` (unsigned) with ``n = round(q_max / d)``
    levels. After every optimizer step ``q_max / d`` is projected so that ``min_bits <= b <= max_bits``,
    where ``max_bits`` is the ``quant_dtype`` of the config (``'int8'`` → 8). On a target's first forward
    ``b`` is ``max_bits``, or ``ceil(budget)`` when a budget applies to it (so a short fine-tuning need not
    walk down from 8 bits), and ``q_max`` minimises the squared quantization error of the weight (or of
    the first batch) at that bit-width.
    A ``bias`` target (``'int32'``) is not learned: it is rounded to the layer's accumulator grid
    ``d_input * d_weight``, as integer engines (and onnxruntime's QDQ rewrite) add it.

    Memory budgets are hinge penalties added to the training loss through ``evaluator.patch_loss``:
    ``budget_weight * relu(avg_bits - budget)`` for the parameter-weighted average weight bits and the
    element-weighted average activation bits, where ``b`` is the integer bit-width in the forward pass
    and ``log2(q_max / d + 1)`` in the backward pass. ``d`` and ``q_max`` are learned in the log domain
    (positive, and updates are relative, whatever the tensor's scale); they are stored as
    ``<target>_step_param = log(d) / k`` and ``<target>_range_param = log(q_max) / k`` with
    ``k = qparam_lr_scale``, so that the optimizer (NNI adds quantizer parameters to the layer's
    parameter group, at the weights' learning rate) moves them ``k`` times faster than weights.

    Parameters
    ----------
    model
        Model to be quantized (plain torch layers: ``Conv1d``, ``Linear``, ...).
    config_list
        NNI compression config list; ``quant_dtype`` (``'intN'``, or ``'uintN'`` for non-negative
        activations) gives the maximum bit-width. ``quant_scheme`` must be symmetric and granularity per tensor.
    evaluator
        {evaluator_docstring}
    min_bits
        Lower bound of every learned bit-width (at least 2).
    weight_budget_bits, act_budget_bits
        Targets of the average bits per weight / per activation element (``None``: no penalty).
    budget_weight
        Multiplier ``λ`` of the budget penalties.
    budget_exclude
        Targets (``'<module>.<target>'``, e.g. the raw-audio input ``'frontend.0._input_0'``) left out of
        the budgets and :meth:`average_bits`; they start and usually stay at ``max_bits``.
    qparam_lr_scale
        ``k`` above: learning-rate multiplier of ``d`` and ``q_max`` relative to the weights.
    strict_budget
        After training, :meth:`project_to_budget` lowers bit-widths until the averages meet the budgets
        (else a violation is only logged, and :meth:`over_budget` reports it).
    hard_budget_after
        Also project after every optimizer step past this many steps, so that training adapts to the
        projected bit-widths before it ends (``None``: only at the end).
    freeze_bits
        With ``hard_budget_after``: project once at that step, then keep every bit-width fixed (levels
        ``n``, with ``q_max = n·d`` in the forward pass) and learn step sizes only, instead of projecting
        after every step (which can lower a different tensor each step while the penalty-free gradient
        raises another).
    initial_bits
        Starting bit-width per target (``'<module>.<target>'``), e.g. from
        :func:`~nni_kws.quant.sensitivity.allocate_bits`; others start as described above.
    sensitivity
        Loss sensitivity per target (``'<module>.<target>'``), which :meth:`project_to_budget` spares.
    fill_budget
        :meth:`project_to_budget` also raises the bit-widths that still fit under the budgets once they are met
        (whole bits per tensor leave the averages below them; ``False``: only lower).
    range_init
        How ``q_max`` starts: ``'mse'`` (least squared quantization error), ``'max'`` or ``'percentile'``.

    Examples
    --------
        >>> from nni_kws.quant import LearnedBitwidthQuantizer
        >>> config_list = [{{'op_types': ['Conv1d', 'Linear'], 'target_names': ['_input_', 'weight'],
        ...                 'quant_dtype': 'int8', 'quant_scheme': 'symmetric'}}]
        >>> quantizer = LearnedBitwidthQuantizer(model, config_list, evaluator, weight_budget_bits=4)
        >>> quantizer.track_forward(example_batch)          # initialise d and q_max from data
        >>> model, calibration_config = quantizer.compress(max_steps=None, max_epochs=5)
        >>> calibration_config['classifier']['weight']['quant_bits']
        3
    """.format(evaluator_docstring=_EVALUATOR_DOCSTRING)

    def __init__(self, model: torch.nn.Module, config_list: List[Dict], evaluator: Evaluator | None = None,
                 min_bits: int = 2, weight_budget_bits: float | None = None, act_budget_bits: float | None = None,
                 budget_weight: float = 1.0, budget_exclude: Sequence[str] = (),
                 qparam_lr_scale: float = QPARAM_LR_SCALE, range_init: str = "mse", strict_budget: bool = False,
                 hard_budget_after: int | None = None,
                 initial_bits: Dict[str, int] | None = None, sensitivity: Dict[str, float] | None = None,
                 freeze_bits: bool = False, fill_budget: bool = True,
                 existed_wrappers: Dict[str, ModuleWrapper] | None = None):
        super().__init__(model, config_list, evaluator, existed_wrappers=existed_wrappers)
        self.evaluator: Evaluator
        self.min_bits = min_bits
        self.weight_budget_bits, self.act_budget_bits = weight_budget_bits, act_budget_bits
        self.budget_weight, self.qparam_lr_scale = budget_weight, qparam_lr_scale
        self.budget_exclude = set(budget_exclude)
        self.range_init = range_init
        self.strict_budget, self.hard_budget_after = strict_budget, hard_budget_after
        self.initial_bits = dict(initial_bits or {})
        self.sensitivity = {k: max(float(v), 1e-9) for k, v in (sensitivity or {}).items()}
        self.steps_done = 0
        self.freeze_bits = freeze_bits
        self.fill_budget = fill_budget

        self.check_validation()
        self.register_qparams()
        self.register_learned_bits_apply_method()
        self.register_track_func()

    @classmethod
    def from_compressor(cls, compressor: Compressor, new_config_list: List[Dict], evaluator: Evaluator | None = None,
                        **kwargs: Any):
        return super().from_compressor(compressor, new_config_list, evaluator=evaluator, **kwargs)

    def _targets(self, bias: bool = False):
        """``(module_name, target_name, target_space)`` of the learned targets (and the int32 biases)."""
        for module_name, ts in self._target_spaces.items():
            for target_name, target_space in ts.items():
                if bias or target_name != "bias":
                    yield module_name, target_name, target_space

    def check_validation(self) -> None:
        """Errors (not warnings) for settings the U3 quantizer cannot honour."""
        if not isinstance(self.min_bits, int) or self.min_bits < 2:
            raise ValueError(f"min_bits must be an int >= 2, got {self.min_bits!r}")
        if self.budget_weight < 0 or self.qparam_lr_scale <= 0:
            raise ValueError("budget_weight must be >= 0 and qparam_lr_scale > 0")
        if self.range_init not in RANGE_INITS:
            raise ValueError(f"range_init must be one of {sorted(RANGE_INITS)}, got {self.range_init!r}")
        budgets = {"weight_budget_bits": self.weight_budget_bits, "act_budget_bits": self.act_budget_bits}
        for name, budget in budgets.items():
            if budget is not None and not budget > 0:
                raise ValueError(f"{name} must be a positive number of bits, got {budget!r}")
        if not self._target_spaces:
            raise ValueError("the config list selects no module of the model; check op_types / op_names")
        unknown = self.budget_exclude - {f"{m}.{t}" for m, t, _ in self._targets()}
        if unknown:
            raise ValueError(f"budget_exclude names no quantized target: {sorted(unknown)}")
        for module_name, target_name, target_space in self._targets(bias=True):
            where = f"{module_name}.{target_name}"
            if target_name == "bias":
                siblings = set(self._target_spaces[module_name])
                if target_space.quant_dtype != "int32" or not {"_input_0", "weight"} <= siblings:
                    raise ValueError(f"{where}: a bias is quantized as 'int32' at the scale of the layer's "
                                     "'_input_' and 'weight' targets, which must be quantized too")
                continue
            if target_space.quant_scheme not in (None, "symmetric"):
                raise ValueError(f"{where}: LearnedBitwidthQuantizer is symmetric (zero point 0), "
                                 f"got quant_scheme={target_space.quant_scheme!r}")
            if target_space.granularity not in (None, "default"):
                raise ValueError(f"{where}: only per-tensor granularity is supported, got {target_space.granularity!r}")
            if target_space.type is TargetType.PARAMETER and not is_signed(target_space):
                raise ValueError(f"{where}: parameters are signed, use an 'intN' quant_dtype")
            if target_space.quant_bits < self.min_bits:
                raise ValueError(f"{where}: quant_dtype {target_space.quant_dtype!r} allows fewer bits than "
                                 f"min_bits={self.min_bits}")

    def register_qparams(self):
        """Log-domain step size and range parameters on each wrapper (initialised on the first forward)."""
        for module_name, target_name, _ in self._targets():
            wrapper = self._module_wrappers[module_name]
            device = _device(wrapper, self.bound_model)
            wrapper._nni_kws_qparam_scale = self.qparam_lr_scale
            for kind in ("step", "range"):
                param = torch.nn.Parameter(torch.zeros(1, device=device))
                wrapper.register_parameter(f"{target_name}_{kind}_param", param)

    def register_learned_bits_apply_method(self):
        for _, target_name, target_space in self._targets(bias=True):
            target_space.apply_method = "int32_bias" if target_name == "bias" else "learned_bits"

    def register_track_func(self):
        for module_name in self._target_spaces:
            self._module_wrappers[module_name].register_track_func(self.init_qparams)

    def init_qparams(self, wrapper: ModuleWrapper, target_name: str, target: Tensor):
        """Track func: on a target's first forward, ``b`` from ``initial_bits``, else ``max_bits`` (or
        ``ceil(budget)``), and ``q_max`` from ``range_init`` (:data:`RANGE_INITS`)."""
        if not self.check_target(wrapper, target_name) or not isinstance(target, Tensor):
            return
        target_space = wrapper.quantization_target_spaces[target_name]
        if target_name == "bias":
            self._sync_bias(wrapper)
        if target_space.scale is not None or target_name == "bias":
            return
        signed = is_signed(target_space)
        budget = self._budget(wrapper.name, target_name, target_space)
        bits = target_space.quant_bits
        if budget is not None:
            bits = min(bits, max(self.min_bits, math.ceil(budget)))
        given = self.initial_bits.get(f"{wrapper.name}.{target_name}")
        if given is not None:
            bits = min(target_space.quant_bits, max(self.min_bits, int(given)))
        n_max = levels_for_bits(bits, signed)[1]
        qrange = RANGE_INITS[self.range_init](target.detach(), signed, n_max)
        k = self.qparam_lr_scale
        with torch.no_grad():
            getattr(wrapper, f"{target_name}_range_param").fill_(float(torch.log(qrange)) / k)
            getattr(wrapper, f"{target_name}_step_param").fill_(float(torch.log(qrange / n_max)) / k)
        self._sync(target_space)

    def _sync(self, target_space: QuantizationTargetSpace) -> None:
        """Mirror ``d`` and the integer range into NNI's buffers (scale, zero point, tracked min/max)."""
        with torch.no_grad():
            step, qrange = qparams(target_space)
            levels = torch.round(qrange / step)
            target_space.scale = step.detach().clone()
            target_space.zero_point = torch.zeros_like(step)
            target_space.tracked_max = levels * step
            target_space.tracked_min = -levels * step if is_signed(target_space) else torch.zeros_like(step)

    @staticmethod
    def _sync_bias(wrapper: ModuleWrapper) -> None:
        """The int32 bias target's scale ``d_input * d_weight``, once both are initialised."""
        targets = wrapper.quantization_target_spaces
        if "bias" in targets and targets["_input_0"].scale is not None and targets["weight"].scale is not None:
            with torch.no_grad():
                targets["bias"].scale = qparams(targets["_input_0"])[0] * qparams(targets["weight"])[0]
                targets["bias"].zero_point = torch.zeros_like(targets["bias"].scale)

    def project_qparams(self) -> None:
        """Keep ``min_bits <= b <= max_bits``: clamp ``q_max / d`` to the levels those bit-widths allow."""
        k = self.qparam_lr_scale
        with torch.no_grad():
            for module_name, target_name, target_space in self._targets():
                if target_space.scale is None:
                    continue
                wrapper = self._module_wrappers[module_name]
                step_param = getattr(wrapper, f"{target_name}_step_param")
                lo, hi = levels_for_bits(self.min_bits, is_signed(target_space))[0], \
                    levels_for_bits(target_space.quant_bits, is_signed(target_space))[1]
                getattr(wrapper, f"{target_name}_range_param").clamp_(step_param + math.log(lo) / k,
                                                                      step_param + math.log(hi) / k)
                self._sync(target_space)
            for wrapper in self._module_wrappers.values():
                self._sync_bias(wrapper)

    @torch.no_grad()
    def learned_bits(self) -> Dict[str, Dict[str, int]]:
        """``{module_name: {target_name: bits}}`` of the initialised targets."""
        out: Dict[str, Dict[str, int]] = {}
        for module_name, target_name, target_space in self._targets():
            if target_space.scale is not None:
                out.setdefault(module_name, {})[target_name] = int(self.target_bits(module_name, target_name))
        return out

    @torch.no_grad()
    def get_calibration_config(self) -> Dict[str, Dict[str, Dict[str, Tensor | Any]]]:
        """NNI's calibration config with the learned ``quant_bits`` / ``quant_dtype`` and integer ``qmin``/``qmax``."""
        calibration_config = super().get_calibration_config()
        for module_name, target_name, target_space in self._targets():
            if target_space.scale is None:
                continue
            step, qrange = qparams(target_space)
            levels = int(torch.round(qrange / step))
            signed = is_signed(target_space)
            bits = int(self.target_bits(module_name, target_name))
            calibration_config[module_name][target_name].update(
                quant_bits=bits, quant_dtype=f"{'' if signed else 'u'}int{bits}",
                qmin=-levels if signed else 0, qmax=levels)
        return calibration_config

    def patch_optimizer_param_group(self):
        module_name_param_dict = super().patch_optimizer_param_group()
        for module_name, target_name, _ in self._targets():
            wrapper = self._module_wrappers[module_name]
            module_name_param_dict.setdefault(module_name, []).extend(
                [getattr(wrapper, f"{target_name}_step_param"), getattr(wrapper, f"{target_name}_range_param")])
        return module_name_param_dict

    def _after_step(self) -> None:
        self.project_qparams()
        self.steps_done += 1
        if self.hard_budget_after is not None and self.steps_done > self.hard_budget_after:
            if not self.freeze_bits:
                self.project_to_budget()
            elif self.frozen_levels() is None:  # once frozen, the pins hold the levels (q_max = n·d)
                self.project_to_budget()
                self._pin_levels(self._levels())

    def frozen_levels(self) -> Dict[str, int] | None:
        """``{'<module>.<target>': n}`` of the pinned targets (``freeze_bits``); None before the freeze."""
        pinned = {f"{m}.{t}": getattr(self._module_wrappers[m], pinned_levels_name(t), None)
                  for m, t, _ in self._targets()}
        return {key: n for key, n in pinned.items() if n is not None} or None

    def restore_frozen_levels(self, levels: Dict[str, int] | None) -> None:
        """Resume with the levels a checkpointed run had frozen (None: not frozen yet); the parameters are the
        checkpoint's (a pinned range parameter, unused, still drifts with Adam's momentum: resetting it to
        ``n · d`` would part the resumed run from the uninterrupted one)."""
        if levels is not None:
            self._pin_levels(levels, reset_range=False)

    @torch.no_grad()
    def _levels(self) -> Dict[str, int]:
        """``{'<module>.<target>': n}``: the positive levels ``round(q_max / d)`` of every initialised target."""
        out = {}
        for module_name, target_name, target_space in self._targets():
            if target_space.scale is not None:
                step, qrange = qparams(target_space)
                out[f"{module_name}.{target_name}"] = int(torch.round(qrange / step))
        return out

    @torch.no_grad()
    def _pin_levels(self, levels: Dict[str, int], reset_range: bool = True) -> None:
        """Pin ``q_max = n · d`` with the given ``n``: the grid keeps its bit-width, only its step size moves.

        The forward pass ties them (:func:`~.bit_budget.qparams`), so ``d`` learns from the clipped values as
        well as from the rounding, as LSQ's one scale does; the range parameter, unused while pinned, is set to
        ``n · d`` here so that it reads as the grid it stood for."""
        k = self.qparam_lr_scale
        for module_name, target_name, target_space in self._targets():
            n = levels.get(f"{module_name}.{target_name}")
            if n is not None:
                wrapper = self._module_wrappers[module_name]
                setattr(wrapper, pinned_levels_name(target_name), n)
                if reset_range:
                    getattr(wrapper, f"{target_name}_range_param").copy_(
                        getattr(wrapper, f"{target_name}_step_param") + math.log(n) / k)
                self._sync(target_space)
        for wrapper in self._module_wrappers.values():
            self._sync_bias(wrapper)

    def register_trigger(self, evaluator: Evaluator):
        evaluator.patch_optimizer_step(before_step_tasks=[], after_step_tasks=[self._after_step])

    def register_budget(self, evaluator: Evaluator):
        if self.weight_budget_bits is None and self.act_budget_bits is None:
            return
        evaluator.patch_loss(lambda loss, batch: loss + self.budget_penalty())

    def _single_compress(self, max_steps: int | None, max_epochs: int | None):
        self._fusion_compress(max_steps, max_epochs)

    def _fuse_preprocess(self, evaluator: Evaluator) -> None:
        module_name_param_dict = self.patch_optimizer_param_group()
        if len(module_name_param_dict) > 0:
            evaluator.patch_optim_param_group(module_name_param_dict)
        self.register_trigger(evaluator)
        self.register_budget(evaluator)

    def _fuse_postprocess(self, evaluator: Evaluator) -> None:
        self.project_qparams()
        if self.strict_budget:
            self.project_to_budget()
        violated = self.over_budget()
        if violated:
            _logger.warning("BUDGET VIOLATED: average bits %s exceed the budgets (weight %s, activation %s); "
                            "strict_budget=True projects them", violated, self.weight_budget_bits, self.act_budget_bits)


def _device(wrapper: ModuleWrapper, model: torch.nn.Module) -> torch.device:
    for tensor in (*wrapper.parameters(), *wrapper.buffers(), *model.parameters()):
        return tensor.device
    return torch.device("cpu")
