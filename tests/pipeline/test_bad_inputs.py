"""The bad-input catalogue (issue 8): inputs real sites send, each built in code, through the real batch.

One `corelab run` (``run_batch``) on a manifest that holds two good rows and one row per row-level
case; then one `corelab compare` on its results with deliberately bad reference reads; then the
manifest-level cases through the command line. Every case asserts the row's status, a one-sentence
``error`` that names the problem (ends with ".", one line, no traceback), and that the good rows
stay ``ok``. Scans are the tiny 72 x 72 x 15 phantoms of pipeline_trial.py; DICOM series are written
by dicom_factory.py.

Catalogue (case -> expected behaviour -> test here; where the reader's details are covered too):

====================================  ===================================================  =========================
case                                  behaviour                                            also covered in tests/
====================================  ===================================================  =========================
DICOM series with one slice missing   ok: gap interpolated to an even grid, noted          test_scans (one missing)
DICOM series with two slices missing  failed: "... mm gap ... too much to interpolate"     test_scans (gap refused)
truncated DICOM file                  failed: names the file, "truncated or corrupt"       test_scans (3 cut points)
MR series                             failed: "holds MR images, not a CT"                  test_scans, test_pipeline
uneven slice spacing                  ok: resampled onto an even grid, noted               test_scans_steps
tilted (gantry) series                ok: tilt corrected by in-plane shifts, noted         test_scans (sphere stays)
2D image                              failed: "single 2D image"                            test_scans (DICOM, file)
NIfTI header claiming a huge size     failed before allocating: "claims ... voxels"        test_scans (.mha, DICOM)
empty folder                          failed: "is empty"                                   test_scans
non-existent path                     failed: "does not exist"                             test_manifest
folder with several series            ok: soft-kernel axial CT chosen, choice noted        test_scans (rules)
duplicate patient id                  both rows failed: "appears in rows"                  test_manifest
ids equal up to case / Unicode form   both rows failed: "would write the same file name"   test_manifest (NFC/NFKC)
id that is a Windows device name      failed: "Windows reserves"                           test_manifest (all rules)
onset after scan                      ok, in_window empty, flag "after the scan time"      test_manifest
unparseable date                      failed: "is not a date-time corelab can read"        test_manifest
date in the future                    failed: "is in the future"                           test_manifest
patient id holding a formula          failed (not a file name); written inert in csv/xlsx  test_pipeline (extra col)
manifest missing a required column    CLI exit 2, one sentence, no results folder          test_manifest
manifest missing the onset column     rows ok, window unknown and flagged                  -
empty manifest (no bytes / no rows)   CLI exit 2, one sentence, no results folder          test_manifest
reference mask on another grid        resampled and used when the geometry is real;        test_compare (coarse),
                                      refused in one sentence when it lost its geometry    test_scans_masks
reference mask that is not binary     0/255 counts as infarct; probabilities refused       test_scans_masks
====================================  ===================================================  =========================
"""

from __future__ import annotations

import csv
import json
import shutil
import struct

import numpy as np
import openpyxl
import pandas as pd
import pytest
import SimpleITK as sitk
from dicom_factory import write_ct_series, write_scout
from pipeline_trial import SMALL_METHOD, SPACING, head_phantom, make_trial, write_model_folder
from typer.testing import CliRunner

from corelab.cli import app
from corelab.pipeline.batch import run_batch
from corelab.report.agreement_report import compare

pytestmark = pytest.mark.slow  # a whole batch and a compare of bad inputs: make test runs them, the quick loop does not

ONSET, SCANNED = "2024-03-01T08:00:00", "2024-03-02T08:00:00"
FORMULA = '=HYPERLINK("http://x","y")'
GOOD = ("P001", "P002")


def _dicom_hu(seed: int) -> np.ndarray:
    # DICOM stores HU + 1024 as unsigned integers; the phantom's air is -1000 HU already.
    return np.maximum(head_phantom(seed=seed), -1024.0)


def _huge_nifti(path) -> None:
    """A valid 2 x 2 x 2 NIfTI-1 whose header then claims 30000^3 voxels (~54 TB as int16)."""
    sitk.WriteImage(sitk.Image([2, 2, 2], sitk.sitkInt16), str(path))
    data = bytearray(path.read_bytes())
    assert struct.unpack("<i", data[:4])[0] == 348  # little-endian NIfTI-1, as ITK writes it
    data[40:56] = struct.pack("<8h", 3, 30000, 30000, 30000, 1, 1, 1, 1)
    path.write_bytes(bytes(data))


def _build_scans(folder) -> dict[str, str]:
    """Every bad scan of the catalogue under ``folder``; returns {case: scan path relative to folder}."""
    d = folder / "dicom"
    hu = _dicom_hu(11)
    z = np.arange(hu.shape[0]) * SPACING[0]
    one_gap = [k for k in range(hu.shape[0]) if k != 7]
    write_ct_series(d / "slice_missing", hu[one_gap], SPACING, slice_z=z[one_gap])
    two_gap = [k for k in range(hu.shape[0]) if k not in (6, 7)]
    write_ct_series(d / "slices_missing", hu[two_gap], SPACING, slice_z=z[two_gap])
    cut = write_ct_series(d / "truncated", hu, SPACING).files[7]
    cut.write_bytes(cut.read_bytes()[:1000])
    write_ct_series(d / "mr", hu, SPACING, modality="MR", kernel=None)
    write_ct_series(d / "uneven", _dicom_hu(12), SPACING, slice_z=z - 0.5 * (np.arange(len(z)) % 2))  # 4.5/5.5 mm
    write_ct_series(d / "tilted", _dicom_hu(13), SPACING, tilt_deg=15.0)
    soft = write_ct_series(d / "several", _dicom_hu(14), SPACING, kernel="H30s", description="Head 5mm")
    write_ct_series(d / "several", _dicom_hu(14), SPACING, kernel="H70h", description="Head bone")
    write_scout(d / "several", study_uid=soft.study_uid)
    (d / "several" / "uid.txt").write_text(soft.series_uid)  # a stray non-DICOM file, ignored and noted
    (folder / "empty").mkdir()
    image_2d = sitk.GetImageFromArray(np.full((72, 72), -1000, np.int16))
    sitk.WriteImage(image_2d, str(folder / "scans" / "slice.nii.gz"))
    _huge_nifti(folder / "scans" / "huge.nii")
    return {
        "SLICE_MISSING": "dicom/slice_missing", "SLICES_MISSING": "dicom/slices_missing",
        "TRUNCATED": "dicom/truncated", "MR": "dicom/mr", "UNEVEN": "dicom/uneven", "TILTED": "dicom/tilted",
        "SEVERAL": "dicom/several", "EMPTY": "empty", "IMAGE_2D": "scans/slice.nii.gz",
        "HUGE": "scans/huge.nii", "NOWHERE": "scans/nothing.nii.gz",
    }


def _write_manifest(path, rows: list[dict]) -> None:
    # The csv module quotes the formula's commas and quotes, as a spreadsheet's "save as csv" does.
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["patient_id", "scan", "onset", "scan_time", "site"])
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """The catalogue batch: (trial folder, results folder, volumes.csv by row order, records by id)."""
    root = tmp_path_factory.mktemp("catalogue")
    models = write_model_folder(root / "models")
    trial = make_trial(root / "trial", n=2, models=models)
    folder = trial.folder
    scans = _build_scans(folder)
    good = {"onset": ONSET, "scan_time": SCANNED, "site": "A"}
    rows = [{"patient_id": pid, "scan": f"scans/{pid}.nii.gz", **good} for pid in GOOD]
    rows += [{"patient_id": case, "scan": scan, **good} for case, scan in scans.items()]
    rows += [
        {"patient_id": "DUP", "scan": "scans/P001.nii.gz", **good},
        {"patient_id": "DUP", "scan": "scans/P002.nii.gz", **good},
        {"patient_id": "Site1-007", "scan": "scans/P001.nii.gz", **good},
        {"patient_id": "SITE1-007", "scan": "scans/P002.nii.gz", **good},
        {"patient_id": "Jos\u00e9", "scan": "scans/P001.nii.gz", **good},  # composed (NFC)
        {"patient_id": "Jose\u0301", "scan": "scans/P002.nii.gz", **good},  # decomposed (NFD)
        {"patient_id": "CON", "scan": "scans/P001.nii.gz", **good},
        {"patient_id": "AFTER", "scan": "scans/P002.nii.gz", "onset": "2024-03-04T08:00:00", "scan_time": SCANNED},
        {"patient_id": "BADDATE", "scan": "scans/P001.nii.gz", "onset": "1st of March", "scan_time": SCANNED},
        {"patient_id": "FUTURE", "scan": "scans/P001.nii.gz", "onset": ONSET, "scan_time": "2099-03-02T08:00:00"},
        {"patient_id": FORMULA, "scan": "scans/P001.nii.gz", **good},
    ]
    _write_manifest(trial.manifest, rows)
    out = root / "results"
    summary = run_batch(trial.manifest, out_dir=out, models_dir=models, method=SMALL_METHOD, progress=False, threads=1)
    table = pd.read_csv(out / "volumes.csv", dtype=str, keep_default_na=False)
    assert table["patient_id"].map(lambda v: v.lstrip("'")).tolist() == [r["patient_id"] for r in rows]
    records = {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}
    numbers: dict[str, list[int]] = {}
    for k, r in enumerate(rows):
        numbers.setdefault(r["patient_id"], []).append(k + 2)  # spreadsheet rows: the header is row 1
    return {"folder": folder, "out": out, "models": models, "table": table, "records": records, "rows": numbers,
            "summary": summary, "soft_uid": (folder / "dicom" / "several" / "uid.txt").read_text()}


def _row(catalogue, pid: str) -> pd.Series:
    table = catalogue["table"]
    found = table[table["patient_id"] == pid]
    assert len(found) == 1, f"{pid!r} is not exactly one row"
    return found.iloc[0]


def _rows(catalogue, pids) -> list[pd.Series]:
    return [catalogue["table"][catalogue["table"]["patient_id"] == pid].iloc[0] for pid in pids]


def _failed_with(row: pd.Series, *words: str) -> None:
    assert row["status"] == "failed", (row["patient_id"], row["error"])
    message = row["error"]
    assert message.endswith(".") and "\n" not in message and "Traceback" not in message, message
    assert not message.startswith("Internal error"), message  # a foreseen input, so a named error
    for word in words:
        assert word in message, (word, message)
    assert row["mask"] == "" and row["infarct_ml"] == ""


def _ok_with_note(catalogue, pid: str, *words: str) -> dict:
    row = _row(catalogue, pid)
    assert row["status"] == "ok" and row["error"] == "", row["error"]
    assert (catalogue["out"] / row["mask"]).is_file() and float(row["intracranial_ml"]) > 100.0
    notes = " ".join(catalogue["records"][pid]["notes"])
    for word in words:
        assert word in notes, (word, notes)
        assert word in row["read_notes"], (word, row["read_notes"])  # the table shows it too
    return row


# ---- the batch as a whole -----------------------------------------------------------------------


def test_the_batch_completes_with_every_row_and_the_good_rows_ok(catalogue):
    table, summary = catalogue["table"], catalogue["summary"]
    assert summary.n_rows == len(table) == 24
    ok = set(table.loc[table["status"] == "ok", "patient_id"])
    assert ok == {*GOOD, "SLICE_MISSING", "UNEVEN", "TILTED", "SEVERAL", "AFTER"}
    assert (summary.n_ok, summary.n_failed) == (7, 17)
    for row in _rows(catalogue, GOOD):
        assert row["in_window"] == "true" and row["hours_since_onset"] == "24.0" and float(row["infarct_ml"]) > 0
    for _, row in table.iterrows():
        if row["status"] == "failed":
            _failed_with(row)
        else:
            assert row["error"] == ""
    assert json.loads((catalogue["out"] / "run.json").read_text())["finished"]


# ---- scans ----------------------------------------------------------------------------------------


def test_dicom_series_with_one_slice_missing_is_interpolated(catalogue):
    row = _ok_with_note(catalogue, "SLICE_MISSING", "Uneven slice gaps (5.00-10.00 mm) resampled onto an even 5.00 mm")
    mask = sitk.ReadImage(str(catalogue["out"] / row["mask"]))
    assert mask.GetSize()[2] == 15 and mask.GetSpacing()[2] == pytest.approx(5.0)  # the lost slice is back


def test_dicom_series_with_two_adjacent_slices_missing_fails(catalogue):
    _failed_with(_row(catalogue, "SLICES_MISSING"), "15.0 mm gap", "more than one missing slice")


def test_truncated_dicom_file_fails_naming_the_file(catalogue):
    _failed_with(_row(catalogue, "TRUNCATED"), "_0007.dcm", "truncated or corrupt")


def test_mr_series_fails(catalogue):
    _failed_with(_row(catalogue, "MR"), "holds MR images, not a CT")
    # the audit trail still names the exact input that failed
    from corelab.audit import scan_sha256

    assert catalogue["records"]["MR"]["scan_sha256"] == scan_sha256(catalogue["folder"] / "dicom" / "mr")


def test_uneven_slice_spacing_is_resampled(catalogue):
    row = _ok_with_note(catalogue, "UNEVEN", "Uneven slice gaps (4.50-5.50 mm) resampled onto an even 5.00 mm")
    assert sitk.ReadImage(str(catalogue["out"] / row["mask"])).GetSize()[2] == 15


def test_tilted_series_is_corrected(catalogue):
    _ok_with_note(catalogue, "TILTED", "Gantry tilt of 15.0 degrees corrected", "GantryDetectorTilt tag: 15")


def test_2d_image_fails(catalogue):
    _failed_with(_row(catalogue, "IMAGE_2D"), "slice.nii.gz", "single 2D image (72 x 72), not a 3D head CT")


def test_nifti_header_claiming_a_huge_size_fails_before_reading(catalogue):
    _failed_with(_row(catalogue, "HUGE"), "huge.nii", "claims 30000 x 30000 x 30000 voxels")


def test_empty_folder_fails(catalogue):
    _failed_with(_row(catalogue, "EMPTY"), "is empty")


def test_non_existent_path_fails(catalogue):
    _failed_with(_row(catalogue, "NOWHERE"), "scans/nothing.nii.gz does not exist")


def test_folder_with_several_series_uses_the_soft_kernel_ct_and_says_why(catalogue):
    row = _ok_with_note(catalogue, "SEVERAL", "chosen from 3 series", "localizer", "sharp kernel",
                        "1 file in")  # the stray uid.txt
    assert row["series_uid"] == catalogue["soft_uid"]


# ---- ids ------------------------------------------------------------------------------------------


def test_duplicate_patient_id_fails_both_rows(catalogue):
    table, (first, second) = catalogue["table"], catalogue["rows"]["DUP"]
    for _, row in table[table["patient_id"] == "DUP"].iterrows():
        _failed_with(row, f"patient_id 'DUP' appears in rows {first}, {second}; each scan needs its own id.")


def test_ids_differing_only_in_case_or_unicode_form_fail_both_rows(catalogue):
    number = lambda pid: catalogue["rows"][pid][0]  # noqa: E731
    for pid, other in [("Site1-007", "SITE1-007"), ("Jos\u00e9", "Jose\u0301")]:
        _failed_with(_row(catalogue, pid), f"would write the same file name as row {number(other)} ('{other}': ")
        _failed_with(_row(catalogue, other), f"would write the same file name as row {number(pid)} ('{pid}': ")
    assert "upper/lower case" in _row(catalogue, "Site1-007")["error"]
    assert "another Unicode form" in _row(catalogue, "Jos\u00e9")["error"]
    masks = {p.name for p in (catalogue["out"] / "masks").iterdir()}
    assert not any(name.lower().startswith(("site1", "jos")) for name in masks)  # nothing was overwritten


def test_windows_device_name_as_id_fails(catalogue):
    _failed_with(_row(catalogue, "CON"), "Windows reserves for a device (CON)")


def test_patient_id_holding_a_formula_fails_and_is_written_inert(catalogue):
    table = catalogue["table"]
    row = table[table["patient_id"] == "'" + FORMULA].iloc[0]  # volumes.csv as a spreadsheet gets it
    _failed_with(row, f"patient_id '{FORMULA}' cannot be used as a file name")
    sheet = openpyxl.load_workbook(catalogue["out"] / "volumes.xlsx").active
    cell = sheet.cell(row=int(row.name) + 2, column=1)
    assert cell.data_type == "s" and cell.value == "'" + FORMULA  # text, not a live formula
    assert not any(c.data_type == "f" for r in sheet.iter_rows() for c in r)


# ---- dates ----------------------------------------------------------------------------------------


def test_onset_after_scan_is_segmented_with_the_window_unknown(catalogue):
    row = _ok_with_note(catalogue, "AFTER")
    assert row["in_window"] == "" and row["hours_since_onset"] == "-48.0"
    assert "Onset is 48.0 h after the scan time" in row["flags"]


def test_unparseable_date_fails(catalogue):
    _failed_with(_row(catalogue, "BADDATE"), "onset '1st of March' is not a date-time corelab can read")


def test_date_in_the_future_fails(catalogue):
    _failed_with(_row(catalogue, "FUTURE"), "scan_time 2099-03-02 08:00:00 is in the future")


# ---- reference reads (corelab compare on the batch's results) --------------------------------------


@pytest.fixture(scope="module")
def compared(catalogue, tmp_path_factory):
    """compare() with: exact copies for the good rows, a 0/255 read, a read on a coarser (real) grid,
    a read whose geometry was lost on saving, and a probability map instead of a mask."""
    out, reads = catalogue["out"], tmp_path_factory.mktemp("reads")
    for pid in GOOD:
        shutil.copy(out / "masks" / f"{pid}.nii.gz", reads / f"{pid}.nii.gz")
    mask = lambda pid: sitk.ReadImage(str(out / "masks" / f"{pid}.nii.gz"))  # noqa: E731
    binary = lambda image: sitk.Cast(image > 0, sitk.sitkUInt8)  # noqa: E731
    sitk.WriteImage(binary(mask("SLICE_MISSING")) * 255, str(reads / "SLICE_MISSING.nii.gz"))
    tilted = mask("TILTED")
    coarse = sitk.Image([s // 2 for s in tilted.GetSize()[:2]] + [tilted.GetSize()[2]], sitk.sitkUInt8)
    coarse.SetSpacing([tilted.GetSpacing()[0] * 2, tilted.GetSpacing()[1] * 2, tilted.GetSpacing()[2]])
    coarse.SetOrigin(tilted.GetOrigin())
    coarse.SetDirection(tilted.GetDirection())
    sitk.WriteImage(sitk.Resample(binary(tilted), coarse, sitk.Transform(), sitk.sitkNearestNeighbor),
                    str(reads / "TILTED.nrrd"))
    lost = sitk.GetImageFromArray(sitk.GetArrayFromImage(binary(mask("UNEVEN"))))  # 1 mm, origin 0
    sitk.WriteImage(lost, str(reads / "UNEVEN.nii.gz"))
    probability = sitk.Cast(binary(mask("SEVERAL")), sitk.sitkFloat32) * 0.8
    sitk.WriteImage(probability, str(reads / "SEVERAL.nii.gz"))
    summary = compare(out, reads, out_pdf=tmp_path_factory.mktemp("report") / "agreement.pdf", trial_name="BAD")
    rows = pd.read_excel(summary.xlsx, sheet_name="per_patient", dtype={"patient_id": str}, keep_default_na=False)
    return summary, rows.drop_duplicates("patient_id").set_index("patient_id")


def test_compare_completes_and_analyses_the_usable_reads(compared):
    summary, rows = compared
    assert summary.pdf.stat().st_size > 10_000
    analysed = set(rows.index[rows["in_primary"].astype(bool)])
    assert analysed == {"P001", "P002", "SLICE_MISSING", "TILTED"} and summary.n_analysed == 4
    assert rows.loc[["P001", "P002"], "dice"].astype(float).tolist() == [1.0, 1.0]


def test_reference_mask_that_is_not_binary(compared):
    _, rows = compared
    # 0/255 is a binary mask written with another foreground value: nonzero = infarct (DESIGN.md).
    assert float(rows.loc["SLICE_MISSING", "dice"]) == 1.0
    reason = rows.loc["SEVERAL", "excluded_because"]
    assert "SEVERAL.nii.gz holds fractional values (e.g. probabilities)" in reason
    assert reason.endswith(".") and "\n" not in reason


def test_reference_mask_on_another_grid(compared):
    _, rows = compared
    # A real coarser grid (2x pixels) is resampled onto the mask's grid and compared.
    assert 0.5 < float(rows.loc["TILTED", "dice"]) <= 1.0
    reason = rows.loc["UNEVEN", "excluded_because"]
    assert "voxels but voxels of 1 x 1 x 1 mm instead of 5 x 1.5 x 1.5 mm" in reason
    assert reason.endswith(".") and "\n" not in reason


# ---- the manifest as a whole (command line) -----------------------------------------------------

runner = CliRunner()


def _cli_run(manifest, models, out):
    return runner.invoke(app, ["run", str(manifest), "--out", str(out), "--models", str(models)])


def _one_sentence(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("corelab: ") and lines[0].endswith("."), output
    assert "Traceback" not in output
    return lines[0]


@pytest.mark.parametrize(
    "text, words",
    [
        ("patient_id,onset\nP001,2024-03-01 08:00\n", "has no 'scan' column (required: patient_id, scan)"),
        ("scan\nscans/P001.nii.gz\n", "has no 'patient_id' column"),
        ("", "is empty"),
        ("\n\n", "is empty"),
        ("patient_id,scan,onset\n", "has a header but no scan rows"),
    ],
    ids=["no-scan-column", "no-id-column", "no-bytes", "blank-lines", "header-only"],
)
def test_unusable_manifest_exits_2_with_one_sentence_and_writes_nothing(catalogue, tmp_path, text, words):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(text)
    result = _cli_run(manifest, catalogue["models"], tmp_path / "results")
    assert result.exit_code == 2
    assert words in _one_sentence(result.output)
    assert not (tmp_path / "results").exists()


def test_manifest_without_the_optional_onset_column_leaves_the_window_unknown(catalogue, tmp_path):
    scan = catalogue["folder"] / "scans" / "P001.nii.gz"
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"patient_id,scan,scan_time\nP001,{scan},{SCANNED}\n")
    # A copy of the catalogue's results, so the unchanged P001 is reused rather than segmented again
    # (timing comes from the current manifest on every run); the rest of the output is rewritten.
    shutil.copytree(catalogue["out"], tmp_path / "results")
    result = _cli_run(manifest, catalogue["models"], tmp_path / "results")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "results" / "volumes.csv", dtype=str, keep_default_na=False)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["status"], row["in_window"], row["onset"], row["hours_since_onset"]) == ("ok", "", "", "")
    assert row["flags"].startswith("Stroke onset is missing, so the imaging window is unknown.")
    assert row["infarct_ml"] == _row(catalogue, "P001")["infarct_ml"]
