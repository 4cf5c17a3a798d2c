"""Architectures found by this project's own benchmarks, kept as literal dicts next to the space.

As NNI's hub spaces keep their searched models (``ProxylessNAS.load_searched_model``), so a user can train one
without rerunning a search. Each entry names the benchmark result and model key that found it; what it scored
is read there (``benchmarks/results``), not repeated here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from torch import nn

from .arch import build_model, space_by_name
from .labels import depth_label, expand_label, kernel_label

__all__ = ["SearchedArch", "SEARCHED", "load_searched_model"]


@dataclass(frozen=True)
class SearchedArch:
    """A searched architecture of the space named ``space`` (a preset, or preset-frontend such as
    ``onestride-mfcc``), found under ``budget_macs`` by the run recorded at ``source`` (``<results file>:<model
    key>``)."""

    space: str
    arch: Mapping[str, Any]
    budget_macs: float
    source: str


def _stages(*blocks: tuple[int, list[tuple[int, int]]]) -> dict[str, int]:
    """``{s<i>_depth, s<i>_i<j>_e, s<i>_i<j>_k}`` from ``(depth, [(expansion, kernel), ...])`` per stage."""
    arch = {}
    for s, (depth, layers) in enumerate(blocks):
        arch[depth_label(s)] = depth
        for i, (e, k) in enumerate(layers):
            arch[expand_label(s, i)], arch[kernel_label(s, i)] = e, k
    return arch


#: Name -> searched architecture: the verdict strategy's (sandwich) model of search seed 0 at each budget of
#: ``benchmarks/search_quality.py`` on the real dev/heldout protocol.
SEARCHED: dict[str, SearchedArch] = {
    "compact-3.3m": SearchedArch(
        "compact", {"frontend": "sinc", **_stages((1, [(1, 3), (2, 5)]), (1, [(2, 7), (2, 7)]), (2, [(1, 5), (2, 5)]))},
        3.28e6, "search_quality.json:sandwich/3.28e+06/s0/retrained"),
    "compact-4.1m": SearchedArch(
        "compact", {"frontend": "sinc", **_stages((2, [(3, 5), (2, 5)]), (1, [(3, 7), (2, 7)]), (2, [(1, 7), (1, 3)]))},
        4.14e6, "search_quality.json:sandwich/4.14e+06/s0/retrained"),
    "wide-25m": SearchedArch(
        "wide", {"frontend": "sinc", **_stages((1, [(1, 25), (2, 3)]), (1, [(1, 15), (1, 9), (1, 25)]),
                                               (1, [(2, 25), (1, 9), (2, 15)]), (2, [(2, 25), (2, 3)]))},
        2.49e7, "search_quality_wide_folds.json:sandwich/2.49e+07/s0/retrained"),
    "onestride-mfcc-3.5m": SearchedArch(
        "onestride-mfcc", _stages((1, [(3, 7), (3, 3)]), (1, [(2, 7), (3, 7)]), (1, [(1, 5), (3, 3)])),
        3.49e6, "search_quality_onestride_mfcc.json:sandwich/3.49e+06/s0/retrained"),
}


def load_searched_model(name: str) -> nn.Module:
    """A plain torch model (fresh weights) of the searched architecture ``name`` (a key of :data:`SEARCHED`)."""
    if name not in SEARCHED:
        raise KeyError(f"no searched architecture {name!r}; known: {', '.join(SEARCHED)}")
    searched = SEARCHED[name]
    return build_model(searched.arch, space_by_name(searched.space))
