"""What `corelab run` shows while it works.

On a terminal: a rich progress bar on stderr with the patient being segmented and an ETA. Without
one (stdout is a log file or a cluster job's output): one plain line per finished scan on stdout,
flushed at once, so the log shows progress as it happens::

    scan 2/5  P002  ok  infarct 12.34 mL  3.1 s  ETA 0:00:09

The ETA is the median seconds per finished scan times the scans left, divided by how many scans
run at once (measured: processing seconds finished so far over wall seconds elapsed, at least 1).
Rich's own ETA needs many quick tasks before it shows anything; a batch has a few slow ones.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import TextIO

from corelab.pipeline.scan import ScanResult

__all__ = ["BatchProgress", "progress_mode", "median_eta", "format_seconds", "scan_line"]


def progress_mode(enabled: bool, stream: TextIO | None = None) -> str:
    """"bar" when stdout and stderr are terminals, "lines" when not, "off" when not ``enabled``."""
    if not enabled:
        return "off"
    stream = stream if stream is not None else sys.stdout
    interactive = all(getattr(s, "isatty", lambda: False)() for s in (stream, sys.stderr))
    return "bar" if interactive else "lines"


def median_eta(seconds: list[float], remaining: int, elapsed: float) -> float | None:
    """Seconds left: median seconds per finished scan x ``remaining`` / scans running at once.

    ``seconds``: processing time of each finished scan; ``elapsed``: wall seconds since the first
    scan started. None before the first scan finished.

    >>> median_eta([10.0, 12.0, 50.0], remaining=4, elapsed=72.0)  # one at a time
    48.0
    >>> median_eta([10.0, 10.0, 10.0, 10.0], remaining=4, elapsed=20.0)  # two workers
    20.0
    """
    if not seconds:
        return None
    at_once = max(1.0, sum(seconds) / elapsed) if elapsed > 0 else 1.0
    return statistics.median(seconds) * remaining / at_once


def format_seconds(seconds: float | None) -> str:
    """``H:MM:SS``, or ``-:--:--`` when unknown.

    >>> format_seconds(3725.4), format_seconds(None)
    ('1:02:05', '-:--:--')
    """
    if seconds is None:
        return "-:--:--"
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def scan_line(result: ScanResult, done: int, total: int, eta: float | None) -> str:
    """The plain log line of one finished scan (patient id, status, infarct mL, seconds, ETA)."""
    infarct = (f"{result.measurements.infarct_ml:.2f} mL" if result.status == "ok" and result.measurements
               else "-")
    line = (f"scan {done}/{total}  {result.patient_id}  {result.status}  infarct {infarct}  "
            f"{result.seconds:.1f} s  ETA {format_seconds(eta)}")
    return f"{line}  ({result.error})" if result.error else line


class BatchProgress:
    """Progress of one batch's scans: a bar, plain lines, or nothing (see the module docstring)."""

    def __init__(self, *, total: int, mode: str) -> None:
        self.total, self.mode = total, mode
        self._seconds: list[float] = []
        self._clock = time.perf_counter()
        self._bar = None
        self._task = None

    def __enter__(self) -> "BatchProgress":
        self._clock = time.perf_counter()
        if self.mode == "bar" and self.total > 0:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("ETA {task.fields[eta]}"), console=Console(stderr=True),
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("segmenting", total=self.total, eta=format_seconds(None))
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None

    def note(self, text: str) -> None:
        """A line for the person watching (above the bar on a terminal; on stderr)."""
        if self.mode == "off":
            return
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def started(self, patient_id: str) -> None:
        """The scan of ``patient_id`` is being segmented (shown on the bar)."""
        if self._bar is not None:
            self._bar.update(self._task, description=f"segmenting {patient_id}")

    def finished(self, result: ScanResult) -> None:
        """One scan finished: advance the bar, or print its line."""
        self._seconds.append(result.seconds)
        done = len(self._seconds)
        eta = median_eta(self._seconds, self.total - done, time.perf_counter() - self._clock)
        if self._bar is not None:
            self._bar.update(self._task, advance=1, eta=format_seconds(eta),
                             description=f"segmenting (last: {result.patient_id} {result.status})")
        elif self.mode == "lines":
            print(scan_line(result, done, self.total, eta), file=sys.stdout, flush=True)
