"""Dense inference: a model's networks evaluated for every voxel of the analysis region at once.

The networks share one architecture (`corelab.segment.networks`). When its class offers a
whole-tile form (`dense_form`, e.g. `PatchCNN`'s fully convolutional rewrite), the region is
computed in row tiles whose halo and padding follow the architecture's declared patch and
receptive field (`patch_center`, `patch_size`, `seen_size`). An architecture without one is
evaluated patch by patch: `corelab.segment.patches.extract_patches` with its `patch_size` and
`patch_center` at every region voxel, in batches (exact, and slow).

Also here: the CNN precision names and the guard that keeps CUDA float32 free of TF32.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from corelab.errors import ModelError
from corelab.segment.folder import resolve_device
from corelab.segment.networks import architecture_inputs, architecture_of
from corelab.segment.inputs import network_input
from corelab.segment.norm import InputNorm
from corelab.segment.patches import extract_patches

__all__ = ["dense_probabilities", "dense_probabilities_from_input", "region_boxes", "region_tiles", "dense_flops_per_voxel",
           "PRECISIONS", "PrecisionError", "precision_dtype"]

# conv1 maps per network, conv2 maps, dense widths of the paper's architecture (`PatchCNN`).
_C1, _C2, _FC = 64, 128, 256
# The CNNs' arithmetic (`corelab.config.Method.precision`): float32 is the default and exact to
# rounding; bfloat16 is an opt-in approximation for CPUs with AMX / AVX512-BF16.
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class PrecisionError(ModelError):
    """The requested CNN precision is not one corelab offers."""


def precision_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a CNN precision name ("float32", "bfloat16"); `PrecisionError` for others."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"Unknown CNN precision {precision!r}; use {' or '.join(PRECISIONS)}.")
    return PRECISIONS[precision]


@contextmanager
def _ieee_float32(device: torch.device) -> Iterator[None]:
    """On CUDA, float32 convolutions and matrix products in full float32 (no TF32) while inside.

    PyTorch lets cuDNN convolutions use TF32 by default (10-bit mantissas on Ampere and later),
    which moves probabilities by ~1e-3 from the CPU's; corelab's float32 means float32 on every
    device. The flags are process-global, so they are set only for the CUDA path and restored
    exactly on exit (another thread's CUDA work in the same process would see them meanwhile).
    CPU: no-op.
    """
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    # torch >= 2.9 reads the per-operator setting for convolutions; older builds the legacy flag.
    conv, field, off = (cudnn.conv, "fp32_precision", "ieee") if hasattr(cudnn, "conv") else (cudnn, "allow_tf32", False)
    saved_conv = getattr(conv, field)
    try:
        # cuBLAS matmuls are float32 unless someone asked for TF32 ("high"/"medium"); only then is
        # the setting changed, through the one call that keeps torch's legacy and per-operator
        # matmul flags consistent (torch checks that they agree on every CUDA matmul).
        matmul = torch.get_float32_matmul_precision()
    except RuntimeError:  # flags already mixed by the caller; every CUDA matmul would raise anyway
        matmul = "highest"
    try:
        setattr(conv, field, off)
        if matmul != "highest":
            torch.set_float32_matmul_precision("highest")
        yield
    finally:
        setattr(conv, field, saved_conv)
        if matmul != "highest":
            torch.set_float32_matmul_precision(matmul)


def dense_flops_per_voxel(networks: int = 1) -> int:
    """Multiply-adds x 2 that the patch CNN needs per output voxel in dense form (no halo).

    conv1 3x25->64, conv2 64x25->128, dense 128->256->256->1; about 0.62 MFLOP per network.

    >>> dense_flops_per_voxel(4)
    2465280
    """
    per = 2 * (3 * 25 * _C1 + _C1 * 25 * _C2 + _C2 * _FC + _FC * _FC + _FC)
    return networks * per


def region_boxes(region: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """Per slice with region voxels: (z, y0, y1, x0, x1), the region's bounding box (end exclusive).

    >>> r = np.zeros((2, 5, 5), bool); r[1, 1:3, 2] = True
    >>> region_boxes(r)
    [(1, 1, 3, 2, 3)]
    """
    boxes = []
    for z in range(region.shape[0]):
        rows = np.flatnonzero(region[z].any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(region[z].any(axis=0))
        boxes.append((z, int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1))
    return boxes


# What a tile costs, in second-convolution positions, for choosing the tiles (`region_tiles`): an h x w
# output box runs `PatchCNN`'s second convolution (two thirds of the arithmetic) on (h + 2) x (w + 2)
# positions and its first convolution and first pooling on the box plus the halo, measured at about
# 0.15 of a position each; each tile adds about 300 positions' worth of calls and bookkeeping.
_HALO_WEIGHT = 0.15
_TILE_OVERHEAD = 300.0


def region_tiles(region: np.ndarray, *, tile_voxels: int, halo: int = 15) -> Iterator[tuple[int, int, int, int, int]]:
    """The tiles that dense inference computes: (z, y0, y1, x0, x1) output boxes, end exclusive.

    Per slice, the region's rows are cut into runs of consecutive rows, each run's box cut to the
    columns where the region lies in those rows, and at most `tile_voxels` output voxels (rows x
    box width) in one box unless one row is wider. Where to cut is chosen by dynamic programming
    over the rows for the least arithmetic (`_HALO_WEIGHT`, `_TILE_OVERHEAD`; `halo`: the
    architecture's `seen_size - 1`), so that the rows of one box have similar extents: a head's
    rounded outline in a few wide boxes leaves their corners computed for nothing. A box's first and
    last rows hold region voxels (rows without any between them may lie inside it). The
    region's holes (CSF) inside a box are computed too; `benchmarks/speed.py` reports the positions
    computed per region voxel. Every region voxel lies in exactly one tile.

    >>> r = np.zeros((1, 4, 6), bool); r[0, 0, 0] = r[0, 3, 5] = True
    >>> list(region_tiles(r, tile_voxels=12))
    [(0, 0, 1, 0, 1), (0, 3, 4, 5, 6)]
    """
    for z, y0, y1, _, _ in region_boxes(region):
        for t0, t1 in _row_runs(region[z, y0:y1], tile_voxels=tile_voxels, halo=halo):
            cols = np.flatnonzero(region[z, y0 + t0:y0 + t1].any(axis=0))
            yield z, y0 + t0, y0 + t1, int(cols[0]), int(cols[-1]) + 1


def _row_runs(rows: np.ndarray, *, tile_voxels: int, halo: int) -> list[tuple[int, int]]:
    """(t0, t1) runs of rows of one slice's region box (`[h, w]` bool, first and last rows occupied)
    that cover its occupied rows at the least cost (see `region_tiles`): each run's first and last
    rows occupied, at most `tile_voxels` per box unless it is one row."""
    occupied = rows.any(axis=1)
    n, width = rows.shape
    first = np.where(occupied, rows.argmax(axis=1), width)
    last = np.where(occupied, width - 1 - rows[:, ::-1].argmax(axis=1), -1)
    narrowest = int((last - first + 1)[occupied].min())
    longest = max(1, min(n, tile_voxels // narrowest))  # no box of more rows fits, however it lies
    # cost[a, k]: one box over rows a .. a + k (inf past the end and where the box is too large)
    cost = np.full((n, longest), np.inf)
    lo, hi = first.copy(), last.copy()
    for k in range(longest):
        if k:
            lo[:n - k] = np.minimum(lo[:n - k], first[k:])
            hi[:n - k] = np.maximum(hi[:n - k], last[k:])
        h, w = k + 1, np.maximum(hi[:n - k] - lo[:n - k] + 1, 1)
        box = (h + 2) * (w + 2) + _HALO_WEIGHT * (h + halo) * (w + halo) + _TILE_OVERHEAD
        cost[:n - k, k] = box if k == 0 else np.where(h * w <= tile_voxels, box, np.inf)  # one row: always
    best = np.zeros(n + 1)
    step = np.zeros(n + 1, dtype=np.int64)  # rows in the run ending before row b; 0: row b - 1 is empty
    for b in range(1, n + 1):
        if not occupied[b - 1]:
            best[b], step[b] = best[b - 1], 0
            continue
        k = np.arange(min(longest, b))
        candidates = best[b - 1 - k] + cost[b - 1 - k, k]
        j = int(np.argmin(candidates))
        best[b], step[b] = candidates[j], j + 1
    runs, b = [], n
    while b > 0:
        if step[b] == 0:
            b -= 1
            continue
        runs.append((b - int(step[b]), b))
        b -= int(step[b])
    return runs[::-1]


def dense_probabilities(
    hu: np.ndarray,
    region: np.ndarray,
    networks: Mapping[str, nn.Module],
    *,
    norm: InputNorm = InputNorm(),
    device: str = "cpu",
    tile_voxels: int = 60_000,
    precision: str = "float32",
    spacing: tuple[float, float, float] | None = None,
    mirror_hu: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Foreground probability of every region voxel for each network; 0 outside the region.

    hu: `[z, y, x]` HU on the analysis grid. region: bool mask of the same shape (the analysis
    region: intracranial minus CSF). networks: name -> network, all of one architecture (see the
    module docstring), whose `inputs` say what it reads (`corelab.segment.inputs`; the mirror
    needs `spacing`, (z, y, x) mm, or `mirror_hu` computed before). Returns name -> float32 array shaped like `hu`.
    With a whole-tile form only the region's extent is computed: per slice, row tiles of at most
    `tile_voxels` output voxels (`region_tiles`; memory stays bounded, about 3 kB per tile voxel for
    four networks), each cut to the columns where the region lies in those rows. precision: "float32"
    (default) or "bfloat16" (an opt-in approximation, see `corelab.config.Method`). On CUDA, float32
    runs without TF32 (flags restored on return), so CUDA and CPU probabilities agree to float32
    rounding.

    >>> from corelab.segment.networks import PatchCNN
    >>> hu = np.full((1, 6, 6), 30.0, np.float32); region = np.zeros((1, 6, 6), bool); region[0, 2, 3] = True
    >>> p = dense_probabilities(hu, region, {"a": PatchCNN()})
    >>> bool(p["a"][0, 2, 3] > 0), float(p["a"].sum() - p["a"][0, 2, 3])
    (True, 0.0)
    """
    hu = np.asarray(hu)
    region = np.asarray(region, dtype=bool)
    if hu.ndim != 3 or region.shape != hu.shape:
        raise ValueError(f"hu {hu.shape} and region {region.shape} must be matching [z, y, x] arrays")
    inputs = architecture_inputs(architecture_of(networks.values())) if networks else ("hu",)
    x = network_input(hu, region, spacing, norm, inputs, mirror_hu=mirror_hu)
    return dense_probabilities_from_input(x, region, networks, pad_value=norm.pad_value,
                                          device=device, tile_voxels=tile_voxels, precision=precision)


def dense_probabilities_from_input(
    x: np.ndarray,
    region: np.ndarray,
    networks: Mapping[str, nn.Module],
    *,
    pad_value: float,
    device: str = "cpu",
    tile_voxels: int = 60_000,
    precision: str = "float32",
) -> dict[str, np.ndarray]:
    """`dense_probabilities` on input already normalized (`corelab.segment.inputs.network_input`:
    `[z, y, x]`, or `[F, z, y, x]` for several input volumes), e.g. a training cohort's stored scans;
    `pad_value` is the norm's value of air, used outside the image. The networks share
    one architecture (`ArchitectureError` otherwise); its `dense_form`, when it has one, computes them
    tile by tile, else they are evaluated patch by patch."""
    x = np.asarray(x, dtype=np.float32)
    region = np.asarray(region, dtype=bool)
    if x.ndim not in (3, 4) or region.shape != x.shape[-3:]:
        raise ValueError(f"input {x.shape} and region {region.shape} must be matching [(F,) z, y, x] arrays")
    torch_device = resolve_device(device)
    dtype = precision_dtype(precision)
    names = list(networks)
    probabilities = {name: np.zeros(region.shape, dtype=np.float32) for name in names}
    if not names or not region.any():
        return probabilities
    nets = [networks[name] for name in names]
    architecture = architecture_of(nets)
    dense_form = getattr(architecture, "dense_form", None)
    form = dense_form(nets, torch_device, dtype) if dense_form is not None else None
    with torch.inference_mode(), _ieee_float32(torch_device):
        if form is None:
            for name, prob in zip(names, _patchwise(x, region, nets, pad_value, torch_device, dtype)):
                probabilities[name][region] = prob
            return probabilities
        padded = _padded_input(x, architecture, pad_value)
        halo = architecture.seen_size - 1
        for z, t0, t1, c0, c1 in region_tiles(region, tile_voxels=tile_voxels, halo=halo):
            inside = region[z, t0:t1, c0:c1]
            # Padded z index z + 1 is slice z. Output row v reads padded rows v .. v + seen_size - 1
            # only (the rest of its patch never reaches the output), so a tile needs `halo` extra rows.
            # Several input volumes: their three slices in turn (`extract_patches`' channel order).
            tile = padded[..., z:z + 3, t0:t1 + halo, c0:c1 + halo].reshape(-1, t1 - t0 + halo, c1 - c0 + halo)
            tile = torch.from_numpy(np.ascontiguousarray(tile))
            prob = torch.sigmoid(form(tile.to(torch_device), torch.from_numpy(inside).to(torch_device)))
            prob = prob.to("cpu").numpy()
            for i, name in enumerate(names):
                probabilities[name][z, t0:t1, c0:c1][inside] = prob[i]
    return probabilities


def _padded_input(x: np.ndarray, architecture: type[nn.Module], pad_value: float) -> np.ndarray:
    """`x` padded for whole-tile forms: one replicated slice before and after, and `patch_center`
    rows/columns before and `patch_size - 1 - patch_center` after, of `pad_value` (the value of air);
    the patch of voxel (z, y, x) then starts at padded (z, y, x) (`extract_patches`' rules).
    A `[F, z, y, x]` input is padded volume by volume."""
    if x.ndim == 4:
        return np.stack([_padded_input(part, architecture, pad_value) for part in x])
    before = architecture.patch_center
    after = architecture.patch_size - 1 - before
    padded = np.pad(x, ((1, 1), (before, after), (before, after)), mode="edge")  # z replicate
    pad_value = np.float32(pad_value)
    rows, cols = x.shape[1:]
    padded[:, :before, :] = pad_value
    padded[:, before + rows:, :] = pad_value
    padded[:, :, :before] = pad_value
    padded[:, :, before + cols:] = pad_value
    return padded


def _patchwise(
    x: np.ndarray, region: np.ndarray, nets: Sequence[nn.Module], pad_value: float, device: torch.device,
    dtype: torch.dtype, *, batch: int = 4096,
) -> np.ndarray:
    """`[K, n]` probabilities of the n region voxels (row-major) for architectures without a whole-tile
    form: each voxel's patch extracted with the architecture's declared geometry and passed through
    each network, `batch` patches at a time. bfloat16 runs under autocast."""
    architecture = type(nets[0])
    on_device = [_on_device(net, device) for net in nets]
    voxels = np.argwhere(region)
    out = np.empty((len(nets), len(voxels)), np.float32)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for first in range(0, len(voxels), batch):
            patches = extract_patches(x, voxels[first:first + batch], pad_value=pad_value,
                                      size=architecture.patch_size, center=architecture.patch_center)
            patches = torch.from_numpy(patches).to(device)
            for k, net in enumerate(on_device):
                out[k, first:first + batch] = torch.sigmoid(net(patches)).float().cpu().numpy()
    return out


def _on_device(net: nn.Module, device: torch.device) -> nn.Module:
    """`net`, or a copy on `device` when its weights lie elsewhere (the caller's network is left as it is)."""
    weight = next(net.parameters(), None)
    if weight is None or (weight.device.type == device.type and device.index in (None, weight.device.index)):
        return net
    return copy.deepcopy(net).to(device)
