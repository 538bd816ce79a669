"""Manifest reading and checking, and the imaging window, on small manifests written in the test."""

import datetime as dt

import numpy as np
import openpyxl
import pytest

from corelab.config import TimingWindow
from corelab.errors import ManifestError
from corelab.io.manifest import imaging_window, parse_datetime, read_manifest
from corelab.io.volume import Volume, write_image


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


# ---- ids as file names ---------------------------------------------------------------------------


def _ids_manifest(folder, ids):
    """A csv manifest (written with the csv module, so quotes and commas survive) of ``ids``, one scan."""
    import csv

    path = folder / "ids.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient_id", "scan"])
        writer.writerows([pid, "scans/a.nii.gz"] for pid in ids)
    return read_manifest(path).rows


def test_ids_equal_up_to_case_or_unicode_form_fail_both_rows_naming_the_other(scans):
    composed, decomposed = "Jos\u00e9", "Jose\u0301"  # NFC and NFD of the same name
    rows = _ids_manifest(scans, ["P001", "p001", composed, "X1", decomposed, "\uff30\uff10\uff10\uff12", "P002"])
    errors = {r.row: r.error for r in rows}
    assert "would write the same file name as row 3 ('p001': differs only in upper/lower case," in errors[2]
    assert "would write the same file name as row 2 ('P001': differs only in upper/lower case," in errors[3]
    assert "as row 6 ('Jose\u0301': the same letters stored in another Unicode form" in errors[4]
    assert "as row 4 ('Jos\u00e9': the same letters stored in another Unicode form" in errors[6]
    # full-width "ＰＯＯ２" is P002 under NFKC
    assert "same file name as row 8 ('P002': equal once Unicode compatibility forms" in errors[7]
    assert "same file name as row 7" in errors[8]
    assert errors[5] == ""
    for error in (e for e in errors.values() if e):
        assert error.endswith(".") and "\n" not in error and error.count("patient_id") == 1


def test_exact_and_case_duplicates_together_are_both_named(scans):
    rows = _ids_manifest(scans, ["A1", "A1", "a1"])
    assert "appears in rows 2, 3" in rows[0].error and "same file name as row 4 ('a1': " in rows[0].error
    assert "same file name as rows 2 ('A1': differs" in rows[2].error and ", 3 ('A1': differs" in rows[2].error
    assert "appears" not in rows[2].error


@pytest.mark.parametrize(
    "pid, words",
    [
        ("a/b", "cannot be used as a file name"),
        ("..", "cannot be used as a file name"),
        ("P1\\..\\x", "cannot be used as a file name"),
        ('=HYPERLINK("http://x","y")', "cannot be used as a file name"),
        (".P001", "starts with a dot"),
        ("P001.", "ends with a dot"),
        ("P\x1b01", "invisible control character (U+001B)"),
        ("P\u200b01", "invisible control character (U+200B)"),
        ("P\u202e10", "invisible control character (U+202E)"),
        ("CON", "Windows reserves for a device (CON)"),
        ("nul.1", "Windows reserves for a device (NUL)"),
        ("Com1", "Windows reserves for a device (COM1)"),
        ("LPT9 .x", "Windows reserves for a device (LPT9)"),
        ("x" * 201, "201 bytes long"),
    ],
)
def test_ids_that_cannot_be_file_names_everywhere_are_refused_in_one_sentence(scans, pid, words):
    row = _ids_manifest(scans, [pid])[0]
    assert words in row.error
    assert row.error.endswith(".") and "\n" not in row.error and "\x1b" not in row.error


@pytest.mark.parametrize("pid", ["CONSORT-7", "COM10", "P.001", "Jos\u00e9 M", "\u5f20\u4f1f-3", "-007", "x" * 200])
def test_ordinary_ids_are_accepted(scans, pid):
    assert _ids_manifest(scans, [pid])[0].error == ""


def test_control_character_in_an_id_is_shown_escaped_on_one_line(scans):
    row = _ids_manifest(scans, ["P\n1"])[0]
    assert row.error.startswith("patient_id 'P\\u000a1' holds an invisible control character")


def test_spaces_around_an_id_are_stripped_so_they_make_an_exact_duplicate(scans):
    rows = _ids_manifest(scans, [" P7 ", "P7"])
    assert [r.patient_id for r in rows] == ["P7", "P7"] and all("appears in rows 2, 3" in r.error for r in rows)


def test_dates_in_the_future_are_row_errors_and_a_day_of_clock_difference_is_not(scans):
    path = scans / "m.csv"
    path.write_text(
        "patient_id,scan,onset,scan_time\n"
        "P1,scans/a.nii.gz,2024-03-01 08:00,2024-03-02 08:00\n"
        "P2,scans/a.nii.gz,2024-03-01 08:00,2024-03-10 08:01\n"
        "P3,scans/a.nii.gz,2024-03-11 08:00,\n"
    )
    rows = read_manifest(path, now=dt.datetime(2024, 3, 9, 8, 0)).rows
    assert rows[0].error == ""
    assert rows[1].error == "scan_time 2024-03-10 08:01:00 is in the future; please check the date in the manifest."
    assert rows[2].error.startswith("onset 2024-03-11 08:00:00 is in the future")
    assert rows[2].onset == dt.datetime(2024, 3, 11, 8)  # kept, so the table shows what was typed
    # With offsets the comparison is exact: 22:00Z on the 10th is 38 h after 08:00Z on the 9th, past
    # the day of tolerance; 20:00+14:00 (06:00Z) is 22 h after it, within.
    path.write_text("patient_id,scan,onset,scan_time\nP4,scans/a.nii.gz,2024-03-10T20:00+14:00,2024-03-10T22:00Z\n")
    row = read_manifest(path, now=dt.datetime(2024, 3, 9, 8, 0, tzinfo=dt.timezone.utc)).rows[0]
    assert "scan_time" in row.error and "onset" not in row.error


def test_quoted_cells_with_commas_and_doubled_quotes_are_read_whole(scans):
    # As a spreadsheet saves a cell holding quotes and commas; the header has no quotes to sniff from.
    path = scans / "m.csv"
    path.write_text('patient_id,scan,site\nP1,scans/a.nii.gz,"Rotterdam, ""EMC"""\n')
    row = read_manifest(path).rows[0]
    assert row.extra == (("site", 'Rotterdam, "EMC"'),) and row.error == ""
    (scans / "s.csv").write_text('patient_id;scan;site\nP1;scans/a.nii.gz;"a;""b"""\n')
    assert read_manifest(scans / "s.csv").rows[0].extra == (("site", 'a;"b"'),)


def test_a_trial_folder_stands_for_its_manifest(scans):
    (scans / "manifest.csv").write_text("patient_id,scan\nP1,scans/a.nii.gz\n")
    manifest = read_manifest(scans)
    assert manifest.path == (scans / "manifest.csv").resolve()
    assert [row.patient_id for row in manifest.rows] == ["P1"]


def test_a_folder_without_a_manifest_is_one_sentence(tmp_path):
    with pytest.raises(ManifestError, match="holds no manifest.xlsx or manifest.csv"):
        read_manifest(tmp_path)
