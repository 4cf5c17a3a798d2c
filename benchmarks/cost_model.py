"""Benchmark of the cost model: latency-table predictions vs measured whole models, MACs vs torch.

1. Build the latency table of a space (default preset 'small', torch-cpu, 1 thread).
2. On ``--archs`` random architectures that were not used to build it (neither harvest nor
   calibration archs), measure whole-model batch-1 latency (same clock and statistic, timed in the
   table's interleaved passes so that both see the same load from other processes) and report the
   share predicted within ±10 %.
3. On the same archs, check ``2 · macs`` against ``torch.utils.flop_counter.FlopCounterMode``'s
   conv + linear FLOPs (must agree exactly).

Each ``--variants`` entry ``clock:statistic`` repeats steps 1–2: ``wall:median`` is the plain
definition; ``cpu:min`` (thread CPU time, minimum) is robust to other processes on a shared machine.
``--run-table`` measures the table exactly as ``nni-kws run`` builds it (:data:`~nni_kws.cost.latency.RUN_TABLE`:
repeats, rounds, calibration archs, clock, statistic), so its accuracy is that of the table ``run`` uses.

    python benchmarks/cost_model.py [--preset small] [--backend torch-cpu] [--out benchmarks/results/cost_model.json]
    python benchmarks/cost_model.py --run-table   # -> benchmarks/results/cost_model_run_table.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from nni_kws.cost import CostModel, LatencyTable, make_runner, torch_conv_linear_macs
from nni_kws.cost.latency import RUN_TABLE
from nni_kws.space import PRESETS, build_space, random_arch


def test_archs(space: Any, cm: CostModel, n: int, exclude: list[dict]) -> list[tuple[int, dict]]:
    """``n`` distinct random archs (seed, arch) that are none of ``exclude``."""
    seen = [dict(a) for a in exclude]
    out: list[tuple[int, dict]] = []
    seed = 0
    while len(out) < n:
        arch = random_arch(space, seed)
        if arch not in seen:
            seen.append(arch)
            out.append((seed, arch))
        seed += 1
    return out


def run_variant(space: Any, cm: CostModel, args: argparse.Namespace, clock: str, statistic: str) -> dict[str, Any]:
    start = time.time()
    calib = [random_arch(space, 10**6 + i) for i in range(args.calibration)]  # LatencyTable.measure's seeds
    archs = test_archs(space, cm, args.archs, calib + cm.table.harvest)
    runners = {str(seed): make_runner(space.freeze(arch), (1, 16000), args.backend, args.threads)
               for seed, arch in archs}
    # The test models are timed in the table's interleaved passes (same machine load); their
    # timings are returned in meta['extra_ms'] and take no part in the table or its overhead.
    lut = LatencyTable.measure(space, args.backend, args.repeats, args.threads, args.rounds, args.calibration,
                               clock, statistic, table=cm.table, progress=not args.quiet, extra=runners)
    assert lut.meta["calibration_seeds"] == [10**6 + i for i in range(args.calibration)]
    measured = lut.meta.pop("extra_ms")
    lut_s = time.time() - start
    rows = []
    for seed, arch in archs:
        predicted, real = lut.predict(cm.units(arch)), measured[str(seed)]
        rows.append({"seed": seed, "measured_ms": round(real, 4), "predicted_ms": round(predicted, 4),
                     "rel_error": round(predicted / real - 1, 4)})
    errors = [abs(r["rel_error"]) for r in rows]
    return {
        "clock": clock, "statistic": statistic,
        "within_10pct": sum(e <= 0.10 for e in errors) / len(errors),
        "within_5pct": sum(e <= 0.05 for e in errors) / len(errors),
        "mean_abs_rel_error": statistics.fmean(errors), "max_abs_rel_error": max(errors),
        "bias": statistics.fmean(r["rel_error"] for r in rows),
        "lut": {"entries": len(lut.entries), "overhead_ms": lut.overhead_ms,
                "measure_s": round(lut_s, 1), "device": lut.device},
        "archs": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
    parser.add_argument("--backend", default="torch-cpu", choices=["torch-cpu", "onnxruntime"])
    parser.add_argument("--archs", type=int, default=50, help="test architectures (default 50)")
    parser.add_argument("--repeats", type=int, default=150, help="timings per configuration / model")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved passes the repeats are split over")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calibration", type=int, default=10, help="archs used to measure the per-model overhead")
    parser.add_argument("--variants", default="wall:median,cpu:min", help="comma-separated clock:statistic")
    parser.add_argument("--out", help="default benchmarks/results/cost_model.json (cost_model_run_table.json)")
    parser.add_argument("--run-table", action="store_true",
                        help="measure the table as `nni-kws run` does (RUN_TABLE); overrides the four options above")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 'tiny' space, 4 test archs")
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.archs, args.quiet = "tiny", 4, True
    if args.run_table:
        args.repeats, args.rounds = RUN_TABLE["repeats"], RUN_TABLE["rounds"]
        args.calibration = RUN_TABLE["calibration"]
        args.variants = f"{RUN_TABLE['clock']}:{RUN_TABLE['statistic']}"
    args.out = args.out or f"benchmarks/results/cost_model{'_run_table' if args.run_table else ''}.json"

    start = time.time()
    space = build_space(args.preset)
    cm = CostModel(space)
    result: dict[str, Any] = {"preset": args.preset, "backend": args.backend, "threads": args.threads,
                              "repeats": args.repeats, "rounds": args.rounds, "calibration": args.calibration,
                              "n_archs": args.archs, "run_table": RUN_TABLE if args.run_table else None,
                              "load_average_at_start": os.getloadavg(), "variants": {}}
    for variant in args.variants.split(","):
        clock, statistic = variant.split(":")
        result["variants"][variant] = run_variant(space, cm, args, clock, statistic)

    # MACs vs torch's FLOP counter (conv + linear FLOPs = 2 x MACs), on the same test archs
    archs = test_archs(space, cm, args.archs, cm.table.harvest)
    agree = 0
    mismatches = []
    for seed, arch in archs:
        costs = cm.exact(arch)  # MFCC extraction (frontend_macs) is outside torch's conv + linear count
        ours, torch_macs = costs["macs"] - costs["frontend_macs"], torch_conv_linear_macs(space.freeze(arch))
        agree += ours == torch_macs
        if ours != torch_macs:
            mismatches.append({"seed": seed, "ours": ours, "torch": torch_macs})
    result["macs_vs_flop_counter"] = {"archs": len(archs), "exact_agreement": agree / len(archs),
                                      "mismatches": mismatches}
    if args.run_table:
        run = next(iter(result["variants"].values()))
        result["verdict"] = {"table": "as `nni-kws run` builds it (RUN_TABLE)", "within_10pct": run["within_10pct"],
                             "mean_abs_rel_error": run["mean_abs_rel_error"], "target_within_10pct": 0.95,
                             "met": run["within_10pct"] >= 0.95}
    result["runtime_s"] = round(time.time() - start, 1)
    result["load_average_at_end"] = os.getloadavg()  # other processes share this machine's cores

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"cost model benchmark: preset {args.preset}, backend {args.backend}, {args.archs} test archs, "
          f"{args.threads} thread(s), {result['runtime_s']} s, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    for name, v in result["variants"].items():
        print(f"  latency [{name}]: {v['within_10pct']:.0%} within ±10% (target ≥95%), "
              f"{v['within_5pct']:.0%} within ±5%, mean |err| {v['mean_abs_rel_error']:.1%}, "
              f"max {v['max_abs_rel_error']:.1%}, bias "
              f"{v['bias']:+.1%}; table: {v['lut']['entries']} entries, overhead {v['lut']['overhead_ms']:.3f} ms")
    print(f"  MACs: 2·macs == FlopCounterMode conv+linear FLOPs on "
          f"{result['macs_vs_flop_counter']['exact_agreement']:.0%} of {len(archs)} archs")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
