"""Intracranial region as in Sales Barros et al. 2020 ("Preprocessing"), with its failure modes handled.

Paper steps (constants in `corelab.config.IntracranialParams`): bone = HU > 160; dilate 7 mm (closes
every foramen of the skull except the foramen magnum); region grow inside the skull from the bone's
center of gravity; dilate 7 mm (back to the inner table); foramen magnum = first slice, going down
from the slice of largest area, whose area < 900 mm^2; everything below it is dropped.

What this module adds, because real heads break the recipe:

- The grow runs over "not dilated wall" face-connected components. The walls are the bone and,
  inside each slice's convex hull of the bone, every voxel below ``fat_hu`` (-30 HU: fat or air): on 5 mm slabs
  a thin plate of the skull base (an orbital roof, the floor of the sella, a sinus wall) averaged with
  the fat or air beside it reads below 160 HU, and the orbit or sinus behind it, never intracranial,
  closes the wall in its place. The space around the head lies outside the hull and stays open: it is
  every component holding air (< -500 HU) on the in-plane border of the image.
- Seed: the bone's center of gravity when it lies in the largest enclosed component (at most 20%
  air, at least 50 mL). When it lands
  in bone, in a sinus or outside the head (a dense head rest, neck or face bones pulling it away),
  the largest enclosed component is used instead, with a flag.
- A gap in the skull wider than twice 7 mm: no enclosed component is big enough because the inside
  joins the air around the head. The grow is repeated with the gap closed, flagged: under the skin
  (a 7 mm wall along the air around the head, so brain bulging through the opening is kept), or,
  when that runs into face or neck soft tissue (grows over 1.3 times more), across the opening (each
  slice limited to the convex hull of its bone). If both fail, `SkullNotFoundError`. The flag says
  the skull is open (craniectomy) only when the gap is also wider than twice
  ``IntracranialParams.open_gap_mm`` (the grow still leaks with the walls dilated that much);
  a narrower gap is thin bone reading below 160 HU (or a burr hole) and is named so.
- The second dilation can pass through a gap in a thin skull into the scalp; it is therefore kept
  away (7 mm dilation) from the space around the head, wherever that space comes within 2 x 7 mm
  of the grow. The paper's region never holds a voxel above 160 HU (the grow lies more than 7 mm
  from every one); it does hold the inner table's blurred edge below 160 HU.
- Partial volume: a 160 HU threshold stops short of the inner table. On 5 mm slabs the sloping
  skull at the top and bottom of the head makes slabs that are mostly brain read above 160 HU, and
  in-plane the blurred brain-bone edge crosses 160 HU before its half-way point, so the paper's region
  misses a few percent of the volume. The intracranial mask
  therefore also counts the bone voxels just outside the region (one slab up or down, up to 2 mm
  in-plane) whose HU is closer to the region's median than to cortical bone (90th percentile of
  bone voxels): mostly brain, by the half-way rule for a blurred edge. These voxels are above 160 HU, so the analysis region
  (`analysis_region`), which drops every voxel above 160 HU, never holds them.
- Partial coverage: a region touching the in-plane image border (a field of view that cuts the
  skull, e.g. one that ends in the face), a grow reaching the top slice (scan stops below the vertex)
  and a head with no foramen magnum in view are flagged as partial coverage, not errors. Brain cut
  by the image border opens nothing: only air on the border marks the space around the head.
- Orientation (corelab's): an upright cranial cavity is longer front to back (y) than it is tall
  (z, foramen magnum to vertex): about 1.1-1.4 times in adults and in both phantom families. A
  region whose length is not `min_length_to_height` times its height is flagged "Orientation:"
  (a scan whose direction cosines lay the head on its face or back: its 5 mm axial slabs would be
  coronal, and every rule and network here expects axial ones). Where the field of view cuts the
  cavity front or back its length is a lower bound, and the flag says so.

Axis convention: z index increases toward the top of the head (`to_analysis_grid` guarantees it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from corelab.config import IntracranialParams
from corelab.preprocess.exceptions import EmptyRegionError, NoBoneError, NotHounsfieldError, SkullNotFoundError, check_hu
from corelab.preprocess.morphology import dilate_mm, label_components, slice_convex_hulls, squared_distance_mm2

__all__ = ["Intracranial", "intracranial_region", "foramen_magnum_slice", "partial_volume_rim", "inner_walls"]

AIR_HU = -500.0  # below this a voxel is air (air is -1000 HU, fat about -100 HU)
MIN_CAVITY_ML = 50.0  # smallest grow (before the second dilation) accepted as the cranial cavity
MAX_AIR_FRACTION = 0.2  # a space that is more air than this is not the cranial cavity


@dataclass(frozen=True)
class Intracranial:
    """The intracranial region on the analysis grid.

    mask: bool [z, y, x], inside the skull, above the foramen magnum, plus the partial-volume rim
        (module docstring; those voxels read above 160 HU); `intracranial_ml` comes from it.
    foramen_slice: z index of the foramen magnum slice (kept; everything below dropped), or None
        when no slice below the largest one is under the area threshold.
    flags: short sentences about anything a reader of the result should check.
    seed: (z, y, x) voxel the region grow started from.
    """

    mask: np.ndarray
    foramen_slice: int | None
    flags: tuple[str, ...]
    seed: tuple[int, int, int]


def intracranial_region(
    hu: np.ndarray, spacing: tuple[float, float, float], params: IntracranialParams = IntracranialParams()
) -> Intracranial:
    """The paper's intracranial region of a head CT in HU on a [z, y, x] grid with spacing (z, y, x) mm.

    Raises `NoBoneError`, `NotHounsfieldError`, `SkullNotFoundError`, `EmptyRegionError`,
    `ConstantImageError`, `EmptyImageError`. See the module docstring for the rules.

    >>> z, y, x = np.ogrid[-40:41:5, -60:61:2, -60:61:2]
    >>> r = np.sqrt(x**2 + y**2 + z**2)
    >>> head = np.where(r < 40, 30.0, np.where(r < 46, 1000.0, -1000.0))
    >>> ic = intracranial_region(head, (5.0, 2.0, 2.0))
    >>> round(ic.mask.sum() * 20 / 1000)  # mL; a 40 mm ball is 268 mL
    266
    """
    hu = check_hu(hu, spacing)
    spacing = tuple(float(s) for s in spacing)
    bone = hu > params.bone_hu
    if not bone.any():
        raise NoBoneError(
            f"No voxel is above {params.bone_hu:g} HU, so the skull cannot be found; the scan may not be a head CT in Hounsfield units."
        )
    if bone.mean() > 0.5:
        raise NotHounsfieldError(
            f"{bone.mean():.0%} of the voxels are above {params.bone_hu:g} HU; the values do not look like Hounsfield units of a head CT."
        )
    voxel_ml = float(np.prod(spacing)) / 1000.0
    # Work inside the head's box (plus a ring of air wider than the dilation, so the air around the
    # head stays one connected space): the same result, at half the cost on a 512 x 512 matrix.
    box = _box(hu > AIR_HU, spacing, params.dilate_mm + 2 * max(spacing[1:]), axes=(1, 2))
    inner, grown_box, seed, flags = _paper_region(hu[box], bone[box], spacing, params, voxel_ml)
    region = np.zeros(hu.shape, bool)
    grown = np.zeros(hu.shape, bool)
    region[box], grown[box] = inner, grown_box
    seed = tuple(int(c + b.start) for c, b in zip(seed, box))
    foramen = foramen_magnum_slice(region, spacing, area_mm2=params.foramen_area_mm2)
    region |= partial_volume_rim(region, hu, bone, spacing)
    if foramen is None:
        flags.append(
            "Partial coverage: no foramen magnum was found below the largest slice (the scan may start above the "
            "skull base); nothing was cut at the bottom."
        )
    else:
        region[:foramen] = False
    if not region.any():
        raise EmptyRegionError("The intracranial region came out empty.")
    flags.extend(_coverage_flags(region, grown))
    flags.extend(_orientation_flags(region, spacing, params))
    volume_ml = region.sum() * voxel_ml
    if volume_ml < 500.0:
        flags.append(f"The intracranial volume is only {volume_ml:.0f} mL; check that the scan covers the whole head.")
    return Intracranial(mask=region, foramen_slice=foramen, flags=tuple(flags), seed=seed)


def _paper_region(
    hu: np.ndarray, bone: np.ndarray, spacing: tuple[float, float, float], params: IntracranialParams, voxel_ml: float
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int], list[str]]:
    """The paper's dilate, grow, dilate (before the foramen cut): (region, grown, seed, flags)."""
    flags: list[str] = []
    # Slabs of 5 mm average thin plates (orbital roofs, sinus walls) with the fat or air beside
    # them to below 160 HU; that fat and air (never intracranial) close the wall in their place.
    walls = bone | inner_walls(hu, bone, params.fat_hu)
    closed = dilate_mm(walls, spacing, params.dilate_mm)
    seed = tuple(int(round(c)) for c in np.argwhere(bone).mean(axis=0))
    grown, exterior, note = _grow_inside(~closed, hu, seed, voxel_ml)
    limit = None
    if grown is None:
        wide = _gap_is_wide(walls, hu, seed, spacing, params.open_gap_mm)
        grown, exterior, limit, note, closure = _close_open_skull(closed, bone, hu, seed, spacing, params.dilate_mm, voxel_ml)
        flags.append(_opening_flag(wide, closure, params))
    if note:
        flags.append(note)
    # Only voxels within 7 mm of the grow can join it, and only space within 7 mm of those can
    # keep them out: a box 2 x 7 mm around the grow gives the exact result at a fraction of the cost.
    sub = _box(grown, spacing, 2 * params.dilate_mm + max(spacing))
    region = np.zeros(hu.shape, bool)
    reach = squared_distance_mm2(grown[sub], spacing)
    region[sub] = reach <= params.dilate_mm**2 + 1e-6
    # The guard matters only where the space around the head comes within 2 x 7 mm of the grow
    # (a thin or broken skull); an intact skull keeps them further apart and the guard is skipped.
    if (exterior[sub] & (reach <= (2 * params.dilate_mm) ** 2 + 1e-6)).any():
        region[sub] &= ~dilate_mm(exterior[sub], spacing, params.dilate_mm)
    if limit is not None:
        region &= limit
    region &= ~walls  # a no-op after the paper's steps (grown lies > 7 mm from every wall); kept as a guarantee
    return region, grown, seed, flags


def inner_walls(hu: np.ndarray, bone: np.ndarray, fat_hu: float) -> np.ndarray:
    """Fat and air (HU below ``fat_hu``) inside each slice's convex hull of ``bone``: walls like bone.

    Orbits, paranasal sinuses, mastoid cells and the nasal cavity lie inside the bony outline of
    their slice; the air around the head lies outside it and stays the space around the head, which
    an enclosed cavity never reaches.

    >>> hu = np.full((1, 7, 7), -1000.0); hu[0, 1:6, 1:6] = 1000.0; hu[0, 2:5, 2:5] = -100.0  # fat in a bone ring
    >>> int(inner_walls(hu, hu > 160, -30.0).sum())  # the 9 fat pixels, not the air around
    9
    """
    low = hu < fat_hu
    if not low.any():
        return low
    return low & slice_convex_hulls(bone)


def _box(mask: np.ndarray, spacing: tuple[float, float, float], margin_mm: float, axes=(0, 1, 2)) -> tuple[slice, ...]:
    """Slices of the bounding box of ``mask`` grown by ``margin_mm`` (mm) along ``axes``, clipped to the image."""
    box = []
    for axis in range(3):
        if axis not in axes or not mask.any():
            box.append(slice(0, mask.shape[axis]))
            continue
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        pad = int(np.ceil(margin_mm / spacing[axis]))
        box.append(slice(max(int(hits[0]) - pad, 0), min(int(hits[-1]) + pad + 1, mask.shape[axis])))
    return tuple(box)


def foramen_magnum_slice(region: np.ndarray, spacing: tuple[float, float, float], *, area_mm2: float = 900.0) -> int | None:
    """First slice below the slice of largest area whose area is below ``area_mm2`` (mm^2), or None.

    >>> areas = np.array([100, 800, 2000, 5000, 4000])  # pixels of 1 mm^2, bottom to top
    >>> region = np.arange(5000)[None, None, :] < areas[:, None, None]
    >>> foramen_magnum_slice(region, (5.0, 1.0, 1.0))
    1
    """
    areas = region.reshape(region.shape[0], -1).sum(axis=1) * spacing[1] * spacing[2]
    largest = int(np.argmax(areas))
    below = np.flatnonzero(areas[:largest] < area_mm2)
    return int(below[-1]) if below.size else None


# The rim steps one slab up or down (slab mixing) and up to RIM_MM in-plane (the blurred inner
# table: a 160 HU threshold cuts a blurred brain-bone edge short of its half-way point by about
# 1.2 standard deviations of the blur, 0.5-2 mm on head CT).
RIM_MM = 2.0
# The inner table is cortical bone, the densest bone in the scan; the median of all bone voxels
# would mix in diploe and partial-volume voxels and set the half-way point too low.
CORTICAL_PERCENTILE = 90.0
_ABOVE_BELOW = np.zeros((3, 3, 3), bool)
_ABOVE_BELOW[:, 1, 1] = True
_IN_PLANE = np.zeros((3, 3, 3), bool)
_IN_PLANE[1] = ndi.generate_binary_structure(2, 1)


def partial_volume_rim(
    region: np.ndarray, hu: np.ndarray, bone: np.ndarray, spacing: tuple[float, float, float], *, reach_mm: float = RIM_MM
) -> np.ndarray:
    """Partial-volume voxels of the inner table that are mostly brain, just outside ``region``.

    Bone voxels (``bone``) whose HU is below the midpoint of the region's median HU and the
    cortical bone's HU (90th percentile of ``bone``),
    reached from ``region`` through such voxels by one slab up or down and up to ``reach_mm`` (mm)
    in-plane. A thin bone plate below the midpoint does not let the rim through to what lies beyond
    it, because that (air, fat, brain) is not bone.

    >>> hu = np.array([30.0, 30.0, 300.0, 900.0, 1000.0])[None, None, :]; region = hu < 160
    >>> partial_volume_rim(region, hu, hu > 160, (5.0, 1.0, 1.0)).astype(int).ravel().tolist()  # midpoint 505
    [0, 0, 1, 0, 0]
    """
    if not region.any() or not bone.any():
        return np.zeros(region.shape, bool)
    midpoint = 0.5 * (float(np.median(hu[region])) + float(np.percentile(hu[bone], CORTICAL_PERCENTILE)))
    steps = max(1, int(round(reach_mm / min(spacing[1:]))))
    box = _box(region, spacing, reach_mm + max(spacing))
    inside, candidates = region[box], bone[box] & (hu[box] < midpoint)
    seed = inside | (ndi.binary_dilation(inside, _ABOVE_BELOW) & candidates)
    grown = ndi.binary_dilation(seed, _IN_PLANE, iterations=steps, mask=seed | candidates)
    rim = np.zeros(region.shape, bool)
    rim[box] = grown & ~inside
    return rim


def _grow_inside(
    free: np.ndarray, hu: np.ndarray, seed: tuple[int, int, int], voxel_ml: float
) -> tuple[np.ndarray | None, np.ndarray, str]:
    """Grow from ``seed`` over ``free`` voxels: (grown or None, space around the head, flag or "")."""
    labels, count = label_components(free)
    frame = np.zeros(hu.shape, bool)
    frame[:, [0, -1], :] = True
    frame[:, :, [0, -1]] = True
    outside = np.unique(labels[frame & (hu < AIR_HU)])
    sizes = np.bincount(labels.ravel(), minlength=count + 1).astype(float)
    air = np.bincount(labels.ravel(), weights=(hu < AIR_HU).ravel(), minlength=count + 1)
    sizes[0] = 0.0
    sizes[outside] = 0.0
    # An enclosed pocket of air (between the head and a head holder, a large sinus) is no cranial
    # cavity; a little air inside (pneumocephalus after surgery) is allowed.
    sizes[air > MAX_AIR_FRACTION * sizes] = 0.0
    is_outside = np.zeros(count + 1, bool)
    is_outside[outside[outside > 0]] = True
    exterior = is_outside[labels]
    best = int(np.argmax(sizes))
    if sizes[best] * voxel_ml < MIN_CAVITY_ML:
        return None, exterior, ""
    note = ""
    if labels[seed] != best:
        note = (
            "The bone's center of gravity fell in bone or outside the skull; the region grow started "
            "in the largest space enclosed by the skull instead."
        )
    return labels == best, exterior, note


def _close_open_skull(
    closed: np.ndarray, bone: np.ndarray, hu: np.ndarray, seed: tuple[int, int, int],
    spacing: tuple[float, float, float], wall_mm: float, voxel_ml: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str, str]:
    """Grow again when the skull has a gap: (grown, exterior, limit or None, seed note, closure).

    Two closures are tried. Under the skin: the space within ``wall_mm`` of the air around the head
    (the scalp) is walled off, so brain bulging through the opening stays in. Across the opening:
    each slice is limited to the convex hull of its bone. The first is kept unless it grew more than
    1.3 times the second (it then ran into face or neck soft tissue). closure: "under the skin" or "across".
    """
    air_labels, _ = label_components(hu < AIR_HU)
    frame = np.zeros(hu.shape, bool)
    frame[:, [0, -1], :] = True
    frame[:, :, [0, -1]] = True
    outside_air = np.isin(air_labels, np.setdiff1d(np.unique(air_labels[frame]), [0]))
    wall = dilate_mm(outside_air, spacing, wall_mm)
    under_skin, _, skin_note = _grow_inside(~closed & ~wall, hu, seed, voxel_ml)
    hulls = slice_convex_hulls(bone)
    across, _, hull_note = _grow_inside(~closed & hulls, hu, seed, voxel_ml)
    if under_skin is not None and (across is None or under_skin.sum() <= 1.3 * across.sum()):
        return under_skin, outside_air, None, skin_note, "under the skin"
    if across is not None:
        return across, outside_air, hulls, hull_note, "across"
    raise SkullNotFoundError(
        "No space enclosed by the skull was found, even after closing openings in the skull; the scan may not cover the head."
    )


def _gap_is_wide(
    walls: np.ndarray, hu: np.ndarray, seed: tuple[int, int, int], spacing: tuple[float, float, float], gap_mm: float
) -> bool:
    """True when the grow still reaches the space around the head with ``walls`` dilated by ``gap_mm`` (mm).

    A gap in the skull narrower than 2 x ``gap_mm`` is closed by that dilation. Pixels finer than
    0.5 mm are pooled in 2 x 2 blocks first (a wall pixel anywhere in a block makes it wall): the
    question is about centimetres, and the answer costs a quarter as much.
    """
    step = 2 if max(spacing[1:]) < 0.5 else 1
    if step > 1:
        nz, ny, nx = walls.shape
        cut = walls[:, : ny - ny % step, : nx - nx % step]
        walls = cut.reshape(nz, ny // step, step, nx // step, step).any(axis=(2, 4))
        hu = hu[:, : ny - ny % step : step, : nx - nx % step : step]
        seed = (seed[0], min(seed[1] // step, walls.shape[1] - 1), min(seed[2] // step, walls.shape[2] - 1))
    coarse = (spacing[0], spacing[1] * step, spacing[2] * step)
    voxel_ml = float(np.prod(coarse)) / 1000.0
    return _grow_inside(~dilate_mm(walls, coarse, gap_mm), hu, seed, voxel_ml)[0] is None


def _opening_flag(wide: bool, closure: str, params: IntracranialParams) -> str:
    """The flag for a skull whose bone has a gap the paper's 7 mm dilation does not close."""
    how = (
        "the region was closed under the skin there; check that it holds no scalp or muscle"
        if closure == "under the skin"
        else f"each slice was closed across the {'opening' if wide else 'gap'}, so brain bulging through it is left out"
    )
    if wide:
        return f"The skull is open (craniectomy or a defect wider than {2 * params.open_gap_mm:g} mm): {how}."
    return (
        f"The skull has a gap under {2 * params.open_gap_mm:g} mm wide where its bone reads below {params.bone_hu:g} HU "
        f"(thin bone or a burr hole, not an open skull): {how}."
    )


def _orientation_flags(region: np.ndarray, spacing: tuple[float, float, float], params: IntracranialParams) -> list[str]:
    """Orientation: a cavity that is not longer front to back than it is tall (module docstring).

    >>> cavity = np.zeros((30, 40, 40), bool); cavity[5:25, 5:35, 5:35] = True  # 100 mm tall, 90 mm long
    >>> _orientation_flags(cavity, (5.0, 3.0, 3.0), IntracranialParams())[0][:45]
    'Orientation: the cranial cavity is 100 mm tal'
    >>> _orientation_flags(cavity, (4.0, 3.0, 3.0), IntracranialParams())  # 80 mm tall
    []
    """
    height, length = ((np.ptp(np.flatnonzero(region.any(axis=other))) + 1) * spacing[axis]
                      for axis, other in ((0, (1, 2)), (1, (0, 2))))
    if length >= params.min_length_to_height * height:
        return []
    cut = " (the field of view cuts it front or back, so it may be longer)" if region[:, [0, -1], :].any() else ""
    return [
        f"Orientation: the cranial cavity is {height:.0f} mm tall and only {length:.0f} mm long front to back{cut} "
        "(an upright head is longer than tall), so the scan's direction cosines may lay the head on its face, back "
        "or side and its axial slabs would not be axial: check the scan's orientation before using this volume."
    ]


def _coverage_flags(region: np.ndarray, grown: np.ndarray) -> list[str]:
    """Partial coverage: the field of view or the scan's top cuts the skull."""
    flags = []
    if region[:, [0, -1], :].any() or region[:, :, [0, -1]].any():
        flags.append(
            "Partial coverage: the field of view cuts through the skull (the intracranial region reaches the edge of "
            "the field of view), so the intracranial volume is too small."
        )
    if grown[-1].any():
        flags.append("Partial coverage: the scan stops below the top of the skull, so the intracranial volume is too small.")
    return flags
