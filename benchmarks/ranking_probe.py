"""Where the supernet's ranking fails (issue 9): Kendall tau of ``search_quality.json``'s supernets against a
longer standalone recipe, and of sandwich supernets trained with in-place distillation.

``search_quality.json`` holds the ranking architectures, their standalone dev-val accuracy after the
benchmark's short recipe (``epochs``, 3) and every supernet's inherited (recalibrated) dev-val accuracy of
them. This probe, on the same real dev protocol and settings:

1. trains every ranking architecture standalone for ``--epochs`` (default 10) and reports tau of the stored
   sandwich supernets against that longer reference, overall and within each front end;
2. trains sandwich supernets with in-place distillation (``SandwichOneShot(inplace_distill=True)``) for
   ``--distill-seeds`` and reports their tau against both references.

Resumable (every model is written when it finishes). Writes ``benchmarks/results/ranking_probe.json``.

    python benchmarks/ranking_probe.py [--epochs 10] [--distill-seeds 0,1,2]
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).parent))
from search_quality import RESULTS, Settings, real_data  # noqa: E402

from nni_kws.cost import CostModel  # noqa: E402
from nni_kws.data.paths import shared_data_dir  # noqa: E402
from nni_kws.files import write_json  # noqa: E402
from nni_kws.search import ResourcePenalty, calibration_batches, run_search  # noqa: E402
from nni_kws.search.evolution import CandidateScorer, arch_key  # noqa: E402
from nni_kws.space import build_model, build_space  # noqa: E402
from nni_kws.training import accuracy, fit, seed_everything  # noqa: E402

log = logging.getLogger("ranking_probe")


def tau(x: Mapping[str, float], y: Mapping[str, float], keys: Sequence[str]) -> float | None:
    keys = [k for k in keys if k in x and k in y]
    return round(float(kendalltau([x[k] for k in keys], [y[k] for k in keys]).statistic), 3) if len(keys) > 2 else None


def taus(inherited: Mapping[str, float], reference: Mapping[str, float], archs: Sequence[Mapping[str, Any]]) -> dict:
    """Tau over every architecture and within each front end (the space's one non-numeric choice)."""
    out: dict[str, Any] = {"all": tau(inherited, reference, [arch_key(a) for a in archs])}
    for frontend in sorted({a["frontend"] for a in archs}):
        out[frontend] = tau(inherited, reference, [arch_key(a) for a in archs if a["frontend"] == frontend])
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10, help="the longer standalone recipe's epochs")
    p.add_argument("--distill-seeds", type=lambda t: [int(x) for x in t.split(",") if x], default=[0, 1, 2])
    p.add_argument("--source", type=Path, default=RESULTS / "search_quality.json")
    p.add_argument("--out", type=Path, default=RESULTS / "ranking_probe.json")
    p.add_argument("--work", type=Path, default=Path("runs") / "ranking_probe")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("pytorch_lightning", "lightning", "nni"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    source = json.loads(args.source.read_text())
    s = Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in source["settings"].items()})
    torch.set_num_threads(s.threads)
    dm = real_data(s, shared_data_dir(required=True))
    archs = source["ranking_archs"]
    short = {arch_key(m["arch"]): m["val_acc"] for m in source["models"].values() if m["kind"] == "random"}
    res = json.loads(args.out.read_text()) if args.out.is_file() else {}
    res.update(benchmark="ranking_probe", source=args.source.name, settings=source["settings"], epochs=args.epochs)
    longer: dict[str, Any] = res.setdefault("standalone", {})
    for a in archs:  # 1. the longer standalone reference
        key = arch_key(a)
        if key in longer:
            continue
        seed_everything(0)
        model = build_model(a, build_space(s.preset))
        start = time.perf_counter()
        fit(model, dm.train_dataloader(), dm.val_dataloader(), epochs=args.epochs, progress=False, learning_rate=s.lr)
        longer[key] = {"val_acc": accuracy(model, dm.val_dataloader()),
                       "train_s": round(time.perf_counter() - start, 1)}
        write_json(args.out, res)
        log.info("standalone %d/%d: val %.3f", len(longer), len(archs), longer[key]["val_acc"])
    long_acc = {k: v["val_acc"] for k, v in longer.items()}

    cost_model = CostModel(build_space(s.preset))
    distilled: dict[str, Any] = res.setdefault("inplace_distill", {})
    for seed in args.distill_seeds:  # 2. sandwich supernets with in-place distillation
        if f"s{seed}" in distilled:
            continue
        start = time.perf_counter()
        result = run_search(build_space(s.preset), dm.train_dataloader(), dm.val_dataloader(), strategy="sandwich",
                            epochs=s.sandwich_epochs, penalties=[ResourcePenalty("macs", s.budgets[0], s.lam)],
                            cost_model=cost_model, learning_rate=s.lr, out_dir=args.work / f"s{seed}", seed=seed,
                            resume=True, progress=False, calib_batches=s.calib_batches, evolution=s.evolution,
                            strategy_kwargs={"inplace_distill": True})
        scorer = CandidateScorer(build_space(s.preset), result.supernet,
                                 calibration_batches(dm.train_dataloader(), s.calib_batches), dm.val_dataloader())
        distilled[f"s{seed}"] = {"search_s": round(time.perf_counter() - start, 1),
                                 "inherited_val_acc": {arch_key(a): scorer(a) for a in archs}}
        write_json(args.out, res)
        log.info("in-place distillation supernet s%d done", seed)

    plain = {name[len("sandwich/"):].split("/")[-1]: sup["ranking_inherited_val_acc"]
             for name, sup in source["supernets"].items()
             if sup["strategy"] == "sandwich" and name.startswith(f"sandwich/{s.budgets[0]:g}/")}
    rows = {f"{kind}/{seed}": {"short": taus(inh, short, archs), "long": taus(inh, long_acc, archs),
                               "inherited_mean": statistics.mean(inh.values())}
            for kind, sups in (("sandwich", plain), ("inplace_distill", {k: v["inherited_val_acc"]
                                                                         for k, v in distilled.items()}))
            for seed, inh in sups.items()}

    def mean_tau(kind: str, reference: str) -> float | None:
        values = [r[reference]["all"] for k, r in rows.items() if k.startswith(kind + "/") and r[reference]["all"]]
        return round(statistics.mean(values), 3) if values else None

    res["taus"] = rows
    res["summary"] = {
        "reference_short_vs_long_tau": taus(short, long_acc, archs),
        "sandwich_tau_short_reference": mean_tau("sandwich", "short"),
        "sandwich_tau_long_reference": mean_tau("sandwich", "long"),
        "inplace_distill_tau_short_reference": mean_tau("inplace_distill", "short"),
        "inplace_distill_tau_long_reference": mean_tau("inplace_distill", "long"),
        "standalone_val_acc_mean": {"short": statistics.mean(short[arch_key(a)] for a in archs),
                                    "long": statistics.mean(long_acc.values())},
        "definition": f"Kendall tau between inherited (recalibrated) and standalone dev-val accuracy of the "
                      f"{len(archs)} ranking architectures; short: the benchmark's {s.epochs}-epoch recipe, long: "
                      f"{args.epochs} epochs (seed 0); mean over supernet seeds",
    }
    write_json(args.out, res)
    print(json.dumps(res["summary"], indent=1))
    return res


if __name__ == "__main__":
    main()
