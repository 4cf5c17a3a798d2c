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
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).parent))
from search_quality import RESULTS, Settings, int_list, real_data  # noqa: E402

from nni_kws.baselines import build_baseline  # noqa: E402
from nni_kws.data.paths import shared_data_dir  # noqa: E402
from nni_kws.files import write_json  # noqa: E402
from nni_kws.space import build_space  # noqa: E402
from nni_kws.training import accuracy, fit, seed_everything  # noqa: E402

PEER = "sinc-dsconv"
log = logging.getLogger("recipe_probe")


def gap_pts(models: dict[str, Any], is_searched: Callable[[str, dict[str, Any]], bool], metric: str) -> float:
    """Mean ``metric`` of the searched models minus the peer's, in points."""
    def mean(picked: Callable[[str, dict[str, Any]], bool]) -> float:
        return statistics.fmean(m[metric] for k, m in models.items() if picked(k, m))

    return round(100 * (mean(is_searched) - mean(lambda key, m: key.startswith(f"peer/{PEER}"))), 2)


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
    settings = Settings(**{k: v for k, v in source["settings"].items() if k in ("preset", "lr", "batch_size",
                                                                                 "val_fraction")})
    dm = real_data(settings, shared_data_dir())
    builds: dict[str, Callable[[], torch.nn.Module]] = {f"peer/{PEER}": lambda: build_baseline(PEER)}
    for name, supernet in source["supernets"].items():
        builds[name] = lambda arch=supernet["arch"]: build_space(settings.preset).freeze(arch)
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.is_file() else {}
    if result.get("settings", {}).get("epochs") not in (None, args.epochs):
        raise SystemExit(f"{out} holds a {result['settings']['epochs']}-epoch probe; give another --out")
    result["settings"] = {"epochs": args.epochs, "lr": settings.lr, "preset": settings.preset,
                          "source": Path(args.source).name}
    models = result.setdefault("models", {})
    todo = [(f"{name}@{seed}", build) for seed in args.seeds for name, build in builds.items()]
    for i, (key, build) in enumerate(todo, 1):
        if key in models:
            continue
        seed_everything(int(key.rsplit("@", 1)[1]))
        model, start = build(), time.perf_counter()
        fit(model, dm.train_dataloader(), dm.val_dataloader(), epochs=args.epochs, progress=False,
            learning_rate=settings.lr)
        models[key] = {"val": accuracy(model, dm.val_dataloader()), "heldout": accuracy(model, dm.test_dataloader()),
                       "train_s": round(time.perf_counter() - start)}
        log.info("model %d/%d %s: %s", i, len(todo), key, models[key])
        write_json(out, result)
    result["gap_pts"] = {  # the source's 9 trainings of the verdict's searched models (kind 'sandwich')
        f"{args.epochs}_epochs": {m: gap_pts(models, lambda key, _: key.startswith("sandwich/"), m)
                                  for m in ("val", "heldout")},
        f"{source['settings']['epochs']}_epochs_source": {
            m: gap_pts(source["models"], lambda _, rec: rec["kind"] == "sandwich", f"{m}_acc")
            for m in ("val", "heldout")}}
    write_json(out, result)
    print(json.dumps(result["gap_pts"], indent=1))
    return result


if __name__ == "__main__":
    main()
