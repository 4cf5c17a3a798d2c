"""Ending a trial that NNI stops (assessor, ``maxTrialDuration``, user cancel) the way NNI counts it.

NNI 3.0's trial keeper (``nni_node/common/trial_keeper/process.js``) stops a trial with SIGINT
(SIGKILL 5 s later); the local training service (``training_service/v3/compat.js``) then marks it
``EARLY_STOPPED`` (assessor) or ``USER_CANCELED`` only if the process *died of a signal*
(``exitCode === null``); any exit code other than 0 is ``FAILED``. Lightning turns SIGINT into
"Detected KeyboardInterrupt, attempting graceful shutdown" and ``sys.exit(1)``, so without this an
assessor decision looks like a crash in the web UI. Other training services send SIGTERM.

:func:`exit_by_signal_when_stopped` makes SIGINT/SIGTERM raise :class:`TrialStopped` (a
``BaseException``, so Lightning tears down and re-raises it instead of calling ``sys.exit``), lets
``finally`` blocks run, then re-delivers the signal with its default action: the process dies of it.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Iterator

__all__ = ["STOP_SIGNALS", "TrialStopped", "exit_by_signal_when_stopped"]

_logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrialStopped(BaseException):
    """NNI asked this trial to stop (by a signal); not an error of the trial."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    for sig in STOP_SIGNALS:  # a second signal during clean-up must not interrupt it
        signal.signal(sig, signal.SIG_IGN)
    raise TrialStopped(signum)


@contextmanager
def exit_by_signal_when_stopped() -> Iterator[None]:
    """Within the block, a stop signal ends the process by that signal after unwinding the block.

    Signal handlers belong to the main thread; elsewhere the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in STOP_SIGNALS}
    try:
        yield
    except TrialStopped as stop:
        _logger.warning("trial %s: NNI stopped it (assessor, duration limit or user); exiting by the signal", stop)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(stop.signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [stop.signum])
        os.kill(os.getpid(), stop.signum)
        raise  # not reached: the default action of SIGINT/SIGTERM ends the process
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
