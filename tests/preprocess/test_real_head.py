"""Preprocessing on a real normal head CT, and the skull-base failures it showed, rebuilt as phantoms.

The real head is InVesalius' Cranium.inv3 (`real_head.read_inv3`; fetch it with
``benchmarks/fetch_real_head.sh``); its tests are skipped when it is not on this machine. It is a
direct coronal scan whose field of view ends in the face and which is resliced to axial 5 mm slabs
here exactly as `corelab run` does (read, analysis grid, analysis region).

What it showed, and the phantoms below rebuild: on 5 mm slabs a thin plate of the skull base (an
orbital roof, the floor of the sella, a sinus wall) averaged with the fat or air beside it reads below
160 HU, so the paper's grow ran through it into the orbit or a sinus and from there out of the head,
and the skull was called open. A small window of thin bone in the vault did the same.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from real_head import known_lesion, read_inv3, real_head_path

from corelab.io.volume import Volume
from corelab.preprocess import analysis_region, intracranial_region, to_analysis_grid
from corelab.preprocess.intracranial import _grow_inside
from corelab.preprocess.morphology import dilate_mm

# ---------------------------------------------------------------- a small phantom head with a skull base

SPACING = (5.0, 1.0, 1.0)
VOXEL_ML = 5.0 / 1000.0
CENTRE, AXES = (95.0, 0.0, 0.0), (55.0, 75.0, 62.0)  # cranial cavity (z, y, x) in mm; y < 0 is the face side
CAVITY_ML = 4.0 / 3.0 * math.pi * math.prod(AXES) / 1000.0  # 1070.7 mL
FAT_HU, AIR_HU, THIN_PLATE_HU = -100.0, -1000.0, 120.0


def _grid():
    z = (np.arange(32) * 5.0 + 2.5)[:, None, None]
    y = (np.arange(-110, 110) + 0.5)[None, :, None]
    x = (np.arange(-90, 90) + 0.5)[None, None, :]
    return z, y, x


def _inside(z, y, x, pad: float) -> np.ndarray:
    (cz, cy, cx), (az, ay, ax) = CENTRE, AXES
    return ((z - cz) / (az + pad)) ** 2 + ((y - cy) / (ay + pad)) ** 2 + ((x - cx) / (ax + pad)) ** 2 <= 1


def small_head(*, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(hu [z, y, x] on 5 x 1 x 1 mm, brain mask): brain 32 HU, a 6 mm skull, 5 mm scalp, a foramen magnum over a bony canal."""
    z, y, x = _grid()
    brain = _inside(z, y, x, 0.0)
    skull, head = _inside(z, y, x, 6.0), _inside(z, y, x, 11.0)
    radius = np.sqrt((y - 10.0) ** 2 + x**2)
    below = z < CENTRE[0]
    hu = np.full(np.broadcast(z, y, x).shape, -1000.0, np.float32)
    hu[head] = 30.0
    hu[skull] = 1000.0
    hu[brain] = 32.0
    hu[skull & ~brain & below & (radius < 15.0)] = 35.0  # the foramen magnum
    low = (z < CENTRE[0] - AXES[0]) & ~brain
    hu[low & (radius < 50.0) & ~head] = 45.0  # neck
    hu[low & (radius < 21.0)] = 1000.0  # the vertebral ring ...
    hu[low & (radius < 14.0)] = 35.0  # ... around the cord
    hu += np.random.default_rng(seed).normal(0.0, 3.0, hu.shape).astype(np.float32)
    return hu, np.broadcast_to(brain, hu.shape)


def with_orbit(hu: np.ndarray, brain: np.ndarray, filling: float) -> tuple[np.ndarray, np.ndarray]:
    """An orbit (fat) or a sinus (air) under the front of the cavity, walled by bone on three sides and
    open to the face; its roof, the skull between it and the brain, reads THIN_PLATE_HU (a thin plate on a 5 mm slab)."""
    z, y, x = _grid()
    span = (np.abs(x) < 20.0) & (y > -100.0) & (y < -35.0)
    cavity = (z > 30.0) & (z < 55.0) & span & ~brain
    roof = cavity & (hu > 160.0)
    orbit = cavity & ~roof & (z < 50.0)
    walls = ((np.abs(x) >= 20.0) & (np.abs(x) < 24.0) | (z < 30.0) & (z > 24.0)) & (np.abs(x) < 24.0)
    walls = walls & (y > -100.0) & (y < -35.0) & (z > 24.0) & (z < 55.0) & ~brain
    out = hu.copy()
    out[walls] = 1000.0
    out[roof] = THIN_PLATE_HU
    out[orbit] = filling
    return out, np.broadcast_to(orbit, hu.shape)


def _paper_grow_leaks(hu: np.ndarray) -> bool:
    closed = dilate_mm(hu > 160.0, SPACING, 7.0)
    return _grow_inside(~closed, hu, (19, 110, 90), VOXEL_ML)[0] is None


def _open_flags(flags) -> list[str]:
    return [flag for flag in flags if "skull is open" in flag or "gap under" in flag]


def test_small_head_is_the_cavity():
    hu, _ = small_head()
    ic = intracranial_region(hu, SPACING)
    assert ic.mask.sum() * VOXEL_ML == pytest.approx(CAVITY_ML, rel=0.03)
    assert not _open_flags(ic.flags)


@pytest.mark.parametrize("filling", [FAT_HU, AIR_HU], ids=["orbit fat", "sinus air"])
def test_thin_roof_over_an_orbit_or_sinus_keeps_the_region_inside(filling):
    hu, brain = small_head()
    hu, orbit = with_orbit(hu, brain, filling)
    assert _paper_grow_leaks(hu)  # the cause: 120 HU is no bone, so the grow runs into the orbit and out of the face
    ic = intracranial_region(hu, SPACING)
    assert not _open_flags(ic.flags)
    assert not (ic.mask & orbit).any()
    assert (ic.mask & (hu < -30.0)).sum() * VOXEL_ML < 0.1
    assert ic.mask.sum() * VOXEL_ML == pytest.approx(CAVITY_ML, rel=0.03)


def test_field_of_view_ending_in_the_face_is_partial_coverage_not_an_open_skull():
    hu, brain = small_head()
    hu, orbit = with_orbit(hu, brain, AIR_HU)
    keep = slice(45, None)  # the image starts at y = -65 mm: through the front of the brain and the sinus
    hu, brain, orbit = hu[:, keep], brain[:, keep], orbit[:, keep]
    assert _paper_grow_leaks(hu)
    ic = intracranial_region(hu, SPACING)
    assert not _open_flags(ic.flags)
    assert any(flag.startswith("Partial coverage") and "edge of the field of view" in flag for flag in ic.flags)
    assert not (ic.mask & orbit).any()
    assert ic.mask.sum() == pytest.approx(brain.sum(), rel=0.03)


def test_small_window_of_thin_bone_is_a_gap_not_an_open_skull():
    hu, _ = small_head()
    z, y, x = _grid()
    window = (hu > 160.0) & ((z - 95.0) ** 2 + x**2 < 11.0**2) & (y > 40.0)  # 22 mm across, at the back
    hu = np.where(window, 80.0, hu).astype(np.float32)
    assert _paper_grow_leaks(hu)
    ic = intracranial_region(hu, SPACING)
    assert not any("skull is open" in flag for flag in ic.flags)
    assert any("gap under 30 mm" in flag for flag in ic.flags)
    assert ic.mask.sum() * VOXEL_ML == pytest.approx(CAVITY_ML, rel=0.03)
    scalp = _inside(z, y, x, 11.0) & ~_inside(z, y, x, 6.0)
    assert (ic.mask & scalp).sum() < 0.001 * ic.mask.sum()


def test_a_wide_opening_is_still_an_open_skull():
    hu, _ = small_head()
    z, _, x = _grid()
    flap = (hu > 160.0) & (z > 90.0) & (x > 25.0)  # a bone flap removed on one side, scalp left over it
    hu = np.where(flap, 30.0, hu).astype(np.float32)
    ic = intracranial_region(hu, SPACING)
    assert any("skull is open" in flag for flag in ic.flags)


def test_sulci_at_the_surface_are_csf_and_hypodense_brain_is_not():
    hu, brain = small_head()
    z, y, x = _grid()
    depth = AXES[2] - np.abs(x)
    sulci = brain & (np.abs(y % 20.0 - 10.5) < 1.1) & (depth < 15.0) & (z > 70.0) & (z < 120.0) & (x > 0)  # 3 mm wide
    deep = brain & ((z - 95.0) ** 2 + (y + 35.0) ** 2 + x**2 < 10.0**2)  # 25 mm from the centroid, 30 mm from the surface
    # A cortical infarct on the other side, mean 18 HU with 5 HU noise: many of its voxels read in range.
    infarct = brain & ((z - 95.0) ** 2 + y**2 + (x + 62.0) ** 2 < 25.0**2)
    noise = np.random.default_rng(1).normal(0.0, 5.0, hu.shape).astype(np.float32)
    hu = np.where(sulci | deep, 5.0, hu)
    hu = np.where(infarct, 18.0 + noise, hu).astype(np.float32)
    assert ((hu[infarct] >= -5) & (hu[infarct] <= 13)).mean() > 0.1
    regions = analysis_region(hu, SPACING)
    assert (regions.csf & sulci).sum() > 0.9 * sulci.sum()
    assert not (regions.csf & deep).any()  # no seed near the centroid reaches it, and it is too deep for a sulcus
    assert (regions.csf & infarct).sum() < 0.01 * infarct.sum()



def test_csf_darker_than_the_range_is_csf_and_dark_brain_alone_is_not():
    """A ventricle reading 1 HU (as the real head's do) with 5 HU noise: its voxels below -5 HU are CSF too.

    Left in the analysis region they were holes and rims of "tissue" darker than any infarct inside the
    ventricle. A dark spot in brain that touches no CSF (here -10 HU, far from the ventricle) stays.
    """
    hu, brain = small_head()
    z, y, x = _grid()
    ventricle = brain & ((z - 95.0) ** 2 / 4.0 + (y - 5.0) ** 2 + (x - 8.0) ** 2 < 12.0**2)
    spot = brain & ((z - 95.0) ** 2 + (y + 40.0) ** 2 + (x + 30.0) ** 2 < 3.0**2)
    noise = np.random.default_rng(2).normal(0.0, 5.0, hu.shape).astype(np.float32)
    hu = np.where(ventricle, 1.0 + noise, hu)
    hu = np.where(spot, -10.0, hu).astype(np.float32)
    assert (hu[ventricle] < -5.0).mean() > 0.05
    regions = analysis_region(hu, SPACING)
    assert regions.csf[ventricle & (hu <= 13.0)].all()  # the noise's bright tail (1%) is left as it was
    assert (regions.region & ventricle).sum() < 0.02 * ventricle.sum()
    assert not (regions.csf & spot).any() and regions.region[spot].all()
    assert not (regions.csf & brain & ~ventricle & ~spot).any()


# ---------------------------------------------------------------- the real head

needs_real_head = pytest.mark.skipif(
    real_head_path() is None,
    reason="the real head CT (Cranium.inv3, Debian package invesalius-examples) is not here; "
    "fetch it with benchmarks/fetch_real_head.sh or set CORELAB_REAL_HEAD",
)


@pytest.fixture(scope="module")
def real_head():
    image = read_inv3(real_head_path())
    volume = Volume(
        array=sitk.GetArrayFromImage(image).astype(np.float32),
        spacing=tuple(float(s) for s in image.GetSpacing()[::-1]),
        origin=image.GetOrigin(),
        direction=image.GetDirection(),
    )
    grid = to_analysis_grid(volume)
    return grid.array, grid.spacing, analysis_region(grid.array, grid.spacing)


@needs_real_head
def test_real_head_reads_as_an_axial_head():
    image = read_inv3(real_head_path())
    hu = sitk.GetArrayFromImage(image)
    # 108 axial slices of 1.5 mm (the plist says coronal; the voxels are not), 0.957 mm in plane.
    assert image.GetSize() == (256, 256, 108) and image.GetSpacing() == pytest.approx((0.957, 0.957, 1.5), abs=1e-3)
    assert -1100 <= hu.min() < -900 and hu.max() > 1500  # HU: air and bone
    rows = (hu > 160).sum(axis=(1, 2))
    # z increases toward the vertex: the skull's last slices are the thin cap of the vault.
    top = np.flatnonzero(rows)[-1]
    assert rows[top - 6 : top + 1].sum() < rows[top - 40 : top - 33].sum()
    # y increases toward the back: the first 33 mm in front hold the nose on low slices and nothing
    # above the brow, the last 33 mm hold the occiput or the head holder on every slice below the vertex.
    front, back = ((part > -200).sum(axis=(1, 2)) for part in (hu[:, :35], hu[:, -35:]))
    assert (front[6:30] > 50).all() and not front[45:].any() and (back[:100] > 100).all()


@pytest.mark.slow
@needs_real_head
def test_real_head_cavity_is_longer_front_to_back_than_it_is_tall(real_head):
    # An adult's cranial cavity is about 165 mm long and 120-135 mm tall above the foramen magnum:
    # on a head read lying on its face (coronal slabs taken for axial) the two swap.
    _, spacing, regions = real_head
    extent = [np.ptp(np.flatnonzero(regions.intracranial.any(axis=tuple(a for a in range(3) if a != k)))) * spacing[k]
              for k in range(3)]
    assert extent[1] > 1.05 * extent[0] and 150.0 < extent[1] < 190.0  # y (back) longer than z (up)
    assert not any(flag.startswith("Orientation:") for flag in regions.flags)


@pytest.mark.slow
@needs_real_head
def test_the_real_head_as_the_old_reader_laid_it_on_its_face_is_flagged():
    # Until 2026-12-07 read_inv3 put the slices along y: the same voxels, [y, z, x] taken for [z, y, x].
    image = read_inv3(real_head_path())
    hu = sitk.GetArrayFromImage(image).astype(np.float32).transpose(1, 0, 2)
    sz, sy, _ = image.GetSpacing()[::-1]
    face_down = Volume(array=np.ascontiguousarray(hu), spacing=(sy, sz, image.GetSpacing()[0]))
    grid = to_analysis_grid(face_down)
    regions = analysis_region(grid.array, grid.spacing)
    assert [flag for flag in regions.flags if flag.startswith("Orientation:")]


@needs_real_head
def test_the_real_heads_own_lesion_is_delineated_in_the_right_frontal_lobe():
    image = read_inv3(real_head_path())
    lesion = sitk.GetArrayFromImage(known_lesion(image)) > 0
    hu = sitk.GetArrayFromImage(image).astype(float)
    ml = lesion.sum() * np.prod(image.GetSpacing()) / 1000.0
    assert 15.0 < ml < 23.0  # about 10 mL of lesion and its 2 mm rim
    z, y, x = np.nonzero(lesion)
    assert x.max() < 128 and y.mean() < 110 and 45 <= z.min() and z.max() < 95  # right, frontal, above the orbits
    ring = dilate_mm(lesion, image.GetSpacing()[::-1], 8.0) & ~dilate_mm(lesion, image.GetSpacing()[::-1], 3.0)
    brain_ring = ring & (hu > 15) & (hu < 60)
    assert np.median(hu[brain_ring]) - np.median(hu[lesion]) > 5.0  # darker than the brain around it
    with pytest.raises(ValueError, match="known point"):
        known_lesion(sitk.Flip(image, (True, False, False)))  # mirrored: no lesion at that point


@pytest.mark.slow
@needs_real_head
def test_real_head_intracranial_region_is_the_cranial_cavity(real_head):
    hu, spacing, regions = real_head
    voxel_ml = math.prod(spacing) / 1000.0
    volume_ml = regions.intracranial.sum() * voxel_ml
    assert 1100.0 <= volume_ml <= 1900.0  # an adult's cranial cavity
    assert (regions.intracranial & (hu < -30.0)).sum() * voxel_ml < 1.0  # no orbit fat, sinus or scalp fat
    assert not (regions.intracranial & (hu < -500.0)).any()
    assert not any("skull is open" in flag for flag in regions.flags)
    assert not any(flag.startswith("Partial coverage") for flag in regions.flags)  # the whole skull above the maxilla


@pytest.mark.slow
@needs_real_head
def test_real_head_csf_covers_ventricles_and_sulci(real_head):
    _, spacing, regions = real_head
    voxel_ml = math.prod(spacing) / 1000.0
    csf_ml = regions.csf.sum() * voxel_ml
    # At least an adult's ventricles and basal cisterns (about 25 mL and more, with partial volume on
    # 5 mm slabs); at most a fifth of the cavity (a leak into brain: regions flags over a quarter).
    assert 40.0 <= csf_ml <= 0.2 * regions.intracranial.sum() * voxel_ml
    # Sulci: CSF within 20 mm of the surface, and over the convexity in the 2 cm above the lateral
    # ventricles (5.8 mL, 4.3 of them by the paper's grow through the interhemispheric fissure). The
    # top 1.5 cm of the cavity reads bone partial volume on 5 mm slabs (median 30-300 HU) and holds none.
    shallow = dilate_mm(~regions.intracranial, spacing, 20.0)
    assert (regions.csf & shallow).sum() * voxel_ml > 40.0
    top = np.flatnonzero(regions.intracranial.any(axis=(1, 2)))[-1]
    assert regions.csf[top - 7 : top - 3].sum() * voxel_ml > 3.0
    # Its ventricles read about 2 HU, so with this scanner's noise many of their voxels lie below the
    # paper's -5 HU (with a partial-volume rim at the skull base, 18 mL in all); they are CSF, not the
    # darkest "brain" of the analysis region.
    hu = real_head[0]
    assert (regions.region & (hu < -5.0)).sum() * voxel_ml < 1.0
