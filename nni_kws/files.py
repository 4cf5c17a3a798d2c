"""State files of a run (``config.json``, ``result.json``, ``results.json``, ``model.pt``): written
atomically (temp file + rename, so a half-written file never looks complete) and read back through one
place whose errors name the file and the way out."""
from __future__ import annotations

import dataclasses
import fcntl
import json
import math
import os
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

__all__ = ["CorruptStateFile", "jsonable", "write_json", "read_json", "save_torch", "load_torch", "load_state_dict",
           "check_checkpoint", "CHECKPOINT_HINT", "file_lock", "replace_atomically"]

#: The way out of a broken per-epoch checkpoint.
CHECKPOINT_HINT = ("delete it to restart the stage (or copy an epoch=N.ckpt next to it over it), "
                   "or start over with --overwrite")


class CorruptStateFile(ValueError):
    """A state file that cannot be read; the message names it and what to do."""


def jsonable(obj: Any) -> Any:
    """Tensors, numpy values, paths and dataclasses as plain JSON values (NaN → None)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.detach().cpu().tolist())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return repr(obj)


def replace_atomically(path: Path, write: Any) -> Path:
    """``write(tmp)`` a temporary file beside ``path``, then rename it over ``path`` (all or nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` (made :func:`jsonable`) as indented JSON, atomically."""
    text = json.dumps(jsonable(data), indent=2) + "\n"
    return replace_atomically(Path(path), lambda tmp: tmp.write_text(text))


def read_json(path: str | Path, *, expect: type = dict, hint: str = "delete it or start over with --overwrite") -> Any:
    """Read a JSON state file; a broken or wrongly shaped one is a :class:`CorruptStateFile` naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptStateFile(f"{path}: corrupt ({err}); {hint}") from None
    if not isinstance(data, expect):
        raise CorruptStateFile(f"{path}: corrupt (a JSON {type(data).__name__}, expected a {expect.__name__}); {hint}")
    return data


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically."""
    return replace_atomically(Path(path), lambda tmp: torch.save(obj, tmp))


def load_torch(path: str | Path, *, hint: str = "delete it or start over with --overwrite",
               weights_only: bool = True) -> Any:
    """``torch.load`` on the CPU (weights only); an unreadable file is a :class:`CorruptStateFile` naming it."""
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):
        # torch.save writes a zip archive (since torch 1.6). Anything else would go to torch's legacy pickle reader,
        # which on garbage bytes may allocate gigabytes or (with weights_only=False) run arbitrary code, so it is
        # refused before torch sees it.
        reason = ("empty file" if path.stat().st_size == 0 else
                  "not a torch.save zip archive: truncated, overwritten, or saved by torch < 1.6")
        raise CorruptStateFile(f"{path}: corrupt ({reason}); {hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a broken file
        reason = next(iter(str(err).splitlines()), "")
        raise CorruptStateFile(f"{path}: corrupt ({type(err).__name__}: {reason[:160]}); {hint}") from None


def load_state_dict(model: torch.nn.Module, path: str | Path, *, hint: str = "delete it or start over with --overwrite"
                    ) -> torch.nn.Module:
    """Load the ``state_dict`` file ``path`` into ``model``; a broken file, or one of another
    architecture, is a :class:`CorruptStateFile` naming it."""
    state = load_torch(path, hint=hint)
    if not isinstance(state, Mapping):
        raise CorruptStateFile(f"{path}: corrupt (holds a {type(state).__name__}, not a state_dict); {hint}")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        lines = str(err).splitlines() or [""]
        reason = lines[1 if len(lines) > 1 else 0].strip()
        raise CorruptStateFile(f"{path}: does not fit this architecture ({reason[:160]}); {hint}") from None
    return model


def check_checkpoint(path: str | Path, hint: str = CHECKPOINT_HINT) -> Path:
    """``path`` if it is a readable Lightning checkpoint, else a :class:`CorruptStateFile` naming it
    (Lightning and NNI would load it later with a bare torch traceback)."""
    state = load_torch(path, hint=hint, weights_only=False)  # Lightning checkpoints hold hyper-parameters
    if not isinstance(state, Mapping) or "state_dict" not in state or "epoch" not in state:
        raise CorruptStateFile(f"{path}: not a Lightning checkpoint; {hint}")
    return Path(path)


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
