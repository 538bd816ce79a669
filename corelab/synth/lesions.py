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

__all__ = ["TERRITORIES", "Territory", "territory_mask", "grow_lesion", "CLASS_VOLUME_ML", "CLASS_TARGET_HU"]

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
    weights = {"MCA": 3.0, "MCA-superior": 2.0, "MCA-inferior": 2.0, "MCA-deep": 1.0, "ACA": 0.8, "PCA": 1.2, "lacunar": 0.6}
    p = np.array([weights[n] for n in names])
    return str(rng.choice(names, p=p / p.sum()))
