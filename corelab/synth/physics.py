"""CT image formation on top of the fine HU phantom: partial volume, beam hardening, noise, calibration.

Step functions, arrays in and out. Units: HU, mm.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from corelab.synth.fields import upsample2

__all__ = ["to_output_grid", "beam_hardening", "ct_noise", "outside_fov"]


def to_output_grid(fine: np.ndarray, *, sub_z: int, step_xy: int) -> np.ndarray:
    """Average ``sub_z`` fine sub-slices into each output slice (partial volume), then upsample in plane.

    The in-plane step (``step_xy`` output pixels per fine pixel) is undone by linear interpolation,
    which acts as the scanner's in-plane point-spread (about 1 mm at 512x512). Linear in ``fine``,
    so projecting a sum equals the sum of projections (the phantom relies on it to hit mean HU).

    >>> a = np.zeros((10, 2, 2), np.float32); a[:5] = 10.0; a[5:7] = 5.0
    >>> to_output_grid(a, sub_z=5, step_xy=1)[:, 0, 0].tolist()
    [10.0, 2.0]
    """
    nz, ny, nx = fine.shape
    if nz % sub_z:
        raise ValueError(f"{nz} fine slices cannot be grouped by {sub_z}")
    slab = fine.reshape(nz // sub_z, sub_z, ny, nx).mean(axis=1, dtype=np.float32)
    while step_xy > 1:
        slab = upsample2(upsample2(slab, 1), 2)
        step_xy //= 2
    return slab


def beam_hardening(depth_mm: np.ndarray, x, y, z, *, rim_hu: float, streak_hu: float, scale: float = 1.0) -> np.ndarray:
    """Additive HU from incompletely corrected beam hardening, for voxels inside the skull.

    depth_mm: distance inside the inner table (mm, < 0 outside). Brain next to bone reads a few HU
    high (``rim_hu`` at the table, decaying over about 4 mm); a dark band (``streak_hu`` < 0) joins
    the petrous bones across the posterior fossa (the "Hounsfield bar"). x, y, z: head frame, mm.
    """
    out = np.zeros(depth_mm.shape, dtype=np.float32)
    rim = (depth_mm > 0) & (depth_mm < 20)
    out[rim] = rim_hu * np.exp(-depth_mm[rim] / 4.0)
    near = (depth_mm > 0) & (np.abs(y + 22 * scale) < 12) & (np.abs(z + 38 * scale) < 20) & (np.abs(x) < 42 * scale)
    out[near] += streak_hu * np.exp(-(((y[near] + 22 * scale) / 3.5) ** 2) - ((z[near] + 38 * scale) / 7.0) ** 2)
    return out


def ct_noise(rng: np.random.Generator, shape: tuple[int, int, int], *, sd_hu: float, pixel_mm: float) -> np.ndarray:
    """Correlated CT noise: independent per slice, band-pass in plane like filtered back-projection.

    The texture is a difference of Gaussians (fine grain of about 0.8 mm minus a broad part, as
    the ramp filter suppresses low frequencies); scaled to ``sd_hu`` overall, slightly higher in
    the middle of the field of view where the head attenuates most.
    """
    s1 = max(0.6, 0.8 / pixel_mm)
    noise = np.empty(shape, dtype=np.float32)
    for start in range(0, shape[0], 16):  # in chunks: thin-slice scans have hundreds of slices
        white = rng.standard_normal((min(16, shape[0] - start),) + tuple(shape[1:])).astype(np.float32)
        grain = ndi.gaussian_filter(white, sigma=(0, s1, s1), truncate=3.0)
        noise[start : start + len(white)] = grain - ndi.gaussian_filter(grain, sigma=(0, 2.5 * s1, 2.5 * s1), truncate=2.5)
    noise /= float(noise.std()) or 1.0
    ny, nx = shape[1:]
    yy, xx = np.mgrid[0:ny, 0:nx]
    r2 = ((yy - ny / 2) / (ny / 2)) ** 2 + ((xx - nx / 2) / (nx / 2)) ** 2
    noise *= (sd_hu * (1.1 - 0.25 * np.clip(r2, 0, 1))).astype(np.float32)[None]
    return noise


def outside_fov(shape: tuple[int, int, int]) -> np.ndarray:
    """True outside the circular reconstruction field of view (2D mask broadcast over slices)."""
    ny, nx = shape[1:]
    yy, xx = np.mgrid[0:ny, 0:nx]
    return (((yy + 0.5 - ny / 2) / (ny / 2)) ** 2 + ((xx + 0.5 - nx / 2) / (nx / 2)) ** 2) > 1.0
