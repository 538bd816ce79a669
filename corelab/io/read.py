"""Reading follow-up head CTs: the one module that owns SimpleITK I/O and the axis convention.

Axis convention (used everywhere in corelab):
    ``Volume.array`` is a numpy array indexed ``[z, y, x]`` (slice, row, column), exactly as
    ``SimpleITK.GetArrayFromImage`` returns it. ``Volume.spacing`` is in the same order, in mm:
    ``(slice spacing, row spacing, column spacing)``. ``origin`` and ``direction`` are physical
    (LPS, mm) in SimpleITK's own order (x, y, z) and are only needed to write results back in the
    input geometry; step modules never touch them. Scans read by `read_scan` have z increasing
    towards the top of the head (superior): slice 0 is the lowest.

Every reader returns a `Volume`; every failure is a `ScanError` subclass with a one-sentence message.
The work is split over ``scans_volume`` (dataclasses), ``scans_errors``, ``scans_grid`` (pure
resampling steps), ``scans_series`` (series choice and date-time rules), ``scans_dicom`` and
``scans_files`` (readers); import everything from here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from corelab.io.dicom import read_dicom
from corelab.io.dicom_headers import is_dicom_file
from corelab.io.errors import (
    MaskGridError,
    MaskOutsideScanError,
    ScanNotFoundError,
    UnsupportedFormatError,
)
from corelab.io.files import (
    IMAGE_SUFFIXES,
    as_label_array,
    check_hu_plausible,
    image_suffix,
    read_image_file,
)
from corelab.io.volume import StoredGrid, Volume, from_sitk, same_geometry, to_sitk

__all__ = ["read_scan", "read_mask", "mask_onto", "orient_superior"]


def _read_any(path: str | Path, *, series_uid: str | None, as_labels: bool) -> Volume:
    path = Path(path)
    if not path.exists():
        raise ScanNotFoundError(f"The scan path {path} does not exist.")
    if path.is_dir() or is_dicom_file(path) or path.suffix.lower() in (".dcm", ".ima"):
        return _with_series_order(read_dicom(path, series_uid=series_uid, as_labels=as_labels))
    if image_suffix(path) is None:
        raise UnsupportedFormatError(
            f"{path} is not a format corelab reads (a DICOM folder or file, {', '.join(IMAGE_SUFFIXES)})."
        )
    volume = read_image_file(path, as_labels=as_labels)
    if series_uid is not None:
        # An image file holds one series; the manifest's uid has nothing to select, so say so.
        note = f"series_uid {series_uid} ignored: {path.name} is an image file with a single series."
        volume = replace(volume, meta=replace(volume.meta, notes=volume.meta.notes + (note,)))
    return volume


def _with_series_order(volume: Volume) -> Volume:
    """A DICOM volume that `read_dicom` stacked against the series' own slice order, with that order
    recorded as ``meta.stored_grid``.

    DICOM readers (GDCM, SimpleITK's ImageSeriesReader, dcm2niix) stack slices along the normal
    row x column of ImageOrientationPatient; `read_dicom` stacks them towards superior. On a
    feet-first scan (orientation -1 0 0 0 1 0) that normal points to the feet, so the series' own
    grid starts at the top slice: masks are written back onto it, as for a top-down image file.
    (A multi-frame file is read by SimpleITK in its frame order, which this does not see.)
    """
    direction = np.asarray(volume.direction, dtype=float).reshape(3, 3)
    normal = np.cross(direction[:, 0], direction[:, 1])
    if volume.meta.stored_grid is not None or float(normal @ direction[:, 2]) >= 0:
        return volume
    top = np.asarray(volume.origin, dtype=float) + (volume.array.shape[0] - 1) * volume.spacing[0] * direction[:, 2]
    flipped = direction.copy()
    flipped[:, 2] *= -1.0
    stored = StoredGrid(
        shape=tuple(int(n) for n in volume.array.shape),
        spacing=volume.spacing,
        origin=tuple(float(v) for v in top),
        direction=tuple(float(v) for v in flipped.ravel()),
    )
    note = ("The series' own slice order (along its ImageOrientationPatient normal, e.g. top-down on a feet-first"
            " scan) was reversed on reading; masks are written back in the series' order.")
    return replace(volume, meta=replace(volume.meta, notes=volume.meta.notes + (note,), stored_grid=stored))


def orient_superior(volume: Volume) -> Volume:
    """The same physical image with array axis 0 (z) running towards superior.

    An axial stack stored top-down is flipped along z (rows and columns untouched); a sagittal or
    coronal stack is reoriented to LPS (x to the left, y posterior, z superior). No interpolation:
    only axis flips and permutations, so HU values are unchanged. Physical positions are unchanged.
    """
    direction = np.asarray(volume.direction, dtype=float).reshape(3, 3)
    superior = np.abs(direction[2])  # how much each array axis (x, y, z order) runs head-foot
    if superior[2] >= superior.max() and direction[2, 2] > 0:
        return volume
    if superior[2] >= superior.max():
        image = sitk.Flip(to_sitk(volume), [False, False, True])
        note = "Slices were stored top-down; flipped so z runs from the lowest slice upwards."
    else:
        image = sitk.DICOMOrient(to_sitk(volume), "LPS")
        note = "The stack is not axial; reoriented (axes permuted, no interpolation) so z runs superior."
    stored = volume.meta.stored_grid or StoredGrid(
        shape=tuple(int(n) for n in volume.array.shape),
        spacing=volume.spacing,
        origin=volume.origin,
        direction=volume.direction,
    )
    return from_sitk(image, replace(volume.meta, notes=volume.meta.notes + (note,), stored_grid=stored))


def read_scan(path: str | Path, *, series_uid: str | None = None) -> Volume:
    """Read a follow-up head CT into a float32 HU `Volume` on an even, orthogonal grid.

    path: a DICOM folder (searched recursively; one file per slice or multi-frame), one DICOM file,
        or an image file (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd).
    series_uid: the manifest's series_uid; without it the series is chosen by the rules in
        `corelab.io.series` (CT, 3D, axial, full coverage, soft kernel, most slices) and the
        choice is written to ``meta.notes``.

    Returns array [z, y, x] in HU, z increasing superior; spacing (z, y, x) mm. A gantry tilt is
    removed by shifting slices in-plane (meta.tilt_deg records it); uneven gaps up to one missing
    slice are interpolated linearly, larger ones raise `SliceGapError`.
    HU checks: DICOM needs RescaleIntercept/Slope; every scan must hold some value below
    ``AIR_BELOW_HU`` (-500 HU: the air around a head), else `NoHUCalibrationError`.

    Example::

        volume = read_scan("site3/P017/CT")
        volume.array.shape, volume.spacing, volume.meta.acquisition_datetime
    """
    volume = orient_superior(_read_any(path, series_uid=series_uid, as_labels=False))
    check_hu_plausible(volume.array, source=str(path))
    if volume.meta.slice_thickness_mm is None:
        volume = replace(volume, meta=replace(volume.meta, slice_thickness_mm=float(volume.spacing[0])))
    return volume


def _overlaps(mask: Volume, like: Volume) -> bool:
    # Corners of the mask's voxel extent (half a voxel beyond the centres) in like's index space.
    image, target = to_sitk(Volume(array=np.zeros((1, 1, 1), np.uint8), spacing=mask.spacing,
                                   origin=mask.origin, direction=mask.direction)), to_sitk(like)
    size = mask.array.shape[::-1]
    corners = []
    for cx in (-0.5, size[0] - 0.5):
        for cy in (-0.5, size[1] - 0.5):
            for cz in (-0.5, size[2] - 0.5):
                point = image.TransformContinuousIndexToPhysicalPoint((cx, cy, cz))
                corners.append(target.TransformPhysicalPointToContinuousIndex(point))
    corners = np.asarray(corners)
    upper = np.asarray(like.array.shape[::-1], dtype=float) - 0.5
    return bool(np.all(corners.max(axis=0) >= -0.5) and np.all(corners.min(axis=0) <= upper))


def read_mask(path: str | Path, *, like: Volume | None = None) -> Volume:
    """Read a label/reference mask (any format `read_scan` takes) as an integer `Volume`.

    No HU checks; values must be whole numbers (uint8 when 0..255, else int32). With ``like`` (the
    scan) and a different geometry, the mask is resampled nearest-neighbour onto ``like``'s grid
    (labels are never blended); a mask whose extent does not overlap ``like`` at all raises
    `MaskOutsideScanError`. Without ``like`` the mask keeps its own grid, z running superior.

    Example::

        scan = read_scan("P017/CT"); mask = read_mask("reads/P017.nii.gz", like=scan)
        int((mask.array > 0).sum()) * scan.voxel_ml   # infarct mL
    """
    mask = orient_superior(_read_any(path, series_uid=None, as_labels=True))
    mask = replace(mask, array=as_label_array(mask.array, source=str(path)))
    return mask if like is None else mask_onto(mask, like)


def mask_onto(mask: Volume, like: Volume) -> Volume:
    """A label mask on ``like``'s grid: unchanged when the geometry is the same, else resampled
    nearest neighbour (labels are never blended). Raises `MaskOutsideScanError` when the mask does
    not overlap ``like`` at all, and `MaskGridError` when it has ``like``'s voxel counts but other
    voxel sizes (mm): a mask saved without its scan's geometry (e.g. from an array with 1 mm
    default spacing), which resampling would silently shrink or stretch into a wrong volume.
    """
    if same_geometry(mask, like):
        return replace(mask, spacing=like.spacing, origin=like.origin, direction=like.direction)
    if mask.array.shape == like.array.shape and not np.allclose(mask.spacing, like.spacing, rtol=0.01):
        shown = lambda spacing: " x ".join(f"{s:g}" for s in spacing)  # noqa: E731
        raise MaskGridError(
            f"The mask {mask.meta.source or ''} has the scan's {' x '.join(map(str, like.array.shape))} voxels"
            f" but voxels of {shown(mask.spacing)} mm instead of {shown(like.spacing)} mm, so it was probably"
            " saved without the scan's geometry and cannot be placed on the scan."
        )
    if not _overlaps(mask, like):
        raise MaskOutsideScanError(
            f"The mask {mask.meta.source or ''} lies entirely outside the scan it belongs to; "
            "it cannot be placed on it."
        )
    resampled = sitk.Resample(
        to_sitk(mask), to_sitk(Volume(array=np.zeros(like.array.shape, np.uint8), spacing=like.spacing,
                                      origin=like.origin, direction=like.direction)),
        sitk.Transform(), sitk.sitkNearestNeighbor, 0.0,
    )
    note = "Resampled (nearest neighbour) onto the scan's grid, whose geometry differs."
    return Volume(
        array=sitk.GetArrayFromImage(resampled).astype(mask.array.dtype, copy=False),
        spacing=like.spacing,
        origin=like.origin,
        direction=like.direction,
        meta=replace(mask.meta, notes=mask.meta.notes + (note,)),
    )
