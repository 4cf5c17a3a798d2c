"""NNI's front door for nni-kws: ``nnictl`` (HPO-style) experiments over the exported search
spaces, multi-trial NAS from Python with the web UI.

- ``python -m nni_kws.trial`` (:mod:`.trial`, :mod:`.train_trial`): the trial command of ``examples/nnictl/*.yml``.
- ``nni_kws.tuner.HardwareAwareTuner`` (:mod:`.tuner`): a built-in tuner that rejects or penalises over-budget samples.
- :mod:`.costs`: an architecture's costs as the trial's NNI metrics (budgets: :mod:`nni_kws.cost.budgets`).
- :func:`nni_kws.nnictl.experiment.run_nas_experiment`: ``NasExperiment`` with Random / RegularizedEvolution / TPE.
- :mod:`~nni_kws.nnictl.darts_trial`: a one-shot search per trial (``--mode darts``), per-epoch metrics in the UI.
- :mod:`~nni_kws.nnictl.launch`, :mod:`~nni_kws.nnictl.rest`: drive ``nnictl`` and read the manager's REST API.
- ``nni-kws experiment run|check`` (:mod:`~nni_kws.nnictl.commands`).
"""
from __future__ import annotations

from typing import Any

__all__ = ["arch_costs"]


def __getattr__(name: str) -> Any:
    """``arch_costs`` on first use: NNI's dispatcher imports the hardware-aware tuner from this
    package and gives it 10 s to connect, so importing the package must not import torch."""
    if name == "arch_costs":
        from .costs import arch_costs
        return arch_costs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
