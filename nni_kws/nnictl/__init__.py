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
from .costs import arch_costs

__all__ = ["arch_costs"]
