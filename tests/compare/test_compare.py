"""corelab.compare and corelab.compare.rows: mask metrics by hand, and compare() on a hand-made results folder."""

import json
import math

import numpy as np
import pandas as pd
import pytest

import corelab.io as cio
from corelab.compare.metrics import dice, hd95, lesion_detection, mask_metrics, reference_mean_hu
from corelab.compare.rows import CompareError
from corelab.io.files import find_image
from corelab.report.agreement_report import compare

SPACING = (5.0, 2.0, 2.0)  # z, y, x mm: one voxel is 0.02 mL
SHAPE = (6, 20, 20)


def test_dice_by_hand_and_empty_rule():
    a = np.zeros((1, 1, 10), np.uint8)
    b = a.copy()
    a[0, 0, :4] = 1
    b[0, 0, 2:8] = 2  # labels other than 1 count as foreground too
    assert dice(a, b) == pytest.approx(2 * 2 / (4 + 6))
    assert dice(a, a) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0
    assert math.isnan(dice(np.zeros_like(a), np.zeros_like(a)))


def test_hd95_uses_physical_spacing_and_is_zero_for_identical_masks():
    a = np.zeros((4, 5, 5), np.uint8)
    b = a.copy()
    a[1, 2, 2] = 1
    b[3, 2, 2] = 1  # two slices apart along z (5 mm slices): 10 mm
    assert hd95(a, b, SPACING) == pytest.approx(10.0)
    cube = np.zeros((5, 9, 9), np.uint8)
    cube[1:4, 2:7, 2:7] = 1
    assert hd95(cube, cube, SPACING) == 0.0
    assert math.isnan(hd95(cube, np.zeros_like(cube), SPACING))
    # A 5-voxel-wide block against the same block shifted one column (2 mm): every surface distance is 0 or 2 mm.
    shifted = np.roll(cube, 1, axis=2)
    assert 0.0 < hd95(cube, shifted, SPACING) <= 2.0


def test_hd95_is_the_same_for_masks_touching_the_image_edge_and_padded_copies():
    rng = np.random.default_rng(3)
    a = rng.random((4, 12, 12)) > 0.6
    b = rng.random((4, 12, 12)) > 0.6
    padded = [np.pad(m, 3) for m in (a, b)]
    assert hd95(a, b, SPACING) == pytest.approx(hd95(*padded, SPACING))


def test_lesion_detection_counts_26_connected_components():
    ref = np.zeros((3, 6, 6), np.uint8)
    ref[0, 0, 0] = ref[1, 1, 1] = 1  # diagonal neighbours: one lesion
    ref[2, 4:6, 4:6] = 1  # a second lesion
    auto = np.zeros_like(ref)
    assert lesion_detection(ref, auto) == (2, 0)
    auto[0, 0, 0] = 4  # hemorrhage label touches the first lesion
    assert lesion_detection(ref, auto) == (2, 1)
    assert lesion_detection(np.zeros_like(ref), auto) == (0, 0)


def test_mask_metrics_for_both_empty_and_shape_mismatch():
    empty = np.zeros(SHAPE, np.uint8)
    m = mask_metrics(empty, empty, SPACING)
    assert m.both_empty and math.isnan(m.dice) and math.isnan(m.hd95_mm) and m.lesions == 0
    with pytest.raises(ValueError, match="shapes differ"):
        mask_metrics(empty, empty[:3], SPACING)


def test_reference_mean_hu_leaves_out_hemorrhage_label_and_blood_hu():
    hu = np.full((1, 1, 5), 20.0)
    hu[0, 0, 3] = 65.0  # blood by HU
    hu[0, 0, 4] = 40.0  # labelled hemorrhage by the automated mask
    ref = np.ones_like(hu, dtype=np.uint8)
    labels = np.array([[[1, 1, 1, 1, 4]]])
    assert reference_mean_hu(hu, ref, labels=labels) == pytest.approx(20.0)
    assert reference_mean_hu(hu, ref) == pytest.approx(25.0)  # (20*3 + 40) / 4
    assert math.isnan(reference_mean_hu(hu, np.zeros_like(ref)))


# ---- a hand-made `corelab run` folder -------------------------------------------------------------

GRID = cio.Volume(array=np.zeros(SHAPE, np.float32), spacing=SPACING)


def _scan(infarct: np.ndarray, infarct_hu: float) -> np.ndarray:
    hu = np.full(SHAPE, -1000.0, np.float32)  # air around the head (the HU plausibility check needs it)
    hu[:, 2:18, 2:18] = 35.0  # brain
    hu[infarct] = infarct_hu
    return hu


def _box(z: slice, y: slice, x: slice) -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[z, y, x] = True
    return mask


# id: (status, in_window, hours, manual box, automated box, infarct HU, site)
PATIENTS = {
    "P01": ("ok", "true", 30, _box(slice(1, 4), slice(4, 10), slice(4, 10)),
            _box(slice(1, 4), slice(4, 10), slice(4, 10)), 18.0, "A"),  # perfect, severe: 108 voxels
    "P02": ("ok", "true", 40, _box(slice(1, 3), slice(5, 11), slice(5, 11)),
            _box(slice(1, 3), slice(5, 11), slice(5, 14)), 26.0, "A"),  # auto larger, intermediate
    "P03": ("ok", "true", 50, _box(slice(2, 5), slice(6, 12), slice(6, 9)),
            _box(slice(2, 5), slice(6, 12), slice(6, 8)), 38.0, "B"),  # auto smaller, subtle
    "P04": ("ok", "true", 60, np.zeros(SHAPE, bool), np.zeros(SHAPE, bool), 35.0, "B"),  # both empty
    "P05": ("failed", "true", 20, _box(slice(1, 2), slice(4, 6), slice(4, 6)), None, 20.0, "B"),
    "P06": ("ok", "true", 25, None, _box(slice(1, 2), slice(4, 6), slice(4, 6)), 20.0, "A"),  # no reference
    "P07": ("ok", "false", 400, _box(slice(1, 2), slice(4, 6), slice(4, 6)),
            _box(slice(1, 2), slice(4, 6), slice(4, 6)), 20.0, "A"),  # out of window
    "P08": ("ok", "", "", _box(slice(1, 2), slice(4, 6), slice(4, 6)),
            _box(slice(1, 2), slice(4, 6), slice(4, 6)), 20.0, "B"),  # unknown timing
}


# P02 tripped a guard of corelab run (needs review); P07's timing flag alone needs none.
FLAGS = {"P02": "Symmetric claim: 3 mL of infarct claimed, overlapping its own mirror across the midline with "
                "Dice 0.81 (guard: above 0.50 from 10 mL); check before use.",
         "P07": "Scanned 400.0 h after onset, outside the imaging window."}
REVIEWED = {"P02"}


def make_results(root):
    """A results folder, a manifest folder with scans, and manual reads, as `corelab run` leaves them."""
    results, reference, manifest_dir = root / "results", root / "manual", root / "trial"
    for folder in (results / "masks", reference, manifest_dir / "scans"):
        folder.mkdir(parents=True)
    rows = []
    for pid, (status, window, hours, manual, auto, infarct_hu, site) in PATIENTS.items():
        lesion = manual if manual is not None else np.zeros(SHAPE, bool)
        cio.write_image(_scan(lesion, infarct_hu), GRID, manifest_dir / "scans" / f"{pid}.nii.gz")
        infarct_ml = ""
        if auto is not None:
            cio.write_image(auto.astype(np.uint8) * 2, GRID, results / "masks" / f"{pid}.nii.gz")
            infarct_ml = str(int(auto.sum()) * 0.02)
        if manual is not None and pid != "P03":
            cio.write_image(manual.astype(np.uint8), GRID, reference / f"{pid}.nii.gz")
        rows.append({"patient_id": pid, "status": status,
                     "error": "The scan holds no CT series." if status == "failed" else "",
                     "hours_since_onset": hours, "in_window": window, "infarct_ml": infarct_ml,
                     "mask": f"masks/{pid}.nii.gz" if auto is not None else "", "scan": f"scans/{pid}.nii.gz",
                     "site": site, "flags": FLAGS.get(pid, ""),
                     "needs_review": "" if status != "ok" else "true" if pid in REVIEWED else "false"})
    # P03's manual read on a grid with half the in-plane resolution (4 mm pixels): resampled for overlap.
    coarse = cio.Volume(array=np.zeros((6, 10, 10), np.uint8), spacing=(5.0, 4.0, 4.0), origin=(1.0, 1.0, 0.0))
    coarse_mask = np.zeros((6, 10, 10), np.uint8)
    coarse_mask[2:5, 3:6, 3:4] = 1  # covers fine voxels y 6..11, x 6..7: the manual box [6:12, 6:9) less one column
    cio.write_image(coarse_mask, coarse, reference / "P03.nrrd")
    pd.DataFrame(rows).to_csv(results / "volumes.csv", index=False)
    run = {"versions": {"corelab": "0.1.0"}, "manifest": str(manifest_dir / "manifest.csv"),
           "models": {"version": "test-models-1", "checksums": {"severe": "ab12"}, "cutoffs": {"severe": 0.5}},
           "parameters": {"method": {"grid": {"slice_mm": 5.0, "pixel_mm": 0.45},
                                     "window": {"min_hours": 12.0, "max_hours": 336.0}}}}
    (results / "run.json").write_text(json.dumps(run))
    return results, reference


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("trial")
    results, reference = make_results(root)
    summary = compare(results, reference, trial_name="TEST-TRIAL")
    per_patient = pd.read_excel(summary.xlsx, sheet_name="per_patient", dtype={"patient_id": str})
    return summary, per_patient.set_index("patient_id"), results, reference


def test_compare_writes_pdf_html_and_xlsx_beside_the_results(compared):
    summary, _, results, _ = compared
    assert summary.pdf == results / "agreement.pdf" and summary.pdf.stat().st_size > 10_000
    assert summary.html.read_text(encoding="utf-8").count("<table") >= 8
    assert "TEST-TRIAL" in summary.html.read_text(encoding="utf-8")
    assert (summary.n_patients, summary.n_analysed, summary.n_excluded) == (8, 4, 4)
    # this volumes.csv names no run (an older corelab's): the report says so and why run.json is weak
    html = summary.html.read_text(encoding="utf-8")
    assert "run not named" in html and "overwritten by every run" in html


def test_exclusions_name_every_reason(compared):
    _, rows, _, _ = compared
    assert rows.loc[["P01", "P02", "P03", "P04"], "in_primary"].all()
    assert rows.loc["P05", "excluded_because"] == "processing failed: The scan holds no CT series."
    assert rows.loc["P06", "excluded_because"] == "no reference read"
    assert rows.loc["P07", "excluded_because"] == "scanned outside the 12 h to 14 day window (400 h after onset)"
    assert rows.loc["P08", "excluded_because"] == "imaging time unknown (onset or scan time missing)"


def test_per_patient_metrics_and_classes_from_the_scan(compared):
    _, rows, _, _ = compared
    assert rows.loc["P01", "dice"] == 1.0 and rows.loc["P01", "hd95_mm"] == 0.0
    # The workbook holds mL rounded to 0.1 (agreement.rounded).
    assert rows.loc["P01", "reference_ml"] == pytest.approx(108 * 0.02, abs=0.05)
    # P02: manual 2x6x6 = 72 voxels, automated 2x6x9 = 108, overlap 72: Dice 144 / 180.
    assert rows.loc["P02", "dice"] == pytest.approx(0.8)
    assert rows.loc["P02", "difference_ml"] == pytest.approx(36 * 0.02, abs=0.05)
    # P03: the coarse read counted on its own grid (3 x 3 x 1 voxels of 80 mm^3), compared on the fine grid.
    assert rows.loc["P03", "reference_ml"] == pytest.approx(9 * 0.08, abs=0.05)
    assert rows.loc["P03", "dice"] == pytest.approx(1.0)
    assert bool(rows.loc["P04", "both_empty"]) and math.isnan(rows.loc["P04", "dice"])
    assert rows.loc[["P01", "P02", "P03"], "reference_class"].tolist() == ["severe", "intermediate", "subtle"]
    assert rows.loc["P01", "reference_mean_hu"] == pytest.approx(18.0)
    assert rows.loc["P04", "reference_class"] == "no infarct"  # an empty read, not a mean outside the ranges
    # This volumes.csv has no class column (an old corelab's): the automated class is measured from
    # the mask on the scan (P01: labelled 2, but its mean is 18 HU, so severe by the paper's ranges).
    assert rows.loc["P01", "auto_class"] == "severe" and rows.loc["P04", "auto_class"] == "no infarct"
    assert rows.loc["P01", "lesions_detected"] == 1


def test_summary_sheet_has_overall_and_class_rows_with_icc(compared):
    summary, _, _, _ = compared
    table = pd.read_excel(summary.xlsx, sheet_name="summary_by_class").set_index("group")
    assert table.loc["All", "n"] == 4
    assert table.loc["All", "n_both_empty"] == 1 and table.loc["All", "dice_n"] == 3
    assert table.loc["severe", "n"] == 1 and math.isnan(table.loc["severe", "icc_a1"])
    assert 0 < table.loc["All", "icc_a1"] <= 1
    sites = pd.read_excel(summary.xlsx, sheet_name="summary_by_site")
    assert sites["group"].tolist() == ["All", "A", "B"]


@pytest.mark.slow  # make test runs it; the quick loop does not
def test_inter_reader_mode_without_results_reports_unknown_classes(tmp_path, compared):
    _, _, _, reference = compared
    reader_b = tmp_path / "reader_b"
    reader_b.mkdir()
    for pid in ("P01", "P02"):
        read = cio.read_mask(find_image(reference, pid))
        cio.write_image(read.array, read, reader_b / f"{pid}.nii.gz")
    summary = compare(None, reference, against=reader_b, out_pdf=tmp_path / "out" / "readers.pdf")
    rows = pd.read_excel(summary.xlsx, sheet_name="per_patient", dtype={"patient_id": str}).set_index("patient_id")
    assert summary.mode == "inter-reader" and summary.pdf.is_file() and summary.xlsx.name == "readers.xlsx"
    assert rows.loc[["P01", "P02"], "dice"].tolist() == [1.0, 1.0]
    assert set(rows.loc[["P01", "P02"], "reference_class"]) == {"unknown"}
    assert "auto_class" not in rows.columns and "qc" not in rows.columns  # no automated mask in this mode
    assert rows.loc["P03", "excluded_because"] == "no read by reader B"
    # With the results folder, the scans give reader A's classes and the window flags apply.
    with_scans = compare(compared[2], reference, against=reader_b, out_pdf=tmp_path / "out2" / "readers.pdf")
    rows = pd.read_excel(with_scans.xlsx, sheet_name="per_patient", dtype={"patient_id": str}).set_index("patient_id")
    assert rows.loc[["P01", "P02"], "reference_class"].tolist() == ["severe", "intermediate"]
    assert rows.loc["P07", "excluded_because"].startswith("no read by reader B; scanned outside")


def test_missing_results_table_is_a_named_error(tmp_path):
    (tmp_path / "manual").mkdir()
    with pytest.raises(CompareError, match="volumes.csv"):
        compare(tmp_path, tmp_path / "manual")


def test_patient_flow_sheet_counts_each_reason_once(compared):
    summary, _, _, _ = compared
    flow = pd.read_excel(summary.xlsx, sheet_name="patient_flow").set_index("reason")["patients"]
    assert flow["listed in the results"] == 8 and flow["analysed (primary population)"] == 4
    assert (flow["processing failed"], flow["no reference read"], flow["outside the imaging window"],
            flow["imaging time unknown"]) == (1, 1, 1, 1)


def test_scans_that_need_review_are_listed_in_the_report_and_kept_in_the_analysis(compared):
    summary, rows, _, _ = compared
    assert rows.loc["P02", "needs_review"] and rows.loc["P02", "in_primary"]
    assert not rows.loc[["P01", "P03", "P05", "P07"], "needs_review"].any()
    html = summary.html.read_text(encoding="utf-8")
    section = html.split("<h3>Scans flagged for review</h3>")[1].split("</section>")[0]
    assert "<td>P02</td>" in section and "Symmetric claim: 3 mL of infarct claimed" in section
    assert "P07" not in section and "kept in every analysis" in section
    listed = pd.read_excel(summary.xlsx, sheet_name="needs_review", dtype={"patient_id": str})
    assert listed["patient_id"].tolist() == ["P02"] and listed["flags"].str.startswith("Symmetric claim:").all()
