"""One NNI trial of the KWS space: ``python -m nni_kws.trial`` (the ``trialCommand`` of ``examples/nnictl/*.yml``).

NNI 3.0 cannot run a NAS experiment from ``nnictl`` (only HPO), so the space is exported as an HPO
search space (``search_spaces/<preset>.json``) and this entry point turns a tuner's parameters back
into a model and trains it (:func:`~nni_kws.nnictl.train_trial.run_trial`), or with ``--mode darts``
runs a one-shot search per trial (:mod:`~nni_kws.nnictl.darts_trial`).

Parameters a tuner may send besides the architecture labels: the training hyper-parameters of
:data:`~nni_kws.nnictl.train_trial.TRAIN_PARAMS` and Hyperband's ``TRIAL_BUDGET`` (epochs = budget ×
``--epochs-per-budget``). Data is read from a folder (``--data`` or ``$NNI_KWS_DATA``), else the
synthesized default dataset is made once and shared by all trials; it is never shipped through NNI.

A trial that NNI stops (assessor) dies of NNI's signal, so the web UI shows ``EARLY_STOPPED``
(:mod:`.stopping`); a trial without parameters (outside NNI, no ``--arch``) is an error.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import nni
import torch

from nni_kws.data.synth import DEFAULT_PRESET
from nni_kws.data.synth import PRESETS as SYNTH_PRESETS
from nni_kws.files import read_json
from nni_kws.space import load_arch
from nni_kws.training import TrainingDiverged, torch_threads

from .darts_trial import run_darts_trial
from .stopping import exit_by_signal_when_stopped
from .train_trial import BUDGET_KEY, resolve_data, run_trial, split_parameters

__all__ = ["build_parser", "main"]

_logger = logging.getLogger("nni_kws.trial")


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m nni_kws.trial``."""
    p = argparse.ArgumentParser(prog="python -m nni_kws.trial", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="Speech Commands folder (default: $NNI_KWS_DATA, else the synthesized default set)")
    p.add_argument("--synth", default=DEFAULT_PRESET, choices=sorted(SYNTH_PRESETS),
                   help=f"synthesis preset of the default set without --data "
                        f"(as `nni-kws run --synth`; default {DEFAULT_PRESET})")
    p.add_argument("--speakers", type=int,
                   help="espeak voices of the synthesized default set (as `nni-kws run --speakers`)")
    p.add_argument("--preset", default="small",
                   help="space of the search-space file: a preset, or preset-frontend such as small-mfcc "
                        "(default: small)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs (ignored when the tuner sends TRIAL_BUDGET)")
    p.add_argument("--epochs-per-budget", type=float, default=1.0,
                   help="epochs per unit of Hyperband's TRIAL_BUDGET (default 1: R in the config = max epochs)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=0.05)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default, one per core; with trialConcurrency N, "
                        "cores / N, since trials that share cores fight over their threads)")
    p.add_argument("--max-per-class", type=int, help="cap clips per class (quick trials)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lut", help="latency lookup table for the cost model")
    p.add_argument("--arch", help="architecture JSON to train when run outside NNI (--mode darts: a JSON object of "
                   "the search's parameters)")
    p.add_argument("--out", help="output folder (default: $NNI_OUTPUT_DIR, the trial folder)")
    p.add_argument("--progress", action="store_true", help="show Lightning's progress bar")
    darts = p.add_argument_group("--mode darts: a one-shot search per trial (tuned labels: lambda, target, ...)")
    darts.add_argument("--mode", choices=["train", "darts"], default="train",
                       help="train: the tuner's architecture; darts: search, then retrain the result (--epochs)")
    darts.add_argument("--search-epochs", type=int, default=5, help="one-shot search epochs (TRIAL_BUDGET sets them)")
    darts.add_argument("--strategy", default="darts",
                       help="one-shot strategy: darts, gumbel, proxyless (default darts)")
    darts.add_argument("--resource", default="macs",
                       help="penalised cost: macs, params, peak_activation_bytes, latency_ms")
    darts.add_argument("--target", type=float, help="budget of --resource unless the tuner sends 'target'")
    darts.add_argument("--lambda", dest="weight", type=float, default=1.0, help="penalty weight unless tuned")
    darts.add_argument("--form", default="hinge", help="penalty form: hinge, add, mul-log")
    return p


def _parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The tuner's parameters, else (outside NNI) the ``--arch`` file; neither: ``ValueError``."""
    # Outside a trial NNI's standalone runtime only warns and returns None: ask NNI only inside one.
    params = (nni.get_next_parameter() or {}) if os.environ.get("NNI_PLATFORM") else {}
    if params:
        return dict(params)
    if args.arch and args.mode == "darts":
        return read_json(Path(args.arch), hint="expected a JSON object of the search's parameters (lambda, ...)")
    if args.arch:
        return load_arch(args.arch)
    if args.mode == "darts":
        return {}  # the search's own defaults (--lambda, --target, ...)
    raise ValueError("no parameters: NNI sent none (is this run by nnictl?) and no --arch FILE was given")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one trial; a bad parameter or missing data is one error line and exit code 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with exit_by_signal_when_stopped(), torch_threads(args.threads):
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    try:
        if args.threads < 0:
            raise ValueError(f"--threads must be >= 0, got {args.threads}")
        params = _parameters(args)
        data = resolve_data(args.data, synth=args.synth, speakers=args.speakers)
        if args.mode == "darts":
            _run_darts(args, data, params)
            return 0
        arch, train, budget = split_parameters(params, args.preset)
        epochs = args.epochs if budget is None else max(1, round(budget * args.epochs_per_budget))
        train.setdefault("learning_rate", args.learning_rate)
        batch_size = train.pop("batch_size", args.batch_size)
        _logger.info("trial: preset=%s epochs=%d threads=%d arch=%s train=%s", args.preset, epochs,
                     torch.get_num_threads(), arch, train)
        run_trial(arch, data=data, preset=args.preset, epochs=epochs, batch_size=batch_size,
                  num_workers=args.workers, max_per_class=args.max_per_class, seed=args.seed,
                  out_dir=args.out or os.environ.get("NNI_OUTPUT_DIR"), progress=args.progress, lut=args.lut,
                  **train)
    except TrainingDiverged as err:  # a failed trial, not chance accuracy reported to the tuner
        print(f"nni_kws.trial: error: trial failed: {err}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as err:
        print(f"nni_kws.trial: error: invalid trial: {err}", file=sys.stderr)
        return 2
    return 0


def _run_darts(args: argparse.Namespace, data: Path, params: dict[str, Any]) -> None:
    budget = params.get(BUDGET_KEY)
    search_epochs = args.search_epochs if budget is None else max(1, round(float(budget) * args.epochs_per_budget))
    run_darts_trial(params, data=data, preset=args.preset, search_epochs=search_epochs, epochs=args.epochs,
                    resource=args.resource, target=args.target, weight=args.weight, form=args.form,
                    strategy=args.strategy, batch_size=args.batch_size, num_workers=args.workers,
                    max_per_class=args.max_per_class, seed=args.seed,
                    out_dir=args.out or os.environ.get("NNI_OUTPUT_DIR"),
                    lut=args.lut, progress=args.progress, learning_rate=args.learning_rate)


if __name__ == "__main__":
    sys.exit(main())
