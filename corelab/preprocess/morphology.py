"""Binary morphology in millimetres (not voxels), for anisotropic CT grids.

A 7 mm dilation on a 5 mm x 0.45 mm x 0.45 mm grid reaches 1 slice up and down but 15 pixels
in-plane; an exact Euclidean distance map (Maurer) gives that ellipsoidal kernel for free and in
linear time, where a structuring element would have to be rebuilt for every spacing.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError

__all__ = ["dilate_mm", "squared_distance_mm2", "label_components", "slice_convex_hulls"]

# 6-connectivity (faces only), as SimpleITK's ConnectedThreshold grows by default: a region grow
# must not slip diagonally through a one-voxel gap in the skull.
FACES = ndi.generate_binary_structure(3, 1)


def dilate_mm(mask: np.ndarray, spacing: tuple[float, float, float], radius_mm: float) -> np.ndarray:
    """Voxels whose center lies within ``radius_mm`` (mm) of a voxel center of ``mask``.

    spacing is (z, y, x) in mm. Exact Euclidean ball in physical units, whatever the spacing.

    >>> m = np.zeros((3, 1, 9), bool); m[1, 0, 4] = True
    >>> dilate_mm(m, (5.0, 1.0, 1.0), 2.0).astype(int)[:, 0]
    array([[0, 0, 0, 0, 0, 0, 0, 0, 0],
           [0, 0, 1, 1, 1, 1, 1, 0, 0],
           [0, 0, 0, 0, 0, 0, 0, 0, 0]])
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any() or radius_mm <= 0:
        return mask.copy()
    # A small tolerance keeps voxels at exactly the radius (e.g. 7 mm = 14 pixels of 0.5 mm).
    return squared_distance_mm2(mask, spacing) <= radius_mm * radius_mm + 1e-6


def squared_distance_mm2(mask: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Squared distance (mm^2) from each voxel centre to the nearest voxel centre of ``mask`` (0 inside).

    >>> squared_distance_mm2(np.array([[[True, False, False]]]), (5.0, 1.0, 2.0)).tolist()
    [[[0.0, 4.0, 16.0]]]
    """
    image = sitk.GetImageFromArray(np.asarray(mask, dtype=bool).view(np.uint8))
    image.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    squared = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=True, useImageSpacing=True)
    # Inside voxels come out as minus the squared distance to the mask's border; they are at 0.
    return np.maximum(sitk.GetArrayViewFromImage(squared), 0.0)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Face-connected components of ``mask``: (labels int32 [z, y, x], count); 0 is background."""
    labels, count = ndi.label(mask, structure=FACES)
    return labels, int(count)


def slice_convex_hulls(mask: np.ndarray) -> np.ndarray:
    """Each axial slice's convex hull of ``mask`` (pixel centers), filled; slices with < 3 points kept as is.

    Used to close a skull opened by craniectomy: the hull draws a chord across the opening.

    >>> m = np.zeros((1, 5, 5), bool); m[0, 0, 0] = m[0, 0, 4] = m[0, 4, 2] = True
    >>> int(slice_convex_hulls(m).sum())
    13
    """
    mask = np.asarray(mask, dtype=bool)
    out = mask.copy()
    for z in range(mask.shape[0]):
        rows = np.flatnonzero(mask[z].any(axis=1))
        if rows.size == 0:
            continue
        # The row-wise extremes are enough to define the hull and keep Qhull fast.
        sl = mask[z, rows]
        first = sl.argmax(axis=1)
        last = sl.shape[1] - 1 - sl[:, ::-1].argmax(axis=1)
        points = np.unique(np.concatenate([np.c_[rows, first], np.c_[rows, last]]), axis=0).astype(float)
        if len(points) < 3:
            continue
        try:
            hull = ConvexHull(points)
        except QhullError:  # all points on one line: the "hull" is the line itself
            continue
        out[z] |= _fill_convex_polygon(points[hull.vertices], mask.shape[1:])
    return out


def _fill_convex_polygon(vertices: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels (centers) inside a convex polygon given by (row, col) vertices, by scanlines."""
    rows = np.arange(int(np.ceil(vertices[:, 0].min() - 1e-9)), int(np.floor(vertices[:, 0].max() + 1e-9)) + 1)
    start, end = vertices, np.roll(vertices, -1, axis=0)
    lo = np.full(rows.size, np.inf)
    hi = np.full(rows.size, -np.inf)
    for (y1, x1), (y2, x2) in zip(start, end):
        if y1 == y2:
            hit = rows == y1
            lo[hit] = np.minimum(lo[hit], min(x1, x2))
            hi[hit] = np.maximum(hi[hit], max(x1, x2))
            continue
        hit = (rows >= min(y1, y2) - 1e-9) & (rows <= max(y1, y2) + 1e-9)
        x = x1 + (rows[hit] - y1) * (x2 - x1) / (y2 - y1)
        lo[hit] = np.minimum(lo[hit], x)
        hi[hit] = np.maximum(hi[hit], x)
    filled = np.zeros(shape, bool)
    cols = np.arange(shape[1])
    filled[rows] = (cols >= np.ceil(lo - 1e-9)[:, None]) & (cols <= np.floor(hi + 1e-9)[:, None])
    return filled
