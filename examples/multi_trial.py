"""Multi-trial NAS on the KWS space from Python, watched in NNI's web UI.

``nnictl`` cannot run NAS in NNI 3.0; this script is the Python route: a ``NasExperiment`` with
regularized evolution (or Random / TPE / Grid) whose proposals go through a hardware-budget
``Filter`` before any training, trials that train each architecture on the dataset folder, and
the web UI at http://127.0.0.1:8080 listing accuracy, params, MACs and peak activation memory.

    python examples/multi_trial.py --data ~/.cache/nni-kws/synth-... --budget params=30000 --keep-ui

The same thing as a command: ``nni-kws experiment run --strategy evolution ...``.
"""
from __future__ import annotations

import argparse
import json
import logging

from nni_kws.cost.budgets import parse_budgets
from nni_kws.nnictl.experiment import STRATEGIES, run_nas_experiment
from nni_kws.nnictl.train_trial import resolve_data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="Speech Commands folder (default: $NNI_KWS_DATA)")
    p.add_argument("--preset", default="small")
    p.add_argument("--strategy", default="evolution", choices=STRATEGIES)
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--budget", action="append", default=[], metavar="NAME=LIMIT",
                   help="e.g. params=30000, macs=7e6, peak_act_kb=256, latency_ms=2 (with --lut)")
    p.add_argument("--lut", help="latency table from `nni-kws profile`")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/multi_trial")
    p.add_argument("--keep-ui", action="store_true", help="keep the web UI up after the search (Ctrl-C ends)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO)

    top = run_nas_experiment(resolve_data(args.data), preset=args.preset, strategy=args.strategy,
                             max_trials=args.trials, concurrency=args.concurrency, epochs=args.epochs,
                             budgets=parse_budgets(args.budget), port=args.port, seed=args.seed, lut=args.lut,
                             out=args.out, keep_ui=args.keep_ui)
    print(json.dumps(top, indent=2))


if __name__ == "__main__":
    main()
