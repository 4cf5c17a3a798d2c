"""The keyword-spotting search space: raw-audio (or MFCC) front end + searchable 1-D MBConv stages."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import nni
import torch
from nni.nas.nn.pytorch import LayerChoice, ModelSpace, MutableLinear, Repeat
from torch import nn

from .blocks import ConvFrontEnd, MaybeIntChoice, MBConv1d, MfccFrontEnd, SincFrontEnd
from .labels import FRONTEND_LABEL, block_label, depth_label, expand_label, kernel_label, stride_label
from .mixed_ops import oneshot_hooks

__all__ = ["KwsSpace", "StagePlan", "PRESETS"]

FRONTENDS = ("raw", "sinc", "conv", "mfcc")


@dataclass(frozen=True)
class StagePlan:
    """Geometry of one stage, independent of the sampled architecture (for the cost model)."""
    index: int
    in_channels: int
    out_channels: int
    strides: tuple[int, ...]  # candidate strides of the stage's first block (one entry: not searched)
    in_length: int  # lengths along the smallest strides (the longest sequences); the cost model reads
    out_length: int  # every path's real shapes
    max_depth: int


def _choice(label: str, values: Sequence[Any]) -> Any:
    """A labelled categorical, or the plain value when there is nothing to choose."""
    return values[0] if len(values) == 1 else nni.choice(label, list(values))


class KwsSpace(ModelSpace):
    """End-to-end keyword-spotting space after Peter, Roth & Pernkopf (arXiv 2104.06666).

    A front end turns 1 s of 16 kHz audio into a ``(frontend_channels, T)`` sequence; then
    stages of 1-D MBConv blocks (ProxylessNAS-style) and global pooling feed a linear classifier.

    Searched (labels named in :mod:`.labels`), per block ``s{stage}_i{index}``: depthwise kernel size (``_k``) and
    expansion ratio (``_e``); per stage: depth (``s{stage}_depth``, 1 .. ``depths[stage]``, the ProxylessNAS
    Zero op on whole blocks) and, where ``strides[stage]`` lists candidates, the stride of its first block
    (``s{stage}_stride``: how often the time axis halves; path-sampling strategies only, as a weighted mix of
    sequences of different lengths does not exist); with ``frontend='raw'`` also ``frontend`` ∈ {sinc, conv}. With
    ``coarse=True`` each block is one ``LayerChoice`` of whole blocks ``k{k}e{e}`` (as in NNI's
    ProxylessNAS hub), which Proxyless needs because it has no mixed operations.

    Parameters
    ----------
    frontend
        ``'raw'`` (search SincConv vs plain conv), ``'sinc'``, ``'conv'`` or ``'mfcc'``.
    frontend_channels, frontend_kernel, frontend_stride, frontend_pool
        Filters, filter length, stride and average-pool size of the raw-audio front end
        (defaults: 40 filters of 101 taps, stride 8, pool 4 → 40 × 500 from 16,000 samples).
    n_mfcc
        MFCC coefficients for ``frontend='mfcc'`` (40 ms window, 20 ms hop → 51 frames).
    widths, depths, strides
        Output channels, maximum number of blocks and stride of the first block, per stage; a stride may be a
        sequence of candidates.
    kernel_sizes, expand_ratios
        Candidate depthwise kernel sizes (odd) and expansion ratios for every block.
    num_classes, dropout, input_samples
        Classifier size, dropout before it, clip length in samples.
    """

    def __init__(
        self,
        frontend: str = "raw",
        frontend_channels: int = 40,
        frontend_kernel: int = 101,
        frontend_stride: int = 8,
        frontend_pool: int = 4,
        n_mfcc: int = 40,
        widths: Sequence[int] = (48, 64, 96, 128),
        depths: Sequence[int] = (2, 3, 3, 2),
        strides: Sequence[int | Sequence[int]] = (2, 2, 2, 2),
        kernel_sizes: Sequence[int] = (3, 5, 7, 9),
        expand_ratios: Sequence[int] = (1, 2, 4),
        coarse: bool = False,
        num_classes: int = 12,
        dropout: float = 0.0,
        input_samples: int = 16000,
    ) -> None:
        super().__init__()
        _check_config(frontend, widths, depths, strides, kernel_sizes, expand_ratios)
        self.frontend = self._make_frontend(frontend, frontend_channels, frontend_kernel,
                                            frontend_stride, frontend_pool, n_mfcc)
        self.stage_plans = stage_plans(frontend, frontend_channels, frontend_stride, frontend_pool,
                                       widths, depths, strides, input_samples)
        self.stages = nn.Sequential(*[
            self._make_stage(plan, kernel_sizes, expand_ratios, coarse) for plan in self.stage_plans])
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = MutableLinear(widths[-1], num_classes)

    @staticmethod
    def _make_frontend(kind: str, channels: int, kernel: int, stride: int, pool: int, n_mfcc: int) -> nn.Module:
        if kind == "mfcc":
            return MfccFrontEnd(channels, n_mfcc)
        candidates = {"sinc": lambda: SincFrontEnd(channels, kernel, stride, pool),
                      "conv": lambda: ConvFrontEnd(channels, kernel, stride, pool)}
        if kind == "raw":
            return LayerChoice({name: make() for name, make in candidates.items()}, label=FRONTEND_LABEL)
        return candidates[kind]()

    @staticmethod
    def _make_stage(plan: StagePlan, kernel_sizes: Sequence[int], expand_ratios: Sequence[int],
                    coarse: bool) -> nn.Module:
        def block(i: int) -> nn.Module:
            in_ch, stride = ((plan.in_channels, _choice(stride_label(plan.index), plan.strides)) if i == 0
                             else (plan.out_channels, 1))
            if coarse:
                return LayerChoice({f"k{k}e{e}": MBConv1d(in_ch, plan.out_channels, k, e, stride)
                                    for k in kernel_sizes for e in expand_ratios}, label=block_label(plan.index, i))
            kernel: MaybeIntChoice = _choice(kernel_label(plan.index, i), kernel_sizes)
            expand: MaybeIntChoice = _choice(expand_label(plan.index, i), expand_ratios)
            return MBConv1d(in_ch, plan.out_channels, kernel, expand, stride)

        if plan.max_depth == 1:
            return nn.Sequential(block(0))
        return Repeat(block, (1, plan.max_depth), label=depth_label(plan.index))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.frontend(x))
        return self.classifier(self.dropout(self.pool(x).flatten(1)))

    def extra_oneshot_hooks(self, strategy: Any) -> list:
        """Mutation hooks that give every one-shot strategy the 1-D mixed operations it lacks."""
        return oneshot_hooks(strategy)


def _candidates(stride: int | Sequence[int]) -> tuple[int, ...]:
    """A stage's stride candidates: ``2`` -> ``(2,)``, ``(1, 2)`` -> ``(1, 2)``."""
    return tuple(stride) if isinstance(stride, Sequence) else (stride,)


def _check_config(frontend: str, widths: Sequence[int], depths: Sequence[int], strides: Sequence[int | Sequence[int]],
                  kernel_sizes: Sequence[int], expand_ratios: Sequence[int]) -> None:
    if frontend not in FRONTENDS:
        raise ValueError(f"frontend must be one of {FRONTENDS}, got {frontend!r}")
    if not (len(widths) == len(depths) == len(strides)) or not widths:
        raise ValueError(f"widths, depths and strides need one entry per stage, got {widths}, {depths}, {strides}")
    if any(d < 1 for d in depths) or any(w < 1 for w in widths):
        raise ValueError("widths and depths must be positive")
    for i, stride in enumerate(strides):
        candidates = _candidates(stride)
        if not candidates or not all(isinstance(c, int) and c >= 1 for c in candidates):
            raise ValueError(f"strides[{i}] must be a positive int or a sequence of them, got {stride!r}")
    if not kernel_sizes or any(k % 2 == 0 or k < 1 for k in kernel_sizes):
        raise ValueError(f"kernel_sizes must be odd positive ints ('same' padding), got {kernel_sizes}")
    if not expand_ratios or any(e < 1 for e in expand_ratios):
        raise ValueError(f"expand_ratios must be positive ints, got {expand_ratios}")


def frontend_length(frontend: str, stride: int, pool: int, input_samples: int) -> int:
    """Sequence length the front end produces (MFCC: centred STFT with a 320-sample hop)."""
    if frontend == "mfcc":
        return input_samples // 320 + 1
    return ((input_samples - 1) // stride + 1) // pool


def stage_plans(frontend: str, frontend_channels: int, frontend_stride: int, frontend_pool: int,
                widths: Sequence[int], depths: Sequence[int], strides: Sequence[int | Sequence[int]],
                input_samples: int) -> list[StagePlan]:
    """Channel and length bookkeeping of every stage ('same' padding: out = ceil(in / stride))."""
    length = frontend_length(frontend, frontend_stride, frontend_pool, input_samples)
    in_ch, plans = frontend_channels, []
    for i, (width, depth, stride) in enumerate(zip(widths, depths, strides)):
        candidates = _candidates(stride)
        out_len = (length - 1) // min(candidates) + 1
        plans.append(StagePlan(i, in_ch, width, candidates, length, out_len, depth))
        in_ch, length = width, out_len
    return plans


# Named configurations: 'paper' is the default space; 'small' keeps the 10-minute CPU demo honest;
# 'compact' is 'small' with a front end of stride 20, so its MAC range reaches below the smallest
# hand-designed peers of nni_kws.baselines (for comparisons at their cost); 'wide' is 'paper' with the
# SincConv+DSConv peer's ingredients, which 'paper' lacks (depthwise kernels up to 25, blocks up to 160
# wide), to search at that peer's MACs; 'onestride' is 'compact' with wider stages that halve the time axis
# once, as DS-CNN-S does, for the MFCC front end's 51 frames (three halvings leave 7); 'widestride' is 'wide' over
# a front end of half the time resolution (250 frames) whose stages each choose to halve the time axis or not, so
# that at that peer's MACs a network trades time resolution against block size; 'widekernels' is 'wide' with every
# kernel size of 'paper' and 'wide', so that at that peer's MACs a network trades receptive field against block
# size; 'tiny' is for tests.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "small": dict(frontend_channels=24, frontend_kernel=101, frontend_stride=10, frontend_pool=4,
                  widths=(32, 48, 64), depths=(2, 2, 2), strides=(2, 2, 2),
                  kernel_sizes=(3, 5, 7), expand_ratios=(1, 2, 3)),
    "compact": dict(frontend_channels=24, frontend_kernel=101, frontend_stride=20, frontend_pool=4,
                    widths=(32, 48, 64), depths=(2, 2, 2), strides=(2, 2, 2),
                    kernel_sizes=(3, 5, 7), expand_ratios=(1, 2, 3)),
    "wide": dict(widths=(64, 96, 128, 160), kernel_sizes=(3, 9, 15, 25)),
    "widekernels": dict(widths=(64, 96, 128, 160), kernel_sizes=(3, 5, 7, 9, 15, 25)),
    "widestride": dict(frontend_stride=16, widths=(64, 96, 128, 160), kernel_sizes=(3, 9, 15, 25),
                       strides=((1, 2), (1, 2), (1, 2), (1, 2))),
    "onestride": dict(frontend_channels=24, frontend_kernel=101, frontend_stride=20, frontend_pool=4,
                      widths=(64, 96, 128), depths=(2, 2, 2), strides=(2, 1, 1),
                      kernel_sizes=(3, 5, 7), expand_ratios=(1, 2, 3)),
    "tiny": dict(frontend_channels=8, frontend_kernel=33, frontend_stride=16, frontend_pool=4,
                 widths=(8, 12), depths=(1, 2), strides=(2, 2), kernel_sizes=(3, 5), expand_ratios=(1, 2)),
}
