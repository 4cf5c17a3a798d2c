"""Class lists: the 12-class Speech Commands protocol (10 keywords, ``_silence_``, ``_unknown_``) or any keywords.

A dataset's classes are its keywords followed by ``_silence_`` and ``_unknown_`` (:func:`class_names`);
the keywords come from the dataset (:func:`dataset_keywords`: a synthesized dataset's manifest), with the
10 Speech Commands keywords as the default, so ``CLASSES`` below is the default class list.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

KEYWORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE = "_silence_"
UNKNOWN = "_unknown_"
CLASSES: tuple[str, ...] = KEYWORDS + (SILENCE, UNKNOWN)
NUM_CLASSES = len(CLASSES)
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}

# The other Speech Commands words: 20 in v1, 25 in v2 (backward ... visual).
UNKNOWN_WORDS: tuple[str, ...] = (
    "bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin", "nine",
    "one", "seven", "sheila", "six", "three", "tree", "two", "wow", "zero",
    "backward", "follow", "forward", "learn", "visual",
)
SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
BACKGROUND_NOISE_DIR = "_background_noise_"
MANIFEST = "manifest.json"


def parse_keywords(keywords: str | Sequence[str]) -> tuple[str, ...]:
    """``"marvin, lights on,hey nni"`` or a sequence -> validated keyword tuple (phrases allowed).

    Distinct means distinct when spoken: ``"yes,Yes"`` is refused, since both name one word."""
    words = keywords.split(",") if isinstance(keywords, str) else list(keywords)
    words = [" ".join(str(w).split()) for w in words]  # trim, and one space inside phrases
    words = [w for w in words if w]
    bad = [w for w in words if w.startswith(("_", ".")) or "/" in w or "\\" in w]
    if not words or bad or len({w.casefold() for w in words}) != len(words):
        given = list(keywords) if not isinstance(keywords, str) else keywords
        raise ValueError(f"keywords must be distinct (ignoring case) non-empty words or phrases without '/' and "
                         f"not starting with '_' or '.': {given!r}")
    return tuple(words)


def class_names(keywords: Sequence[str] = KEYWORDS) -> tuple[str, ...]:
    """The class list of ``keywords``: the keywords, then ``_silence_`` and ``_unknown_``."""
    return tuple(keywords) + (SILENCE, UNKNOWN)


def dataset_keywords(root: str | Path) -> tuple[str, ...]:
    """The keywords of a dataset folder: its ``manifest.json`` ``"keywords"``, else the 10 Speech Commands ones.

    A manifest of an older synthesized dataset (no ``"keywords"``) gives the Speech Commands keywords it holds.
    """
    path = Path(root) / MANIFEST
    if not path.is_file():
        return KEYWORDS
    try:
        manifest = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if "keywords" in manifest:
        return parse_keywords(manifest["keywords"])
    words = set(manifest.get("params", {}).get("words", KEYWORDS))
    return tuple(k for k in KEYWORDS if k in words) or KEYWORDS
