"""The atlas phantom family: follow-up NCCT phantoms on real anatomy (MNI ICBM152 2009, see `atlas_template`).

`make_atlas_patient(seed)` returns the same `Phantom` as `make_patient` (same grid, labels, tissue
codes and truth), so trials, training and the pipeline take either family. Per patient:

- the head is the template under a random smooth non-linear deformation (a displacement field of
  2.5-5 mm with a 45 mm correlation length), an anisotropic scale (the template's 1.9 L cavity to
  adult intracranial volumes of about 1.1-1.8 L) and the pose of `phantom._draw_geometry`;
- tissue HU come from the GM / WM / CSF probabilities mixed with the patient's tissue values
  (`anatomy.draw_tissue_hu`: grey matter 37.5-44 HU, white matter 13-17 HU below it here, CSF 3-9
  HU, from Radiopaedia "Hounsfield unit" and Kalender, Computed Tomography 2011; the grey-white
  difference of unenhanced CT is about 8-12 HU, drawn wider here because the template's blur takes
  about 5 HU of it off, see `_draw_atlas`); deep grey nuclei, cerebellum and brainstem take
  their own values; skull (tables and diploe) and scalp are shells at drawn thicknesses outside the
  template's inner table, the skull base and face follow `atlas_template`;
- atrophy erodes GM and WM next to CSF (sulci by up to 2.5 mm, ventricles by up to 4.5 mm);
- infarcts grow in vascular territories of `atlas_territories` through cortex and white matter
  together, efface the sulci over them (young infarcts), push the brain around them by up to
  3 mm (mass effect); classes, volumes, haemorrhage and mimics as `make_patient`, and the scan is
  finished by the same `phantom.render_scan` (partial volume, class calibration, noise).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi

from corelab.config import CLASSES
from corelab.synth import anatomy, lesions, physics
from corelab.synth.anatomy import T
from corelab.synth.atlas_template import R, load_template, template_dir
from corelab.synth.atlas_territories import ATLAS_TERRITORIES, atlas_territory_mask
from corelab.synth.atlas_warp import SampledHead, sample_template, smooth_coordinates
from corelab.synth.fields import smooth_noise
from corelab.synth.phantom import (
    FineScan,
    LesionFacts,
    Phantom,
    _draw_geometry,
    _head_coordinates,
    check_physics,
    draw_with_retries,
    pure_tissue,
    render_scan,
)
from corelab.synth.scanner import Scanner, draw_scanner
from corelab.synth.wide_physics import apply_physics

__all__ = ["make_atlas_patient", "AtlasParams"]

TEMPLATE_TOP_MM = 82.0  # highest brain voxel of the template above the anterior commissure
TEMPLATE_BOTTOM_MM = -88.0  # where a scan starts: below the foramen magnum (about -64) at any pitch


@dataclass(frozen=True)
class AtlasParams:
    """Per-patient shape of an atlas head. scale: physical mm per template mm along (x, y, z);
    warp_mm: SD of the smooth deformation; sulcal_mm / ventricular_mm: atrophy erosion next to CSF;
    skull_mm, scalp_mm: mean thicknesses."""

    scale: tuple[float, float, float]
    warp_mm: float
    sulcal_mm: float
    ventricular_mm: float
    skull_mm: float
    scalp_mm: float
    choroid_calc: bool
    pineal_calc: bool


def draw_params(rng: np.random.Generator, *, atrophy: bool) -> AtlasParams:
    """Draw one head: size, warp, atrophy.

    The template's cavity (1.9 L to below the foramen magnum) is larger than an average adult's;
    sizes of 0.86-1.0 x give intracranial volumes above the foramen magnum of about 1.2-1.9 L.
    """
    size = 0.93 * float(np.clip(rng.normal(1.0, 0.04), 0.92, 1.08))
    scale = tuple(size * float(np.clip(rng.normal(1.0, 0.02), 0.95, 1.05)) for _ in range(3))
    sulcal = float(rng.uniform(1.2, 2.5)) if atrophy else float(rng.uniform(0.0, 0.8))
    ventricular = sulcal + (float(rng.uniform(2.0, 4.5)) if atrophy else float(rng.uniform(0.0, 1.0)))
    return AtlasParams(
        scale=scale,
        warp_mm=float(rng.uniform(2.5, 5.0)),
        sulcal_mm=sulcal,
        ventricular_mm=ventricular,
        skull_mm=float(rng.uniform(4.5, 8.0)),
        scalp_mm=float(rng.uniform(4.0, 7.0)),
        choroid_calc=bool(rng.random() < 0.6),
        pineal_calc=bool(rng.random() < 0.5),
    )


def make_atlas_patient(
    seed: int | tuple[int, ...],
    *,
    matrix: int = 512,
    thin_slices: bool = False,
    hypodensity: str | None = None,
    scanner: Scanner | None = None,
    physics: str = "default",
    slice_mm: float | None = None,
) -> Phantom:
    """One follow-up NCCT phantom on MNI152 anatomy, deterministically for ``seed``; as `make_patient`
    (``physics="wide"`` adds the wider scanner physics of `corelab.synth.wide_physics`).

    Raises `SynthError` when nilearn's templates are not installed. Example (the first call in a
    process builds the template head, several seconds)::

        p = make_atlas_patient(1, matrix=64, hypodensity="severe")
        p.truth.family, 14 <= p.truth.mean_hu < 22   # ('atlas', True)
    """
    check_physics(physics)
    template_dir()  # fails early, with the install hint, when nilearn is missing
    load_template()
    ph = draw_with_retries(_draw_atlas, seed, matrix=matrix, thin_slices=thin_slices, hypodensity=hypodensity,
                           scanner=scanner, slice_mm=slice_mm)
    return apply_physics(ph, physics, seed if isinstance(seed, tuple) else (int(seed),))


def _draw_atlas(
    seeds: tuple[int, ...], *, matrix: int, thin_slices: bool, hypodensity: str | None, scanner: Scanner | None,
    may_lift: bool, slice_mm: float | None = None,
) -> Phantom:
    """One draw of `make_atlas_patient` (see `phantom._draw_patient`, whose steps it mirrors)."""
    rng, field_rng, noise_rng = (np.random.default_rng(c) for c in np.random.SeedSequence([*seeds, 51]).spawn(3))
    if scanner is None:
        scanner = draw_scanner(rng, site="S0")
    if hypodensity is None:
        hypodensity = "none" if rng.random() < 0.1 else str(rng.choice(CLASSES, p=list(lesions.CLASS_SHARE.values())))
    has_atrophy = rng.random() < 0.3
    params = draw_params(rng, atrophy=has_atrophy)
    thu = anatomy.draw_tissue_hu(rng)
    # The template's maps mix grey and white matter over the blur of 152 averaged brains, which takes
    # about 5 HU off a drawn grey-white contrast on the 5 mm grid: the draw is wider than real CT's
    # 8-12 HU so that the scans read like real CT (measured: README "Phantom families and the real head").
    white = thu.gm - float(rng.uniform(13.0, 17.0))
    thu = replace(thu, wm=white, stem=white + (thu.stem - thu.wm))
    side = int(rng.choice((-1, 1)))
    volume_ml = lesions.draw_volume_ml(rng, hypodensity) if hypodensity != "none" else 0.0
    territory = lesions.pick_territory(rng, volume_ml) if hypodensity != "none" else ""
    mass = _mass_effect(rng, territory, side, volume_ml)
    s = float(np.mean(params.scale))
    grid, center, rot = _draw_geometry(
        rng, scanner, matrix=matrix, thin_slices=thin_slices, scale=-TEMPLATE_BOTTOM_MM * s / 70.0,
        vertex_mm=TEMPLATE_TOP_MM * s + params.skull_mm + params.scalp_mm + 3.0, slice_mm=slice_mm,
    )
    hx, hy, hz = _head_coordinates(grid, center, rot)
    shp, sp = grid.shape, grid.spacing
    low = smooth_noise(field_rng, shp, sp, corr_mm=40.0)
    mid = smooth_noise(field_rng, shp, sp, corr_mm=10.0)
    fine = smooth_noise(field_rng, shp, sp, corr_mm=2.5)
    q_fine = smooth_coordinates(field_rng, hx, hy, hz, sp, scale=params.scale, warp_mm=params.warp_mm, mass=mass)
    head = sample_template(load_template(), q_fine)
    del q_fine
    _atrophy(head, params)
    lab, hu = _tissues(head, params, thu, low=low, mid=mid, fine=fine, scale=s)
    depth = -head.sd * np.float32(s)
    parenchyma = np.isin(lab, T.PARENCHYMA)
    infra = (head.region == R.CEREBELLUM) | (head.region == R.STEM)
    q = (head.qx, head.qy, head.qz)
    mimics, old = _mimics(rng, head, lab, hu, thu, grid, side=side, atrophy=has_atrophy, depth=depth,
                          parenchyma=parenchyma & ~infra, mid=mid, low=low)
    allowed = parenchyma & ~old & ~infra
    infarct, hem, weight, deficit, hem_kind, satellites = _infarct(
        rng, q, hypodensity, territory, side, volume_ml, allowed, parenchyma, lab, hu, depth, thu, grid,
        mid=mid, low=low, fine=fine,
    )
    tissue = pure_tissue(lab, sub_z=grid.sub_z, step_xy=grid.step_xy)
    bone = (lab == T.BONE) | (lab == T.DIPLOE) | (lab == T.CALC)
    hu += physics.beam_hardening(
        depth, hx, hy, hz, rim_hu=float(rng.uniform(1.5, 4.0)), streak_hu=-float(rng.uniform(6, 15)), scale=s
    )
    facts = LesionFacts(
        territory=territory, side=side, mimics=tuple(mimics), hemorrhage=hem_kind, satellites=satellites,
        old_infarct_ml=float(old.sum()) * grid.voxel_ml, family="atlas",
    )
    del head, q, hx, hy, hz, low, mid, fine, lab, depth, parenchyma, infra, old, allowed
    return render_scan(
        FineScan(hu=hu, infarct=infarct, hem=hem, bone=bone, weight=weight, deficit=deficit, tissue=tissue),
        grid=grid, scanner=scanner, hypodensity=hypodensity, facts=facts, rng=rng, noise_rng=noise_rng,
        may_lift=may_lift, seeds=seeds,
    )


def _mimics(rng, head: SampledHead, lab, hu, thu, grid, *, side: int, atrophy: bool, depth, parenchyma, mid, low):
    """Leukoaraiosis and an old infarct drawn into ``hu`` in place (atrophy is in the anatomy already).

    Returns the mimics present (as `PatientTruth.mimics`) and the old infarct's fine mask.
    """
    mimics = ["atrophy"] if atrophy else []
    infra = (head.region == R.CEREBELLUM) | (head.region == R.STEM)
    q = (head.qx, head.qy, head.qz)
    shp = lab.shape
    if rng.random() < 0.3:  # leukoaraiosis: periventricular caps and deep white-matter patches
        halo = (head.dvent < rng.uniform(4.0, 9.0)) | ((mid > 1.3) & (depth > 14))
        leuko = halo & (lab == T.WM) & (head.qz > -10) & ~infra
        hu[leuko] -= (rng.uniform(4.0, 8.0) * (0.7 + 0.3 * np.tanh(mid[leuko]))).astype(np.float32)
        mimics.append("leukoaraiosis")
    old = np.zeros(shp, dtype=bool)
    if rng.random() < 0.25:  # old infarct: CSF-like, sharp, usually in the other hemisphere
        old_side = -side if rng.random() < 0.7 else side
        name = "lacunar" if rng.random() < 0.4 else str(rng.choice(["MCA-superior", "MCA-inferior", "PCA", "ACA"]))
        ml = rng.uniform(0.2, 1.2) if name == "lacunar" else rng.uniform(3.0, 25.0)
        old = lesions.grow_in_territory(
            rng, *q, ATLAS_TERRITORIES[name], old_side, 1.0, parenchyma, mid, ml / grid.voxel_ml,
            warp=low, gyral=mid, rule=atlas_territory_mask,
        )
        hu[old] = thu.csf + rng.uniform(1.0, 5.0)
        mimics.append("old infarct")
    return mimics, old


def _mass_effect(rng, territory: str, side: int, volume_ml: float):
    """(centre in template mm, amplitude mm, width mm) of the swelling around a planned infarct, or None."""
    if not territory or territory == "lacunar":
        return None
    ter = ATLAS_TERRITORIES[territory]
    centre = (side * ter.seed[0], ter.seed[1], ter.seed[2])
    amplitude = float(rng.uniform(0.5, 1.0)) * (1.0 + 2.0 * min(volume_ml / 150.0, 1.0))
    return centre, amplitude, 30.0


def _atrophy(head: SampledHead, params: AtlasParams) -> None:
    """Erode GM and WM next to CSF in place: sulci by ``sulcal_mm``, deep (ventricles) by ``ventricular_mm``."""
    deep = np.clip((-head.sd - 12.0) / 15.0, 0.0, 1.0)
    radius = params.sulcal_mm + (params.ventricular_mm - params.sulcal_mm) * deep
    keep = np.clip(head.dcsf + 1.0 - radius, 0.0, 1.0).astype(np.float32)
    head.gm[:] *= keep
    head.wm[:] *= keep


def _tissues(head: SampledHead, params: AtlasParams, thu, *, low, mid, fine, scale: float):
    """Fine tissue codes (`anatomy.T`) and HU: brain from the probability maps, shells and regions outside."""
    region, sd = head.region, head.sd
    inside = sd < 0
    lab = _outside_labels(head, params, low=low, fine=fine, scale=scale)
    gm, wm = head.gm, head.wm
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0)
    code = np.where(gm >= wm, np.uint8(T.GM), np.uint8(T.WM))
    code = np.where(csf > np.maximum(gm, wm), np.uint8(T.CSF), code)
    for reg, tissue in ((R.BASAL, T.BASAL), (R.THALAMUS, T.THALAMUS), (R.CEREBELLUM, T.CEREBELLUM)):
        code[(region == reg) & (code == T.GM)] = tissue
    code[(region == R.STEM) & (code != T.CSF)] = T.STEM
    code[region == R.FALX] = T.FALX
    calc = ((region == R.PINEAL) & params.pineal_calc) | ((region == R.CHOROID) & params.choroid_calc)
    code[calc] = T.CALC
    lab[inside] = code[inside]
    hu = anatomy.tissue_to_hu(lab, thu, texture=0.6 * mid + 0.8 * fine, fine=fine)
    gm_hu = np.full(gm.shape, thu.gm, dtype=np.float32)
    gm_hu[region == R.BASAL] = thu.basal
    gm_hu[region == R.THALAMUS] = thu.thalamus
    gm_hu[region == R.CEREBELLUM] = thu.cerebellum
    wm_hu = np.where(region == R.STEM, np.float32(thu.stem), np.float32(thu.wm))
    brain = inside & (lab != T.FALX) & (lab != T.CALC)
    mix = gm * gm_hu + wm * wm_hu + csf * np.float32(thu.csf) + (0.6 * mid + 0.8 * fine) * (1.0 - csf)
    hu[brain] = mix[brain]
    return lab, hu


def _outside_labels(head: SampledHead, params: AtlasParams, *, low, fine, scale: float) -> np.ndarray:
    """Codes outside the inner table: skull (tables, diploe), scalp, temporalis, face, base, sinuses, orbits."""
    qx, qy, qz, region = head.qx, head.qy, head.qz, head.region
    d = head.sd * np.float32(scale)  # mm outside the inner table
    lab = np.zeros(d.shape, dtype=np.uint8)
    skull = params.skull_mm * (1 + 0.18 * low) + 1.5 / (1 + np.exp((qz + 25) / 6))
    temporalis = 9 * np.exp(-(((qz + 5) / 22) ** 2)) / (1 + np.exp(-(np.abs(qx) - 45) / 6))
    temporalis /= 1 + np.exp(-(qy + 10) / 10)  # the temporal fossa, as `anatomy.tissue_labels`
    scalp = params.scalp_mm + temporalis
    lab[(d >= 0) & (d < skull + scalp)] = T.SOFT
    lab[(d > skull + 1.2) & (d < skull + 1.2 + 0.45 * scalp)] = T.FAT
    lab[(d > skull) & (d < skull + temporalis) & (temporalis > 2)] = T.MUSCLE
    table = np.clip(0.28 * skull, 1.2, 2.2)
    shell = (d >= 0) & (d < skull)
    lab[shell] = T.BONE
    lab[shell & (d > table) & (d < skull - table) & (skull > 4.0)] = T.DIPLOE
    outside = d >= 0
    lab[(region == R.FACE) & (lab == T.AIR)] = T.SOFT
    lab[(region == R.FACE_BONE) & outside & ((lab == T.SOFT) | (lab == T.AIR))] = T.BONE
    lab[(region == R.BASE) & outside] = T.BONE
    lab[(region == R.SINUS) & outside] = T.SINUS
    cells = (region == R.CELLS) & outside
    lab[cells] = np.where(fine[cells] > 0.3, np.uint8(T.SINUS), np.uint8(T.BONE))
    lab[(region == R.ORBIT) & outside] = T.FAT
    lab[(region == R.EYE) & outside] = T.EYE
    # Gaps enclosed by the head (between the skull base, the face and the vault layers) are soft tissue.
    for k in range(lab.shape[0]):
        filled = ndi.binary_fill_holes(lab[k] != T.AIR)
        lab[k][filled & (lab[k] == T.AIR) & outside[k]] = T.SOFT
    return lab


def _infarct(rng, q, hypodensity, territory, side, volume_ml, allowed, parenchyma, lab, hu, depth, thu, grid, *,
             mid, low, fine):
    """The infarct (with satellites, effaced sulci, haemorrhage) and its drop, as `phantom._draw_patient` draws it."""
    shp = lab.shape
    infarct = np.zeros(shp, dtype=bool)
    hem = np.zeros(shp, dtype=bool)
    weight = np.zeros(shp, dtype=np.float32)
    deficit = np.zeros(shp, dtype=np.float32)
    hem_kind, satellites = "", 0
    if hypodensity == "none":
        return infarct, hem, weight, deficit, hem_kind, satellites
    ter = ATLAS_TERRITORIES[territory]
    infarct = lesions.grow_in_territory(
        rng, *q, ter, side, 1.0, allowed, mid, volume_ml / grid.voxel_ml, warp=low, gyral=mid,
        rule=atlas_territory_mask,
    )
    if territory != "lacunar" and rng.random() < 0.3:  # embolic satellites near the main infarct
        satellites = int(rng.integers(1, 3))
        for _ in range(satellites):
            infarct |= lesions.satellite(rng, *q, ter, side, 1.0, allowed & ~infarct, mid, grid.voxel_ml,
                                         rule=atlas_territory_mask)
    infarct, hem, hem_kind, weight, deficit = lesions.finish_infarct(
        rng, infarct, hypodensity=hypodensity, lab=lab, hu=hu, thu=thu, depth=depth, parenchyma=parenchyma,
        fine=fine, mid=mid, grid=grid, csf_code=T.CSF, gm_code=T.GM, max_depth_mm=17.0,
    )
    return infarct, hem, weight, deficit, hem_kind, satellites
