"""The background family: infarcts, haemorrhage and mimics drawn into a real normal head CT.

`load_background(path)` reads the scan once (`corelab.io.read.read_scan`), finds its intracranial
region and CSF with corelab's own preprocessing on the scan's grid, and registers the atlas
family's template cavity (MNI ICBM152 2009, `atlas_template.template_cavity`) to the scan's
intracranial mask with SimpleITK (moments initialisation, affine, mean squares on the masks
smoothed by 2 mm): each voxel then has an MNI coordinate, at which the atlas family's territory
rules (`atlas_territories`) are evaluated. `make_background_patient(background, seed)` returns a
`Phantom` as the other families do (same labels, classes, volumes and truth), on the scan's grid.

Only the lesion's voxels change, by a smooth deficit added to the original HU (the local brain
HU, a 1.5 mm average within brain, sets its size): the lesion keeps the scan's own noise and
texture, and every other voxel keeps its value. Infarcts grow in brain outside CSF and above the
tentorium; a subtle infarct keeps the brighter part of its territory (grey matter and the white
matter beside it), since its mean must read >= 32 HU on this brain. Haemorrhage (1 in 5) is the
local HU lifted to 55-80 HU; old infarcts fall to the scan's CSF HU; leukoaraiosis lowers
periventricular and deep white matter by 4-8 HU. Sulci are not effaced (that would draw into CSF).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from corelab.audit import scan_sha256
from corelab.config import CLASS_RANGES_HU, CLASSES, LABELS
from corelab.io.read import read_scan
from corelab.io.volume import Volume
from corelab.preprocess import csf_region, intracranial_region
from corelab.synth import lesions
from corelab.synth.atlas_template import template_cavity
from corelab.synth.atlas_territories import ATLAS_TERRITORIES, atlas_territory_mask
from corelab.synth.fields import smooth_noise
from corelab.synth.phantom import MIXED, PatientTruth, Phantom, SynthError, check_physics
from corelab.synth.scanner import Scanner, draw_scanner
from corelab.synth.wide_physics import apply_physics

__all__ = ["Background", "file_sha256", "load_background", "make_background_patient", "prepare_background"]

LOCAL_MM = 1.5  # Gaussian sigma (mm) of the local brain HU that sizes a deficit
FORAMEN_MNI_Z = -62.0  # the template cavity is cut here, as corelab cuts a scan at the foramen magnum


@dataclass(frozen=True, eq=False)
class Background:
    """A normal head CT ready for lesions. Arrays are cropped to ``box`` (the intracranial box).

    volume: the scan as read. brain: intracranial, not CSF, <= 160 HU, supratentorial (bool).
    q: template coordinates (mm; x left, y anterior, z superior) of each voxel, float32.
    local: brain HU averaged over `LOCAL_MM`; depth: mm inside the inner table; dvent: mm to the
    ventricles (CSF deeper than 25 mm). csf_hu, wm_hu, gm_hu: the scan's median CSF and its brain's
    25th / 85th percentiles (HU). noise_sd: robust SD (HU) of brain minus its local mean.
    dice: overlap of the registered template cavity with the scan's intracranial mask.
    """

    volume: Volume
    name: str
    sha256: str
    box: tuple[slice, slice, slice]
    brain: np.ndarray
    q: tuple[np.ndarray, np.ndarray, np.ndarray]
    local: np.ndarray
    depth: np.ndarray
    dvent: np.ndarray
    csf_hu: float
    wm_hu: float
    gm_hu: float
    noise_sd: float
    dice: float


def load_background(path: str | Path) -> Background:
    """Read a normal head CT (DICOM folder or image file) and prepare it (`prepare_background`)."""
    path = Path(path)
    return prepare_background(read_scan(path), name=path.name, sha256=scan_sha256(path))


def prepare_background(volume: Volume, *, name: str = "", sha256: str = "") -> Background:
    """Regions, template coordinates and HU levels of a normal head CT (a few seconds, once per trial)."""
    hu = np.asarray(volume.array, dtype=np.float32)
    sp = tuple(float(s) for s in volume.spacing)
    ic = intracranial_region(hu, sp).mask
    csf = csf_region(hu, sp, ic)
    found = ndi.find_objects(ic.astype(np.uint8))[0]
    box = tuple(slice(max(0, s.start - 2), min(n, s.stop + 2)) for s, n in zip(found, hu.shape))
    q, dice = _template_coordinates(ic, volume, box)
    h, icb, csfb = hu[box], ic[box], csf[box]
    infra = _infratentorial(*q)
    brain = icb & ~csfb & (h <= 160.0) & ~infra
    if brain.sum() * volume.voxel_ml < 200.0:
        raise SynthError(f"The background {name or 'scan'} has under 200 mL of brain outside CSF; is it a head CT?")
    sigma = [LOCAL_MM / s for s in sp]
    weight = ndi.gaussian_filter(brain.astype(np.float32), sigma)
    local = ndi.gaussian_filter(np.where(brain, h, 0.0).astype(np.float32), sigma) / np.maximum(weight, 1e-3)
    depth = ndi.distance_transform_edt(icb, sampling=sp).astype(np.float32)
    vent = csfb & (depth > 25.0)
    dvent = np.full(h.shape, 99.0, np.float32)
    if vent.any():
        dvent = ndi.distance_transform_edt(~vent, sampling=sp).astype(np.float32)
    resid = (h - local)[brain]
    wm, gm = np.percentile(local[brain], [25, 85])
    return Background(
        volume=volume, name=name, sha256=sha256, box=box, brain=brain, q=q, local=local.astype(np.float32),
        depth=depth, dvent=dvent, csf_hu=float(np.median(h[csfb])) if csfb.any() else 5.0, wm_hu=float(wm),
        gm_hu=float(gm), noise_sd=float(1.4826 * np.median(np.abs(resid - np.median(resid)))), dice=dice,
    )


def _template_coordinates(ic: np.ndarray, volume: Volume, box):
    """Register the template cavity to ``ic`` (affine); template coordinates of the box's voxels, and the Dice."""
    import SimpleITK as sitk

    cavity, (x0, y0, z0) = template_cavity()
    k_cut = round(FORAMEN_MNI_Z - z0)
    cavity = cavity.astype(np.float32)
    cavity[: max(0, k_cut)] = 0.0
    # On a 2 mm grid (block means): eight times fewer voxels for the masks' smooth outline.
    nz, ny, nx = (n // 2 * 2 for n in cavity.shape)
    coarse = cavity[:nz, :ny, :nx].reshape(nz // 2, 2, ny // 2, 2, nx // 2, 2).mean(axis=(1, 3, 5))
    moving = sitk.GetImageFromArray(coarse)
    moving.SetSpacing((2.0, 2.0, 2.0))
    moving.SetOrigin((-(x0 + 0.5), -(y0 + 0.5), z0 + 0.5))  # index grows with MNI x, y: -LPS x, -LPS y
    moving.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    fixed = sitk.GetImageFromArray(ic.astype(np.float32))
    fixed.SetSpacing(tuple(float(s) for s in volume.spacing[::-1]))
    fixed.SetOrigin(tuple(float(o) for o in volume.origin))
    fixed.SetDirection(tuple(float(d) for d in volume.direction))
    fixed_s, moving_s = (sitk.SmoothingRecursiveGaussian(im, 2.0) for im in (fixed, moving))
    init = sitk.CenteredTransformInitializer(
        fixed_s, moving_s, sitk.AffineTransform(3), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    affine = sitk.AffineTransform(init)
    reg = sitk.ImageRegistrationMethod()
    reg.SetNumberOfThreads(1)  # the same sums in the same order: the same transform, byte for byte
    reg.SetMetricAsMeanSquares()
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=120)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2])
    reg.SetSmoothingSigmasPerLevel([2.0, 1.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(affine, inPlace=True)
    reg.Execute(fixed_s, moving_s)
    warped = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, affine, sitk.sitkLinear, 0.0)) > 0.5
    dice = float(2 * (warped & ic).sum() / max(1, warped.sum() + ic.sum()))
    a = np.array(affine.GetMatrix()).reshape(3, 3)
    c, t = np.array(affine.GetCenter()), np.array(affine.GetTranslation())
    d = np.array(volume.direction, dtype=float).reshape(3, 3)
    sp_xyz, o = np.array(volume.spacing[::-1], dtype=float), np.array(volume.origin, dtype=float)
    kk, jj, ii = (np.arange(s.start, s.stop, dtype=np.float64) for s in box)
    # Physical point of a voxel p = o + D diag(spacing) (i, j, k); the transform maps p to A (p - c) + c + t.
    m = a @ d * sp_xyz
    b = a @ (o - c) + c + t
    lps = [(m[r, 0] * ii[None, None, :] + m[r, 1] * jj[None, :, None] + m[r, 2] * kk[:, None, None] + b[r])
           for r in range(3)]
    # Template frame: x left (= LPS x), y anterior (= -LPS y), z superior.
    q = tuple(np.ascontiguousarray(np.broadcast_to(v, tuple(s.stop - s.start for s in box)), dtype=np.float32)
              for v in (lps[0], -lps[1], lps[2]))
    return q, dice


def _infratentorial(qx, qy, qz) -> np.ndarray:
    """Cerebellum and brainstem by the atlas template's tentorium and brainstem rules (template mm)."""
    tent = -12.0 - 0.3 * np.clip(-qy - 50.0, 0.0, None) - 0.15 * np.abs(qx)
    infra = (qz < tent) & ((qy < -45) | ((qy < -28) & (np.abs(qx) < 25)))
    stem = (np.abs(qx) < 12) & (np.abs(qy - (-25.0 + 0.35 * (qz + 10.0))) < 12) & (qz < -8)
    return infra | stem


def make_background_patient(
    background: Background, seed: int | tuple[int, ...], *, hypodensity: str | None = None,
    scanner: Scanner | None = None, physics: str = "default",
) -> Phantom:
    """One patient: ``background`` with its own infarct (class, territory, side, volume) for ``seed``.

    hypodensity: "severe", "intermediate", "subtle" or "none" (drawn as the other families when
    None). scanner: only names the site (the scan is the background's own). Deterministic for seed.
    physics: "wide" adds the wider scanner physics of `corelab.synth.wide_physics` on top of the
    scan's own; "default" keeps every voxel outside the lesions as it was.

    Example (``bg = load_background("normal_head.nii.gz")``, seconds; then per patient)::

        p = make_background_patient(bg, 3, hypodensity="severe")
        p.truth.family, 14 <= p.truth.mean_hu < 22   # ('background', True)
    """
    if hypodensity not in (None, "none", *CLASSES):
        raise SynthError(f"Unknown hypodensity class {hypodensity!r}; use severe, intermediate, subtle or none.")
    check_physics(physics)
    seeds = seed if isinstance(seed, tuple) else (int(seed),)
    rng, field_rng = (np.random.default_rng(c) for c in np.random.SeedSequence([*seeds, 61]).spawn(2))
    if scanner is None:
        scanner = draw_scanner(rng, site="S0")
    if hypodensity is None:
        hypodensity = "none" if rng.random() < 0.1 else str(rng.choice(CLASSES, p=list(lesions.CLASS_SHARE.values())))
    bg = background
    hu = np.asarray(bg.volume.array, dtype=np.float32)[bg.box]
    sp = tuple(float(s) for s in bg.volume.spacing)
    voxel_ml = float(np.prod(sp)) / 1000.0
    low, mid, fine = (smooth_noise(field_rng, hu.shape, sp, corr_mm=c) for c in (40.0, 10.0, 2.5))
    side = int(rng.choice((-1, 1)))
    change = np.zeros(hu.shape, dtype=np.float32)
    mimics, old = _mimics(rng, bg, change, side=side, mid=mid, low=low, voxel_ml=voxel_ml)
    infarct, hem, territory, hem_kind, satellites = _grow(
        rng, bg, hypodensity, side, bg.brain & ~old, mid=mid, low=low, fine=fine, voxel_ml=voxel_ml
    )
    if hem.any():
        change[hem] = (rng.uniform(55, 80) + 8 * fine[hem] - bg.local[hem]).astype(np.float32)
    labels = np.zeros(hu.shape, dtype=np.uint8)
    target = float("nan")
    if hypodensity != "none":
        if hypodensity == "subtle":
            infarct = _bright_part(infarct, bg.local, need=CLASS_RANGES_HU["subtle"][0] + 3.0)
        weight = lesions.drop_weight(rng, infarct, hypodensity, mid, sp)
        target, drop = _calibrated_drop(rng, hypodensity, hu, infarct, weight, bg)
        change[infarct] = drop[infarct]
        labels[infarct] = LABELS[hypodensity]
        labels[hem] = LABELS["hemorrhage"]
    facts = {
        "territory": territory, "side": "" if hypodensity == "none" else ("left" if side > 0 else "right"),
        "mimics": tuple(mimics), "hemorrhage": hem_kind, "satellites": satellites,
        "old_infarct_ml": float(old.sum()) * voxel_ml,
    }
    ph = _phantom(bg, hu, change, labels, scanner=scanner, hypodensity=hypodensity, target=target, facts=facts)
    return apply_physics(ph, physics, seeds)


def _mimics(rng, bg: Background, change, *, side: int, mid, low, voxel_ml: float):
    """Leukoaraiosis and an old infarct as HU changes in ``change`` (in place); (mimics, old infarct mask)."""
    mimics: list[str] = []
    white = bg.brain & (bg.local < bg.wm_hu + 0.3 * (bg.gm_hu - bg.wm_hu))
    if rng.random() < 0.3:  # leukoaraiosis: periventricular caps and deep white-matter patches
        halo = (bg.dvent < rng.uniform(3.0, 6.0)) | ((mid > 1.8) & (bg.depth > 20))
        leuko = halo & white & (bg.q[2] > -10)
        change[leuko] -= (rng.uniform(4.0, 8.0) * (0.7 + 0.3 * np.tanh(mid[leuko]))).astype(np.float32)
        if leuko.any():
            mimics.append("leukoaraiosis")
    old = np.zeros(bg.brain.shape, dtype=bool)
    if rng.random() < 0.25:  # old infarct: CSF-like, sharp, usually in the other hemisphere
        old_side = -side if rng.random() < 0.7 else side
        name = "lacunar" if rng.random() < 0.4 else str(rng.choice(["MCA-superior", "MCA-inferior", "PCA", "ACA"]))
        ml = rng.uniform(0.2, 1.2) if name == "lacunar" else rng.uniform(3.0, 25.0)
        old = lesions.grow_in_territory(
            rng, *bg.q, ATLAS_TERRITORIES[name], old_side, 1.0, bg.brain, mid, ml / voxel_ml, warp=low, gyral=mid,
            rule=atlas_territory_mask,
        )
        change[old] = (bg.csf_hu + rng.uniform(1.0, 5.0) - bg.local[old]).astype(np.float32)
        if old.any():
            mimics.append("old infarct")
    return mimics, old


def _grow(rng, bg: Background, hypodensity: str, side: int, allowed, *, mid, low, fine, voxel_ml: float):
    """The infarct (with satellites) and its haemorrhage: (infarct, hem, territory, hem_kind, satellites)."""
    shape = allowed.shape
    if hypodensity == "none":
        return np.zeros(shape, bool), np.zeros(shape, bool), "", "", 0
    volume_ml = lesions.draw_volume_ml(rng, hypodensity)
    territory = lesions.pick_territory(rng, volume_ml)
    ter = ATLAS_TERRITORIES[territory]
    infarct = lesions.grow_in_territory(
        rng, *bg.q, ter, side, 1.0, allowed, mid, volume_ml / voxel_ml, warp=low, gyral=mid, rule=atlas_territory_mask,
    )
    satellites = 0
    if territory != "lacunar" and rng.random() < 0.3:  # embolic satellites near the main infarct
        satellites = int(rng.integers(1, 3))
        for _ in range(satellites):
            infarct |= lesions.satellite(rng, *bg.q, ter, side, 1.0, allowed & ~infarct, mid, voxel_ml,
                                         rule=atlas_territory_mask)
    if not infarct.any():
        raise SynthError(f"No brain of the background lies in the {territory} territory on this side.")
    hem, hem_kind = np.zeros(shape, dtype=bool), ""
    if rng.random() < 0.2:
        hem, hem_kind = lesions.hemorrhage(rng, infarct, allowed, fine, mid, voxel_ml)
    return infarct & ~hem, hem, territory, hem_kind, satellites


def _bright_part(infarct: np.ndarray, local: np.ndarray, *, need: float) -> np.ndarray:
    """The largest share of ``infarct`` whose mean local HU reaches ``need``, brightest first (all if it does).

    Ranked by the local (smoothed) HU, not the noisy one, so the kept part is whole tissue, not bright noise."""
    values = local[infarct]
    if values.size == 0 or values.mean() >= need:
        return infarct
    order = np.argsort(-values, kind="stable")
    running = np.cumsum(values[order]) / np.arange(1, values.size + 1)
    k = max(1, int(np.searchsorted(-running, -need, side="right")))
    keep = np.zeros(values.size, dtype=bool)
    keep[order[:k]] = True
    out = np.zeros(infarct.shape, dtype=bool)
    out[infarct] = keep
    return out


def _calibrated_drop(rng, hypodensity: str, hu, infarct, weight, bg: Background):
    """(target mean HU, integer HU change) so the infarct's mean reads ``target``, inside its class."""
    local = bg.local
    m0 = float(hu[infarct].mean())
    low_t, high_t = lesions.CLASS_TARGET_HU[hypodensity]
    if hypodensity != "subtle":
        # An infarct reads below the brain it replaced (2 HU at least), even where this brain is dark.
        high_t = min(high_t, m0 - 2.0)
        low_t = max(min(low_t, high_t), CLASS_RANGES_HU[hypodensity][0] + 0.8)
    target = float(rng.uniform(low_t, max(low_t, high_t)))
    if hypodensity == "subtle":
        # Grey matter falls towards white matter, which itself loses 1.5-3 HU; 2.5-6 HU below the brain replaced.
        loss = float(rng.uniform(1.5, 3.0))
        pattern = -(np.clip(local - bg.wm_hu, 0.0, None) + loss)
        floor = CLASS_RANGES_HU["subtle"][0] + 0.8
        target = float(np.clip(m0 - rng.uniform(2.5, 6.0), floor, 43.0))
    else:
        pattern = lesions.FLUID_HU - local
    for w in (weight, np.minimum(1.8 * weight, 1.5), infarct.astype(np.float32)):
        d = (w * pattern).astype(np.float32)
        m1 = float(d[infarct].mean())
        alpha = float(np.clip((target - m0) / m1, 0.0, 1.6)) if m1 < 0 else 0.0
        drop = np.rint(alpha * d)
        if abs(float((hu + drop)[infarct].mean()) - target) < 1.0:
            break
    return target, drop.astype(np.float32)


def _phantom(bg: Background, hu, change, labels, *, scanner, hypodensity, target, facts) -> Phantom:
    """The full-size scan (background plus ``change`` in the box) and its truth as a `Phantom`."""
    vol = bg.volume
    out = np.asarray(vol.array, dtype=np.float32).copy()
    out[bg.box] = hu + np.rint(change)  # zero outside the lesions and mimics: those voxels keep their value
    full = np.zeros(out.shape, dtype=np.uint8)
    full[bg.box] = labels
    in_class = (full >= 1) & (full <= 3)
    if hypodensity != "none" and not in_class.any():
        raise SynthError("The infarct came out empty on this background.")
    vox_ml = vol.voxel_ml
    truth = PatientTruth(
        hypodensity=hypodensity, mean_hu=float(out[in_class].mean()) if in_class.any() else float("nan"),
        target_hu=target, infarct_ml=float((full > 0).sum()) * vox_ml, class_ml=float(in_class.sum()) * vox_ml,
        hemorrhage_ml=float((full == LABELS["hemorrhage"]).sum()) * vox_ml, noise_sd_hu=bg.noise_sd, hu_offset=0.0,
        family="background", **facts,
    )
    sp = tuple(float(s) for s in vol.spacing)
    return Phantom(
        hu=out, labels=full, tissue=np.full(out.shape, MIXED, dtype=np.uint8), spacing=sp,
        origin=tuple(float(o) for o in vol.origin), truth=truth, scanner=scanner, slice_mm=sp[0],
        direction=tuple(float(d) for d in vol.direction),
    )
