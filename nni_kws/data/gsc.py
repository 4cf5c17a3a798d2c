"""Google Speech Commands (v1/v2) as keyword-spotting torch Datasets (12 classes by default).

:class:`SpeechCommands` reads a local copy in the official layout (``<root>/<word>/<speaker>_nohash_<n>.wav``,
``validation_list.txt``, ``testing_list.txt``, ``_background_noise_/*.wav``) and follows the protocol
of TensorFlow's ``speech_commands/input_data.py``: 10 keywords, every other word is ``_unknown_``
(subsampled), synthetic ``_silence_`` items, and time-shift plus background-noise augmentation for
training. A synthesized dataset's manifest may name other keywords (custom wake words).
:class:`SpeechCommandsTestFolder` reads the pre-split v2 test set (one folder per class).
Items are ``(waveform: Tensor[1, 16000] float32 in [-1, 1], label: int)`` indexing ``classes``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from .audio import OnError, scan_clips
from .augment import TrainAugment
from .clips import AugmentedClips, ClipDataset, require_dir
from .labels import BACKGROUND_NOISE_DIR, CLASSES, KEYWORDS, SILENCE, UNKNOWN, dataset_keywords

__all__ = ["SUBSETS", "SpeechCommands", "SpeechCommandsTestFolder", "Subset", "is_test_folder", "require_test_folder"]

log = logging.getLogger(__name__)

Subset = Literal["training", "validation", "testing"]
SUBSETS: tuple[str, ...] = ("training", "validation", "testing")


class SpeechCommands(AugmentedClips):
    """One subset of a local Google Speech Commands copy, in the 12-class protocol.

    Subsets come from the official lists: ``validation``/``testing`` are the files named in
    ``validation_list.txt``/``testing_list.txt``, ``training`` is every other clip. Keyword clips are
    all kept (or ``max_per_class`` of each, chosen with ``seed``); ``_unknown_`` clips are drawn from
    the other word folders and ``_silence_`` items are added so that they make up about
    ``unknown_fraction`` and ``silence_fraction`` of the subset, i.e.
    ``n = round(fraction / (1 - unknown_fraction - silence_fraction) * n_keywords)``. (TF's
    ``input_data.py`` takes ``fraction * n_keywords``, i.e. ~8% of the subset each at 10% / 10%;
    here it is 10% each.) ``max_per_class`` also caps these two counts.
    The selection depends only on the files, ``subset`` and ``seed``.

    With ``augment`` (default: training only) each keyword/unknown clip is shifted by a random
    ``±time_shift_ms`` (zero fill) and, with probability ``noise_prob``, a random 1 s slice of a
    random background-noise file times ``U(0, noise_volume)`` is added; the result is clamped to
    [-1, 1]. Training silence is that noise at volume ``U(0, silence_volume)`` (as in TF). Without
    augmentation (validation/testing) silence is still not digital zero: item ``i`` gets a noise
    slice and volume drawn from a generator seeded with ``(seed, i)``, so it is fixed across runs.
    Without any noise files silence is zeros and no noise is mixed in.

    Augmentation randomness comes from a generator seeded with ``seed`` in the main process, or with
    the DataLoader worker's seed in a worker, so it is reproducible and differs between epochs.

    ``augmentation`` (a :class:`~nni_kws.data.augment.TrainAugment`) replaces the three legacy knobs
    ``time_shift_ms``, ``noise_prob``, ``noise_volume`` with the full set of training augmentations.

    ``on_error='skip'`` checks the file headers of the selected clips once at construction and drops
    bad files with one warning; ``'raise'`` raises :class:`~nni_kws.data.audio.AudioFileError` instead;
    ``None`` skips the scan (fastest; a bad file then raises ``AudioFileError`` when loaded); ``'auto'``
    (default) is ``'skip'`` for training and ``'raise'`` for validation/testing, so evaluation data never
    silently shrinks. List entries pointing to missing files are counted in one warning.
    ``cache=True`` keeps decoded clean clips in memory.

    ``keywords`` (default: the dataset's own, :func:`~nni_kws.data.labels.dataset_keywords`) defines the
    classes ``keywords + (_silence_, _unknown_)``; a keyword with no clip in the subset is an error.
    """

    silence_volume: float = 1.0  #: maximum noise volume of training silence items (TF uses U(0, 1))

    def __init__(self, root: str | Path, subset: Subset = "training", *, augment: bool | None = None,
                 seed: int = 0, unknown_fraction: float = 0.1, silence_fraction: float = 0.1,
                 time_shift_ms: float = 100, noise_prob: float = 0.8, noise_volume: float = 0.1,
                 noise_dir: str | Path | None = None, on_error: OnError | Literal["auto"] | None = "auto",
                 max_per_class: int | None = None, cache: bool = False, augmentation: TrainAugment | None = None,
                 keywords: Sequence[str] | None = None):
        if subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
        if min(unknown_fraction, silence_fraction) < 0 or unknown_fraction + silence_fraction >= 1:
            raise ValueError("need unknown_fraction, silence_fraction >= 0 with a sum below 1")
        root = require_dir(Path(root), "Speech Commands folder")
        augmentation = augmentation or TrainAugment(time_shift_ms=time_shift_ms, noise_prob=noise_prob,
                                                    noise_volume=noise_volume)
        super().__init__(augment=subset == "training" if augment is None else bool(augment), seed=seed,
                         augmentation=augmentation, cache=cache,
                         noise_dir=(require_dir(Path(noise_dir), "background noise folder") if noise_dir is not None
                                    else root / BACKGROUND_NOISE_DIR),
                         keywords=dataset_keywords(root) if keywords is None else keywords)
        self.root, self.subset = root, subset
        if on_error == "auto":
            on_error = "skip" if subset == "training" else "raise"
        self._items = self._select(unknown_fraction, silence_fraction, on_error, max_per_class)
        if self.augment and not self.noise_dir.is_dir():
            log.warning("no background noise folder %s: training without noise, silence is zeros", self.noise_dir)
        log.info("%s %s: %r", self.root, subset, self)

    def _subset_files(self) -> list[str]:
        """Relative paths ``word/file.wav`` of this subset, sorted."""
        lists = {}
        for name in ("validation", "testing"):
            path = self.root / f"{name}_list.txt"
            if not path.is_file():
                raise FileNotFoundError(f"missing split list {path} (expected in the official Speech Commands layout)")
            lists[name] = {ln.strip().replace("\\", "/") for ln in path.read_text().splitlines() if ln.strip()}
        words = sorted(e.name for e in os.scandir(self.root) if e.is_dir() and not e.name.startswith(("_", ".")))
        if not words:
            raise ValueError(f"no word folders in {self.root}")
        files, found = [], set()
        for word in words:
            for name in sorted(e.name for e in os.scandir(self.root / word) if e.name.endswith(".wav")):
                rel = f"{word}/{name}"
                found.add(rel)
                where = ("validation" if rel in lists["validation"] else "testing" if rel in lists["testing"]
                         else "training")
                if where == self.subset:
                    files.append(rel)
        if self.subset in lists and (missing := sorted(lists[self.subset] - found)):
            log.warning("%s_list.txt: %d listed files do not exist under %s (ignored), e.g. %s",
                        self.subset, len(missing), self.root, missing[0])
        return files

    def _select(self, unknown_fraction: float, silence_fraction: float, on_error: OnError | None,
                max_per_class: int | None) -> list[tuple[str | None, int]]:
        rng = np.random.default_rng([self.seed, SUBSETS.index(self.subset)])
        unknown_key = object()  # a real word folder may be called anything, even "_unknown_"-like
        by_word: dict[object, list[str]] = {}
        for rel in self._subset_files():
            word = rel.split("/", 1)[0]
            by_word.setdefault(word if word in self.keywords else unknown_key, []).append(rel)
        keyword_files: list[str] = []
        for word in self.keywords:
            files = by_word.get(word, [])
            if max_per_class is not None and len(files) > max_per_class:
                files = [files[j] for j in sorted(rng.choice(len(files), max_per_class, replace=False))]
            keyword_files += files
        if not keyword_files:
            raise ValueError(f"no keyword clips ({', '.join(self.keywords)}) in the {self.subset} subset "
                             f"of {self.root}")
        scale = len(keyword_files) / (1 - unknown_fraction - silence_fraction)
        cap = len(keyword_files) if max_per_class is None else max_per_class
        n_unknown, n_silence = (min(round(f * scale), cap) for f in (unknown_fraction, silence_fraction))
        unknown = by_word.get(unknown_key, [])
        unknown_files = [unknown[j] for j in sorted(rng.permutation(len(unknown))[:n_unknown])]
        if len(unknown_files) < n_unknown:
            log.warning("%s %s: only %d unknown-word clips for %d wanted", self.root, self.subset, len(unknown),
                        n_unknown)
        index = {k: i for i, k in enumerate(self.keywords)}
        items = [(str(self.root / rel), index.get(rel.split("/", 1)[0], self.unknown_index))
                 for rel in keyword_files + unknown_files]
        if on_error is not None:
            good = set(map(str, scan_clips([p for p, _ in items], on_error, what=f"{self.subset} audio")))
            items = [it for it in items if it[0] in good]
        self._items = items  # checked here: a class emptied by bad files is as fatal as a missing folder
        self.require_keywords(f"the {self.subset} subset of {self.root}")
        return items + [(None, self.silence_index)] * n_silence

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, label = self._clip(i), self._items[i][1]
        if label == self.silence_index and self._items[i][0] is None:
            g = self._rng() if self.augment else torch.Generator().manual_seed(self.seed * 1_000_003 + i)
            noise = self._noise_slice(g)
            if noise is None:
                return x, label
            return (float(torch.rand((), generator=g)) * self.silence_volume * noise).clamp(-1.0, 1.0), label
        return (self._augmented(x) if self.augment else x), label


def is_test_folder(root: Path) -> bool:
    """The pre-split test layout (``speech_commands_test_set_v0.02``): class folders ``_silence_`` and
    ``_unknown_`` beside the keywords', and no split lists."""
    return all((root / c).is_dir() for c in (SILENCE, UNKNOWN)) and not any(
        (root / f"{subset}_list.txt").is_file() for subset in ("validation", "testing"))


def require_test_folder(root: Path, classes: Sequence[str] = CLASSES) -> Path:
    """``root`` if it has the pre-split test layout (one folder per class of ``classes``), else an error naming
    the missing class folders; cheap, so a run checks its ``--real-test`` before any work."""
    require_dir(root, "Speech Commands test folder")
    missing = [c for c in classes if not (root / c).is_dir()]
    if missing:
        raise ValueError(f"{root} lacks class folders {missing} (expected the pre-split test layout: one folder per "
                         f"class of {tuple(classes)})")
    return root


class SpeechCommandsTestFolder(ClipDataset):
    """The pre-split Speech Commands v2 test set: ``<root>/<class>/*.wav`` for each class (default ``CLASSES``).

    This is the layout of ``speech_commands_test_set_v0.02`` (4890 clips; ``_unknown_`` files are
    named ``<word>_<speaker>_nohash_<n>.wav.wav``, ``_silence_`` holds real recordings). It is
    evaluation-only data: never train on it. ``on_error`` is as in :class:`SpeechCommands` but
    defaults to ``'raise'`` so that a benchmark never silently loses items.
    """

    def __init__(self, root: str | Path, *, on_error: OnError | None = "raise", cache: bool = False,
                 keywords: Sequence[str] = KEYWORDS):
        super().__init__(cache, keywords)
        self.root = require_test_folder(Path(root), self.classes)
        self._items = [(str(self.root / c / name), i) for i, c in enumerate(self.classes)
                       for name in sorted(e.name for e in os.scandir(self.root / c) if e.name.endswith(".wav"))]
        if on_error is not None:
            good = set(map(str, scan_clips([p for p, _ in self._items], on_error, what="test audio")))
            self._items = [it for it in self._items if it[0] in good]
