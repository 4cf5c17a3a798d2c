"""Computed costs of the hand-designed peers (``nni_kws.baselines``), written to ``benchmarks/results/peers.json``.

Nothing is measured on data: params, MACs (conv + linear, and the feature extraction on its own line),
weights and peak activations come from :func:`nni_kws.cost.counter.count_costs`, the counter that
gives the space's ``CostModel.exact`` numbers on searched models. Accuracies are the papers' own
(``/work/shared/peers.md``), not comparable across GSC versions; ``benchmarks/search_quality.py`` trains the
peers with the project's recipe.

    python benchmarks/peer_costs.py [--out benchmarks/results/peers.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nni_kws.baselines import BASELINES, build_baseline
from nni_kws.cost.counter import count_costs
from nni_kws.cost.frontend import frontend_macs

# Published figures (from /work/shared/peers.md with its confidence tags), for orientation only.
PUBLISHED = {
    "ds-cnn-s": {"source": "Zhang et al. 2017 (Hello Edge), arXiv 1711.07128; MLPerf Tiny reference",
                 "accuracy_pct": 94.4, "accuracy_tag": "paper table as transcribed", "dataset": "GSC v1, 12 classes",
                 "paper_ops": 5.4e6, "paper_ops_unit": "2 x MAC"},
    "tc-resnet8": {"source": "Choi et al. 2019, arXiv 1904.03814",
                   "accuracy_pct": 96.1, "accuracy_tag": "unverified", "dataset": "GSC v1, 12 classes",
                   "paper_params": 66e3, "paper_ops": 3.0e6, "paper_ops_unit": "2 x MAC (FLOPs)"},
    "sinc-dsconv": {"source": "Mittermaier et al. 2020, arXiv 1911.02086 (SincConv + DSConv, groups 1)",
                    "accuracy_pct": 96.6, "accuracy_tag": "unverified", "dataset": "GSC (v1 likely), 12 classes",
                    "paper_params": 122e3},
    "bc-resnet-1": {"source": "Kim et al. 2021, arXiv 2106.04140",
                    "accuracy_pct": 96.9, "accuracy_tag": "third-party quote", "dataset": "GSC v2, 12 classes",
                    "paper_params": 9.2e3, "paper_ops": 3.6e6,
                    "paper_ops_unit": "MAC (counts ops outside conv/linear)"},
}


def peer_costs() -> dict[str, Any]:
    """``{name: {...costs, body_macs, frontend parts, published}}`` for every peer."""
    out: dict[str, Any] = {}
    for name in BASELINES:
        model = build_baseline(name)
        costs = count_costs(model)
        features = next((m for m in model.modules() if frontend_macs(m)), None)
        out[name] = {"class": type(model).__name__, **{k: v for k, v in costs.items() if v is not None},
                     "body_macs": costs["macs"] - costs["frontend_macs"],
                     "frontend_parts": frontend_macs(features) if features is not None else {},
                     "published": PUBLISHED[name]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "peers.json"))
    args = parser.parse_args(argv)
    result = {"definitions": "nni_kws.cost.exact (macs include frontend_macs: MFCC/log-mel extraction, "
                             "nni_kws.cost.frontend); batch 1, one 1 s 16 kHz clip; computed, not measured",
              "peers": peer_costs()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, c in result["peers"].items():
        print(f"{name:<12} {c['params'] / 1e3:7.1f}k params  {c['body_macs'] / 1e6:6.2f}M body MACs  "
              f"+ {c['frontend_macs'] / 1e6:5.2f}M front end = {c['macs'] / 1e6:6.2f}M")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
