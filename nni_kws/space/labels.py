"""The label grammar of :class:`~nni_kws.space.KwsSpace`'s choices, defined once.

The space, architecture summaries, the cost table and the strategies all name or read a stage's depth
(``s{stage}_depth``), its searched stride (``s{stage}_stride``) and its blocks (coarse ``s{stage}_i{block}``,
fine ``..._k`` kernel and ``..._e`` expansion) through these functions.
"""
from __future__ import annotations

import re
from typing import Literal, NamedTuple

__all__ = ["FRONTEND_LABEL", "StageLabel", "depth_label", "stride_label", "block_label", "kernel_label",
           "expand_label", "parse_label", "label_kind"]

#: Label of the front-end choice (``frontend="raw"``: SincConv or a learned conv) in an architecture dict.
FRONTEND_LABEL = "frontend"

_STAGE_LABEL = re.compile(r"s(\d+)_(?:(depth|stride)|i(\d+)(?:_([ke]))?)")
_BLOCK_KINDS = {None: "block", "k": "kernel", "e": "expand"}


class StageLabel(NamedTuple):
    """What a stage label names: ``kind`` of stage ``stage`` (and of block ``block`` for block labels)."""
    kind: Literal["depth", "stride", "block", "kernel", "expand"]
    stage: int
    block: int | None = None


def depth_label(stage: int) -> str:
    """How many blocks stage ``stage`` runs (ProxylessNAS' Zero op on whole blocks)."""
    return f"s{stage}_depth"


def stride_label(stage: int) -> str:
    """The searched stride of stage ``stage``'s first block."""
    return f"s{stage}_stride"


def block_label(stage: int, block: int) -> str:
    """A block's whole-block choice in the coarse space (e.g. ``'k5e2'``); the stem of its fine labels."""
    return f"s{stage}_i{block}"


def kernel_label(stage: int, block: int) -> str:
    """A block's depthwise kernel size (fine space)."""
    return f"{block_label(stage, block)}_k"


def expand_label(stage: int, block: int) -> str:
    """A block's expansion ratio (fine space)."""
    return f"{block_label(stage, block)}_e"


def parse_label(label: str) -> StageLabel | None:
    """The :class:`StageLabel` of ``label``, or None for a label outside the stage grammar (the front end)."""
    m = _STAGE_LABEL.fullmatch(label)
    if m is None:
        return None
    stage_kind, block, block_kind = m.group(2), m.group(3), m.group(4)
    if stage_kind:
        return StageLabel(stage_kind, int(m.group(1)))  # type: ignore[arg-type]
    return StageLabel(_BLOCK_KINDS[block_kind], int(m.group(1)), int(block))  # type: ignore[arg-type]


def label_kind(label: str) -> str | None:
    """The ``kind`` of a stage label (``'depth'``, ``'stride'``, ...), None outside the stage grammar."""
    parsed = parse_label(label)
    return parsed.kind if parsed else None
