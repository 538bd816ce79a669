"""Simulated manual reads: the truth as a human reader would delineate it.

A reader traces the hypodense area (haemorrhage included) on each slice: the border wanders by a
pixel or two, small holes are filled, and a small satellite is sometimes missed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from corelab.synth.fields import smooth_noise

__all__ = ["manual_read"]

_IN_PLANE = np.zeros((3, 3, 3), bool)  # 4-connected cross in the slice: readers draw slice by slice
_IN_PLANE[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]


def manual_read(
    labels: np.ndarray,
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
    *,
    bias: float = 0.0,
    max_shift_px: int = 2,
    miss_satellite: float = 0.5,
    satellite_ml: float = 2.0,
) -> np.ndarray:
    """A binary manual mask (uint8 0/1) from truth ``labels`` (nonzero = infarct incl. haemorrhage).

    hu: the scan (HU), so a reader's border never spills into bone or air (kept within -5..90 HU).
    bias: > 0 a generous reader (grows more than shrinks), < 0 a tight one; about -1..1.
    max_shift_px: largest border disagreement in pixels, in plane.
    miss_satellite: chance of missing each separate component smaller than ``satellite_ml`` (mL).

    >>> lab = np.zeros((1, 20, 20), np.uint8); lab[0, 5:15, 5:15] = 2; lab[0, 9, 9] = 0
    >>> m = manual_read(lab, np.full(lab.shape, 30.0), (5.0, 1.0, 1.0), np.random.default_rng(0), max_shift_px=0)
    >>> int(m.sum())  # the one-pixel hole is filled
    100
    """
    truth = labels > 0
    out = truth.copy()
    if not truth.any():
        return out.astype(np.uint8)
    field = smooth_noise(rng, truth.shape, spacing, corr_mm=12.0) + bias
    tissue = (hu > -5) & (hu < 90)
    for k in range(1, max_shift_px + 1):
        grown = ndi.binary_dilation(truth, _IN_PLANE, iterations=k) & tissue
        shrunk = ndi.binary_erosion(truth, _IN_PLANE, iterations=k)
        out |= grown & (field > 0.4 * k)
        out &= shrunk | (field > -0.4 * k)
    for z in range(out.shape[0]):
        out[z] = ndi.binary_fill_holes(out[z])
    comp, n = ndi.label(out)
    if n > 1:
        sizes = ndi.sum(out, comp, index=np.arange(1, n + 1))
        voxel_ml = float(np.prod(spacing)) / 1000.0
        keep = int(np.argmax(sizes)) + 1
        for i, size in enumerate(sizes, start=1):
            if i != keep and size * voxel_ml < satellite_ml and rng.random() < miss_satellite:
                out[comp == i] = False
    return out.astype(np.uint8)
