"""Nothing invented goes unseen: interpolated or resampled slices, partial coverage and a shifted
brain are flagged in one sentence each and set needs_review; a clean scan does not."""

from __future__ import annotations

import datetime as dt

import numpy as np
import openpyxl
import pandas as pd
import pytest
from dicom_factory import write_ct_series
from pipeline_trial import QUIET_QUANTILES, SMALL_METHOD, SPACING, head_phantom, make_trial, write_model_folder

from corelab.io.read import read_scan
from corelab.io.manifest import imaging_window
from corelab.pipeline.batch import run_batch
from corelab.pipeline.outputs import REVIEW_FLAG_KINDS, needs_review
from corelab.pipeline.scan import brain_shift_flag
from corelab.preprocess.intracranial import _coverage_flags
from corelab.segment.norm import InputNorm

pytestmark = pytest.mark.slow  # batches through corelab run: make test runs them, the quick loop does not

ONSET = dt.datetime(2024, 3, 1, 8, 0)


def _dicom_hu(seed: int) -> np.ndarray:
    return np.maximum(head_phantom(seed=seed), -1024.0)  # DICOM stores HU + 1024 unsigned


def _write_series(folder) -> None:
    hu = _dicom_hu(11)
    z = np.arange(hu.shape[0]) * SPACING[0]
    kept = [k for k in range(hu.shape[0]) if k != 7]  # the middle slice is missing: one 10 mm gap
    write_ct_series(folder / "gap", hu[kept], SPACING, slice_z=z[kept])
    write_ct_series(folder / "uneven", _dicom_hu(12), SPACING, slice_z=z - 0.5 * (np.arange(len(z)) % 2))  # 4.5/5.5
    write_ct_series(folder / "clean", _dicom_hu(13), SPACING)


def test_reader_reports_interpolation_as_data(tmp_path):
    _write_series(tmp_path)
    gap, uneven, clean = (read_scan(tmp_path / name).meta for name in ("gap", "uneven", "clean"))
    assert (gap.interpolated_slices, gap.resampled_spacing, gap.slice_gaps_mm) == (1, True, (5.0, 10.0))
    assert (uneven.interpolated_slices, uneven.resampled_spacing) == (0, True)
    assert uneven.slice_gaps_mm == pytest.approx((4.5, 5.5))
    assert (clean.interpolated_slices, clean.resampled_spacing, clean.slice_gaps_mm) == (0, False, None)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trial")
    _write_series(folder / "dicom")
    when = {"onset": ONSET.isoformat(), "scan_time": (ONSET + dt.timedelta(days=1)).isoformat()}
    # Random networks cut at their highest percentiles claim a few mL, under every guard's floor.
    models = write_model_folder(folder / "models", quantiles=QUIET_QUANTILES)
    trial = make_trial(folder, n=1, rows=[{"patient_id": name.upper(), "scan": f"dicom/{name}", **when}
                                          for name in ("gap", "uneven", "clean")], models=models)
    out = folder / "out"
    run_batch(trial.manifest, out_dir=out, models_dir=trial.models, method=SMALL_METHOD, progress=False, threads=1)
    csv = pd.read_csv(out / "volumes.csv", dtype=str, keep_default_na=False).set_index("patient_id")
    sheet = openpyxl.load_workbook(out / "volumes.xlsx")["volumes"]
    header = [c.value for c in sheet[1]]
    xlsx = {r[0]: dict(zip(header, r)) for r in sheet.iter_rows(min_row=2, values_only=True)}
    return csv, xlsx


def test_a_missing_middle_slice_is_flagged_and_needs_review(table):
    csv, xlsx = table
    row = csv.loc["GAP"]
    assert row["status"] == "ok", row["error"]
    assert ("Missing slices: 1 slice of the even 5.00 mm grid lay in a gap of the series (slices 5.00-10.00 mm "
            "apart) and was invented by interpolating the neighbours: check this volume") in row["flags"]
    assert row["needs_review"] == "true" and xlsx["GAP"]["needs_review"] is True
    assert "resampled onto an even 5.00 mm" in row["read_notes"]  # the note stays


def test_uneven_spacing_is_flagged_and_needs_review(table):
    csv, xlsx = table
    row = csv.loc["UNEVEN"]
    assert row["status"] == "ok", row["error"]
    assert "Uneven slice spacing: slices 4.50-5.50 mm apart were resampled onto an even 5.00 mm grid" in row["flags"]
    assert "Missing slices" not in row["flags"]
    assert row["needs_review"] == "true" and xlsx["UNEVEN"]["needs_review"] is True


def test_clean_scans_need_no_review(table):
    csv, xlsx = table
    for pid in ("CLEAN", "P001"):
        assert csv.loc[pid, "status"] == "ok" and csv.loc[pid, "needs_review"] == "false", csv.loc[pid, "flags"]
        assert xlsx[pid]["needs_review"] is False
        assert not any(kind in csv.loc[pid, "flags"] for kind in REVIEW_FLAG_KINDS)


def test_needs_review_counts_coverage_and_brain_shift_not_timing():
    region = np.zeros((3, 6, 6), bool)
    region[1, 0, 2:4] = True  # reaches the field of view's edge
    grown = np.zeros_like(region)
    grown[-1, 3, 3] = True  # reaches the top slice
    coverage = _coverage_flags(region, grown)  # preprocessing's own sentences
    assert len(coverage) == 2 and all(needs_review([flag]) for flag in coverage)
    shift = brain_shift_flag(InputNorm(brain_reference_hu=35.0), 50.0)
    assert needs_review(["", shift])
    timing = imaging_window(ONSET, ONSET + dt.timedelta(days=30)).flag
    assert timing and not needs_review([timing]) and not needs_review([])
