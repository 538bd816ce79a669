"""The `Volume` dataclass and its SimpleITK conversions (see `corelab.io` for the axis convention).

Split out of `corelab.io` so the DICOM and image-file readers can build volumes without a circular
import; import these names from `corelab.io`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from corelab.errors import ScanError

__all__ = ["StoredGrid", "ScanMeta", "Volume", "to_sitk", "from_sitk", "write_image", "on_stored_grid", "same_geometry"]


@dataclass(frozen=True)
class StoredGrid:
    """The grid of the image as stored on disk, when reading reordered its axes.

    shape and spacing are (z, y, x) as in `Volume`; origin and direction as SimpleITK. Outputs that
    must lie "in the geometry of the input scan" (masks) are written back onto this grid.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]


@dataclass(frozen=True)
class ScanMeta:
    """What later steps need to know about where a scan came from.

    source: path that was read (file or DICOM folder).
    modality: DICOM Modality ("CT"), or "" for image files, which do not say.
    series_uid: SeriesInstanceUID, or "" for image files.
    frame_uid: FrameOfReferenceUID (the patient coordinate system of the series), or "" when absent.
    acquisition_datetime: AcquisitionDate/Time, else SeriesDate/Time, else StudyDate/Time; None if absent.
    slice_thickness_mm: SliceThickness tag, else the slice spacing.
    kernel: ConvolutionKernel, or "".
    tilt_deg: gantry tilt that was corrected by shifting slices in-plane, in degrees, as an absolute
        angle measured from the slice positions (0 when the stack needed no correction).
    notes: human-readable sentences about choices made while reading (series chosen and why,
        resampling of uneven spacing or tilt).
    interpolated_slices: slices of the even grid that lie in a gap where the series had no slice
        (a missing slice), filled by interpolation between their neighbours; 0 when none.
    resampled_spacing: True when uneven slice gaps were resampled onto an even grid (every slice
        between the first and last is then interpolated, not only those in a gap).
    slice_gaps_mm: (smallest, largest) gap between the measured slices when they were resampled,
        mm; None when the stack was even.
    stored_grid: the file's own grid when reading flipped or permuted axes (see `orient_superior`),
        else None; `write_image` writes onto it so masks match the input file voxel for voxel.
    source_files: the DICOM files of the series that was read (paths as text, sorted), so that a
        DICOM SEG can reference its instances (`corelab.io.seg`); () for image files.
    """

    source: str = ""
    modality: str = ""
    series_uid: str = ""
    frame_uid: str = ""
    acquisition_datetime: dt.datetime | None = None
    slice_thickness_mm: float | None = None
    kernel: str = ""
    tilt_deg: float = 0.0
    notes: tuple[str, ...] = ()
    stored_grid: StoredGrid | None = None
    interpolated_slices: int = 0
    resampled_spacing: bool = False
    slice_gaps_mm: tuple[float, float] | None = None
    source_files: tuple[str, ...] = ()


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


def to_sitk(volume: Volume) -> sitk.Image:
    """The volume as a SimpleITK image with its spacing, origin and direction."""
    image = sitk.GetImageFromArray(volume.array)
    image.SetSpacing(tuple(float(s) for s in volume.spacing[::-1]))
    image.SetOrigin(tuple(float(o) for o in volume.origin))
    image.SetDirection(tuple(float(d) for d in volume.direction))
    return image


def from_sitk(image: sitk.Image, meta: ScanMeta | None = None) -> Volume:
    """A `Volume` from a 3D SimpleITK image (array copied, axes [z, y, x])."""
    if image.GetDimension() != 3:
        raise ScanError(f"Expected a 3D image but got a {image.GetDimension()}D one.")
    return Volume(
        array=sitk.GetArrayFromImage(image),
        spacing=tuple(float(s) for s in image.GetSpacing()[::-1]),
        origin=tuple(float(o) for o in image.GetOrigin()),
        direction=tuple(float(d) for d in image.GetDirection()),
        meta=meta if meta is not None else ScanMeta(),
    )


def same_geometry(a: Volume, b: Volume, *, tol_mm: float = 1e-3) -> bool:
    """True when both volumes have the same shape, spacing, origin and direction (within tol_mm)."""
    return (
        a.array.shape == b.array.shape
        and np.allclose(a.spacing, b.spacing, atol=tol_mm)
        and np.allclose(a.origin, b.origin, atol=tol_mm)
        and np.allclose(a.direction, b.direction, atol=1e-6)
    )


def write_image(array: np.ndarray, like: Volume, path: str | Path) -> None:
    """Write ``array`` ([z, y, x], same shape as ``like.array``) in ``like``'s geometry.

    The format follows the suffix (.nii.gz, .nii, .nrrd, .mha); files are compressed. When ``like``
    was reoriented on reading (``like.meta.stored_grid``), the array is put back onto the stored grid
    (nearest neighbour over identical voxel centres, so values are unchanged): a mask then overlays
    its input file voxel for voxel.
    """
    if array.shape != like.array.shape:
        raise ValueError(f"array shape {array.shape} differs from the reference shape {like.array.shape}")
    image = to_sitk(Volume(array=array, spacing=like.spacing, origin=like.origin, direction=like.direction))
    sitk.WriteImage(_onto_stored(image, like.meta.stored_grid), str(path), useCompression=True)


def on_stored_grid(volume: Volume) -> Volume:
    """``volume`` on the input file's own grid (``volume.meta.stored_grid``), as `write_image` writes
    it: the same voxels, only flipped or permuted back (nearest neighbour over identical voxel
    centres). Unchanged when reading did not reorient the input."""
    if volume.meta.stored_grid is None:
        return volume
    image = _onto_stored(to_sitk(volume), volume.meta.stored_grid)
    return from_sitk(image, replace(volume.meta, stored_grid=None))


def _onto_stored(image: sitk.Image, stored: StoredGrid | None) -> sitk.Image:
    if stored is None:
        return image
    reference = sitk.Image([int(n) for n in stored.shape[::-1]], image.GetPixelID())
    reference.SetSpacing(tuple(float(v) for v in stored.spacing[::-1]))
    reference.SetOrigin(tuple(float(v) for v in stored.origin))
    reference.SetDirection(tuple(float(v) for v in stored.direction))
    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0)
