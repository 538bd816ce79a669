"""DICOM RTSTRUCT reads as label masks: contours rasterised onto the scan they were drawn on.

An RT Structure Set holds no voxels: each ROI is a set of closed planar contours, polygons in
patient coordinates (LPS, mm). They become voxels by one stated rule, the one most planning systems
and converters (plastimatch, dcmrtstruct2nii) use:

- every CLOSED_PLANAR contour lies on the scan slice nearest to it (its points' mean position along
  the slice axis, rounded half up); a contour beyond the first or last slice by more than half a
  slice is left out, and so is one not parallel to the slices (a point more than half a slice from
  the contour's mean depth: drawn on another reformat) and one of another geometric type (POINT,
  OPEN_PLANAR), which encloses nothing; the read's note counts what was left out;
- on its slice a voxel is inside when its centre is inside the polygon or on its edge (matplotlib's
  point-in-polygon test plus an edge test, so the drawing direction does not matter; a polygon
  along voxel edges takes exactly the voxels it encloses, one through voxel centres takes them too);
- the contours of one ROI on one plane combine by the even-odd rule: a contour inside another is a
  hole (a ring of infarct around spared tissue is drawn as two contours); contours of several
  drawing planes that fall on one scan slice (drawn on thinner slices than the scan's) add up;
- ROIs are then united as labels (`corelab.io.reference` decides which ROIs and which label);
- a structure set is drawn only onto a scan of its frame of reference (FrameOfReferenceUID): its
  points are patient coordinates of that frame, valid on every series of it (a read contoured on
  the thin-slice reconstruction of the same acquisition draws onto the 5 mm series), and
  meaningless on another (another acquisition or position), where they would land in the wrong place
  without any contour falling off the slices.

The grid is the scan's as corelab reads it (z superior; a gantry tilt corrected by shifting slices),
so contours drawn on the tilted source slices keep their patient positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from matplotlib.path import Path as Polygon
from pydicom.errors import InvalidDicomError

from corelab.io.errors import ScanError
from corelab.io.volume import Volume

__all__ = ["RTSTRUCT", "RTStructReadError", "RoiContours", "StructureSet", "Rasterised", "read_structure_set",
           "rasterise"]

RTSTRUCT = "RTSTRUCT"
_CLOSED = "CLOSED_PLANAR"


class RTStructReadError(ScanError):
    """A file is not an RT Structure Set corelab can draw onto the scan."""


@dataclass(frozen=True)
class RoiContours:
    """One ROI of a structure set: its number, name, RT ROI Interpreted Type ("" when absent) and
    closed planar contours, each an (n, 3) array of patient positions (x, y, z mm)."""

    number: int
    name: str
    interpreted_type: str
    contours: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class StructureSet:
    """An RTSTRUCT file as corelab uses it: its ROIs and the frames of reference its contours are in
    (the FrameOfReferenceUIDs of ReferencedFrameOfReferenceSequence and of StructureSetROISequence's
    ReferencedFrameOfReferenceUID; () when it names none)."""

    rois: tuple[RoiContours, ...]
    frame_uids: tuple[str, ...]


def _frames(ds) -> tuple[str, ...]:
    listed = [frame.get("FrameOfReferenceUID", "") for frame in ds.get("ReferencedFrameOfReferenceSequence", [])]
    listed += [roi.get("ReferencedFrameOfReferenceUID", "") for roi in ds.get("StructureSetROISequence", [])]
    return tuple(dict.fromkeys(str(uid) for uid in listed if uid))


def read_structure_set(path: str | Path) -> StructureSet:
    """The ROIs of an RTSTRUCT file, with their closed planar contours (other contour types left
    out), and the frames of reference it names."""
    try:
        ds = pydicom.dcmread(str(path))
    except (OSError, InvalidDicomError, EOFError, ValueError, TypeError):
        raise RTStructReadError(f"The file {path} is not a readable DICOM file.") from None
    if str(ds.get("Modality", "")) != RTSTRUCT:
        raise RTStructReadError(f"The file {path} is not an RT Structure Set (its modality is {ds.get('Modality')}).")
    names = {int(item.ROINumber): str(item.get("ROIName", "")) for item in ds.get("StructureSetROISequence", [])}
    kinds = {int(item.ReferencedROINumber): str(item.get("RTROIInterpretedType", ""))
             for item in ds.get("RTROIObservationsSequence", [])}
    rois = []
    try:
        for item in ds.get("ROIContourSequence", []):
            number = int(item.ReferencedROINumber)
            contours = tuple(
                np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
                for contour in item.get("ContourSequence", [])
                if str(contour.get("ContourGeometricType", "")) == _CLOSED and len(contour.ContourData) >= 9
            )
            rois.append(RoiContours(number, names.get(number, ""), kinds.get(number, ""), contours))
        frame_uids = _frames(ds)
    except (AttributeError, ValueError, TypeError):
        raise RTStructReadError(f"The contours of the RT Structure Set {path} cannot be read.") from None
    return StructureSet(tuple(rois), frame_uids)


@dataclass(frozen=True)
class Rasterised:
    """`rasterise`'s result: the mask, and how many contours were left out because they lie more than
    half a slice from every slice (``off_slices``) or are not parallel to the slices (``oblique``:
    their points more than half a slice from their own mean depth)."""

    mask: np.ndarray
    off_slices: int
    oblique: int


def _on_edge(points: np.ndarray, polygon: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Which ``points`` (m, 2) lie on an edge of the closed ``polygon`` (n, 2), within ``tol``."""
    a, b = polygon, np.roll(polygon, -1, axis=0)
    ab = b - a
    length2 = np.maximum((ab ** 2).sum(axis=1), 1e-12)
    on = np.zeros(len(points), dtype=bool)
    for start, step, l2 in zip(a, ab, length2):
        t = np.clip(((points - start) @ step) / l2, 0.0, 1.0)
        on |= np.hypot(*(points - (start + t[:, None] * step)).T) <= tol
    return on


def rasterise(contours: tuple[np.ndarray, ...], grid: Volume) -> Rasterised:
    """A boolean mask on ``grid`` of the contours (module rule); a voxel centre on a contour's edge
    counts as inside that contour, whichever way the contour is drawn."""
    nz, ny, nx = grid.array.shape
    planes: dict[tuple[int, int], np.ndarray] = {}  # (slice, the contour's own plane) -> even-odd fill
    off_slices = oblique = 0
    centres = np.stack(np.meshgrid(np.arange(nx), np.arange(ny)), axis=-1).reshape(-1, 2).astype(float)
    # physical = origin + direction @ diag(spacing) @ index, SimpleITK's convention with (x, y, z) order
    # (`Volume.spacing` is (z, y, x)), for every point at once
    to_index = np.linalg.inv(np.asarray(grid.direction, float).reshape(3, 3) @ np.diag(grid.spacing[::-1]))
    origin = np.asarray(grid.origin, float)
    for points in contours:
        index = (np.asarray(points, float).reshape(-1, 3) - origin) @ to_index.T
        depth = float(index[:, 2].mean())
        if np.abs(index[:, 2] - depth).max() > 0.5:
            oblique += 1
            continue
        k = int(np.floor(depth + 0.5))  # half-way between two slices: the upper one, always
        if not 0 <= k < nz:
            off_slices += 1
            continue
        outline = index[:, :2]
        lo, hi = np.floor(outline.min(axis=0)), np.ceil(outline.max(axis=0))
        near = np.flatnonzero(np.all((centres >= lo) & (centres <= hi), axis=1))
        inside = np.zeros(ny * nx, dtype=bool)
        inside[near] = Polygon(outline).contains_points(centres[near]) | _on_edge(centres[near], outline)
        plane = planes.setdefault((k, int(np.floor(depth * 100 + 0.5))), np.zeros((ny, nx), dtype=bool))
        plane ^= inside.reshape(ny, nx)  # even-odd: a contour inside another on its plane is a hole
    mask = np.zeros(grid.array.shape, dtype=bool)
    for (k, _), plane in planes.items():
        mask[k] |= plane  # contours from several drawing planes nearest one slice add up
    return Rasterised(mask, off_slices, oblique)
