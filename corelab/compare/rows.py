"""Per-patient rows for `corelab compare`: who is analysed, who is excluded and why, and the metrics.

It reads DIR/volumes.csv, DIR/masks/, DIR/run.json and REFDIR/<patient_id>.*, and decides who is in
the primary analysis population (in window, processed, with a reference). One row per patient:

patient_id; site (when the manifest has one); in_primary (bool: in window, processed, with a
reference); excluded_because (sentences joined by "; ", empty when analysed); status;
hours_since_onset; reference_ml (reference mask on its own grid); other_ml (automated: volumes.csv
``infarct_ml``, else the mask; inter-reader: reader B's mask); difference_ml (other - reference);
abs_difference_ml; dice; both_empty; hd95_mm; lesions; lesions_detected; reference_mean_hu;
hypodensity_class ("severe", "intermediate", "subtle", "unclassified" when the mean is outside
14-44 HU or the reference is empty, "unknown" when the scan could not be read); note; needs_review
(automated: volumes.csv ``needs_review`` is true, a flag says the volume must be checked; False for
inter-reader rows); flags (automated: volumes.csv ``flags`` of such a row, else "").
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from corelab import __version__
from corelab.audit import file_sha256, folder_checksums, invocation, utc_now
from corelab.compare.metrics import mask_metrics, reference_mean_hu
from corelab.config import hypodensity_class
from corelab.errors import CorelabError
from corelab.io.files import find_image, image_ids
from corelab.io.read import mask_onto, read_mask, read_scan
from corelab.io.tables import restore
from corelab.io.volume import Volume, same_geometry

__all__ = ["CompareError", "read_results", "read_run_json", "automated_rows", "reader_rows", "parse_window",
           "compare_provenance_info"]


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


def _classify(row: pd.Series, results: Path | None, run_info: dict, grid: Volume,
              reference: np.ndarray, labels: np.ndarray | None) -> tuple[float, str, str]:
    """(reference mean HU, class, note) from the patient's scan, or NaN/"unknown" and why not.

    grid: the volume whose geometry ``reference`` (and ``labels``) are on; the scan must match it.
    """
    path = _scan_path(row, results, run_info)
    if path is None:
        return math.nan, "unknown", "scan not found, so the hypodensity class is unknown"
    try:
        scan = read_scan(path, series_uid=str(row.get("series_uid", "")).strip() or None)
    except CorelabError as error:
        return math.nan, "unknown", f"scan unreadable ({error}), so the class is unknown"
    if not same_geometry(scan, grid):
        return math.nan, "unknown", "scan grid differs from the mask grid, so the class is unknown"
    mean = reference_mean_hu(scan.array, reference, labels=labels)
    return mean, hypodensity_class(mean) or "unclassified", ""


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
    out.setdefault("hypodensity_class", "unknown")
    out["in_primary"] = not reasons
    out["excluded_because"] = "; ".join(reasons)
    if "reference_ml" in out and "other_ml" in out:
        out["difference_ml"] = out["other_ml"] - out["reference_ml"]
        out["abs_difference_ml"] = abs(out["difference_ml"])
    return out


def automated_rows(table: pd.DataFrame, results: Path, reference_dir: Path, run_info: dict) -> pd.DataFrame:
    """One row per volumes.csv row: automated mask against REFDIR's manual read (see module doc)."""
    rows = []
    for _, row in table.iterrows():
        pid = str(row["patient_id"])
        out, reasons, notes = _base(row, pid), [], []
        ok = str(row["status"]).strip().lower() == "ok"
        # Kept in the analyses, listed by the report: the volume may be wrong, the patient is still eligible.
        out["needs_review"] = ok and str(row.get("needs_review", "")).strip().lower() == "true"
        out["flags"] = str(row.get("flags", "")).strip() if out["needs_review"] else ""
        if not ok:
            reasons.append(f"processing failed: {str(row.get('error', '')).strip() or 'no error recorded'}")
        ref_path = find_image(reference_dir, pid)
        if ref_path is None:
            reasons.append("no reference read")
        reasons += _window_reasons(row)
        mask_path = results / (str(row.get("mask", "")).strip() or f"masks/{pid}.nii.gz")
        if ok and ref_path is not None:
            if not mask_path.is_file():
                reasons.append("automated mask file missing")
            else:
                try:
                    auto = read_mask(mask_path)
                    native = read_mask(ref_path)
                    ref = mask_onto(native, auto)
                except CorelabError as error:
                    reasons.append(f"mask unreadable: {error}")
                else:
                    listed = _number(row.get("infarct_ml"))
                    out["reference_ml"] = _ml(native)
                    out["other_ml"] = listed if math.isfinite(listed) else _ml(auto)
                    out.update(_metric_columns(ref, auto.array))
                    mean, cls, note = _classify(row, results, run_info, auto, ref.array, auto.array)
                    out["reference_mean_hu"], out["hypodensity_class"] = mean, cls
                    notes.append(note)
        out["note"] = "; ".join(n for n in notes if n)
        rows.append(_finish(out, reasons))
    return _frame(rows)


def reader_rows(table: pd.DataFrame | None, results: Path | None, reader_a: Path, reader_b: Path,
                run_info: dict) -> pd.DataFrame:
    """One row per patient: reader B's mask against reader A's (the reference) on A's grid."""
    if table is not None:
        listed = [(str(r["patient_id"]), r) for _, r in table.iterrows()]
    else:
        listed = [(pid, None) for pid in sorted(image_ids(reader_a) | image_ids(reader_b))]
    rows = []
    for pid, row in listed:
        out, reasons, notes = _base(row, pid), [], []
        path_a, path_b = find_image(reader_a, pid), find_image(reader_b, pid)
        if path_a is None:
            reasons.append("no read by reader A (reference)")
        if path_b is None:
            reasons.append("no read by reader B")
        if row is not None:
            reasons += _window_reasons(row)
        if path_a is not None and path_b is not None:
            try:
                a = read_mask(path_a)
                b_native = read_mask(path_b)
                b = mask_onto(b_native, a)
            except CorelabError as error:
                reasons.append(f"mask unreadable: {error}")
            else:
                out["reference_ml"], out["other_ml"] = _ml(a), _ml(b_native)
                out.update(_metric_columns(a, b.array))
                if row is None:
                    mean, cls, note = math.nan, "unknown", "no results folder, so no scan and no class"
                else:
                    mean, cls, note = _classify(row, results, run_info, a, a.array, None)
                out["reference_mean_hu"], out["hypodensity_class"] = mean, cls
                notes.append(note)
        out["note"] = "; ".join(n for n in notes if n)
        rows.append(_finish(out, reasons))
    return _frame(rows)


_COLUMNS = ["patient_id", "site", "in_primary", "excluded_because", "status", "hours_since_onset",
            "reference_ml", "other_ml", "difference_ml", "abs_difference_ml", "dice", "both_empty", "hd95_mm",
            "lesions", "lesions_detected", "reference_mean_hu", "hypodensity_class", "note", "needs_review", "flags"]


def _frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    columns = [c for c in _COLUMNS if c in frame.columns or c != "site"]
    frame = frame.reindex(columns=columns)
    frame["in_primary"] = frame["in_primary"].astype(bool)
    frame["both_empty"] = frame["both_empty"].fillna(False).astype(bool)
    frame["needs_review"] = frame["needs_review"].astype(bool)
    for column in ("lesions", "lesions_detected"):
        frame[column] = frame[column].astype("Int64")
    return frame


def compare_provenance_info(results: Path | None, reference_dir: Path, against: str | Path | None = None) -> dict:
    """This comparison's audit trail: who, when (UTC), the command line, and checksums of what was read.

    Returns ``{"tool", "corelab_version", "written", "command_line", "cwd", "user", "host", "platform",
    "python_executable", "results": {"folder", "volumes_csv_sha256", "run_json_sha256"} (when a results
    folder is used), "reference": `corelab.audit.folder_checksums`, "against": the same or absent}``.
    """
    info: dict = {"tool": "corelab compare", "corelab_version": __version__, "written": utc_now(), **invocation()}
    if results is not None:
        run_json = results / "run.json"
        info["results"] = {
            "folder": str(results),
            "volumes_csv_sha256": file_sha256(results / "volumes.csv"),
            "run_json_sha256": file_sha256(run_json) if run_json.is_file() else "",
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
