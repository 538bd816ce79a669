"""The method's constants, as named defaults, resolved once into frozen objects.

Numbers come from Sales Barros et al. 2020 ("Preprocessing", "CNN-based infarct segmentation") and
from ../shared/DESIGN.md. Code takes these objects as parameters; nothing reads a global.
"""

import math
from dataclasses import dataclass, field

__all__ = [
    "CLASSES",
    "hypodensity_class",
    "mask_class",
    "NO_INFARCT",
    "UNCLASSIFIED",
    "HEMORRHAGE_HU",
    "OUTPUT_COLUMNS",
    "COLUMN_MEANINGS",
    "SYNTH_RECORD_FILE",
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

CLASSES: tuple[str, ...] = tuple(CLASS_RANGES_HU)  # the three infarct classes, in the paper's order


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


# What a mask's class reads when it is not one of CLASSES: an empty mask, or a mask whose mean HU
# lies outside every class range (or that holds hemorrhage only, so it has no infarct mean HU).
NO_INFARCT = "no infarct"
UNCLASSIFIED = "unclassified"


def mask_class(mean_hu: float | None, *, empty: bool,
               ranges: dict[str, tuple[float, float]] = CLASS_RANGES_HU) -> str:
    """The class written for a mask: `hypodensity_class` of its mean HU, ``NO_INFARCT`` for an
    empty mask, ``UNCLASSIFIED`` for a non-empty mask whose mean HU has no class.

    The same rule names the automated mask's class (volumes.csv ``auto_class``) and the reference
    read's (agreement.xlsx ``reference_class``).

    >>> mask_class(18.0, empty=False), mask_class(None, empty=True), mask_class(9.0, empty=False)
    ('severe', 'no infarct', 'unclassified')
    """
    if empty:
        return NO_INFARCT
    return hypodensity_class(mean_hu, ranges) or UNCLASSIFIED


# Reference voxels at or above this are treated as blood when classifying a reference infarct and
# when labelling hemorrhage for training (the paper excludes hemorrhage before classifying).
HEMORRHAGE_HU = 50.0

# What `corelab synth` writes beside a trial: how it was made (command, seed, size, corelab version);
# `corelab train` records it in the model card.
SYNTH_RECORD_FILE = "synth.json"

# Label values of masks/<patient_id>.nii.gz (DESIGN "Outputs").
LABELS: dict[str, int] = {"severe": 1, "intermediate": 2, "subtle": 3, "hemorrhage": 4}
LABEL_NAMES: dict[int, str] = {value: name for name, value in LABELS.items()}

# "severe [14, 22), intermediate [22, 32), subtle [32, 44] HU", for texts that state the ranges.
_RANGES_TEXT = ", ".join(
    f"{name} [{low:g}, {high:g}{']' if i == len(CLASS_RANGES_HU) - 1 else ')'}"
    for i, (name, (low, high)) in enumerate(CLASS_RANGES_HU.items())
) + " HU"

# Columns of volumes.csv / volumes.xlsx, in order (DESIGN "Outputs"), each with its meaning and unit
# ("" when it has none): the one source for the column list and the workbook's `columns` sheet. The
# manifest's extra columns follow, and one with one of these names is carried as "manifest_<name>".
COLUMN_MEANINGS: dict[str, tuple[str, str]] = {
    "patient_id": ("Patient id as written in the manifest (text, never evaluated).", ""),
    "status": ("ok: segmented; failed: see error; not_run: not processed yet or the run was interrupted.", ""),
    "error": ("Why the row failed or was not run, in one sentence; empty when ok.", ""),
    "flags": ("Warnings about timing, reading, preprocessing and implausible results, one sentence each.", ""),
    "needs_review": ("true when a flag says the volume must be checked before use (interpolated or resampled "
                     "slices, partial coverage, a brain far from the models' reference, an implausible result "
                     "tripping a guard); empty when not segmented.",
                     "true/false"),
    "read_notes": ("What reading did to the scan: series chosen, tilt corrected, slices interpolated or resampled.", ""),
    "onset": ("Stroke onset from the manifest (site local clock).", "date-time"),
    "scan_time": ("Acquisition time: from the manifest, else from the DICOM tags (see scan_time_source).", "date-time"),
    "scan_time_source": ("Where scan_time came from: manifest or dicom.", ""),
    "hours_since_onset": ("scan_time minus onset.", "h"),
    "in_window": ("true when 12 h <= hours_since_onset <= 14 days; empty when unknown.", "true/false"),
    "infarct_ml": ("Infarct volume: all infarct classes plus hemorrhage, as in the paper.", "mL"),
    "severe_ml": ("Severe hypodense infarct volume (label 1).", "mL"),
    "intermediate_ml": ("Intermediate hypodense infarct volume (label 2).", "mL"),
    "subtle_ml": ("Subtle hypodense infarct volume (label 3).", "mL"),
    "hemorrhage_ml": ("Hemorrhage volume (label 4).", "mL"),
    "intracranial_ml": ("Intracranial volume on the analysis grid.", "mL"),
    "infarct_mean_hu": ("Mean density of the infarct, hemorrhage excluded.", "HU"),
    "brain_median_hu": ("Median density of the brain outside CSF (shows a scanner's calibration).", "HU"),
    "auto_class": (f"Class of the automated infarct from infarct_mean_hu by the paper's ranges ({_RANGES_TEXT}); "
                   f"{UNCLASSIFIED}: a mean outside them (or hemorrhage only); {NO_INFARCT}: empty mask; empty "
                   "when not segmented. Earlier corelab versions called this column hypodensity_class.", ""),
    "mask": ("Label map, relative to the results folder.", "path"),
    "qc": ("QC image, relative to the results folder.", "path"),
    "scan": ("The scan as written in the manifest (relative to the manifest's folder or absolute).", "path"),
    "series_uid": ("SeriesInstanceUID of the series segmented.", ""),
    "scan_sha256": ("SHA-256 of the scan's file(s) as read.", ""),
    "model_version": ("Version of the model folder used.", ""),
    "run_id": ("The file in runs/ of the run that computed the row.", ""),
}
OUTPUT_COLUMNS: tuple[str, ...] = tuple(COLUMN_MEANINGS)


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
    """Intracranial region segmentation (paper, "Preprocessing", bullet list; the last two are corelab's, for real skulls)."""

    bone_hu: float = 160.0  # everything above is bone
    dilate_mm: float = 7.0  # closes skull foramina except the foramen magnum; applied twice
    foramen_area_mm2: float = 900.0  # first slice below the largest whose area is smaller
    fat_hu: float = -30.0  # below: fat or air, never intracranial; inside the skull's outline a wall like bone
    open_gap_mm: float = 15.0  # the skull is open (craniectomy) where a gap in its bone is wider than twice this
    # An upright cavity is longer front to back than it is tall (adults about 1.1-1.4 times); one that
    # is not is flagged "Orientation:" (a header that lays the head on its face, back or side).
    min_length_to_height: float = 1.0


@dataclass(frozen=True)
class CSFParams:
    """CSF segmentation by region growing from seeds near the intracranial centroid (the paper), plus
    sulci grown from the surface of the intracranial region and its dark tail (corelab's: the last three)."""

    seed_radius_mm: float = 15.0
    lower_hu: float = -5.0
    upper_hu: float = 13.0
    surface_mm: float = 3.0  # sulcal seeds: in-range voxels this close to the intracranial region's surface
    sulcus_depth_mm: float = 20.0  # the grow from them stays this close to the surface
    dark_floor_hu: float = -30.0  # voxels in [dark_floor_hu, lower_hu) joined to the CSF are CSF too (its noise tail)


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
