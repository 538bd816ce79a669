"""A synthetic results folder for the review page: volumes-table rows of every status and real QC
images, without segmenting anything (a 40-scan batch would take minutes on one core).

The QC images are `corelab.pipeline.qc` figures of the pipeline tests' head phantom with its infarct
ellipsoid as the label (a few variants, copied to one file per patient as `corelab run` writes them).
Import from a test as ``from review_batch import make_results`` (pyproject's pytest ``pythonpath``);
``scripts/review_screenshot.py`` uses it for ``docs/review-page.png``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from pipeline_trial import SPACING, head_phantom

from corelab.config import LABELS

ERRORS = (
    "The scan path scans/{pid} does not exist.",
    "The series holds 3 slices; at least 5 axial slices are needed to segment a head CT.",
    "The image is not a CT: its values run from 0 to 4095, not in Hounsfield units (air near -1000 HU).",
)
FLAGS = (
    "Partial coverage: the scan stops below the top of the skull, so the intracranial volume is too small.",
    "Missing slices: 1 slice of the even 5.00 mm grid lay in a gap of the series and was interpolated.",
    ("Brain shift: the brain's median is 46.0 HU, 11.0 HU above the models' reference of 35 HU (the networks saw "
     "the scan shifted by that much): check the scanner's calibration and this volume."),
)
OUTSIDE = "Scan {h:.1f} h after onset is outside the 12 h to 336 h imaging window."


def qc_pngs(folder: Path, n: int = 4) -> list[Path]:
    """``n`` QC images of head phantoms whose infarct is labelled severe, intermediate, subtle and
    (for the 4th) hemorrhage, written to ``folder``."""
    from corelab.pipeline.qc import png_bytes, qc_figure

    folder.mkdir(parents=True, exist_ok=True)
    classes = ("severe", "intermediate", "subtle", "hemorrhage")
    paths = []
    for i in range(n):
        lesion_hu = (18.0, 26.0, 38.0, 60.0)[i % 4]
        hu = head_phantom(lesion_hu=lesion_hu, lesion_side=1 if i % 2 else -1, seed=i)
        healthy = head_phantom(lesion_hu=35.0, lesion_side=1 if i % 2 else -1, seed=i)
        labels = np.where(np.abs(hu - healthy) > 0.5, LABELS[classes[i % 4]], 0).astype(np.uint8)
        direction = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
        fig = qc_figure(hu, labels, SPACING, direction=direction, title=f"phantom {i + 1} ({classes[i % 4]})")
        path = folder / f"phantom-{i + 1}.png"
        path.write_bytes(png_bytes(fig))
        paths.append(path)
    return paths


def result_rows(n: int = 40, *, seed: int = 7) -> list[dict]:
    """``n`` volumes-table rows as `corelab.pipeline.outputs.table_row` gives them: mostly ok (some
    flagged, some outside the window or with an unknown window), every 9th failed, the last two not run;
    sites A, B and C; volumes log-normal around 20 mL."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        pid = f"{'ABC'[i % 3]}-{i + 1:03d}"
        row = {"patient_id": pid, "status": "ok", "error": "", "flags": "", "needs_review": False,
               "hours_since_onset": float(rng.uniform(14.0, 120.0)), "in_window": True, "qc": f"qc/{pid}.png",
               "mask": f"masks/{pid}.nii.gz", "site": f"site {'ABC'[i % 3]}"}
        if i % 9 == 4:
            row.update(status="failed", error=ERRORS[(i // 9) % len(ERRORS)].format(pid=pid), qc="", mask="",
                       needs_review=None, in_window=None, hours_since_onset=None)
        elif i >= n - 2:
            row.update(status="not_run", qc="", mask="", needs_review=None, in_window=None, hours_since_onset=None,
                       error="Not run: the batch was interrupted (SIGINT) before this scan was processed; run the "
                             "same command again to process it.")
        else:
            parts = rng.lognormal(np.log(6.0), 1.0, size=4) * (rng.uniform(size=4) < (0.9, 0.7, 0.6, 0.15))
            row.update(severe_ml=parts[0], intermediate_ml=parts[1], subtle_ml=parts[2], hemorrhage_ml=parts[3],
                       infarct_ml=float(parts.sum()))
            if i % 7 == 3:
                row.update(flags=FLAGS[(i // 7) % len(FLAGS)], needs_review=True)
            if i % 11 == 6:
                row.update(hours_since_onset=float(rng.uniform(340.0, 500.0)), in_window=False)
                row["flags"] = " ".join(f for f in (OUTSIDE.format(h=row["hours_since_onset"]), row["flags"]) if f)
            if i % 13 == 12:
                row.update(hours_since_onset=None, in_window=None,
                           flags="Stroke onset is missing, so the imaging window is unknown.")
        rows.append(row)
    return rows


def make_results(folder: Path, rows: list[dict] | None = None, *, pngs: list[Path] | None = None) -> list[dict]:
    """A results folder holding ``rows`` (default `result_rows`) and, for each row with a ``qc``
    path, a QC image there (the ``pngs``, default `qc_pngs`, in turn). Returns the rows."""
    rows = result_rows() if rows is None else rows
    pngs = pngs if pngs is not None else qc_pngs(folder / "phantoms")
    (folder / "qc").mkdir(parents=True, exist_ok=True)
    with_qc = [row for row in rows if row.get("qc")]
    for i, row in enumerate(with_qc):
        shutil.copyfile(pngs[i % len(pngs)], folder / row["qc"])
    return rows
