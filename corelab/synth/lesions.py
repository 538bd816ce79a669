"""Infarcts by vascular territory, haemorrhagic transformation, and mimics (not in the reference).

All functions work on the fine grid in the head frame (see `anatomy`): x left, y anterior,
z superior, mm. A lesion is a boolean mask plus, for the infarct, a per-voxel "drop" weight
(0..1) that the phantom scales so the written scan's mean infarct HU hits the class target.

Territories (after Tatu et al., Neurology 1998;50:1699, simplified to boxes and ellipsoids in
an average head): MCA lateral convexity and basal ganglia, split into superior and inferior
divisions and deep (lenticulostriate) branches; ACA the medial frontal and parietal strip; PCA the
occipital lobe, medial temporal lobe and thalamus; lacunes small deep infarcts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "TERRITORIES", "Territory", "territory_mask", "grow_lesion", "grow_in_territory", "satellite", "hemorrhage",
    "drop_weight", "effaced_sulci", "draw_volume_ml", "pick_territory", "CLASS_VOLUME_ML", "CLASS_TARGET_HU", "CLASS_SHARE",
]

# Median and IQR of infarct volume (mL) per hypodensity class (paper, "Results").
CLASS_VOLUME_ML: dict[str, tuple[float, float, float]] = {
    "severe": (89.0, 35.0, 210.0),
    "intermediate": (46.0, 18.0, 101.0),
    "subtle": (29.0, 11.0, 86.0),
}
# Target mean infarct HU on the written scan, well inside each class range [14,22), [22,32), [32,44].
CLASS_TARGET_HU: dict[str, tuple[float, float]] = {
    "severe": (16.0, 20.0),
    "intermediate": (24.0, 30.0),
    "subtle": (33.5, 39.0),
}
# Share of each class among test infarcts in the paper's Table 1 (67, 204, 125 of 396).
CLASS_SHARE: dict[str, float] = {"severe": 67 / 396, "intermediate": 204 / 396, "subtle": 125 / 396}


@dataclass(frozen=True)
class Territory:
    """A vascular territory: a seed (head frame, mm, for the left side) and growth radii (mm)."""

    name: str
    seed: tuple[float, float, float]
    radii: tuple[float, float, float]
    max_ml: float  # larger targets are drawn in a bigger territory


TERRITORIES: dict[str, Territory] = {
    "MCA": Territory("MCA", (45, 2, 4), (34, 50, 38), 400),
    "MCA-superior": Territory("MCA-superior", (45, 12, 24), (26, 36, 26), 150),
    "MCA-inferior": Territory("MCA-inferior", (50, -18, -6), (22, 34, 24), 120),
    "MCA-deep": Territory("MCA-deep", (22, 4, 6), (12, 18, 16), 40),
    "ACA": Territory("ACA", (8, 20, 40), (14, 50, 30), 90),
    "PCA": Territory("PCA", (22, -62, 4), (26, 26, 24), 110),
    "lacunar": Territory("lacunar", (18, -4, 8), (5, 6, 6), 3),
}


def territory_mask(name: str, x, y, z, side: int, s: float) -> np.ndarray:
    """Where a territory can reach (one hemisphere; side +1 = left, -1 = right); s: head scale."""
    xs = x * side
    hemi = xs > 1.5
    aca = (xs < 20 * s) & (y > -45 * s) & (z > 2 * s)
    pca = (y < -42 * s) | ((xs < 36 * s) & (y < -5 * s) & (z < -6 * s)) | (
        (np.abs(xs - 11 * s) < 9 * s) & (y < -2 * s) & (y > -28 * s) & (np.abs(z - 4 * s) < 10 * s)
    )
    if name == "ACA":
        return hemi & aca
    if name == "PCA":
        return hemi & pca & (z > -40 * s)
    if name == "lacunar":
        return hemi & (xs < 32 * s) & (np.abs(y) < 30 * s) & (np.abs(z - 6 * s) < 18 * s)
    mca = hemi & ~aca & ~pca & (z > -40 * s)
    if name == "MCA-superior":
        return mca & (z > 4 * s)
    if name == "MCA-inferior":
        return mca & (z < 14 * s) & (y < 18 * s)
    if name == "MCA-deep":
        return mca & (xs < 34 * s)
    return mca


def grow_lesion(
    x, y, z, *, seed, radii, allowed: np.ndarray, noise: np.ndarray, target_voxels: int, roughness: float = 0.35
) -> np.ndarray:
    """The ``target_voxels`` allowed voxels closest to ``seed`` in an ellipsoidal metric plus noise.

    Ranking instead of a fixed radius gives the exact volume asked for (capped at what is
    allowed); the low-frequency ``noise`` makes the border lobulated like a real infarct.

    >>> g = np.mgrid[0:10, 0:10, 0:10].astype(float)
    >>> m = grow_lesion(g[2], g[1], g[0], seed=(5, 5, 5), radii=(3, 3, 3), allowed=np.ones((10,) * 3, bool),
    ...                 noise=np.zeros((10,) * 3), target_voxels=33)
    >>> int(m.sum()), bool(m[5, 5, 5])
    (33, True)
    """
    out = np.zeros(allowed.shape, dtype=bool)
    idx = np.flatnonzero(allowed)
    if target_voxels <= 0 or idx.size == 0:
        return out
    xf, yf, zf = x.ravel()[idx], y.ravel()[idx], z.ravel()[idx]
    r = np.sqrt(((xf - seed[0]) / radii[0]) ** 2 + ((yf - seed[1]) / radii[1]) ** 2 + ((zf - seed[2]) / radii[2]) ** 2)
    score = r * (1.0 + roughness * noise.ravel()[idx])
    k = min(int(target_voxels), idx.size)
    chosen = idx[np.argpartition(score, k - 1)[:k]]
    out.ravel()[chosen] = True
    return out


def draw_volume_ml(rng: np.random.Generator, klass: str) -> float:
    """Infarct volume (mL), log-normal with the paper's class median and IQR, clipped to 1..300 mL."""
    median, q1, q3 = CLASS_VOLUME_ML[klass]
    sigma = np.log(q3 / q1) / (2 * 0.6745)
    return float(np.clip(median * np.exp(sigma * rng.standard_normal()), 1.0, 300.0))


def pick_territory(rng: np.random.Generator, volume_ml: float) -> str:
    """A territory that can hold ``volume_ml``: big infarcts are MCA, small ones branch or lacunar."""
    names = [n for n, t in TERRITORIES.items() if t.max_ml >= volume_ml]
    weights = {
        "MCA": 3.0, "MCA-superior": 2.0, "MCA-inferior": 2.0, "MCA-deep": 1.0, "ACA": 0.8, "PCA": 1.2, "lacunar": 0.6,
    }
    p = np.array([weights[n] for n in names])
    return str(rng.choice(names, p=p / p.sum()))


def grow_in_territory(
    rng, x, y, z, ter, side, s, allowed, noise, n_voxels, *, warp, gyral, rule=territory_mask
) -> np.ndarray:
    """A lesion of ``n_voxels`` fine voxels grown in territory ``ter`` on ``side``.

    Territory borders are drawn on coordinates displaced by up to about 1 cm (``warp``, a
    low-frequency unit field), as real watershed borders are neither planes nor the same twice.
    rule: the territory rule, ``rule(name, x, y, z, side, s) -> mask`` (`territory_mask` for the
    procedural head; the atlas family passes its rules in template coordinates).
    """
    jitter = rng.uniform(-5, 5, size=3)
    seed = (side * ter.seed[0] * s + jitter[0], ter.seed[1] * s + jitter[1], ter.seed[2] * s + jitter[2])
    radii = tuple(r * s * rng.uniform(0.8, 1.2) for r in ter.radii)
    amp = float(rng.uniform(5.0, 10.0))
    # Only allowed voxels are tested against the (warped) territory: a small share of the grid.
    # The gyral field in the warp makes borders follow gyri rather than straight lines.
    idx = np.flatnonzero(allowed)
    xs, ys, zs = x.ravel()[idx], y.ravel()[idx], z.ravel()[idx]
    ns, ws, gs = noise.ravel()[idx], warp.ravel()[idx], gyral.ravel()[idx]
    reach = np.zeros(allowed.shape, dtype=bool)
    inside = rule(
        ter.name, xs + amp * ns, ys + amp * (0.6 * ws + 0.5 * gs), zs - amp * (0.6 * ws - 0.5 * gs), side, s
    )
    reach.ravel()[idx[inside]] = True
    return grow_lesion(x, y, z, seed=seed, radii=radii, allowed=reach, noise=noise, target_voxels=int(n_voxels))


def satellite(rng, x, y, z, ter, side, s, allowed, noise, voxel_ml, *, rule=territory_mask) -> np.ndarray:
    """A small embolic satellite (0.3-2 mL) somewhere else in the same territory (``rule``: as `grow_in_territory`)."""
    where = np.flatnonzero(allowed & rule(ter.name, x, y, z, side, s) & (noise > 0.5))
    if where.size == 0:
        return np.zeros(allowed.shape, dtype=bool)
    c = where[rng.integers(where.size)]
    seed = (x.ravel()[c], y.ravel()[c], z.ravel()[c])
    n = rng.uniform(0.3, 2.0) / voxel_ml
    return grow_lesion(x, y, z, seed=seed, radii=(5, 5, 5), allowed=allowed, noise=noise, target_voxels=int(n))


def hemorrhage(rng, infarct, parenchyma, fine, mid, voxel_ml):
    """Haemorrhagic transformation: petechial spots inside, or a haematoma inside or beside the infarct."""
    if not infarct.any():
        return np.zeros(infarct.shape, dtype=bool), ""
    if rng.random() < 0.4:
        spots = infarct & (fine > 1.5) & (mid > 0.0)
        if spots.sum() * voxel_ml >= 0.3:
            return spots, "petechial"
    idx = np.flatnonzero(infarct)
    c = np.unravel_index(idx[rng.integers(idx.size)], infarct.shape)
    target = min(rng.uniform(1.0, 15.0), 0.4 * infarct.sum() * voxel_ml)
    zz, yy, xx = (np.arange(n, dtype=np.float32) for n in infarct.shape)
    # Work in voxel units; the haematoma is a lobulated blob in parenchyma around c.
    box = tuple(slice(max(0, ci - 40), ci + 41) for ci in c)
    sub = np.zeros(infarct.shape, dtype=bool)
    gz, gy, gx = np.meshgrid(zz[box[0]], yy[box[1]], xx[box[2]], indexing="ij")
    blob = grow_lesion(
        gx, gy, gz, seed=(c[2], c[1], c[0]), radii=(1.0, 1.0, 1.0), allowed=parenchyma[box],
        noise=mid[box], target_voxels=int(target / voxel_ml), roughness=0.2,
    )
    sub[box] = blob
    return sub, "hematoma"


def drop_weight(rng, infarct, hypodensity, mid, spacing) -> np.ndarray:
    """Per-voxel share (0..~1.5) of the infarct's HU drop: a ramp at the border, patchy inside.

    Old, severe infarcts have sharp borders; young, subtle ones fade over several mm.
    """
    w = np.zeros(infarct.shape, dtype=np.float32)
    if not infarct.any():
        return w
    border = {"severe": (0.8, 1.8), "intermediate": (1.5, 3.0), "subtle": (1.0, 2.0)}[hypodensity]
    border_mm = rng.uniform(*border)
    het = rng.uniform(0.12, 0.3)
    box = ndi.find_objects(infarct.astype(np.uint8))[0]
    pad = tuple(slice(max(0, b.start - 2), b.stop + 2) for b in box)
    dist = ndi.distance_transform_edt(infarct[pad], sampling=spacing)
    ramp = np.clip(dist / border_mm, 0.0, 1.0)
    w[pad] = (ramp * np.clip(1.0 + het * mid[pad], 0.3, 1.7)).astype(np.float32)
    w[~infarct] = 0.0
    return w


def effaced_sulci(infarct: np.ndarray, csf: np.ndarray, depth_mm: np.ndarray, *, max_depth_mm: float) -> np.ndarray:
    """Sulcal and subarachnoid CSF within two voxels of ``infarct`` (ventricles, deeper than
    ``max_depth_mm`` below the inner table, are left alone). Computed in the infarct's box.

    >>> inf = np.zeros((1, 1, 9), bool); inf[0, 0, 2:5] = True
    >>> csf = np.zeros_like(inf); csf[0, 0, 5:9] = True
    >>> effaced_sulci(inf, csf, np.full(inf.shape, 3.0), max_depth_mm=10).nonzero()[2].tolist()
    [5, 6]
    """
    out = np.zeros(infarct.shape, dtype=bool)
    found = ndi.find_objects(infarct.astype(np.uint8))
    if not found:
        return out
    box = tuple(slice(max(0, s.start - 3), s.stop + 3) for s in found[0])
    near = ndi.binary_dilation(infarct[box], iterations=2)
    out[box] = near & csf[box] & (depth_mm[box] > 0) & (depth_mm[box] < max_depth_mm)
    return out


FLUID_HU = 8.0  # what fully necrotic, oedematous tissue tends to (close to CSF)


def finish_infarct(rng, infarct, *, hypodensity, lab, hu, thu, depth, parenchyma, fine, mid, grid, csf_code, gm_code,
                   max_depth_mm):
    """What every family does to a grown infarct, in one order of random draws: effaced sulci (young
    infarcts), haemorrhage in 1 of 5, the drop weight and the HU deficit. Changes ``lab``, ``hu`` and
    returns (infarct, hem, hem_kind, weight, deficit)."""
    if hypodensity != "severe":
        # Acute swelling effaces the sulci over a young infarct: their CSF becomes swollen,
        # infarcted cortex (older, severe infarcts keep or widen them).
        effaced = effaced_sulci(infarct, lab == csf_code, depth, max_depth_mm=max_depth_mm)
        lab[effaced] = gm_code
        hu[effaced] = thu.gm
        infarct = infarct | effaced
    hem, hem_kind = np.zeros(infarct.shape, dtype=bool), ""
    if rng.random() < 0.2:
        hem, hem_kind = hemorrhage(rng, infarct, parenchyma, fine, mid, grid.voxel_ml)
        hu[hem] = (rng.uniform(55, 80) + 8 * fine[hem]).astype(np.float32)
    infarct = infarct & ~hem
    weight = drop_weight(rng, infarct, hypodensity, mid, grid.spacing)
    if hypodensity == "subtle":
        # A subtle infarct shows as loss of grey-white differentiation (insular ribbon, obscured
        # lentiform nucleus): grey matter falls towards white matter, which itself loses only
        # 1.5-3 HU. The phantom scales this pattern to the drawn contrast.
        loss = float(rng.uniform(1.5, 3.0))
        deficit = np.where(infarct, -(np.clip(hu - thu.wm, 0.0, None) + loss), 0.0).astype(np.float32)
    else:
        deficit = np.where(infarct, FLUID_HU - hu, 0.0).astype(np.float32)
    return infarct, hem, hem_kind, weight, deficit
