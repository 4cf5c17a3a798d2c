"""Lightning DataModule over a local Speech Commands copy (and optionally the real v2 test set)."""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from .audio import OnError
from .gsc import SpeechCommands, SpeechCommandsTestFolder

__all__ = ["SpeechCommandsDataModule"]


class SpeechCommandsDataModule(pl.LightningDataModule):
    """Train/val/test loaders of :class:`SpeechCommands`; ``real_test_dataloader()`` for the v2 test folder.

    Datasets are built lazily on first use (``setup`` builds them ahead). ``cache=True`` decodes every
    clip once into memory at build time (workers then inherit it on fork, and are kept alive across
    epochs). Training batches are shuffled with a generator seeded by ``seed``, which also seeds the
    workers' augmentation, so runs are reproducible.
    """

    def __init__(self, root: str | Path, batch_size: int = 64, num_workers: int = 0, seed: int = 0,
                 noise_dir: str | Path | None = None, max_per_class: int | None = None,
                 real_test_root: str | Path | None = None, *, cache: bool = False,
                 on_error: OnError | None = "skip"):
        super().__init__()
        self.save_hyperparameters()
        self.root, self.batch_size, self.num_workers, self.seed = root, batch_size, num_workers, seed
        self.noise_dir, self.max_per_class, self.real_test_root = noise_dir, max_per_class, real_test_root
        self.cache, self.on_error = cache, on_error
        self._sets: dict[str, SpeechCommands | SpeechCommandsTestFolder] = {}

    def dataset(self, subset: str) -> SpeechCommands | SpeechCommandsTestFolder:
        """The dataset of ``subset`` ('training', 'validation', 'testing' or 'real_test'), built once."""
        if subset not in self._sets:
            if subset == "real_test":
                if self.real_test_root is None:
                    raise ValueError("no real_test_root was given to SpeechCommandsDataModule")
                ds = SpeechCommandsTestFolder(self.real_test_root, cache=self.cache)
            else:
                ds = SpeechCommands(self.root, subset, seed=self.seed, noise_dir=self.noise_dir,
                                    max_per_class=self.max_per_class, on_error=self.on_error, cache=self.cache)
            if self.cache:
                ds.preload()
            self._sets[subset] = ds
        return self._sets[subset]

    def setup(self, stage: str | None = None) -> None:
        subsets = {"fit": ["training", "validation"], "validate": ["validation"], "test": ["testing"],
                   "predict": []}.get(stage, ["training", "validation", "testing"])
        for subset in subsets:
            self.dataset(subset)

    def _loader(self, subset: str, shuffle: bool = False) -> DataLoader:
        workers = self.num_workers > 0
        return DataLoader(self.dataset(subset), batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, persistent_workers=workers,
                          generator=torch.Generator().manual_seed(self.seed))

    def train_dataloader(self) -> DataLoader:
        return self._loader("training", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._loader("testing")

    def real_test_dataloader(self) -> DataLoader:
        """Loader over the pre-split real test folder (``real_test_root``); evaluation only."""
        return self._loader("real_test")
