"""Is 2-D convolution what puts DS-CNN-S ahead? DS-CNN-S against its own body made 1-D, on the real dev protocol.

Searched at DS-CNN-S's MACs, the 1-D space's models tie it on heldout but trail it by 4.4 points on dev-val (raw
audio) and by 6-7 over the space's MFCC front end (``search_quality_compact_raw_e9.json``, ``..._mfcc.json``).
This ablation keeps everything of DS-CNN-S (Zhang et al. 2017, :class:`nni_kws.baselines.DsCnnS`: its 10 MFCCs
below 4 kHz, the strided stem, 4 depthwise-separable blocks, dropout, the head) and makes every convolution 1-D
over time, the MFCCs becoming channels: at DS-CNN-S's width (64 channels, about its params) and widened to its
MACs (160). Each is trained with the search-quality benchmark's recipe (``--epochs``, default 9) and seeds; dev-val
decides, heldout is reported only. Written after every training and resumed.

    python benchmarks/conv2d_ablation.py [--seeds 0,1,2] [--epochs 9]
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from search_quality import RESULTS, Run, Settings, int_list, real_data, train_standalone  # noqa: E402

from nni_kws.baselines import build_baseline  # noqa: E402
from nni_kws.cost.counter import count_costs  # noqa: E402

log = logging.getLogger("conv2d_ablation")


def _conv_bn_relu1d(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv1d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups), nn.BatchNorm1d(c_out),
            nn.ReLU()]


class DsCnn1d(nn.Module):
    """DS-CNN-S with 1-D convolutions over time: the stem's 10 x 4 kernel becomes 4 taps over the 10 MFCC
    channels (stride 2), each 3 x 3 depthwise conv 3 taps; features, widths, dropout and head as DS-CNN-S's."""

    def __init__(self, channels: int = 64, blocks: int = 4, num_classes: int = 12) -> None:
        super().__init__()
        self.features = build_baseline("ds-cnn-s").features  # its MFCCs, by construction
        self.stem = nn.Sequential(*_conv_bn_relu1d(10, channels, 4, stride=2), nn.Dropout(0.2))
        self.body = nn.Sequential(*[nn.Sequential(*_conv_bn_relu1d(channels, channels, 3, groups=channels),
                                                  *_conv_bn_relu1d(channels, channels, 1)) for _ in range(blocks)])
        self.head = nn.Sequential(nn.Dropout(0.4), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                                  nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(self.features(x))))


MODELS: dict[str, Callable[[], nn.Module]] = {
    "ds-cnn-s": lambda: build_baseline("ds-cnn-s"),
    "ds-cnn-s-1d-same-width": lambda: DsCnn1d(64),
    "ds-cnn-s-1d-same-macs": lambda: DsCnn1d(160),
}


def summary(models: dict[str, Any]) -> dict[str, Any]:
    """Each model's mean over its trainings, and 2-D minus each 1-D variant in points."""
    means = {name: {metric: statistics.mean(m[metric] for k, m in models.items() if k.split("@")[0] == name)
                    for metric in ("val_acc", "heldout_acc")} for name in MODELS}
    return {"means": means, **{f"2d_minus_{name.removeprefix('ds-cnn-s-')}_pts": {
        metric: round(100 * (means["ds-cnn-s"][metric] - means[name][metric]), 2) for metric in ("val_acc",
                                                                                                 "heldout_acc")}
        for name in MODELS if name != "ds-cnn-s"}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int_list, default=(0, 1, 2))
    p.add_argument("--epochs", type=int, default=9)
    p.add_argument("--out", type=Path, default=RESULTS / "conv2d_ablation.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("pytorch_lightning", "lightning", "nni"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    settings = dataclasses.replace(Settings(), epochs=args.epochs, seeds=tuple(args.seeds))
    torch.set_num_threads(settings.threads)
    run = Run(args.out, settings, fresh=False)
    run.data["benchmark"] = "conv2d_ablation"
    dm = real_data(settings)
    costs = {name: count_costs(build()) for name, build in MODELS.items()}
    for seed in args.seeds:
        for name, build in MODELS.items():
            train_standalone(run, f"{name}@{seed}", name, None, dm, build, costs[name], seed)
    run.data["summary"] = summary(run.models)
    run.save()
    log.info("%s", run.data["summary"])
    return run.data


if __name__ == "__main__":
    main()
