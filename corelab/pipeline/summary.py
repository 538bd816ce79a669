"""What a batch did, as `corelab run` prints it at the end, and the exit status that follows from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["BatchSummary", "FailedRow", "EXIT_OK", "EXIT_FAILED_ROWS", "EXIT_UNUSABLE", "EXIT_INTERRUPTED",
           "SUMMARY_FAILURES"]

# Exit status of `corelab run` (DESIGN "Outputs of corelab run"): every row ok; finished with failed
# rows (the tables are written); unusable input or options (nothing is processed); interrupted.
EXIT_OK, EXIT_FAILED_ROWS, EXIT_UNUSABLE, EXIT_INTERRUPTED = 0, 1, 2, 130
SUMMARY_FAILURES = 20  # failed rows named in the end summary; the rest are counted


@dataclass(frozen=True)
class FailedRow:
    """A failed row: its manifest row number (as a spreadsheet shows it), patient id and sentence."""

    row: int
    patient_id: str
    error: str


@dataclass(frozen=True)
class BatchSummary:
    """What a batch did.

    out_dir: the output folder. n_rows: manifest rows. n_ok / n_failed / n_not_run: rows by status.
    n_skipped: ok rows whose outputs were reused from an earlier run. n_out_of_window: rows with
    in_window false; n_window_unknown: rows with in_window empty. seconds: wall time.
    interrupted: the signal that stopped the batch ("SIGINT", "SIGTERM"), "" when it ran to the end.
    failures: every failed row, in manifest order. run_id: this run's file in runs/. sites_apart:
    a sentence per site whose brain density lies away from the others' (`corelab.pipeline.sites.sites_apart`).
    """

    out_dir: Path
    n_rows: int
    n_ok: int
    n_failed: int
    n_skipped: int
    n_out_of_window: int
    n_window_unknown: int
    seconds: float
    n_not_run: int = 0
    interrupted: str = ""
    failures: tuple[FailedRow, ...] = ()
    run_id: str = ""
    sites_apart: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        """130 interrupted, 1 finished with failed rows, 0 every row ok (2 is for unusable input)."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED_ROWS if self.n_failed else EXIT_OK

    def __str__(self) -> str:
        lines = [
            f"{self.n_rows} scans: {self.n_ok} ok ({self.n_skipped} reused from an earlier run), "
            f"{self.n_failed} failed, "
            + (f"{self.n_not_run} not run, " if self.n_not_run else "")
            + f"{self.n_out_of_window} outside the imaging window, "
            f"{self.n_window_unknown} with unknown timing; results in {self.out_dir} ({self.seconds:.0f} s)."
        ]
        if self.failures:
            lines.append("Failed rows (manifest row, patient id: why):")
            lines += [f"  row {f.row}, {f.patient_id}: {f.error}" for f in self.failures[:SUMMARY_FAILURES]]
            if len(self.failures) > SUMMARY_FAILURES:
                lines.append(f"  ... and {len(self.failures) - SUMMARY_FAILURES} more (the error column of "
                             "volumes.csv has every one).")
        lines += self.sites_apart
        if self.interrupted:
            lines.append(f"Interrupted by {self.interrupted}: {self.n_not_run} not run; volumes.csv/.xlsx "
                         "list every row. Run the same command again to finish: completed scans are reused.")
        return "\n".join(lines)
