"""Is there anything in a space for a search to find at a budget? Its random in-budget architectures, each trained
a few times with ``search_quality``'s recipe: how far apart they are beyond the noise of their trainings.

A ``search_quality`` run judges a space in hours (three searches, their finalists, the random baseline, the
peers); this screen takes minutes. Where the in-budget candidates all score alike, no search can clear their
median by much, however well it ranks (issue 9's 2-point margin at 25M MACs). For each space of ``--spaces``
(a space name: ``wide-sinc`` is ``wide`` with the SincConv front end fixed), the ``--random`` architectures
``search_quality`` draws at ``--budget`` are trained with ``--seeds``, under the same record keys, so a later
``search_quality`` run of that space and budget reuses them. Per front end and metric (dev-val, heldout):
:func:`search_quality.arch_spread` and the median and best of the architectures' mean accuracy. Dev only
trains and validates; heldout is reported. One file per space, resumable (written after every training)::

    python benchmarks/space_spread.py --spaces wide-sinc,widekernels-sinc,paper-sinc
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

sys.path.insert(0, str(Path(__file__).parent))
from search_quality import (  # noqa: E402
    RESULTS,
    Run,
    Settings,
    arch_spread,
    int_list,
    random_in_budget,
    random_key,
    real_data,
    train_random,
)

from nni_kws.cost import CostModel  # noqa: E402
from nni_kws.search.evolution import arch_key  # noqa: E402
from nni_kws.space import FRONTEND_LABEL, parse_space_name, space_by_name  # noqa: E402

log = logging.getLogger("space_spread")


def spread(models: Mapping[str, Any], fixed_front_end: str) -> dict[str, dict[str, dict[str, float]]]:
    """Per metric and front end (``fixed_front_end`` where the space does not search it): the architectures'
    :func:`arch_spread` (``between_std_pts``: their spread beyond training noise), the median of their mean
    accuracy (``median_pct``) and the best mean minus that median (``best_minus_median_pts``, what a perfect
    pick among them would gain)."""
    by_front_end: dict[str, dict[str, Any]] = {}
    for key, m in models.items():
        by_front_end.setdefault(m["arch"].get(FRONTEND_LABEL, fixed_front_end), {})[key] = m
    result: dict[str, dict[str, dict[str, float]]] = {}
    for metric in ("val_acc", "heldout_acc"):
        for front_end, subset in sorted(by_front_end.items()):
            archs: dict[str, list[float]] = {}
            for m in subset.values():
                archs.setdefault(arch_key(m["arch"]), []).append(m[metric])
            means = [statistics.fmean(accs) for accs in archs.values()]
            row = next(iter(arch_spread(subset, metric, "random").values()), {})
            result.setdefault(metric.removesuffix("_acc"), {})[front_end] = {
                **row, "median_pct": round(100 * statistics.median(means), 2),
                "best_minus_median_pts": round(100 * (max(means) - statistics.median(means)), 2)}
    return result


def screen(space: str, budget: float, n: int, seeds: Sequence[int], out: Path, dm: Any = None) -> dict[str, Any]:
    """Train the ``n`` random architectures of ``space`` at ``budget`` with ``seeds`` into ``out`` (on the real
    dev protocol unless a data module ``dm`` is given); summarise."""
    settings = Settings(preset=space, budgets=(budget,), random=n, ranking_seeds=tuple(seeds[1:]))
    run = Run(out, settings, fresh=False)
    run.data["benchmark"] = "space_spread"
    cost_model = CostModel(space_by_name(space))
    archs = random_in_budget(space, cost_model, n, 0, 0.0, budget)
    dm = dm or real_data(settings)
    todo = [(a, s) for a in archs for s in seeds]
    for i, (arch, seed) in enumerate(todo, 1):
        if random_key(arch, seed) not in run.models:
            log.info("%s: training %d/%d", space, i, len(todo))
            train_random(run, arch, seed, budget, dm, cost_model)
    run.data["spread"] = spread(run.models, parse_space_name(space)[1])
    run.save()
    return run.data


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spaces", type=lambda t: tuple(filter(None, t.split(","))), required=True,
                   help="space names, comma-separated (e.g. wide-sinc,paper-sinc)")
    p.add_argument("--budget", type=float, default=24.9e6, help="MACs (default: SincConv+DSConv's 25M)")
    p.add_argument("--random", type=int, default=8, help="random in-budget architectures per space")
    p.add_argument("--seeds", type=int_list, default=(0, 1), help="training seeds, comma-separated (at least 2)")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if len(args.seeds) < 2:
        p.error("--seeds: at least 2, to tell the architectures' spread from their trainings' noise")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("pytorch_lightning", "lightning", "nni"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    results = {space: screen(space, args.budget, args.random, args.seeds, args.out_dir / f"space_spread_{space}.json")
               for space in args.spaces}
    for space, data in results.items():
        log.info("%s: %s", space, data["spread"])
    return results


if __name__ == "__main__":
    main()
