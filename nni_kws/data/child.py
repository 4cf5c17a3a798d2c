"""Synthesizers speak in a fresh child process that streams the samples back.

Both engines keep process-wide hidden state that would make a word's samples depend on the parent
process: libespeak-ng's statics (what was said before, even across ``espeak_Terminate``) and the C
library's ``rand()``, which flite's clustergen voices draw their excitation from (any other thread of
the parent that calls ``rand()`` shifts it). A fresh child per plan gives the same bytes for the same
plan; the samples come out while the child still speaks, so synthesis and post-processing overlap.
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["serve", "speak_in_child"]


def serve(synth: Callable[[dict[str, Any]], tuple[np.ndarray, int]], info: dict[str, Any]) -> None:
    """Child side: read a JSON list of utterances on stdin; write ``info``, then ``len, rate, int16`` for each."""
    plan = json.load(sys.stdin)
    out = sys.stdout.buffer
    header = json.dumps(info).encode()
    out.write(struct.pack("<I", len(header)) + header)
    for u in plan:
        wav, rate = synth(u)
        out.write(struct.pack("<II", wav.size, rate) + wav.astype("<i2").tobytes())
    out.flush()


# Child bootstrap: empty stand-ins for the packages so that only the engine's module is imported,
# not the package __init__ files (they import torch: seconds per dataset for nothing).
_BOOTSTRAP = """import sys, types
for name, path in (("nni_kws", {pkg!r}), ("nni_kws.data", {data!r})):
    sys.modules[name] = module = types.ModuleType(name)
    module.__path__ = [path]
from nni_kws.data.{engine} import _worker_main
_worker_main()
"""


def _read_exact(stream: Any, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError
    return data


def speak_in_child(engine: str, plan: list[dict[str, Any]]) -> tuple[dict[str, Any], Iterator[tuple[np.ndarray, int]]]:
    """Say every utterance of ``plan`` with ``nni_kws.data.<engine>._worker_main`` in a fresh child process.

    Returns the child's info and an iterator of ``(int16 samples, sample rate)``, one per utterance.
    """
    data_dir = Path(__file__).resolve().parent
    errors = tempfile.TemporaryFile()  # a file, not a pipe: a chatty child can never block on it
    code = _BOOTSTRAP.format(pkg=str(data_dir.parent), data=str(data_dir), engine=engine)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=errors)
    assert proc.stdin and proc.stdout
    proc.stdin.write(json.dumps(plan).encode())  # the child reads all of it before writing anything
    proc.stdin.close()

    def fail() -> RuntimeError:
        proc.kill()
        proc.wait()
        errors.seek(0)
        err = errors.read().decode(errors="replace").strip()[-2000:]
        return RuntimeError(f"{engine} synthesis process failed (exit {proc.returncode}): {err}")

    def arrays() -> Iterator[tuple[np.ndarray, int]]:
        try:
            for _ in plan:
                n, rate = struct.unpack("<II", _read_exact(proc.stdout, 8))
                yield np.frombuffer(_read_exact(proc.stdout, 2 * n), dtype="<i2"), rate
            if proc.wait() != 0:
                raise fail()
        except EOFError:
            raise fail() from None
        finally:
            if proc.poll() is None:  # the consumer stopped early: do not leave the child behind
                proc.kill()
                proc.wait()
            proc.stdout.close()
            errors.close()

    try:
        info = json.loads(_read_exact(proc.stdout, struct.unpack("<I", _read_exact(proc.stdout, 4))[0]))
    except (EOFError, ValueError):
        exc = fail()
        proc.stdout.close()
        errors.close()
        raise exc from None
    return info, arrays()
