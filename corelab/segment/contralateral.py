"""The contralateral check of a claim: a hypodense infarct is brain darker than the same place across
the midline, so a claimed part that is not darker than its mirror is dropped.

A reader calls a hypodensity by comparing each hemisphere with the other; anatomy that both
hemispheres share (deep white matter, the cortex beside the inner table, beam hardening at the
skull base) is not an infarct however dark it reads. The networks' false claims on normal brain
of scanners and anatomy they never saw lie mostly there, on both sides (README "Status"). This check
is not in the paper; a model's card turns it on (`postprocess.contralateral_gate_hu`, None = off, as
the paper).

Each connected part of the hypodense claim (labels 1-3 together; in-plane 8-connected, slices
joined face to face) is compared with its mirror: the median over its voxels of (mirror HU - HU),
counting only voxels whose mirror position is brain too (the analysis region mirrored). A part is
kept when that median is at least ``gate_hu``, or when under half of its voxels have brain across the
midline (nothing to compare with: kept, not judged). Hemorrhage (label 4) is left as it is: fresh
blood is brighter than its mirror, another contrast and another network.

Pure functions on arrays of the analysis grid (`[z, y, x]`, x left-right).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # SimpleITK only where a mirror is made: labels from stored maps need none
    from corelab.preprocess.midline import Mirror

__all__ = ["PART_STRUCTURE", "MIN_COMPARED_SHARE", "MirrorViews", "contralateral_gate", "mirror_views", "part_contrasts"]

# In-plane 8-neighbours, and the voxel above and below (5 mm slices: a diagonal across slices is far).
PART_STRUCTURE = np.zeros((3, 3, 3), bool)
PART_STRUCTURE[1] = True
PART_STRUCTURE[0, 1, 1] = PART_STRUCTURE[2, 1, 1] = True
# A part is judged only when at least this share of its voxels has brain across the midline.
MIN_COMPARED_SHARE = 0.5


@dataclass(frozen=True, eq=False)
class MirrorViews:
    """One scan seen across its own midline, from one registration.

    mirror: the fitted reflection (`corelab.preprocess.midline.Mirror`; the symmetry guard reuses it).
    hu: each voxel's HU across the midline, air (-1000) outside the grid (the mirror networks' input,
        as `corelab.segment.inputs.mirror_of` makes it).
    region_across: bool, where the mirror position is in the analysis region (brain).
    """

    mirror: Mirror
    hu: np.ndarray
    region_across: np.ndarray


def mirror_views(hu: np.ndarray, region: np.ndarray, spacing: tuple[float, float, float]) -> MirrorViews:
    """The scan's `MirrorViews`: one registration (`corelab.preprocess.midline`, about 3 s)."""
    from corelab.preprocess.midline import estimate_mirror, mirror_image

    hu = np.asarray(hu, dtype=np.float32)
    mirror = estimate_mirror(hu, spacing)
    region_across = mirror_image(np.asarray(region, np.float32), spacing, mirror, default=0.0) > 0.5
    return MirrorViews(mirror, mirror_image(hu, spacing, mirror, default=-1000.0), region_across)


def part_contrasts(claim: np.ndarray, hu: np.ndarray, mirror_hu: np.ndarray,
                   region_across: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The connected parts of ``claim`` and, per part (1..n), the median of (mirror HU - HU) over
    its compared voxels (NaN when it has none) and the share of its voxels compared.

    Returns (parts, contrast_hu, compared_share): parts int32 `[z, y, x]` (0 outside the claim),
    and two float arrays of length n (index i is part i + 1).

    >>> claim = np.zeros((1, 3, 7), bool); claim[0, 1, 1] = claim[0, 1, 5] = True
    >>> hu = np.full((1, 3, 7), 30.0); mirror = hu.copy(); mirror[0, 1, 1] = 36.0
    >>> parts, contrast, share = part_contrasts(claim, hu, mirror, np.ones_like(claim))
    >>> contrast.tolist(), share.tolist()
    ([6.0, 0.0], [1.0, 1.0])
    """
    from scipy import ndimage

    claim = np.asarray(claim, dtype=bool)
    parts, n = ndimage.label(claim, structure=PART_STRUCTURE)
    if n == 0:
        return parts, np.zeros(0), np.zeros(0)
    compared = claim & np.asarray(region_across, dtype=bool)
    counts = np.bincount(parts[claim], minlength=n + 1)[1:].astype(float)
    # Only the compared voxels (a few % of the grid): their part and (mirror HU - HU), sorted by part
    # then value, so each part's median is read off its run (np.median's rule for an even count).
    labels = parts[compared]
    difference = np.asarray(mirror_hu, np.float64)[compared] - np.asarray(hu, np.float64)[compared]
    compared_counts = np.bincount(labels, minlength=n + 1)[1:]
    contrast = np.full(n, np.nan)
    if labels.size:
        ordered = difference[np.lexsort((difference, labels))]
        start = np.concatenate([[0], np.cumsum(compared_counts)[:-1]])
        has = compared_counts > 0
        low = start[has] + (compared_counts[has] - 1) // 2
        high = start[has] + compared_counts[has] // 2
        contrast[has] = (ordered[low] + ordered[high]) / 2.0
    return parts, contrast, compared_counts / counts


def contralateral_gate(labels: np.ndarray, hu: np.ndarray, mirror_hu: np.ndarray, region_across: np.ndarray,
                       gate_hu: float) -> np.ndarray:
    """``labels`` without the hypodense parts (labels 1-3) that are not at least ``gate_hu`` darker
    than their mirror (median over the part; see the module docstring). A new array; hemorrhage and
    background unchanged.

    hu, mirror_hu: HU on the analysis grid and each voxel's value across the midline
    (`corelab.preprocess.midline.mirror_image`); region_across: the analysis region mirrored the same
    way (bool), i.e. where the mirror position is brain.

    >>> labels = np.zeros((1, 3, 7), np.uint8); labels[0, 1, 1] = 2; labels[0, 1, 5] = 1; labels[0, 0, 5] = 4
    >>> hu = np.full((1, 3, 7), 30.0); mirror = hu.copy(); mirror[0, 1, 1] = 36.0
    >>> contralateral_gate(labels, hu, mirror, np.ones((1, 3, 7), bool), 2.0)[0].tolist()
    [[0, 0, 0, 0, 0, 4, 0], [0, 2, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]]
    """
    labels = np.asarray(labels)
    claim = (labels >= 1) & (labels <= 3)
    parts, contrast, share = part_contrasts(claim, hu, mirror_hu, region_across)
    if len(contrast) == 0:
        return labels.copy()
    with np.errstate(invalid="ignore"):
        keep = (share < MIN_COMPARED_SHARE) | (contrast >= gate_hu)
    dropped = np.concatenate([[False], ~keep])[parts]
    return np.where(dropped, 0, labels).astype(labels.dtype)
