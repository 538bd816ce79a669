"""DICOM RTSTRUCT reads as label masks: contours rasterised onto the scan they were drawn on.

An RT Structure Set holds no voxels: each ROI is a set of closed planar contours, polygons in
patient coordinates (LPS, mm). They become voxels by one stated rule, the one most planning systems
and converters (plastimatch, dcmrtstruct2nii) use:

- every CLOSED_PLANAR contour lies on the scan slice nearest to it (its points' mean position along
  the slice axis, rounded); a contour more than half a slice from every slice is left out, and so
  is one of another geometric type (POINT, OPEN_PLANAR), which encloses nothing;
- on its slice a voxel is inside when its centre is inside the polygon (matplotlib's
  point-in-polygon test; a polygon drawn along voxel edges takes exactly the voxels it encloses);
- the contours of one ROI on one plane combine by the even-odd rule: a contour inside another is a
  hole (a ring of infarct around spared tissue is drawn as two contours); contours of several
  drawing planes that fall on one scan slice (drawn on thinner slices than the scan's) add up;
- ROIs are then united as labels (`corelab.io.reference` decides which ROIs and which label).

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
from corelab.io.volume import Volume, to_sitk

__all__ = ["RTSTRUCT", "RTStructReadError", "RoiContours", "read_rois", "rasterise"]

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


def read_rois(path: str | Path) -> list[RoiContours]:
    """The ROIs of an RTSTRUCT file, with their closed planar contours (other contour types left out)."""
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
    except (AttributeError, ValueError, TypeError):
        raise RTStructReadError(f"The contours of the RT Structure Set {path} cannot be read.") from None
    return rois


def rasterise(contours: tuple[np.ndarray, ...], grid: Volume) -> tuple[np.ndarray, int]:
    """A boolean mask on ``grid`` of the contours (module rule), and how many contours were left
    out because they lie more than half a slice from every slice of the grid."""
    image = to_sitk(Volume(array=np.zeros((1, 1, 1), np.uint8), spacing=grid.spacing, origin=grid.origin,
                           direction=grid.direction))
    nz, ny, nx = grid.array.shape
    planes: dict[tuple[int, float], np.ndarray] = {}  # (slice, the contour's own plane) -> even-odd fill
    outside = 0
    centres = np.stack(np.meshgrid(np.arange(nx), np.arange(ny)), axis=-1).reshape(-1, 2).astype(float)
    for points in contours:
        index = np.array([image.TransformPhysicalPointToContinuousIndex(tuple(p)) for p in points])
        depth = float(index[:, 2].mean())
        k = int(np.rint(depth))
        if not 0 <= k < nz or abs(depth - k) > 0.5:
            outside += 1
            continue
        polygon = Polygon(index[:, :2])
        lo, hi = np.floor(index[:, :2].min(axis=0)), np.ceil(index[:, :2].max(axis=0))
        near = np.all((centres >= lo) & (centres <= hi), axis=1)
        inside = np.zeros(ny * nx, dtype=bool)
        inside[near] = polygon.contains_points(centres[near])
        plane = planes.setdefault((k, round(depth, 3)), np.zeros((ny, nx), dtype=bool))
        plane ^= inside.reshape(ny, nx)  # even-odd: a contour inside another on its plane is a hole
    mask = np.zeros(grid.array.shape, dtype=bool)
    for (k, _), plane in planes.items():
        mask[k] |= plane  # contours from several drawing planes nearest one slice add up
    return mask, outside
