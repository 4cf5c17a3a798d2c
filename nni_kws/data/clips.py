"""Clip datasets: a list of ``(file, label)`` items over a class list, and the training augmentation of them.

Datasets only list files when constructed (plus an optional header scan), take plain constructor
arguments and pickle without their caches, so ``nni.trace`` can ship them to trials. Items are
``(waveform: Tensor[1, 16000] float32 in [-1, 1], label: int)`` indexing the dataset's ``classes``.
"""
from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset, get_worker_info

from .audio import fit_length, load_clip, scan_clips
from .augment import TrainAugment
from .labels import CLIP_SAMPLES, KEYWORDS, SILENCE, UNKNOWN, class_names

__all__ = ["AugmentedClips", "ClipDataset", "require_dir"]


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a directory, else ``FileNotFoundError`` naming ``what`` and the path."""
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


class ClipDataset(Dataset):
    """A list of ``(path or None, label)`` items over ``keywords + (_silence_, _unknown_)``; decoded clips
    optionally kept in memory."""

    def __init__(self, cache: bool = False, keywords: Sequence[str] = KEYWORDS):
        self.cache = cache
        self.classes: tuple[str, ...] = class_names(keywords)
        self._items: list[tuple[str | None, int]] = []
        self._cache: dict[int, torch.Tensor] = {}

    @property
    def keywords(self) -> tuple[str, ...]:
        return self.classes[:-2]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def silence_index(self) -> int:
        return self.classes.index(SILENCE)

    @property
    def unknown_index(self) -> int:
        return self.classes.index(UNKNOWN)

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
        """Number of items per class name, in ``classes`` order."""
        counts = Counter(self.labels)
        return {name: counts[i] for i, name in enumerate(self.classes)}

    def require_keywords(self, where: str) -> None:
        """Raise ``ValueError`` naming ``where`` if a keyword class has no clip (the model would lose a class)."""
        counts = self.class_counts()
        empty = [k for k in self.keywords if counts[k] == 0]
        if empty:
            raise ValueError(f"{where}: no clips of keyword class{'es' if len(empty) > 1 else ''} "
                             f"{', '.join(map(repr, empty))} (every keyword needs clips in every split)")

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


class AugmentedClips(ClipDataset):
    """Clips with training augmentation (:class:`~nni_kws.data.augment.TrainAugment`; by default the Speech
    Commands recipe: random time shift and background noise from the ``.wav`` files of ``noise_dir``).

    Randomness comes from a generator seeded with ``seed`` in the main process, or with the DataLoader
    worker's seed in a worker, so it is reproducible and differs between epochs.
    """

    def __init__(self, *, augment: bool, seed: int, augmentation: TrainAugment, noise_dir: Path | None,
                 cache: bool, keywords: Sequence[str] = KEYWORDS):
        super().__init__(cache, keywords)
        self.seed, self.augment, self.augmentation = int(seed), bool(augment), augmentation
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

    def reseed(self, seed: int) -> None:
        """Restart the main process' augmentation generator from ``seed`` (each stage and epoch of a run
        does, so its augmentation does not depend on what ran before it in the process)."""
        self._gen, self._gen_key = torch.Generator().manual_seed(int(seed)), None

    def _noise_slice(self, g: torch.Generator) -> torch.Tensor | None:
        """A random 1 s slice ``[1, 16000]`` of a random noise file, or None without noise."""
        noises = self._noises()
        if not noises:
            return None
        noise = noises[int(torch.randint(len(noises), (), generator=g))]
        start = int(torch.randint(noise.numel() - CLIP_SAMPLES + 1, (), generator=g))
        return noise[start:start + CLIP_SAMPLES].unsqueeze(0)

    def _augmented(self, x: torch.Tensor) -> torch.Tensor:
        """The training augmentation of one clip (a new draw on every call)."""
        return self.augmentation.apply(x, self._rng(), self._noise_slice)

    def unaugmented(self) -> AugmentedClips:
        """The same items in the same order, without augmentation (e.g. what a teacher labels, index by index).

        A shallow copy: it shares the decoded clips of this dataset instead of loading them again.
        """
        view = copy.copy(self)
        view.augment = False
        return view
