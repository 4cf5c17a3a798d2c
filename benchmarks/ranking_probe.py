"""Where the supernet's ranking fails (issue 9): Kendall tau of sandwich supernets against standalone references
that differ in length and training seeds, and of supernet variants (in-place distillation, a longer schedule).

``search_quality.json`` holds the ranking architectures and their standalone dev-val / heldout accuracy after the
benchmark's short recipe (``epochs``, 3, training seed 0). This probe, on the same real dev protocol and settings:

1. references: every ranking architecture trained standalone for ``--epochs`` (default 10, seed 0: ``long``),
   and with the short recipe again for ``--reference-seeds`` (``short_mean``: the mean over seed 0 and those, a
   reference with less training noise than ``short``);
2. supernets: for each of ``--variants`` (:data:`VARIANTS`: the benchmark's plain sandwich supernet, in-place
   distillation, twice its epochs) and ``--seeds``, a sandwich supernet and the inherited (recalibrated)
   accuracy of every ranking architecture;
3. tau of every supernet against every reference, on dev-val (what a search may use) and heldout (reported only),
   overall and within each front end.

Resumable (every model is written when it finishes). Writes ``benchmarks/results/ranking_probe.json``.

    python benchmarks/ranking_probe.py [--epochs 10] [--reference-seeds 1,2] [--variants sandwich,sandwich_x2]
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
from search_quality import RESULTS, Settings, fit_and_score, int_list, real_data  # noqa: E402

from nni_kws.cost import CostModel  # noqa: E402
from nni_kws.files import write_json  # noqa: E402
from nni_kws.search import ResourcePenalty, calibration_batches, run_search  # noqa: E402
from nni_kws.search.evolution import CandidateScorer, arch_key  # noqa: E402
from nni_kws.space import build_model, build_space  # noqa: E402

log = logging.getLogger("ranking_probe")

#: Supernet variants: ``(SandwichOneShot keyword arguments, multiple of the benchmark's sandwich epochs)``.
VARIANTS: dict[str, tuple[dict[str, Any], int]] = {
    "sandwich": ({}, 1),
    "inplace_distill": ({"inplace_distill": True}, 1),
    "sandwich_x2": ({}, 2),
}
SPLITS = ("val", "heldout")


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
    p.add_argument("--reference-seeds", type=int_list, default=(1, 2),
                   help="more training seeds of the short recipe, averaged with the benchmark's seed 0")
    p.add_argument("--variants", type=lambda t: [v for v in t.split(",") if v], default=list(VARIANTS))
    p.add_argument("--seeds", type=int_list, default=(0, 1, 2), help="supernet seeds of every variant")
    p.add_argument("--source", type=Path, default=RESULTS / "search_quality.json")
    p.add_argument("--out", type=Path, default=RESULTS / "ranking_probe.json")
    p.add_argument("--work", type=Path, default=Path("runs") / "ranking_probe")
    args = p.parse_args(argv)
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        p.error(f"--variants: unknown {sorted(unknown)}; choose from {sorted(VARIANTS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("pytorch_lightning", "lightning", "nni"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    source = json.loads(args.source.read_text())
    s = Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in source["settings"].items()})
    torch.set_num_threads(s.threads)
    dm = real_data(s)
    loaders = {"val": dm.val_dataloader(), "heldout": dm.test_dataloader()}
    archs = source["ranking_archs"]
    res = json.loads(args.out.read_text()) if args.out.is_file() else {}
    res.update(benchmark="ranking_probe", source=args.source.name, settings=source["settings"], epochs=args.epochs)

    def standalone(store: dict[str, Any], epochs: int, seed: int, label: str) -> None:
        """Train every ranking architecture missing from ``store``; record val and heldout accuracy."""
        for a in archs:
            key = arch_key(a)
            if key in store:
                continue
            store[key] = fit_and_score(lambda: build_model(a, build_space(s.preset)), seed, dm, epochs, s.lr)
            write_json(args.out, res)
            log.info("%s %d/%d: val %.3f", label, len(store), len(archs), store[key]["val_acc"])

    standalone(res.setdefault("standalone", {}), args.epochs, 0, f"standalone {args.epochs} epochs")
    short_seeds = res.setdefault("standalone_short_seeds", {})
    for seed in args.reference_seeds:
        standalone(short_seeds.setdefault(f"s{seed}", {}), s.epochs, seed, f"standalone {s.epochs} epochs, seed {seed}")

    cost_model = CostModel(build_space(s.preset))
    supernets: dict[str, Any] = res.setdefault("supernets", {})
    for variant in args.variants:
        kwargs, multiple = VARIANTS[variant]
        for seed in args.seeds:
            name = f"{variant}/s{seed}"
            if name in supernets:
                continue
            start, epochs = time.perf_counter(), s.sandwich_epochs * multiple
            result = run_search(build_space(s.preset), dm.train_dataloader(), dm.val_dataloader(),
                                strategy="sandwich", epochs=epochs,
                                penalties=[ResourcePenalty("macs", s.budgets[0], s.lam)], cost_model=cost_model,
                                learning_rate=s.lr, out_dir=args.work / variant / f"s{seed}", seed=seed, resume=True,
                                progress=False, calib_batches=s.calib_batches, evolution=s.evolution,
                                strategy_kwargs=kwargs)
            calib = calibration_batches(dm.train_dataloader(), s.calib_batches)
            scorers = {split: CandidateScorer(build_space(s.preset), result.supernet, calib, loader)
                       for split, loader in loaders.items()}
            supernets[name] = {"search_s": round(time.perf_counter() - start, 1), "epochs": epochs,
                               "inherited": {split: {arch_key(a): score(a) for a in archs}
                                             for split, score in scorers.items()}}
            write_json(args.out, res)
            log.info("supernet %s done (%.0f s)", name, supernets[name]["search_s"])

    def reference(split: str, records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        return {k: statistics.mean(r[k][f"{split}_acc"] for r in records) for k in records[0]}

    short0 = {arch_key(m["arch"]): m for m in source["models"].values() if m["kind"] == "random"}
    references = {"short": [short0], "short_mean": [short0, *short_seeds.values()], "long": [res["standalone"]]}
    rows = {name: {f"{ref}/{split}": taus(sup["inherited"][split], reference(split, records), archs)
                   for ref, records in references.items() for split in SPLITS}
            | {"inherited_val_mean": statistics.mean(sup["inherited"]["val"].values())}
            for name, sup in supernets.items()}
    stored = {name.split("/")[-1]: sup["ranking_inherited_val_acc"] for name, sup in source["supernets"].items()
              if sup["strategy"] == "sandwich" and name.startswith(f"sandwich/{s.budgets[0]:g}/")}
    res["reproduced_max_abs_diff_val"] = max(
        (abs(stored[seed][k] - v) for name, sup in supernets.items() if name.startswith("sandwich/")
         for seed in [name.split("/")[-1]] if seed in stored for k, v in sup["inherited"]["val"].items()), default=None)
    res["taus"] = rows
    res["summary"] = {
        "mean_tau": {variant: {col: round(statistics.mean(r[col]["all"] for n, r in rows.items()
                                                          if n.startswith(variant + "/")), 3)
                               for col in next(iter(rows.values())) if col != "inherited_val_mean"}
                     for variant in dict.fromkeys(n.split("/")[0] for n in rows)},
        "reference_vs_reference_tau": {f"{a}~{b}/{split}": taus(reference(split, references[a]),
                                                                reference(split, references[b]), archs)
                                       for a, b in (("short", "long"), ("short_mean", "long"), ("short", "short_mean"))
                                       for split in SPLITS},
        "definition": f"Kendall tau between inherited (recalibrated) and standalone accuracy of the {len(archs)} "
                      f"ranking architectures; short: the benchmark's {s.epochs}-epoch recipe (seed 0), short_mean: "
                      f"its mean over seeds 0 and {args.reference_seeds}, long: {args.epochs} epochs (seed 0); val: "
                      "dev validation part, heldout: reported only; mean over supernet seeds",
    }
    write_json(args.out, res)
    print(json.dumps(res["summary"], indent=1))
    return res


if __name__ == "__main__":
    main()
