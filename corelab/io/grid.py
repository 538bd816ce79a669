"""Pure step functions that turn a stack of DICOM slices into an even, orthogonal grid.

Arrays in, arrays out; no file I/O. Positions are in mm (patient LPS), HU stays HU. Used by
`corelab.io.dicom`; tested on hand-worked arrays in tests/test_scans.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from corelab.io.errors import InconsistentSeriesError, SliceGapError

__all__ = [
    "MAX_GAP_RATIO",
    "StackGeometry",
    "stack_geometry",
    "align_slices",
    "even_slice_spacing",
    "resample_slices",
    "invented_slices",
]

# A gap up to 2x the typical spacing is one missing slice: its content is bounded by two measured
# neighbours one spacing away, the same distance over which the scanner's own slice profile already
# averages, so linear interpolation invents nothing thicker than one slice. A larger gap hides more
# than a slice of brain, where a small infarct can vanish entirely, so it is refused. The 5% leeway
# absorbs positions rounded to 0.1 mm in the header.
MAX_GAP_RATIO = 2.0 * 1.05

# Gaps within 2% of their mean (or 0.01 mm) are even: headers round positions, scanners do not jitter.
_EVEN_RELATIVE = 0.02
_EVEN_ABSOLUTE_MM = 0.01


@dataclass(frozen=True)
class StackGeometry:
    """How a set of slices is stacked.

    order: indices that sort the input slices along ``slice_axis`` (inferior to superior for axial).
    slice_axis: unit normal of the image plane, pointing superior (its z component >= 0).
    positions_mm: sorted slice positions along ``slice_axis`` (mm, patient coordinates projected).
    shifts_mm: (n, 2) in-plane offset of each sorted slice from the first, along (row, column)
        direction cosines, in mm; zero for a stack built along its normal, growing with a gantry tilt.
    tilt_deg: angle between the line through the slice positions and the plane normal, degrees.
    """

    order: np.ndarray
    slice_axis: tuple[float, float, float]
    positions_mm: np.ndarray
    shifts_mm: np.ndarray
    tilt_deg: float


def stack_geometry(positions: np.ndarray, row: np.ndarray, col: np.ndarray) -> StackGeometry:
    """Sort slices along their plane normal and measure the shear a gantry tilt leaves.

    positions: (n, 3) ImagePositionPatient of each slice, mm. row, col: ImageOrientationPatient's two
    direction cosines (the directions of increasing column and row index).

    >>> g = stack_geometry(np.array([[0, 0, 5.0], [0, 0, 0.0]]), np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
    >>> g.order.tolist(), g.positions_mm.tolist(), g.tilt_deg
    ([1, 0], [0.0, 5.0], 0.0)
    """
    positions = np.asarray(positions, dtype=float)
    row = np.asarray(row, dtype=float)
    col = np.asarray(col, dtype=float)
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    # z increasing = superior is corelab's convention; a normal along x or y (sagittal or coronal
    # stack) keeps its sign and the caller reorients the volume.
    if normal[2] < 0 or (normal[2] == 0 and normal.sum() < 0):
        normal = -normal
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    sorted_positions = positions[order]
    relative = sorted_positions - sorted_positions[0]
    shifts = np.stack([relative @ row, relative @ col], axis=1)
    distance = along[order] - along[order][0]
    tilt = 0.0
    if len(order) > 1 and distance[-1] > 0:
        # Least-squares slope of the in-plane shift per mm along the normal: tan(tilt).
        slope = (shifts * distance[:, None]).sum(axis=0) / (distance**2).sum()
        tilt = float(np.degrees(np.arctan(np.hypot(*slope))))
    return StackGeometry(
        order=order,
        slice_axis=tuple(float(v) for v in normal),
        positions_mm=along[order],
        shifts_mm=shifts,
        tilt_deg=tilt,
    )


def align_slices(
    slices: np.ndarray,
    shifts_mm: np.ndarray,
    pixel_mm: tuple[float, float],
    *,
    order: int = 1,
    fill: float = -1024.0,
    tolerance_px: float = 0.01,
) -> np.ndarray:
    """Shift each slice in its own plane so all share the first slice's in-plane grid.

    This is the gantry-tilt correction dcm2niix applies: the slices keep their (tilted) plane and
    content; only the shear between them is removed, so the stack becomes orthogonal along the plane
    normal and no through-plane interpolation is needed.

    slices: [n, rows, cols]. shifts_mm: (n, 2) offsets along (row, column) direction cosines, mm, as
    `stack_geometry` returns. pixel_mm: (row spacing, column spacing) = DICOM PixelSpacing, mm.
    order: 1 (linear) for HU, 0 (nearest) for labels. fill: value for pixels shifted in from outside
    the field of view (air, HU). Shifts under ``tolerance_px`` pixels are left alone.

    >>> a = np.zeros((2, 1, 4)); a[1, 0, 2] = 1.0
    >>> align_slices(a, np.array([[0.0, 0.0], [1.0, 0.0]]), (1.0, 1.0), fill=0.0)[1, 0].tolist()
    [0.0, 0.0, 0.0, 1.0]
    """
    slices = np.asarray(slices)
    out = np.empty_like(slices)
    for k, (along_row, along_col) in enumerate(np.asarray(shifts_mm, dtype=float)):
        # Slice k starts (along_col, along_row) mm further than the first slice, so the first
        # slice's grid point (i, j) is slice k's pixel (i - along_col / dy, j - along_row / dx);
        # ndimage.shift(x, s) returns x[index - s].
        shift_px = (along_col / pixel_mm[0], along_row / pixel_mm[1])
        if max(abs(shift_px[0]), abs(shift_px[1])) < tolerance_px:
            out[k] = slices[k]
        else:
            out[k] = ndimage.shift(slices[k], shift_px, order=order, mode="constant", cval=fill)
    return out


def even_slice_spacing(positions_mm: np.ndarray) -> tuple[float, bool]:
    """The slice spacing (mm) of sorted positions, and whether the stack is already even.

    Even stacks return their mean spacing. Uneven ones return the median gap (the spacing the
    scanner was set to) and raise `SliceGapError` when the largest gap exceeds ``MAX_GAP_RATIO``
    times it (more than one missing slice), naming the gap's position and size.

    >>> even_slice_spacing(np.array([0.0, 5.0, 10.0]))
    (5.0, True)
    >>> even_slice_spacing(np.array([0.0, 5.0, 15.0, 20.0]))
    (5.0, False)
    """
    positions_mm = np.asarray(positions_mm, dtype=float)
    gaps = np.diff(positions_mm)
    if gaps.size == 0:
        raise InconsistentSeriesError("The series has a single slice, so it has no slice spacing.")
    typical = float(np.median(gaps))
    duplicate = np.flatnonzero(gaps < max(_EVEN_ABSOLUTE_MM, 0.01 * typical))
    if duplicate.size:
        where = positions_mm[duplicate[0]]
        raise InconsistentSeriesError(
            f"The series has two slices at the same position ({where:.1f} mm along the slice axis)."
        )
    mean = float(gaps.mean())
    if np.abs(gaps - mean).max() <= max(_EVEN_ABSOLUTE_MM, _EVEN_RELATIVE * mean):
        return mean, True
    worst = int(np.argmax(gaps))
    if gaps[worst] > MAX_GAP_RATIO * typical:
        raise SliceGapError(
            f"The series has a {gaps[worst]:.1f} mm gap between the slices at {positions_mm[worst]:.1f} mm"
            f" and {positions_mm[worst + 1]:.1f} mm along the slice axis, more than one missing slice at its"
            f" typical {typical:.1f} mm spacing, too much to interpolate honestly."
        )
    return typical, False


def resample_slices(
    slices: np.ndarray, positions_mm: np.ndarray, *, spacing_mm: float, order: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a sorted, unevenly spaced stack onto an even grid from the first to the last slice.

    The spacing is adjusted to the nearest value that fits a whole number of steps between the first
    and last slice, so both ends are kept. order: 1 linear along the slice axis (HU), 0 nearest (labels).
    Returns (array [m, rows, cols], new positions in mm).

    >>> a = np.array([0.0, 10.0, 30.0])[:, None, None]
    >>> out, z = resample_slices(a, np.array([0.0, 5.0, 15.0]), spacing_mm=5.0)
    >>> out[:, 0, 0].tolist(), z.tolist()
    ([0.0, 10.0, 20.0, 30.0], [0.0, 5.0, 10.0, 15.0])
    """
    slices = np.asarray(slices)
    positions_mm = np.asarray(positions_mm, dtype=float)
    length = positions_mm[-1] - positions_mm[0]
    steps = max(1, int(round(length / spacing_mm)))
    targets = positions_mm[0] + np.arange(steps + 1) * (length / steps)
    upper = np.clip(np.searchsorted(positions_mm, targets, side="right"), 1, len(positions_mm) - 1)
    lower = upper - 1
    weight = (targets - positions_mm[lower]) / (positions_mm[upper] - positions_mm[lower])
    if order == 0:
        picked = np.where(weight < 0.5, lower, upper)
        return slices[picked].copy(), targets
    w = weight[:, None, None].astype(np.float32)
    out = (1.0 - w) * slices[lower] + w * slices[upper]
    return out.astype(slices.dtype, copy=False), targets


def invented_slices(positions_mm: np.ndarray, targets_mm: np.ndarray) -> int:
    """How many resampled slices (``targets_mm``, mm) lie where the series had no slice: further
    than half the new spacing from every measured position (``positions_mm``, sorted, mm), i.e.
    filled in a gap rather than nudged between neighbours.

    >>> invented_slices(np.array([0.0, 5.0, 15.0]), np.array([0.0, 5.0, 10.0, 15.0]))  # one missing slice
    1
    >>> invented_slices(np.array([0.0, 4.5, 10.0, 15.5]), np.array([0.0, 5.0, 10.0, 15.5]))  # uneven only
    0
    """
    positions_mm = np.asarray(positions_mm, dtype=float)
    targets_mm = np.asarray(targets_mm, dtype=float)
    if targets_mm.size < 2:
        return 0
    half = 0.5 * float(np.diff(targets_mm).mean())
    nearest = np.abs(targets_mm[:, None] - positions_mm[None, :]).min(axis=1)
    return int(np.count_nonzero(nearest > half))
