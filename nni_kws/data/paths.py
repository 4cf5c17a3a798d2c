"""Where the shared real-speech data lives, found the same way by the pipeline, benchmarks and tests."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SHARED_DATA_ENV", "shared_data_dir"]

#: Environment variable naming the shared data folder (overrides ``<repo>/../shared/data``).
SHARED_DATA_ENV = "NNI_KWS_SHARED_DATA"


def shared_data_dir(sub: str | None = None, *, required: bool = False) -> Path | None:
    """The shared data folder (``$NNI_KWS_SHARED_DATA``, else ``<repo>/../shared/data``), or ``sub`` inside it.

    Returns None when it does not exist, or raises ``FileNotFoundError`` naming the path with ``required``.
    The folder holds ``gsc-v2-test/``, ``gsc-v2-test-splits/`` and ``gsc-background-noise/`` (see its README).
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
