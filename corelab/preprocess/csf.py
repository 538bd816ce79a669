"""CSF as in Sales Barros et al. 2020 (seeds near the intracranial centroid, grown within -5..13 HU), plus the sulci.

The paper's grow reaches the ventricles and the cisterns joined to them. On 5 mm slabs the CSF of
the sulci and over the convexity is cut off from them by partial volume with brain, so it is grown
as well from its own seeds: in-range voxels at the surface of the intracranial region, where the
subarachnoid space lies. That grow stays within a sulcus' depth of the surface and runs only
through voxels that are in range after a 1 mm in-plane smoothing too (then takes the sulcus' edges
beside them): noise in brain or in a hypodense infarct, whose single voxels often read in range,
averages out; a sulcus wide enough to see does not.

Last, voxels darker than the range (down to ``dark_floor_hu``, -30 HU, above fat) that are
face-connected through such voxels to that CSF join it: nothing darker than CSF is brain, and on a
scanner whose CSF reads near 0 HU the noise puts many of its voxels below -5 HU. Left out, they stay
in the analysis region as holes and rims of "tissue" in the ventricles, and as a thin partial-volume
rim along the anterior skull base and the inner table, which read to a network as the darkest
infarct (README "The method, as implemented").
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from corelab.config import CSFParams
from corelab.preprocess.exceptions import AnalysisGridError, EmptyRegionError, check_hu
from corelab.preprocess.morphology import label_components, squared_distance_mm2

__all__ = ["csf_region", "csf_seeds", "sulcal_csf"]

SMOOTH_MM = 1.0  # Gaussian sigma (mm, in-plane) of the smoothing a sulcus' core must stay in range after
_IN_PLANE = np.zeros((3, 3, 3), bool)
_IN_PLANE[1] = ndi.generate_binary_structure(2, 1)


def csf_region(
    hu: np.ndarray, spacing: tuple[float, float, float], intracranial: np.ndarray, params: CSFParams = CSFParams()
) -> np.ndarray:
    """CSF mask (bool [z, y, x]): voxels in [lower_hu, upper_hu] HU face-connected to a seed or a sulcal seed,
    and the darker ones joined to them, inside ``intracranial``.

    Seeds are the voxels within ``seed_radius_mm`` (mm) of the intracranial region's centroid that are in
    the HU range. The grow never leaves the intracranial region (it is the same as SimpleITK's
    ConnectedThreshold, face connectivity, on the image with everything outside the region set out of
    range). The sulci are added by `sulcal_csf`, then the darker voxels joined to either (module
    docstring). No seed gives an empty mask; `analysis_region` flags it.

    >>> hu = np.full((3, 21, 21), 30.0); hu[:, 9:12, 8:14] = 5.0; hu[:, 0, :] = 5.0
    >>> inside = np.zeros(hu.shape, bool); inside[:, 1:, :] = True
    >>> int(csf_region(hu, (5.0, 2.0, 2.0), inside).sum())  # the 3x3x6 pool; the row outside the region is no CSF
    54
    """
    hu = check_hu(hu, spacing)
    intracranial = np.asarray(intracranial, dtype=bool)
    if intracranial.shape != hu.shape:
        raise AnalysisGridError(f"The intracranial mask has shape {intracranial.shape} but the scan has {hu.shape}.")
    if not intracranial.any():
        raise EmptyRegionError("The intracranial region is empty, so there is no CSF to look for.")
    in_range = (hu >= params.lower_hu) & (hu <= params.upper_hu) & intracranial
    seeds = csf_seeds(in_range, intracranial, spacing, radius_mm=params.seed_radius_mm)
    csf = sulcal_csf(
        hu, in_range, intracranial, spacing,
        upper_hu=params.upper_hu, surface_mm=params.surface_mm, depth_mm=params.sulcus_depth_mm,
    )
    if seeds.any():
        labels, _ = label_components(in_range)
        csf |= np.isin(labels, np.unique(labels[seeds]))
    return _with_dark(csf, hu, intracranial, params)


def _with_dark(csf: np.ndarray, hu: np.ndarray, intracranial: np.ndarray, params: CSFParams) -> np.ndarray:
    """``csf`` plus the voxels in [dark_floor_hu, lower_hu) face-connected to it through such voxels."""
    dark = intracranial & (hu >= params.dark_floor_hu) & (hu < params.lower_hu)
    if not csf.any() or not dark.any():
        return csf
    labels, _ = label_components(csf | dark)
    return csf | np.isin(labels, np.setdiff1d(np.unique(labels[csf]), [0]))


def csf_seeds(
    in_range: np.ndarray, intracranial: np.ndarray, spacing: tuple[float, float, float], *, radius_mm: float
) -> np.ndarray:
    """``in_range`` voxels whose centres lie within ``radius_mm`` (mm) of the centroid of ``intracranial``."""
    centroid = np.argwhere(intracranial).mean(axis=0)
    sp = np.asarray(spacing, float)
    lo = np.maximum(np.floor(centroid - radius_mm / sp), 0).astype(int)
    hi = np.minimum(np.ceil(centroid + radius_mm / sp) + 1, in_range.shape).astype(int)
    zz, yy, xx = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    dist2 = ((zz - centroid[0]) * sp[0]) ** 2 + ((yy - centroid[1]) * sp[1]) ** 2 + ((xx - centroid[2]) * sp[2]) ** 2
    seeds = np.zeros(in_range.shape, bool)
    box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
    seeds[box] = in_range[box] & (dist2 <= radius_mm**2)
    return seeds


def sulcal_csf(
    hu: np.ndarray, in_range: np.ndarray, intracranial: np.ndarray, spacing: tuple[float, float, float], *,
    upper_hu: float, surface_mm: float, depth_mm: float,
) -> np.ndarray:
    """Sulcal CSF: ``in_range`` voxels grown from the surface of ``intracranial`` (bool [z, y, x]).

    The core: voxels within ``depth_mm`` (mm) of the region's surface whose HU smoothed in-plane
    (Gaussian, SMOOTH_MM) is at most ``upper_hu`` as well, face-connected through such voxels to one
    within ``surface_mm`` (mm) of the surface; plus the in-range voxels up to SMOOTH_MM in-plane from
    the core (its edges). The surface is where ``intracranial`` meets the voxels outside it; the
    image's own edge (a field of view that cuts the head) is none.

    >>> hu = np.full((1, 1, 12), 30.0); hu[0, 0, 1:4] = hu[0, 0, 6:8] = 5.0
    >>> inside = np.ones(hu.shape, bool); inside[0, 0, 0] = False
    >>> sulcal_csf(hu, inside & (hu <= 13), inside, (5.0, 1.0, 1.0), upper_hu=13.0, surface_mm=1.0, depth_mm=5.0
    ...            ).astype(int).ravel().tolist()  # the sulcus at the surface, not the pool 6 mm in
    [0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    """
    if not in_range.any() or intracranial.all():
        return np.zeros(in_range.shape, bool)
    depth2 = squared_distance_mm2(~intracranial, spacing)
    shallow = in_range & (depth2 <= depth_mm**2 + 1e-6)
    if not shallow.any():
        return shallow
    sigma = (0.0, SMOOTH_MM / spacing[1], SMOOTH_MM / spacing[2])
    # Outside the region counts as in range, so the smoothing does not lift CSF lying against the inner table.
    smooth = ndi.gaussian_filter(np.where(intracranial, hu, upper_hu).astype(np.float32), sigma)
    core = shallow & (smooth <= upper_hu)
    seeds = core & (depth2 <= surface_mm**2 + 1e-6)
    if not seeds.any():
        return np.zeros(in_range.shape, bool)
    labels, _ = label_components(core)
    core = np.isin(labels, np.setdiff1d(np.unique(labels[seeds]), [0]))
    # The smoothing blurs a sulcus' edges into the brain beside it; in-range voxels up to SMOOTH_MM
    # in-plane from its core are its edges.
    steps = max(1, int(round(SMOOTH_MM / min(spacing[1:]))))
    return ndi.binary_dilation(core, _IN_PLANE, iterations=steps, mask=shallow)
