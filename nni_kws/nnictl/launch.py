"""Driving ``nnictl`` from Python (scripts, tests): create an experiment on a port, stop it."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

__all__ = ["nnictl", "create", "stop", "running", "shrink_config"]

_ID = re.compile(r"Experiment ID:\s*(?:\x1b\[\d+m)?([A-Za-z0-9_-]+)")


def nnictl(*args: str, env: Mapping[str, str] | None = None, timeout: float = 120,
           cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run the ``nnictl`` next to this Python (the venv's), with ``env`` (default: ours)."""
    exe = Path(sys.executable).parent / "nnictl"
    return subprocess.run([str(exe), *args], env=dict(env if env is not None else os.environ), capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def create(config: str | Path, port: int, env: Mapping[str, str] | None = None) -> str:
    """``nnictl create --config CONFIG --port PORT`` (detached); returns the experiment id."""
    out = nnictl("create", "--config", str(config), "--port", str(port), env=env)
    found = _ID.search(out.stdout + out.stderr)
    if out.returncode != 0 or not found:
        raise RuntimeError(f"nnictl create failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return found.group(1)


def stop(experiment_id: str, env: Mapping[str, str] | None = None) -> None:
    """``nnictl stop ID``; raises with nnictl's output if it fails."""
    out = nnictl("stop", experiment_id, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"nnictl stop {experiment_id} failed:\n{out.stdout}\n{out.stderr}")


@contextmanager
def running(config: str | Path, env: Mapping[str, str] | None = None, port: int | None = None) -> Iterator[Any]:
    """``with running(config) as rest:`` an experiment created on ``port`` (default: a free one),
    its :class:`~nni_kws.nnictl.rest.NniRest` client (``rest.experiment_id`` set), stopped on exit."""
    from .rest import NniRest, free_port

    port = port or free_port()
    exp_id = create(config, port, env)
    rest = NniRest(port)
    rest.experiment_id = exp_id
    try:
        yield rest
    finally:
        stop(exp_id, env)


def shrink_config(config: str | Path, out: str | Path, data: str | Path | None, *, preset: str = "tiny",
                  trials: int = 2, epochs: int = 1, concurrency: int = 2, lut: str | Path | None = None,
                  workdir: str | Path | None = None, trial_args: str = "", **fields: Any) -> Path:
    """A quick variant of an example config: space ``preset`` (its ``search_spaces/`` file, unless
    the config tunes something else), ``epochs`` per trial, ``trials`` trials, data ``data`` (None:
    the trials' default, the synthesized set), no assessor; paths made absolute; ``trial_args``
    appended to the trial command. ``fields`` override config keys. Returns ``out``."""
    config = Path(config).resolve()
    repo = config.parents[2] if config.parent.parent.name == "examples" else Path.cwd()
    cfg: dict[str, Any] = yaml.safe_load(config.read_text())
    command = re.sub(r"--preset \S+", f"--preset {preset}", cfg["trialCommand"])
    command = re.sub(r"--epochs \d+", f"--epochs {epochs}", command)
    command += (f" --data {Path(data).resolve()}" if data is not None else "") + (
        f" --lut {Path(lut).resolve()}" if lut else "")
    command += f" {trial_args}" if trial_args else ""
    space = cfg.get("searchSpaceFile", "")
    space = (repo / "search_spaces" / f"{preset}.json" if "search_spaces" in space
             else (config.parent / space).resolve())
    cfg.update(searchSpaceFile=str(space), trialCodeDirectory=str(repo), trialConcurrency=concurrency,
               trialCommand=command, maxTrialNumber=trials, maxExperimentDuration="30m")
    if workdir is not None:
        cfg["experimentWorkingDirectory"] = str(Path(workdir).resolve())
    cfg.pop("assessor", None)
    cfg.update(fields)
    out = Path(out)
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out
