"""Volumes and hypodensity class from a label map.

Units: volumes in mL (1 mL = 1000 mm^3), densities in HU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corelab.config import CLASS_RANGES_HU, hypodensity_class
from corelab.errors import CorelabError

__all__ = ["measure_labels", "Measurements", "MeasureError"]


class MeasureError(CorelabError):
    """A label map cannot be measured (shape differs from the scan, or labels outside 0-4)."""


@dataclass(frozen=True)
class Measurements:
    """Volumes of one label map, in mL, and the infarct's density, in HU.

    severe_ml, intermediate_ml, subtle_ml, hemorrhage_ml: volume of labels 1, 2, 3, 4.
    infarct_ml: the union of all four labels, as the paper adds hemorrhage to the infarct.
    infarct_mean_hu: mean HU over labels 1-3 (hemorrhage excluded, as the paper's classes are
        defined); None when there is no infarct voxel.
    hypodensity_class: `hypodensity_class(infarct_mean_hu)`.
    voxel_counts: voxels per label 1-4, in label order.
    voxel_ml: volume of one voxel in mL.
    """

    severe_ml: float
    intermediate_ml: float
    subtle_ml: float
    hemorrhage_ml: float
    infarct_ml: float
    infarct_mean_hu: float | None
    hypodensity_class: str
    voxel_counts: tuple[int, int, int, int]
    voxel_ml: float


def measure_labels(
    labels: np.ndarray,
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    ranges: dict[str, tuple[float, float]] = CLASS_RANGES_HU,
) -> Measurements:
    """Volumes (mL) per label and the infarct's mean density (HU) from a label map.

    labels: uint8 [z, y, x], 0 background, 1 severe, 2 intermediate, 3 subtle, 4 hemorrhage.
    hu: the scan in HU, same shape, same grid (measure on the written mask's grid so that volumes
        equal mask voxel counts times the voxel volume).
    spacing: (z, y, x) voxel size in mm.

    >>> lab = np.zeros((2, 10, 10), np.uint8); lab[0, :5, :4] = 1; lab[1, 0, 0] = 4
    >>> m = measure_labels(lab, np.full(lab.shape, 18.0), (5.0, 1.0, 1.0))
    >>> m.severe_ml, m.hemorrhage_ml, m.infarct_ml, m.infarct_mean_hu, m.hypodensity_class
    (0.1, 0.005, 0.105, 18.0, 'severe')
    """
    labels = np.asarray(labels)
    hu = np.asarray(hu)
    if labels.shape != hu.shape:
        raise MeasureError(f"The label map's shape {labels.shape} differs from the scan's shape {hu.shape}.")
    if len(spacing) != labels.ndim or any(not (s > 0) for s in spacing):
        raise MeasureError(f"Voxel spacing {tuple(spacing)} must give one positive size in mm per axis.")
    if labels.size and (labels.min() < 0 or labels.max() > 4):
        raise MeasureError(
            f"The label map holds values from {labels.min()} to {labels.max()}; only 0 to 4 are labels."
        )
    voxel_ml = float(np.prod([float(s) for s in spacing])) / 1000.0
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=5)[1:5]
    infarct = (labels >= 1) & (labels <= 3)
    n_infarct = int(infarct.sum())
    # float64 sum: a float32 running sum over millions of voxels loses tenths of an HU.
    mean_hu = float(hu[infarct].sum(dtype=np.float64) / n_infarct) if n_infarct else None
    vols = [round(float(c) * voxel_ml, 10) for c in counts]
    return Measurements(
        severe_ml=vols[0],
        intermediate_ml=vols[1],
        subtle_ml=vols[2],
        hemorrhage_ml=vols[3],
        infarct_ml=round(float(counts.sum()) * voxel_ml, 10),
        infarct_mean_hu=mean_hu,
        hypodensity_class=hypodensity_class(mean_hu, ranges),
        voxel_counts=tuple(int(c) for c in counts),
        voxel_ml=voxel_ml,
    )
