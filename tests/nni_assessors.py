"""An assessor for the tests' real ``nnictl`` experiments (loaded by NNI from this folder):
``StopAtStep`` stops every trial at its ``step``-th intermediate result, so "the assessor stopped
it" is certain, unlike Medianstop, whose decision depends on the accuracies the trials reach.
NNI handles the decision of any assessor the same way (``cancelTrialJob(id, isEarlyStopped=true)``)."""
from __future__ import annotations

from nni.assessor import Assessor, AssessResult


class StopAtStep(Assessor):
    def __init__(self, step: int = 1) -> None:
        self.step = step

    def assess_trial(self, trial_job_id: str, trial_history: list) -> AssessResult:
        return AssessResult.Bad if len(trial_history) >= self.step else AssessResult.Good
