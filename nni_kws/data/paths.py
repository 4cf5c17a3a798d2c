"""Where the shared real-speech data lives, found the same way by the pipeline, benchmarks and tests."""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, cast

__all__ = ["SHARED_DATA_ENV", "REAL_TEST_DIR", "SPLITS_DIR", "NOISE_DIR", "RealSpeech", "real_speech",
           "shared_data_dir"]

#: Environment variable naming the shared data folder (overrides ``<repo>/../shared/data``).
SHARED_DATA_ENV = "NNI_KWS_SHARED_DATA"
#: The shared data folder's sub-folders (see its README): the official Speech Commands v2 test set, its
#: speaker-disjoint ``dev.txt`` / ``heldout.txt`` lists, and the background-noise recordings.
REAL_TEST_DIR, SPLITS_DIR, NOISE_DIR = "gsc-v2-test", "gsc-v2-test-splits", "gsc-background-noise"


def shared_data_dir(sub: str | None = None, *, required: bool = False) -> Path | None:
    """The shared data folder (``$NNI_KWS_SHARED_DATA``, else ``<repo>/../shared/data``), or ``sub`` inside it.

    Returns None when it does not exist, or raises ``FileNotFoundError`` naming the path with ``required``.
    The folder holds :data:`REAL_TEST_DIR`, :data:`SPLITS_DIR` and :data:`NOISE_DIR`.
    """
    env = os.environ.get(SHARED_DATA_ENV)
    base = Path(env).expanduser() if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    path = base / sub if sub else base
    if path.exists():
        return path
    if required:
        hint = f" (set {SHARED_DATA_ENV})" if not env else ""
        raise FileNotFoundError(f"shared data not found: {path}{hint}")
    return None


class RealSpeech(NamedTuple):
    """The real speech of the limited-real-speech protocol: train and tune on ``dev_list`` (a speaker-disjoint
    validation part split off it), report on ``heldout_list`` only; both list clips under ``root``."""

    root: Path
    dev_list: Path
    heldout_list: Path
    noise_dir: Path


def real_speech(shared: str | Path | None = None) -> RealSpeech:
    """The protocol's files in ``shared`` (default: :func:`shared_data_dir`, required)."""
    base = Path(shared).expanduser() if shared is not None else cast(Path, shared_data_dir(required=True))
    splits = base / SPLITS_DIR
    return RealSpeech(base / REAL_TEST_DIR, splits / "dev.txt", splits / "heldout.txt", base / NOISE_DIR)
