"""Vascular territories on the MNI152 anatomy, as simple rules in template coordinates.

Coordinates are the atlas family's template frame: MNI mm with x mirrored to the procedural head
frame's convention (x to the patient's left, y anterior, z superior; origin the anterior
commissure), so `lesions.grow_in_territory` and `lesions.satellite` use them with ``s = 1``.

Rules after Tatu et al., Neurology 1998;50:1699 (arterial territories of the cerebral
hemispheres), read on the ICBM152 2009 template:
- ACA: the medial frontal and parietal strip within 18 mm of the midline, in front of the
  parieto-occipital region (y > -52), above the corpus callosum's level (z > 4), plus the
  medial orbital surface and gyrus rectus (within 14 mm of the midline, y > 18); not the deep nuclei.
- PCA: the occipital lobe (y < -70), the medial and inferior temporal lobe behind y = -24 and
  below z = -4 (within 40 mm of the midline), and the thalamus.
- MCA: the rest of the hemisphere above z = -45: superior division above z = 12, inferior
  division (temporal) below z = 18 and behind y = 15, deep (lenticulostriate) branches in the
  basal ganglia and internal capsule; lacunes are small deep infarcts.
Infratentorial tissue is never offered to an infarct (the phantom excludes it from growth).
"""

from __future__ import annotations

import numpy as np

from corelab.synth.lesions import Territory

__all__ = ["ATLAS_TERRITORIES", "atlas_territory_mask"]

ATLAS_TERRITORIES: dict[str, Territory] = {
    "MCA": Territory("MCA", (44, -8, 8), (30, 52, 38), 400),
    "MCA-superior": Territory("MCA-superior", (40, 2, 32), (24, 38, 24), 150),
    "MCA-inferior": Territory("MCA-inferior", (52, -28, -4), (20, 36, 22), 120),
    "MCA-deep": Territory("MCA-deep", (22, 2, 8), (12, 18, 14), 40),
    "ACA": Territory("ACA", (8, 22, 44), (14, 50, 30), 90),
    "PCA": Territory("PCA", (20, -80, 2), (26, 28, 24), 110),
    "lacunar": Territory("lacunar", (20, -4, 8), (5, 6, 6), 3),
}


def atlas_territory_mask(name: str, x, y, z, side: int, s: float = 1.0) -> np.ndarray:
    """Where territory ``name`` reaches in one hemisphere (side +1 left, -1 right); template mm.

    ``s`` is accepted for the signature of `lesions.territory_mask` and must be 1 (the template
    frame is not scaled per patient).

    >>> m = atlas_territory_mask("PCA", np.array([20.0, 20.0]), np.array([-85.0, 30.0]), np.array([5.0, 5.0]), 1)
    >>> m.tolist()
    [True, False]
    """
    xs = x * side
    hemi = xs > 2.0
    deep = (xs < 26) & (y > -40) & (y < 30) & (z > -12) & (z < 24)
    aca = (((xs < 18) & (y > -52) & (z > 4)) | ((xs < 14) & (y > 18) & (z > -28))) & ~deep
    thalamus = (np.abs(xs - 12) < 10) & (y < -8) & (y > -36) & (np.abs(z - 6) < 11)
    pca = ((y < -70) | ((y < -24) & (z < -4) & (xs < 40)) | thalamus) & ~aca
    if name == "ACA":
        return hemi & aca
    if name == "PCA":
        return hemi & pca & (z > -45)
    if name == "lacunar":
        return hemi & (xs < 30) & (np.abs(y) < 28) & (np.abs(z - 6) < 16)
    mca = hemi & ~aca & ~pca & (z > -45)
    if name == "MCA-superior":
        return mca & (z > 12)
    if name == "MCA-inferior":
        return mca & (z < 18) & (y < 15)
    if name == "MCA-deep":
        return mca & (xs < 32) & (y > -25) & (y < 28) & (z > -8) & (z < 26)
    return mca
