"""A gantry-tilted acquisition of a phantom: the DICOM slices, and the truth on the grid a reader makes.

A tilted CT images planes turned about the patient's left-right (x) axis: image rows run along x,
columns along (0, cos t, sin t), and the table moves the patient along z between slices, so the
stack is sheared (each slice's position is on the table axis, one table increment apart). Readers
(corelab, dcm2niix) undo the shear by shifting each slice in its plane, which leaves a grid of the
tilted planes stacked along their normal (0, -sin t, cos t), ``table increment x cos t`` apart.

`tilted_stack` gives the slices the scanner writes; `tilt_phantom` gives the whole phantom (scan,
labels, tissue) on the reader's grid, labels nearest neighbour, with the truth volumes and mean HU
measured there, so the truth and manual reads written beside a tilted series describe what a reader
of it sees. Both sample the axial phantom by linear interpolation (air outside it).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage as ndi

from corelab.config import LABELS

__all__ = ["plane_table", "tilted_stack", "tilt_phantom"]


def _planes(shape, spacing, origin, tilt_deg):
    """Table positions z_k of the kept slices' planes and the plane geometry: (table, y0, col)."""
    t = np.radians(tilt_deg)
    sz, sy, _ = spacing
    nz, ny, _ = shape
    col = (0.0, float(np.cos(t)), float(np.sin(t)))
    rise = (ny - 1) * sy * col[2]  # how much higher a plane's last row lies than its first, mm
    y0 = origin[1] + (ny - 1) * sy * (1.0 - col[1]) / 2.0  # planes centred on the volume in y
    z_first = origin[2] - max(rise, 0.0)
    z_last = origin[2] + (nz - 1) * sz - min(rise, 0.0)
    table = z_first + sz * np.arange(int(np.floor((z_last - z_first) / sz)) + 1)
    return table, y0, col


def _sample(volume: np.ndarray, spacing, origin, z0: float, y0: float, col, *, order: int, fill: float) -> np.ndarray:
    """``volume`` (axial, identity direction) on the tilted plane through (origin x, y0, z0)."""
    sz, sy, _ = spacing
    rows = np.arange(volume.shape[1], dtype=float)
    kz = (z0 + rows * sy * col[2] - origin[2]) / sz
    ky = (y0 + rows * sy * col[1] - origin[1]) / sy
    kx = np.arange(volume.shape[2], dtype=float)
    coords = np.stack(np.broadcast_arrays(kz[:, None], ky[:, None], kx[None, :]))
    return ndi.map_coordinates(volume, coords, order=order, mode="constant", cval=fill)


def _kept(hu: np.ndarray, table: np.ndarray, spacing, origin, y0, col) -> np.ndarray:
    """The table positions whose planes meet the head (HU above -500 somewhere)."""
    head = [bool((_sample(hu, spacing, origin, z, y0, col, order=1, fill=-1024.0) > -500).any()) for z in table]
    index = np.flatnonzero(head)
    return table[index[0]: index[-1] + 1] if index.size else table


def plane_table(phantom: "Phantom", tilt_deg: float, *, bottom_cut: int = 0, top_cut: int = 0) -> np.ndarray:  # noqa: F821
    """Table positions (mm) of a tilted acquisition's slices: the planes that meet the head, less
    ``bottom_cut`` / ``top_cut`` planes at either end (partial coverage in the tilted frame), never
    a plane holding a lesion label."""
    spacing, origin = phantom.spacing, phantom.origin
    table, y0, col = _planes(phantom.hu.shape, spacing, origin, tilt_deg)
    table = _kept(phantom.hu, table, spacing, origin, y0, col)
    if bottom_cut or top_cut:
        sz = spacing[0]
        step = sz * col[1]
        labelled = [bool(_sample(phantom.labels, spacing, origin, table[0] + k * step * col[1],
                                 y0 - k * step * col[2], col, order=0, fill=0).any()) for k in range(len(table))]
        lesion = np.flatnonzero(labelled)
        low = min(bottom_cut, int(lesion.min()) if lesion.size else len(table))
        high = max(len(table) - top_cut, int(lesion.max()) + 1 if lesion.size else 0)
        low, high = min(low, max(high - 4, 0)), max(high, min(low + 4, len(table)))  # at least 4 planes stay
        table = table[low:high]
    return table


def tilted_stack(hu: np.ndarray, spacing: tuple[float, float, float], origin: tuple[float, float, float],
                 tilt_deg: float, table: np.ndarray | None = None,
                 ) -> tuple[np.ndarray, list[tuple[float, float, float]], tuple[float, float, float]]:
    """The axial volume ``hu`` as a tilted scanner writes it: (slices, their ImagePositionPatient,
    the column direction cosine). ``table``: the slices' table positions (`plane_table`); default:
    from where the planes first meet the head to where they leave it."""
    planes, y0, col = _planes(hu.shape, spacing, origin, tilt_deg)
    table = _kept(hu, planes, spacing, origin, y0, col) if table is None else table
    air = float(min(hu.min(), -1024.0))
    stack = np.stack([_sample(hu, spacing, origin, z, y0, col, order=1, fill=air) for z in table]).astype(np.float32)
    return stack, [(float(origin[0]), float(y0), float(z)) for z in table], col


def tilt_phantom(phantom: "Phantom", tilt_deg: float, table: np.ndarray | None = None) -> "Phantom":  # noqa: F821
    """``phantom`` on the reader's grid of its tilted acquisition (module doc; ``table`` as for
    `tilted_stack`): HU linear, labels and tissue nearest neighbour, direction (row, column,
    normal), truth volumes and mean HU remeasured."""
    spacing, origin = phantom.spacing, phantom.origin
    planes, y0, col = _planes(phantom.hu.shape, spacing, origin, tilt_deg)
    table = _kept(phantom.hu, planes, spacing, origin, y0, col) if table is None else table
    sz, sy, sx = spacing
    normal = np.array([0.0, -col[2], col[1]])
    step = sz * col[1]  # the planes' distance along their normal
    # Plane k of the reader's grid is table plane k moved in-plane back onto plane 0's rows: its row
    # i lies at table position z_k less k * sz * sin t along the column direction.
    air = float(min(phantom.hu.min(), -1024.0))
    hu, labels, tissue = [], [], []
    for k, z in enumerate(table):
        z0 = table[0] + k * step * normal[2]  # plane k's first row, on the normal through plane 0's
        y_start = y0 + k * step * normal[1]
        hu.append(_sample(phantom.hu, spacing, origin, z0, y_start, col, order=1, fill=air))
        labels.append(_sample(phantom.labels, spacing, origin, z0, y_start, col, order=0, fill=0))
        tissue.append(_sample(phantom.tissue, spacing, origin, z0, y_start, col, order=0, fill=0))
    hu, labels, tissue = (np.stack(a) for a in (hu, labels, tissue))
    hu = np.rint(hu).astype(np.float32)
    labels, tissue = labels.astype(np.uint8), tissue.astype(np.uint8)
    direction = np.stack([np.array([1.0, 0.0, 0.0]), np.array(col), normal], axis=1)  # columns: x, y, z axes
    voxel_ml = step * sy * sx / 1000.0
    in_class = (labels >= 1) & (labels <= 3)
    t = phantom.truth
    truth = replace(
        t, mean_hu=float(hu[in_class].mean()) if in_class.any() else float("nan"),
        infarct_ml=float((labels > 0).sum()) * voxel_ml, class_ml=float(in_class.sum()) * voxel_ml,
        hemorrhage_ml=float((labels == LABELS["hemorrhage"]).sum()) * voxel_ml,
    )
    return replace(phantom, hu=hu, labels=labels, tissue=tissue, spacing=(step, sy, sx),
                   origin=(float(origin[0]), float(y0), float(table[0])),
                   direction=tuple(float(v) for v in direction.ravel()), truth=truth)
