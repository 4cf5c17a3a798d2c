"""An exclusive lock on a run folder for the whole run: ``fcntl.flock`` on ``<out>/.lock``.

Why: two processes on one ``--out`` (two ``--resume``, or an ``--overwrite`` during a run) would
interleave their checkpoints or delete each other's stages, and both exit 0. The kernel drops an
flock when its process dies (also on SIGKILL), so a stale lock file never blocks a ``--resume``.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

__all__ = ["LOCK", "RunFolderBusy", "run_folder_lock"]

LOCK = ".lock"


class RunFolderBusy(ValueError):
    """Another process holds the run folder's lock."""


@contextlib.contextmanager
def run_folder_lock(out: str | Path) -> Iterator[Path]:
    """Hold the lock of ``out`` (created if missing) for the block; :class:`RunFolderBusy` if another
    process holds it, and a one-line ``ValueError`` if the folder cannot be written."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise ValueError(f"cannot write run folder {out}: {err.strerror or err}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise RunFolderBusy(f"{out} is in use by another nni-kws process{pid}; wait for it to finish, or stop "
                                "it (Ctrl-C, kill) and then continue with --resume") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield out
    finally:
        os.close(fd)  # releases the lock; the file stays (unlinking it would race with the next locker)
