"""Patch extraction on the analysis grid: 3 slices (of each input volume) as channels, the voxel at patch index 8.

Edge rules (shared by training, patch-wise and dense inference):
    - slices: slice z uses z-1, z, z+1; beyond the first or last slice the edge slice is repeated
      (replicate), so a one-slice scan gives three identical channels;
    - in-plane: outside the image the input is `pad_value` (the normalized value of air).

Arrays are `[z, y, x]` network inputs (already normalized, see `corelab.segment.norm.InputNorm`).
"""

from __future__ import annotations

import numpy as np

from corelab.segment.barros2020 import PATCH_CENTER, PATCH_SIZE

__all__ = ["extract_patches"]


def extract_patches(
    volume: np.ndarray,
    centers: np.ndarray,
    *,
    pad_value: float,
    size: int = PATCH_SIZE,
    center: int = PATCH_CENTER,
) -> np.ndarray:
    """Patches around voxels: `[N, 3, size, size]` float32, the voxel at index `center` in y and x.

    volume: `[z, y, x]` normalized input, or `[F, z, y, x]` for several input volumes
    (`corelab.segment.inputs`): then `[N, 3 F, size, size]`, the three slices of each volume in turn.
    centers: `[N, 3]` integer (z, y, x) voxel indices.

    >>> vol = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    >>> p = extract_patches(vol, np.array([[0, 1, 2]]), pad_value=-1.0, size=3, center=1)
    >>> p[0, 1].tolist(), float(p[0, 0, 1, 1]), float(p[0, 2, 1, 1])   # channel 0 repeats slice 0
    ([[1.0, 2.0, 3.0], [5.0, 6.0, 7.0], [9.0, 10.0, 11.0]], 6.0, 22.0)
    """
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim == 4:
        return np.concatenate([extract_patches(part, centers, pad_value=pad_value, size=size, center=center)
                               for part in volume], axis=1)
    centers = np.asarray(centers, dtype=np.int64).reshape(-1, 3)
    if volume.ndim != 3:
        raise ValueError(f"expected a [z, y, x] or [features, z, y, x] volume, got shape {volume.shape}")
    if centers.size and ((centers < 0).any() or (centers >= np.array(volume.shape)).any()):
        raise ValueError("patch centres must lie inside the volume")
    before, after = center, size - 1 - center
    padded = np.pad(volume, ((0, 0), (before, after), (before, after)), constant_values=pad_value)
    nz = volume.shape[0]
    dz = np.clip(centers[:, 0, None] + np.arange(-1, 2)[None, :], 0, nz - 1)  # replicate edge slices
    offsets = np.arange(size)
    rows = centers[:, 1, None] + offsets[None, :]  # padded row index of patch row i is y - center + i + before
    cols = centers[:, 2, None] + offsets[None, :]
    return padded[dz[:, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]
