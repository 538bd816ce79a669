"""Per-patient rows for `corelab compare`: who is analysed, who is excluded and why, and the metrics.

It reads DIR/volumes.csv, DIR/masks/, DIR/run.json and REFDIR/<patient_id>.*, and decides who is in
the primary analysis population (in window, processed, with a reference); given a QC folder and a
drawing function (`QCDrawer`), it writes compare's own QC image of every compared patient while
each scan is in memory. `runs_used` names the runs that computed the rows. One row per patient:

patient_id; site (when the manifest has one); in_primary (bool: in window, processed, with a
reference); excluded_because (sentences joined by "; ", empty when analysed); status;
hours_since_onset; reference_ml (reference mask on its own grid); other_ml (automated: volumes.csv
``infarct_ml``, else the mask; inter-reader: reader B's mask); difference_ml (other - reference);
abs_difference_ml; dice; both_empty; hd95_mm; lesions; lesions_detected; reference_mean_hu;
reference_class (the reference read's class by `corelab.config.mask_class`: "severe",
"intermediate", "subtle", "unclassified" when its mean HU is outside 14-44 HU, "no infarct" when
the read is empty, "unknown" when the scan could not be read); auto_class (automated rows only:
volumes.csv ``auto_class``, or its older name ``hypodensity_class``); qc (automated rows, when a QC
folder is given: the compare QC image, relative to the report's folder, "" when none was drawn);
note; needs_review (automated: volumes.csv ``needs_review`` is true, a flag says the volume must be
checked; False for inter-reader rows); flags (automated: volumes.csv ``flags`` of such a row, else "").
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from corelab import __version__
from corelab.audit import file_sha256, folder_checksums, invocation, utc_now
from corelab.compare.metrics import mask_metrics, reference_mean_hu
from corelab.config import NO_INFARCT, UNCLASSIFIED, mask_class
from corelab.errors import CorelabError
from corelab.io.manifest_ids import file_name_problem
from corelab.io.read import mask_onto, read_mask, read_scan
from corelab.io.reference import (
    ContoursNeedScanError,
    ReferenceRead,
    find_reference,
    read_reference,
    reference_ids,
)
from corelab.io.tables import restore
from corelab.io.volume import Volume, same_geometry
from corelab.measure import measure_labels

__all__ = ["CompareError", "read_results", "read_run_json", "automated_rows", "reader_rows", "parse_window",
           "compare_provenance_info", "listed_auto_class", "runs_used", "UNKNOWN", "QCDrawer"]

# Exclusion reasons for a read that is there but cannot be used (the patient flow counts them by these starts).
REFERENCE_UNUSABLE = "reference read unusable"
READS_UNUSABLE = "read by reader A or B unusable"
UNKNOWN = "unknown"  # a reference class that could not be measured (no readable scan)

# Draws one patient's compare QC image: (scan, automated labels, reference on their grid, *,
# patient_id, reference_ml, reference_class, reference_mean_hu) -> PNG bytes. The command passes
# `corelab.pipeline.qc.reference_qc_png` (compare may not import pipeline, DESIGN "Module layout").
QCDrawer = Callable[..., bytes]


class CompareError(CorelabError):
    """A results or reference folder cannot be compared (missing volumes.csv, empty folders)."""



def read_results(results: Path) -> pd.DataFrame:
    """DIR/volumes.csv as text columns (patient ids stay text, empty cells stay "")."""
    table = pd.read_csv(results / "volumes.csv", dtype=str, keep_default_na=False)
    table = table.map(restore)  # corelab wrote formula-like text with a leading apostrophe
    table.columns = [restore(c) for c in table.columns]
    missing = {"patient_id", "status"} - set(table.columns)
    if missing:
        raise CompareError(f"{results / 'volumes.csv'} lacks the column(s) {', '.join(sorted(missing))}.")
    return table


def parse_window(value: object) -> bool | None:
    """volumes.csv ``in_window``: True, False, or None when the timing is unknown (empty cell)."""
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    return None


def _number(value: object) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _window_reasons(row: pd.Series) -> list[str]:
    window = parse_window(row.get("in_window", ""))
    if window is True:
        return []
    if window is False:
        hours = _number(row.get("hours_since_onset"))
        when = f" ({hours:.0f} h after onset)" if math.isfinite(hours) else ""
        return [f"scanned outside the 12 h to 14 day window{when}"]
    return ["imaging time unknown (onset or scan time missing)"]


def _scan_path(row: pd.Series, results: Path | None, run_info: dict) -> Path | None:
    scan = str(row.get("scan", "")).strip()
    if not scan:
        return None
    path = Path(scan)
    if path.is_absolute():
        return path
    manifest = run_info.get("manifest")
    bases = [Path(manifest).parent] if manifest else []
    if results is not None:
        bases += [results / Path(manifest).parent if manifest else results.parent, results.parent]
    for base in bases:
        if (base / path).exists():
            return base / path
    return None


def _patient_scan(row: pd.Series, results: Path | None, run_info: dict, grid: Volume) -> tuple[Volume | None, str]:
    """The patient's scan when it is readable and on ``grid``'s geometry, else None and why not."""
    path = _scan_path(row, results, run_info)
    if path is None:
        return None, "scan not found"
    try:
        scan = read_scan(path, series_uid=str(row.get("series_uid", "")).strip() or None)
    except CorelabError as error:
        return None, f"scan unreadable ({error})"
    if not same_geometry(scan, grid):
        return None, "scan grid differs from the mask grid"
    return scan, ""


def _classify(scan: Volume | None, reference: np.ndarray, labels: np.ndarray | None, *,
              empty: bool) -> tuple[float, str]:
    """(reference mean HU, reference class); an empty read is "no infarct" whatever the scan,
    a read on an unreadable scan "unknown" (NaN HU)."""
    if scan is None:
        return math.nan, NO_INFARCT if empty else UNKNOWN
    mean = reference_mean_hu(scan.array, reference, labels=labels)
    return mean, mask_class(mean, empty=empty)


def listed_auto_class(row: pd.Series) -> str | None:
    """volumes.csv's class of the automated mask: ``auto_class``, or for a volumes.csv of an older
    corelab its ``hypodensity_class`` (whose empty cell meant an empty mask or a mean without a
    class: told apart by ``infarct_ml``); None when the file has neither column.

    >>> listed_auto_class(pd.Series({"status": "ok", "hypodensity_class": "", "infarct_ml": "0"}))
    'no infarct'
    """
    if "auto_class" in row:
        return str(row["auto_class"]).strip()
    if "hypodensity_class" not in row:
        return None
    old = str(row["hypodensity_class"]).strip()
    if old or str(row.get("status", "")).strip().lower() != "ok":
        return old
    ml = _number(row.get("infarct_ml"))
    return "" if not math.isfinite(ml) else NO_INFARCT if ml == 0 else UNCLASSIFIED


def _auto_class(row: pd.Series, scan: Volume | None, auto: Volume) -> str:
    listed = listed_auto_class(row)
    if listed is not None or scan is None:
        return listed or ""
    try:  # no column at all: measured here, by the rule corelab run uses
        m = measure_labels(auto.array, scan.array, scan.spacing)
    except CorelabError:
        return ""
    return mask_class(m.infarct_mean_hu, empty=m.infarct_ml == 0)


def _lost(why: str, reference_class: str, qc: bool) -> str:
    """A note for a patient without a usable scan: what could not be given (an empty read's class needs no scan)."""
    lost = [] if reference_class == NO_INFARCT else ["the reference class is unknown"]
    lost += ["there is no QC image"] if qc else []
    return f"{why}, so {' and '.join(lost)}" if lost else ""


def _draw_qc(draw: QCDrawer, folder: Path, pid: str, scan: Volume, auto: Volume, reference: np.ndarray,
             out: dict[str, object]) -> str:
    """Write ``folder/<pid>.png``; "" when written, else why not (a note's words)."""
    problem = file_name_problem(pid)
    if problem:
        return f"no QC image: the patient id cannot name a file ({problem})"
    tmp = folder / f".tmp-{pid}.png"  # written whole, then moved: never half an image under the patient's name
    try:
        png = draw(scan, auto, reference, patient_id=pid, reference_ml=out["reference_ml"],
                   reference_class=out["reference_class"], reference_mean_hu=out["reference_mean_hu"])
        folder.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(png)
        tmp.replace(folder / f"{pid}.png")
    except (CorelabError, ValueError, OSError) as error:
        return f"no QC image: {error}"
    finally:
        tmp.unlink(missing_ok=True)
    out["qc"] = f"{folder.name}/{pid}.png"
    return ""


def _metric_columns(reference: Volume, other: np.ndarray) -> dict[str, object]:
    m = mask_metrics(reference.array, other, reference.spacing)
    return {"dice": m.dice, "both_empty": m.both_empty, "hd95_mm": m.hd95_mm, "lesions": m.lesions,
            "lesions_detected": m.lesions_detected}


def _ml(volume: Volume) -> float:
    return float(np.count_nonzero(volume.array)) * volume.voxel_ml


def _base(row: pd.Series | None, patient_id: str) -> dict[str, object]:
    base: dict[str, object] = {"patient_id": patient_id}
    if row is not None and "site" in row:
        base["site"] = str(row["site"])
    base["status"] = str(row.get("status", "")) if row is not None else ""
    base["hours_since_onset"] = _number(row.get("hours_since_onset")) if row is not None else math.nan
    base["needs_review"], base["flags"] = False, ""  # automated rows read them from volumes.csv
    return base


def _finish(out: dict[str, object], reasons: list[str]) -> dict[str, object]:
    out.setdefault("reference_class", UNKNOWN)
    out["in_primary"] = not reasons
    out["excluded_because"] = "; ".join(reasons)
    if "reference_ml" in out and "other_ml" in out:
        out["difference_ml"] = out["other_ml"] - out["reference_ml"]
        out["abs_difference_ml"] = abs(out["difference_ml"])
    return out


def _find(folder: Path, pid: str, reasons: list[str], missing: str, unusable: str) -> Path | None:
    """The patient's read in ``folder`` (`find_reference`), else None with the reason appended."""
    try:
        path = find_reference(folder, pid)
    except CorelabError as error:
        reasons.append(f"{unusable}: {error}")
        return None
    if path is None:
        reasons.append(missing)
    return path


def automated_rows(table: pd.DataFrame, results: Path, reference_dir: Path, run_info: dict, *,
                   qc_folder: Path | None = None, draw_qc: QCDrawer | None = None,
                   segments: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per volumes.csv row: automated mask against REFDIR's manual read (see module doc).

    Reads are found and read by `corelab.io.reference` (any format; ``segments`` names the segments
    to keep) and put on the automated mask's grid (the scan's) by nearest neighbour; how a read with
    segments or contours was read is in the row's note. qc_folder, draw_qc: with both, every patient
    with both masks and a readable scan gets ``qc_folder/<patient_id>.png`` drawn by ``draw_qc``
    (column ``qc``); a patient whose image cannot be drawn or written gets none and a note saying
    why, never an error.
    """
    qc = qc_folder is not None and draw_qc is not None
    rows = []
    for _, row in table.iterrows():
        pid = str(row["patient_id"])
        out, reasons, notes = _base(row, pid), [], []
        out["auto_class"] = listed_auto_class(row) or ""
        if qc:
            out["qc"] = ""
        ok = str(row["status"]).strip().lower() == "ok"
        # Kept in the analyses, listed by the report: the volume may be wrong, the patient is still eligible.
        out["needs_review"] = ok and str(row.get("needs_review", "")).strip().lower() == "true"
        out["flags"] = str(row.get("flags", "")).strip() if out["needs_review"] else ""
        if not ok:
            reasons.append(f"processing failed: {str(row.get('error', '')).strip() or 'no error recorded'}")
        ref_path = _find(reference_dir, pid, reasons, "no reference read", REFERENCE_UNUSABLE)
        reasons += _window_reasons(row)
        mask_path = results / (str(row.get("mask", "")).strip() or f"masks/{pid}.nii.gz")
        if ok and ref_path is not None:
            if not mask_path.is_file():
                reasons.append("automated mask file missing")
            else:
                auto = read = None
                try:
                    auto = read_mask(mask_path)
                except CorelabError as error:
                    reasons.append(f"mask unreadable: {error}")
                if auto is not None:
                    # The scan first: its FrameOfReferenceUID is what an RTSTRUCT's contours must be in.
                    scan, why = _patient_scan(row, results, run_info, auto)
                    try:
                        read = read_reference(ref_path, grid=auto, segments=segments,
                                              frame_uid=scan.meta.frame_uid if scan is not None else "")
                        ref = mask_onto(read.volume, auto)
                    except CorelabError as error:
                        reasons.append(f"{REFERENCE_UNUSABLE}: {error}")
                        read = None
                if read is not None:
                    native = read.volume
                    notes.append(read.note)
                    listed = _number(row.get("infarct_ml"))
                    out["reference_ml"] = _ml(native)
                    out["other_ml"] = listed if math.isfinite(listed) else _ml(auto)
                    out.update(_metric_columns(ref, auto.array))
                    out["reference_mean_hu"], out["reference_class"] = _classify(
                        scan, ref.array, auto.array, empty=out["reference_ml"] == 0)
                    out["auto_class"] = _auto_class(row, scan, auto)
                    if scan is None:
                        notes.append(_lost(why, out["reference_class"], qc))
                    elif qc:
                        notes.append(_draw_qc(draw_qc, qc_folder, pid, scan, auto, ref.array, out))
        stale = qc_folder / f"{pid}.png" if qc and not out["qc"] and not file_name_problem(pid) else None
        if stale is not None and stale.is_file():
            stale.unlink()  # an earlier comparison's image would be taken for this one
        out["note"] = "; ".join(n for n in notes if n)
        rows.append(_finish(out, reasons))
    return _frame(rows)


def reader_rows(table: pd.DataFrame | None, results: Path | None, reader_a: Path, reader_b: Path,
                run_info: dict, *, segments: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per patient: reader B's read against reader A's (the reference) on A's grid.

    Reads in any format (`corelab.io.reference`); an RTSTRUCT is drawn onto the patient's scan, so
    it needs the results folder (the scan), or the other reader's read in voxels as its grid.
    """
    if table is not None:
        listed = [(str(r["patient_id"]), r) for _, r in table.iterrows()]
    else:
        listed = [(pid, None) for pid in sorted(reference_ids(reader_a) | reference_ids(reader_b))]
    rows = []
    for pid, row in listed:
        out, reasons, notes = _base(row, pid), [], []
        path_a = _find(reader_a, pid, reasons, "no read by reader A (reference)", "read by reader A unusable")
        path_b = _find(reader_b, pid, reasons, "no read by reader B", "read by reader B unusable")
        if row is not None:
            reasons += _window_reasons(row)
        if path_a is not None and path_b is not None:
            scan_grid = _listed_scan(row, results, run_info)
            try:
                read_a, read_b = _read_pair(path_a, path_b, scan_grid, segments)
                a = read_a.volume
                b = mask_onto(read_b.volume, a)
            except CorelabError as error:
                reasons.append(f"{READS_UNUSABLE}: {error}")
            else:
                notes += [f"reader A: {read_a.note}" if read_a.note else "",
                          f"reader B: {read_b.note}" if read_b.note else ""]
                out["reference_ml"], out["other_ml"] = _ml(a), _ml(read_b.volume)
                out.update(_metric_columns(a, b.array))
                empty = out["reference_ml"] == 0
                if row is None:
                    scan, why = None, "no results folder, so no scan"
                elif scan_grid is not None:  # read once, above
                    scan, why = ((scan_grid, "") if same_geometry(scan_grid, a)
                                 else (None, "scan grid differs from the mask grid"))
                else:
                    scan, why = _patient_scan(row, results, run_info, a)  # says why it is missing
                out["reference_mean_hu"], out["reference_class"] = _classify(scan, a.array, None, empty=empty)
                if scan is None:
                    notes.append(_lost(why, out["reference_class"], False))
        out["note"] = "; ".join(n for n in notes if n)
        rows.append(_finish(out, reasons))
    return _frame(rows)


def _listed_scan(row: pd.Series | None, results: Path | None, run_info: dict) -> Volume | None:
    """The patient's scan as listed in volumes.csv, when it can be read (the grid contours are drawn on)."""
    path = _scan_path(row, results, run_info) if row is not None else None
    if path is None:
        return None
    try:
        return read_scan(path, series_uid=str(row.get("series_uid", "")).strip() or None)
    except CorelabError:
        return None


def _read_pair(path_a: Path, path_b: Path, scan: Volume | None, segments: tuple[str, ...] | None):
    """Both readers' reads. An RTSTRUCT is drawn onto the scan; without one, onto the other read's
    grid when that is a label image covering the head (not a SEG, which stores only its labelled
    slices) and only if every contour lands on it."""
    def on_other(contours: Path, other: ReferenceRead) -> ReferenceRead:
        if other.volume.meta.modality == "SEG":
            raise ContoursNeedScanError(
                f"The read {contours} is an RT Structure Set and the other read a DICOM SEG (only its labelled "
                "slices): the contours need the scan, which needs the results folder.")
        drawn = read_reference(contours, grid=other.volume, segments=segments)
        if drawn.contours_left_out:
            raise ContoursNeedScanError(
                f"{drawn.contours_left_out} contours of {contours} lie off the other read's grid: the contours "
                "need the scan, which needs the results folder.")
        return drawn

    if scan is not None:
        return (read_reference(path_a, grid=scan, segments=segments),
                read_reference(path_b, grid=scan, segments=segments))
    try:
        read_a = read_reference(path_a, segments=segments)
    except ContoursNeedScanError:
        read_b = read_reference(path_b, segments=segments)
        return on_other(path_a, read_b), read_b
    try:
        return read_a, read_reference(path_b, segments=segments)
    except ContoursNeedScanError:
        return read_a, on_other(path_b, read_a)


_COLUMNS = ["patient_id", "site", "in_primary", "excluded_because", "status", "hours_since_onset",
            "reference_ml", "other_ml", "difference_ml", "abs_difference_ml", "dice", "both_empty", "hd95_mm",
            "lesions", "lesions_detected", "reference_mean_hu", "reference_class", "auto_class", "qc", "note",
            "needs_review", "flags"]
_OPTIONAL = {"site", "auto_class", "qc"}  # only where the manifest has sites / in automated mode / with a QC folder


def _frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    columns = [c for c in _COLUMNS if c in frame.columns or c not in _OPTIONAL]
    frame = frame.reindex(columns=columns)
    frame["in_primary"] = frame["in_primary"].astype(bool)
    frame["both_empty"] = frame["both_empty"].eq(True)  # NaN (no metrics) is not "both empty"
    frame["needs_review"] = frame["needs_review"].astype(bool)
    for column in ("lesions", "lesions_detected"):
        frame[column] = frame[column].astype("Int64")
    return frame


def _record_run_id(results: Path, record: str) -> str:
    try:
        data = json.loads((results / record).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(data.get("run_id", "") or "") if isinstance(data, dict) else ""


def runs_used(results: Path, table: pd.DataFrame, run_info: dict) -> list[dict[str, object]]:
    """The runs that computed the rows of volumes.csv (``table``), each cited by its append-only file.

    A row's run is its ``run_id`` cell, else the ``run_id`` of its record (records/<patient_id>.json,
    as run.json's inputs name it). Rows not run (``not_run``) were computed by no run and are not
    counted. Returns one dict per run, in the order of the runs' start: ``{"run_id": "2026-12-02T06-30-00Z",
    "file": "runs/2026-12-02T06-30-00Z.json", "sha256": the file's now ("" when it is missing), "rows":
    rows it computed, "ok": of them ok}``; rows that name no run (volumes.csv of a corelab before
    runs/) come last with ``run_id`` "" and the file and checksum of run.json.
    """
    records = {str(i.get("patient_id")): str(i.get("record") or "") for i in run_info.get("inputs") or []
               if isinstance(i, dict)}
    counts: dict[str, list[int]] = {}
    for _, row in table.iterrows():
        status = str(row.get("status", "")).strip().lower()
        if status == "not_run":
            continue
        pid = str(row["patient_id"])
        run_id = str(row.get("run_id", "")).strip()
        if not run_id:
            record = records.get(pid) or (f"records/{pid}.json" if not file_name_problem(pid) else "")
            run_id = _record_run_id(results, record) if record else ""
        tally = counts.setdefault(run_id, [0, 0])
        tally[0] += 1
        tally[1] += status == "ok"
    used = []
    for run_id in sorted(counts, key=lambda r: (r == "", r)):
        stem = run_id[:-len(".json")] if run_id.endswith(".json") else run_id
        file = f"runs/{stem}.json" if run_id else "run.json"
        path = results / file
        used.append({"run_id": stem, "file": file, "sha256": file_sha256(path) if path.is_file() else "",
                     "rows": counts[run_id][0], "ok": counts[run_id][1]})
    return used


def compare_provenance_info(results: Path | None, reference_dir: Path, against: str | Path | None = None, *,
                            table: pd.DataFrame | None = None, run_info: dict | None = None) -> dict:
    """This comparison's audit trail: who, when (UTC), the command line, and checksums of what was read.

    Returns ``{"tool", "corelab_version", "written", "command_line", "cwd", "user", "host", "platform",
    "python_executable", "results": {"folder", "volumes_csv_sha256", "n_rows", "runs"} (when a results
    folder is used; ``runs``: `runs_used` of ``table``, the volumes.csv as read, with ``run_info``),
    "reference": `corelab.audit.folder_checksums`, "against": the same or absent}``. run.json is not
    cited: every run overwrites it, the runs' own files are append-only.
    """
    info: dict = {"tool": "corelab compare", "corelab_version": __version__, "written": utc_now(), **invocation()}
    if results is not None:
        table = read_results(results) if table is None else table
        info["results"] = {
            "folder": str(results),
            "volumes_csv_sha256": file_sha256(results / "volumes.csv"),
            "n_rows": len(table),
            "runs": runs_used(results, table, run_info if run_info is not None else read_run_json(results)),
        }
    info["reference"] = folder_checksums(reference_dir)
    if against is not None:
        info["against"] = folder_checksums(against)
    return info


def read_run_json(results: Path) -> dict:
    path = results / "run.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CompareError(f"{path} is not readable JSON ({error}).") from None
