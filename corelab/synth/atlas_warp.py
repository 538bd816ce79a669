"""Where each fine voxel of an atlas patient looks in the template, and what it finds there.

A head-frame position (mm) is unscaled to template mm, displaced by a smooth random warp and by
the mass effect of a planned infarct (`template_coordinates`), computed on 2x2x2 blocks and
interpolated (`smooth_coordinates`); the template's fields are then sampled trilinearly and its
region codes by nearest neighbour (`sample_template`), in chunks, near the head only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from corelab.synth.atlas_template import TemplateAnatomy
from corelab.synth.fields import smooth_noise, upsample2

__all__ = ["SampledHead", "template_coordinates", "smooth_coordinates", "sample_template"]


@dataclass(frozen=True, eq=False)
class SampledHead:
    """The template sampled on the fine grid: q* template coordinates (x left), fields, region codes."""

    qx: np.ndarray
    qy: np.ndarray
    qz: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    sd: np.ndarray
    dcsf: np.ndarray
    dvent: np.ndarray
    region: np.ndarray


def template_coordinates(hx, hy, hz, scale, warp, mass):
    """Template coordinates (mm, x left) each fine voxel samples: unscaled, warped, pushed by mass effect.

    hx, hy, hz: head-frame mm; scale: physical mm per template mm along x, y, z; warp: three
    displacement fields (template mm); mass: (centre, amplitude mm, width mm) or None.

    Sampling the template at ``q - u`` with a radial ``u`` centred on the infarct enlarges what lies
    around it: the ventricle beside it narrows and the midline bows away.
    """
    qx = hx / np.float32(scale[0]) + warp[0]
    qy = hy / np.float32(scale[1]) + warp[1]
    qz = hz / np.float32(scale[2]) + warp[2]
    if mass is not None:
        (cx, cy, cz), amplitude, width = mass
        dx, dy, dz = qx - np.float32(cx), qy - np.float32(cy), qz - np.float32(cz)
        push = np.float32(amplitude / width) * np.exp(-(dx * dx + dy * dy + dz * dz) / np.float32(2 * width * width))
        qx, qy, qz = qx - push * dx, qy - push * dy, qz - push * dz
    return qx.astype(np.float32), qy.astype(np.float32), qz.astype(np.float32)


def smooth_coordinates(field_rng, hx, hy, hz, spacing, *, scale, warp_mm: float, mass):
    """`_template_coordinates` on blocks of 2x2x2 fine voxels, interpolated back (the map is smooth).

    Head-frame coordinates are affine in the index, so block centres are the mean of two opposite
    block corners (as `anatomy._cavity_coarse`); the warp (SD ``warp_mm``) is drawn on the block grid.
    """
    even = tuple(n - n % 2 for n in hx.shape)
    lo = tuple(slice(0, n, 2) for n in even)
    hi = tuple(slice(1, n, 2) for n in even)
    cx, cy, cz = (0.5 * (v[lo] + v[hi]) for v in (hx, hy, hz))
    coarse_sp = tuple(2.0 * s for s in spacing)
    warp = [warp_mm * smooth_noise(field_rng, cx.shape, coarse_sp, corr_mm=45.0) for _ in range(3)]
    out = []
    pad = [(0, n - e) for n, e in zip(hx.shape, even)]
    for q in template_coordinates(cx, cy, cz, scale, warp, mass):
        for axis in range(3):
            q = upsample2(q, axis)
        out.append(np.pad(q, pad, mode="edge") if any(w for _, w in pad) else q)
    return tuple(out)


def sample_template(template: TemplateAnatomy, q, chunk: int = 1 << 20) -> SampledHead:
    """Trilinear samples of the template fields (nearest for regions) at template coordinates ``q``.

    Outside the template, and far from the head (found on every 4th voxel, `_near_head`): no
    brain, far outside the inner table (sd 99 mm), region 0.
    """
    qx, qy, qz = q
    shape = qx.shape
    fields = template.fields
    nz, ny, nx, nf = fields.shape
    flat = fields.reshape(-1, nf)
    region_flat = template.region.ravel()
    ox, oy, oz = template.origin
    out = np.empty((qx.size, nf), dtype=np.float32)
    out[:] = (0.0, 0.0, 99.0, 99.0, 99.0)
    region = np.zeros(qx.size, dtype=np.uint8)
    # Template x is MNI x (to the right), the head frame's x is to the left.
    ci, cj, ck = (-qx.ravel() - ox), (qy.ravel() - oy), (qz.ravel() - oz)
    near = _near_head(template, ci, cj, ck, shape).ravel()
    for start in range(0, qx.size, chunk):
        sl = slice(start, min(qx.size, start + chunk))
        fi, fj, fk = ci[sl], cj[sl], ck[sl]
        inside = (fi >= 0) & (fi < nx - 1) & (fj >= 0) & (fj < ny - 1) & (fk >= 0) & (fk < nz - 1) & near[sl]
        idx = np.flatnonzero(inside)
        fi, fj, fk = fi[idx], fj[idx], fk[idx]
        i0, j0, k0 = fi.astype(np.int64), fj.astype(np.int64), fk.astype(np.int64)
        wi, wj, wk = (fi - i0)[:, None], (fj - j0)[:, None], (fk - k0)[:, None]
        base = (k0 * ny + j0) * nx + i0
        acc = np.zeros((idx.size, nf), dtype=np.float32)
        for dk in (0, 1):
            w_k = wk if dk else 1 - wk
            for dj in (0, 1):
                w_kj = w_k * (wj if dj else 1 - wj)
                for di in (0, 1):
                    acc += (w_kj * (wi if di else 1 - wi)) * flat[base + (dk * ny + dj) * nx + di]
        out[start + idx] = acc
        nearest = ((k0 + (wk[:, 0] > 0.5)) * ny + (j0 + (wj[:, 0] > 0.5))) * nx + (i0 + (wi[:, 0] > 0.5))
        region[start + idx] = region_flat[nearest]
    cols = [np.ascontiguousarray(out[:, c]).reshape(shape) for c in range(nf)]
    g = TemplateAnatomy
    return SampledHead(qx=qx, qy=qy, qz=qz, gm=cols[g.GM], wm=cols[g.WM], sd=cols[g.SD], dcsf=cols[g.DCSF],
                 dvent=cols[g.DVENT], region=region.reshape(shape))


def _near_head(template: TemplateAnatomy, ci, cj, ck, shape) -> np.ndarray:
    """True where a fine voxel may lie within 40 mm of the inner table or in the face and neck: the template on
    every 4th voxel per axis, spread over each 4x4x4 block (blocks are under 8 mm across)."""
    nz, ny, nx, _ = template.fields.shape
    sub = tuple(slice(0, n, 4) for n in shape)
    idx = np.arange(ci.size).reshape(shape)[sub].ravel()
    i = np.clip(np.rint(ci[idx]), 0, nx - 1).astype(np.int64)
    j = np.clip(np.rint(cj[idx]), 0, ny - 1).astype(np.int64)
    k = np.clip(np.rint(ck[idx]), 0, nz - 1).astype(np.int64)
    close = (template.fields[k, j, i, TemplateAnatomy.SD] < 40.0) | (template.region[k, j, i] > 0)
    close = close.reshape(tuple(len(range(0, n, 4)) for n in shape))
    close = ndi.binary_dilation(close)  # a block's far corner may be nearer the head than its sampled corner
    full = np.repeat(np.repeat(np.repeat(close, 4, axis=0), 4, axis=1), 4, axis=2)
    return full[: shape[0], : shape[1], : shape[2]]
