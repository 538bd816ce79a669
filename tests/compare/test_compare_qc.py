"""compare's own QC set: one PNG per compared patient with the reference outline where the reference
lies; class names of both reads; an unreadable scan gives no image and a sentence, never a crash."""

import json

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

import corelab.io as cio
from corelab.compare.rows import listed_auto_class
from corelab.pipeline.qc import LABEL_COLORS, REFERENCE_COLOR, reference_qc_png
from corelab.report.agreement_report import compare

SPACING = (5.0, 1.0, 1.0)  # 1 mm pixels: the outline's position in mm is its position in voxels
SHAPE = (6, 40, 40)
AUTO_BOX = (10, 20)  # the automated severe lesion, rows and columns [10, 20) on slices 2-3
REF_BOX = (25, 35)  # the reference read, apart from it: its outline must be drawn there, in cyan


def _near(rgb, color, tol=45):
    return np.abs(rgb - np.asarray(color)).max(axis=-1) <= tol


@pytest.fixture(scope="module")
def qc_compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("qc")
    results, reference, scans = root / "results", root / "manual", root / "scans"
    for folder in (results / "masks", reference, scans):
        folder.mkdir(parents=True)
    grid = cio.Volume(array=np.zeros(SHAPE, np.float32), spacing=SPACING)
    hu = np.full(SHAPE, -1000.0, np.float32)
    hu[:, 2:38, 2:38] = 35.0
    auto = np.zeros(SHAPE, np.uint8)
    auto[2:4, AUTO_BOX[0]:AUTO_BOX[1], AUTO_BOX[0]:AUTO_BOX[1]] = 1
    manual = np.zeros(SHAPE, np.uint8)
    manual[2:4, REF_BOX[0]:REF_BOX[1], REF_BOX[0]:REF_BOX[1]] = 1
    hu[auto > 0] = 18.0  # automated: severe
    hu[manual > 0] = 26.0  # reference: intermediate
    rows = []
    for pid in ("Q1", "Q2"):
        cio.write_image(auto, grid, results / "masks" / f"{pid}.nii.gz")
        cio.write_image(manual, grid, reference / f"{pid}.nii.gz")
        rows.append({"patient_id": pid, "status": "ok", "in_window": "true", "hours_since_onset": 30,
                     "infarct_ml": str(int(auto.sum()) * 0.005), "auto_class": "severe",
                     "mask": f"masks/{pid}.nii.gz", "scan": str(scans / f"{pid}.nii.gz"), "run_id": "R1.json"})
    cio.write_image(hu, grid, scans / "Q1.nii.gz")
    (scans / "Q2.nii.gz").write_bytes(b"not an image")  # Q2's scan cannot be read
    pd.DataFrame(rows).to_csv(results / "volumes.csv", index=False)
    (results / "run.json").write_text(json.dumps({"run_id": "R1.json"}))
    summary = compare(results, reference, draw_qc=reference_qc_png)
    per_patient = pd.read_excel(summary.xlsx, sheet_name="per_patient", dtype=str, keep_default_na=False)
    return summary, per_patient.set_index("patient_id")


def test_one_png_per_compared_patient_with_a_readable_scan(qc_compared):
    summary, rows = qc_compared
    assert summary.qc_folder == summary.pdf.parent / "agreement-qc"  # not qc/, which holds corelab run's images
    assert (summary.qc_folder / "Q1.png").is_file() and summary.n_qc == 1
    assert rows.loc["Q1", "qc"] == "agreement-qc/Q1.png"
    assert not (summary.qc_folder / "Q2.png").exists() and rows.loc["Q2", "qc"] == ""
    assert rows.loc["Q2", "note"].startswith("scan unreadable")
    assert "there is no QC image" in rows.loc["Q2", "note"]
    assert (rows.loc["Q1", "reference_class"], rows.loc["Q1", "auto_class"]) == ("intermediate", "severe")


def test_the_report_names_the_folder_and_the_patient_without_an_image(qc_compared):
    summary, _ = qc_compared
    html = summary.html.read_text(encoding="utf-8")
    section = html.split("<h3>Quality-control images</h3>")[1].split("</section>")[0]
    assert "agreement-qc/&lt;patient_id&gt;.png" in section and "dashed cyan" in section
    assert "No QC image: Q2 (scan unreadable" in section


def _line_centers(counts):
    """Centers (px) of the two lines of a square outline from its pixel counts per column (or row):
    the count-weighted mean of the heavy columns in each half."""
    heavy = counts > counts.max() / 2
    index = np.arange(len(counts))
    half = len(counts) // 2
    return [float(np.average(index[part], weights=counts[part]))
            for part in (heavy & (index < half), heavy & (index >= half))]


def test_reference_outline_is_cyan_where_the_reference_lies(qc_compared):
    summary, _ = qc_compared
    rgb = (mpimg.imread(summary.qc_folder / "Q1.png")[..., :3] * 255).round().astype(int)
    red, cyan = _near(rgb, LABEL_COLORS[1]), _near(rgb, REFERENCE_COLOR)
    loops = [box for box in ndimage.find_objects(ndimage.label(ndimage.binary_dilation(red, iterations=2))[0])
             if box[0].stop - box[0].start > 20]  # not the legend's short line
    assert len(loops) == 4  # 2 lesion slices x 2 outlined panels
    lo, hi = AUTO_BOX
    for rows, cols in loops:
        # The red loop is the automated square's edge at 10 and 20 mm: it gives this panel's pixels
        # per mm and origin, whatever the layout.
        (left, right), (top, bottom) = (_line_centers(red[rows, cols].sum(axis=k)) for k in (0, 1))
        scale = (right - left) / (hi - lo)
        x0, y0 = cols.start + left - lo * scale, rows.start + top - lo * scale
        r0, r1 = round(y0 + REF_BOX[0] * scale), round(y0 + REF_BOX[1] * scale)
        c0, c1 = round(x0 + REF_BOX[0] * scale), round(x0 + REF_BOX[1] * scale)
        window = cyan[r0 - 3:r1 + 4, c0 - 3:c1 + 4]  # the reference square and 3 px around it
        ring = np.ones(window.shape, bool)
        ring[7:-7, 7:-7] = False  # within 3 px of its edge
        assert window.sum() > 4 * (r1 - r0) * 0.3  # dashes along all four edges
        assert window[:7].any() and window[-7:].any() and window[:, :7].any() and window[:, -7:].any()
        assert not (window & ~ring).any()  # on the reference's edge, not inside it
        assert not cyan[rows, cols].any()  # and nothing cyan on the automated lesion


def test_old_volumes_csv_class_column_is_read_as_the_automated_class():
    row = pd.Series({"status": "ok", "hypodensity_class": "subtle", "infarct_ml": "3.2"})
    assert listed_auto_class(row) == "subtle"
    assert listed_auto_class(pd.Series({"status": "ok", "hypodensity_class": "", "infarct_ml": "0.0"})) == "no infarct"
    assert listed_auto_class(pd.Series({"status": "ok", "hypodensity_class": "", "infarct_ml": "4"})) == "unclassified"
    assert listed_auto_class(pd.Series({"status": "failed", "hypodensity_class": "", "infarct_ml": ""})) == ""
    assert listed_auto_class(pd.Series({"status": "ok", "auto_class": "no infarct"})) == "no infarct"
    assert listed_auto_class(pd.Series({"status": "ok", "infarct_ml": "4"})) is None  # neither column
