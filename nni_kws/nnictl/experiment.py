"""Multi-trial NAS from Python: NNI's ``NasExperiment`` over the KWS space, with the web UI.

``nnictl`` cannot start NAS experiments in NNI 3.0, so this is the NAS counterpart of the
``nnictl`` configs: a multi-trial strategy (Random, RegularizedEvolution, TPE maximising, or
GridSearch) chained with NNI's ``Filter`` middleware that refuses over-budget architectures with
the analytic cost model (``metric_for_invalid=0.0``: the strategy sees them as worthless). Each
trial process rebuilds the architecture, trains it on the dataset *folder* (nothing in memory is
shipped) and reports ``val_acc`` per epoch and ``{'default': acc, params, macs, [latency_ms],
peak_act_kb}``, which the web UI at ``http://127.0.0.1:<port>`` lists per trial.
"""
from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import nni
import psutil
from nni.nas.evaluator import FunctionalEvaluator
from nni.nas.experiment import NasExperiment, NasExperimentConfig
from nni.nas.space import ExecutableModelSpace
from nni.nas.strategy import TPE, GridSearch, Random, RegularizedEvolution, Strategy
from nni.nas.strategy.middleware import Chain, Filter

from nni_kws.cost.budgets import budget_filter, infeasible_budget, over_budget, parse_budgets, require_lut
from nni_kws.data.datamodule import SpeechCommandsDataModule
from nni_kws.signals import StopRequested
from nni_kws.space import space_by_name

from .costs import arch_costs, space_cost_model

__all__ = ["STRATEGIES", "make_strategy", "model_filter", "trial_evaluator", "evaluate_model",
           "run_nas_experiment"]

_logger = logging.getLogger(__name__)

STRATEGIES = ("random", "evolution", "tpe", "grid")


def make_strategy(name: str, *, seed: int | None = None, population_size: int = 20, sample_size: int = 5,
                  budgets: Mapping[str, float] | None = None, preset: str = "small",
                  lut: str | None = None, num_classes: int = 12) -> Strategy:
    """A multi-trial strategy by name, wrapped in ``Chain(strategy, Filter(..., metric_for_invalid=0.0))``
    when there are budgets.

    TPE is built with ``optimize_mode='maximize'`` (NNI's default minimises, which would hunt for
    the worst accuracy).
    """
    if name == "random":
        strategy: Strategy = Random(seed=seed)
    elif name == "evolution":
        strategy = RegularizedEvolution(population_size=population_size, sample_size=sample_size, seed=seed)
    elif name == "tpe":
        strategy = TPE(optimize_mode="maximize", seed=seed)
    elif name == "grid":
        strategy = GridSearch(seed=seed)
    else:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    budgets = parse_budgets(budgets)
    require_lut(budgets, lut)
    if not budgets:
        return strategy
    return Chain(strategy, Filter(model_filter(preset, budgets, lut, num_classes), metric_for_invalid=0.0))


def model_filter(preset: str, budgets: Mapping[str, float], lut: str | None = None, num_classes: int = 12
                 ) -> Callable[[ExecutableModelSpace], bool]:
    """``Filter`` function: True when the model's architecture (``model.sample``) is within every budget."""
    return budget_filter(lambda model: arch_costs(model.sample, preset, lut, num_classes), parse_budgets(budgets))


def evaluate_model(model: Any, *, data: str, preset: str, epochs: int, lut: str | None = None,
                   **kwargs: Any) -> dict[str, float]:
    """What every NAS trial runs (through :class:`FunctionalEvaluator`): train the frozen ``model``
    and report accuracy and costs; the architecture dict is the sample of the trial's parameter."""
    from .stopping import exit_by_signal_when_stopped
    from .train_trial import run_trial

    current = nni.get_current_parameter()
    sample = getattr(current, "sample", None)
    if sample is None:
        raise RuntimeError("evaluate_model must run inside an NNI NAS trial (no current model sample)")
    with exit_by_signal_when_stopped():  # a trial NNI stops ends as EARLY_STOPPED/USER_CANCELED, not FAILED
        return run_trial(sample, data=data, preset=preset, epochs=epochs, lut=lut, model=model, **kwargs)


def trial_evaluator(data: str | Path, preset: str, epochs: int, *, batch_size: int = 64,
                    max_per_class: int | None = None, lut: str | Path | None = None,
                    seed: int = 0, **train_kw: Any) -> FunctionalEvaluator:
    """A serialisable evaluator: only the function's import path and plain arguments go to trials."""
    return FunctionalEvaluator(evaluate_model, data=str(Path(data).resolve()), preset=preset, epochs=epochs,
                               batch_size=batch_size, max_per_class=max_per_class,
                               lut=None if lut is None else str(Path(lut).resolve()), seed=seed, **train_kw)


def run_nas_experiment(data: str | Path, *, preset: str = "small", strategy: str = "random", max_trials: int = 20,
                       concurrency: int = 1, epochs: int = 3, budgets: Mapping[str, float] | None = None,
                       port: int = 8080, seed: int | None = None, lut: str | Path | None = None,
                       batch_size: int = 64, max_per_class: int | None = None, experiment_dir: str | Path | None = None,
                       name: str | None = None, top_k: int = 5, out: str | Path | None = None,
                       keep_ui: bool = False, debug: bool = False) -> list[dict[str, Any]]:
    """Run a multi-trial NAS experiment to the end and return the ``top_k`` architectures.

    The web UI is served on ``port`` while the experiment runs (and after it, until Ctrl-C, with
    ``keep_ui``). Each result is ``{'arch', 'accuracy', **costs}``; with ``out`` they are also
    written to ``<out>/top_models.json``. ``experiment_dir`` replaces ``~/nni-experiments``.
    """
    num_classes = SpeechCommandsDataModule(data).num_classes  # the data's own keywords, if synthesized for them
    space = space_by_name(preset, num_classes=num_classes)
    lut = None if lut is None else str(Path(lut).resolve())
    infeasible = infeasible_budget(parse_budgets(budgets), space_cost_model(preset, lut, num_classes))
    if infeasible:  # no trial would ever start (TPE waits for one forever)
        name, limit, cheapest = infeasible
        raise ValueError(f"budget {name}={limit:g} is below the cheapest architecture of the {preset!r} space: "
                         f"{cheapest:,.6g}; no architecture can meet it")
    _check_port_free(port)
    evaluator = trial_evaluator(data, preset, epochs, batch_size=batch_size, max_per_class=max_per_class,
                                lut=lut, seed=seed or 0)
    strat = make_strategy(strategy, seed=seed, budgets=budgets, preset=preset, lut=lut, num_classes=num_classes)
    config = NasExperimentConfig("ts", "simplified", "local")
    config.experiment_name = name or f"kws-{strategy}-{preset}"
    config.max_trial_number = max_trials
    config.trial_concurrency = concurrency
    if experiment_dir is not None:
        config.experiment_working_directory = str(Path(experiment_dir).resolve())
    exp = NasExperiment(space, evaluator, strat, config)
    _logger.info("web UI: http://127.0.0.1:%d (experiment %s)", port, exp.id)
    stopped = False
    try:  # a stop (Ctrl-C, or SIGTERM under the CLI) stops the NNI manager too, and reaches the caller
        if not exp.run(port=port, debug=debug):  # None: NNI caught Ctrl-C and stopped the experiment
            stopped = True
            raise KeyboardInterrupt
        results = _top_models(exp, top_k, preset, lut, parse_budgets(budgets), max_trials, num_classes)
        if out is not None:
            path = Path(out) / "top_models.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"experiment": exp.id, "strategy": strategy, "preset": preset,
                                        "budgets": parse_budgets(budgets), "top": results}, indent=2) + "\n")
        if keep_ui:
            _logger.info("search done; the web UI stays at http://127.0.0.1:%d until Ctrl-C", port)
            try:
                while True:
                    time.sleep(3600)
            except (KeyboardInterrupt, StopRequested):
                pass  # closing the web UI ends a finished search
    finally:
        if not stopped:
            exp.stop()
        _end_manager(exp.id)
    return results


def _end_manager(experiment_id: str) -> None:
    """Terminate the NNI manager of ``experiment_id`` if it still runs: a stop that lands while NNI is starting
    it (before NNI records the process) leaves ``exp.stop()`` nothing to stop, and the manager would keep the
    port and the web UI alive after this process has ended."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "--experiment-id" in cmdline and experiment_id in cmdline:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
                proc.wait(timeout=10)


def _check_port_free(port: int) -> None:
    """Refuse a port where something already listens (NNI would fail with a traceback, or an experiment of
    another run that was not stopped holds it)."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise ValueError(f"port {port} is in use (an NNI experiment still running? `nnictl stop --port {port}`); "
                             "choose another --port")


def _top_models(exp: NasExperiment, top_k: int, preset: str, lut: str | None, budgets: Mapping[str, float],
                max_trials: int, num_classes: int = 12) -> list[dict[str, Any]]:
    """The best trained models (the strategy's ranking by ``default``); architectures the filter
    refused (they carry the invalid metric 0.0 but never trained) are left out."""
    out = []
    for model in exp.export_top_models(top_k=max_trials):
        final = model.metrics.final
        costs = arch_costs(model.sample, preset, lut, num_classes)
        if final is None or over_budget(costs, budgets):
            continue
        out.append({"arch": dict(model.sample), "accuracy": float(final), **costs})
    return out[:top_k]
