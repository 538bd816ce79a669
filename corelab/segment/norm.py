"""HU to network input: the brain reference, the clip window and the scaling, recorded in card.json.

Default (`InputNorm()`): clip to [-20, 100] HU, a window that keeps CSF,
every infarct class (14-44 HU), brain and fresh blood (50-90 HU) apart while bone and air saturate,
then (HU - 40) / 30, so values lie in [-2, 2]. Padding outside the image uses the value of air.
Weights trained by `corelab train` first shift each scan so the median HU of its analysis region is
`BRAIN_REFERENCE_HU` (35); cards without `brain_reference_hu` mean absolute HU (see `InputNorm`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BRAIN_REFERENCE_HU", "brain_median", "InputNorm", "normalize_hu"]

# Median HU of a scan's analysis region that brain-referenced input moves every scan to (about the
# median of a normal brain on a calibrated scanner: 33-35 HU on the synthetic phantoms).
BRAIN_REFERENCE_HU = 35.0


def brain_median(hu: np.ndarray, region: np.ndarray) -> float | None:
    """Median HU of the region's voxels (the brain's level that `InputNorm` shifts to its reference,
    reported per scan as brain_median_hu); None for an empty region.

    >>> brain_median(np.array([[30.0, 36.0, 90.0]]), np.array([[True, True, False]]))
    33.0
    """
    inside = np.asarray(hu)[np.asarray(region, dtype=bool)]
    return float(np.median(inside)) if inside.size else None


@dataclass(frozen=True)
class InputNorm:
    """HU to network input: [shift to the brain reference,] clip to [clip_low_hu, clip_high_hu], then
    (HU - center_hu) / scale_hu.

    brain_reference_hu: None = absolute HU, as the paper. A number: each scan is first shifted by one
        offset so that the median HU of its analysis region (intracranial minus CSF) equals this
        value. Scanners differ in calibration by a few HU and patients' brains by a few more; a subtle
        infarct is only 2-6 HU below the brain it replaced, so the networks then see each brain
        against its own level (the scan's calibration and the patient's grey matter cancel) instead
        of an absolute HU that varies as much as the lesion's contrast. The median is robust to
        lesions: a 300 mL infarct 20 HU below a 1300 mL brain moves it by about 2 HU.

    >>> InputNorm().apply(np.array([-1000.0, 40.0, 70.0, 500.0])).tolist()
    [-2.0, 0.0, 1.0, 2.0]
    >>> brain = np.array([44.0, 44.0, 46.0, 0.0]); region = np.array([True, True, True, False])
    >>> [round(float(v), 3) for v in InputNorm(brain_reference_hu=40.0).apply(brain, region)]  # median 44: -4 HU
    [0.0, 0.0, 0.067, -1.467]
    """

    clip_low_hu: float = -20.0
    clip_high_hu: float = 100.0
    center_hu: float = 40.0
    scale_hu: float = 30.0
    brain_reference_hu: float | None = None

    def apply(self, hu: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
        """Network input from HU; `region` (bool, shaped like `hu`) is needed with a brain reference."""
        hu = np.asarray(hu, dtype=np.float32)
        shift = self.brain_shift(hu, region)
        return normalize_hu(
            hu + np.float32(shift) if shift else hu, clip_low_hu=self.clip_low_hu,
            clip_high_hu=self.clip_high_hu, center_hu=self.center_hu, scale_hu=self.scale_hu,
        )

    def brain_shift(self, hu: np.ndarray, region: np.ndarray | None) -> float:
        """HU added to the scan before clipping: brain_reference_hu minus the region's median HU
        (0 without a brain reference, or when the region is empty)."""
        if self.brain_reference_hu is None:
            return 0.0
        if region is None or np.shape(region) != np.shape(hu):
            raise ValueError("A brain-referenced input needs the analysis region, shaped like the scan.")
        median = brain_median(hu, region)
        return 0.0 if median is None else float(self.brain_reference_hu - median)

    @property
    def pad_value(self) -> float:
        """Network input value used outside the image (air, i.e. the low clip)."""
        return float((self.clip_low_hu - self.center_hu) / self.scale_hu)


def normalize_hu(
    hu: np.ndarray, *, clip_low_hu: float, clip_high_hu: float, center_hu: float, scale_hu: float
) -> np.ndarray:
    """HU array -> float32 network input (clip, shift, scale); shape kept.

    >>> normalize_hu(np.array([0.0, 100.0]), clip_low_hu=0, clip_high_hu=50, center_hu=25, scale_hu=25).tolist()
    [-1.0, 1.0]
    """
    clipped = np.clip(np.asarray(hu, dtype=np.float32), clip_low_hu, clip_high_hu)
    return ((clipped - np.float32(center_hu)) / np.float32(scale_hu)).astype(np.float32)

