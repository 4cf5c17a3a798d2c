"""Ending a trial that NNI stops (assessor, ``maxTrialDuration``, user cancel) the way NNI counts it.

NNI 3.0's trial keeper (``nni_node/common/trial_keeper/process.js``) stops a trial with SIGINT
(SIGKILL 5 s later); the local training service (``training_service/v3/compat.js``) counts it as
stopped (``USER_CANCELED``/``EARLY_STOPPED``) only if the process *died of a signal*
(``exitCode === null``); any exit code other than 0 is ``FAILED``. Lightning turns SIGINT into
"Detected KeyboardInterrupt, attempting graceful shutdown" and ``sys.exit(1)``, so without this an
assessor decision looks like a crash in the web UI. Other training services send SIGTERM.

:func:`exit_by_signal_when_stopped` takes the stop as the CLI does (:mod:`nni_kws.signals`: between
training batches, as :class:`~nni_kws.signals.StopRequested`), lets ``finally`` blocks run, then
re-delivers the signal with its default action, so the process dies of it.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

from nni_kws.signals import StopRequested, stop_on_signals

__all__ = ["exit_by_signal_when_stopped"]

_logger = logging.getLogger(__name__)


@contextmanager
def exit_by_signal_when_stopped() -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM end the process by that signal after unwinding the block.

    Signal handlers belong to the main thread; elsewhere the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        with stop_on_signals():
            yield
    except StopRequested as stop:
        _logger.warning("trial %s: NNI stopped it (assessor, duration limit or user); exiting by the signal", stop)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(stop.signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [stop.signum])
        os.kill(os.getpid(), stop.signum)
        raise  # not reached: the default action of SIGINT/SIGTERM ends the process
