"""Does the short standalone recipe decide issue 9's comparisons? The searched models against the peers and the
random architectures after a longer recipe.

A ``search_quality`` result (``--source``) compares them after the benchmark's 3-epoch standalone recipe. This
probe trains the same models, the peers (``--peers``) and each search seed's searched architecture (and with
``--random`` the source's random in-budget architectures), for ``--epochs`` (default 9) with training seeds
``--seeds`` on the same real dev protocol.

- ``gap_pts``: searched minus each peer (if a gap stays, the space or the search is short of that peer; if it
  closes, the short recipe favours the peer).
- ``vs_random``: searched minus the random median (as the benchmark's verdict counts it, and over each random
  architecture's mean over the seeds) and the share of random architectures below a searched one.
- ``arch_spread``: how far apart the architectures with the searched models' front end are beyond their
  trainings' noise (if not, there is nothing among them for a search to find).

Dev-val decides; heldout is reported only. Resumable (written after every model); ``--shard i/n`` trains every
n-th model into its own file, and a run without it (once the shards are done) gathers them and trains whatever
they left. Run again with more ``--peers`` or ``--seeds``, it trains only what is missing. ``--reuse`` takes an
earlier probe's trainings of the same models (name, architecture, seed; e.g. the random architectures that a newer
source shares with an older one).

    python benchmarks/recipe_probe.py [--epochs 9] [--seeds 0,1,2]
    python benchmarks/recipe_probe.py --source benchmarks/results/search_quality_wide.json --random \\
        --out benchmarks/results/recipe_probe_wide.json [--shard 0/2]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

sys.path.insert(0, str(Path(__file__).parent))
from search_quality import (  # noqa: E402
    RECIPE,
    RESULTS,
    Run,
    Settings,
    arch_spread,
    int_list,
    peer_margin,
    peers,
    real_data,
    stored_settings,
    train_standalone,
)

from nni_kws.search.evolution import arch_key  # noqa: E402
from nni_kws.space import space_by_name  # noqa: E402

PEER = "sinc-dsconv"
log = logging.getLogger("recipe_probe")


def gap_pts(models: dict[str, Any], metric: str, strategy: str, peers: Sequence[str]) -> dict[str, float | None]:
    """For each peer, the mean ``metric`` of the searched models (the source verdict's strategy) of the largest
    budget at or below the peer's MACs, as the benchmark compares them (:func:`peer_margin`), minus the peer's,
    in points."""
    gaps: dict[str, float | None] = {}
    for peer in peers:
        runs = [m for key, m in models.items() if key.split("@")[0].split("/")[:2] == ["peer", peer]]
        searched = peer_margin(models, runs[0]["costs"]["macs"], strategy, metric)[2] if runs else None
        gaps[peer] = round(100 * (searched - statistics.fmean(m[metric] for m in runs)), 2) \
            if searched is not None else None
    return gaps


def vs_random(models: dict[str, Any], metric: str, strategy: str) -> dict[str, dict[str, float]]:
    """At each budget, the searched models (the mean ``metric`` of their trainings) against the random
    architectures': minus the random median in points, over their seed-0 trainings (``minus_median_seed0_pts``,
    the benchmark verdict's count) and over each one's mean (``minus_median_arch_means_pts``; the best random
    architecture's is ``best_random_minus_median_pts``, what a perfect pick among them would reach); and how
    many random architectures' means fall below a searched architecture's, in % (``above_random_pct``, the mean
    over the searched ones)."""
    runs: dict[float, tuple[dict[str, list[tuple[int, float]]], dict[str, list[float]]]] = {}
    for m in models.values():
        random, searched = runs.setdefault(m["budget_macs"], ({}, {}))
        if m["kind"] in ("random", "random-seed"):
            random.setdefault(arch_key(m["arch"]), []).append((m["seed"], m[metric]))
        elif m["kind"] == strategy:
            searched.setdefault(arch_key(m["arch"]), []).append(m[metric])
    result = {}
    for budget, (random, searched) in runs.items():
        if not (random and searched):
            continue
        mean = statistics.fmean(acc for accs in searched.values() for acc in accs)
        random_means = [statistics.fmean(acc for _, acc in r) for r in random.values()]
        seed0 = statistics.median(acc for r in random.values() for seed, acc in r if seed == 0)
        median = statistics.median(random_means)
        above = [statistics.fmean(r < statistics.fmean(accs) for r in random_means) for accs in searched.values()]
        result[f"{budget:g}"] = {"minus_median_seed0_pts": round(100 * (mean - seed0), 2),
                                 "minus_median_arch_means_pts": round(100 * (mean - median), 2),
                                 "best_random_minus_median_pts": round(100 * (max(random_means) - median), 2),
                                 "above_random_pct": round(100 * statistics.fmean(above), 1)}
    return result


def reuse(path: Path, settings: Mapping[str, Any], archs: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Any]:
    """The trainings in the probe file ``path`` (which must have run the recipe of ``settings``) of the models
    ``archs`` names (record key -> architecture, None for a peer) with the same architecture."""
    old = json.loads(path.read_text())
    if any(old["settings"].get(k) != settings[k] for k in ("preset", *RECIPE)):
        raise SystemExit(f"--reuse {path}: a probe of another recipe; only trainings of the same recipe are reused")
    return {key: m for key, m in old["models"].items() if key in archs and m.get("arch") == archs[key]}


def shard(text: str) -> tuple[int, int]:
    """``i/n`` from the command line: this process trains models i, i+n, i+2n, ..."""
    i, n = (int(x) for x in text.split("/"))
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--shard {text}: expected i/n with 0 <= i < n")
    return i, n


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=9)
    p.add_argument("--seeds", type=int_list, default=(0, 1, 2), help="training seeds, comma-separated")
    p.add_argument("--source", default=str(RESULTS / "search_quality_paper.json"))
    p.add_argument("--out", default=str(RESULTS / "recipe_probe.json"))
    p.add_argument("--random", action="store_true", help="also train the source's random architectures")
    p.add_argument("--peers", type=lambda text: tuple(filter(None, text.split(","))), default=(PEER,),
                   help="the peers to train, comma-separated ('' for none)")
    p.add_argument("--shard", type=shard, help="i/n: train every n-th model, from the i-th, into <out>.shard<i>")
    p.add_argument("--reuse", type=Path, help="an earlier probe of the same recipe: its trainings of the same "
                                              "models (name, architecture and seed) are taken, not trained again")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    source = json.loads(Path(args.source).read_text())
    settings = dataclasses.replace(Settings(**{k: source["settings"][k] for k in ("preset", *RECIPE)}),
                                   epochs=args.epochs)
    out = Path(args.out)
    shards = sorted(out.parent.glob(f"{out.stem}.shard*{out.suffix}"))
    if args.shard:
        out = out.with_name(f"{out.stem}.shard{args.shard[0]}{out.suffix}")
    wanted = json.loads(json.dumps(dataclasses.asdict(settings)))
    for path in (out, *shards):  # Run would start over on other settings, dropping the searched models' trainings
        stored = stored_settings(json.loads(path.read_text())) if path.is_file() else wanted
        if stored != wanted:
            other = ", ".join(f"{k} {stored.get(k)} (now {v})" for k, v in wanted.items() if stored.get(k) != v)
            raise SystemExit(f"{path} holds a probe of other settings: {other}; give another --out")
    run = Run(out, settings, fresh=False)
    run.data.update(benchmark="recipe_probe", source=Path(args.source).name)
    if not args.shard:  # gather what the shards trained
        for path in shards:
            run.models.update(Run(path, settings, fresh=False).models)
        run.save()
        for path in shards:
            path.unlink()
    dm = real_data(settings)

    def of_arch(arch: dict[str, Any]) -> Callable[[], torch.nn.Module]:
        return lambda: space_by_name(settings.preset).freeze(arch)

    strategy = source["verdict"]["strategy"]  # the searched models are those of the source's verdict
    searched = {name: s for name, s in source["supernets"].items() if s["strategy"] == strategy}
    # (record key, kind, build, costs, arch, budget): a searched or random record keeps its source model's budget
    models = [(f"peer/{name}", "peer", build, costs, None, None) for name, build, costs in peers()
              if name in args.peers]
    models += [(name, strategy, of_arch(s["arch"]), s["costs"], s["arch"], s["budget_macs"])
               for name, s in searched.items()]
    if args.random:
        models += [(name, "random", of_arch(m["arch"]), m["costs"], m["arch"], m["budget_macs"])
                   for name, m in source["models"].items() if m["kind"] == "random"]
    todo = [(f"{name}@{seed}", kind, build, costs, arch, budget, seed)
            for seed in args.seeds for name, kind, build, costs, arch, budget in models]
    reused = reuse(args.reuse, wanted, {key: arch for key, _, _, _, arch, _, _ in todo}) if args.reuse else {}
    if args.shard:  # a shard trains its share of what the probe's file lacks and --reuse does not give
        done = Run(Path(args.out), settings, fresh=False).models
        todo = [t for t in todo if t[0] not in done and t[0] not in reused][args.shard[0]::args.shard[1]]
    elif reused:
        run.models.update((key, m) for key, m in reused.items() if key not in run.models)
        run.data["reused"] = {"from": args.reuse.name, "models": sorted(reused)}
        run.save()
    for i, (key, kind, build, costs, arch, budget, seed) in enumerate(todo, 1):
        if key not in run.models:
            log.info("model %d/%d: %s", i, len(todo), key)
            train_standalone(run, key, kind, budget, dm, build, costs, seed, {"arch": arch} if arch else None)
    if args.shard:
        return run.data
    summaries = {"gap_pts": lambda records, metric: gap_pts(records, metric, strategy, args.peers),
                 "vs_random": lambda records, metric: vs_random(records, metric, strategy),
                 "arch_spread": lambda records, metric: arch_spread(records, metric, strategy)}
    for name, summary in summaries.items():
        run.data[name] = {f"{epochs}_epochs{suffix}": {m: summary(records, f"{m}_acc") for m in ("val", "heldout")}
                          for epochs, suffix, records in ((args.epochs, "", run.models),
                                                         (source["settings"]["epochs"], "_source", source["models"]))}
    run.save()
    print(json.dumps({name: run.data[name] for name in summaries}, indent=1))
    return run.data


if __name__ == "__main__":
    main()
