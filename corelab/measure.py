"""Volumes and hypodensity class from a label map.

Units: volumes in mL (1 mL = 1000 mm^3), densities in HU.
"""

from __future__ import annotations

import math

from corelab.config import CLASS_RANGES_HU

__all__ = ["hypodensity_class"]


def hypodensity_class(mean_hu: float | None, ranges: dict[str, tuple[float, float]] = CLASS_RANGES_HU) -> str:
    """The paper's hypodensity class of an infarct from its mean HU (hemorrhage voxels excluded).

    severe [14, 22), intermediate [22, 32), subtle [32, 44]; "" when the mean is missing or
    outside every range (e.g. no infarct, or a mean below 14 HU that looks like CSF).

    >>> hypodensity_class(18.0), hypodensity_class(22.0), hypodensity_class(44.0), hypodensity_class(50.0)
    ('severe', 'intermediate', 'subtle', '')
    """
    if mean_hu is None or not math.isfinite(mean_hu):
        return ""
    names = list(ranges)
    for i, name in enumerate(names):
        low, high = ranges[name]
        last = i == len(names) - 1
        if low <= mean_hu < high or (last and mean_hu == high):
            return name
    return ""
