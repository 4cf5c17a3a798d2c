"""A minimal client of the NNI manager's REST API (what the web UI reads), for scripts and tests.

Only loopback: the manager is asked at ``http://127.0.0.1:<port>/api/v1/nni/``.
"""
from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["NniRest", "free_port"]

FINISHED = ("DONE", "STOPPED", "ERROR")  # NO_MORE_TRIAL: all submitted, some may still run


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now, with the next one free too (NNI may use port + 1)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free pair of ports on 127.0.0.1")


class NniRest:
    """``GET`` endpoints of one running experiment's manager."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v1/nni"
        self.port, self.timeout = port, timeout
        self.experiment_id: str | None = None

    def get(self, path: str) -> Any:
        """Decoded JSON of ``GET <base>/<path>``; ``ConnectionError`` while the manager is not serving
        the API yet (it answers the web UI's HTML page then)."""
        url = f"{self.base}/{path.lstrip('/')}"
        with urllib.request.urlopen(url, timeout=self.timeout) as resp:
            body = resp.read().decode()
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            raise ConnectionError(f"{url} did not answer JSON (NNI manager not ready)") from None

    def status(self) -> str:
        """``RUNNING``, ``DONE``, ``NO_MORE_TRIAL``, ``STOPPED``, ``ERROR``, ..."""
        return self.get("check-status")["status"]

    def trials(self) -> list[dict[str, Any]]:
        return self.get("trial-jobs")

    def stopped_by_assessor(self) -> set[str]:
        """Ids of the trials the assessor stopped, from the manager's log (this machine only).

        NNI 3.0's local training service lists them as ``USER_CANCELED``, like trials a user
        cancels: ``V3asV1.cancelTrialJob`` (``nni_node/training_service/v3/compat.js``) records
        ``isEarlyStopped`` only after ``await stopTrial()``, and by then ``onTrialEnd`` has already
        set the status, so ``EARLY_STOPPED`` is never reached. The manager logs the assessor's
        ``KI`` (kill) command, which a user's cancel does not send."""
        log = Path(self.get("experiment")["logDir"]) / "log" / "nnimanager.log"
        text = log.read_text() if log.is_file() else ""
        return set(re.findall(r'received command from dispatcher: KI, "([^"]+)"', text))

    def metrics(self) -> list[dict[str, Any]]:
        """Every reported metric, with ``data`` decoded (``type`` is ``PERIODICAL`` or ``FINAL``)."""
        out = []
        for m in self.get("metric-data"):
            data = json.loads(m["data"])
            out.append({**m, "data": json.loads(data) if isinstance(data, str) else data})
        return out

    def final_results(self) -> dict[str, dict[str, Any]]:
        """``{trial id: final metric dict}`` for the trials that reported one."""
        return {m["trialJobId"]: m["data"] for m in self.metrics() if m["type"] == "FINAL"}

    def wait(self, timeout: float = 600.0, poll: float = 1.0, trials: int | None = None) -> str:
        """Block until the experiment is finished (or ``trials`` trials ended); return the status."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                status = self.status()
                ended = [t for t in self.trials() if t["status"] not in ("WAITING", "RUNNING", "UNKNOWN")]
                if status in FINISHED or (trials is not None and len(ended) >= trials):
                    return status
            except (urllib.error.URLError, ConnectionError):
                pass  # manager still starting
            if time.monotonic() > deadline:
                raise TimeoutError(f"experiment at {self.base} not finished after {timeout:.0f} s")
            time.sleep(poll)
