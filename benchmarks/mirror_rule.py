"""The floor every model must clear by far: a hand rule with no training at all.

Brain (the analysis region) more than 4 HU darker than its mirror across the head's own midline,
after a 3 mm in-plane smoothing, and at most 32 HU, is called infarct. A model that does not beat
this rule by far on a family of scans it never saw has learned its training generator, not
infarcts (README gives the rule's measured scores).

The midline is `corelab.preprocess.midline` (the scan's flip registered onto it); the smoothing is
`corelab.segment.labels.smooth_probabilities` (a Gaussian averaged over region voxels only, so CSF
and skull do not pull the brain down). Comparisons are made only where the mirror position is brain
too.
"""

from __future__ import annotations

import numpy as np

from corelab.preprocess.midline import estimate_mirror, mirror_image
from corelab.segment.labels import smooth_probabilities

__all__ = ["DARKER_HU", "SMOOTHING_MM", "MAX_HU", "mirror_rule"]

DARKER_HU = 4.0  # how much darker than the mirror a voxel must be
SMOOTHING_MM = 3.0  # in-plane Gaussian sigma before the comparison
MAX_HU = 32.0  # brighter voxels are never called infarct (normal grey matter, blood)


def mirror_rule(hu: np.ndarray, spacing: tuple[float, float, float], region: np.ndarray) -> np.ndarray:
    """Bool mask on the analysis grid: region voxels more than `DARKER_HU` below their mirror.

    hu, region: `[z, y, x]` on the analysis grid (x left-right); spacing in mm.
    """
    region = np.asarray(region, dtype=bool)
    smoothed = smooth_probabilities({"hu": np.asarray(hu, np.float32)}, region, SMOOTHING_MM / float(spacing[2]))["hu"]
    mirror = estimate_mirror(hu, spacing)
    across = mirror_image(smoothed, spacing, mirror, default=np.nan)
    region_across = mirror_image(region.astype(np.float32), spacing, mirror, default=0.0) > 0.5
    with np.errstate(invalid="ignore"):
        darker = (across - smoothed) > DARKER_HU
    return region & region_across & darker & (smoothed <= MAX_HU)
