"""Driving ``nnictl`` from Python (scripts, tests): create an experiment on a port, stop it."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Mapping

__all__ = ["nnictl", "create", "stop"]

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
