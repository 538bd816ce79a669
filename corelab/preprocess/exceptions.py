"""Named preprocessing failures, each with one sentence a core-lab person understands."""

from __future__ import annotations

import numpy as np

from corelab.errors import PreprocessError

__all__ = [
    "AnalysisGridError",
    "EmptyImageError",
    "ConstantImageError",
    "NoBoneError",
    "NotHounsfieldError",
    "SkullNotFoundError",
    "EmptyRegionError",
    "check_hu",
]


class AnalysisGridError(PreprocessError):
    """A scan or mask cannot be put on (or taken off) the 5 mm analysis grid."""


class EmptyImageError(PreprocessError):
    """The image has no voxels."""


class ConstantImageError(PreprocessError):
    """Every voxel has the same value, so there is no skull to find."""


class NoBoneError(PreprocessError):
    """No voxel is above the bone threshold (160 HU), so the skull cannot be located."""


class NotHounsfieldError(PreprocessError):
    """The values do not look like Hounsfield units of a head CT."""


class SkullNotFoundError(PreprocessError):
    """No space enclosed by the skull was found, even after closing openings slice by slice."""


class EmptyRegionError(PreprocessError):
    """The intracranial or analysis region came out empty."""


def check_hu(hu: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """``hu`` as a finite float32 [z, y, x] array, or a named error for inputs no step can use.

    >>> check_hu(np.zeros((1, 2, 2)), (5.0, 1.0, 1.0))  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    corelab.preprocess.exceptions.ConstantImageError: The image has the same value (0 HU) in every voxel, so it holds no head to segment.
    """
    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise AnalysisGridError(f"Expected a 3D [z, y, x] image but got {hu.ndim} dimensions.")
    if hu.size == 0:
        raise EmptyImageError(f"The image has no voxels (shape {hu.shape}).")
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise AnalysisGridError(f"The voxel spacing {tuple(spacing)} mm is not three positive numbers.")
    hu = hu.astype(np.float32, copy=False)
    if not np.isfinite(hu).all():
        hu = np.nan_to_num(hu, nan=-1024.0, posinf=3071.0, neginf=-1024.0)
    low, high = float(hu.min()), float(hu.max())
    if low == high:
        raise ConstantImageError(
            f"The image has the same value ({low:g} HU) in every voxel, so it holds no head to segment."
        )
    return hu
