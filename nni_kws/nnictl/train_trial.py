"""What one NNI trial of the KWS space does: turn a tuner's parameters back into a model, train it,
report ``val_acc`` after every epoch and finally ``{'default': accuracy, 'params', 'macs',
'peak_act_kb'}`` (plus ``'latency_ms'`` with a latency table), so the web UI lists accuracy and
hardware costs per trial. Shared by the ``nnictl`` trial entry (:mod:`nni_kws.nnictl.trial`), the
one-shot-search trials (:mod:`.darts_trial`) and the multi-trial NAS evaluator (:mod:`.experiment`).

Parameters a tuner may send besides the architecture labels: the training hyper-parameters of
:data:`TRAIN_PARAMS` and Hyperband's ``TRIAL_BUDGET`` (epochs = budget × ``--epochs-per-budget``).
Data is read from a folder (``--data`` or ``$NNI_KWS_DATA``, else the synthesized default dataset),
never shipped through NNI.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping

import nni

from nni_kws.data.datamodule import SpeechCommandsDataModule
from nni_kws.data.synth import DEFAULT_PRESET, ensure_default_dataset
from nni_kws.space import build_model, parse_space_name, save_arch, space_by_name, validate_arch
from nni_kws.training import fit, seed_everything

from .costs import arch_costs

__all__ = ["TRAIN_PARAMS", "BUDGET_KEY", "split_parameters", "resolve_data", "run_trial"]

_logger = logging.getLogger(__name__)

#: Training hyper-parameters a search space may add next to the architecture labels.
TRAIN_PARAMS: dict[str, type] = {"learning_rate": float, "weight_decay": float, "label_smoothing": float,
                                 "batch_size": int}
#: Key Hyperband (and BOHB) add to every parameter set.
BUDGET_KEY = "TRIAL_BUDGET"


def split_parameters(params: Mapping[str, Any], preset: str) -> tuple[dict[str, Any], dict[str, Any], float | None]:
    """Split a tuner's parameters into ``(arch, training kwargs, TRIAL_BUDGET or None)``.

    Raises :class:`~nni_kws.space.InvalidArchitecture` (a ``ValueError``) naming the first bad
    label: unknown, missing, or a value outside the space of ``preset``.
    """
    rest = dict(params)
    budget = rest.pop(BUDGET_KEY, None)
    train = {key: _train_param(key, rest.pop(key)) for key in [k for k in rest if k in TRAIN_PARAMS]}
    arch = validate_arch(space_by_name(preset), rest)
    if budget is not None:
        value = _number(BUDGET_KEY, budget)
        if not value > 0:
            raise ValueError(f"parameter {BUDGET_KEY!r} must be > 0, got {budget!r}")
        budget = value
    return arch, train, budget


def _number(key: str, value: Any) -> float:
    """A finite number; numeric strings count (a search space may list choices as strings)."""
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError:
        number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
        raise ValueError(f"parameter {key!r} must be a finite number, got {value!r}")
    return float(number)


def _train_param(key: str, value: Any) -> Any:
    """A training hyper-parameter from a tuner, checked: tuners send numbers (``quniform`` sends
    floats such as 32.0, so an integral float is an int), but never a truncated 2.7 batch size."""
    number = _number(key, value)
    if TRAIN_PARAMS[key] is int:
        if not number.is_integer() or number < 1:
            raise ValueError(f"parameter {key!r} must be a whole number >= 1, got {value!r}")
        return int(number)
    if key == "label_smoothing" and not 0 <= number < 1:
        raise ValueError(f"parameter {key!r} must be in [0, 1), got {value!r}")
    if key == "learning_rate" and not number > 0:
        raise ValueError(f"parameter {key!r} must be > 0, got {value!r}")
    if number < 0:
        raise ValueError(f"parameter {key!r} must be >= 0, got {value!r}")
    return number


def resolve_data(data: str | os.PathLike | None, *, synth: str = DEFAULT_PRESET, speakers: int | None = None) -> Path:
    """The dataset folder: ``data``, else ``$NNI_KWS_DATA`` (either must exist), else the synthesized
    default dataset, as ``nni-kws run`` uses it (synthesis preset ``synth``, ``speakers`` espeak voices,
    default the preset's): made once under a lock that concurrent trials share, then reused from the cache."""
    root = data or os.environ.get("NNI_KWS_DATA")
    if not root:
        _logger.info("no --data and no $NNI_KWS_DATA: using the synthesized default dataset")
        return ensure_default_dataset(progress=False, preset=synth,
                                      **({} if speakers is None else {"speakers": speakers}))
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        source = "--data" if data else "$NNI_KWS_DATA"
        raise FileNotFoundError(f"dataset folder not found: {path} ({source})")
    return path


def run_trial(arch: Mapping[str, Any], *, data: str | os.PathLike, preset: str, epochs: int,
              batch_size: int = 64, num_workers: int = 0, max_per_class: int | None = None, seed: int = 0,
              out_dir: str | os.PathLike | None = None, progress: bool = False, lut: str | None = None,
              model: Any = None, report: bool = True, **train_kw: Any) -> dict[str, float]:
    """Train ``arch`` (or the given frozen ``model``) on the folder ``data`` and return, and report
    to NNI when ``report``, ``{'default': val accuracy, **hardware costs}``.

    Intermediate results (``val_acc`` per epoch) are reported by
    :class:`~nni_kws.training.KwsModule`. Shared by the HPO trial and the multi-trial NAS evaluator.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    seed_everything(seed)
    dm = SpeechCommandsDataModule(data, batch_size=batch_size, num_workers=num_workers, seed=seed,
                                  max_per_class=max_per_class)
    if model is None:  # the classifier sized to the data's classes (its own keywords, if synthesized for them)
        model = build_model(arch, space_by_name(preset, num_classes=dm.num_classes))
    metrics = fit(model, dm.train_dataloader(), dm.val_dataloader(), epochs=epochs, out_dir=out_dir,
                  progress=progress, report_to_nni=report, **train_kw)
    result = {"default": float(metrics["val_acc"]), **arch_costs(arch, preset, lut, num_classes=dm.num_classes)}
    if out_dir is not None:
        space_preset, frontend = parse_space_name(preset)
        save_arch(arch, Path(out_dir) / "arch.json", preset=space_preset, frontend=frontend,
                  num_classes=dm.num_classes, metrics=result)
    if report:
        nni.report_final_result(result)
    _logger.info("final result: %s", result)
    return result
