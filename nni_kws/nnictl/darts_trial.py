"""A one-shot search as an NNI trial (``python -m nni_kws.trial --mode darts``), so a DARTS run
shows up in the web UI, and a tuner can tune its penalty weight λ or its budget.

NNI 3.0 runs one-shot strategies in-process without a manager, hence without web UI. Here each
trial runs :func:`nni_kws.search.oneshot.run_search` on the space with one
:class:`~nni_kws.search.penalty.ResourcePenalty` whose weight and target come from the tuner
(labels ``lambda`` and ``target``), streams one intermediate result per search epoch while it
runs (``default`` = ``arch_loss``, the supernet's validation loss with penalty, lower is better;
plus expected and argmax costs), then retrains the derived architecture for ``epochs`` epochs and
reports ``{'default': its val accuracy, params, macs, [latency_ms], peak_act_kb}``.
"""
from __future__ import annotations

import json
import logging
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, Mapping

import nni
from nni.runtime.env_vars import trial_env_vars

from nni_kws.cost import CostModel
from nni_kws.data.datamodule import SpeechCommandsDataModule
from nni_kws.search.oneshot import run_search
from nni_kws.search.penalty import ResourcePenalty
from nni_kws.space import space_by_name

from .train_trial import run_trial

__all__ = ["DARTS_PARAMS", "split_darts_parameters", "epoch_metrics", "HistoryReporter", "run_darts_trial"]

_logger = logging.getLogger(__name__)

#: Labels a tuner may send in darts mode (search-space keys), with their types.
DARTS_PARAMS: dict[str, type] = {"lambda": float, "target": float, "arc_learning_rate": float,
                                 "learning_rate": float}


def split_darts_parameters(params: Mapping[str, Any]) -> dict[str, float]:
    """The tuner's parameters as floats; ``ValueError`` naming an unknown or non-numeric label."""
    out = {}
    for label, value in params.items():
        if label == "TRIAL_BUDGET":
            continue
        if label not in DARTS_PARAMS:
            raise ValueError(f"unknown label {label!r} for --mode darts (allowed: {', '.join(DARTS_PARAMS)})")
        try:
            out[label] = DARTS_PARAMS[label](value)
        except (TypeError, ValueError):
            raise ValueError(f"label {label!r} must be a number, got {value!r}") from None
    return out


def epoch_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """One ``history.jsonl`` record as an NNI intermediate result (flat keys, numbers only)."""
    metrics = {re.sub(r"\W+", "_", k): float(v) for k, v in record.get("metrics", {}).items()}
    out = {"default": metrics.get("arch_loss", metrics.get("train_loss", float("nan"))), **metrics}
    for prefix in ("expected", "exact"):
        for key, value in (record.get(prefix) or {}).items():
            out[f"{'argmax' if prefix == 'exact' else prefix}_{key}"] = float(value)
    return out


class HistoryReporter(threading.Thread):
    """Follows ``history.jsonl`` while the search runs and reports each new epoch to NNI.

    NNI's sequential engine swaps the trial command channel for a mock while the one-shot
    strategy runs, so ``nni.report_intermediate_result`` would go nowhere during the search; the
    channel (and parameter id) of the real trial are therefore captured before it starts.
    """

    def __init__(self, path: Path, poll_s: float = 1.0) -> None:
        from nni.runtime.trial_command_channel import get_default_trial_command_channel

        super().__init__(daemon=True, name="nni-kws-history-reporter")
        self.path, self.poll_s = path, poll_s
        self.sent = 0
        self._stop_event = threading.Event()
        self._channel = get_default_trial_command_channel()
        params = nni.trial._params  # pylint: disable=protected-access  (no public accessor for the id)
        self._parameter_id = params["parameter_id"] if params else None

    def report(self, metric: dict[str, float]) -> None:
        """Send one intermediate result through the real trial channel."""
        self._channel.send_metric(type="PERIODICAL", parameter_id=self._parameter_id,
                                  trial_job_id=trial_env_vars.NNI_TRIAL_JOB_ID, sequence=self.sent, value=metric)

    def run(self) -> None:
        while not self._stop_event.wait(self.poll_s):
            self.flush()

    def flush(self) -> None:
        """Report the complete lines not reported yet."""
        if not self.path.exists():
            return
        text = self.path.read_text()
        lines = text[:text.rfind("\n") + 1].splitlines()  # only complete lines
        for line in lines[self.sent:]:
            if line.strip():
                self.report(epoch_metrics(json.loads(line)))
            self.sent += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.flush()


def run_darts_trial(params: Mapping[str, Any], *, data: Path, preset: str, search_epochs: int, epochs: int,
                    resource: str = "macs", target: float | None = None, weight: float = 1.0, form: str = "hinge",
                    strategy: str = "darts", batch_size: int = 64, num_workers: int = 0,
                    max_per_class: int | None = None, seed: int = 0, out_dir: str | Path | None = None,
                    lut: str | None = None, progress: bool = False, **train_kw: Any) -> dict[str, float]:
    """Search (λ = ``params['lambda']`` or ``weight``, target = ``params['target']`` or ``target``),
    report per-epoch search metrics, retrain the result and report the final accuracy and costs."""
    values = split_darts_parameters(params)
    if "learning_rate" in values:  # for the search and the retraining
        train_kw["learning_rate"] = values["learning_rate"]
    target = values.get("target", target)
    if target is None:
        raise ValueError(f"no budget for {resource}: give --target or a 'target' label in the search space")
    penalty = ResourcePenalty(resource, target, values.get("lambda", weight), form)
    dm = SpeechCommandsDataModule(data, batch_size=batch_size, num_workers=num_workers, seed=seed,
                                  max_per_class=max_per_class)
    space = space_by_name(preset, num_classes=dm.num_classes)
    cost_model = CostModel(space, lut=lut)
    search_dir = Path(out_dir) / "search" if out_dir is not None else Path(tempfile.mkdtemp(prefix="nni-kws-darts-"))
    reporter = HistoryReporter(search_dir / "history.jsonl")
    reporter.start()
    try:
        result = run_search(space, dm.train_dataloader(), dm.val_dataloader(), strategy=strategy,
                            epochs=search_epochs, penalties=[penalty], cost_model=cost_model,
                            arc_learning_rate=values.get("arc_learning_rate", 3e-3),
                            learning_rate=train_kw.get("learning_rate", 0.05),
                            out_dir=search_dir, seed=seed, progress=progress)
    finally:
        reporter.stop()
    _logger.info("searched architecture (%s): %s", penalty, result.arch)
    final = run_trial(result.arch, data=data, preset=preset, epochs=epochs, batch_size=batch_size,
                      num_workers=num_workers, max_per_class=max_per_class, seed=seed,
                      out_dir=Path(out_dir) / "retrain" if out_dir is not None else None, progress=progress,
                      lut=lut, report=False, **train_kw)
    nni.report_final_result(final)
    return final
