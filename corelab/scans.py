"""Reading follow-up head CTs: the one module that owns SimpleITK I/O and the axis convention.

Axis convention (used everywhere in corelab):
    ``Volume.array`` is a numpy array indexed ``[z, y, x]`` (slice, row, column), exactly as
    ``SimpleITK.GetArrayFromImage`` returns it. ``Volume.spacing`` is in the same order, in mm:
    ``(slice spacing, row spacing, column spacing)``. ``origin`` and ``direction`` are physical
    (LPS, mm) in SimpleITK's own order (x, y, z) and are only needed to write results back in the
    input geometry; step modules never touch them.

Every reader returns a `Volume`; every failure is a `ScanError` subclass with a one-sentence message.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corelab.errors import ScanError

__all__ = ["ScanMeta", "Volume"]


@dataclass(frozen=True)
class ScanMeta:
    """What later steps need to know about where a scan came from.

    source: path that was read (file or DICOM folder).
    modality: DICOM Modality ("CT"), or "" for image files that do not say.
    series_uid: SeriesInstanceUID, or "" for image files.
    acquisition_datetime: AcquisitionDate/Time, else SeriesDate/Time, else StudyDate/Time; None if absent.
    slice_thickness_mm: SliceThickness tag, else the slice spacing.
    kernel: ConvolutionKernel, or "".
    tilt_deg: gantry tilt that was corrected by resampling, in degrees (0 when none).
    notes: human-readable sentences about choices made while reading (series chosen and why,
        resampling of uneven spacing or tilt).
    """

    source: str = ""
    modality: str = ""
    series_uid: str = ""
    acquisition_datetime: dt.datetime | None = None
    slice_thickness_mm: float | None = None
    kernel: str = ""
    tilt_deg: float = 0.0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image on a regular grid.

    array: ``[z, y, x]`` numpy array; float32 Hounsfield units for scans, integer labels for masks.
    spacing: (z, y, x) voxel size in mm.
    origin: physical position of voxel [0, 0, 0], (x, y, z) mm, as SimpleITK.
    direction: 9 direction cosines, row-major, as SimpleITK.
    meta: provenance, see `ScanMeta`.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    meta: ScanMeta = field(default_factory=ScanMeta)

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in mL (1 mL = 1000 mm^3)."""
        return float(np.prod(self.spacing)) / 1000.0
