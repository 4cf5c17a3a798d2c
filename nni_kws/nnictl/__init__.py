"""NNI's front door for nni-kws: ``nnictl`` (HPO-style) experiments over the exported search
spaces, multi-trial NAS from Python with the web UI, and the budget helpers they share.

- ``python -m nni_kws.trial``: the trial command of ``examples/nnictl/*.yml``.
- :class:`nni_kws.tuner.HardwareAwareTuner`: a built-in tuner that rejects or penalises over-budget samples.
- :func:`nni_kws.nnictl.experiment.run_nas_experiment`: ``NasExperiment`` with Random / RegularizedEvolution / TPE.
- :mod:`~nni_kws.nnictl.darts_trial`: a one-shot search per trial (``--mode darts``), per-epoch metrics in the UI.
- :mod:`~nni_kws.nnictl.launch`, :mod:`~nni_kws.nnictl.rest`: drive ``nnictl`` and read the manager's REST API.
- ``nni-kws experiment run|check`` (:mod:`~nni_kws.nnictl.commands`).
"""
from .costs import COST_METRICS, arch_costs, budget_penalty, over_budget, parse_budgets

__all__ = ["COST_METRICS", "arch_costs", "budget_penalty", "over_budget", "parse_budgets"]
