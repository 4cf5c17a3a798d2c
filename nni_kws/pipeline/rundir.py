"""What a run folder holds: the stored record of each finished stage and the options each stage was made with."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from nni_kws.files import CorruptStateFile, read_json

from .config import OPTIONS, RESULT

__all__ = ["stage_done", "stored_options"]


def _hint(stage_dir: Path) -> str:
    return f"delete {stage_dir} to run the stage again (with --resume), or start over with --overwrite"


def stage_done(out: str | Path, stage: str) -> dict[str, Any] | None:
    """The stored result of a completed stage, or None (a broken one: :class:`CorruptStateFile`)."""
    path = Path(out) / stage / RESULT
    if not path.is_file():
        return None
    hint = _hint(path.parent)
    result = read_json(path, hint=hint)
    if stage in ("search", "train", "quantize") and not isinstance(result.get("arch"), dict) \
            and not result.get("baseline"):
        raise CorruptStateFile(f"{path}: corrupt (no \"arch\" object); {hint}")
    return result


def stored_options(out: str | Path, stage: str) -> dict[str, Any] | None:
    """The options a stage in ``out`` was made (or started) with: its result.json's, else its options.json."""
    for name in (RESULT, OPTIONS):
        path = Path(out) / stage / name
        if path.is_file():
            data = read_json(path, hint=_hint(path.parent))
            options = data.get("options") if name == RESULT else data
            return options if isinstance(options, dict) else None
    return None
