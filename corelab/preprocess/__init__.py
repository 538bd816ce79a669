"""Preprocessing as Sales Barros et al. 2020 did it: analysis grid, intracranial region, CSF.

Pure functions on arrays plus spacing (z, y, x) in mm; the analysis grid keeps physical geometry so
labels map back onto the input scan. Rules are stated in each submodule's docstring:
`grid` (5 mm slabs, 0.45 mm pixels, superior-up, mask majority), `intracranial`, `csf`, `regions`.
"""

from corelab.preprocess.csf import csf_region
from corelab.preprocess.exceptions import (
    AnalysisGridError,
    ConstantImageError,
    EmptyImageError,
    EmptyRegionError,
    NoBoneError,
    NotHounsfieldError,
    SkullNotFoundError,
)
from corelab.preprocess.grid import labels_to_input_grid, mask_to_analysis_grid, to_analysis_grid
from corelab.preprocess.intracranial import Intracranial, foramen_magnum_slice, intracranial_region
from corelab.preprocess.morphology import dilate_mm
from corelab.preprocess.regions import Regions, analysis_region

__all__ = [
    "to_analysis_grid",
    "labels_to_input_grid",
    "mask_to_analysis_grid",
    "Intracranial",
    "intracranial_region",
    "foramen_magnum_slice",
    "csf_region",
    "Regions",
    "analysis_region",
    "dilate_mm",
    "AnalysisGridError",
    "ConstantImageError",
    "EmptyImageError",
    "EmptyRegionError",
    "NoBoneError",
    "NotHounsfieldError",
    "SkullNotFoundError",
]
