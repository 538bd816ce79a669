"""CSF as in Sales Barros et al. 2020: seeds near the intracranial centroid, grown within -5..13 HU."""

from __future__ import annotations

import numpy as np

from corelab.config import CSFParams
from corelab.preprocess.exceptions import AnalysisGridError, EmptyRegionError, check_hu
from corelab.preprocess.morphology import label_components

__all__ = ["csf_region", "csf_seeds"]


def csf_region(
    hu: np.ndarray, spacing: tuple[float, float, float], intracranial: np.ndarray, params: CSFParams = CSFParams()
) -> np.ndarray:
    """CSF mask (bool [z, y, x]): voxels in [lower_hu, upper_hu] HU face-connected to a seed, inside ``intracranial``.

    Seeds are the voxels within ``seed_radius_mm`` (mm) of the intracranial region's centroid that are in
    the HU range. The grow never leaves the intracranial region (it is the same as SimpleITK's
    ConnectedThreshold, face connectivity, on the image with everything outside the region set out of
    range). No seed gives an empty mask; `analysis_region` flags it.

    >>> hu = np.full((3, 21, 21), 30.0); hu[:, 9:12, 8:14] = 5.0; hu[:, 0, :] = 5.0
    >>> int(csf_region(hu, (5.0, 2.0, 2.0), np.ones(hu.shape, bool)).sum())  # the 3x3x6 pool; the rim 20 mm away is no seed
    54
    """
    hu = check_hu(hu, spacing)
    intracranial = np.asarray(intracranial, dtype=bool)
    if intracranial.shape != hu.shape:
        raise AnalysisGridError(f"The intracranial mask has shape {intracranial.shape} but the scan has {hu.shape}.")
    if not intracranial.any():
        raise EmptyRegionError("The intracranial region is empty, so there is no CSF to look for.")
    in_range = (hu >= params.lower_hu) & (hu <= params.upper_hu) & intracranial
    seeds = csf_seeds(in_range, intracranial, spacing, radius_mm=params.seed_radius_mm)
    if not seeds.any():
        return np.zeros(hu.shape, bool)
    labels, _ = label_components(in_range)
    return np.isin(labels, np.unique(labels[seeds]))


def csf_seeds(
    in_range: np.ndarray, intracranial: np.ndarray, spacing: tuple[float, float, float], *, radius_mm: float
) -> np.ndarray:
    """``in_range`` voxels whose centres lie within ``radius_mm`` (mm) of the centroid of ``intracranial``."""
    centroid = np.argwhere(intracranial).mean(axis=0)
    sp = np.asarray(spacing, float)
    lo = np.maximum(np.floor(centroid - radius_mm / sp), 0).astype(int)
    hi = np.minimum(np.ceil(centroid + radius_mm / sp) + 1, in_range.shape).astype(int)
    zz, yy, xx = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    dist2 = ((zz - centroid[0]) * sp[0]) ** 2 + ((yy - centroid[1]) * sp[1]) ** 2 + ((xx - centroid[2]) * sp[2]) ** 2
    seeds = np.zeros(in_range.shape, bool)
    box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
    seeds[box] = in_range[box] & (dist2 <= radius_mm**2)
    return seeds
