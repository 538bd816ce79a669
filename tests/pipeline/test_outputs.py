"""Atomic outputs, scan checksums and the volumes tables, on small files written in the test."""

import datetime as dt

import numpy as np
import openpyxl
import pandas as pd
import pytest
import SimpleITK as sitk

from corelab.audit import scan_sha256
from corelab.io.manifest import OUTPUT_COLUMNS
from corelab.io.volume import Volume
from corelab.pipeline.outputs import (
    atomic_path,
    atomic_write_text,
    read_record,
    write_mask,
    write_record,
    write_tables,
)


def test_atomic_path_replaces_on_success_and_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "first")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed while writing")
    assert target.read_text() == "first"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]  # no temporary file left behind


def test_mask_is_written_in_the_input_geometry(tmp_path):
    labels = np.zeros((3, 4, 5), np.uint8)
    labels[1, 2, 3] = 4
    like = Volume(array=labels, spacing=(5.0, 0.5, 0.4), origin=(1.0, 2.0, 3.0),
                  direction=(0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    write_mask(labels, like, tmp_path / "m.nii.gz")
    image = sitk.ReadImage(str(tmp_path / "m.nii.gz"))
    assert image.GetPixelID() == sitk.sitkUInt8
    assert image.GetSpacing() == pytest.approx((0.4, 0.5, 5.0))
    assert image.GetOrigin() == pytest.approx((1.0, 2.0, 3.0))
    assert image.GetDirection() == pytest.approx(like.direction)
    assert np.array_equal(sitk.GetArrayFromImage(image), labels)


def test_scan_sha256_of_folder_is_order_stable_and_sees_changes(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for name, data in [("b.dcm", b"bbb"), ("a.dcm", b"aaa"), (".DS_Store", b"junk")]:
        (folder / name).write_bytes(data)
    first = scan_sha256(folder)
    (folder / ".DS_Store").write_bytes(b"other junk")  # hidden files do not count
    assert scan_sha256(folder) == first
    (folder / "a.dcm").write_bytes(b"aaA")
    assert scan_sha256(folder) != first
    (folder / "a.dcm").write_bytes(b"aaa")
    (folder / "a.dcm").rename(folder / "c.dcm")  # same bytes, other name
    assert scan_sha256(folder) != first
    single = tmp_path / "x.nii.gz"
    single.write_bytes(b"abc")
    # sha256("abc"), FIPS 180-2 appendix B.1
    assert scan_sha256(single) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_record_round_trip_and_damaged_record(tmp_path):
    write_record(tmp_path / "r.json", {"a": np.float32(1.5), "when": dt.datetime(2024, 1, 2, 3, 4), "n": np.int64(3)})
    assert read_record(tmp_path / "r.json") == {"a": 1.5, "when": "2024-01-02T03:04:00", "n": 3}
    (tmp_path / "bad.json").write_text("{half")
    assert read_record(tmp_path / "bad.json") is None
    assert read_record(tmp_path / "missing.json") is None


def test_tables_keep_order_text_ids_and_extra_columns(tmp_path):
    rows = [
        {"patient_id": "007", "status": "ok", "in_window": True, "infarct_ml": 12.345678912, "site": "A"},
        {"patient_id": "P2", "status": "failed", "error": "The scan x does not exist.", "in_window": None, "site": None},
        {"patient_id": "10", "status": "ok", "in_window": False, "hours_since_onset": 400.123, "site": "B"},
    ]
    write_tables(rows, ("site",), tmp_path)
    csv = pd.read_csv(tmp_path / "volumes.csv", dtype=str, keep_default_na=False)
    assert list(csv.columns) == list(OUTPUT_COLUMNS) + ["site"]
    assert csv["patient_id"].tolist() == ["007", "P2", "10"]
    assert csv["in_window"].tolist() == ["true", "", "false"]
    assert csv["infarct_ml"].tolist() == ["12.3457", "", ""]
    assert csv["hours_since_onset"].tolist() == ["", "", "400.12"]
    assert csv["site"].tolist() == ["A", "", "B"]
    sheet = openpyxl.load_workbook(tmp_path / "volumes.xlsx").active
    assert [c.value for c in sheet[1]][:3] == ["patient_id", "status", "error"]
    assert [sheet.cell(row=r, column=1).value for r in (2, 3, 4)] == ["007", "P2", "10"]
    assert sheet.cell(row=3, column=3).value == "The scan x does not exist."


def test_auto_class_names_empty_masks_no_infarct_and_only_classless_means_unclassified():
    from corelab.io.manifest import ManifestRow
    from corelab.pipeline.outputs import table_row

    row = ManifestRow(row=2, patient_id="P1", scan=None, onset=None, scan_time=None, onset_text="",
                      scan_time_text="", series_uid="", extra=())

    def auto_class(infarct_ml, mean_hu, status="ok"):
        outcome = {"status": status, "mask": "masks/P1.nii.gz", "qc": "qc/P1.png", "scan_sha256": "ab",
                   "record_version": 3, "measurements": {
                       "infarct_ml": infarct_ml, "severe_ml": 0.0, "intermediate_ml": 0.0, "subtle_ml": 0.0,
                       "hemorrhage_ml": 0.0, "infarct_mean_hu": mean_hu}}
        return table_row(row, outcome, model_version="m").get("auto_class")

    assert auto_class(12.0, 18.0) == "severe"
    assert auto_class(12.0, 44.0) == "subtle"  # the closed upper bound of subtle
    assert auto_class(0.0, None) == "no infarct"  # an empty mask
    assert auto_class(12.0, 9.5) == "unclassified"  # a mean below every range (CSF-like)
    assert auto_class(0.4, None) == "unclassified"  # hemorrhage only: a mask, but no infarct mean HU
    assert auto_class(None, None, status="failed") is None  # not segmented: empty cell
    assert "hypodensity_class" not in OUTPUT_COLUMNS and "auto_class" in OUTPUT_COLUMNS
