"""The analysis grid: 5 mm axial slabs, 0.45 mm pixels, z index increasing toward the top of the head.

Rules (stated once, relied on by training, inference and scoring):

- Slabs. Slices thinner than 0.9 x 5 mm are averaged into 5 mm slabs that start at the lower edge
  of the first slice. Each slab is the mean of the slices it covers, weighted by the overlap of each
  slice's extent with the slab, so a spacing that divides 5 mm (0.5, 0.625, 1, 1.25, 2.5 mm) gives a
  plain mean of whole slices and one that does not (0.8, 2, 3 mm) shares a slice between two slabs in
  proportion. The number of slabs is the covered length / 5 mm, rounded; a last slab that covers less
  than 5 mm (but at least 2.5 mm) is the mean over what it covers, a remnant under 2.5 mm is dropped
  (those slices get label 0 when labels go back). Slices of 4.5 mm or thicker are kept as they are.
- Pixels. In-plane spacing becomes ``GridParams.pixel_mm`` over the same field of view (linear
  interpolation; a Gaussian pre-filter when shrinking by more than 1.25x, against aliasing). A scan
  already at that spacing (within 0.001 mm) is not resampled, so it round-trips exactly.
- Orientation. The analysis grid's z index increases toward the top of the head (superior, +z in
  the LPS patient frame). A volume stored the other way (its slice axis has a negative z direction
  cosine) is flipped, with origin and direction updated, so physical positions do not change; this is
  the one place the direction matrix is read. Non-axial series (slice axis more than 45 degrees from
  the head axis) are refused.
- Back to the scan: labels go from the analysis grid to the input grid by nearest neighbour in
  physical coordinates (SimpleITK resampling), so masks overlay the original scan exactly.
- Reference masks onto the grid: each analysis voxel takes the majority of the mask sampled at
  ceil(5 mm / mask slice spacing) evenly spaced points through its slab (for a 1 mm mask: the five
  thin voxels). It is foreground when at least half the samples are nonzero (ties count as
  foreground); its label is the most frequent nonzero one, ties going to the higher label (the
  paper's precedence: hemorrhage 4 > subtle 3 > intermediate 2 > severe 1). In-plane: nearest neighbour.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import SimpleITK as sitk

from corelab.config import GridParams
from corelab.io.volume import Volume, same_geometry
from corelab.preprocess.exceptions import AnalysisGridError, check_hu

__all__ = ["to_analysis_grid", "labels_to_input_grid", "mask_to_analysis_grid", "slab_weights"]

_KEEP_THICK = 0.9  # slices at least this fraction of slice_mm are kept, not averaged
_AIR_HU = -1024.0


def to_analysis_grid(volume: Volume, params: GridParams = GridParams()) -> Volume:
    """The scan on the analysis grid: 5 mm axial slabs (HU mean), ``pixel_mm`` pixels, superior-up.

    volume: a scan in HU ([z, y, x], spacing in mm). Returns a float32 HU `Volume` whose origin and
    direction place it in the same physical space; ``meta.notes`` gains one sentence per change.

    >>> from corelab.io import Volume
    >>> thin = Volume(np.arange(10, dtype=np.float32)[:, None, None] * np.ones((10, 2, 2), np.float32), (1.0, 0.45, 0.45))
    >>> grid = to_analysis_grid(thin)
    >>> grid.spacing, grid.array[:, 0, 0].tolist()
    ((5.0, 0.45, 0.45), [2.0, 7.0])
    """
    if params.slice_mm <= 0 or params.pixel_mm <= 0:
        raise AnalysisGridError(f"The analysis grid needs positive sizes, not {params.slice_mm} mm and {params.pixel_mm} mm.")
    hu = np.asarray(volume.array)
    if hu.ndim != 3 or hu.size == 0:
        raise AnalysisGridError(f"The scan has shape {hu.shape}; a 3D image with at least one voxel is needed.")
    hu = hu.astype(np.float32, copy=False)
    if not np.isfinite(hu).all():
        hu = np.nan_to_num(hu, nan=_AIR_HU)
    volume, notes = _superior_up(replace(volume, array=hu))
    sz, sy, sx = (float(s) for s in volume.spacing)
    weights = slab_weights(volume.array.shape[0], sz, params.slice_mm)
    direction = np.asarray(volume.direction, float).reshape(3, 3)
    origin = np.asarray(volume.origin, float)
    if weights is None:
        slabs, slab_mm = volume.array, sz
        if not math.isclose(sz, params.slice_mm, abs_tol=1e-3):
            notes.append(f"Slices of {sz:g} mm were kept as they are (not averaged into {params.slice_mm:g} mm slabs).")
    else:
        slabs = _average_slices(volume.array, weights)
        slab_mm = params.slice_mm
        # Slab k is centred (k + 1/2) slab_mm above the lower edge of the first slice.
        origin = origin + direction[:, 2] * (slab_mm / 2 - sz / 2)
        kind = "a whole number" if _divides(sz, slab_mm) else "not a whole number"
        notes.append(
            f"{volume.array.shape[0]} slices of {sz:g} mm were averaged into {slabs.shape[0]} slabs of "
            f"{slab_mm:g} mm ({kind} of slices per slab; overlap-weighted mean)."
        )
    image = sitk.GetImageFromArray(slabs)
    image.SetSpacing((sx, sy, slab_mm))
    image.SetOrigin(tuple(origin))
    image.SetDirection(tuple(direction.ravel()))
    if math.isclose(sx, params.pixel_mm, abs_tol=1e-3) and math.isclose(sy, params.pixel_mm, abs_tol=1e-3):
        out = image
    else:
        out = _resample_in_plane(image, params.pixel_mm)
        notes.append(f"Pixels of {sy:g} x {sx:g} mm were resampled to {params.pixel_mm:g} mm.")
    return Volume(
        array=sitk.GetArrayFromImage(out).astype(np.float32, copy=False),
        spacing=(float(slab_mm), float(out.GetSpacing()[1]), float(out.GetSpacing()[0])),
        origin=tuple(float(o) for o in out.GetOrigin()),
        direction=tuple(float(d) for d in out.GetDirection()),
        meta=replace(volume.meta, notes=tuple(volume.meta.notes) + tuple(notes)),
    )


def slab_weights(n_slices: int, slice_mm: float, slab_mm: float) -> np.ndarray | None:
    """Row-normalised overlap weights [n_slabs, n_slices] that average slices into slabs, or None to keep them.

    Slice i covers [i, i + 1) x slice_mm, slab k covers [k, k + 1) x slab_mm (mm from the lower edge).

    >>> slab_weights(4, 2.0, 5.0).round(2).tolist()
    [[0.4, 0.4, 0.2, 0.0], [0.0, 0.0, 0.33, 0.67]]
    >>> slab_weights(3, 5.0, 5.0) is None
    True
    """
    if slice_mm >= _KEEP_THICK * slab_mm:
        return None
    extent = n_slices * slice_mm
    n_slabs = max(1, int(math.floor(extent / slab_mm + 0.5)))
    lower = np.arange(n_slices) * slice_mm
    slab_lower = np.arange(n_slabs) * slab_mm
    overlap = np.minimum(lower[None, :] + slice_mm, slab_lower[:, None] + slab_mm) - np.maximum(lower[None, :], slab_lower[:, None])
    # Spacings such as 0.6 mm are not exact in binary; slivers of 1e-15 mm are rounding, not overlap.
    overlap = np.where(overlap > 1e-6, overlap, 0.0)
    return overlap / overlap.sum(axis=1, keepdims=True)


def _average_slices(hu: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Slabs as weighted sums of the few slices each one covers (float32, one slice at a time)."""
    slabs = np.zeros((weights.shape[0],) + hu.shape[1:], np.float32)
    for k, row in enumerate(weights):
        for i in np.flatnonzero(row):
            slabs[k] += np.float32(row[i]) * hu[i]
    return slabs


def labels_to_input_grid(labels: np.ndarray, analysis: Volume, target: Volume) -> np.ndarray:
    """uint8 labels from the analysis grid onto ``target``'s grid (nearest neighbour, physical coordinates).

    Voxels of ``target`` outside the analysis grid (a dropped remnant slice) get 0.
    Returns an array of shape ``target.array.shape``.
    """
    labels = np.asarray(labels)
    if labels.shape != analysis.array.shape:
        raise AnalysisGridError(f"The labels have shape {labels.shape} but the analysis grid has {analysis.array.shape}.")
    source = _image_like(labels.astype(np.uint8), analysis)
    if same_geometry(analysis, target):
        return labels.astype(np.uint8)
    reference = _image_like(np.zeros(target.array.shape, np.uint8), target)
    out = sitk.Resample(source, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(out)


def mask_to_analysis_grid(mask: Volume, analysis: Volume) -> np.ndarray:
    """A label mask in any geometry onto the analysis grid: slab majority through z, nearest neighbour in-plane.

    Returns an array of ``analysis.array.shape`` with the mask's integer dtype (rule in the module docstring).
    """
    values = np.asarray(mask.array)
    if values.ndim != 3 or values.size == 0:
        raise AnalysisGridError(f"The mask has shape {values.shape}; a 3D mask with at least one voxel is needed.")
    if not np.issubdtype(values.dtype, np.integer):
        values = np.rint(np.nan_to_num(values)).astype(np.int32)
    dtype = values.dtype
    source = _image_like(values.astype(np.int32), mask)
    slab_mm = float(analysis.spacing[0])
    a_dir = np.asarray(analysis.direction, float).reshape(3, 3)
    m_dir = np.asarray(mask.direction, float).reshape(3, 3)
    parallel = abs(float(a_dir[:, 2] @ m_dir[:, 2])) > 0.999
    step = float(mask.spacing[0]) if parallel else float(min(mask.spacing))
    n_sub = max(1, math.ceil(slab_mm / step - 1e-6))
    offsets = ((np.arange(n_sub) + 0.5) / n_sub - 0.5) * slab_mm
    samples = []
    for offset in offsets:
        shifted = _image_like(np.zeros(analysis.array.shape, np.uint8), analysis)
        shifted.SetOrigin(tuple(np.asarray(analysis.origin, float) + a_dir[:, 2] * offset))
        resampled = sitk.Resample(source, shifted, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkInt32)
        samples.append(sitk.GetArrayFromImage(resampled))
    return _majority(np.stack(samples), dtype)


def _majority(samples: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Per voxel over axis 0: the most frequent nonzero label where at least half the samples are nonzero."""
    n = samples.shape[0]
    if n == 1:
        return samples[0].astype(dtype)
    foreground = 2 * np.count_nonzero(samples, axis=0) >= n
    best = np.zeros(samples.shape[1:], dtype)
    best_count = np.zeros(samples.shape[1:], np.int32)
    for value in np.unique(samples):  # ascending, so ">=" hands ties to the higher label
        if value == 0:
            continue
        count = np.count_nonzero(samples == value, axis=0)
        take = count >= best_count
        best[take] = value
        best_count[take] = count[take]
    return np.where(foreground, best, 0).astype(dtype)


def _superior_up(volume: Volume) -> tuple[Volume, list[str]]:
    """The volume with z index increasing toward the head's top (+z in LPS), and a note if it was flipped."""
    direction = np.asarray(volume.direction, float).reshape(3, 3)
    cosine = float(direction[2, 2])
    if abs(cosine) < math.cos(math.radians(45.0)):
        raise AnalysisGridError(
            "The scan's slices are not axial (slice axis more than 45 degrees from the head axis); reformat it to axial slices first."
        )
    if cosine > 0:
        return volume, []
    n = volume.array.shape[0]
    origin = np.asarray(volume.origin, float) + direction[:, 2] * volume.spacing[0] * (n - 1)
    direction[:, 2] *= -1
    flipped = replace(
        volume,
        array=np.ascontiguousarray(volume.array[::-1]),
        origin=tuple(origin),
        direction=tuple(direction.ravel()),
    )
    return flipped, ["Slices were stored from the top of the head down and were reversed (same physical positions)."]


def _resample_in_plane(image: sitk.Image, pixel_mm: float) -> sitk.Image:
    """Linear resampling to ``pixel_mm`` in x and y over the same field of view; z untouched."""
    sx, sy, sz = image.GetSpacing()
    nx, ny, nz = image.GetSize()
    shrink = max(pixel_mm / sx, pixel_mm / sy)
    if shrink > 1.25:
        # Variance (mm^2) that brings the old pixel's resolution down to the new one's.
        variance = [max(pixel_mm**2 - s**2, 0.0) / 4.0 for s in (sx, sy)] + [0.0]
        image = sitk.DiscreteGaussian(image, variance=variance, useImageSpacing=True)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    size = [max(1, int(round(nx * sx / pixel_mm))), max(1, int(round(ny * sy / pixel_mm))), nz]
    # Keep the outer edge of the field of view: first new centre half a new pixel inside the old edge.
    origin = np.asarray(image.GetOrigin()) + direction[:, 0] * (pixel_mm - sx) / 2 + direction[:, 1] * (pixel_mm - sy) / 2
    return sitk.Resample(
        image, size, sitk.Transform(), sitk.sitkLinear, tuple(origin), (pixel_mm, pixel_mm, sz),
        image.GetDirection(), _AIR_HU, sitk.sitkFloat32,
    )


def _image_like(array: np.ndarray, like: Volume) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in like.spacing[::-1]))
    image.SetOrigin(tuple(float(o) for o in like.origin))
    image.SetDirection(tuple(float(d) for d in like.direction))
    return image


def _divides(slice_mm: float, slab_mm: float) -> bool:
    ratio = slab_mm / slice_mm
    return abs(ratio - round(ratio)) < 1e-3
