"""Screenshots of NNI's web UI (headless Chromium) showing nni-kws trials with their metrics.

A check by eye that the web UI lists trials with accuracy and hardware costs; not part of CI.
Needs Chromium (Debian: ``apt-get install -y chromium``). Either photograph a running
experiment (``--port``), or let the script start a small one from an example config on the
'tiny' space (``--config ... --data ...``), wait for its trials, photograph it and stop it::

    python examples/webui_screenshot.py --config examples/nnictl/tpe.yml --data DIR --trials 4 --epochs 3
    python examples/webui_screenshot.py --port 8080          # an experiment that is already running

It writes ``webui_overview.png`` (best trials, metric graph) and ``webui_trials.png`` (the trial
table with the ``params``/``macs``/``latency_ms``/``peak_act_kb`` columns switched on, and the
per-epoch intermediate results). Chromium is driven through its DevTools protocol (the
``websockets`` package NNI already depends on) to click "Add/Remove columns". Only 127.0.0.1 is contacted.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from nni_kws.nnictl import launch
from nni_kws.nnictl.rest import NniRest, free_port

# Clicks "Add/Remove columns", ticks every metric column and the intermediate count, saves.
SHOW_METRIC_COLUMNS = """(() => {
  const button = [...document.querySelectorAll('button')].find(b => b.innerText.includes('Add/Remove columns'));
  button.click();
  let n = 0;
  for (const box of document.querySelectorAll('[role=dialog] .ms-Checkbox')) {
    const label = box.querySelector('.ms-Checkbox-text').innerText.trim();
    if ((label.endsWith('(metric)') || label.startsWith('Intermediate')) && !box.querySelector('input').checked) {
      box.querySelector('input').click(); n++;
    }
  }
  [...document.querySelectorAll('[role=dialog] button')].find(b => b.innerText.trim() === 'Save').click();
  return n;
})()"""


class Chromium:
    """A headless Chromium page driven over the DevTools protocol."""

    def __init__(self, exe: str, size: str = "1920,1000") -> None:
        self.profile = tempfile.mkdtemp(prefix="nni-kws-chromium-")
        self.proc = subprocess.Popen([exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                      "--disable-extensions", "--disable-background-networking",
                                      "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                                      f"--user-data-dir={self.profile}", f"--window-size={size}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("Chromium did not start its DevTools endpoint")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            page = next(t for t in json.load(resp) if t["type"] == "page")
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None))
        self._id = 0

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:  # skip events until our answer
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def open(self, url: str, text: str, timeout: float = 60) -> None:
        """Navigate and wait until ``text`` appears on the page (the UI loads data asynchronously)."""
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while not self.js(f"document.body && document.body.innerText.includes({json.dumps(text)})"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: {text!r} never appeared")
            time.sleep(0.5)
        time.sleep(2)  # charts animate in

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        self._stack.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.profile, ignore_errors=True)


def photograph(port: int, out: Path, chromium: str, size: str) -> list[Path]:
    """The overview page, then the trials page with metric columns and intermediate results."""
    browser = Chromium(chromium, size)
    try:
        base = f"http://127.0.0.1:{port}"
        browser.open(f"{base}/oview", "Top trials")
        shots = [browser.screenshot(out / "webui_overview.png")]
        browser.open(f"{base}/detail", "SUCCEEDED")
        browser.js(SHOW_METRIC_COLUMNS)
        time.sleep(1)
        browser.js("[...document.querySelectorAll('button')]"
                   ".find(b => b.innerText.includes('Intermediate result')).click()")
        time.sleep(2)
        shots.append(browser.screenshot(out / "webui_trials.png"))
        return shots
    finally:
        browser.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, help="web UI port of a running experiment")
    p.add_argument("--config", help="example nnictl config to start (on the 'tiny' space)")
    p.add_argument("--data", help="dataset folder for --config (default: $NNI_KWS_DATA)")
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lut", help="latency table, so trials also report latency_ms")
    p.add_argument("--trial-args", default="", help="extra trial arguments, e.g. '--max-per-class 40'")
    p.add_argument("--out", default="runs/webui", help="folder for the PNGs")
    p.add_argument("--size", default="1920,1000", help="window size W,H")
    args = p.parse_args()
    if (args.port is None) == (args.config is None):
        p.error("give exactly one of --port and --config")
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                    None)
    if chromium is None:
        raise SystemExit("Chromium not found: apt-get install -y chromium (or put it on PATH)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    exp_id, port = None, args.port
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if args.config:
        from nni_kws.nnictl.train_trial import resolve_data
        port = free_port()
        config = launch.shrink_config(args.config, Path(tempfile.mkdtemp(prefix="nni-kws-webui-")) / "config.yml",
                                      resolve_data(args.data), trials=args.trials, epochs=args.epochs, lut=args.lut,
                                      trial_args=args.trial_args)
        exp_id = launch.create(config, port, env)
        print(f"experiment {exp_id} on http://127.0.0.1:{port}")
    try:
        print("status:", NniRest(port).wait(timeout=3600, trials=args.trials if exp_id else 0))
        for png in photograph(port, out, chromium, args.size):
            print("wrote", png)
    finally:
        if exp_id is not None:
            launch.stop(exp_id, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
