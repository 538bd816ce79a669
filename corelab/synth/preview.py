"""`preview`: a mosaic PNG of a synthetic trial, scan at the readers' window with the truth outlined."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from corelab.synth.phantom import SynthError

__all__ = ["preview"]

# DESIGN "Outputs": red severe, orange intermediate, yellow subtle, blue haemorrhage.
_COLORS = {1: "red", 2: "orange", 3: "yellow", 4: "deepskyblue"}
WINDOW_CENTER_HU, WINDOW_WIDTH_HU = 35.0, 30.0  # as the paper's readers


def preview(out_dir: str | Path, png_path: str | Path | None = None, *, max_patients: int = 12) -> Path:
    """Draw one axial slice per patient (the slice with most infarct, else mid-brain) to a PNG.

    Window centre 35 HU, width 30 HU; truth outlined in the label colours; titles give the
    class, measured mean infarct HU and volume (mL). Returns the PNG path (default
    ``out_dir/preview.png``).
    """
    from matplotlib.figure import Figure

    out = Path(out_dir)
    truth_csv = out / "truth.csv"
    if not truth_csv.exists():
        raise SynthError(f"{out} holds no truth.csv; run `corelab synth` on it first.")
    truth = pd.read_csv(truth_csv, dtype={"patient_id": str}).head(max_patients)
    manifest = pd.read_excel(out / "manifest.xlsx", dtype={"patient_id": str}).set_index("patient_id")
    cols = min(4, len(truth))
    rows = int(np.ceil(len(truth) / cols))
    fig = Figure(figsize=(4 * cols, 4.3 * rows))  # drawn without pyplot: no backend or window state
    axes = fig.subplots(rows, cols, squeeze=False)
    lo, hi = WINDOW_CENTER_HU - WINDOW_WIDTH_HU / 2, WINDOW_CENTER_HU + WINDOW_WIDTH_HU / 2
    for ax, row in zip(axes.ravel(), truth.itertuples()):
        hu = _read(out / manifest.loc[row.patient_id, "scan"])
        labels = _read(out / "truth" / f"{row.patient_id}.nii.gz").astype(np.uint8)
        area = (labels > 0).sum(axis=(1, 2))
        k = int(np.argmax(area)) if area.any() else int(0.6 * labels.shape[0])
        ax.imshow(hu[k], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        for value, color in _COLORS.items():
            if (labels[k] == value).any():
                ax.contour(labels[k] == value, levels=[0.5], colors=color, linewidths=0.8)
        mean = "" if pd.isna(row.mean_hu) else f", {row.mean_hu:.1f} HU"
        ax.set_title(f"{row.patient_id} {row.hypodensity}{mean}, {row.infarct_ml:.0f} mL", fontsize=9)
        ax.axis("off")
    for ax in axes.ravel()[len(truth):]:
        ax.axis("off")
    fig.tight_layout()
    png = Path(png_path) if png_path is not None else out / "preview.png"
    fig.savefig(png, dpi=110)
    return png


def _read(path: Path) -> np.ndarray:
    """A scan or mask as a [z, y, x] array (DICOM folder or image file)."""
    import SimpleITK as sitk

    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path)))
        image = reader.Execute()
    else:
        image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image)
