"""Per-patient mask metrics: pure functions on arrays plus spacing (mm).

Rules (printed in the report's methods):
- Dice = 2|A and B| / (|A| + |B|) on the automated mask's grid (reference resampled by nearest
  neighbour when its geometry differs). Both masks empty: Dice undefined, the patient is left out of
  the Dice summary and counted; one empty and the other not: Dice 0.
- HD95: 95th percentile of the pooled distances, in mm, from each surface voxel of one mask to the
  nearest surface voxel of the other, both directions (as medpy's ``hd95``); undefined when either
  mask is empty. Surfaces are SimpleITK label contours; distances use the voxel spacing.
- Lesion-wise detection: each 26-connected component of the reference, whatever its size, is
  detected when at least one of its voxels is nonzero in the automated mask.
- Reference mean HU (for the hypodensity class): mean scan HU inside the reference, leaving out
  voxels the automated mask labels hemorrhage (4) and voxels >= 50 HU (blood), as the paper excludes
  hemorrhage before classifying.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from corelab.config import HEMORRHAGE_HU, LABELS
from corelab.io.volume import Volume, to_sitk

__all__ = ["MaskMetrics", "dice", "hd95", "lesion_detection", "mask_metrics", "reference_mean_hu"]


@dataclass(frozen=True)
class MaskMetrics:
    """Overlap of one patient's reference and other (automated or second reader) mask.

    dice: 0..1, NaN when both masks are empty (see ``both_empty``).
    hd95_mm: 95th percentile symmetric surface distance in mm, NaN when either mask is empty.
    lesions: connected components of the reference; lesions_detected: those the other mask touches.
    """

    dice: float
    both_empty: bool
    hd95_mm: float
    lesions: int
    lesions_detected: int


def dice(reference: np.ndarray, other: np.ndarray) -> float:
    """Dice coefficient of two masks (nonzero = foreground); NaN when both are empty.

    >>> dice(np.array([1, 1, 0, 0]), np.array([0, 1, 1, 0]))
    0.5
    """
    a, b = np.asarray(reference) != 0, np.asarray(other) != 0
    total = int(a.sum()) + int(b.sum())
    return math.nan if total == 0 else 2.0 * int((a & b).sum()) / total


def _surface_distances(a: np.ndarray, b: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Distances in mm from each surface voxel of ``a`` to the nearest surface voxel of ``b``."""
    def image(mask: np.ndarray) -> sitk.Image:
        return to_sitk(Volume(array=mask.astype(np.uint8), spacing=spacing))

    surface_a = sitk.GetArrayFromImage(sitk.LabelContour(image(a))) != 0
    to_b = sitk.SignedMaurerDistanceMap(
        sitk.LabelContour(image(b)), insideIsPositive=False, squaredDistance=False, useImageSpacing=True
    )
    # Surface voxels of b have distance <= 0 to b's contour; clamp to 0.
    return np.maximum(sitk.GetArrayFromImage(to_b)[surface_a], 0.0)


def hd95(reference: np.ndarray, other: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """95th percentile symmetric surface distance in mm (z, y, x spacing in mm); NaN if a mask is empty.

    >>> a = np.zeros((1, 1, 8), np.uint8); b = a.copy(); a[0, 0, 1] = 1; b[0, 0, 4] = 1
    >>> hd95(a, b, (5.0, 0.5, 0.5))
    1.5
    """
    a, b = np.asarray(reference) != 0, np.asarray(other) != 0
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} and {b.shape}")
    if not a.any() or not b.any():
        return math.nan
    # Crop to both masks plus one voxel: contours and nearest-contour distances are unchanged, and a
    # 512 x 512 scan costs a fraction of the time.
    box = ndimage.find_objects((a | b).astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
    a, b = a[box], b[box]
    pooled = np.concatenate([_surface_distances(a, b, spacing), _surface_distances(b, a, spacing)])
    return float(np.percentile(pooled, 95))


def lesion_detection(reference: np.ndarray, other: np.ndarray) -> tuple[int, int]:
    """(reference lesions, lesions detected): 26-connected reference components touched by ``other``.

    >>> ref = np.zeros((1, 1, 7), np.uint8); ref[0, 0, [1, 2, 5]] = 1
    >>> auto = np.zeros_like(ref); auto[0, 0, 2] = 3
    >>> lesion_detection(ref, auto)
    (2, 1)
    """
    components, count = ndimage.label(np.asarray(reference) != 0, structure=np.ones((3, 3, 3)))
    if count == 0:
        return 0, 0
    touched = np.unique(components[(np.asarray(other) != 0) & (components > 0)])
    return int(count), int(len(touched))


def mask_metrics(reference: np.ndarray, other: np.ndarray, spacing: tuple[float, float, float]) -> MaskMetrics:
    """Dice, HD95 (mm) and lesion detection of two masks on the same grid (spacing z, y, x in mm)."""
    if np.shape(reference) != np.shape(other):
        raise ValueError(f"mask shapes differ: {np.shape(reference)} and {np.shape(other)}")
    lesions, hit = lesion_detection(reference, other)
    d = dice(reference, other)
    return MaskMetrics(
        dice=d, both_empty=math.isnan(d), hd95_mm=hd95(reference, other, spacing), lesions=lesions,
        lesions_detected=hit,
    )


def reference_mean_hu(
    hu: np.ndarray, reference: np.ndarray, *, labels: np.ndarray | None = None, max_hu: float = HEMORRHAGE_HU
) -> float:
    """Mean HU inside the reference without hemorrhage: voxels labelled 4 in ``labels`` and >= max_hu out.

    NaN when no voxel is left (empty reference, or all blood).

    >>> hu = np.array([[[20.0, 30.0, 70.0, 25.0]]]); ref = np.array([[[1, 1, 1, 1]]])
    >>> reference_mean_hu(hu, ref, labels=np.array([[[0, 0, 0, 4]]]))
    25.0
    """
    keep = (np.asarray(reference) != 0) & (np.asarray(hu) < max_hu)
    if labels is not None:
        keep &= np.asarray(labels) != LABELS["hemorrhage"]
    return float(np.asarray(hu)[keep].mean()) if keep.any() else math.nan

