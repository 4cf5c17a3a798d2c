"""A hardware-aware NNI tuner: any built-in tuner, with architectures over budget rejected or penalised.

NNI's HPO tuners know nothing about model cost, and ``nnictl`` cannot run NAS strategies with
their ``Filter`` middleware. :class:`HardwareAwareTuner` wraps a built-in tuner (TPE, Random,
Evolution, GridSearch, ...) and prices every sample with the analytic cost model of nni-kws:

- ``mode: reject`` (default): an over-budget sample never becomes a trial. The inner tuner is told
  it scored ``reward_for_invalid`` (as ``Filter(metric_for_invalid=...)`` does for NAS), so
  model-based tuners learn to avoid that region, and is asked again (up to ``max_tries`` times).
- ``mode: penalize``: every sample runs, but the inner tuner learns from
  ``reward − penalty_scale · Σ max(0, cost/budget − 1)``; the web UI still shows the true accuracy.

Register it once with ``nnictl algo register --meta examples/nnictl/meta.yml`` and use
``tuner: {name: KwsHardwareAware, classArgs: {...}}`` (see ``examples/nnictl/hardware_aware.yml``).
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

import nni
from nni.tools.package_utils import config_manager
from nni.tools.package_utils.tuner_factory import create_builtin_class_instance, create_validator_instance
from nni.tuner import Tuner
from nni.utils import ClassArgsValidator, OptimizeMode, extract_scalar_reward
from schema import And, Optional, Or, Schema

# Light imports only: NNI's dispatcher builds this tuner before it connects to the manager, and
# gives up after 10 s; the cost model, the space and training code (torch) are imported on first use.
from nni_kws.cost.budgets import budget_penalty, over_budget, parse_budgets, require_lut

__all__ = ["HardwareAwareTuner", "HardwareAwareClassArgsValidator"]

_logger = logging.getLogger(__name__)

MODES = ("reject", "penalize")


def _inner_meta(name: str) -> Any:
    """The registry entry of a built-in tuner; advisors (Hyperband, BOHB) cannot be wrapped."""
    meta = config_manager.get_algo_meta(name)
    if meta is None or meta.algo_type != "tuner":
        raise ValueError(f"unknown tuner {name!r} (see `nnictl algo list`)")
    if meta.is_advisor:
        raise ValueError(f"{name} is an advisor (it drives trials itself) and cannot be wrapped; "
                         "use TPE, Random, Evolution, GridSearch, ...")
    if meta.class_name.rsplit(".", 1)[-1] == HardwareAwareTuner.__name__:
        raise ValueError("HardwareAwareTuner cannot wrap itself")
    return meta


def _inner_args(name: str, tuner_args: Mapping[str, Any] | None, optimize_mode: str) -> dict[str, Any]:
    """Class arguments of the inner tuner: ``optimize_mode`` is passed on unless the tuner takes no args."""
    meta = _inner_meta(name)
    if not meta.accept_class_args:
        if tuner_args:
            raise ValueError(f"tuner {name} takes no class arguments, got {dict(tuner_args)}")
        return {}
    return {"optimize_mode": optimize_mode, **(tuner_args or {})}


class HardwareAwareClassArgsValidator(ClassArgsValidator):
    """Checks the ``classArgs`` of :class:`HardwareAwareTuner` (and those of the wrapped tuner)."""

    def validate_class_args(self, **kwargs: Any) -> None:
        from nni_kws.space import space_by_name

        self.check_light(**kwargs)
        space_by_name(kwargs.get("preset", "small"))  # raises naming an unknown preset or front end

    def check_light(self, **kwargs: Any) -> None:
        """Every check that does not build the space (which imports torch: the tuner must connect
        to the NNI manager within 10 s of starting, so it builds the space later)."""
        Schema({
            Optional("tuner"): str,
            Optional("tuner_args"): dict,
            Optional("preset"): str,
            Optional("budgets"): {Optional(str): Or(int, float)},
            Optional("mode"): self.choices("mode", *MODES),
            Optional("optimize_mode"): self.choices("optimize_mode", "maximize", "minimize"),
            Optional("penalty_scale"): And(Or(int, float), lambda x: x >= 0, error="penalty_scale must be >= 0"),
            Optional("reward_for_invalid"): Or(int, float),
            Optional("max_tries"): self.range("max_tries", int, 1, 1_000_000),
            Optional("lut"): Or(str, None),
            Optional("num_classes"): self.range("num_classes", int, 3, 1_000_000),
        }).validate(kwargs)
        require_lut(parse_budgets(kwargs.get("budgets")), kwargs.get("lut"))
        name = kwargs.get("tuner", "TPE")
        args = _inner_args(name, kwargs.get("tuner_args"), kwargs.get("optimize_mode", "maximize"))
        validator = create_validator_instance("tuners", name)
        if validator is not None:
            validator.validate_class_args(**args)


class HardwareAwareTuner(Tuner):
    """Wrap the built-in tuner ``tuner`` and keep architectures within ``budgets``.

    Parameters
    ----------
    tuner, tuner_args
        Built-in name of the wrapped tuner and its class arguments (``optimize_mode`` is passed on).
    preset
        Name of the search space (``search_spaces/<preset>.json``: ``small``, ``small-mfcc``...), for the cost model.
    budgets
        ``{metric: limit}`` over ``params``, ``macs``, ``latency_ms``, ``peak_act_kb``.
    mode
        ``'reject'`` over-budget samples before they run, or ``'penalize'`` their reward.
    optimize_mode
        ``'maximize'`` (accuracy, default) or ``'minimize'``.
    penalty_scale
        Weight of the relative budget overshoot in ``penalize`` mode.
    reward_for_invalid
        Reward the inner tuner gets for a rejected sample (accuracy 0 by default).
    max_tries
        Samples drawn per trial before giving up (then no more trials are generated).
    lut
        Latency lookup table for the cost model (default: the cost model's own).
    num_classes
        Classes of the trials' data, which size the classifier the budgets price: 12 for Speech Commands, the
        keywords + 2 for a dataset synthesized for other keywords (``nni-kws experiment check`` compares).
    """

    def __init__(self, tuner: str = "TPE", tuner_args: dict[str, Any] | None = None, preset: str = "small",
                 budgets: dict[str, float] | None = None, mode: str = "reject", optimize_mode: str = "maximize",
                 penalty_scale: float = 1.0, reward_for_invalid: float = 0.0, max_tries: int = 200,
                 lut: str | None = None, num_classes: int = 12) -> None:
        # 12: labels.NUM_CLASSES, not imported (nni_kws.data imports torch; the tuner must connect within 10 s).
        # nnictl (config v2) never calls classArgsValidator, so check here: a bad config fails at start.
        HardwareAwareClassArgsValidator().check_light(
            tuner=tuner, tuner_args=tuner_args or {}, preset=preset, budgets=budgets or {}, mode=mode,
            optimize_mode=optimize_mode, penalty_scale=penalty_scale, reward_for_invalid=reward_for_invalid,
            max_tries=max_tries, lut=lut, num_classes=num_classes)
        self.inner: Tuner = create_builtin_class_instance(tuner, _inner_args(tuner, tuner_args, optimize_mode),
                                                          "tuners")
        self.tuner_name, self.preset, self.lut, self.num_classes = tuner, preset, lut, num_classes
        self.budgets = parse_budgets(budgets)
        self.mode, self.optimize_mode = mode, OptimizeMode(optimize_mode)
        self.penalty_scale, self.reward_for_invalid, self.max_tries = penalty_scale, reward_for_invalid, max_tries
        self.rejected = 0            # samples refused so far (reject mode)
        self._costs: dict[int, dict[str, float]] = {}
        _logger.info("HardwareAwareTuner(%s, mode=%s, budgets=%s)", tuner, mode, self.budgets)

    def costs(self, parameters: Mapping[str, Any]) -> dict[str, float]:
        """Hardware metrics of the architecture in ``parameters`` (training keys are ignored)."""
        from .costs import arch_costs
        from .train_trial import BUDGET_KEY, TRAIN_PARAMS

        arch = {k: v for k, v in parameters.items() if k != BUDGET_KEY and k not in TRAIN_PARAMS}
        return arch_costs(arch, self.preset, self.lut, self.num_classes)

    def update_search_space(self, search_space: dict[str, Any]) -> None:
        """Check that the labels are those of the ``preset`` space (naming the first stray one)."""
        from nni_kws.space import space_by_name, space_choices

        from .train_trial import TRAIN_PARAMS

        choices = space_choices(space_by_name(self.preset))
        for label in search_space:
            if label not in choices and label not in TRAIN_PARAMS:
                raise ValueError(f"search-space label {label!r} is not in the {self.preset!r} space of "
                                 f"KwsHardwareAware (classArgs.preset)")
        self.inner.update_search_space(search_space)

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        for _ in range(self.max_tries):
            params = self.inner.generate_parameters(parameter_id, **kwargs)
            costs = self.costs(params)
            exceeded = over_budget(costs, self.budgets) if self.mode == "reject" else []
            if not exceeded:
                self._costs[parameter_id] = costs
                return params
            self.rejected += 1
            _logger.info("rejected %s: over budget %s (%s)", params, exceeded,
                         {k: costs[k] for k in exceeded})
            # Tell the inner tuner, so that it can learn to avoid the region; the id is then reused.
            self.inner.receive_trial_result(parameter_id, params, float(self.reward_for_invalid))
        _logger.error("no sample within budgets %s after %d tries; stopping", self.budgets, self.max_tries)
        raise nni.NoMoreTrialError(f"no architecture within budgets {self.budgets} after {self.max_tries} tries")

    def generate_multiple_parameters(self, parameter_id_list: list[int], **kwargs: Any) -> list[dict[str, Any]]:
        # Always go through our generate_parameters (Evolution overrides this method in the inner tuner).
        kwargs.pop("st_callback", None)
        return Tuner.generate_multiple_parameters(self, parameter_id_list, **kwargs)

    def receive_trial_result(self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any) -> None:
        if self.mode == "penalize" and self.budgets:
            costs = self._costs.get(parameter_id) or self.costs(parameters)
            sign = 1.0 if self.optimize_mode is OptimizeMode.Maximize else -1.0
            value = extract_scalar_reward(value) - sign * self.penalty_scale * budget_penalty(costs, self.budgets)
        self.inner.receive_trial_result(parameter_id, parameters, value, **kwargs)

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        self._costs.pop(parameter_id, None)
        self.inner.trial_end(parameter_id, success, **kwargs)

    def import_data(self, data: list[dict[str, Any]]) -> None:
        self.inner.import_data(data)
