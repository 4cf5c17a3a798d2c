"""Benchmark of the example configs' Medianstop assessor against real learning curves.

1. Train ``--archs`` random architectures of ``--preset`` for ``--epochs`` epochs, as the trials of
   ``examples/nnictl/tpe.yml`` do (default synthesized dataset, the trial's defaults), and record
   the validation accuracy after every epoch (the intermediate results a trial reports).
2. Replay NNI's own ``MedianstopAssessor`` over these curves (concurrency 1, as in ``tpe.yml``: a
   stopped trial ends there, a finished one joins the median) for every ``start_step``, in the
   training order and in ``--orders`` random orders of the trials (the order a tuner proposes them
   decides what the median is), and count the trials it stops, the epochs it saves, and how often
   it stops a trial whose final accuracy is within ``--top-margin`` of the best (a wrong decision).

The verdict names the smallest ``start_step`` that, in no order, stops a trial that would have ended
near the top.

    python benchmarks/assessor.py [--archs 8] [--epochs 5] [--out benchmarks/results/assessor.json]
    python benchmarks/assessor.py --curves benchmarks/results/assessor.json   # replay only, no training
    python benchmarks/assessor.py --quick   # 3 tiny archs on a 3-speaker set, seconds
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from nni.algorithms.hpo.medianstop_assessor import MedianstopAssessor
from nni.assessor import AssessResult

from nni_kws.data.synth import DEFAULT_PRESET, ensure_default_dataset
from nni_kws.nnictl.train_trial import run_trial
from nni_kws.space import random_arch, space_by_name


def learning_curve(arch: dict[str, Any], data: Path, preset: str, epochs: int,
                   max_per_class: int | None) -> list[float]:
    """Validation accuracy after each epoch of one trial (read back from Lightning's CSV log)."""
    with tempfile.TemporaryDirectory() as out:
        run_trial(arch, data=data, preset=preset, epochs=epochs, max_per_class=max_per_class, out_dir=out,
                  report=False)
        rows = list(csv.DictReader(next(Path(out).glob("logs/version_*/metrics.csv")).open()))
    return [float(r["val_acc"]) for r in rows if r.get("val_acc")]


def replay_medianstop(curves: list[list[float]], start_step: int) -> list[int | None]:
    """For each trial (in order, one at a time), the step NNI's Medianstop stops it at, or None."""
    assessor = MedianstopAssessor(optimize_mode="maximize", start_step=start_step)
    stopped: list[int | None] = []
    for i, curve in enumerate(curves):
        at = None
        for step in range(1, len(curve) + 1):
            if assessor.assess_trial(str(i), curve[:step]) == AssessResult.Bad:
                at = step
                break
        assessor.trial_end(str(i), at is None)
        stopped.append(at)
    return stopped


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--archs", type=int, default=8)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--speakers", type=int, help="speakers of the synthesized dataset (default: the default set)")
    p.add_argument("--max-per-class", type=int)
    p.add_argument("--top-margin", type=float, default=0.02, help="final accuracy this close to the best is 'top'")
    p.add_argument("--orders", type=int, default=500, help="random trial orders replayed (seeded)")
    p.add_argument("--curves", help="reuse archs and learning curves of an earlier result JSON (no training)")
    p.add_argument("--out", default="benchmarks/results/assessor.json")
    p.add_argument("--quick", action="store_true", help="3 tiny archs, 3 epochs, 3 speakers")
    args = p.parse_args(argv)
    if args.quick:
        args.preset, args.archs, args.epochs, args.speakers, args.max_per_class = "tiny", 3, 3, 3, 4
    torch.set_num_threads(1)
    start = time.time()
    if args.curves:
        earlier = json.loads(Path(args.curves).read_text())
        data, archs, curves = earlier["dataset"], earlier["archs"], earlier["learning_curves"]
        train_s = earlier["train_s"]
        args.preset, args.epochs, args.max_per_class = earlier["preset"], earlier["epochs"], earlier["max_per_class"]
    else:
        data = ensure_default_dataset(progress=False, preset="today" if args.quick else DEFAULT_PRESET,
                                      **({"speakers": args.speakers} if args.speakers else {}))
        archs = [random_arch(space_by_name(args.preset), seed=s) for s in range(args.archs)]
        curves = [learning_curve(a, data, args.preset, args.epochs, args.max_per_class) for a in archs]
        train_s = round(time.time() - start, 1)
    finals = [c[-1] for c in curves]
    best = max(finals)
    near_top = {i for i, f in enumerate(finals) if f >= best - args.top_margin}
    rng = random.Random(0)
    orders = [list(range(len(curves)))] + [rng.sample(range(len(curves)), len(curves)) for _ in range(args.orders)]
    replays = {}
    for start_step in range(0, args.epochs + 1):
        stopped_counts, saved, wrong = [], [], 0
        for order in orders:
            stopped = replay_medianstop([curves[i] for i in order], start_step)
            stopped_counts.append(sum(at is not None for at in stopped))
            saved.append(sum(args.epochs - at for at in stopped if at is not None))
            wrong += any(at is not None and order[k] in near_top for k, at in enumerate(stopped))
        replays[str(start_step)] = {
            "stopped_at_in_training_order": replay_medianstop(curves, start_step),
            "mean_stopped": sum(stopped_counts) / len(orders), "mean_epochs_saved": sum(saved) / len(orders),
            "share_of_orders_stopping_a_near_top_trial": wrong / len(orders)}
    safe = [int(s) for s, r in replays.items() if r["share_of_orders_stopping_a_near_top_trial"] == 0]
    result = {
        "benchmark": "assessor", "preset": args.preset, "epochs": args.epochs, "archs": archs,
        "dataset": str(data), "max_per_class": args.max_per_class, "chance_accuracy": 1 / 12,
        "learning_curves": curves, "final_accuracy": finals, "near_top_trials": sorted(near_top), "train_s": train_s,
        "orders": len(orders), "medianstop": replays,
        "verdict": {
            "smallest_safe_start_step": min(safe) if safe else None,
            "start_step_2_share_stopping_a_near_top_trial":
                replays["2"]["share_of_orders_stopping_a_near_top_trial"] if args.epochs >= 2 else None,
            "rule": f"safe = in none of {len(orders)} trial orders stops a trial whose final accuracy is within "
                    f"{args.top_margin} of the best"},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("learning_curves", "verdict")}, indent=1))
    return result


if __name__ == "__main__":
    main()
