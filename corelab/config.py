"""The method's constants, as named defaults, resolved once into frozen objects.

Numbers come from Sales Barros et al. 2020 ("Preprocessing", "CNN-based infarct segmentation") and
from ../shared/DESIGN.md. Code takes these objects as parameters; nothing reads a global.
"""

from dataclasses import dataclass, field

__all__ = [
    "GridParams",
    "IntracranialParams",
    "CSFParams",
    "TimingWindow",
    "CLASS_RANGES_HU",
    "LABELS",
    "LABEL_NAMES",
    "Method",
]

# Hypodensity classes by mean HU of the reference infarct without hemorrhage (paper, Table 1 text).
# Intervals are [low, high) except subtle, which is closed: [32, 44].
CLASS_RANGES_HU: dict[str, tuple[float, float]] = {
    "severe": (14.0, 22.0),
    "intermediate": (22.0, 32.0),
    "subtle": (32.0, 44.0),
}

# Label values of masks/<patient_id>.nii.gz (DESIGN "Outputs").
LABELS: dict[str, int] = {"severe": 1, "intermediate": 2, "subtle": 3, "hemorrhage": 4}
LABEL_NAMES: dict[int, str] = {value: name for name, value in LABELS.items()}


@dataclass(frozen=True)
class GridParams:
    """The analysis grid every scan is resampled to before the CNNs.

    slice_mm: axial slice thickness in mm (the paper reconstructs thin slices to 5 mm).
    pixel_mm: in-plane spacing in mm, so a 19x19 patch covers the same 8.6 mm on every scan;
        0.45 mm is the typical pixel of a 512x512 head CT with a 230 mm field of view.
    """

    slice_mm: float = 5.0
    pixel_mm: float = 0.45


@dataclass(frozen=True)
class IntracranialParams:
    """Intracranial region segmentation (paper, "Preprocessing", bullet list)."""

    bone_hu: float = 160.0  # everything above is bone
    dilate_mm: float = 7.0  # closes skull foramina except the foramen magnum; applied twice
    foramen_area_mm2: float = 900.0  # first slice below the largest whose area is smaller


@dataclass(frozen=True)
class CSFParams:
    """CSF segmentation by region growing from seeds near the intracranial centroid."""

    seed_radius_mm: float = 15.0
    lower_hu: float = -5.0
    upper_hu: float = 13.0


@dataclass(frozen=True)
class TimingWindow:
    """Follow-up imaging window, both bounds inclusive: 12 h <= scan_time - onset <= 14 days."""

    min_hours: float = 12.0
    max_hours: float = 14 * 24.0


@dataclass(frozen=True)
class Method:
    """All method parameters in one frozen object, passed down from the CLI.

    precision: the CNNs' arithmetic. "float32" (default) computes the trained networks exactly (to
    rounding). "bfloat16" is an approximation, off unless asked for: inputs and weights rounded to
    8-bit mantissas, about 5x faster on CPUs with AMX or AVX512-BF16 (much slower on CPUs without
    them); its effect on volumes is measured by benchmarks/speed.py.
    """

    grid: GridParams = field(default_factory=GridParams)
    intracranial: IntracranialParams = field(default_factory=IntracranialParams)
    csf: CSFParams = field(default_factory=CSFParams)
    window: TimingWindow = field(default_factory=TimingWindow)
    precision: str = "float32"
