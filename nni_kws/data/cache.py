"""The synthesized default dataset shared by concurrent processes (NNI trials started together).

:func:`~nni_kws.data.synth.ensure_default_dataset` builds into a temporary folder and renames it,
so nobody reads a half-written set; the lock here also keeps two trials from both synthesizing it
(minutes of CPU each) when they start at once: the second waits, then finds the cached set.
"""
from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["file_lock", "shared_default_dataset"]

_logger = logging.getLogger(__name__)


@contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block.

    The kernel releases it when the holder exits, even when killed, so no stale lock is left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def shared_default_dataset(*, progress: bool = False, **params: Any) -> Path:
    """:func:`~nni_kws.data.synth.ensure_default_dataset` under a lock next to the dataset folder
    (``.<folder>.lock``): made once, reused by every other process, whatever their number."""
    from .labels import MANIFEST
    from .synth import default_dataset_dir, ensure_default_dataset

    root = default_dataset_dir(**params).expanduser().absolute()
    with file_lock(root.parent / f".{root.name}.lock"):
        found = (root / MANIFEST).is_file() or (root / "testing_list.txt").is_file()
        _logger.info("%s the default dataset %s", "reusing" if found else "synthesizing", root)
        return ensure_default_dataset(progress=progress, **params)
