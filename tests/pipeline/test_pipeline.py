"""run_batch end to end on a tiny synthetic trial: every output reads back and agrees with the masks.

Real components throughout: NIfTI and DICOM files on disk, corelab's reader, preprocessing, the
paper's CNN (random seeded weights, see pipeline_trial.py) and the real writers.
"""

import datetime as dt
import json

import matplotlib.image as mpimg
import numpy as np
import openpyxl
import pandas as pd
import pytest
import SimpleITK as sitk
from dicom_factory import write_ct_series
from pipeline_trial import SMALL_METHOD, SPACING, head_phantom, make_trial, write_model_folder

from corelab.config import LABELS, Method
from corelab.io.manifest import OUTPUT_COLUMNS
from corelab.io.volume import Volume, write_image
from corelab.pipeline.batch import run_batch


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """One random-weight model folder for the module (writing one costs a few seconds)."""
    return write_model_folder(tmp_path_factory.mktemp("models") / "models")


def _table(out):
    return pd.read_csv(out / "volumes.csv", dtype=str, keep_default_na=False)


def test_end_to_end_outputs_read_back_and_volumes_equal_mask_counts(tmp_path, models):
    onset = dt.datetime(2024, 3, 1, 8, 0)
    trial = make_trial(
        tmp_path / "trial",
        n=3,
        models=models,
        rows=[
            # same scan, reported 20 days after onset: segmented but outside the window
            {"patient_id": "007", "scan": "scans/P001.nii.gz", "onset": onset.isoformat(),
             "scan_time": (onset + dt.timedelta(days=20)).isoformat(), "site": "site9"},
            {"patient_id": "P_NO_ONSET", "scan": "scans/P002.nii.gz", "scan_time": onset.isoformat()},
        ],
    )
    summary = run_batch(trial.manifest, models_dir=trial.models, method=SMALL_METHOD, progress=False, threads=1)
    out = trial.folder / "corelab-results"
    assert summary.out_dir == out
    assert (summary.n_rows, summary.n_ok, summary.n_failed, summary.n_out_of_window) == (5, 5, 0, 1)
    assert "5 scans" in str(summary)

    table = _table(out)
    assert list(table.columns) == list(OUTPUT_COLUMNS) + ["site"]
    assert table["patient_id"].tolist() == ["P001", "P002", "P003", "007", "P_NO_ONSET"]
    assert table["status"].tolist() == ["ok"] * 5
    assert table["in_window"].tolist() == ["true", "true", "true", "false", ""]
    assert table["hours_since_onset"].tolist()[:4] == ["24.0", "48.0", "72.0", "480.0"]
    assert "outside" in table.loc[3, "flags"] and "onset is missing" in table.loc[4, "flags"]
    assert table["site"].tolist() == ["site0", "site1", "site0", "site9", ""]
    assert table["scan_time_source"].tolist() == ["manifest"] * 5

    book = openpyxl.load_workbook(out / "volumes.xlsx").active
    assert [book.cell(row=r, column=1).value for r in range(2, 7)] == table["patient_id"].tolist()

    for _, row in table.iterrows():
        pid = row["patient_id"]
        assert row["mask"] == f"masks/{pid}.nii.gz" and row["qc"] == f"qc/{pid}.png"
        mask = sitk.ReadImage(str(out / row["mask"]))
        source = {"007": "P001", "P_NO_ONSET": "P002"}.get(pid, pid)
        scan = sitk.ReadImage(str(trial.folder / "scans" / f"{source}.nii.gz"))
        assert mask.GetPixelID() == sitk.sitkUInt8
        assert mask.GetSize() == scan.GetSize() and mask.GetSpacing() == pytest.approx(scan.GetSpacing())
        assert mask.GetOrigin() == pytest.approx(scan.GetOrigin())
        labels = sitk.GetArrayFromImage(mask)
        voxel_ml = float(np.prod(mask.GetSpacing())) / 1000.0
        counts = np.bincount(labels.ravel(), minlength=5)
        assert labels.max() <= 4 and counts[1:].sum() > 0  # the random networks do label something
        for name, value in LABELS.items():
            assert float(row[f"{name}_ml"]) == pytest.approx(counts[value] * voxel_ml, abs=1e-4)
        assert float(row["infarct_ml"]) == pytest.approx(counts[1:].sum() * voxel_ml, abs=1e-4)
        hu = sitk.GetArrayFromImage(scan)
        infarct = (labels >= 1) & (labels <= 3)
        assert float(row["infarct_mean_hu"]) == pytest.approx(hu[infarct].mean(), abs=0.01)
        assert 100.0 < float(row["intracranial_ml"]) < 600.0  # the phantom's brain is about 400 mL
        assert 25.0 < float(row["brain_median_hu"]) < 45.0  # grey and white matter
        png = mpimg.imread(out / row["qc"])
        assert png.ndim == 3 and png.shape[0] > 200
        assert len(row["scan_sha256"]) == 64 and row["model_version"].startswith("test+")
    # identical input, identical models: identical masks for the two rows reading P001
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "masks" / "P001.nii.gz")))
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "masks" / "007.nii.gz")))
    assert np.array_equal(a, b)

    run = json.loads((out / "run.json").read_text())
    assert run["finished"] and run["counts"] == {"rows": 5, "ok": 5, "failed": 0, "not_run": 0, "reused": 0}
    assert run["sites_apart"] == []  # no site column, no site sentences
    assert run["models"]["checksums"] and run["versions"]["torch"] and run["host"]
    assert {"smoothing_mm", "brain_reference_hu"} <= set(run["models"])  # the methods page states both
    assert run["models"]["cutoffs_chosen_on"] == "validation scans of the training cohort"
    assert run["parameters"]["method"]["grid"]["pixel_mm"] == 1.5
    records = sorted(p.name for p in (out / "records").iterdir())
    assert records == sorted(f"{pid}.json" for pid in table["patient_id"])
    record = json.loads((out / "records" / "P001.json").read_text())
    stages = record["stage_seconds"]
    assert list(stages) == ["read", "preprocess", "cnn", "measure", "qc"]
    assert all(v >= 0 for v in stages.values()) and sum(stages.values()) <= record["seconds"] + 0.01


@pytest.mark.slow  # make test runs it; the quick loop does not
def test_bad_rows_fail_or_are_flagged_and_the_rest_go_on(tmp_path, models, capfd):
    folder = tmp_path / "trial"
    onset = dt.datetime(2024, 3, 1, 8, 0)
    hu = head_phantom(seed=5)
    # a DICOM CT series whose scan time comes from its tags (acquisition 2024-03-02 09:30)
    write_ct_series(folder / "dicom" / "ct", np.maximum(hu, -1024), SPACING,
                    tags={"AcquisitionDate": "20240302", "AcquisitionTime": "093000"})
    write_ct_series(folder / "dicom" / "mr", np.maximum(hu, -1024), SPACING, modality="MR")
    constant = np.full((15, 72, 72), 30.0, np.float32)
    (folder / "scans").mkdir(parents=True)
    write_image(constant, Volume(array=constant, spacing=SPACING), folder / "scans" / "constant.nii.gz")
    rows = [
        {"patient_id": "DICOM", "scan": "dicom/ct", "onset": onset.isoformat()},
        {"patient_id": "MISSING", "scan": "scans/nothing.nii.gz", "onset": onset.isoformat()},
        {"patient_id": "DUP", "scan": "scans/P001.nii.gz"},
        {"patient_id": "DUP", "scan": "scans/P002.nii.gz"},
        {"patient_id": "BADDATE", "scan": "scans/P001.nii.gz", "onset": "1st of March"},
        {"patient_id": "AFTER", "scan": "scans/P002.nii.gz", "onset": (onset + dt.timedelta(days=3)).isoformat(),
         "scan_time": (onset + dt.timedelta(days=1)).isoformat()},
        {"patient_id": "MR", "scan": "dicom/mr", "onset": onset.isoformat()},
        {"patient_id": "CONSTANT", "scan": "scans/constant.nii.gz"},
    ]
    trial = make_trial(folder, n=2, rows=rows, models=models)
    summary = run_batch(trial.manifest, out_dir=tmp_path / "out", models_dir=trial.models,
                        method=SMALL_METHOD, progress=True, threads=1)
    progress = capfd.readouterr()  # not a terminal: a plain line per finished scan on stdout
    assert "6 to segment" in progress.err and "scan 6/6  " in progress.out  # six rows pass the manifest checks
    table = _table(tmp_path / "out").set_index("patient_id", drop=False)
    assert table["patient_id"].tolist() == list(trial.ids)
    status = dict(zip(table["patient_id"], table["status"]))
    error = lambda pid: table.loc[pid, "error"] if pid != "DUP" else table["error"][table["patient_id"] == "DUP"].tolist()  # noqa: E731
    assert status["P001"] == status["P002"] == "ok"
    assert status["DICOM"] == "ok"
    assert table.loc["DICOM", "scan_time"] == "2024-03-02 09:30:00"
    assert table.loc["DICOM", "scan_time_source"] == "dicom"
    assert table.loc["DICOM", "hours_since_onset"] == "25.5" and table.loc["DICOM", "in_window"] == "true"
    assert status["MISSING"] == "failed" and "does not exist" in error("MISSING")
    assert all("appears in rows" in e for e in error("DUP"))
    assert status["BADDATE"] == "failed" and "'1st of March' is not a date-time" in error("BADDATE")
    assert status["AFTER"] == "ok" and table.loc["AFTER", "in_window"] == ""
    assert "after the scan" in table.loc["AFTER", "flags"]
    assert status["MR"] == "failed" and "MR" in error("MR")
    assert status["CONSTANT"] == "failed" and error("CONSTANT")
    for pid, message in zip(table["patient_id"], table["error"]):
        if status[pid] == "failed":
            assert message.endswith(".") and "\n" not in message and "Traceback" not in message
            assert not (tmp_path / "out" / "masks" / f"{pid}.nii.gz").exists() or pid == "DUP"
        else:
            assert message == ""
    assert summary.n_failed == 6 and summary.n_ok == 4


@pytest.mark.slow  # make test runs it; the quick loop does not
def test_rerun_reuses_complete_results_and_redoes_changed_ones(tmp_path, models):
    trial = make_trial(tmp_path / "trial", n=3, models=models)
    out = tmp_path / "out"
    first = run_batch(trial.manifest, out_dir=out, models_dir=trial.models, method=SMALL_METHOD, progress=False, threads=1)
    assert first.n_skipped == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "records").iterdir()}
    masks = {p.name: p.read_bytes() for p in (out / "masks").iterdir()}

    # a corrected onset changes the window without segmenting again
    text = trial.manifest.read_text().replace("2024-03-01T08:00:00", "2024-02-01T08:00:00", 1)
    trial.manifest.write_text(text)
    second = run_batch(trial.manifest, out_dir=out, models_dir=trial.models, method=SMALL_METHOD, progress=False, threads=1)
    assert second.n_skipped == 3
    assert {p.name: p.stat().st_mtime_ns for p in (out / "records").iterdir()} == stamps
    assert _table(out)["in_window"].tolist() == ["false", "true", "true"]  # P001 now 32 days after onset
    assert "outside" in _table(out).loc[0, "flags"]

    # a changed scan, a deleted QC image: those two are redone, the third is reused
    hu = head_phantom(seed=42, lesion_hu=30.0)
    write_image(hu, Volume(array=hu, spacing=SPACING), trial.folder / "scans" / "P002.nii.gz")
    (out / "qc" / "P003.png").unlink()
    third = run_batch(trial.manifest, out_dir=out, models_dir=trial.models, method=SMALL_METHOD, progress=False, threads=1)
    assert third.n_skipped == 1
    now = {p.name: p.stat().st_mtime_ns for p in (out / "records").iterdir()}
    assert now["P001.json"] == stamps["P001.json"]
    assert now["P002.json"] != stamps["P002.json"] and now["P003.json"] != stamps["P003.json"]
    assert (out / "qc" / "P003.png").is_file()
    assert (out / "masks" / "P003.nii.gz").read_bytes() == masks["P003.nii.gz"]  # same input, same mask


def test_unexpected_exception_becomes_a_failed_result_with_one_sentence(tmp_path):
    from corelab.pipeline.scan import ScanJob, process_scan

    hu = head_phantom(seed=3)
    write_image(hu, Volume(array=hu, spacing=SPACING), tmp_path / "s.nii.gz")
    # No model set at all: segment fails on an attribute lookup, a bug corelab did not foresee.
    result = process_scan(ScanJob(0, "X", str(tmp_path / "s.nii.gz")), None, method=SMALL_METHOD)
    assert result.status == "failed" and result.labels is None
    assert result.error.startswith("Internal error while processing this scan: AttributeError: ")
    assert result.error.endswith(".") and "\n" not in result.error


def test_unusable_options_and_manifest_stop_before_any_scan(tmp_path):
    from corelab.errors import ManifestError, ModelError
    from corelab.pipeline.batch import BatchOptionError

    with pytest.raises(BatchOptionError, match="1 or more"):
        run_batch(tmp_path / "m.csv", workers=0, progress=False)
    with pytest.raises(BatchOptionError, match="Unknown CNN precision 'half'"):
        run_batch(tmp_path / "m.csv", method=Method(precision="half"), progress=False)
    (tmp_path / "m.csv").write_text("id,path\nP1,a.nii.gz\n")
    with pytest.raises(ManifestError, match="no 'patient_id' or 'scan' column"):
        run_batch(tmp_path / "m.csv", progress=False)
    (tmp_path / "m.csv").write_text("patient_id,scan\nP1,m.csv\n")
    with pytest.raises(ModelError, match="no card.json"):
        run_batch(tmp_path / "m.csv", models_dir=tmp_path / "no-models", progress=False)
    assert not (tmp_path / "corelab-results").exists()


@pytest.mark.slow  # make test runs it; the quick loop does not
def test_formula_like_manifest_text_is_written_inert_and_compare_reads_it_back(tmp_path, models):
    """OWASP CSV injection: a cell starting with = must not become a live formula in volumes.xlsx
    or volumes.csv; compare still matches the patient by its original id."""
    import openpyxl

    evil = '=HYPERLINK("http://example.invalid")'  # no comma: the test manifest is plain csv
    trial = make_trial(tmp_path / "trial", n=1, models=models,
                       rows=[{"patient_id": "P009", "scan": "scans/P001.nii.gz", "site": evil}])
    out = tmp_path / "out"
    run_batch(trial.manifest, out_dir=out, models_dir=trial.models, method=SMALL_METHOD, progress=False, threads=1)

    sheet = openpyxl.load_workbook(out / "volumes.xlsx").active
    header = [cell.value for cell in sheet[1]]
    site = sheet.cell(row=3, column=header.index("site") + 1)
    assert site.data_type == "s" and site.value == "'" + evil
    import csv

    with open(out / "volumes.csv", newline="") as handle:
        raw = list(csv.DictReader(handle))
    assert raw[1]["site"] == "'" + evil  # the cell as a spreadsheet would receive it

    from corelab.compare.rows import read_results

    table = read_results(out)
    assert list(table["site"]) == ["site0", evil]  # restored for corelab's own use


@pytest.mark.slow  # make test runs it; the quick loop does not
def test_a_brain_far_from_the_models_reference_is_flagged(tmp_path):
    """Brain-referenced models: the phantom's brain (35 HU) passes quietly; the same head read 12 HU
    high (a miscalibrated scanner) is processed and flagged with the shift the networks saw."""
    import torch

    from corelab.pipeline.scan import ScanJob, process_scan
    from corelab.segment.card import NETWORK_NAMES, save_models
    from corelab.segment.folder import load_models
    from corelab.segment.barros2020 import PatchCNN
    from corelab.segment.norm import InputNorm

    torch.manual_seed(0)
    save_models(tmp_path / "m", {name: PatchCNN().eval() for name in NETWORK_NAMES}, dict.fromkeys(NETWORK_NAMES, 0.5),
                norm=InputNorm(brain_reference_hu=35.0), grid={"slice_mm": 5.0, "pixel_mm": 1.5})
    models = load_models(tmp_path / "m")
    hu = head_phantom(seed=3)
    bright = np.where((hu > 20) & (hu < 60), hu + 12.0, hu).astype(np.float32)
    flags, medians = {}, {}
    for name, array in (("calibrated", hu), ("bright", bright)):
        write_image(array, Volume(array=array, spacing=SPACING), tmp_path / f"{name}.nii.gz")
        result = process_scan(ScanJob(0, name, str(tmp_path / f"{name}.nii.gz")), models, method=SMALL_METHOD)
        assert result.status == "ok", result.error
        flags[name] = [flag for flag in result.flags if "models' reference" in flag]
        medians[name] = result.brain_median_hu
    assert 30.0 < medians["calibrated"] < 40.0  # the phantom's brain
    assert medians["bright"] - medians["calibrated"] == pytest.approx(12.0, abs=1.0)  # resampling blurs edges
    assert flags["calibrated"] == []
    assert len(flags["bright"]) == 1 and "HU above the models' reference of 35 HU" in flags["bright"][0]
