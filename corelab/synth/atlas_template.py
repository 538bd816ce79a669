"""The real anatomy behind the atlas phantom family: MNI ICBM152 2009 templates, made into a head once.

nilearn's wheel ships the ICBM152 2009a symmetric non-linear grey- and white-matter probability
maps and a brain-extracted T1 at 1 mm (Fonov et al., NeuroImage 2011;54:313). They are read with
SimpleITK from nilearn's installed files; nilearn itself is never imported and nothing is fetched.

`load_template()` (cached per process) turns them into `TemplateAnatomy` on one 1 mm grid in MNI
coordinates (x right, y anterior, z superior, mm; index [k, j, i] = [z, y, x]):

- the intracranial cavity: the T1's non-zero region (brain and its CSF), closed by 3 mm and
  extended below the template by a spinal canal with a cord, so a scan can start below the
  foramen magnum; its signed distance (mm, < 0 inside) gives the inner table, and each patient's
  skull, diploe and scalp are shells at drawn thicknesses outside it;
- the skull base as the concavities under the brain (a 7 mm closing of the cavity below z = 0,
  less the cavity: sella, clivus, petrous ridges, orbital roofs) plus a floor plate, so it has
  the template's real shape; face and neck, orbits, sinuses and mastoid cells are ellipsoids
  placed in MNI coordinates below it (the T1 is brain-extracted, so bone cannot be read from it);
- GM and WM sharpened (`_sharpen`), CSF as 1 - GM - WM inside the cavity; the distance (mm) to
  CSF, used to widen sulci and ventricles in atrophy, and to the lateral ventricles (periventricular caps);
- regions of the brain: infratentorial (cerebellum and brainstem: below a tentorium surface fitted
  by eye to this template, `_brain_regions`), deep grey nuclei (GM-probability-high voxels more than
  18 mm inside the cavity: basal ganglia in front of y = -12, thalamus behind), the falx (the
  midline CSF plane, except around the third ventricle), and calcification sites (pineal at
  (0, -29, -1); the choroid plexus glomus at the CSF maximum of each atrium).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from corelab.synth.fields import upsample2
from corelab.synth.phantom import SynthError

__all__ = ["TemplateAnatomy", "R", "load_template", "template_cavity", "template_dir", "TEMPLATE_FILES", "NILEARN_HINT"]

TEMPLATE_FILES = {t: f"mni_icbm152_{t}_tal_nlin_sym_09a_converted.nii.gz" for t in ("gm", "wm", "t1")}
NILEARN_HINT = "pip install --no-deps nilearn==0.14.1"
PAD_BELOW, PAD_FRONT, PAD_LEFT = 35, 27, 1  # mm added below (neck, canal), in front (face), at +x (even sizes)


class R:
    """Region codes of `TemplateAnatomy.region` (0: nothing special)."""

    BASAL, THALAMUS, CEREBELLUM, STEM, FALX, PINEAL, CHOROID = 1, 2, 3, 4, 5, 6, 7
    BASE, FACE, FACE_BONE, SINUS, CELLS, EYE, ORBIT = 10, 11, 12, 13, 14, 15, 16


@dataclass(frozen=True, eq=False)
class TemplateAnatomy:
    """The template head on a 1 mm grid. fields: float32 [z, y, x, 5]: GM and WM probability,
    signed distance to the inner table (mm, < 0 inside), distance to CSF (mm), distance to the
    lateral ventricles (mm). region: uint8 codes of `R`. origin: MNI (x, y, z) mm of index [0, 0, 0]."""

    fields: np.ndarray
    region: np.ndarray
    origin: tuple[float, float, float]

    GM, WM, SD, DCSF, DVENT = range(5)


def _nilearn_location() -> Path | None:
    """Where nilearn is installed (found without importing it), or None."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def template_dir() -> Path:
    """The folder of nilearn's installed MNI152 files; `SynthError` when nilearn or a file is missing."""
    location = _nilearn_location()
    if location is None:
        raise SynthError(f"The atlas family needs nilearn's MNI152 templates: {NILEARN_HINT}")
    folder = location / "datasets" / "data"
    missing = [name for name in TEMPLATE_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise SynthError(f"The atlas family needs nilearn's MNI152 templates ({missing[0]} is missing): {NILEARN_HINT}")
    return folder


def _read(folder: Path, name: str) -> np.ndarray:
    """One template as float32 [z, y, x] in 0..1, flipped so index grows with MNI x, y, z."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(folder / name))
    direction = np.array(image.GetDirection()).reshape(3, 3)
    if not np.allclose(np.abs(direction), np.eye(3)) or not np.allclose(image.GetSpacing(), 1.0):
        raise SynthError(f"{name} is not the axis-aligned 1 mm template the atlas family expects.")
    array = sitk.GetArrayFromImage(image).astype(np.float32) / 255.0
    # LPS direction -1 on x and y: index grows to the right and anterior, i.e. with MNI (RAS) x and y.
    for axis, sign in zip((2, 1, 0), np.diag(direction) * np.array([-1, -1, 1])):
        if sign < 0:
            array = np.flip(array, axis)
    return np.ascontiguousarray(array)


def _origin(folder: Path) -> tuple[float, float, float]:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(folder / TEMPLATE_FILES["gm"]))
    reader.ReadImageInformation()
    x0, y0, z0 = reader.GetOrigin()
    return (-x0, -y0, z0)  # LPS origin of the first voxel -> MNI, with x and y flipped as in `_read`


def _coarse_edt(mask: np.ndarray) -> np.ndarray:
    """Distance (mm) of each voxel to the nearest True voxel, computed on a 2 mm grid and interpolated.

    Eight times faster than at 1 mm and smooth enough for layers of several mm; sizes must be even.
    """
    nz, ny, nx = mask.shape
    coarse = mask.reshape(nz // 2, 2, ny // 2, 2, nx // 2, 2).mean(axis=(1, 3, 5)) >= 0.5
    dist = ndi.distance_transform_edt(~coarse, sampling=2.0).astype(np.float32)
    for axis in range(3):
        dist = upsample2(dist, axis)
    return dist


def _closing(mask: np.ndarray, radius_mm: float) -> np.ndarray:
    """Morphological closing by a ball (on the 2 mm grid of `_coarse_edt`), or-ed with ``mask``."""
    dilated = _coarse_edt(mask) <= radius_mm
    return mask | (_coarse_edt(~dilated) > radius_mm)


@functools.lru_cache(maxsize=1)
def load_template() -> TemplateAnatomy:
    """Build the template head (about 10 s, once per process); see the module docstring."""
    folder = template_dir()
    gm, wm, t1 = (_read(folder, TEMPLATE_FILES[t]) for t in ("gm", "wm", "t1"))
    pad = ((PAD_BELOW, 0), (0, PAD_FRONT), (0, PAD_LEFT))
    gm, wm, t1 = (np.pad(a, pad) for a in (gm, wm, t1))
    x0, y0, z0 = _origin(folder)
    origin = (x0, y0, z0 - PAD_BELOW)
    X, Y, Z = _axes(gm.shape, origin)
    cavity = ndi.binary_fill_holes(t1 > 0)
    _add_canal(cavity, gm, wm, X, Y, Z, bottom_k=PAD_BELOW)
    cavity = _closing(cavity, 3.0)
    gm, wm = _sharpen(gm * cavity, wm * cavity)
    sd = _coarse_edt(cavity) - _coarse_edt(~cavity)  # signed, < 0 inside; the interpolated zero is the inner table
    csf = np.clip(cavity - gm - wm, 0.0, 1.0)
    dcsf = _box_edt(csf >= 0.3, cavity)
    region = _brain_regions(gm, wm, csf, sd, X, Y, Z)
    vent = (csf > 0.5) & (sd < -15) & (region != R.CEREBELLUM) & (region != R.STEM) & (Z > -5) & (np.abs(X) < 35)
    dvent = _coarse_edt(vent)
    _head_regions(region, cavity, sd, X, Y, Z)
    fields = np.stack([gm, wm, sd, dcsf, dvent], axis=-1)
    return TemplateAnatomy(fields=fields, region=region, origin=origin)


@functools.lru_cache(maxsize=1)
def template_cavity() -> tuple[np.ndarray, tuple[float, float, float]]:
    """The template's cavity (the T1's non-zero region, holes filled; bool [z, y, x] at 1 mm, index
    growing with MNI x, y, z) and the MNI (x, y, z) mm of index [0, 0, 0]: no canal, no padding, for
    registering the template to a scan (`corelab.synth.background`)."""
    folder = template_dir()
    return ndi.binary_fill_holes(_read(folder, TEMPLATE_FILES["t1"]) > 0), _origin(folder)


def _sharpen(gm: np.ndarray, wm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undo part of the blur of an average of 152 brains: brain fraction and grey share pushed to 0 or 1.

    In the template, cortex rarely reaches a brain fraction of 1 (sulci of different brains do not
    line up), so it would read several HU below grey matter; one brain's cortex does not. Brain
    fractions above 0.75 become 1 and below 0.3 become CSF; the grey share is stretched by 1.3.
    """
    brain = gm + wm
    grey = np.clip((gm / np.maximum(brain, 1e-6) - 0.5) * 1.3 + 0.5, 0.0, 1.0)
    brain = np.clip((brain - 0.3) / 0.45, 0.0, 1.0)
    return (brain * grey).astype(np.float32), (brain * (1.0 - grey)).astype(np.float32)


def _box_edt(target: np.ndarray, within: np.ndarray) -> np.ndarray:
    """Distance (mm, 1 mm grid) to the nearest ``target`` voxel, computed in the box of ``within`` (99 outside)."""
    box = ndi.find_objects(within.astype(np.uint8))[0]
    out = np.full(target.shape, 99.0, dtype=np.float32)
    out[box] = ndi.distance_transform_edt(~target[box])
    return out


def _axes(shape, origin):
    """MNI coordinates (mm) of the grid, as broadcastable [z, y, x] arrays X, Y, Z (float32)."""
    nz, ny, nx = shape
    X = (origin[0] + np.arange(nx, dtype=np.float32))[None, None, :]
    Y = (origin[1] + np.arange(ny, dtype=np.float32))[None, :, None]
    Z = (origin[2] + np.arange(nz, dtype=np.float32))[:, None, None]
    return X, Y, Z


def _add_canal(cavity, gm, wm, X, Y, Z, *, bottom_k: int) -> None:
    """Spinal canal (about 28 x 24 mm, under 900 mm^2) and cord continuing the medulla below the template."""
    lowest = cavity[bottom_k]
    jj = np.nonzero(lowest)[0]
    cy = float(Y[0, :, 0][jj].mean()) if jj.size else -45.0
    below = Z < Z[bottom_k, 0, 0] + 8  # overlaps the template's lowest slices, where the medulla thins
    canal = below & (((X / 14.0) ** 2 + ((Y - cy - 2.0) / 12.0) ** 2) < 1.0)
    cord = canal & (((X / 5.5) ** 2 + ((Y - cy) / 5.0) ** 2) < 1.0) & (Z < Z[bottom_k, 0, 0])
    cavity |= canal
    wm[cord] = 0.75
    gm[cord] = 0.25


def _brain_regions(gm, wm, csf, sd, X, Y, Z) -> np.ndarray:
    """Region codes inside the cavity: infratentorial, deep grey nuclei, falx, calcification sites."""
    region = np.zeros(gm.shape, dtype=np.uint8)
    # Below the tentorium: a surface falling backwards and laterally from the culmen, fitted by eye
    # to the CSF gap between the occipital and temporal lobes and the cerebellum in this template;
    # between the temporal lobes only the brainstem and the anterior cerebellum lie below it.
    tent = -12.0 - 0.3 * np.clip(-Y - 50.0, 0.0, None) - 0.15 * np.abs(X)
    infra = (sd < 0) & (Z < tent) & ((Y < -45) | ((Y < -28) & (np.abs(X) < 25)))
    # Brainstem: a column tilted backwards as it descends (midbrain (0,-25,-10) to medulla (0,-41,-55)).
    yc = -25.0 + 0.35 * (Z + 10.0)
    stem = (np.abs(X) < 12) & (np.abs(Y - yc) < 12) & (Z < -8) & (sd < 0)
    region[infra] = R.CEREBELLUM
    region[stem & (infra | (Z < -20))] = R.STEM
    deep = (gm > 0.45) & (sd < -18) & ~infra & ~stem
    region[deep & (np.abs(X) > 6) & (np.abs(X) < 32) & (Y > -12) & (Y < 28) & (Z > -12) & (Z < 24)] = R.BASAL
    region[deep & (np.abs(X) < 22) & (Y <= -12) & (Y > -38) & (Z > -6) & (Z < 22)] = R.THALAMUS
    third = (Y > -42) & (Y < 30) & (Z < 26)
    region[(np.abs(X) < 0.8) & (csf > 0.4) & (Z > -20) & (sd < 0) & ~third & ~infra] = R.FALX
    region[(X**2 + (Y + 29) ** 2 + (Z + 1) ** 2) < 2.5**2] = R.PINEAL
    for side in (-1, 1):
        box = (X * side > 18) & (X * side < 36) & (Y > -50) & (Y < -28) & (Z > 6) & (Z < 24)
        score = np.where(box, csf, -1.0)
        k, j, i = np.unravel_index(int(np.argmax(score)), score.shape)
        cx, cy, cz = X[0, 0, i], Y[0, j, 0], Z[k, 0, 0]
        region[((X - cx) ** 2 + (Y - cy) ** 2 + (Z - cz) ** 2) < 2.2**2] = R.CHOROID
    return region


def _ellipsoid(X, Y, Z, c, r):
    return ((X - c[0]) / r[0]) ** 2 + ((Y - c[1]) / r[1]) ** 2 + ((Z - c[2]) / r[2]) ** 2 < 1.0


def _head_regions(region, cavity, sd, X, Y, Z) -> None:
    """Region codes outside the cavity: skull base, face and neck, facial bone, sinuses, orbits, mastoids."""
    outside = ~cavity
    low = Z < 0
    hull = _closing(cavity, 7.0)
    region[hull & outside & low] = R.BASE
    region[outside & (sd > 0) & (sd < 3.5) & (Z < -22)] = R.BASE  # the cranial floor: dense bone, no diploe
    face_c, face_r = (0, 10, -76), (70, 88, 50)  # face, jaws, ears and neck below the cranial floor
    face = _ellipsoid(X, Y, Z, face_c, face_r) & outside & (region == 0)
    region[face] = R.FACE
    shell = face & _ellipsoid(X, Y, Z, face_c, (66, 84, 46)) & ~_ellipsoid(X, Y, Z, face_c, (62, 80, 42)) & (Y > 22)
    region[shell] = R.FACE_BONE  # maxilla and zygomas under the skin of the face
    for side in (-1, 1):
        region[_ellipsoid(X, Y, Z, (side * 32, 50, -40), (16, 20, 15)) & outside] = R.ORBIT
        region[_ellipsoid(X, Y, Z, (side * 32, 60, -40), (12, 12, 12)) & outside] = R.EYE
        region[_ellipsoid(X, Y, Z, (side * 25, 44, -62), (13, 15, 16)) & outside] = R.SINUS  # maxillary
        region[_ellipsoid(X, Y, Z, (side * 55, -24, -44), (9, 11, 9)) & outside] = R.CELLS  # mastoid
    region[_ellipsoid(X, Y, Z, (0, 54, -60), (7, 24, 16)) & outside] = R.CELLS  # nasal cavity, turbinates
    region[_ellipsoid(X, Y, Z, (0, 44, -36), (9, 14, 10)) & outside] = R.CELLS  # ethmoid
    region[_ellipsoid(X, Y, Z, (0, 16, -40), (11, 11, 9)) & outside] = R.SINUS  # sphenoid
    region[_ellipsoid(X, Y, Z, (0, 74, 2), (14, 6, 10)) & outside & (sd > 2)] = R.SINUS  # frontal
