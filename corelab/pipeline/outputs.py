"""Files of a `corelab run` output folder, written atomically.

Every file is first written under a temporary name in its final folder and then moved into place
with `os.replace`, so a killed run leaves either the old file or the new one, never half of one.
A per-scan record (``records/<patient_id>.json``) is written last, after the mask and the QC image:
its presence says the scan's outputs are complete, which is what a rerun checks before skipping.
`table_row` and `write_tables` turn manifest rows and their records into the volumes tables.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import re
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from corelab.config import TimingWindow, mask_class
from corelab.io.manifest import OUTPUT_COLUMNS, ManifestRow, imaging_window
from corelab.io.tables import neutralize_frame
from corelab.pipeline.guards import GUARD_FLAG_KINDS
from corelab.pipeline.sites import BRAIN_SHIFT, site_column, site_rows
from corelab.pipeline.workbook import write_workbook

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "write_mask",
    "read_record",
    "write_record",
    "table_row",
    "write_tables",
    "needs_review",
    "REVIEW_FLAG_KINDS",
    "ROUNDING",
]

# Rounding happens here only, when rows become a table. 1e-4 mL is 0.1 mm^3, well below one voxel.
ROUNDING = {
    "hours_since_onset": 2,
    "infarct_ml": 4,
    "severe_ml": 4,
    "intermediate_ml": 4,
    "subtle_ml": 4,
    "hemorrhage_ml": 4,
    "intracranial_ml": 2,
    "infarct_mean_hu": 2,
    "brain_median_hu": 1,
}


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffixes, so writers pick the same format);
    on success move it onto ``path``, on failure remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:12]}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_mask(labels: np.ndarray, like, path: str | Path) -> None:
    """Write a uint8 label map in ``like``'s geometry (a `corelab.io.volume.Volume`) atomically.

    ``like`` must carry the scan's meta: when reading reoriented the input (``meta.stored_grid``),
    the mask is written back onto the input file's own grid, so it overlays the file voxel for voxel
    (`corelab.pipeline.scan.ScanResult.label_volume` builds such a ``like``).
    """
    from corelab.io.volume import write_image

    with atomic_path(path) as tmp:
        write_image(np.asarray(labels, dtype=np.uint8), like, tmp)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def write_record(path: str | Path, record: dict[str, Any]) -> None:
    """Write one scan's result record (JSON) atomically."""
    atomic_write_text(path, json.dumps(record, indent=1, default=_json_default, allow_nan=False) + "\n")


def read_record(path: str | Path) -> dict[str, Any] | None:
    """A record written by `write_record`, or None when it is missing or unreadable (then the
    scan is simply done again)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# Kinds of flag that say the numbers of a row must be looked at before they are used, by the words
# their sentence starts with; the producers start them so (preprocessing: `_coverage_flags` in
# `corelab.preprocess.intracranial`; `corelab.pipeline.scan`: `reading_flags`, `brain_shift_flag`).
# The guards' kinds come from `corelab.pipeline.guards`, whose sentences are built from those same
# constants, so a guard flag cannot drift away from its kind.
REVIEW_FLAG_KINDS: dict[str, str] = {
    "Missing slices:": "a gap of the series was filled by interpolation (invented slices)",
    "Uneven slice spacing:": "uneven slice gaps were resampled onto an even grid",
    "Partial coverage:": "the field of view or the scan's top cuts the skull",
    "Orientation:": "the cranial cavity is not longer than tall: the head may not lie upright in the scan",
    BRAIN_SHIFT: "the brain's median HU lies far from the models' reference",
    **GUARD_FLAG_KINDS,
}


def needs_review(flags) -> bool:
    """True when any flag sentence is of a kind that says the volume must be checked before use.

    The kinds (`REVIEW_FLAG_KINDS`, by the sentence's first words):

    - ``Missing slices:`` a gap of the series was filled by interpolation, so slices were invented;
    - ``Uneven slice spacing:`` uneven gaps were resampled, so every analysed slice is interpolated;
    - ``Partial coverage:`` the field of view or the scan's top cuts the skull;
    - ``Orientation:`` the cranial cavity is not longer than tall (a header that lays the head down);
    - ``Brain shift:`` the brain's median HU lies far from the models' reference (calibration);
    - the guards' kinds (`corelab.pipeline.guards.GUARD_FLAG_KINDS`): ``Implausible volume:``,
      ``Symmetric claim:``, ``Brain HU out of range:``, ``Claim at the skull:``.

    Timing flags (outside the window, onset unknown) say nothing about the number and do not count.

    >>> needs_review(["Partial coverage: the scan stops below the top of the skull."]), needs_review([])
    (True, False)
    """
    return bool(review_kinds(flags))


def review_kinds(flags) -> list[str]:
    """The `REVIEW_FLAG_KINDS` (their words, without the colon) of the flags that make a scan need
    review, in the order they come: why `needs_review` is true. ``flags``: the sentences, or
    volumes.csv's ``flags`` cell (the sentences joined by spaces), where a kind counts at the cell's
    start or after a sentence's end.

    >>> review_kinds("Onset and scan time are both unknown. Partial coverage: the field of view cuts "
    ...              "the skull. Brain shift: the brain's median is 23.8 HU.")
    ['Partial coverage', 'Brain shift']
    >>> review_kinds(["The imaging window is unknown."])
    []
    """
    if isinstance(flags, str):
        found = []
        for kind in REVIEW_FLAG_KINDS:
            match = re.search(r"(?:^|(?<=[.!?]) )" + re.escape(kind), flags.strip())
            if match:
                found.append((match.start(), kind))
        return [kind.rstrip(":") for _, kind in sorted(found)]
    kinds = [next((k for k in REVIEW_FLAG_KINDS if str(flag).strip().startswith(k)), None) for flag in flags]
    return list(dict.fromkeys(k.rstrip(":") for k in kinds if k))


def table_row(row: ManifestRow, outcome: dict[str, Any], *, model_version: str,
              window: TimingWindow = TimingWindow(), run_id: str = "") -> dict[str, Any]:
    """One volumes.csv row (unrounded, see `write_tables`) from a manifest row and its outcome (a
    record as `corelab.pipeline.batch` writes it, or ``{"status": "failed" or "not_run", "error": ...}``).

    ``run_id``: the current run (`corelab.pipeline.runs`); a record names the run that computed it
    (empty for a record written before runs were named), any other outcome is this run's.

    Timing is recomputed from the current manifest on every run, so a corrected onset takes effect
    without segmenting the scan again; ``window``: the imaging window (`corelab.config.TimingWindow`).
    ``onset`` and ``scan_time`` are date-times (text as written when the manifest's cell is not a
    date); ``scan`` is the manifest's cell as written; ``needs_review`` follows
    `needs_review` (None for a row that was not segmented).
    """
    table: dict[str, Any] = {
        "patient_id": row.patient_id,
        "status": outcome.get("status", "failed"),
        "error": outcome.get("error", ""),
        "onset": row.onset or row.onset_text,
        "scan_time": row.scan_time or row.scan_time_text,
        "scan_time_source": "manifest" if row.scan_time else "",
        "hours_since_onset": None,
        "in_window": None,
        "scan": row.scan_text or (str(row.scan) if row.scan else ""),  # as given (DESIGN "Manifest")
        "series_uid": row.series_uid,
        "model_version": model_version,
        "run_id": outcome.get("run_id", "") if "record_version" in outcome else run_id,
        **dict(row.extra),
    }
    flags: list[str] = []
    if table["status"] == "ok":
        scan_time = row.scan_time
        if scan_time is None and outcome.get("acquisition_datetime"):
            scan_time = dt.datetime.fromisoformat(outcome["acquisition_datetime"])
            table.update(scan_time=scan_time, scan_time_source="dicom")
        timing = imaging_window(row.onset, scan_time, window)
        m = outcome["measurements"]
        table.update(
            hours_since_onset=timing.hours_since_onset,
            in_window=timing.in_window,
            series_uid=outcome.get("series_uid") or row.series_uid,
            infarct_ml=m["infarct_ml"],
            severe_ml=m["severe_ml"],
            intermediate_ml=m["intermediate_ml"],
            subtle_ml=m["subtle_ml"],
            hemorrhage_ml=m["hemorrhage_ml"],
            intracranial_ml=outcome.get("intracranial_ml"),
            infarct_mean_hu=m["infarct_mean_hu"],
            brain_median_hu=outcome.get("brain_median_hu"),
            auto_class=mask_class(m["infarct_mean_hu"], empty=not m["infarct_ml"]),
            mask=outcome["mask"],
            qc=outcome["qc"],
            scan_sha256=outcome["scan_sha256"],
            # What reading did to the scan (series chosen, tilt corrected, slices interpolated),
            # in the table so a reviewer sees it without opening records/<patient_id>.json.
            read_notes=" ".join(n.strip() for n in outcome.get("notes", []) if n and n.strip()),
        )
        flags += [timing.flag] if timing.flag else []
        flags += outcome.get("flags", [])
    elif row.onset is not None and row.scan_time is not None:
        # The scan failed but the manifest's own dates still say where it falls in the window.
        timing = imaging_window(row.onset, row.scan_time, window)
        table.update(hours_since_onset=timing.hours_since_onset, in_window=timing.in_window)
    table["flags"] = " ".join(f.strip() for f in flags if f and f.strip())
    table["needs_review"] = needs_review(flags) if table["status"] == "ok" else None
    return table


def _value(column: str, value: Any) -> Any:
    """A table value, typed and rounded (`ROUNDING`): None for unknown or not measured."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if column in ROUNDING and isinstance(value, (int, float)) and not isinstance(value, bool):
        return round(float(value), ROUNDING[column])
    return value


def _csv_text(value: Any) -> Any:
    """A typed value as volumes.csv writes it: "" empty, true/false, ISO 8601 date-times."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return value


def write_tables(rows: list[dict[str, Any]], extra_columns: tuple[str, ...], out_dir: str | Path, *,
                 excel: bool = True) -> pd.DataFrame:
    """Write ``volumes.csv`` and ``volumes.xlsx`` (same content, manifest order) and return the table
    as volumes.csv holds it (text for booleans and date-times, before formula neutralization).

    Columns: `corelab.io.manifest.OUTPUT_COLUMNS`, then the manifest's extra columns unchanged.
    Empty cells mean unknown (``in_window``) or not measured (a failed or not_run row). The xlsx
    keeps types (date-times, booleans, numbers) and adds a ``columns`` and a ``sites`` sheet
    (`corelab.pipeline.workbook`, `corelab.pipeline.sites`). ``excel``: False writes volumes.csv
    only (the rewrites while a batch runs).
    """
    out_dir = Path(out_dir)
    columns = list(OUTPUT_COLUMNS) + [c for c in extra_columns if c not in OUTPUT_COLUMNS]
    typed = [[_value(c, row.get(c)) for c in columns] for row in rows]
    table = pd.DataFrame([[_csv_text(v) for v in values] for values in typed], columns=columns, dtype=object)
    inert = neutralize_frame(table)  # manifest text must not become a live spreadsheet formula
    with atomic_path(out_dir / "volumes.csv") as tmp:
        inert.to_csv(tmp, index=False)
    if excel:
        with atomic_path(out_dir / "volumes.xlsx") as tmp:
            sites = site_rows(rows, site_column(extra_columns), decimals=ROUNDING["brain_median_hu"])
            write_workbook(tmp, columns, typed, sites=sites)
    return table
