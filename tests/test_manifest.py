"""Manifest reading and checking, and the imaging window, on small manifests written in the test."""

import datetime as dt

import numpy as np
import openpyxl
import pytest

from corelab.config import TimingWindow
from corelab.errors import ManifestError
from corelab.manifest import imaging_window, parse_datetime, read_manifest
from corelab.scans import Volume, write_image


@pytest.fixture()
def scans(tmp_path):
    """Two tiny image files in tmp_path/scans."""
    (tmp_path / "scans").mkdir()
    like = Volume(array=np.zeros((2, 3, 3), np.float32), spacing=(5.0, 1.0, 1.0))
    for name in ("a.nii.gz", "b.nii.gz"):
        write_image(like.array, like, tmp_path / "scans" / name)
    return tmp_path


def test_csv_paths_ids_dates_and_extra_columns(scans):
    path = scans / "manifest.csv"
    path.write_text(
        "Patient_ID,scan,onset,scan_time,site,arm\n"
        "007,scans/a.nii.gz,2024-03-01T08:00,2024-03-02 08:00,Rotterdam,1\n"
        f"P2,{scans / 'scans' / 'b.nii.gz'},,,Delft,\n"
    )
    m = read_manifest(path)
    assert [r.patient_id for r in m.rows] == ["007", "P2"]
    assert m.rows[0].scan == (scans / "scans" / "a.nii.gz").resolve()
    assert m.rows[1].scan == (scans / "scans" / "b.nii.gz").resolve()
    assert m.rows[0].onset == dt.datetime(2024, 3, 1, 8) and m.rows[0].scan_time == dt.datetime(2024, 3, 2, 8)
    assert m.rows[1].onset is None and m.rows[1].scan_time is None
    assert m.extra_columns == ("site", "arm")
    assert m.rows[0].extra == (("site", "Rotterdam"), ("arm", "1"))
    assert m.rows[1].extra == (("site", "Delft"), ("arm", None))
    assert [r.error for r in m.rows] == ["", ""]
    assert [r.row for r in m.rows] == [2, 3]


def test_semicolon_csv_is_read(scans):
    path = scans / "m.csv"
    path.write_text("patient_id;scan\nX;scans/a.nii.gz\n")
    assert read_manifest(path).rows[0].patient_id == "X"


def test_xlsx_date_cells_text_ids_and_numbers(scans):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["patient_id", "scan", "onset", "scan_time", "age"])
    sheet.append(["007", "scans/a.nii.gz", dt.datetime(2024, 3, 1, 8, 30), "2024-03-02T09:00", 71])
    sheet.append([12, "scans/b.nii.gz", dt.datetime(2024, 3, 1), None, 64.5])
    sheet["C3"].number_format = "yyyy-mm-dd"  # a date cell without a time
    sheet.append([None, None, None, None, None])  # blank rows at the end are common in spreadsheets
    book.save(scans / "m.xlsx")
    m = read_manifest(scans / "m.xlsx")
    assert [r.patient_id for r in m.rows] == ["007", "12"]
    assert m.rows[0].onset == dt.datetime(2024, 3, 1, 8, 30) and m.rows[0].error == ""
    assert m.rows[0].extra == (("age", 71),)
    assert "date but no time" in m.rows[1].error


def test_bad_rows_carry_a_sentence_and_others_stay_usable(scans):
    path = scans / "m.csv"
    path.write_text(
        "patient_id,scan,onset\n"
        "P1,scans/a.nii.gz,2024-03-01 08:00\n"
        "P2,scans/missing.nii.gz,\n"
        "P3,scans/a.nii.gz,yesterday\n"
        "P4,scans/b.nii.gz,\n"
        "P4,scans/a.nii.gz,\n"
        ",scans/a.nii.gz,\n"
        "a/b,scans/a.nii.gz,\n"
        "P8,,\n"
    )
    rows = read_manifest(path).rows
    errors = {r.row: r.error for r in rows}
    assert errors[2] == ""
    assert "does not exist" in errors[3]
    assert "'yesterday' is not a date-time" in errors[4]
    assert "appears in rows 5, 6" in errors[5] and "appears in rows 5, 6" in errors[6]
    assert "no patient_id" in errors[7]
    assert "file name" in errors[8]
    assert "no scan path" in errors[9]
    assert all(e.endswith(".") for e in errors.values() if e)


@pytest.mark.parametrize(
    "text, words",
    [
        ("patient_id,onset\nP1,\n", "no 'scan' column"),
        ("patient_id,scan\n", "no scan rows"),
        ("", "empty"),
        ("patient_id,scan,Scan\nP1,a,b\n", "twice"),
    ],
)
def test_unusable_manifest_raises(tmp_path, text, words):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(ManifestError, match=words):
        read_manifest(path)


def test_missing_or_wrong_kind_of_file(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "nope.xlsx")
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(ManifestError, match="neither"):
        read_manifest(tmp_path / "m.json")
    (tmp_path / "broken.xlsx").write_text("not a zip")
    with pytest.raises(ManifestError, match="cannot be opened"):
        read_manifest(tmp_path / "broken.xlsx")


def test_extra_column_named_like_an_output_is_renamed(scans):
    path = scans / "m.csv"
    path.write_text("patient_id,scan,status\nP1,scans/a.nii.gz,randomised\n")
    m = read_manifest(path)
    assert m.extra_columns == ("manifest_status",)


def test_parse_datetime_offsets_and_refusals():
    assert parse_datetime("2024-03-01T08:00Z", column="onset").utcoffset() == dt.timedelta(0)
    assert parse_datetime("  ", column="onset") is None
    for bad, words in [("2024-03-01", "no time"), (45000.5, "is a number"), ("01/03/2024 8:00", "corelab can read")]:
        with pytest.raises(ValueError, match=words):
            parse_datetime(bad, column="onset")


def test_window_bounds_are_inclusive():
    onset = dt.datetime(2024, 3, 1, 0, 0)
    w = TimingWindow()
    at = lambda hours: imaging_window(onset, onset + dt.timedelta(hours=hours), w)  # noqa: E731
    assert at(12).in_window is True and at(12).flag == ""
    assert at(14 * 24).in_window is True
    assert at(11.99).in_window is False and "outside" in at(11.99).flag
    assert at(14 * 24 + 0.01).in_window is False
    assert at(30).hours_since_onset == pytest.approx(30.0)


def test_window_unknown_and_impossible_are_flagged_not_guessed():
    t = dt.datetime(2024, 3, 2, 8)
    assert imaging_window(None, t).in_window is None and "onset is missing" in imaging_window(None, t).flag
    assert imaging_window(t, None).in_window is None and "No scan time" in imaging_window(t, None).flag
    after = imaging_window(t, t - dt.timedelta(hours=5))
    assert after.in_window is None and after.hours_since_onset == pytest.approx(-5.0)
    assert "after the scan" in after.flag


def test_window_time_zones():
    utc = dt.timezone.utc
    cet = dt.timezone(dt.timedelta(hours=1))
    # Both with offsets: exact difference (08:00Z is 09:00+01:00).
    t = imaging_window(dt.datetime(2024, 3, 1, 8, tzinfo=utc), dt.datetime(2024, 3, 1, 21, tzinfo=cet))
    assert t.hours_since_onset == pytest.approx(12.0)
    # Only one with an offset: both read as the same local clock.
    t = imaging_window(dt.datetime(2024, 3, 1, 8, tzinfo=utc), dt.datetime(2024, 3, 1, 21))
    assert t.hours_since_onset == pytest.approx(13.0)
