"""The analysis region: intracranial minus CSF (minus bone), where CNNs train, infer and are scored."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corelab.config import Method
from corelab.preprocess.csf import csf_region
from corelab.preprocess.exceptions import EmptyRegionError
from corelab.preprocess.intracranial import intracranial_region

__all__ = ["Regions", "analysis_region"]

CSF_LEAK_FRACTION = 0.25  # CSF above this share of the intracranial region is not plausible


@dataclass(frozen=True)
class Regions:
    """Masks on the analysis grid, all bool [z, y, x].

    intracranial: inside the skull, above the foramen magnum, bone (HU > 160) excluded.
    csf: CSF grown from the centroid seeds and from the sulci at the surface (`csf_region`), inside ``intracranial``.
    region: ``intracranial & ~csf`` without bone (HU > 160): the voxels the CNNs see and are scored on.
    foramen_slice: z index of the foramen magnum slice, or None when none was found.
    flags: short sentences for the QC reader (empty when nothing looked unusual).
    """

    intracranial: np.ndarray
    csf: np.ndarray
    region: np.ndarray
    foramen_slice: int | None
    flags: tuple[str, ...]


def analysis_region(hu: np.ndarray, spacing: tuple[float, float, float], method: Method = Method()) -> Regions:
    """Intracranial region, CSF and the analysis region of a head CT on the analysis grid.

    hu: [z, y, x] HU (from `to_analysis_grid`), spacing (z, y, x) in mm.
    Raises a `PreprocessError` subclass when no usable region exists (never returns an empty one).

    >>> z, y, x = np.ogrid[-40:41:5, -60:61:2, -60:61:2]
    >>> r = np.sqrt(x**2 + y**2 + z**2)
    >>> head = np.where(r < 12, 5.0, np.where(r < 40, 30.0, np.where(r < 46, 1000.0, -1000.0)))
    >>> regions = analysis_region(head, (5.0, 2.0, 2.0))
    >>> int(regions.csf.sum()), int((r < 12).sum())  # every CSF voxel of the ball, nothing else
    (377, 377)
    """
    intracranial = intracranial_region(hu, spacing, method.intracranial)
    csf = csf_region(hu, spacing, intracranial.mask, method.csf)
    flags = list(intracranial.flags)
    if not csf.any():
        flags.append(
            f"No CSF seed ({method.csf.lower_hu:g} to {method.csf.upper_hu:g} HU) lies within "
            f"{method.csf.seed_radius_mm:g} mm of the intracranial centroid; no CSF was removed."
        )
    elif csf.sum() > CSF_LEAK_FRACTION * intracranial.mask.sum():
        flags.append(
            f"CSF covers {csf.sum() / intracranial.mask.sum():.0%} of the intracranial region; "
            "check for a large hypodense lesion or a scan not in Hounsfield units."
        )
    # The intracranial mask counts partial-volume slabs over 160 HU for its volume; they are not brain to analyse.
    region = intracranial.mask & ~csf & (np.asarray(hu) <= method.intracranial.bone_hu)
    if not region.any():
        raise EmptyRegionError("Nothing is left for analysis once CSF is removed from the intracranial region.")
    return Regions(
        intracranial=intracranial.mask, csf=csf, region=region, foramen_slice=intracranial.foramen_slice, flags=tuple(flags)
    )
