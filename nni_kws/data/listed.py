"""Datasets defined by a list file of relative clip paths (the real-speech protocols, or a user's own folder).

A list file has one path per line, relative to a root folder, in the layout ``<class>/<file>.wav``:
the class is the first folder (a keyword, ``_silence_``, ``_unknown_``; any other word folder counts
as ``_unknown_``). ``gsc-v2-test-splits/dev.txt`` and ``heldout.txt`` over ``gsc-v2-test/`` are such
lists; so is a user's own small labelled folder plus a list of its files.

:func:`speaker_split` splits a list into a training and a validation part that share no speaker
(the 8 hex digits before ``_nohash_``; a ``_silence_`` clip is its own speaker), deterministically:
speakers are ordered by a hash of their id, so the split depends only on the list.
"""
from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from .audio import OnError, scan_clips
from .augment import TrainAugment
from .clips import AugmentedClips, require_dir
from .labels import KEYWORDS, SILENCE, class_names

__all__ = ["ListPart", "ListedClips", "check_list_options", "label_of", "read_list", "speaker_of", "speaker_split"]

log = logging.getLogger(__name__)

ListPart = Literal["all", "train", "val"]
_SPEAKER = re.compile(r"([0-9a-fA-F]{8})_nohash_")


def read_list(list_file: str | Path) -> list[str]:
    """The relative paths of ``list_file`` (blank lines and ``#`` comments skipped, ``\\`` read as ``/``)."""
    path = Path(list_file).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"list file not found: {path}")
    rels = [ln.strip().replace("\\", "/") for ln in path.read_text().splitlines()]
    rels = [r for r in rels if r and not r.startswith("#")]
    if not rels:
        raise ValueError(f"{path}: the list is empty")
    bad = next((r for r in rels if "/" not in r or r.startswith("/") or ".." in r.split("/")), None)
    if bad is not None:
        raise ValueError(f"{path}: entry {bad!r} is not a relative '<class>/<file>' path")
    return rels


def check_list_options(data: str | Path | None, train_list: str | Path | None, test_list: str | Path | None) -> None:
    """The ``--train-list``/``--test-list`` rules, checked before any clip is read: they name clips of ``--data``,
    go together, exist, and share no clip (the test clips must be unseen)."""
    if (train_list or test_list) and data is None:
        raise ValueError("--train-list/--test-list name clips of --data DIR; give --data")
    if bool(train_list) != bool(test_list):
        raise ValueError("--train-list and --test-list go together (train and validate on one list, test on the other)")
    for name, value in (("train-list", train_list), ("test-list", test_list)):
        if value and not Path(value).expanduser().is_file():
            raise FileNotFoundError(f"{name} not found: {value}")
    if train_list and test_list:
        shared = set(read_list(train_list)) & set(read_list(test_list))
        if shared:
            raise ValueError(f"--test-list {test_list} shares {len(shared)} clips with --train-list {train_list} "
                             f"(e.g. {min(shared)}); the test clips must be unseen")


def speaker_of(rel: str) -> str:
    """The speaker of a relative clip path: the 8 hex digits before ``_nohash_``, else the path itself.

    ``_silence_`` clips (and files not in Speech Commands naming) are each their own speaker.
    """
    m = _SPEAKER.search(rel.rsplit("/", 1)[-1])
    return m[1].lower() if m and not rel.startswith(SILENCE + "/") else rel


def speaker_split(rels: list[str], val_fraction: float = 0.1, salt: str = "val",
                  fold: int = 0) -> tuple[list[str], list[str]]:
    """``(train, val)`` parts of ``rels`` with disjoint speakers; ``val`` has ``val_fraction`` of the speakers.

    Speakers are ordered by ``sha256(salt:speaker)`` and cut into blocks of ``round(val_fraction * n)`` (at
    least one, at most ``n - 1``); block ``fold`` (default the first) goes to validation, so the split depends
    only on the list, ``salt`` and ``fold``, and the folds' validation speakers are disjoint (cross-validation).
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    speakers = sorted({speaker_of(r) for r in rels}, key=lambda s: hashlib.sha256(f"{salt}:{s}".encode()).digest())
    if len(speakers) < 2:
        raise ValueError(f"cannot split {len(rels)} clips of {len(speakers)} speaker into train and validation")
    n_val = min(max(round(val_fraction * len(speakers)), 1), len(speakers) - 1)
    folds = len(speakers) // n_val
    if not 0 <= fold < folds:
        raise ValueError(f"validation fold {fold} does not exist: {len(speakers)} speakers in blocks of {n_val} "
                         f"(val_fraction {val_fraction}) give folds 0..{folds - 1}")
    val = set(speakers[fold * n_val:(fold + 1) * n_val])
    return [r for r in rels if speaker_of(r) not in val], [r for r in rels if speaker_of(r) in val]


def label_of(rel: str, keywords: Sequence[str] = KEYWORDS) -> int:
    """The class of ``<class>/<file>`` in ``class_names(keywords)``: a keyword, ``_silence_``, else ``_unknown_``."""
    folder = rel.split("/", 1)[0]
    classes = class_names(keywords)
    return classes.index(folder) if folder in classes else len(classes) - 1


class ListedClips(AugmentedClips):
    """The clips of ``list_file`` under ``root``, labelled by their class folder, optionally augmented.

    ``part`` selects the whole list (``'all'``) or one part of :func:`speaker_split` (``'train'``,
    ``'val'``, with ``val_fraction`` and ``val_fold``). ``augment`` (default: only for ``'train'``) applies the
    :class:`~nni_kws.data.gsc.SpeechCommands` training augmentation, time shift and background noise
    from ``noise_dir`` (e.g. ``gsc-background-noise/``), to every clip including ``_silence_`` ones
    (which here are recordings); ``augmentation`` replaces the legacy knobs with a full
    :class:`~nni_kws.data.augment.TrainAugment`. ``max_per_class`` keeps at most that many clips per class,
    chosen with ``seed``. ``keywords`` define the classes (default: the 10 Speech Commands keywords).

    Entries pointing to missing files are an error naming the list and the first missing clip, unless
    ``on_error='skip'`` (then they are dropped with one warning giving their count); the same holds for
    unreadable files. ``on_error`` defaults to ``'skip'`` for the training part and ``'raise'`` otherwise,
    so evaluation data never silently shrinks.
    """

    def __init__(self, root: str | Path, list_file: str | Path, part: ListPart = "all", *,
                 val_fraction: float = 0.1, augment: bool | None = None, seed: int = 0,
                 time_shift_ms: float = 100, noise_prob: float = 0.8, noise_volume: float = 0.1,
                 noise_dir: str | Path | None = None, on_error: OnError | None = None,
                 max_per_class: int | None = None, cache: bool = False, augmentation: TrainAugment | None = None,
                 keywords: Sequence[str] = KEYWORDS, val_fold: int = 0):
        if part not in ("all", "train", "val"):
            raise ValueError(f"part must be 'all', 'train' or 'val', got {part!r}")
        augmentation = augmentation or TrainAugment(time_shift_ms=time_shift_ms, noise_prob=noise_prob,
                                                    noise_volume=noise_volume)
        super().__init__(augment=part == "train" if augment is None else bool(augment), seed=seed,
                         augmentation=augmentation, cache=cache, keywords=keywords,
                         noise_dir=None if noise_dir is None else require_dir(Path(noise_dir),
                                                                              "background noise folder"))
        self.root = require_dir(Path(root).expanduser(), "clip folder")
        self.list_file, self.part = Path(list_file).expanduser(), part
        on_error = on_error or ("skip" if part == "train" else "raise")
        rels = read_list(self.list_file)
        if part != "all":
            try:
                rels = speaker_split(rels, val_fraction, fold=val_fold)[part == "val"]
            except ValueError as err:
                raise ValueError(f"{self.list_file}: {err}") from None
        rels = self._existing(rels, on_error)
        if max_per_class is not None:
            rels = self._cap(rels, max_per_class)
        paths = [str(self.root / r) for r in rels]
        good = set(map(str, scan_clips(paths, on_error, what=f"{self.list_file.name} audio")))
        self._items = [(p, label_of(r, self.keywords)) for p, r in zip(paths, rels) if p in good]
        self.require_keywords(f"{self.list_file} ({part})")
        if self.augment and self._noises() == []:
            log.warning("%s: no background noise folder given or no noise files in it; training without noise",
                        self.list_file)
        log.info("%s (%s) under %s: %r", self.list_file, part, self.root, self)

    def _existing(self, rels: list[str], on_error: OnError) -> list[str]:
        missing = [r for r in rels if not (self.root / r).is_file()]
        if missing and (on_error == "raise" or len(missing) == len(rels)):
            raise FileNotFoundError(f"{self.list_file}: {len(missing)} of {len(rels)} listed clips are missing "
                                    f"under {self.root}, e.g. {self.root / missing[0]}")
        if missing:
            log.warning("%s: skipped %d of %d listed clips that are missing under %s, e.g. %s",
                        self.list_file, len(missing), len(rels), self.root, missing[0])
        gone = set(missing)
        return [r for r in rels if r not in gone]

    def _cap(self, rels: list[str], max_per_class: int) -> list[str]:
        rng = np.random.default_rng([self.seed, 7])
        by_label: dict[int, list[str]] = {}
        for r in rels:
            by_label.setdefault(label_of(r, self.keywords), []).append(r)
        keep = set()
        for files in by_label.values():
            idx = rng.permutation(len(files))[:max_per_class]
            keep.update(files[j] for j in idx)
        return [r for r in rels if r in keep]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, label = self._clip(i), self._items[i][1]
        return (self._augmented(x) if self.augment else x), label
