"""Lightning DataModule over a Speech Commands copy or list-defined subsets (and optionally the real v2 test set)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from .audio import OnError
from .augment import TrainAugment
from .gsc import SpeechCommands, SpeechCommandsTestFolder
from .labels import BACKGROUND_NOISE_DIR, KEYWORDS, class_names, dataset_keywords, parse_keywords
from .listed import ListedClips
from .paths import NOISE_DIR, real_speech, shared_data_dir

__all__ = ["SpeechCommandsDataModule"]


class SpeechCommandsDataModule(pl.LightningDataModule):
    """Train/val/test loaders of :class:`SpeechCommands`; ``real_test_dataloader()`` for the v2 test folder.

    With ``train_list`` the subsets are list-defined instead (:class:`~nni_kws.data.listed.ListedClips`,
    paths relative to ``root``): training is the list's training part, validation its held-apart
    speakers (``val_fraction`` of them, the ``val_fold``-th block of them; or the whole ``val_list`` if given),
    testing the whole ``test_list``; :meth:`val_folds` gives the same data with other validation speakers
    (cross-validation); :meth:`real_protocol` builds the shared data's limited-real-speech protocol that way.

    ``keywords`` (default: the dataset's own, from a synthesized dataset's manifest, else the 10 Speech
    Commands keywords) define :attr:`classes` = keywords + ``_silence_``, ``_unknown_`` and
    :attr:`num_classes`, the classifier's output size. ``augmentation`` sets the training augmentation.
    ``on_error`` applies to training clips; unreadable validation/test clips always raise (unless ``None``:
    no header scan), so evaluation data never silently shrinks.

    Datasets are built lazily on first use (``setup`` builds them ahead). ``cache=True`` decodes every
    clip once into memory at build time (workers then inherit it on fork, and are kept alive across
    epochs). Training batches are shuffled with a generator seeded by ``seed``, which also seeds the
    workers' augmentation, so runs are reproducible.
    """

    def __init__(self, root: str | Path, batch_size: int = 64, num_workers: int = 0, seed: int = 0,
                 noise_dir: str | Path | None = None, max_per_class: int | None = None,
                 real_test_root: str | Path | None = None, *, cache: bool = False,
                 on_error: OnError | None = "skip", train_list: str | Path | None = None,
                 val_list: str | Path | None = None, test_list: str | Path | None = None,
                 val_fraction: float = 0.1, keywords: str | Sequence[str] | None = None,
                 augmentation: TrainAugment | None = None, val_fold: int = 0):
        super().__init__()
        self.save_hyperparameters()
        if train_list is None and (val_list is not None or test_list is not None):
            raise ValueError("val_list/test_list need a train_list (list-defined subsets)")
        if val_fold and (train_list is None or val_list is not None):
            raise ValueError(f"val_fold {val_fold} needs a train_list whose speakers validation is split from "
                             "(list-defined subsets, no val_list)")
        if max_per_class is not None and max_per_class < 1:  # a negative count would slice clips off each class
            raise ValueError(f"max-per-class must be at least 1, got {max_per_class}")
        self.root, self.batch_size, self.num_workers, self.seed = root, batch_size, num_workers, seed
        self.noise_dir, self.max_per_class, self.real_test_root = noise_dir, max_per_class, real_test_root
        self.cache, self.on_error = cache, on_error
        self.train_list, self.val_list, self.test_list = train_list, val_list, test_list
        self.val_fraction, self.val_fold = val_fraction, val_fold
        self.augmentation = augmentation
        if keywords is not None:
            self.keywords = parse_keywords(keywords)
        elif train_list is not None:
            self.keywords = KEYWORDS
        else:
            self.keywords = dataset_keywords(Path(root)) if Path(root).is_dir() else KEYWORDS
        self._sets: dict[str, Dataset] = {}
        self._folds: list[SpeechCommandsDataModule] = []

    @classmethod
    def real_protocol(cls, shared: str | Path | None = None, **kwargs: Any) -> SpeechCommandsDataModule:
        """The limited-real-speech protocol of the shared data (:func:`~nni_kws.data.paths.real_speech`): train on
        ``dev``'s training part (augmented with the recorded noise), validate on its held-apart speakers
        (``val_fraction``), test on ``heldout``. ``kwargs`` go to the constructor."""
        real = real_speech(shared)
        return cls(real.root, train_list=real.dev_list, test_list=real.heldout_list, noise_dir=real.noise_dir,
                   **kwargs)

    @classmethod
    def from_lists(cls, root: str | Path, train_list: str | Path, test_list: str | Path,
                   **kwargs: Any) -> SpeechCommandsDataModule:
        """Clips of ``root`` listed in ``train_list`` (training, and validation on held-apart speakers) and
        ``test_list`` (testing), as ``--train-list``/``--test-list`` give them; training mixes in the folder's
        ``_background_noise_`` recordings, else the shared ones (a pre-split test set has none of its own)."""
        noise = Path(root) / BACKGROUND_NOISE_DIR
        return cls(root, train_list=train_list, test_list=test_list,
                   noise_dir=noise if noise.is_dir() else shared_data_dir(NOISE_DIR), **kwargs)

    def val_folds(self, n: int) -> list[SpeechCommandsDataModule]:
        """This data module and ``n - 1`` copies whose validation folds are the next blocks of the training list's
        speakers (folds ``val_fold``, ``val_fold + 1``...): cross-validation over the same clips. The copies are
        kept, so a later call (another search of a benchmark) reuses their decoded clips."""
        while len(self._folds) < n - 1:
            self._folds.append(type(self)(**{**self.hparams, "val_fold": self.val_fold + len(self._folds) + 1}))
        return [self, *self._folds[:n - 1]]

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names, in label order: the keywords, ``_silence_``, ``_unknown_``."""
        return class_names(self.keywords)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _on_error(self, subset: str) -> OnError | None:
        return self.on_error if subset == "training" or self.on_error is None else "raise"

    def _listed(self, subset: str) -> ListedClips:
        common = dict(seed=self.seed, noise_dir=self.noise_dir, cache=self.cache, val_fraction=self.val_fraction,
                      val_fold=self.val_fold, keywords=self.keywords, augmentation=self.augmentation,
                      on_error=self._on_error(subset))
        if subset == "training":
            return ListedClips(self.root, self.train_list, "all" if self.val_list else "train",
                               augment=True, max_per_class=self.max_per_class, **common)
        if subset == "validation":
            return ListedClips(self.root, self.val_list or self.train_list, "all" if self.val_list else "val", **common)
        if self.test_list is None:
            raise ValueError("no test_list was given to SpeechCommandsDataModule (list-defined subsets)")
        return ListedClips(self.root, self.test_list, "all", **common)

    def dataset(self, subset: str) -> Dataset:
        """The dataset of ``subset`` ('training', 'validation', 'testing' or 'real_test'), built once."""
        if subset not in self._sets:
            if subset == "real_test":
                if self.real_test_root is None:
                    raise ValueError("no real_test_root was given to SpeechCommandsDataModule")
                if self.keywords != KEYWORDS:
                    raise ValueError(f"the real test folder {self.real_test_root} has the 12 Speech Commands classes, "
                                     f"not {self.classes}")
                ds = SpeechCommandsTestFolder(self.real_test_root, cache=self.cache)
            elif self.train_list is not None:
                ds = self._listed(subset)
            else:
                ds = SpeechCommands(self.root, subset, seed=self.seed, noise_dir=self.noise_dir,
                                    max_per_class=self.max_per_class, on_error=self._on_error(subset), cache=self.cache,
                                    keywords=self.keywords, augmentation=self.augmentation)
            if self.cache:
                ds.preload()
            self._sets[subset] = ds
        return self._sets[subset]

    def setup(self, stage: str | None = None) -> None:
        subsets = {"fit": ["training", "validation"], "validate": ["validation"], "test": ["testing"],
                   "predict": []}.get(stage, ["training", "validation", "testing"])
        for subset in subsets:
            self.dataset(subset)

    def loader(self, dataset: Dataset, shuffle: bool = False) -> DataLoader:
        """A loader over ``dataset`` with this module's batch size, workers and seeded shuffling (e.g. over the
        training set with a teacher's targets, :func:`nni_kws.teacher.fit_teacher`)."""
        workers = self.num_workers > 0
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, persistent_workers=workers,
                          generator=torch.Generator().manual_seed(self.seed))

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.dataset("training"), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.dataset("validation"))

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.dataset("testing"))

    def real_test_dataloader(self) -> DataLoader:
        """Loader over the pre-split real test folder (``real_test_root``); evaluation only."""
        return self.loader(self.dataset("real_test"))
