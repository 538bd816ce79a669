"""volumes.xlsx / volumes.csv as a statistician opens them: typed cells, widths, filter, a `columns`
sheet from one source, a `sites` sheet that sums the volumes sheet, and the scan path as the
manifest wrote it."""

from __future__ import annotations

import datetime as dt
import json

import openpyxl
import pandas as pd
import pytest
from openpyxl.utils import get_column_letter
from pipeline_trial import QUIET_QUANTILES, SMALL_METHOD, make_trial, write_model_folder

from corelab.config import COLUMN_MEANINGS, OUTPUT_COLUMNS
from corelab.pipeline.batch import _finish_provenance, run_batch
from corelab.pipeline.outputs import write_tables
from corelab.pipeline.scan import brain_shift_flag
from corelab.pipeline.sites import ALL_SITES, NO_SITE, SITE_COLUMNS, sites_apart
from corelab.pipeline.summary import BatchSummary
from corelab.pipeline.workbook import MAX_WIDTH
from corelab.segment.norm import InputNorm

ONSET = dt.datetime(2024, 3, 1, 8, 0)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A tiny trial: two good scans, one without onset, one whose scan is missing."""
    folder = tmp_path_factory.mktemp("trial")
    # Random networks cut at their highest percentiles claim a few mL, under every guard's floor,
    # so the good scans need no review.
    models = write_model_folder(folder / "models", quantiles=QUIET_QUANTILES)
    trial = make_trial(folder, n=2, rows=[
        {"patient_id": "P_NO_ONSET", "scan": "scans/P001.nii.gz", "scan_time": "2024-03-02T08:00:00"},
        {"patient_id": "MISSING", "scan": "scans/nothing.nii.gz", "onset": ONSET.isoformat()},
    ], models=models)
    out = folder / "out"
    run_batch(trial.manifest, out_dir=out, models_dir=trial.models, method=SMALL_METHOD, progress=False, threads=1)
    book = openpyxl.load_workbook(out / "volumes.xlsx")
    sheet = book["volumes"]
    header = [cell.value for cell in sheet[1]]
    rows = {r[0]: dict(zip(header, r)) for r in sheet.iter_rows(min_row=2, values_only=True)}
    csv = pd.read_csv(out / "volumes.csv", dtype=str, keep_default_na=False).set_index("patient_id")
    return {"book": book, "sheet": sheet, "header": header, "rows": rows, "csv": csv}


def test_every_output_column_has_a_meaning_and_needs_review_follows_flags():
    assert tuple(COLUMN_MEANINGS) == OUTPUT_COLUMNS
    assert all(meaning.strip() for meaning, _ in COLUMN_MEANINGS.values())
    assert OUTPUT_COLUMNS.index("needs_review") == OUTPUT_COLUMNS.index("flags") + 1
    assert {COLUMN_MEANINGS[c][1] for c in ("infarct_ml", "severe_ml", "intracranial_ml")} == {"mL"}
    assert COLUMN_MEANINGS["infarct_mean_hu"][1] == "HU" and COLUMN_MEANINGS["hours_since_onset"][1] == "h"


def test_xlsx_cells_are_typed(results):
    rows = results["rows"]
    # make_trial: P002 scanned 48 h after onset at 08:00
    assert rows["P002"]["onset"] == ONSET and rows["P002"]["scan_time"] == ONSET + dt.timedelta(hours=48)
    assert isinstance(rows["P001"]["onset"], dt.datetime) and isinstance(rows["P001"]["scan_time"], dt.datetime)
    assert rows["P001"]["in_window"] is True and rows["P_NO_ONSET"]["in_window"] is None
    assert rows["P_NO_ONSET"]["onset"] is None
    assert rows["P002"]["needs_review"] is False and rows["MISSING"]["needs_review"] is None
    for column in ("infarct_ml", "severe_ml", "intracranial_ml", "brain_median_hu"):
        assert isinstance(rows["P001"][column], float), column
    assert rows["P001"]["hours_since_onset"] == 24  # a number (openpyxl reads a whole 24.0 back as int)
    assert rows["MISSING"]["status"] == "failed" and rows["MISSING"]["infarct_ml"] is None
    sheet, header = results["sheet"], results["header"]
    onset = sheet.cell(row=2, column=header.index("onset") + 1)
    assert onset.is_date and onset.number_format == "yyyy-mm-dd hh:mm:ss"
    assert sheet.cell(row=2, column=1).number_format == "@"  # patient_id stays text


def test_xlsx_has_frozen_header_autofilter_and_fitted_widths(results):
    sheet, header = results["sheet"], results["header"]
    assert sheet.freeze_panes == "B2"
    assert sheet.auto_filter.ref == f"A1:{get_column_letter(len(header))}{len(results['rows']) + 1}"
    widths = {name: sheet.column_dimensions[get_column_letter(i)].width for i, name in enumerate(header, start=1)}
    assert all(6 <= w <= MAX_WIDTH for w in widths.values())
    assert widths["flags"] == MAX_WIDTH  # long sentences: capped
    assert widths["status"] == len("status") + 2  # "failed" and "ok" are shorter than the header
    assert widths["scan_sha256"] == MAX_WIDTH  # 64 hex digits, capped


def test_columns_sheet_describes_every_column(results):
    described = results["book"]["columns"]
    rows = list(described.iter_rows(values_only=True))
    assert rows[0] == ("name", "meaning", "unit")
    names = [r[0] for r in rows[1:]]
    assert names == results["header"] == list(OUTPUT_COLUMNS) + ["site"]
    meanings = {r[0]: (r[1], r[2] or "") for r in rows[1:]}
    assert meanings["infarct_ml"] == COLUMN_MEANINGS["infarct_ml"]
    assert meanings["site"] == ("From the manifest.", "")
    assert all(m for m, _ in meanings.values())
    assert results["book"].sheetnames == ["volumes", "columns", "sites"]


def test_sites_sheet_sums_the_volumes_sheet(results):
    table = list(results["book"]["sites"].iter_rows(values_only=True))
    assert table[0] == tuple(SITE_COLUMNS)
    blank = table.index((None,) * len(SITE_COLUMNS))
    summary = {r[0]: dict(zip(SITE_COLUMNS, r)) for r in table[1:blank]}
    every, rows = summary.pop(ALL_SITES), list(results["rows"].values())
    ok = [r for r in rows if r["status"] == "ok"]
    counts = (every["scans"], every["ok"], every["failed"], every["not_run"])
    assert counts == (len(rows), len(ok), 1, 0) == (4, 3, 1, 0)
    medians = sorted(r["brain_median_hu"] for r in ok)
    assert every["brain_median_hu"] == pytest.approx(medians[1], abs=0.05)
    spread = (every["brain_median_hu_low"], every["brain_median_hu_high"])
    assert spread == pytest.approx((medians[0], medians[-1]), abs=0.05)
    assert sum(site["scans"] for site in summary.values()) == len(rows)
    assert NO_SITE in summary  # the two rows added without a site
    meanings = dict(r[:2] for r in table[blank + 1:])
    assert list(meanings) == list(SITE_COLUMNS) and all(meanings.values())


def test_sites_sheet_counts_shifted_and_reviewed_scans_per_site(tmp_path):
    shifted = brain_shift_flag(InputNorm(brain_reference_hu=35.0), 47.0)
    rows = [
        {"patient_id": "A1", "status": "ok", "brain_median_hu": 33.0, "needs_review": False, "flags": "", "site": "A"},
        {"patient_id": "B1", "status": "ok", "brain_median_hu": 47.0, "needs_review": True, "flags": shifted,
         "site": "B"},
        {"patient_id": "A2", "status": "ok", "brain_median_hu": 35.0, "needs_review": False, "flags": "", "site": "A"},
        {"patient_id": "B2", "status": "failed", "error": "The scan file is missing.", "site": "B"},
        {"patient_id": "C1", "status": "not_run", "site": None},
        {"patient_id": "C2", "status": "not_run", "site": float("nan")},
    ]
    write_tables(rows, ("site",), tmp_path)
    table = list(openpyxl.load_workbook(tmp_path / "volumes.xlsx")["sites"].iter_rows(values_only=True))
    assert [r[0] for r in table[1:5]] == ["A", "B", NO_SITE, ALL_SITES]  # manifest order, then all
    # vs_other_sites_hu stays empty: fewer than 3 ok scans on one side
    assert table[1][1:] == (2, 2, 0, 0, 0, 0, 34.0, 33.0, 35.0, None)
    assert table[2][1:] == (2, 1, 1, 0, 1, 1, 47.0, 47.0, 47.0, None)
    assert table[3][1:] == (2, 0, 0, 2, 0, 0, None, None, None, None)  # the batch has not reached them
    assert table[4][1:] == (6, 3, 1, 2, 1, 1, 35.0, 33.0, 47.0, None)
    for without, extra in (([{k: v for k, v in r.items() if k != "site"} for r in rows], ()),  # no site column
                           ([{**r, "site": ""} for r in rows], ("site",))):  # a site column left empty
        write_tables(without, extra, tmp_path)
        table = list(openpyxl.load_workbook(tmp_path / "volumes.xlsx")["sites"].iter_rows(values_only=True))
        assert table[1][0] == ALL_SITES and table[2] == (None,) * len(table[2])  # the whole batch only


def test_a_site_whose_brains_read_apart_from_the_others_is_named_in_the_sheet_and_the_summary(tmp_path):
    # Site C's scanner reads brains 6-7 HU denser than A's and B's: no single scan is flagged (each is
    # within 8 HU of the models' reference), but the site is.
    rows = [{"patient_id": f"{site}{i}", "status": "ok", "brain_median_hu": hu, "needs_review": False, "flags": "",
             "site": site}
            for site, values in (("A", (33.0, 34.0, 35.0)), ("B", (34.5, 33.5, 35.5)), ("C", (40.0, 41.0, 41.5)))
            for i, hu in enumerate(values)]
    write_tables(rows, ("site",), tmp_path)
    table = list(openpyxl.load_workbook(tmp_path / "volumes.xlsx")["sites"].iter_rows(values_only=True))
    apart = {r[0]: r[len(SITE_COLUMNS) - 1] for r in table[1:5]}
    # each site's median against the median of the six scans of the two others (rounded as brain HU)
    assert apart == {"A": pytest.approx(34.0 - 37.75, abs=0.051), "B": pytest.approx(34.5 - 37.5, abs=0.051),
                     "C": pytest.approx(41.0 - 34.25, abs=0.051), ALL_SITES: None}
    notes = sites_apart(rows, "site")
    assert len(notes) == 1 and notes[0].startswith("Site C: its 3 scans' brain median is 41.0 HU, 6.8 HU above")
    summary = BatchSummary(out_dir=tmp_path, n_rows=9, n_ok=9, n_failed=0, n_skipped=0, n_out_of_window=0,
                           n_window_unknown=9, seconds=1.0, sites_apart=tuple(notes))
    assert str(summary).splitlines()[1] == notes[0]
    (tmp_path / "runs").mkdir()
    _finish_provenance(tmp_path, {"run_id": "r.json"}, summary, [])  # and run.json keeps the sentence
    assert json.loads((tmp_path / "run.json").read_text())["sites_apart"] == notes
    assert sites_apart([{**r, "brain_median_hu": r["brain_median_hu"] - 2.0} if r["site"] == "C" else r
                        for r in rows], "site") == []  # 4.75 HU apart: within what patients vary


def test_csv_keeps_iso_text_and_true_false(results):
    csv = results["csv"]
    assert csv.loc["P001", "onset"] == "2024-03-01 08:00:00" and csv.loc["P001", "scan_time"] == "2024-03-02 08:00:00"
    assert csv.loc["P001", "in_window"] == "true" and csv.loc["P_NO_ONSET", "in_window"] == ""
    assert csv.loc["P001", "needs_review"] == "false" and csv.loc["MISSING", "needs_review"] == ""


def test_scan_is_the_manifest_text(results):
    csv, rows = results["csv"], results["rows"]
    assert csv.loc["P001", "scan"] == "scans/P001.nii.gz" and rows["P001"]["scan"] == "scans/P001.nii.gz"
    assert csv.loc["MISSING", "scan"] == "scans/nothing.nii.gz"


def test_text_stays_inert_numbers_stay_numbers_and_offsets_stay_in_the_csv(tmp_path):
    aware = dt.datetime(2024, 3, 1, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    rows = [{"patient_id": "007", "status": "ok", "onset": aware, "hours_since_onset": -3.0, "in_window": False,
             "needs_review": True, "site": "=1+1", "age": 67}]
    write_tables(rows, ("site", "age"), tmp_path)
    sheet = openpyxl.load_workbook(tmp_path / "volumes.xlsx")["volumes"]
    header = [c.value for c in sheet[1]]
    cell = {name: sheet.cell(row=2, column=i + 1) for i, name in enumerate(header)}
    assert cell["site"].data_type == "s" and cell["site"].value == "'=1+1"
    assert cell["patient_id"].value == "007"
    assert cell["hours_since_onset"].value == -3.0 and cell["age"].value == 67
    assert cell["onset"].value == dt.datetime(2024, 3, 1, 8, 0)  # the site's clock
    assert cell["in_window"].value is False and cell["needs_review"].value is True
    assert not any(c.data_type == "f" for r in sheet.iter_rows() for c in r)
    csv = pd.read_csv(tmp_path / "volumes.csv", dtype=str, keep_default_na=False)
    assert csv.loc[0, "onset"] == "2024-03-01 08:00:00+02:00" and csv.loc[0, "site"] == "'=1+1"
    assert csv.loc[0, "needs_review"] == "true" and csv.loc[0, "hours_since_onset"] == "-3.0"
