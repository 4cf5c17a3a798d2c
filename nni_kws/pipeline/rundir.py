"""What a run folder holds: the stored record of each finished stage and the options each stage was made with,
and the checks that keep a run from mixing stages made with other options."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from nni_kws.files import CorruptStateFile, read_json

from .config import CONFIG, OPTIONS, RESULT, STAGES, options_mismatch

__all__ = ["stage_done", "stored_options", "check_stage_options", "prepare_run_folder"]


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


def check_stage_options(out: Path, stage: str, options: Mapping[str, Any]) -> None:
    """Refuse to continue or keep ``stage`` when it was made or started with other ``options`` (or arch)."""
    stored = stored_options(out, stage)
    unfinished = not (out / stage / RESULT).is_file()
    # a checkpoint of the stage, or of one of a split search's supernets (<stage>/<label>-<value>/checkpoints)
    has_checkpoint = any((out / stage).glob("**/checkpoints/last.ckpt"))
    if stored is None or (unfinished and not has_checkpoint):
        return  # nothing kept: an unfinished stage without a checkpoint (or quantize) starts afresh
    mismatch = options_mismatch(stored, options)
    if mismatch:
        raise ValueError(f"{out / stage} was made with {mismatch}; resume with the same options, delete "
                         f"{out / stage} (and the stages after it) to redo it, use --overwrite, or choose "
                         "another --out")


def prepare_run_folder(out: Path, stages: Sequence[str], options: Mapping[str, Mapping[str, Any]], *,
                       resume: bool, overwrite: bool) -> None:
    """Make ``out`` ready to run ``stages``: wipe it with ``overwrite``; with ``resume``, refuse a stage made or
    started with other ``options[stage]``; otherwise refuse a folder that already holds one of ``stages``.

    The caller writes ``config.json`` afterwards, so the stored config always describes the stored stages.
    """
    if overwrite:
        for stage in (*STAGES[:-1], "profile"):
            shutil.rmtree(out / stage, ignore_errors=True)
        for name in (CONFIG, "results.json", "report.md", "pareto.png"):
            (out / name).unlink(missing_ok=True)
    elif resume:
        for stage, stage_opts in options.items():
            check_stage_options(out, stage, stage_opts)
    else:
        done = [s for s in STAGES[:-1] if stage_done(out, s)]
        again = [s for s in stages if s in done]
        started = [s for s in stages if s != "report" and (out / s).is_dir() and s not in done]
        if again or started:
            which = ", ".join([f"{s} (complete)" for s in again] + [f"{s} (started)" for s in started])
            raise ValueError(f"{out} already holds stage {which}; pass --resume to continue, "
                             "--overwrite to start over, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
