"""A tiny on-disk training cohort laid out like `corelab synth` output (drum-shaped phantom heads),
shared by the training and recalibration tests."""

from pathlib import Path

import numpy as np
import SimpleITK as sitk

SPACING = (5.0, 0.45, 0.45)  # already the analysis grid, so to_analysis_grid keeps the voxels
CLASS_HU = {"severe": 17.0, "intermediate": 27.0, "subtle": 38.0}


def phantom(kind: str, *, rng: np.random.Generator, hemorrhage: bool, shape=(12, 156, 156)):
    """A drum-shaped head: 45 HU brain (r < 66 voxels), skull ring and caps, a 5 HU ventricle in the
    middle, a 14-voxel-radius lesion of the class's HU on slices 4-7, optionally 65 HU blood in it.
    Returns (HU, truth labels 0-4)."""
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    cy, cx = shape[1] / 2, shape[2] / 2
    r = np.hypot(y - cy, x - cx) + 0 * z
    hu = np.where(r < 66, 45.0, np.where(r < 72, 1000.0, -1000.0)).astype(np.float32)
    hu[0] = np.where(r[0] < 72, 1000.0, -1000.0)  # skull caps close the head above and below
    hu[-1] = hu[0]
    hu += rng.normal(0, 2.0, hu.shape).astype(np.float32) * (hu == 45.0)
    hu[1:-1][r[1:-1] < 7] = 5.0  # ventricle (CSF) at the centroid
    ly, lx = cy + rng.integers(-6, 6), cx + 30 + rng.integers(-4, 4)
    lesion = (np.hypot(y - ly, x - lx) < 14) & (z >= 4) & (z <= 7) & (kind != "none")
    if kind != "none":  # "none": a control, no lesion
        hu[lesion] = CLASS_HU[kind] + rng.normal(0, 2.0, int(lesion.sum()))
    labels = np.where(lesion, {"severe": 1, "intermediate": 2, "subtle": 3, "none": 0}[kind], 0).astype(np.uint8)
    if hemorrhage:
        blood = (np.hypot(y - ly, x - lx) < 5) & (z == 6)
        hu[blood] = 65.0
        labels[blood] = 4
    return hu, labels


def write(array: np.ndarray, path: Path, spacing=SPACING) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing[::-1])
    sitk.WriteImage(image, str(path))


def make_cohort(folder: Path, kinds, *, seed=0, hemorrhage=(), no_truth=()) -> Path:
    """manifest.csv + scans/, manual/ (binary, blood included) and truth/ (labels) like `corelab synth`."""
    for sub in ("scans", "manual", "truth"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = ["patient_id,scan"]
    for i, kind in enumerate(kinds):
        pid = f"P{i:02d}"
        hu, labels = phantom(kind, rng=rng, hemorrhage=i in hemorrhage)
        write(hu, folder / "scans" / f"{pid}.nii.gz")
        write((labels > 0).astype(np.uint8), folder / "manual" / f"{pid}.nii.gz")
        if i not in no_truth:
            write(labels, folder / "truth" / f"{pid}.nii.gz")
        rows.append(f"{pid},scans/{pid}.nii.gz")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder
