"""Benchmark of the example configs' Medianstop assessor against real learning curves.

1. Train ``--archs`` random architectures of ``--preset`` for ``--epochs`` epochs, as the trials of
   ``examples/nnictl/tpe.yml`` do (default synthesized dataset, the trial's defaults), and record
   the validation accuracy after every epoch (the intermediate results a trial reports).
2. Replay NNI's own ``MedianstopAssessor`` over these curves in trial order (concurrency 1, as in
   ``tpe.yml``: a stopped trial ends there, a finished one joins the median) for every
   ``start_step``, and count the trials it stops, the epochs it saves, and whether it stops a trial
   whose final accuracy is within ``--top-margin`` of the best final accuracy (a wrong decision).

The verdict names the smallest ``start_step`` that stops no trial that would have ended near the top.

    python benchmarks/assessor.py [--archs 8] [--epochs 5] [--out benchmarks/results/assessor.json]
    python benchmarks/assessor.py --quick   # 3 tiny archs on a 3-speaker set, seconds
"""
from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from nni.algorithms.hpo.medianstop_assessor import MedianstopAssessor
from nni.assessor import AssessResult

from nni_kws.data.cache import shared_default_dataset
from nni_kws.nnictl.train_trial import run_trial
from nni_kws.space import random_arch, space_by_name


def learning_curve(arch: dict[str, Any], data: Path, preset: str, epochs: int, max_per_class: int | None) -> list[float]:
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
    p.add_argument("--out", default="benchmarks/results/assessor.json")
    p.add_argument("--quick", action="store_true", help="3 tiny archs, 3 epochs, 3 speakers")
    args = p.parse_args(argv)
    if args.quick:
        args.preset, args.archs, args.epochs, args.speakers, args.max_per_class = "tiny", 3, 3, 3, 4
    torch.set_num_threads(1)
    data = shared_default_dataset(progress=False, **({"speakers": args.speakers} if args.speakers else {}))
    space = space_by_name(args.preset)
    archs = [random_arch(space, seed=s) for s in range(args.archs)]
    start = time.time()
    curves = [learning_curve(a, data, args.preset, args.epochs, args.max_per_class) for a in archs]
    finals = [c[-1] for c in curves]
    best = max(finals)
    chance = 1 / 12  # 10 keywords + unknown + silence
    replays = {}
    for start_step in range(0, args.epochs + 1):
        stopped = replay_medianstop(curves, start_step)
        wrong = [i for i, at in enumerate(stopped) if at is not None and finals[i] >= best - args.top_margin]
        replays[str(start_step)] = {
            "stopped_at": stopped, "stopped": sum(at is not None for at in stopped),
            "epochs_saved": sum(args.epochs - at for at in stopped if at is not None),
            "stopped_near_top": wrong}
    safe = [int(s) for s, r in replays.items() if not r["stopped_near_top"]]
    result = {
        "benchmark": "assessor", "preset": args.preset, "epochs": args.epochs, "archs": archs,
        "dataset": str(data), "max_per_class": args.max_per_class, "chance_accuracy": chance,
        "learning_curves": curves, "final_accuracy": finals, "train_s": round(time.time() - start, 1),
        "medianstop": replays,
        "verdict": {
            "smallest_safe_start_step": min(safe) if safe else None,
            "start_step_2_stops": replays["2"]["stopped"] if args.epochs >= 2 else None,
            "rule": f"safe = stops no trial whose final accuracy is within {args.top_margin} of the best"},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("learning_curves", "verdict")}, indent=1))
    return result


if __name__ == "__main__":
    main()
