"""Training patches: which voxels are sampled (lesion, hard background) and how lesion windows are
augmented (sagittal flip, rotation) before they are cropped to the network's patch.

Patches themselves come from `corelab.segment.patches.extract_patches`, the one extractor that
training, patch-wise and dense inference share.
"""

from __future__ import annotations

import numpy as np

from corelab.segment.barros2020 import PATCH_CENTER, PATCH_SIZE

__all__ = ["augment_windows", "hard_background", "sample_voxels", "AUGMENT_SIZE"]

# Odd window extracted around infarct voxels before rotation/flip, then cropped to the 19x19 patch;
# large enough that the rotated crop never reads outside it (19x19 patch corner at 10 voxels, sqrt(2)*10 < 14.5).
AUGMENT_SIZE = 31


def augment_windows(windows: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
    """Flip (sagittal plane, i.e. x) and rotate odd centred windows, then crop the 19x19 patch.

    windows: `[N, 3, S, S]` with the voxel at the centre (S odd, from `extract_patches(size=S,
    center=S // 2)`). Each window is flipped with probability 1/2 and rotated in-plane about the voxel
    by a random multiple of 90 degrees, so the voxel's label is unchanged. Returns `[N, 3, 19, 19]`
    patches with the voxel at index 8.

    Only exact rotations: resampling at arbitrary angles (bilinear) averages neighbouring voxels and
    lowers the noise of the augmented patches. Only infarct patches are augmented (paper), so the
    networks learned "smooth patch = infarct" instead of the infarct (measured on held-out phantoms:
    Dice 0.05 for the severe network, hundreds of mL claimed on a control). Flips and quarter turns
    move voxels without changing any value, so infarct and background patches keep the same texture.
    """
    windows = np.array(windows, dtype=np.float32)
    n, _, s, _ = windows.shape
    if s % 2 == 0:
        raise ValueError("augmentation windows must have an odd side so the voxel is their centre")
    flip = rng.random(n) < 0.5
    windows[flip] = windows[flip, :, :, ::-1]
    turns = rng.integers(0, 4, size=n)
    for k in (1, 2, 3):
        chosen = turns == k
        windows[chosen] = np.rot90(windows[chosen], k=k, axes=(2, 3))
    start = s // 2 - PATCH_CENTER
    return np.ascontiguousarray(windows[:, :, start:start + PATCH_SIZE, start:start + PATCH_SIZE])


def hard_background(
    background: np.ndarray,
    *,
    foreground: np.ndarray,
    region: np.ndarray,
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    border_mm: float = 4.0,
    edge_mm: float = 2.0,
    mimic_percentile: float = 10.0,
    mimic_low: bool = True,
) -> dict[str, np.ndarray]:
    """Masks of hard background voxels, each a subset of `background` (bool `[z, y, x]`).

    "border": within `border_mm` in y and x of the foreground, where lesion edges are decided;
    "edge": within `edge_mm` in y and x of the region's edge, i.e. next to CSF, sulci and the skull,
        which the paper names as a main source of false infarct;
    "mimic": background whose 3x3 in-plane mean HU is in the lowest (`mimic_low`) or highest
        `mimic_percentile` percent of this scan's background: hypodense (or, for hemorrhage,
        hyperdense) tissue that is not lesion. A percentile of the scan itself, not a fixed HU, so
        the rule does not depend on one scanner's calibration.
    """
    from scipy import ndimage

    def near(mask: np.ndarray, mm: float) -> np.ndarray:
        # A square neighbourhood (Chebyshev distance): separable, so fast on whole scans, and a
        # hard-negative stratum needs no exact circle.
        if not mask.any():
            return np.zeros(mask.shape, bool)
        ry, rx = (max(1, int(round(mm / s))) for s in spacing[1:])
        return ndimage.maximum_filter(mask.view(np.uint8), size=(1, 2 * ry + 1, 2 * rx + 1)).astype(bool)

    masks = {
        "border": background & near(foreground, border_mm),
        "edge": background & near(~region, edge_mm),
    }
    smooth = ndimage.uniform_filter(np.asarray(hu, np.float32), size=(1, 3, 3))
    if background.any():
        values = smooth[background]
        if mimic_low:
            masks["mimic"] = background & (smooth <= np.percentile(values, mimic_percentile))
        else:
            masks["mimic"] = background & (smooth >= np.percentile(values, 100.0 - mimic_percentile))
    else:
        masks["mimic"] = np.zeros(background.shape, bool)
    return masks


def sample_voxels(mask: np.ndarray, n: int, *, rng: np.random.Generator) -> np.ndarray:
    """`n` voxel indices `[n, 3]` drawn uniformly from `mask` (with replacement only when it has fewer).

    >>> m = np.zeros((1, 3, 3), bool); m[0, 1, 2] = True
    >>> sample_voxels(m, 2, rng=np.random.default_rng(0)).tolist()
    [[0, 1, 2], [0, 1, 2]]
    """
    flat = np.flatnonzero(mask)
    if n <= 0 or flat.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    chosen = rng.choice(flat, size=n, replace=flat.size < n)
    return np.stack(np.unravel_index(chosen, mask.shape), axis=1).astype(np.int64)
