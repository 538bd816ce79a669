"""A parametric adult head: skull, scalp, skull base, brain, CSF spaces, as tissue labels.

Everything is drawn in a head frame in mm: x to the patient's left, y anterior, z superior, origin
near the third ventricle. Shapes are implicit functions ("pseudo-distances": negative inside, about
mm) so that unions, layers (skull = a shell around the cavity) and partial volume are cheap.
No atlas is used; every size below is varied per patient by `draw_anatomy`.

Tissue HU (`draw_tissue_hu`) are typical unenhanced head-CT values from the literature:
Radiopaedia, "Hounsfield unit" (grey matter +37..+45, white matter +20..+30, CSF 0..+15,
clotted blood +50..+75 [we use +50..+90 for haemorrhagic transformation as in the issue],
fat -100..-50, muscle +35..+55, cortical bone +500..+1900); Kalender WA, Computed Tomography,
3rd ed. 2011, ch. 1 (HU scale, air -1000, water 0). Deep grey nuclei sit a few HU below cortex and
the thalamus below the basal ganglia (Radiopaedia, "Basal ganglia"); choroid plexus and pineal
calcifications are common incidental findings in adults (> 100 HU).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corelab.synth.fields import upsample2

__all__ = [
    "T", "AnatomyParams", "TissueHU", "draw_anatomy", "draw_tissue_hu", "tissue_labels", "tissue_to_hu",
    "paint_ventricles",
]


class T:
    """Tissue codes of the fine label map (not written anywhere; HU come from `TissueHU`)."""

    AIR, SOFT, FAT, MUSCLE, BONE, DIPLOE, CSF, GM, WM, BASAL, THALAMUS, CEREBELLUM, STEM = range(13)
    FALX, CALC, EYE, SINUS = 13, 14, 15, 16
    PARENCHYMA = (7, 8, 9, 10, 11, 12)  # tissue that can infarct


@dataclass(frozen=True)
class AnatomyParams:
    """Per-patient shape parameters (mm unless stated)."""

    scale: float  # head size factor, 1 = average adult
    brain_radii: tuple[float, float, float, float]  # x, y anterior, y posterior, z up
    skull_mm: float  # mean skull thickness
    scalp_mm: float
    sas_mm: float  # subarachnoid CSF between brain and inner table
    sulcus_half_mm: float  # half width of a sulcus
    sulcus_depth_mm: float
    cortex_mm: float  # cortical ribbon thickness
    gyrus_mm: float  # correlation length of the gyral pattern
    atrophy: float  # 0 (young) .. 1 (marked atrophy): widens ventricles and sulci
    choroid_calc: bool
    pineal_calc: bool


@dataclass(frozen=True)
class TissueHU:
    """Mean HU of each tissue for one patient (before scanner calibration)."""

    gm: float
    wm: float
    basal: float
    thalamus: float
    cerebellum: float
    stem: float
    csf: float
    bone: float
    diploe: float
    soft: float
    fat: float
    muscle: float
    falx: float
    calc: float
    eye: float


def draw_anatomy(rng: np.random.Generator, *, atrophy: float | None = None) -> AnatomyParams:
    """Draw one patient's head shape; ``atrophy`` (0..1) fixed when given, else drawn mild."""
    scale = float(np.clip(rng.normal(1.0, 0.04), 0.9, 1.1))
    a = float(rng.uniform(0.0, 0.35)) if atrophy is None else float(atrophy)
    return AnatomyParams(
        scale=scale,
        brain_radii=tuple(float(scale * rng.uniform(lo, hi)) for lo, hi in ((64, 70), (78, 86), (84, 92), (62, 70))),
        skull_mm=float(rng.uniform(4.5, 8.0)),
        scalp_mm=float(rng.uniform(4.0, 7.0)),
        sas_mm=float(rng.uniform(0.8, 1.8) + 2.5 * a),
        sulcus_half_mm=float(rng.uniform(0.5, 0.9) + 1.6 * a),
        sulcus_depth_mm=float(rng.uniform(11, 17)),
        cortex_mm=float(rng.uniform(2.4, 3.4)),
        gyrus_mm=float(rng.uniform(5.0, 6.5)),
        atrophy=a,
        choroid_calc=bool(rng.random() < 0.6),
        pineal_calc=bool(rng.random() < 0.5),
    )


def draw_tissue_hu(rng: np.random.Generator) -> TissueHU:
    """Draw one patient's tissue HU inside the literature ranges (see module docstring)."""
    gm = float(rng.uniform(37.5, 44.0))
    wm = float(gm - rng.uniform(7.5, 10.5))  # grey-white contrast of about 8-10 HU
    return TissueHU(
        gm=gm,
        wm=wm,
        basal=float(gm - rng.uniform(1.0, 3.0)),
        thalamus=float(gm - rng.uniform(3.0, 5.5)),
        cerebellum=float(gm - rng.uniform(0.0, 2.0)),
        stem=float(wm + rng.uniform(2.0, 5.0)),
        csf=float(rng.uniform(3.0, 9.0)),
        bone=float(rng.uniform(1300, 1800)),
        diploe=float(rng.uniform(450, 800)),
        soft=float(rng.uniform(30, 45)),
        fat=float(rng.uniform(-110, -80)),
        muscle=float(rng.uniform(40, 55)),
        falx=float(rng.uniform(45, 70)),
        calc=float(rng.uniform(150, 450)),
        eye=float(rng.uniform(5, 15)),
    )


def _ellipsoid(x, y, z, c, r):
    """Pseudo-distance (mm, negative inside) to an axis-aligned ellipsoid, exact along rays."""
    dx, dy, dz = x - c[0], y - c[1], z - c[2]
    rho = np.sqrt((dx / r[0]) ** 2 + (dy / r[1]) ** 2 + (dz / r[2]) ** 2) + 1e-6
    return np.sqrt(dx * dx + dy * dy + dz * dz) * (1.0 - 1.0 / rho)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _smin(a, b, k=6.0):
    """Smooth union of two pseudo-distances (k in mm), so lobes join without creases."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def cavity_distance(x, y, z, p: AnatomyParams, shape_noise):
    """Pseudo-distance (mm) to the inner table: cerebrum on its fossae, cerebellum, brainstem, canal."""
    s = p.scale
    rx, ry_a, ry_p, rz = p.brain_radii
    ry = np.where(y > 0, np.float32(ry_a), np.float32(ry_p))
    rzz = np.where(z > 0, np.float32(rz), np.float32(48 * s))
    cerebrum = _ellipsoid(x, y, z, (0, 0, 0), (rx, ry, rzz))
    # Cranial floor: anterior fossa high (orbital roofs), middle fossa low laterally (temporal
    # lobes), sella/sphenoid in the midline; the cerebellum is a separate component below.
    temporal = 22 * s * np.exp(-(((y - 5 * s) / (24 * s)) ** 2)) * _sigmoid((np.abs(x) - 20 * s) / 4)
    # Orbital roofs rise gently forwards and laterally; the cribriform plate dips in the midline.
    orbital = 0.22 * np.clip(y - 15 * s, 0, None) * (1 - np.exp(-((x / (12 * s)) ** 2)) * 0.5)
    floor = -14 * s - temporal + orbital - 0.06 * np.clip(-y, 0, None)
    cerebrum = np.maximum(cerebrum, floor - z)
    fossa = _ellipsoid(x, y, z, (0, -46 * s, -36 * s), (50 * s, 36 * s, 25 * s))
    fossa = np.maximum(fossa, z - (-12 * s))
    # Brainstem and spinal canal: about 26 x 24 mm at the foramen magnum (area < 900 mm^2).
    t = np.clip((z + 10 * s) / (-70 * s), 0, 1)
    cy = -16 * s - 14 * s * t
    stem = np.sqrt((x / (13 + 3 * (1 - t))) ** 2 + ((y - cy) / (12 + 2 * (1 - t))) ** 2) * 12.5 - 12.5
    stem = np.maximum(stem, z - (-5 * s))
    d = _smin(_smin(cerebrum, fossa, 8.0), stem, 6.0)
    return d + 1.5 * shape_noise


def _cavity_coarse(x, y, z, p: AnatomyParams, shape_noise) -> np.ndarray:
    """`cavity_distance` evaluated on every second voxel per axis and interpolated (8x faster).

    The pseudo-distance is smooth, so linear interpolation moves the inner table by a small
    fraction of a voxel; head-frame coordinates are affine in the index, so block centres are
    the mean of two opposite block corners.
    """
    even = tuple(n - n % 2 for n in x.shape)
    if min(even) == 0:
        return cavity_distance(x, y, z, p, shape_noise)
    lo = tuple(slice(0, n, 2) for n in even)
    hi = tuple(slice(1, n, 2) for n in even)
    xc, yc, zc = (0.5 * (v[lo] + v[hi]) for v in (x, y, z))
    cav = cavity_distance(xc, yc, zc, p, shape_noise[lo])
    for axis in range(3):
        cav = upsample2(cav, axis)
    pad = [(0, n - e) for n, e in zip(x.shape, even)]
    return np.pad(cav, pad, mode="edge") if any(w for _, w in pad) else cav


def _box(x, y, z, c, r, *, step: int = 4, margin_mm: float = 12.0):
    """Index box (tuple of slices) of the voxels that may lie inside ellipsoid (c, r), or None.

    Found on every ``step``-th voxel with the radii grown by ``margin_mm``, so that small
    structures cost a few thousand evaluations instead of the whole volume.
    """
    xs, ys, zs = x[::step, ::step, ::step], y[::step, ::step, ::step], z[::step, ::step, ::step]
    q = ((xs - c[0]) / (r[0] + margin_mm)) ** 2 + ((ys - c[1]) / (r[1] + margin_mm)) ** 2
    q += ((zs - c[2]) / (r[2] + margin_mm)) ** 2
    hit = np.nonzero(q < 1.0)
    if hit[0].size == 0:
        return None
    return tuple(slice(max(0, int(h.min()) * step - step), int(h.max()) * step + step + 1) for h in hit)


def _paint(lab, x, y, z, c, r, value, *, where=None, extra=None) -> None:
    """Set ``lab`` to ``value`` inside ellipsoid (c, r) (and where ``where``, and ``extra(box)``)."""
    box = _box(x, y, z, c, r)
    if box is None:
        return
    xb, yb, zb = x[box], y[box], z[box]
    m = ((xb - c[0]) / r[0]) ** 2 + ((yb - c[1]) / r[1]) ** 2 + ((zb - c[2]) / r[2]) ** 2 < 1.0
    if where is not None:
        m &= where[box]
    if extra is not None:
        m &= extra(box)
    lab[box][m] = value


def tissue_labels(x, y, z, p: AnatomyParams, *, shape_noise, gyral, fine) -> tuple[np.ndarray, np.ndarray]:
    """Fine tissue label map (codes of `T`) and the depth inside the inner table (mm, < 0 outside).

    x, y, z: head-frame coordinates (mm) of every fine voxel. shape_noise: low-frequency unit
    field (skull and brain outline); gyral: unit field with the gyral correlation length; fine: a
    unit field of a few mm for small texture (cerebellar folia, diploe, mastoid air cells).
    """
    s = p.scale
    a = p.atrophy
    cav = _cavity_coarse(x, y, z, p, shape_noise)
    depth = -cav
    lab = np.zeros(x.shape, dtype=np.uint8)

    # Scalp, temporalis muscle and skull, as shells outside the cavity (only near it is computed).
    near = np.flatnonzero((cav > -1.0) & (cav < 30.0))
    cn, xn, yn, zn, nn = cav.ravel()[near], x.ravel()[near], y.ravel()[near], z.ravel()[near], shape_noise.ravel()[near]
    skull = p.skull_mm * (1 + 0.18 * nn) + 1.5 * _sigmoid(-(zn + 25 * s) / 6)
    temporalis = 9 * np.exp(-(((zn + 5 * s) / (22 * s)) ** 2)) * _sigmoid((np.abs(xn) - 45 * s) / 6)
    temporalis *= _sigmoid((yn + 10 * s) / 10)
    scalp = p.scalp_mm + temporalis
    code = np.zeros(near.size, dtype=np.uint8)
    code[cn < skull + scalp] = T.SOFT
    code[(cn > skull + 1.2) & (cn < skull + 1.2 + 0.45 * scalp)] = T.FAT
    code[(cn > skull) & (cn < skull + temporalis) & (temporalis > 2)] = T.MUSCLE
    table = np.clip(0.28 * skull, 1.2, 2.2)
    shell = (cn >= 0) & (cn < skull)
    code[shell] = T.BONE
    code[shell & (cn > table) & (cn < skull - table) & (skull > 4.0)] = T.DIPLOE
    # The cranial floor is a thicker plate of dense bone (petrous ridges, sphenoid, orbital roofs).
    code[(cn >= skull) & (cn < skull + 2.5) & (zn < -25 * s)] = T.BONE
    lab.ravel()[near] = code
    # Face, skull base and neck below the cranial floor: soft tissue with sinuses and orbits.
    _paint(lab, x, y, z, (0, 15 * s, -62 * s), (55 * s, 80 * s, 46 * s), T.SOFT, where=(lab == 0) & (cav > 0))
    outside = cav > 0
    # Facial skeleton (maxilla, zygomas) under a few mm of skin at the front of the face.
    face = (0, 15 * s, -62 * s)
    front = lambda b: y[b] > 25 * s  # noqa: E731 - a one-line condition for _paint
    _paint(lab, x, y, z, face, (51 * s, 76 * s, 42 * s), T.BONE, where=outside & (lab == T.SOFT), extra=front)
    _paint(lab, x, y, z, face, (47 * s, 72 * s, 38 * s), T.SOFT, where=outside & (lab == T.BONE), extra=front)
    _paint(lab, x, y, z, (0, 52 * s, -58 * s), (7 * s, 24 * s, 16 * s), T.SINUS, where=outside,
           extra=lambda b: fine[b] > -0.5)  # nasal cavity with turbinates
    _paint(lab, x, y, z, (0, 22 * s, -30 * s), (11 * s, 11 * s, 9 * s), T.SINUS, where=outside)
    _paint(lab, x, y, z, (0, 44 * s, -22 * s), (9 * s, 14 * s, 12 * s), T.SINUS, where=outside,
           extra=lambda b: fine[b] > -0.4)  # ethmoid cells
    for side in (-1, 1):
        _paint(lab, x, y, z, (side * 24 * s, 48 * s, -62 * s), (13 * s, 15 * s, 17 * s), T.SINUS, where=outside)
        _paint(lab, x, y, z, (side * 52 * s, -18 * s, -38 * s), (9 * s, 11 * s, 9 * s), T.SINUS, where=outside,
               extra=lambda b: fine[b] > 0.3)  # mastoid air cells
        _paint(lab, x, y, z, (side * 30 * s, 56 * s, -30 * s), (16 * s, 20 * s, 15 * s), T.FAT, where=outside)
        _paint(lab, x, y, z, (side * 31 * s, 64 * s, -30 * s), (12, 12, 12), T.EYE, where=outside)

    ins = np.flatnonzero(cav < 0)
    xi, yi, zi, di = x.ravel()[ins], y.ravel()[ins], z.ravel()[ins], depth.ravel()[ins]
    # Cortex: pial distance is the smaller of the distance to the brain surface and to a sulcus.
    # Sulci are thin sheets where the gyral field crosses zero, reaching sulcus_depth_mm.
    sheet = np.abs(gyral.ravel()[ins]) * (p.gyrus_mm / 1.6) - p.sulcus_half_mm
    below = np.clip(di - p.sulcus_depth_mm, 0, None)
    sulcal = np.where(sheet < 0, np.where(below > 0, below, sheet), np.sqrt(sheet**2 + below**2))
    # Interhemispheric fissure above the corpus callosum and in front of / behind it; Sylvian
    # fissure reaching in to the insula.
    cc_top = 24 * s + 6 * np.exp(-((yi / (30 * s)) ** 2))
    mid_open = ((zi > cc_top) | (np.abs(yi) > 36 * s)) & (zi > -14 * s)
    mid = np.where(mid_open, np.abs(xi) - (0.9 + 0.8 * a), 99.0)
    # The insular cistern is a near-vertical cleft lateral to the insula; the Sylvian fissure's
    # stem runs from it out to the surface, so both appear as thin lines on axial slices.
    half = 0.8 + 0.9 * a
    ax_ = np.abs(xi)
    level = (zi > -14 * s) & (zi < 12 * s + 0.2 * yi)
    insula = (yi > -22 * s) & (yi < 22 * s) & level
    wiggle = 1.5 * gyral.ravel()[ins]  # the insula's short gyri make the cistern wavy
    syl = np.where(insula, np.abs(ax_ - (36 - 2 * a) * s + 0.008 * yi**2 + wiggle) - half, 99.0)
    stem_on = (ax_ > 36 * s) & level & (np.abs(yi) < 30 * s)
    syl = np.minimum(syl, np.where(stem_on, np.abs(yi - (4 * s + 0.5 * (ax_ - 36 * s))) - half, 99.0))
    pial = np.minimum(np.minimum(di - p.sas_mm, sulcal), np.minimum(mid, syl))
    code = np.full(ins.size, T.CSF, dtype=np.uint8)
    code[pial >= 0] = T.GM
    code[pial >= p.cortex_mm] = T.WM
    code[(np.abs(xi) < 0.5) & mid_open] = T.FALX
    # Posterior fossa: cerebellum (cortex with folia around a white core) and brainstem.
    post = (zi < -12 * s - 0.2 * np.clip(yi + 40 * s, 0, None)) & (yi < -5 * s)
    cb = post & (pial >= 0)
    code[cb] = T.CEREBELLUM
    code[cb & (np.abs(fine.ravel()[ins]) < 0.12)] = T.CSF  # folia
    core = ((xi / (30 * s)) ** 2 + ((yi + 45 * s) / (18 * s)) ** 2 + ((zi + 36 * s) / (12 * s)) ** 2) < 1
    code[post & core] = T.WM
    t = np.clip((zi + 10 * s) / (-70 * s), 0, 1)
    cy = -16 * s - 14 * s * t
    stem = (xi / (11 + 3 * (1 - t))) ** 2 + ((yi - cy) / (10 + 2 * (1 - t))) ** 2 < 1
    code[stem & (zi < -6 * s)] = T.STEM
    lab.ravel()[ins] = code

    # Deep grey nuclei, then ventricles and cisterns (which win), then calcifications.
    inside = cav < 0
    for side in (-1, 1):
        _paint(lab, x, y, z, (side * 14 * s, 14 * s, 10 * s), (6 * s, 10 * s, 9 * s), T.BASAL, where=inside)
        _paint(lab, x, y, z, (side * 23 * s, 2 * s, 0), (6 * s, 15 * s, 10 * s), T.BASAL, where=inside)
        _paint(lab, x, y, z, (side * 11 * s, -14 * s, 4 * s), (8 * s, 13 * s, 9 * s), T.THALAMUS, where=inside)
    paint_ventricles(lab, x, y, z, p, T.CSF, where=inside)
    if p.choroid_calc:
        for side in (-1, 1):
            _paint(lab, x, y, z, (side * (20 + 3 * a) * s, -28 * s, 9 * s), (1.8, 2.5, 1.8), T.CALC)
    if p.pineal_calc:
        _paint(lab, x, y, z, (0, -28 * s, 3 * s), (2.2, 2.2, 2.2), T.CALC)
    return lab, depth


def paint_ventricles(lab, x, y, z, p: AnatomyParams, value, *, where=None) -> None:
    """Lateral (frontal horn, body, atrium, temporal horn), third and fourth ventricles, basal cisterns."""
    s, a = p.scale, p.atrophy
    for side in (-1, 1):
        # Frontal horns sit either side of the septum and the bodies diverge posteriorly (a
        # rotated ellipsoid per side), joining the atria: the butterfly shape on axial slices.
        box = _box(x, y, z, (side * 10 * s, -4 * s, 14 * s), (16 * s, 34 * s, 10 * s))
        if box is not None:
            ang = np.deg2rad(8.0) * side
            xb, yb, zb = x[box] - side * (7 + 3 * a) * s, y[box] - 2 * s, z[box] - 15 * s
            xr = xb * np.cos(ang) + yb * np.sin(ang)
            yr = -xb * np.sin(ang) + yb * np.cos(ang)
            m = (xr / ((4.5 + 4 * a) * s)) ** 2 + (yr / (30 * s)) ** 2 + (zb / ((6.5 + 3 * a) * s)) ** 2 < 1
            m &= (x[box] * side) > 1.0  # septum pellucidum between the frontal horns
            if where is not None:
                m &= where[box]
            lab[box][m] = value
        atrium = ((6 + 3 * a) * s, 12 * s, (8 + 3 * a) * s)
        _paint(lab, x, y, z, (side * (19 + 3 * a) * s, -27 * s, 10 * s), atrium, value, where=where)
        temporal_horn = ((2.5 + 2 * a) * s, 15 * s, (2.5 + 2 * a) * s)
        _paint(lab, x, y, z, (side * 30 * s, -8 * s, -16 * s), temporal_horn, value, where=where)
    _paint(lab, x, y, z, (0, -6 * s, 2 * s), ((1.8 + 2 * a) * s, 13 * s, 8 * s), value, where=where)
    _paint(lab, x, y, z, (0, -36 * s, -38 * s), (7 * s, 4 * s, 7 * s), value, where=where)
    _paint(lab, x, y, z, (0, 10 * s, -14 * s), (12 * s, 7 * s, 3.5 * s), value, where=where)  # suprasellar cistern
    _paint(lab, x, y, z, (0, -2 * s, -34 * s), (9 * s, 3 * s, 14 * s), value, where=where)  # prepontine cistern
    _paint(lab, x, y, z, (0, -74 * s, -52 * s), (14 * s, 8 * s, 9 * s), value, where=where)  # cisterna magna


def tissue_to_hu(lab: np.ndarray, hu: TissueHU, *, texture: np.ndarray, fine: np.ndarray) -> np.ndarray:
    """HU of every fine voxel from its tissue label, with mild tissue texture (texture, fine: unit fields)."""
    table = np.full(17, -1000.0, dtype=np.float32)
    table[T.SOFT], table[T.FAT], table[T.MUSCLE] = hu.soft, hu.fat, hu.muscle
    table[T.BONE], table[T.DIPLOE], table[T.CSF] = hu.bone, hu.diploe, hu.csf
    table[T.GM], table[T.WM], table[T.BASAL], table[T.THALAMUS] = hu.gm, hu.wm, hu.basal, hu.thalamus
    table[T.CEREBELLUM], table[T.STEM], table[T.FALX], table[T.CALC] = hu.cerebellum, hu.stem, hu.falx, hu.calc
    table[T.EYE], table[T.SINUS] = hu.eye, -950.0
    out = table[lab]
    # Brain tissue is not uniform (vessels, myelination): about +-1 HU of smooth texture.
    brain = lab >= T.GM
    out[brain] += (1.0 * texture[brain]).astype(np.float32)
    bone = (lab == T.BONE) | (lab == T.DIPLOE)
    out[bone] *= (1.0 + 0.18 * fine[bone]).astype(np.float32)
    return out
