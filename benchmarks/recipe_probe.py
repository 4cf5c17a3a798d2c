"""Which part loses to SincConv+DSConv (issue 9): the searched models against that peer after a longer recipe.

``search_quality_paper.json`` compares them after the benchmark's 3-epoch standalone recipe, where the peer leads
on dev-val as on heldout. This probe trains the same models, the peer and each search seed's searched architecture,
for ``--epochs`` (default 9) with training seeds ``--seeds`` on the same real dev protocol: if the gap stays, the
space (or the search) is short of the peer; if it closes, the short recipe favours the peer. Dev-val decides;
heldout is reported only. Resumable (written after every model): ``benchmarks/results/recipe_probe.json``.

    python benchmarks/recipe_probe.py [--epochs 9] [--seeds 0,1,2]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from search_quality import RECIPE, RESULTS, Run, Settings, int_list, peers, real_data, train_standalone  # noqa: E402

from nni_kws.space import build_space  # noqa: E402

PEER = "sinc-dsconv"
log = logging.getLogger("recipe_probe")


def gap_pts(models: dict[str, Any], metric: str) -> float:
    """Mean ``metric`` of the searched models (kind 'sandwich', the verdict's) minus the peer's, in points."""
    searched = [m[metric] for m in models.values() if m["kind"] == "sandwich"]
    peer = [m[metric] for key, m in models.items() if key.startswith(f"peer/{PEER}")]
    return round(100 * (statistics.fmean(searched) - statistics.fmean(peer)), 2)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=9)
    p.add_argument("--seeds", type=int_list, default=(0, 1, 2), help="training seeds, comma-separated")
    p.add_argument("--source", default=str(RESULTS / "search_quality_paper.json"))
    p.add_argument("--out", default=str(RESULTS / "recipe_probe.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    source = json.loads(Path(args.source).read_text())
    settings = dataclasses.replace(Settings(**{k: source["settings"][k] for k in ("preset", *RECIPE)}),
                                   epochs=args.epochs)
    out = Path(args.out)
    done = json.loads(out.read_text())["settings"]["epochs"] if out.is_file() else args.epochs
    if done != args.epochs:  # Run would start over and overwrite it
        raise SystemExit(f"{out} holds a {done}-epoch probe; give another --out")
    run = Run(out, settings, fresh=False)
    run.data.update(benchmark="recipe_probe", source=Path(args.source).name)
    dm = real_data(settings)
    build_peer, peer_costs = next((build, costs) for name, build, costs in peers() if name == PEER)
    models = [(f"peer/{PEER}", "peer", build_peer, peer_costs)] + [
        (name, "sandwich", lambda arch=supernet["arch"]: build_space(settings.preset).freeze(arch), supernet["costs"])
        for name, supernet in source["supernets"].items()]
    todo = [(f"{name}@{seed}", kind, build, costs, seed) for seed in args.seeds for name, kind, build, costs in models]
    for i, (key, kind, build, costs, seed) in enumerate(todo, 1):
        if key not in run.models:
            log.info("model %d/%d: %s", i, len(todo), key)
            train_standalone(run, key, kind, None, dm, build, costs, seed)
    run.data["gap_pts"] = {f"{epochs}_epochs{suffix}": {m: gap_pts(records, f"{m}_acc") for m in ("val", "heldout")}
                           for epochs, suffix, records in ((args.epochs, "", run.models),
                                                          (source["settings"]["epochs"], "_source", source["models"]))}
    run.save()
    print(json.dumps(run.data["gap_pts"], indent=1))
    return run.data


if __name__ == "__main__":
    main()
