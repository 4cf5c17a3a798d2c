"""SIGINT (Ctrl-C) and SIGTERM (``kill``, ``docker stop``, batch schedulers) as a clean stop of a run.

Why not Python's default: Lightning catches ``KeyboardInterrupt`` and calls ``sys.exit(1)``, and
NNI's strategy logs any exception as "Strategy failed to execute"; SIGTERM's default just kills the
process. Here a signal only *requests* a stop; the request is honoured between training batches
(:class:`StopOnRequest`, part of every trainer of :func:`nni_kws.training.make_trainer`) and at
once elsewhere, as :class:`StopRequested`, a ``BaseException`` that neither library swallows. The
last per-epoch checkpoint (written atomically) is then what ``--resume`` continues from. A second
signal stops at once.
"""
from __future__ import annotations

import contextlib
import signal
from types import FrameType
from typing import Any, Iterator

import pytorch_lightning as pl

__all__ = ["StopRequested", "StopOnRequest", "stop_on_signals", "check_stop", "deferred_stop", "exit_code"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(BaseException):
    """A stop asked for by ``signum`` (SIGINT or SIGTERM); the CLI exits with ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class _State:
    requested: int | None = None
    deferring: int = 0
    installed: bool = False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    first = _State.requested is None
    _State.requested = signum
    if _State.deferring == 0 or not first:
        raise StopRequested(signum)


def check_stop() -> None:
    """Raise :class:`StopRequested` if a signal asked for a stop."""
    if _State.requested is not None:
        raise StopRequested(_State.requested)


@contextlib.contextmanager
def deferred_stop() -> Iterator[None]:
    """Inside the block a (first) signal is only recorded; the block polls :func:`check_stop`."""
    _State.deferring += 1
    try:
        yield
    finally:
        _State.deferring -= 1


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Install the SIGINT/SIGTERM handlers for the block (the CLI wraps each run in it).

    While they are installed, :class:`StopOnRequest` also takes SIGTERM back from Lightning, which
    wraps it at every ``fit``.
    """
    old = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    _State.requested, _State.deferring, _State.installed = None, 0, True
    for sig in _SIGNALS:
        signal.signal(sig, _on_signal)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        _State.requested, _State.installed = None, False


def exit_code(stop: StopRequested) -> int:
    """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(stop.signum)


class StopOnRequest(pl.Callback):
    """Defers signals while a trainer runs and stops it between batches when one arrived."""

    def __init__(self) -> None:
        self._stack: contextlib.ExitStack | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if _State.installed:
            # Lightning has just wrapped SIGTERM in its own handler, which makes the fit loop raise
            # SIGTERMException (a SystemExit with status 0) at the epoch's end: put ours back alone.
            signal.signal(signal.SIGTERM, _on_signal)
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(deferred_stop())
        check_stop()

    def on_train_batch_end(self, *args: Any) -> None:
        check_stop()

    def on_validation_batch_end(self, *args: Any) -> None:
        check_stop()

    def on_train_epoch_start(self, *args: Any) -> None:
        check_stop()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None
