"""Google Speech Commands (v1/v2) as 12-class torch Datasets.

:class:`SpeechCommands` reads a local copy in the official layout (``<root>/<word>/<speaker>_nohash_<n>.wav``,
``validation_list.txt``, ``testing_list.txt``, ``_background_noise_/*.wav``) and follows the protocol
of TensorFlow's ``speech_commands/input_data.py``: 10 keywords, every other word is ``_unknown_``
(subsampled), synthetic ``_silence_`` items, and time-shift plus background-noise augmentation for
training. :class:`SpeechCommandsTestFolder` reads the pre-split v2 test set (one folder per class).

Both datasets only list files when constructed (plus an optional header scan), take plain
constructor arguments and pickle without their caches, so ``nni.trace`` can ship them to trials.
Items are ``(waveform: Tensor[1, 16000] float32 in [-1, 1], label: int)`` indexing ``CLASSES``.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, get_worker_info

from .audio import OnError, fit_length, load_clip, scan_clips
from .labels import BACKGROUND_NOISE_DIR, CLASS_INDEX, CLASSES, CLIP_SAMPLES, KEYWORDS, SAMPLE_RATE, SILENCE, UNKNOWN

__all__ = ["SUBSETS", "SpeechCommands", "SpeechCommandsTestFolder", "Subset"]

log = logging.getLogger(__name__)

Subset = Literal["training", "validation", "testing"]
SUBSETS: tuple[str, ...] = ("training", "validation", "testing")
_SILENCE_IDX, _UNKNOWN_IDX = CLASS_INDEX[SILENCE], CLASS_INDEX[UNKNOWN]


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


class _ClipDataset(Dataset):
    """A list of ``(path or None, label)`` items; decoded clips optionally kept in memory."""

    def __init__(self, cache: bool = False):
        self.cache = cache
        self._items: list[tuple[str | None, int]] = []
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._items)

    @property
    def labels(self) -> list[int]:
        """The label of every item (no decoding)."""
        return [label for _, label in self._items]

    @property
    def files(self) -> list[str | None]:
        """The file of every item (``None`` for synthetic silence)."""
        return [path for path, _ in self._items]

    def class_counts(self) -> dict[str, int]:
        """Number of items per class name, in ``CLASSES`` order."""
        counts = Counter(self.labels)
        return {name: counts[i] for i, name in enumerate(CLASSES)}

    def _clip(self, i: int) -> torch.Tensor:
        """The clean decoded clip of item ``i`` (zeros for synthetic silence); never modify it in place."""
        path = self._items[i][0]
        if path is None:
            return torch.zeros(1, CLIP_SAMPLES)
        if not self.cache:
            return load_clip(path)
        if i not in self._cache:
            self._cache[i] = load_clip(path)
        return self._cache[i]

    def preload(self) -> None:
        """Decode every clip now and keep it in memory (turns ``cache`` on)."""
        self.cache = True
        for i in range(len(self)):
            self._clip(i)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self._clip(i), self._items[i][1]

    def __getstate__(self) -> dict:
        # Caches and random generators are per process: rebuilt lazily after unpickling.
        return {k: ({} if k == "_cache" else None if k in ("_noise", "_gen", "_gen_key") else v)
                for k, v in self.__dict__.items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} items, {self.class_counts()})"


class _AugmentedClips(_ClipDataset):
    """Clips with the Speech Commands training augmentation: random time shift and background noise.

    Each clip is shifted by a random ``±time_shift_ms`` (zero fill) and, with probability
    ``noise_prob``, a random 1 s slice of a random file of ``noise_dir`` times ``U(0, noise_volume)``
    is added; the result is clamped to [-1, 1]. Randomness comes from a generator seeded with
    ``seed`` in the main process, or with the DataLoader worker's seed in a worker, so it is
    reproducible and differs between epochs.
    """

    def __init__(self, *, augment: bool, seed: int, time_shift_ms: float, noise_prob: float, noise_volume: float,
                 noise_dir: Path | None, cache: bool):
        super().__init__(cache)
        self.seed, self.augment = int(seed), bool(augment)
        self.time_shift = int(round(time_shift_ms * SAMPLE_RATE / 1000))
        self.noise_prob, self.noise_volume = float(noise_prob), float(noise_volume)
        self.noise_dir = noise_dir
        self._noise: list[torch.Tensor] | None = None
        self._gen: torch.Generator | None = None
        self._gen_key: int | None = None

    def _noises(self) -> list[torch.Tensor]:
        """Background-noise waveforms ``[n >= 16000]``, loaded once per process."""
        if self._noise is None:
            d = self.noise_dir
            files = sorted(d.glob("*.wav")) if d is not None and d.is_dir() else []
            noise = [load_clip(p, num_samples=None)[0] for p in scan_clips(files, "skip", what="background noise")]
            self._noise = [n if n.numel() >= CLIP_SAMPLES else fit_length(n) for n in noise]
        return self._noise

    def _rng(self) -> torch.Generator:
        """Augmentation generator: from ``seed`` in the main process, from the worker seed in a worker."""
        info = get_worker_info()
        key = None if info is None else info.seed
        if self._gen is None or self._gen_key != key:
            self._gen, self._gen_key = torch.Generator().manual_seed(self.seed if info is None else info.seed), key
        return self._gen

    def _noise_slice(self, g: torch.Generator, max_volume: float) -> torch.Tensor | None:
        """``U(0, max_volume)`` times a random 1 s slice of a random noise file, or None without noise."""
        noises = self._noises()
        if not noises:
            return None
        noise = noises[int(torch.randint(len(noises), (), generator=g))]
        start = int(torch.randint(noise.numel() - CLIP_SAMPLES + 1, (), generator=g))
        return float(torch.rand((), generator=g)) * max_volume * noise[start:start + CLIP_SAMPLES].unsqueeze(0)

    def _shift_and_noise(self, x: torch.Tensor) -> torch.Tensor:
        """The training augmentation of one clip (a new draw on every call)."""
        g = self._rng()
        k = int(torch.randint(-self.time_shift, self.time_shift + 1, (), generator=g))
        x = F.pad(x, (max(k, 0), max(-k, 0)))[..., max(-k, 0):max(-k, 0) + CLIP_SAMPLES]
        if float(torch.rand((), generator=g)) < self.noise_prob:
            noise = self._noise_slice(g, self.noise_volume)
            if noise is not None:
                x = x + noise
        return x.clamp(-1.0, 1.0)


class SpeechCommands(_AugmentedClips):
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

    ``on_error='skip'`` checks the file headers of the selected clips once at construction and drops
    bad files with one warning; ``'raise'`` raises :class:`~nni_kws.data.audio.AudioFileError` instead;
    ``None`` skips the scan (fastest; a bad file then raises ``AudioFileError`` when loaded).
    ``cache=True`` keeps decoded clean clips in memory.
    """

    silence_volume: float = 1.0  #: maximum noise volume of training silence items (TF uses U(0, 1))

    def __init__(self, root: str | Path, subset: Subset = "training", *, augment: bool | None = None,
                 seed: int = 0, unknown_fraction: float = 0.1, silence_fraction: float = 0.1,
                 time_shift_ms: float = 100, noise_prob: float = 0.8, noise_volume: float = 0.1,
                 noise_dir: str | Path | None = None, on_error: OnError | None = "skip",
                 max_per_class: int | None = None, cache: bool = False):
        if subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
        if min(unknown_fraction, silence_fraction) < 0 or unknown_fraction + silence_fraction >= 1:
            raise ValueError("need unknown_fraction, silence_fraction >= 0 with a sum below 1")
        root = _require_dir(Path(root), "Speech Commands folder")
        super().__init__(augment=subset == "training" if augment is None else bool(augment), seed=seed,
                         time_shift_ms=time_shift_ms, noise_prob=noise_prob, noise_volume=noise_volume,
                         noise_dir=(_require_dir(Path(noise_dir), "background noise folder") if noise_dir is not None
                                    else root / BACKGROUND_NOISE_DIR), cache=cache)
        self.root, self.subset = root, subset
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
        files = []
        for word in words:
            for name in sorted(e.name for e in os.scandir(self.root / word) if e.name.endswith(".wav")):
                rel = f"{word}/{name}"
                where = "validation" if rel in lists["validation"] else "testing" if rel in lists["testing"] else "training"
                if where == self.subset:
                    files.append(rel)
        return files

    def _select(self, unknown_fraction: float, silence_fraction: float, on_error: OnError | None,
                max_per_class: int | None) -> list[tuple[str | None, int]]:
        rng = np.random.default_rng([self.seed, SUBSETS.index(self.subset)])
        by_word: dict[str, list[str]] = {}
        for rel in self._subset_files():
            word = rel.split("/", 1)[0]
            by_word.setdefault(word if word in KEYWORDS else UNKNOWN, []).append(rel)
        keyword_files: list[str] = []
        for word in KEYWORDS:
            files = by_word.get(word, [])
            if max_per_class is not None and len(files) > max_per_class:
                files = [files[j] for j in sorted(rng.choice(len(files), max_per_class, replace=False))]
            keyword_files += files
        if not keyword_files:
            raise ValueError(f"no keyword clips ({', '.join(KEYWORDS)}) in the {self.subset} subset of {self.root}")
        scale = len(keyword_files) / (1 - unknown_fraction - silence_fraction)
        cap = len(keyword_files) if max_per_class is None else max_per_class
        n_unknown, n_silence = (min(round(f * scale), cap) for f in (unknown_fraction, silence_fraction))
        unknown = by_word.get(UNKNOWN, [])
        unknown_files = [unknown[j] for j in sorted(rng.permutation(len(unknown))[:n_unknown])]
        if len(unknown_files) < n_unknown:
            log.warning("%s %s: only %d unknown-word clips for %d wanted", self.root, self.subset, len(unknown), n_unknown)
        items = [(str(self.root / rel), CLASS_INDEX.get(rel.split("/", 1)[0], _UNKNOWN_IDX))
                 for rel in keyword_files + unknown_files]
        if on_error is not None:
            good = set(map(str, scan_clips([p for p, _ in items], on_error, what=f"{self.subset} audio")))
            items = [it for it in items if it[0] in good]
        return items + [(None, _SILENCE_IDX)] * n_silence

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, label = self._clip(i), self._items[i][1]
        if label == _SILENCE_IDX:
            g = self._rng() if self.augment else torch.Generator().manual_seed(self.seed * 1_000_003 + i)
            noise = self._noise_slice(g, self.silence_volume)
            return (x if noise is None else noise.clamp(-1.0, 1.0)), label
        return (self._shift_and_noise(x) if self.augment else x), label


class SpeechCommandsTestFolder(_ClipDataset):
    """The pre-split Speech Commands v2 test set: ``<root>/<class>/*.wav`` for each of ``CLASSES``.

    This is the layout of ``speech_commands_test_set_v0.02`` (4890 clips; ``_unknown_`` files are
    named ``<word>_<speaker>_nohash_<n>.wav.wav``, ``_silence_`` holds real recordings). It is
    evaluation-only data: never train on it. ``on_error`` is as in :class:`SpeechCommands` but
    defaults to ``'raise'`` so that a benchmark never silently loses items.
    """

    def __init__(self, root: str | Path, *, on_error: OnError | None = "raise", cache: bool = False):
        super().__init__(cache)
        self.root = _require_dir(Path(root), "Speech Commands test folder")
        missing = [c for c in CLASSES if not (self.root / c).is_dir()]
        if missing:
            raise ValueError(f"{self.root} lacks class folders {missing} (expected one folder per class of {CLASSES})")
        self._items = [(str(self.root / c / name), i) for i, c in enumerate(CLASSES)
                       for name in sorted(e.name for e in os.scandir(self.root / c) if e.name.endswith(".wav"))]
        if on_error is not None:
            good = set(map(str, scan_clips([p for p, _ in self._items], on_error, what="test audio")))
            self._items = [it for it in self._items if it[0] in good]
