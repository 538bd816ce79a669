"""Stopping a batch on Ctrl-C (SIGINT) or SIGTERM without losing what it finished.

The first SIGINT asks the batch to take no new scans: the scans in flight finish and are saved,
then every manifest row is written (unfinished ones ``not_run``) and `corelab run` exits 130. A
second SIGINT, or a SIGTERM (what a cluster's scheduler sends before it kills a job, usually with
30 s to spare), stops the scans in flight at once with `KeyboardInterrupt`; the tables are still
written. A signal only raises while scans are being processed (`StopRequest.hard`): while the
tables and run.json are written it is noted, never raised, so the files are complete.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator

__all__ = ["StopRequest", "stop_on_signals"]


class StopRequest:
    """Whether the batch was asked to stop, and by which signal.

    Call it (``stop()``) to ask; the first call that finds a request runs ``on_first`` once (the
    signal handler itself only records, so nothing is printed from inside it).

    >>> stop = StopRequest()
    >>> stop(), stop.signal_name
    (False, '')
    >>> stop.request(signal.SIGINT); stop(), stop.signal_name
    (True, 'SIGINT')
    """

    def __init__(self, on_first: Callable[[str], None] | None = None) -> None:
        self.signal_name = ""
        self.count = 0
        self.hard = False  # raise KeyboardInterrupt on a second SIGINT or any SIGTERM
        self.on_first = on_first  # e.g. tell the person watching
        self._told = False

    def request(self, signum: int) -> None:
        """Record a signal; raise KeyboardInterrupt when it asks to stop at once and `hard` is set."""
        self.count += 1
        self.signal_name = self.signal_name or signal.Signals(signum).name
        at_once = signum == signal.SIGTERM or self.count > 1
        if at_once and self.hard:
            self.hard = False  # once: the interrupted code's clean-up must not be interrupted again
            raise KeyboardInterrupt(signal.Signals(signum).name)

    def __call__(self) -> bool:
        if self.signal_name and not self._told:
            self._told = True
            if self.on_first is not None:
                self.on_first(self.signal_name)
        return bool(self.signal_name)

    @contextlib.contextmanager
    def hard_stop(self) -> Iterator[None]:
        """Within this block a second SIGINT or a SIGTERM raises KeyboardInterrupt."""
        self.hard = True
        try:
            if self.count and (self.count > 1 or self.signal_name == "SIGTERM"):
                self.hard = False
                raise KeyboardInterrupt(self.signal_name)
            yield
        finally:
            self.hard = False


@contextlib.contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[StopRequest]:
    """Route SIGINT and SIGTERM to ``stop`` inside the block, restoring the old handlers after.

    Outside the main thread (a batch started from a worker thread) signals cannot be caught there;
    the block then runs with the process's own handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    old = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            old[signum] = signal.signal(signum, lambda number, frame: stop.request(number))
        yield stop
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
