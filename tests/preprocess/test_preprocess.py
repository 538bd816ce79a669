"""Preprocessing on phantoms built here with known anatomy and hand-worked answers.

The head phantom: an ellipsoidal cranial cavity (semi-axes 60 x 85 x 68 mm, 1452.7 mL) of brain
(32 HU) with two ventricles (ellipsoids 16 x 32 x 11 mm, 47.2 mL of CSF at 5 HU, as in older stroke patients), a 6 mm skull
(1000 HU) opened at the bottom by a 16 mm radius foramen magnum over a bony spinal canal, a 5 mm
scalp, neck soft tissue and air. Slabs are the mean of five 1 mm samples (partial volume as a real
5 mm reconstruction has it) plus 3 HU noise; ``tissue`` holds the tissue at each voxel centre.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

import corelab.preprocess as pre
from corelab.config import CSFParams, GridParams, IntracranialParams, Method
from corelab.errors import PreprocessError
from corelab.io.volume import Volume
from corelab.preprocess import (
    AnalysisGridError,
    ConstantImageError,
    EmptyImageError,
    NoBoneError,
    NotHounsfieldError,
    SkullNotFoundError,
    analysis_region,
    csf_region,
    intracranial_region,
    labels_to_input_grid,
    mask_to_analysis_grid,
    to_analysis_grid,
)
from corelab.preprocess.intracranial import _grow_inside
from corelab.pipeline.outputs import needs_review
from corelab.preprocess.morphology import dilate_mm

# ---------------------------------------------------------------- phantom

SPACING = (5.0, 1.0, 1.0)
VOXEL_ML = 5.0 / 1000.0
CAVITY = (100.0, 0.0, 0.0, 60.0, 85.0, 68.0)  # centre z, y, x; semi-axes z, y, x (mm)
SKULL_MM, SCALP_MM = 6.0, 5.0
VENTRICLES = [((105.0, 5.0, -13.0), (16.0, 32.0, 11.0)), ((105.0, 5.0, 13.0), (16.0, 32.0, 11.0))]
FORAMEN_Y, FORAMEN_R, CANAL_R, RING_R, NECK_R = 10.0, 16.0, 14.0, 22.0, 55.0
CLASSES = ["air", "scalp", "bone", "brain", "csf", "cord", "neck"]
HU = np.array([-1000.0, 30.0, 1000.0, 32.0, 5.0, 35.0, 45.0], np.float32)
AIR, SCALP, BONE, BRAIN, CSF, CORD, NECK = range(7)
Y_MM, X_MM, HEIGHT_MM = (-105.0, 145.0), (-100.0, 100.0), 190.0


def ellipsoid_ml(semi_axes) -> float:
    return 4.0 / 3.0 * math.pi * float(np.prod(semi_axes)) / 1000.0


CAVITY_ML = ellipsoid_ml(CAVITY[3:])  # 1452.7 mL
VENTRICLES_ML = sum(ellipsoid_ml(axes) for _, axes in VENTRICLES)  # 47.2 mL


def _tissue(z, y, x) -> np.ndarray:
    cz, cy, cx, az, ay, ax = CAVITY

    def inside(pad):
        return ((z - cz) / (az + pad)) ** 2 + ((y - cy) / (ay + pad)) ** 2 + ((x - cx) / (ax + pad)) ** 2 <= 1

    cavity, skull, head = inside(0.0), inside(SKULL_MM), inside(SKULL_MM + SCALP_MM)
    radius = np.sqrt((y - FORAMEN_Y) ** 2 + x**2)
    below = z < cz - az
    out = np.zeros(np.broadcast(z, y, x).shape, np.uint8)
    out[head] = SCALP
    out[skull] = BONE
    out[cavity] = BRAIN
    out[skull & ~cavity & (radius < FORAMEN_R) & (z < cz)] = CORD
    out[below & (radius < NECK_R) & ~head] = NECK
    out[below & (radius < RING_R) & ~cavity] = BONE
    out[below & (radius < CANAL_R) & ~cavity] = CORD
    for (vz, vy, vx), (sz, sy, sx) in VENTRICLES:
        out[((z - vz) / sz) ** 2 + ((y - vy) / sy) ** 2 + ((x - vx) / sx) ** 2 <= 1] = CSF
    return out


def head_phantom(*, seed: int = 0, noise: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """(hu [z, y, x] on 5 x 1 x 1 mm, tissue class at each voxel centre)."""
    nz = int(HEIGHT_MM / SPACING[0])
    y = Y_MM[0] + 0.5 + np.arange(int(Y_MM[1] - Y_MM[0]))[None, :, None]
    x = X_MM[0] + 0.5 + np.arange(int(X_MM[1] - X_MM[0]))[None, None, :]
    hu = np.zeros((nz, y.size, x.size), np.float32)
    tissue = np.zeros(hu.shape, np.uint8)
    for k in range(nz):
        thin = k * 5.0 + np.arange(5)[:, None, None] + 0.5  # five 1 mm samples through the slab
        hu[k] = HU[_tissue(thin, y, x)].mean(axis=0)
        tissue[k] = _tissue(np.array([[[k * 5.0 + 2.5]]]), y, x)[0]
    hu += np.random.default_rng(seed).normal(0.0, noise, hu.shape).astype(np.float32)
    return hu, tissue


def z_centres() -> np.ndarray:
    return np.arange(int(HEIGHT_MM / SPACING[0])) * SPACING[0] + SPACING[0] / 2


def x_centres() -> np.ndarray:
    return X_MM[0] + 0.5 + np.arange(int(X_MM[1] - X_MM[0]))


@pytest.fixture(scope="module")
def phantom():
    return head_phantom()


@pytest.fixture(scope="module")
def regions(phantom):
    return analysis_region(phantom[0], SPACING)


def not_intracranial(tissue: np.ndarray) -> np.ndarray:
    return np.isin(tissue, [AIR, SCALP, BONE, NECK])


# ---------------------------------------------------------------- intracranial region and CSF


def test_intracranial_volume_within_5_percent(regions):
    volume_ml = regions.intracranial.sum() * VOXEL_ML
    assert volume_ml == pytest.approx(CAVITY_ML, rel=0.05)
    assert regions.flags == ()


def test_csf_is_the_ventricles_within_10_percent(regions, phantom):
    _, tissue = phantom
    assert regions.csf.sum() * VOXEL_ML == pytest.approx(VENTRICLES_ML, rel=0.10)
    # Everything grown is ventricle or its partial-volume edge, nothing of the brain far away.
    near = dilate_mm(tissue == CSF, SPACING, 5.0)
    assert not (regions.csf & ~near).any()


def test_no_voxel_of_skull_scalp_or_neck_inside(regions, phantom):
    hu, tissue = phantom
    assert not (regions.intracranial & not_intracranial(tissue)).any()
    assert not (regions.region & (hu > 160)).any()
    assert np.array_equal(regions.region, regions.intracranial & ~regions.csf & (hu <= 160))


def test_foramen_magnum_slice_found_and_below_dropped(regions, phantom):
    _, tissue = phantom
    # Hand-worked: the cavity ends at z = 40 mm, so slab 8 (40-45 mm) holds only its tip
    # (866 mm^2 < 900) while slab 9 holds 3172 mm^2; the canal runs below it to the image edge.
    assert regions.foramen_slice == 8
    assert not regions.intracranial[:8].any()
    assert (tissue[:8] == CORD).any()


def _craniectomy(hu: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """The phantom with a bone flap removed on the left above 90 mm (scalp-like tissue in its place)."""
    flap = (tissue == BONE) & (x_centres()[None, None, :] > 30) & (z_centres()[:, None, None] > 90)
    flap = dilate_mm(flap, SPACING, 2.0) & (hu > 160)  # the slabs that held part of the flap too
    return np.where(flap, 30.0, hu).astype(np.float32)


def test_craniectomy_is_closed_under_the_skin_and_flagged(phantom):
    hu, tissue = phantom
    hu = _craniectomy(hu, tissue)
    closed = dilate_mm(hu > 160, SPACING, 7.0)
    assert _grow_inside(~closed, hu, (20, 100, 100), VOXEL_ML)[0] is None  # the paper's grow leaks out
    ic = intracranial_region(hu, SPACING)
    assert any("closed under the skin" in flag for flag in ic.flags)
    # The opening itself (where the flap was) now counts as inside; the cavity is all there.
    assert ic.mask.sum() * VOXEL_ML == pytest.approx(CAVITY_ML, rel=0.05)
    assert (ic.mask & np.isin(tissue, [BRAIN, CSF])).sum() > 0.98 * np.isin(tissue, [BRAIN, CSF]).sum()
    assert not (ic.mask & np.isin(tissue, [AIR, NECK])).any()
    assert (ic.mask & (tissue == SCALP)).sum() < 0.001 * ic.mask.sum()


def test_craniectomy_next_to_thick_soft_tissue_is_closed_across_the_opening(phantom):
    hu, tissue = phantom
    hu = _craniectomy(hu, tissue)
    # A thick soft-tissue mass (a pillow-like muscle block) against the opening, out to the image edge.
    block = np.isin(tissue, [AIR, SCALP]) & (x_centres()[None, None, :] > 60) & (z_centres()[:, None, None] > 60)
    hu[block] = 45.0
    ic = intracranial_region(hu, SPACING)
    assert any("closed across the opening" in flag for flag in ic.flags)
    assert not (ic.mask & block).any()
    # The brain beyond the chord across the opening is lost: less volume, but not a whole-image mask.
    assert 0.75 * CAVITY_ML < ic.mask.sum() * VOXEL_ML < CAVITY_ML


@pytest.mark.parametrize("plate_mm", [45.0, 90.0])
def test_centre_of_gravity_off_the_cavity_moves_the_seed(phantom, plate_mm):
    hu, tissue = phantom
    hu = hu.copy()
    # A dense head rest behind the head pulls the bone's centre of gravity out of the cavity.
    y = Y_MM[0] + 0.5 + np.arange(hu.shape[1])
    hu[:, (y > 100) & (y < 100 + plate_mm), :] = 1000.0
    cog = tuple(int(round(c)) for c in np.argwhere(hu > 160).mean(axis=0))
    assert tissue[cog] not in (BRAIN, CSF)  # the situation under test really happens
    ic = intracranial_region(hu, SPACING)
    assert any("center of gravity" in flag for flag in ic.flags)
    assert ic.mask.sum() * VOXEL_ML == pytest.approx(CAVITY_ML, rel=0.05)
    assert not (ic.mask & not_intracranial(tissue)).any()


def test_a_larger_pocket_of_enclosed_air_is_not_taken_for_the_cavity():
    spacing = (5.0, 2.0, 2.0)
    hu = np.full((20, 120, 200), -1000.0, np.float32)
    hu[2:18, 10:60, 10:60] = 1000.0  # box A: bone walls around 448 mL of brain
    hu[3:17, 15:55, 15:55] = 30.0
    hu[2:18, 10:110, 100:190] = 1000.0  # box B (a head holder): bone walls around 980 mL of air
    hu[3:17, 15:105, 105:185] = -1000.0
    ic = intracranial_region(hu, spacing)
    brain = np.zeros(hu.shape, bool)
    brain[3:17, 15:55, 15:55] = True
    assert not (ic.mask & (hu < -500)).any()
    assert ic.mask.sum() == pytest.approx(brain.sum(), rel=0.05)
    assert any("center of gravity" in flag for flag in ic.flags)


def test_skull_cut_by_the_field_of_view_is_flagged(phantom):
    hu, tissue = phantom
    keep = x_centres() < 50.0  # the image edge cuts through skull and brain on one side
    ic = intracranial_region(hu[:, :, keep], SPACING)
    assert any("edge of the field of view" in flag for flag in ic.flags)
    truth = np.isin(tissue[:, :, keep], [BRAIN, CSF]).sum() * VOXEL_ML
    assert ic.mask.sum() * VOXEL_ML == pytest.approx(truth, rel=0.05)
    assert not (ic.mask & not_intracranial(tissue[:, :, keep])).any()


def test_a_head_laid_on_its_face_by_its_header_is_flagged_and_an_upright_one_is_not(regions, phantom):
    hu, _ = phantom
    assert not any(flag.startswith("Orientation:") for flag in regions.flags)
    # The same voxels with the slice axis taken for front-to-back: the cavity 170 mm "tall", 120 "long".
    laid = np.ascontiguousarray(hu.transpose(1, 0, 2))
    ic = intracranial_region(laid, (SPACING[1], SPACING[0], SPACING[2]))
    assert [flag for flag in ic.flags if flag.startswith("Orientation:")]
    assert needs_review(ic.flags)


def test_scan_stopping_below_the_vertex_is_flagged(phantom):
    hu, _ = phantom
    ic = intracranial_region(hu[:27], SPACING)  # up to 135 mm; the cavity reaches 160 mm
    assert any("below the top of the skull" in flag for flag in ic.flags)


def test_no_foramen_magnum_in_view_keeps_everything_and_flags(phantom):
    hu, tissue = phantom
    ic = intracranial_region(hu[14:], SPACING)  # from 70 mm up: the skull base is not in the scan
    assert ic.foramen_slice is None
    assert any(flag.startswith("Partial coverage: no foramen magnum") for flag in ic.flags)
    truth = np.isin(tissue[14:], [BRAIN, CSF]).sum() * VOXEL_ML
    assert ic.mask.sum() * VOXEL_ML == pytest.approx(truth, rel=0.05)


def test_blurred_inner_table_is_placed_half_way():
    # A 50 mm ball of brain in a 7 mm skull, blurred in-plane (sigma 1 mm) as a scanner does: the
    # 160 HU threshold stops about 1.2 sigma short of the edge; the partial-volume rim restores it.
    from scipy import ndimage as ndi

    spacing = (5.0, 0.5, 0.5)
    z, y, x = np.ogrid[-60:61:5, -70:70.5:0.5, -70:70.5:0.5]
    r = np.sqrt(x**2 + y**2 + z**2)
    head = np.where(r < 50, 32.0, np.where(r < 57, 1200.0, np.where(r < 62, 30.0, -1000.0))).astype(np.float32)
    head = ndi.gaussian_filter(head, sigma=(0, 2, 2))
    ball_ml = sum(math.pi * max(50.0**2 - zc**2, 0.0) * 5.0 for zc in range(-60, 61, 5)) / 1000.0  # slab-wise discs
    ic = intracranial_region(head, spacing)
    assert ic.mask.sum() * 5.0 * 0.25 / 1000.0 == pytest.approx(ball_ml, rel=0.02)
    assert not ic.mask[r > 52].any()


def test_one_slice_through_the_head(phantom):
    hu, tissue = phantom
    ic = intracranial_region(hu[20:21], SPACING)
    truth = np.isin(tissue[20], [BRAIN, CSF]).sum() * VOXEL_ML
    assert ic.mask.sum() * VOXEL_ML == pytest.approx(truth, rel=0.05)
    assert any(flag.startswith("Partial coverage: no foramen magnum") for flag in ic.flags)
    assert any("only" in flag and "mL" in flag for flag in ic.flags)


def test_no_enclosed_space_is_a_named_error():
    hu = np.full((6, 80, 80), -1000.0, np.float32)
    hu[:, 30:50, 10:70] = 40.0
    hu[:, 50:56, 10:70] = 1000.0  # a bone plate that encloses nothing
    with pytest.raises(SkullNotFoundError):
        intracranial_region(hu, SPACING)


@pytest.mark.parametrize(
    ("hu", "error"),
    [
        (np.zeros((0, 10, 10)), EmptyImageError),
        (np.full((4, 10, 10), 40.0), ConstantImageError),
        (np.full((4, 10, 10), 3000.0), ConstantImageError),
        (np.where(np.arange(400).reshape(4, 10, 10) % 2, 40.0, -1000.0), NoBoneError),
        (np.where(np.arange(400).reshape(4, 10, 10) % 5, 1200.0, 0.0), NotHounsfieldError),
    ],
)
def test_unusable_images_give_named_errors(hu, error):
    with pytest.raises(error) as caught:
        analysis_region(hu, SPACING)
    assert isinstance(caught.value, PreprocessError)
    assert str(caught.value).endswith(".") and "\n" not in str(caught.value)


def test_no_csf_near_the_centroid_is_flagged_not_an_error(phantom):
    hu, tissue = phantom
    ventricles = dilate_mm(tissue == CSF, SPACING, 5.0)  # with their partial-volume edge
    hu = np.where(ventricles, 32.0, hu).astype(np.float32)  # filled with brain
    regions = analysis_region(hu, SPACING)
    assert not regions.csf.any()
    assert any("No CSF seed" in flag for flag in regions.flags)


def test_csf_grow_stays_inside_the_intracranial_region():
    hu = np.full((3, 41, 41), 30.0, np.float32)
    hu[:, 18:23, :] = 5.0  # a CSF-like band that runs out of the region on both sides
    inside = np.zeros(hu.shape, bool)
    inside[:, :, 5:36] = True
    csf = csf_region(hu, (5.0, 1.0, 1.0), inside)
    assert csf.sum() == 3 * 5 * 31
    assert not (csf & ~inside).any()
    with pytest.raises(PreprocessError):
        csf_region(hu, (5.0, 1.0, 1.0), np.zeros(hu.shape, bool))


def test_parameters_come_from_the_method_object(phantom):
    hu, _ = phantom
    narrow = Method(csf=CSFParams(seed_radius_mm=15.0, lower_hu=-5.0, upper_hu=0.0))
    assert analysis_region(hu, SPACING, narrow).csf.sum() < 0.5 * analysis_region(hu, SPACING).csf.sum()
    loose = IntracranialParams(bone_hu=2000.0)  # nothing is bone
    with pytest.raises(NoBoneError):
        intracranial_region(hu, SPACING, loose)


# ---------------------------------------------------------------- analysis grid


def _volume(array, spacing, origin=(10.0, -20.0, 30.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> Volume:
    return Volume(array=np.asarray(array), spacing=spacing, origin=origin, direction=tuple(float(d) for d in direction))


def test_thin_slices_become_5mm_slabs_of_their_mean():
    rng = np.random.default_rng(1)
    thin = rng.normal(30.0, 10.0, (20, 6, 7)).astype(np.float32)
    grid = to_analysis_grid(_volume(thin, (1.0, 0.45, 0.45)))
    assert grid.spacing == (5.0, 0.45, 0.45)
    assert np.allclose(grid.array, thin.reshape(4, 5, 6, 7).mean(axis=1), atol=1e-4)
    # Slab 0's centre lies 2 mm above the first 1 mm slice's centre.
    assert grid.origin == pytest.approx((10.0, -20.0, 32.0))
    assert any("averaged into 4 slabs" in note for note in grid.meta.notes)


def test_spacing_that_does_not_divide_5mm_shares_slices_by_overlap():
    thin = np.array([10.0, 20.0, 30.0, 40.0, 50.0], np.float32)[:, None, None] * np.ones((5, 2, 2), np.float32)
    grid = to_analysis_grid(_volume(thin, (2.0, 0.45, 0.45)))  # 10 mm: slab 0 = 0-5 mm, slab 1 = 5-10 mm
    assert grid.array[:, 0, 0] == pytest.approx([0.4 * 10 + 0.4 * 20 + 0.2 * 30, 0.2 * 30 + 0.4 * 40 + 0.4 * 50])


def test_5mm_input_round_trips_labels_exactly():
    rng = np.random.default_rng(2)
    hu = rng.normal(30.0, 5.0, (6, 20, 24)).astype(np.float32)
    scan = _volume(hu, (5.0, 0.45, 0.45), direction=(0.8, -0.6, 0, 0.6, 0.8, 0, 0, 0, 1))
    grid = to_analysis_grid(scan)
    assert np.array_equal(grid.array, hu)
    labels = rng.integers(0, 5, hu.shape).astype(np.uint8)
    assert np.array_equal(labels_to_input_grid(labels, grid, scan), labels)
    assert np.array_equal(mask_to_analysis_grid(_volume(labels, scan.spacing, scan.origin, scan.direction), grid), labels)


def test_thin_slice_labels_go_back_to_every_slice_of_their_slab():
    scan = _volume(np.zeros((12, 4, 4), np.float32), (1.0, 0.45, 0.45))
    grid = to_analysis_grid(scan)  # 12 mm: two full slabs, a 2 mm remnant dropped
    assert grid.array.shape[0] == 2
    labels = np.zeros(grid.array.shape, np.uint8)
    labels[0], labels[1] = 1, 4
    back = labels_to_input_grid(labels, grid, scan)
    assert back[:, 0, 0].tolist() == [1] * 5 + [4] * 5 + [0, 0]


def test_reference_mask_slab_majority_and_ties():
    scan = _volume(np.zeros((5, 1, 4), np.float32), (1.0, 0.45, 0.45))
    grid = to_analysis_grid(scan)
    mask = np.zeros((5, 1, 4), np.uint8)
    mask[:3, 0, 0] = 1  # 3 of 5 thin voxels: foreground
    mask[:2, 0, 1] = 1  # 2 of 5: background
    mask[:2, 0, 2], mask[2:4, 0, 2] = 1, 4  # 4 of 5, labels tied 2:2 -> the higher label
    mask[:, 0, 3] = [2, 2, 2, 4, 0]  # 4 of 5, label 2 most frequent
    out = mask_to_analysis_grid(_volume(mask, scan.spacing, scan.origin), grid)
    assert out[0, 0].tolist() == [1, 0, 4, 2]
    assert out.dtype == np.uint8
    # 2.5 mm slices: one of two is a tie and counts as foreground.
    half = _volume(np.array([[[3, 0]], [[0, 0]]], np.uint8), (2.5, 0.45, 0.45))
    assert mask_to_analysis_grid(half, to_analysis_grid(half))[0, 0].tolist() == [3, 0]


def test_mask_on_a_different_pixel_grid_keeps_its_volume():
    z, y, x = np.ogrid[0:8, 0:100, 0:100]
    ball = ((z - 4) * 5.0) ** 2 + ((y - 50) * 0.5) ** 2 + ((x - 50) * 0.5) ** 2 <= 15.0**2
    scan = _volume(ball.astype(np.float32) * 40, (5.0, 0.5, 0.5))
    grid = to_analysis_grid(scan)
    assert grid.array.shape == (8, 111, 111)
    on_grid = mask_to_analysis_grid(_volume(ball.astype(np.uint8), scan.spacing, scan.origin), grid)
    assert on_grid.sum() * grid.voxel_ml == pytest.approx(ball.sum() * scan.voxel_ml, rel=0.03)
    back = labels_to_input_grid(on_grid, grid, scan).astype(bool)
    dice = 2 * (back & ball).sum() / (back.sum() + ball.sum())
    assert dice > 0.97


def test_in_plane_resampling_keeps_the_field_of_view():
    scan = _volume(np.full((3, 64, 80), 40.0, np.float32), (5.0, 0.9, 0.9))
    grid = to_analysis_grid(scan)
    assert grid.array.shape == (3, 128, 160)
    assert grid.spacing == (5.0, 0.45, 0.45)
    # The first new pixel centre lies a quarter of an old pixel inside the old first centre.
    assert grid.origin == pytest.approx((10.0 - 0.225, -20.0 - 0.225, 30.0))
    assert np.allclose(grid.array[:, 2:-2, 2:-2], 40.0, atol=1e-3)


def test_slices_stored_top_down_are_reversed_in_place():
    hu = np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 3, 3), np.float32)
    scan = _volume(hu, (5.0, 0.45, 0.45), origin=(0.0, 0.0, 100.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, -1))
    grid = to_analysis_grid(scan)
    assert grid.array[:, 0, 0].tolist() == [3.0, 2.0, 1.0, 0.0]  # index 0 is now the lowest slice
    assert grid.direction[8] == 1.0 and grid.origin[2] == pytest.approx(85.0)
    labels = np.arange(4, dtype=np.uint8)[:, None, None] * np.ones((4, 3, 3), np.uint8)
    assert labels_to_input_grid(labels, grid, scan)[:, 0, 0].tolist() == [3, 2, 1, 0]


def test_unusable_grids_give_named_errors():
    with pytest.raises(AnalysisGridError):
        to_analysis_grid(_volume(np.zeros((0, 4, 4), np.float32), (1.0, 0.45, 0.45)))
    coronal = (1, 0, 0, 0, 0, 1, 0, -1, 0)  # slice axis along y
    with pytest.raises(AnalysisGridError):
        to_analysis_grid(_volume(np.zeros((3, 4, 4), np.float32), (5.0, 0.45, 0.45), direction=coronal))
    scan = _volume(np.zeros((3, 4, 4), np.float32), (5.0, 0.45, 0.45))
    with pytest.raises(AnalysisGridError):
        labels_to_input_grid(np.zeros((2, 4, 4), np.uint8), to_analysis_grid(scan), scan)
    with pytest.raises(AnalysisGridError):
        to_analysis_grid(scan, GridParams(slice_mm=0.0))


def test_docstring_examples_hold():
    for module in (pre.grid, pre.intracranial, pre.csf, pre.regions, pre.morphology, pre.exceptions):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
