"""One synthetic patient in memory: `make_patient(seed) -> Phantom` (HU volume, truth labels, spacing).

Used by `make_trial` (which writes files) and directly by tests and training, without DICOM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from corelab.config import CLASS_RANGES_HU, CLASSES, LABELS
from corelab.errors import CorelabError
from corelab.io.volume import Volume
from corelab.synth import anatomy, lesions, physics
from corelab.synth.anatomy import T
from corelab.synth.fields import FineGrid, rotation_matrix, smooth_noise
from corelab.synth.scanner import Scanner, draw_scanner
from corelab.synth.wide_physics import PHYSICS, apply_physics

__all__ = [
    "Phantom", "PatientTruth", "make_patient", "SynthError", "FineScan", "LesionFacts", "render_scan", "pure_tissue",
    "draw_with_retries", "check_physics",
]

MIXED = 255  # tissue code of an output voxel that mixes tissues


class SynthError(CorelabError):
    """A synthetic patient or trial cannot be generated with the parameters given."""


def check_physics(name: str) -> None:
    """Raise `SynthError` unless ``name`` is a scanner-physics option ("default" or "wide")."""
    if name not in PHYSICS:
        raise SynthError(f"Unknown scanner physics {name!r}; use default or wide.")


@dataclass(frozen=True)
class PatientTruth:
    """What was put into a phantom, and what it measures on the written grid.

    hypodensity: "severe" / "intermediate" / "subtle", or "none" for a control.
    mean_hu: mean HU of the written scan inside the truth infarct without haemorrhage (nan if none).
    target_hu: the mean HU aimed at. Volumes in mL on the output grid (label voxels x voxel volume).
    territory, side: vascular territory and "left" / "right" ("" for controls).
    mimics: present mimics among "old infarct", "leukoaraiosis", "atrophy".
    hemorrhage: "", "petechial" or "hematoma".
    family: the phantom family that drew it, "procedural" (`make_patient`) or "atlas" (MNI152 anatomy).
    physics: what the opt-in "wide" scanner physics added (`physics.AppliedPhysics`), None by default.
    """

    hypodensity: str
    mean_hu: float
    target_hu: float
    infarct_ml: float
    class_ml: float
    hemorrhage_ml: float
    territory: str
    side: str
    mimics: tuple[str, ...]
    hemorrhage: str
    old_infarct_ml: float
    noise_sd_hu: float
    hu_offset: float
    satellites: int
    family: str = "procedural"
    physics: physics.AppliedPhysics | None = None


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic follow-up NCCT and its truth, on the scan's grid.

    hu: float32 [z, y, x] HU as written (integers after rescale).
    labels: uint8 [z, y, x]: 0 background, 1 severe, 2 intermediate, 3 subtle, 4 haemorrhage.
    tissue: uint8 [z, y, x] tissue code (`anatomy.T`) where the whole slab holds one tissue before
        lesions are drawn; `MIXED` (255) where partial volume mixes tissues.
    spacing: (z, y, x) mm; origin: LPS (x, y, z) mm of voxel [0, 0, 0]; direction: identity (axial).
    """

    hu: np.ndarray
    labels: np.ndarray
    tissue: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    truth: PatientTruth
    scanner: Scanner
    slice_mm: float
    direction: tuple[float, ...] = field(default=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))

    def volume(self) -> Volume:
        """The scan as a corelab `Volume`."""
        return Volume(array=self.hu, spacing=self.spacing, origin=self.origin, direction=self.direction)

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0


SUBTLE_ATTEMPTS = 8  # brains drawn for a subtle patient before its scan is read as calibrated high


class _TooDark(Exception):
    """This brain reads too dark for a subtle infarct: the class's mean HU is out of reach."""

    def __init__(self, scanner: Scanner) -> None:
        super().__init__("subtle infarct out of reach")
        self.scanner = scanner


def make_patient(
    seed: int | tuple[int, ...],
    *,
    matrix: int = 512,
    thin_slices: bool = False,
    hypodensity: str | None = None,
    scanner: Scanner | None = None,
    physics: str = "default",
    slice_mm: float | None = None,
) -> Phantom:
    """Generate one patient's follow-up NCCT phantom, deterministically for ``seed``.

    hypodensity: "severe", "intermediate", "subtle" or "none" (control); drawn when None
    (controls 10%, classes in the paper's proportions). matrix: in-plane size (512 as scanners;
    128 for fast tests, same field of view). thin_slices: 0.5-1.5 mm slices instead of 5 mm.
    slice_mm: the acquired slice thickness (mm) instead of either (the same draws of head, lesions
    and pose as at 5 mm; texture and noise are drawn on the finer grid;
    `corelab.synth.wide_physics.draw_slice_mm` draws one per "wide" patient).
    physics: "default", or "wide" for kernel noise, calibration offset, cupping and posterior-fossa
    streaks added after rendering (`corelab.synth.wide_physics`; default output is unchanged).

    A subtle infarct's mean must read >= 32 HU while staying 2-6 HU below the brain it replaced,
    which a dark brain on a dark scanner cannot give. Such a patient is drawn again (another brain
    and infarct, same scanner), as a trial's subtle infarcts are those of brains that read bright
    enough; the scanner's calibration is never shifted for the class (it would tell the class from
    the whole scan's brightness). Only after `SUBTLE_ATTEMPTS` dark brains is the scan read as from
    a scanner calibrated high (`PatientTruth.hu_offset` says by how much).

    >>> p = make_patient(1, matrix=64, hypodensity="severe")
    >>> p.hu.shape[1:], p.truth.hypodensity, 14 <= p.truth.mean_hu < 22
    ((64, 64), 'severe', True)
    """
    check_physics(physics)
    ph = draw_with_retries(_draw_patient, seed, matrix=matrix, thin_slices=thin_slices, hypodensity=hypodensity,
                           scanner=scanner, slice_mm=slice_mm)
    return apply_physics(ph, physics, seed if isinstance(seed, tuple) else (int(seed),))


def draw_with_retries(
    draw, seed: int | tuple[int, ...], *, matrix: int, thin_slices: bool, hypodensity: str | None,
    scanner: Scanner | None, slice_mm: float | None = None,
) -> Phantom:
    """Check the options, then call a family's ``draw(seeds, ..., may_lift=...)`` until a subtle
    infarct is within reach (`SUBTLE_ATTEMPTS`, see `make_patient`)."""
    if matrix < 32 or matrix % 2:
        raise SynthError(f"The matrix must be an even number of at least 32 pixels, not {matrix}.")
    if hypodensity not in (None, "none", *CLASSES):
        raise SynthError(f"Unknown hypodensity class {hypodensity!r}; use severe, intermediate, subtle or none.")
    if slice_mm is not None and not 0.5 <= slice_mm <= 10.0:
        raise SynthError(f"The slice thickness must be 0.5-10 mm, not {slice_mm:g} mm.")
    seeds = seed if isinstance(seed, tuple) else (int(seed),)
    for attempt in range(SUBTLE_ATTEMPTS):
        try:
            return draw(
                seeds if attempt == 0 else (*seeds, 7727, attempt), matrix=matrix, thin_slices=thin_slices,
                hypodensity=hypodensity, scanner=scanner, may_lift=attempt == SUBTLE_ATTEMPTS - 1, slice_mm=slice_mm,
            )
        except _TooDark as dark:
            hypodensity, scanner = "subtle", dark.scanner
    raise AssertionError("unreachable: the last attempt may lift the calibration")


def _draw_patient(
    seeds: tuple[int, ...], *, matrix: int, thin_slices: bool, hypodensity: str | None, scanner: Scanner | None,
    may_lift: bool, slice_mm: float | None = None,
) -> Phantom:
    """One draw of `make_patient`; raises `_TooDark` for an unreachable subtle infarct unless ``may_lift``."""
    # Separate streams, so the drawn parameters do not depend on the matrix size.
    rng, field_rng, noise_rng = (np.random.default_rng(c) for c in np.random.SeedSequence(list(seeds)).spawn(3))
    if scanner is None:
        scanner = draw_scanner(rng, site="S0")
    if hypodensity is None:
        hypodensity = "none" if rng.random() < 0.1 else str(rng.choice(CLASSES, p=list(lesions.CLASS_SHARE.values())))

    # Mimics are drawn first so an atrophic brain has wide sulci everywhere.
    has_atrophy = rng.random() < 0.3
    anat = anatomy.draw_anatomy(rng, atrophy=float(rng.uniform(0.6, 1.0)) if has_atrophy else None)
    thu = anatomy.draw_tissue_hu(rng)
    vertex = anat.brain_radii[3] + anat.sas_mm + anat.skull_mm + anat.scalp_mm
    grid, center, rot = _draw_geometry(
        rng, scanner, matrix=matrix, thin_slices=thin_slices, scale=anat.scale, vertex_mm=vertex, slice_mm=slice_mm
    )
    x, y, z = _head_coordinates(grid, center, rot)
    shp, sp = grid.shape, grid.spacing
    low = smooth_noise(field_rng, shp, sp, corr_mm=40.0)
    mid = smooth_noise(field_rng, shp, sp, corr_mm=10.0)
    gyral = smooth_noise(field_rng, shp, sp, corr_mm=anat.gyrus_mm)
    fine = smooth_noise(field_rng, shp, sp, corr_mm=2.5)
    lab, depth = anatomy.tissue_labels(x, y, z, anat, shape_noise=low, gyral=gyral, fine=fine)
    hu = anatomy.tissue_to_hu(lab, thu, texture=0.6 * mid + 0.8 * fine, fine=fine)
    parenchyma = np.isin(lab, T.PARENCHYMA)
    mimics: list[str] = ["atrophy"] if has_atrophy else []

    if rng.random() < 0.3:  # leukoaraiosis: periventricular caps and deep white-matter patches
        grown = anatomy.AnatomyParams(**{**anat.__dict__, "atrophy": anat.atrophy + rng.uniform(1.4, 2.2)})
        halo = np.zeros(shp, dtype=bool)
        anatomy.paint_ventricles(halo, x, y, z, grown, True)
        halo |= (mid > 1.3) & (depth > 14)
        leuko = halo & (lab == T.WM) & (z > -10 * anat.scale)
        hu[leuko] -= (rng.uniform(4.0, 8.0) * (0.7 + 0.3 * np.tanh(mid[leuko]))).astype(np.float32)
        mimics.append("leukoaraiosis")

    side = int(rng.choice((-1, 1)))
    old = np.zeros(shp, dtype=bool)
    if rng.random() < 0.25:  # old infarct: CSF-like, sharp, usually in the other hemisphere
        old_side = -side if rng.random() < 0.7 else side
        name = "lacunar" if rng.random() < 0.4 else str(rng.choice(["MCA-superior", "MCA-inferior", "PCA", "ACA"]))
        ter = lesions.TERRITORIES[name]
        ml = rng.uniform(0.2, 1.2) if name == "lacunar" else rng.uniform(3.0, 25.0)
        old = lesions.grow_in_territory(
            rng, x, y, z, ter, old_side, anat.scale, parenchyma, mid, ml / grid.voxel_ml, warp=low, gyral=gyral
        )
        hu[old] = thu.csf + rng.uniform(1.0, 5.0)
        mimics.append("old infarct")

    infarct = np.zeros(shp, dtype=bool)
    hem = np.zeros(shp, dtype=bool)
    weight = np.zeros(shp, dtype=np.float32)
    deficit = np.zeros(shp, dtype=np.float32)
    territory, hem_kind, satellites = "", "", 0
    if hypodensity != "none":
        volume_ml = lesions.draw_volume_ml(rng, hypodensity)
        territory = lesions.pick_territory(rng, volume_ml)
        ter = lesions.TERRITORIES[territory]
        allowed = parenchyma & ~old & (lab != T.CEREBELLUM) & (lab != T.STEM)
        infarct = lesions.grow_in_territory(
            rng, x, y, z, ter, side, anat.scale, allowed, mid, volume_ml / grid.voxel_ml, warp=low, gyral=gyral
        )
        if territory != "lacunar" and rng.random() < 0.3:  # embolic satellites near the main infarct
            satellites = int(rng.integers(1, 3))
            for _ in range(satellites):
                free = allowed & ~infarct
                infarct |= lesions.satellite(rng, x, y, z, ter, side, anat.scale, free, mid, grid.voxel_ml)
        infarct, hem, hem_kind, weight, deficit = lesions.finish_infarct(
            rng, infarct, hypodensity=hypodensity, lab=lab, hu=hu, thu=thu, depth=depth, parenchyma=parenchyma,
            fine=fine, mid=mid, grid=grid, csf_code=T.CSF, gm_code=T.GM, max_depth_mm=anat.sulcus_depth_mm + 2,
        )

    tissue = pure_tissue(lab, sub_z=grid.sub_z, step_xy=grid.step_xy)
    bone = (lab == T.BONE) | (lab == T.DIPLOE) | (lab == T.CALC)
    hu += physics.beam_hardening(
        depth, x, y, z, rim_hu=float(rng.uniform(1.5, 4.0)), streak_hu=-float(rng.uniform(6, 15)), scale=anat.scale
    )
    del x, y, z, low, gyral, lab, depth
    facts = LesionFacts(
        territory=territory, side=side, mimics=tuple(mimics), hemorrhage=hem_kind, satellites=satellites,
        old_infarct_ml=float(old.sum()) * grid.voxel_ml,
    )
    del old
    return render_scan(
        FineScan(hu=hu, infarct=infarct, hem=hem, bone=bone, weight=weight, deficit=deficit, tissue=tissue),
        grid=grid, scanner=scanner, hypodensity=hypodensity, facts=facts, rng=rng, noise_rng=noise_rng,
        may_lift=may_lift, seeds=seeds,
    )


@dataclass(frozen=True, eq=False)
class FineScan:
    """A patient on the fine grid (`FineGrid.shape`), ready for `render_scan`.

    hu: float32 HU before lesion drops; infarct, hem, bone: boolean masks; weight, deficit: float32
    per-voxel drop share and HU drop (see `lesions.drop_weight`); tissue: the output-grid tissue map.
    """

    hu: np.ndarray
    infarct: np.ndarray
    hem: np.ndarray
    bone: np.ndarray
    weight: np.ndarray
    deficit: np.ndarray
    tissue: np.ndarray


@dataclass(frozen=True)
class LesionFacts:
    """What a phantom family drew, for `PatientTruth` (side: +1 left, -1 right)."""

    territory: str
    side: int
    mimics: tuple[str, ...]
    hemorrhage: str
    satellites: int
    old_infarct_ml: float
    family: str = "procedural"


def render_scan(
    fine: FineScan, *, grid: FineGrid, scanner: Scanner, hypodensity: str, facts: LesionFacts, rng, noise_rng,
    may_lift: bool, seeds: tuple[int, ...],
) -> Phantom:
    """The written scan from a fine-grid patient: partial volume, truth labels, class calibration, noise.

    Shared by the phantom families: the infarct's drop is scaled so the written scan's mean infarct
    HU hits a target inside its class; raises `_TooDark` for an unreachable subtle infarct unless
    ``may_lift`` (see `make_patient`).
    """
    hu, infarct, hem, bone, weight, deficit = fine.hu, fine.infarct, fine.hem, fine.bone, fine.weight, fine.deficit
    tissue = fine.tissue
    base_out = physics.to_output_grid(hu, sub_z=grid.sub_z, step_xy=grid.step_xy)
    lesion_box = _aligned_box(infarct | hem, grid)
    drop_out = _project_in_box(weight * deficit, lesion_box, grid)
    inf_frac = _project_in_box(infarct.astype(np.float32), lesion_box, grid)
    hem_frac = _project_in_box(hem.astype(np.float32), lesion_box, grid)
    bone_frac = _project_in_box(bone.astype(np.float32), lesion_box, grid)
    del hu, infarct, hem, bone

    labels = np.zeros(grid.out_shape, dtype=np.uint8)
    # A reader leaves out voxels that partial volume shares with the skull (a 5 mm slab through a
    # curved inner table): a few % of bone adds tens of HU and would swamp the infarct's mean.
    union = (inf_frac + hem_frac >= 0.5) & (bone_frac < 0.01)
    if hypodensity != "none":
        labels[union] = LABELS[hypodensity]
        labels[union & (hem_frac >= inf_frac)] = LABELS["hemorrhage"]
    in_class = (labels >= 1) & (labels <= 3)
    if hypodensity != "none" and not in_class.any():
        raise SynthError(f"Seed {seeds} drew an infarct too small to appear on the {grid.out_spacing[0]} mm grid.")

    offset = scanner.hu_offset + float(rng.normal(0, 0.7))
    gain = scanner.hu_gain
    alpha, target = 0.0, float("nan")
    if in_class.any():
        m0 = float(base_out[in_class].mean()) * gain + offset
        m1 = float(drop_out[in_class].mean()) * gain
        low_t, high_t = lesions.CLASS_TARGET_HU[hypodensity]
        target = float(rng.uniform(low_t, high_t))
        if hypodensity == "subtle":
            # The mean follows from the brain it replaced: 2-6 HU below it, inside [32, 44).
            floor = CLASS_RANGES_HU["subtle"][0] + 0.8  # noise must not carry it out
            contrast = float(rng.uniform(2.5, 6.0))
            room = m0 - floor
            if room < 2.0:
                if not may_lift:
                    raise _TooDark(scanner)
                lift = 2.0 - room  # the last resort (see make_patient): read as calibrated high
                offset, m0, room = offset + lift, m0 + lift, 2.0
            target = float(np.clip(m0 - min(contrast, room), floor, 43.0))
        if hypodensity != "subtle" and m1 < 0 and (target - m0) / m1 > 1.2:
            # A thin or haemorrhage-speckled infarct whose soft border cannot carry the drop:
            # sharpen the border rather than push the core far below fluid.
            drop_out = _project_in_box(np.minimum(1.8 * weight, 1.5) * deficit, lesion_box, grid)
            m1 = float(drop_out[in_class].mean()) * gain
        alpha = float(np.clip((target - m0) / m1, 0.05, 1.6)) if m1 < 0 else 0.0
        if hypodensity == "subtle":
            # Grey matter falls at most a little below white matter (1.3x the pattern); a mostly
            # white-matter infarct then reads a little above its target, still inside the class.
            alpha = min(alpha, 1.3)
    del weight, deficit
    slice_mm = grid.out_spacing[0]
    noise_sd = float(rng.uniform(*scanner.noise_sd_hu)) * float(np.sqrt(5.0 / slice_mm))
    out = gain * (base_out + alpha * drop_out) + offset
    out += physics.ct_noise(noise_rng, grid.out_shape, sd_hu=noise_sd, pixel_mm=grid.out_spacing[1])
    out[:, physics.outside_fov(grid.out_shape)] = scanner.padding_hu
    out = np.clip(np.rint(out), -3024, 3071).astype(np.float32)

    vox_ml = float(np.prod(grid.out_spacing)) / 1000.0
    truth = PatientTruth(
        hypodensity=hypodensity,
        mean_hu=float(out[in_class].mean()) if in_class.any() else float("nan"),
        target_hu=target,
        infarct_ml=float((labels > 0).sum()) * vox_ml,
        class_ml=float(in_class.sum()) * vox_ml,
        hemorrhage_ml=float((labels == LABELS["hemorrhage"]).sum()) * vox_ml,
        territory=facts.territory,
        side="" if hypodensity == "none" else ("left" if facts.side > 0 else "right"),
        mimics=facts.mimics,
        hemorrhage=facts.hemorrhage,
        old_infarct_ml=facts.old_infarct_ml,
        noise_sd_hu=noise_sd,
        hu_offset=offset,
        satellites=facts.satellites,
        family=facts.family,
    )
    x0, y0, z0 = grid.origin
    return Phantom(
        hu=out,
        labels=labels,
        tissue=tissue,
        spacing=tuple(float(s) for s in grid.out_spacing),
        origin=(float(x0), float(y0), float(z0)),
        truth=truth,
        scanner=scanner,
        slice_mm=slice_mm,
    )


def _aligned_box(mask: np.ndarray, grid: FineGrid):
    """Fine-grid box around ``mask`` (one fine voxel of margin) on output-voxel boundaries, or None."""
    found = ndi.find_objects(mask.astype(np.uint8))
    if not found:
        return None
    steps = (grid.sub_z, 1, 1)  # a fine pixel in plane is always whole output pixels
    box = []
    for sl, step, n in zip(found[0], steps, mask.shape):
        lo = max(0, (sl.start - 1) // step * step)
        hi = min(n, -(-(sl.stop + 1) // step) * step)
        box.append(slice(lo, hi))
    return tuple(box)


def _project_in_box(fine: np.ndarray, box, grid: FineGrid) -> np.ndarray:
    """`physics.to_output_grid` of an array that is zero outside ``box``, computed in the box only.

    Equal to projecting the whole array: the box has a margin of zeros, so the linear in-plane
    interpolation at its edges sees the same zeros as it would in the full grid.
    """
    out = np.zeros(grid.out_shape, dtype=np.float32)
    if box is None:
        return out
    part = physics.to_output_grid(np.ascontiguousarray(fine[box]), sub_z=grid.sub_z, step_xy=grid.step_xy)
    bz, by, bx = box
    k = grid.step_xy
    out[bz.start // grid.sub_z : bz.stop // grid.sub_z, by.start * k : by.stop * k, bx.start * k : bx.stop * k] = part
    return out


def pure_tissue(lab: np.ndarray, *, sub_z: int, step_xy: int) -> np.ndarray:
    """Tissue code per output voxel where all its sub-slices agree, else `MIXED` (nearest in plane)."""
    nz, ny, nx = lab.shape
    slabs = lab.reshape(nz // sub_z, sub_z, ny, nx)
    pure = np.all(slabs == slabs[:, :1], axis=1)
    out = np.where(pure, slabs[:, 0], np.uint8(MIXED)).astype(np.uint8)
    return np.repeat(np.repeat(out, step_xy, axis=1), step_xy, axis=2)


def _draw_geometry(rng, scanner: Scanner, *, matrix: int, thin_slices: bool, scale: float, vertex_mm: float,
                   slice_mm: float | None = None):
    """Output grid, head centre (LPS mm) and head rotation: pose of several degrees, shifts, FOV.

    slice_mm: a given slice thickness, drawn from sub-slices of at most 1 mm (and no draw from
    ``rng``, so the rest of the patient is as without it)."""
    fov = float(rng.uniform(*scanner.fov_mm))
    pixel = fov / matrix
    if slice_mm is not None:
        sub_z = max(1, int(np.ceil(slice_mm - 1e-9)))
    elif thin_slices:
        slice_mm = float(rng.choice([0.625, 1.0, 1.25]))
        sub_z = 2 if slice_mm > 0.9 else 1
    else:
        slice_mm, sub_z = 5.0, 5
    step_xy = 2 if pixel < 0.6 else 1
    rot = rotation_matrix(rng.uniform(-8, 8), rng.uniform(-10, 10), rng.uniform(-6, 6))
    center = np.array([rng.uniform(-7, 7), rng.uniform(-8, 8), 0.0])
    # Coverage from below the foramen magnum to above the vertex, as a head CT is planned.
    bottom, top = -70.0 * scale, vertex_mm + float(rng.uniform(0, 4))
    n = int(np.ceil((top - bottom) / slice_mm))
    z0 = bottom + rng.uniform(-3, 3) + slice_mm / 2
    origin = (-fov / 2 + pixel / 2, -fov / 2 + pixel / 2, z0)
    grid = FineGrid((n, matrix, matrix), (slice_mm, pixel, pixel), origin, sub_z=sub_z, step_xy=step_xy)
    return grid, center, rot


def _head_coordinates(grid: FineGrid, center, rot):
    """Head-frame coordinates (x left, y anterior, z superior; mm) of every fine voxel, float32."""
    zw, yw, xw = grid.axes_lps()
    c = [np.float32(v) for v in center]
    zw, yw, xw = zw[:, None, None] - c[2], yw[None, :, None] - c[1], xw[None, None, :] - c[0]
    # p_head = R^T (world - centre); the head frame's y points anterior, LPS y posterior.
    r = rot.astype(np.float32)
    hx = r[0, 0] * xw + r[1, 0] * yw + r[2, 0] * zw
    hy = -(r[0, 1] * xw + r[1, 1] * yw + r[2, 1] * zw)
    hz = r[0, 2] * xw + r[1, 2] * yw + r[2, 2] * zw
    return hx.astype(np.float32), hy.astype(np.float32), hz.astype(np.float32)
