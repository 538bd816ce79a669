"""CT image formation on top of the fine HU phantom: partial volume, beam hardening, noise, calibration.

Step functions, arrays in and out, plus the opt-in "wide" scanner physics (`SitePhysics` drawn per
site, `AppliedPhysics` recorded per patient; applied by `corelab.synth.wide_physics`). Units: HU, mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from corelab.synth.fields import upsample2

__all__ = [
    "to_output_grid", "beam_hardening", "ct_noise", "outside_fov", "SitePhysics", "AppliedPhysics",
    "draw_site_physics", "kernel_noise", "intracranial_from_hu", "cupping", "fossa_streaks",
]


@dataclass(frozen=True)
class SitePhysics:
    """One site's wider scanner physics (the "wide" option of `make_trial`).

    kernel_sd_hu: extra noise SD of the reconstruction kernel at 5 mm, HU (2-7).
    kernel_corr_mm: its in-plane correlation length (Gaussian sigma), mm (0.6-2).
    offset_hu: calibration offset on the whole scan, HU (-8..8).
    cupping_hu: residual beam-hardening rise from the centre to the inner table, HU (2-8).
    """

    kernel_sd_hu: float
    kernel_corr_mm: float
    offset_hu: float
    cupping_hu: float


@dataclass(frozen=True)
class AppliedPhysics:
    """What the "wide" physics added to one patient's scan (synth.json records it).

    kernel_sd_hu: noise SD added, HU (after the 5 mm to slice-thickness scaling); kernel_corr_mm,
    offset_hu, cupping_hu: as `SitePhysics`; streak_hu: amplitude of each posterior-fossa streak, HU.
    """

    kernel_sd_hu: float
    kernel_corr_mm: float
    offset_hu: float
    cupping_hu: float
    streak_hu: tuple[float, ...]


def draw_site_physics(rng: np.random.Generator) -> SitePhysics:
    """A site's kernel noise (SD 2-7 HU, correlation 0.6-2 mm), offset +-8 HU and cupping 2-8 HU."""
    return SitePhysics(
        kernel_sd_hu=float(rng.uniform(2.0, 7.0)),
        kernel_corr_mm=float(rng.uniform(0.6, 2.0)),
        offset_hu=float(rng.uniform(-8.0, 8.0)),
        cupping_hu=float(rng.uniform(2.0, 8.0)),
    )


def kernel_noise(
    rng: np.random.Generator, shape: tuple[int, int, int], *, sd_hu: float, corr_mm: float, pixel_mm: float
) -> np.ndarray:
    """Noise of a reconstruction kernel: white noise smoothed in plane (sigma ``corr_mm``), SD ``sd_hu``.

    Slices are independent (each is reconstructed on its own).

    >>> n = kernel_noise(np.random.default_rng(0), (4, 64, 64), sd_hu=5.0, corr_mm=1.0, pixel_mm=0.5)
    >>> round(float(n.std()), 3)
    5.0
    """
    white = rng.standard_normal(shape).astype(np.float32)
    s = corr_mm / pixel_mm
    noise = ndi.gaussian_filter(white, sigma=(0, s, s), truncate=3.0) if s > 0 else white
    noise *= np.float32(sd_hu / (float(noise.std()) or 1.0))
    return noise


def intracranial_from_hu(hu: np.ndarray, *, bone_hu: float = 250.0) -> np.ndarray:
    """Per slice, the non-bone voxels that the skull (HU > ``bone_hu``, closed by one pixel) encloses.

    Works on any written scan (no tissue map needed); slices whose skull ring is open give nothing.
    """
    bone = hu > bone_hu
    inside = np.zeros(hu.shape, dtype=bool)
    ring = np.ones((3, 3), dtype=bool)
    for k in range(hu.shape[0]):
        if bone[k].any():
            closed = ndi.binary_closing(bone[k], structure=ring, border_value=0)
            inside[k] = ndi.binary_fill_holes(closed) & ~closed & (hu[k] > -100) & (hu[k] < 150)
    return inside


def cupping(inside: np.ndarray, pixel_mm: tuple[float, float], *, rise_hu: float) -> np.ndarray:
    """Cupping: a smooth HU rise towards the inner table, ``rise_hu`` at the table, 0 at the centre.

    Per slice, d is the in-plane distance (mm) to the edge of ``inside`` and the rise is
    ``rise_hu * (1 - d / d_max)**2``; zero outside ``inside``.

    >>> m = np.zeros((1, 41, 41), bool); m[0, 5:36, 5:36] = True
    >>> c = cupping(m, (1.0, 1.0), rise_hu=4.0)
    >>> float(c[0, 20, 20]), round(float(c[0, 5, 20]), 2)
    (0.0, 3.52)
    """
    out = np.zeros(inside.shape, dtype=np.float32)
    for k in range(inside.shape[0]):
        if inside[k].any():
            d = ndi.distance_transform_edt(inside[k], sampling=pixel_mm)
            r = d / float(d.max())
            out[k] = np.where(inside[k], rise_hu * (1.0 - r) ** 2, 0.0)
    return out


def fossa_streaks(
    rng: np.random.Generator, inside: np.ndarray, spacing: tuple[float, float, float], *, fossa_mm: float = 35.0
) -> tuple[np.ndarray, tuple[float, ...]]:
    """Two to five thin bright or dark lines (+-10-30 HU) across the posterior fossa, faded with distance.

    The fossa slices are the lowest ``fossa_mm`` of the intracranial region (from the first slice
    with a fifth of the largest slice's area); each line crosses a slice from side to side (within
    20 degrees) near the region's centre, between the petrous bones, with a sigma of about 0.7 mm
    (at least half a pixel), and fades over about 30 mm along it. Zero outside ``inside``.
    Returns the added HU and each line's amplitude.
    """
    out = np.zeros(inside.shape, dtype=np.float32)
    area = inside.reshape(inside.shape[0], -1).sum(axis=1)
    if area.max() == 0:
        return out, ()
    base = int(np.argmax(area >= 0.2 * area.max()))
    top = min(inside.shape[0], base + max(1, int(round(fossa_mm / spacing[0]))))
    fossa = [k for k in range(base, top) if area[k] > 0]
    ny, nx = inside.shape[1:]
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    yy, xx = yy * spacing[1], xx * spacing[2]
    width = max(0.7, 0.5 * spacing[1])
    amplitudes = []
    for _ in range(int(rng.integers(2, 6))):
        k = int(rng.choice(fossa))
        cy, cx = (float(c) for c in np.argwhere(inside[k]).mean(axis=0))
        cy, cx = cy * spacing[1] + float(rng.uniform(-10, 10)), cx * spacing[2]
        angle = np.deg2rad(float(rng.uniform(-20, 20)))
        amp = float(rng.choice((-1.0, 1.0)) * rng.uniform(10.0, 30.0))
        along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        across = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        line = amp * np.exp(-((across / width) ** 2)) * np.exp(-np.abs(along) / 30.0)
        out[k] += np.where(inside[k], line, 0.0).astype(np.float32)
        amplitudes.append(round(amp, 3))
    return out, tuple(amplitudes)


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
