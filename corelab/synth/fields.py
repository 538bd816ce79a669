"""Random smooth fields and the sampling grid shared by the phantom's parts.

A phantom is generated on a *fine* grid: the output in-plane grid (or every second pixel of it at
512x512, see `FineGrid`) and several sub-slices per output slice, so that averaging into slices gives
partial volume. Coordinates here are physical (LPS, mm, as DICOM and SimpleITK).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["FineGrid", "smooth_noise", "rotation_matrix", "upsample2"]


@dataclass(frozen=True)
class FineGrid:
    """The output grid of a scan and the finer grid the phantom is drawn on.

    out_shape: (slices, rows, columns) of the written scan.
    out_spacing: (slice, row, column) spacing in mm.
    origin: LPS position (x, y, z) in mm of output voxel [0, 0, 0] (the lowest slice).
    sub_z: sub-slices per output slice (a 5 mm slice is drawn as 5 sub-slices of 1 mm).
    step_xy: output pixels per fine pixel in-plane (1, or 2 at 512x512 where the scanner's own
        in-plane resolution, about 0.7-1 mm, is coarser than the 0.45 mm pixel anyway).

    >>> g = FineGrid((2, 4, 4), (5.0, 0.5, 0.5), (0.0, 0.0, 0.0), sub_z=5, step_xy=2)
    >>> g.shape, g.spacing
    ((10, 2, 2), (1.0, 1.0, 1.0))
    """

    out_shape: tuple[int, int, int]
    out_spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    sub_z: int = 1
    step_xy: int = 1

    @property
    def shape(self) -> tuple[int, int, int]:
        nz, ny, nx = self.out_shape
        return (nz * self.sub_z, ny // self.step_xy, nx // self.step_xy)

    @property
    def spacing(self) -> tuple[float, float, float]:
        dz, dy, dx = self.out_spacing
        return (dz / self.sub_z, dy * self.step_xy, dx * self.step_xy)

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    def axes_lps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """1D LPS coordinates (mm) of fine voxel centres along z, y and x."""
        dz, dy, dx = self.out_spacing
        x0, y0, z0 = self.origin
        nz, ny, nx = self.shape
        z = z0 - dz / 2 + (np.arange(nz) + 0.5) * dz / self.sub_z
        y = y0 + (np.arange(ny) * self.step_xy + (self.step_xy - 1) / 2) * dy
        x = x0 + (np.arange(nx) * self.step_xy + (self.step_xy - 1) / 2) * dx
        return z.astype(np.float32), y.astype(np.float32), x.astype(np.float32)


def rotation_matrix(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """3x3 rotation (LPS axes) from head yaw (about z), pitch (about x) and roll (about y), degrees."""
    a, b, c = np.deg2rad([yaw_deg, pitch_deg, roll_deg])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    ry = np.array([[np.cos(c), 0, np.sin(c)], [0, 1, 0], [-np.sin(c), 0, np.cos(c)]])
    return rz @ rx @ ry


def upsample2(a: np.ndarray, axis: int) -> np.ndarray:
    """Linear x2 upsampling along ``axis`` with pixel-area alignment (as zoom(grid_mode=True)).

    Output pixels 2j and 2j+1 sit a quarter pixel either side of input pixel j.

    >>> upsample2(np.array([0.0, 4.0]), 0).tolist()
    [0.0, 1.0, 3.0, 4.0]
    """
    a = np.moveaxis(a, axis, 0)
    prev = np.concatenate([a[:1], a[:-1]])
    nxt = np.concatenate([a[1:], a[-1:]])
    out = np.empty((2 * a.shape[0],) + a.shape[1:], dtype=a.dtype)
    out[0::2] = 0.75 * a + 0.25 * prev
    out[1::2] = 0.75 * a + 0.25 * nxt
    return np.moveaxis(out, 0, axis)


def smooth_noise(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    *,
    corr_mm: float,
) -> np.ndarray:
    """Gaussian random field with unit SD and correlation length about ``corr_mm`` (mm), float32.

    White noise is drawn on a grid coarser by a power of two per axis (about corr_mm / 2 apart),
    smoothed, and upsampled linearly; drawing coarse keeps a 10-million-voxel field near 0.2 s.

    >>> f = smooth_noise(np.random.default_rng(0), (20, 30, 30), (1.0, 1.0, 1.0), corr_mm=6.0)
    >>> f.shape, round(float(f.std()), 1)
    ((20, 30, 30), 1.0)
    """
    factors = [int(2 ** max(0, np.floor(np.log2(corr_mm / 2.0 / s)))) for s in spacing]
    coarse = tuple(int(np.ceil(n / f)) + 1 for n, f in zip(shape, factors))
    white = rng.standard_normal(coarse).astype(np.float32)
    sigma = [corr_mm / (2.0 * s * f) for s, f in zip(spacing, factors)]
    field = ndi.gaussian_filter(white, sigma=sigma, mode="wrap", truncate=3.0)
    for axis, f in enumerate(factors):
        while f > 1:
            field = upsample2(field, axis)
            f //= 2
    field = np.ascontiguousarray(field[: shape[0], : shape[1], : shape[2]])
    field -= field.mean()
    sd = float(field.std())
    return field / sd if sd > 0 else field
