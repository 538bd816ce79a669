"""Reading and checking a trial manifest (.xlsx or .csv), and the follow-up imaging window.

The manifest's columns are fixed by DESIGN.md: ``patient_id`` and ``scan`` are required;
``onset``, ``scan_time`` and ``series_uid`` are optional; every other column is carried through to
the outputs unchanged. Header names are matched without regard to case or surrounding spaces.

A problem with one row (empty or duplicate id, an id that is not a safe file name or names the same
file as another row's on macOS or Windows, see `corelab.io.manifest_ids`; a scan path that does not
exist; a date that cannot be read or lies in the future) never stops the batch: the row keeps its
place and carries a one-sentence ``error``, and the pipeline writes it as a ``failed`` row. Only a
manifest that cannot be used at all (unreadable, required column missing, no rows) raises
`ManifestError`.

Date-times and time zones:
    ISO 8601 text ("2024-03-01T14:30", "2024-03-01 14:30:00", "2024-03-01T14:30+01:00",
    "...Z") and spreadsheet date-time cells are accepted. A date without a time is refused, since
    hours since onset cannot be known to better than a day. Times without an offset are taken as the
    site's local clock, the same clock as the DICOM tags (which carry no offset). When both onset and
    scan time carry an offset the difference is exact; when only one does, its offset is ignored and
    both are read as the same local clock (a manifest mixing the two is almost always one site).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corelab.config import OUTPUT_COLUMNS, TimingWindow
from corelab.errors import ManifestError
from corelab.io.manifest_ids import file_name_key, file_name_problem, shown_id, why_same_file

__all__ = [
    "ManifestRow",
    "Manifest",
    "Timing",
    "read_manifest",
    "parse_datetime",
    "imaging_window",
]

REQUIRED = ("patient_id", "scan")
KNOWN = ("patient_id", "scan", "onset", "scan_time", "series_uid")

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# A date this far past the core lab's clock cannot be right whatever the site's time zone
# (offsets reach 14 h), so it is a typing error, not a scan from tomorrow.
FUTURE_TOLERANCE = dt.timedelta(hours=24)


@dataclass(frozen=True)
class ManifestRow:
    """One manifest row, checked.

    row: the row's number as a spreadsheet shows it (header is row 1, first scan row 2).
    patient_id: text, stripped; never evaluated ("007" stays "007").
    scan: absolute path of the scan (file or DICOM folder), or None when the cell is empty.
    scan_text: the scan cell as written (DESIGN keeps paths as given: the output table shows this).
    onset, scan_time: parsed date-times (naive = site local clock), or None when empty or unreadable.
    onset_text, scan_time_text: the cells as written, for the output table.
    series_uid: the SeriesInstanceUID to use, or "".
    extra: the other columns as (output column name, value) pairs, in manifest order, values as read.
    error: "" for a usable row, otherwise one sentence saying what is wrong with it.
    """

    row: int
    patient_id: str
    scan: Path | None
    onset: dt.datetime | None
    scan_time: dt.datetime | None
    onset_text: str
    scan_time_text: str
    series_uid: str
    extra: tuple[tuple[str, Any], ...]
    error: str = ""
    scan_text: str = ""


@dataclass(frozen=True)
class Manifest:
    """A checked manifest: rows in manifest order, and the names of the carried-through columns."""

    path: Path
    rows: tuple[ManifestRow, ...]
    extra_columns: tuple[str, ...]


@dataclass(frozen=True)
class Timing:
    """Where a scan falls in the follow-up window.

    hours_since_onset: scan_time - onset in hours (negative when onset is after the scan), or None.
    in_window: True / False, or None when unknown (no onset, no scan time, onset after the scan).
    flag: "" or one sentence saying why the window is unknown or missed.
    """

    hours_since_onset: float | None
    in_window: bool | None
    flag: str


def parse_datetime(value: Any, *, column: str) -> dt.datetime | None:
    """A manifest date-time cell as a datetime; None for an empty cell.

    Accepts ISO 8601 text and spreadsheet date-time cells; raises ValueError with a one-sentence
    message for anything else, including a date without a time.

    >>> parse_datetime("2024-03-01 14:30", column="onset")
    datetime.datetime(2024, 3, 1, 14, 30)
    >>> parse_datetime("", column="onset") is None
    True
    """
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        raise ValueError(f"{column} {value.isoformat()} has a date but no time; hours since onset need both.")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(
            f"{column} {value!r} is a number, not a date-time; write it as 2024-03-01 14:30 or as a date cell."
        )
    text = str(value).strip()
    if not text:
        return None
    if _DATE_ONLY.match(text):
        raise ValueError(f"{column} '{text}' has a date but no time; hours since onset need both.")
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{column} '{text}' is not a date-time corelab can read; write it as 2024-03-01 14:30."
        ) from None


def imaging_window(
    onset: dt.datetime | None, scan_time: dt.datetime | None, window: TimingWindow = TimingWindow()
) -> Timing:
    """Hours from onset to scan and whether they fall in the window (both bounds inclusive).

    Unknown and impossible timings are flagged, never guessed: no onset, no scan time, or an onset
    after the scan give ``in_window=None`` and a sentence in ``flag``.

    >>> t = imaging_window(dt.datetime(2024, 3, 1, 8), dt.datetime(2024, 3, 1, 20))
    >>> t.hours_since_onset, t.in_window
    (12.0, True)
    """
    if onset is None and scan_time is None:
        return Timing(None, None, "Onset and scan time are both unknown, so the imaging window is unknown.")
    if onset is None:
        return Timing(None, None, "Stroke onset is missing, so the imaging window is unknown.")
    if scan_time is None:
        return Timing(
            None, None, "No scan time in the manifest or the DICOM tags, so the imaging window is unknown."
        )
    if (onset.tzinfo is None) != (scan_time.tzinfo is None):
        # One offset given, one not: read both as the same local clock (see the module docstring).
        onset, scan_time = onset.replace(tzinfo=None), scan_time.replace(tzinfo=None)
    hours = (scan_time - onset).total_seconds() / 3600.0
    if hours < 0:
        return Timing(
            hours, None, f"Onset is {-hours:.1f} h after the scan time; please check both dates in the manifest."
        )
    inside = window.min_hours <= hours <= window.max_hours
    flag = "" if inside else (
        f"Scan {hours:.1f} h after onset is outside the {window.min_hours:g} h to "
        f"{window.max_hours / 24:g} day window."
    )
    return Timing(hours, inside, flag)


MANIFEST_NAMES = ("manifest.xlsx", "manifest.csv")  # what a trial folder's manifest is called


def find_manifest(folder: Path) -> Path | None:
    """A trial folder's manifest (`MANIFEST_NAMES`, the first that exists), or None.

    >>> find_manifest(Path("/no/such/trial")) is None
    True
    """
    return next((folder / name for name in MANIFEST_NAMES if (folder / name).is_file()), None)


def read_manifest(path: str | Path, *, now: dt.datetime | None = None) -> Manifest:
    """Read and check a manifest (.xlsx or .csv); bad rows carry an ``error`` instead of raising.

    Scan paths are resolved relative to the manifest's folder. Row errors: empty, unsafe or
    colliding patient_id (see `corelab.io.manifest_ids`), missing scan, unreadable date, or a date
    more than `FUTURE_TOLERANCE` after ``now`` (default: this computer's clock, local time).
    Raises `ManifestError` when the file cannot be read, a required column is missing, or there is
    no row.
    """
    now = now if now is not None else dt.datetime.now()
    path = Path(path).expanduser().resolve()
    if path.is_dir():  # a trial folder: its manifest.xlsx or manifest.csv
        found = find_manifest(path)
        if found is None:
            raise ManifestError(f"The folder {path} holds no {' or '.join(MANIFEST_NAMES)}; give the manifest file.")
        path = found
    if not path.is_file():
        raise ManifestError(f"The manifest {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        header, records = _read_xlsx(path)
    elif suffix in (".csv", ".txt", ".tsv"):
        header, records = _read_csv(path)
    else:
        raise ManifestError(f"The manifest {path.name} is neither an .xlsx nor a .csv file.")
    columns = _column_map(header, path)
    extra_idx = [i for i, name in enumerate(header) if name is not None and _norm(name) not in KNOWN]
    extra_names = tuple(_extra_name(str(header[i]).strip()) for i in extra_idx)

    rows = []
    for number, cells in records:
        def cell(name: str) -> Any:
            i = columns.get(name)
            return cells[i] if i is not None and i < len(cells) else None

        extra = tuple((extra_names[k], cells[i] if i < len(cells) else None) for k, i in enumerate(extra_idx))
        rows.append(_check_row(number, cell, extra, path.parent, now))
    if not rows:
        raise ManifestError(f"The manifest {path.name} has a header but no scan rows.")
    return Manifest(path=path, rows=_mark_duplicates(rows), extra_columns=extra_names)


def _norm(name: Any) -> str:
    return str(name).strip().lower()


def _extra_name(name: str) -> str:
    return f"manifest_{name}" if name.lower() in OUTPUT_COLUMNS else name


def _column_map(header: list[Any], path: Path) -> dict[str, int]:
    columns: dict[str, int] = {}
    for i, name in enumerate(header):
        if name is not None and _norm(name) in KNOWN:
            key = _norm(name)
            if key in columns:
                raise ManifestError(f"The manifest {path.name} has the column '{key}' twice.")
            columns[key] = i
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ManifestError(
            f"The manifest {path.name} has no {' or '.join(repr(m) for m in missing)} column "
            f"(required: patient_id, scan)."
        )
    return columns


def _text(value: Any) -> str:
    """A cell as text; whole numbers typed into a spreadsheet lose their '.0'."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return str(value).strip()


def _in_future(value: dt.datetime, now: dt.datetime) -> bool:
    # A naive "now" is this computer's local clock; astimezone() gives it the local offset.
    if value.tzinfo is not None and now.tzinfo is None:
        now = now.astimezone()
    elif value.tzinfo is None and now.tzinfo is not None:
        now = now.astimezone().replace(tzinfo=None)
    return value > now + FUTURE_TOLERANCE


def _check_row(number: int, cell, extra, base: Path, now: dt.datetime) -> ManifestRow:
    patient_id = _text(cell("patient_id"))
    scan_text = _text(cell("scan"))
    scan = (base / Path(scan_text).expanduser()).resolve() if scan_text else None
    errors = []
    if not patient_id:
        errors.append(f"Row {number} has no patient_id.")
    elif problem := file_name_problem(patient_id):
        errors.append(problem)
    if scan is None:
        errors.append(f"Row {number} has no scan path.")
    elif not scan.exists():
        errors.append(f"The scan {scan_text} does not exist (looked for {scan}).")
    parsed = {}
    for column in ("onset", "scan_time"):
        try:
            parsed[column] = parse_datetime(cell(column), column=column)
        except ValueError as error:
            parsed[column] = None
            errors.append(str(error))
            continue
        if parsed[column] is not None and _in_future(parsed[column], now):
            errors.append(
                f"{column} {parsed[column].isoformat(sep=' ')} is in the future; please check the date in the manifest."
            )
    return ManifestRow(
        row=number,
        patient_id=patient_id,
        scan=scan,
        scan_text=scan_text,
        onset=parsed["onset"],
        scan_time=parsed["scan_time"],
        onset_text=_text(cell("onset")),
        scan_time_text=_text(cell("scan_time")),
        series_uid=_text(cell("series_uid")),
        extra=extra,
        error=" ".join(errors),
    )


def _mark_duplicates(rows: list[ManifestRow]) -> tuple[ManifestRow, ...]:
    # Every copy fails: nothing says which of two rows with one id is the right scan, and both
    # would write the same masks/<patient_id>.nii.gz. Ids that differ only in case or Unicode form
    # ("P001" and "p001") are the same file on macOS and Windows: one would overwrite the other.
    groups: dict[str, list[ManifestRow]] = {}
    for r in rows:
        if r.patient_id:
            groups.setdefault(file_name_key(r.patient_id), []).append(r)
    out = []
    for r in rows:
        group = groups.get(file_name_key(r.patient_id), []) if r.patient_id else []
        same = [g.row for g in group if g.patient_id == r.patient_id]
        others = [g for g in group if g.patient_id != r.patient_id]
        messages = []
        if len(same) > 1:
            messages.append(
                f"patient_id {shown_id(r.patient_id)} appears in rows {', '.join(map(str, same))}; "
                "each scan needs its own id."
            )
        if others:
            listed = ", ".join(
                f"{g.row} ({shown_id(g.patient_id)}: {why_same_file(r.patient_id, g.patient_id)})" for g in others
            )
            plural = "rows" if len(others) > 1 else "row"
            messages.append(
                f"patient_id {shown_id(r.patient_id)} would write the same file name as {plural} {listed};"
                " each scan needs its own id."
            )
        if messages:
            r = ManifestRow(**{**r.__dict__, "error": " ".join(filter(None, [*messages, r.error]))})
        out.append(r)
    return tuple(out)


def _blank(cells: list[Any]) -> bool:
    return all(c is None or (isinstance(c, str) and not c.strip()) for c in cells)


def _read_xlsx(path: Path) -> tuple[list[Any], list[tuple[int, list[Any]]]]:
    import zipfile

    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, InvalidFileException) as error:
        raise ManifestError(f"The manifest {path.name} cannot be opened as a spreadsheet ({error}).") from None
    try:
        sheet = book.worksheets[0]
        rows = []
        for cells in sheet.iter_rows():
            values = [_xlsx_value(c) for c in cells]
            rows.append((cells[0].row if cells and hasattr(cells[0], "row") else len(rows) + 1, values))
    finally:
        book.close()
    rows = [(n, v) for n, v in rows if not _blank(v)]
    if not rows:
        raise ManifestError(f"The manifest {path.name} is empty.")
    (_, header), body = rows[0], rows[1:]
    return header, body


def _xlsx_value(cell: Any) -> Any:
    value = cell.value
    # A date-formatted cell without hours is a date without a time; keep it a date so it is refused.
    if isinstance(value, dt.datetime):
        fmt = str(getattr(cell, "number_format", "") or "").lower()
        if fmt and "h" not in fmt and value.time() == dt.time(0):
            return value.date()
    return value


def _read_csv(path: Path) -> tuple[list[Any], list[tuple[int, list[Any]]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    try:
        delimiter = csv.Sniffer().sniff(text.splitlines()[0] if text.strip() else ",", delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ","
    # Only the delimiter is sniffed: on a header line without quotes the sniffer also guesses
    # doublequote=False, which would split a quoted cell holding "" (a spreadsheet's escaped quote).
    # Every cell stays text: a patient id "007" must not become the number 7.
    lines = list(csv.reader(io.StringIO(text), csv.excel, delimiter=delimiter))
    rows = [(i + 1, [c if c.strip() else None for c in cells]) for i, cells in enumerate(lines)]
    rows = [(n, v) for n, v in rows if not _blank(v)]
    if not rows:
        raise ManifestError(f"The manifest {path.name} is empty.")
    (_, header), body = rows[0], rows[1:]
    return header, body
