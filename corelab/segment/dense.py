"""Dense inference: the patch CNN evaluated for every voxel of a slice at once.

The patch network is rewritten as a fully convolutional one that computes exactly the same function.
With the voxel at patch index 8 and the input padded by 8 before and 10 after (in y and x), the
patch of output voxel v starts at padded row v, and the layers become:

    conv1 5x5                          (unchanged, stride 1)
    max-pool 2x2, stride 1             (pool1 output p of a patch = dense map at v + 2p)
    conv2 5x5, dilation 2              (its taps are 2 apart on the dense map)
    max-pool 2x2, stride 1, dilation 2 (pool2 reads conv2 outputs 0 and 1, i.e. dense v and v + 2)
    dense layers                       (matrix products, on the region's voxels only)

Where the time goes (`benchmarks/speed.py`): conv2 is two thirds of the arithmetic and runs at
the machine's matrix-product rate as a oneDNN convolution with channels-last maps; the rest was
overhead that this module removes:

- the four first convolutions are stacked into one (one read of the input, 256 maps);
- ReLU is fused into the convolutions and dense layers where PyTorch's oneDNN build offers it
  (`torch.ops.mkldnn._convolution_pointwise`, `_linear_pointwise`); elsewhere (CUDA, builds without
  oneDNN) the plain layer is followed by an in-place ReLU, the same arithmetic;
- max-pools are element-wise maxima of shifted views, separably over x then y (ReLU and max
  commute, so the order of ReLU and pooling does not change a value);
- the dense layers (a third of the arithmetic) run as matrix products on the voxels of the
  analysis region only: the convolutions must cover the region's bounding box, but a voxel outside
  the region gets probability 0 whatever the network says, so its dense layers are skipped. This
  is exact: every region voxel gets the same arithmetic as before.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from corelab.errors import ModelError
from corelab.segment.folder import resolve_device
from corelab.segment.networks import PATCH_CENTER, PATCH_SIZE, SEEN_SIZE, PatchCNN
from corelab.segment.norm import InputNorm

__all__ = ["DenseNetworks", "dense_probabilities", "dense_probabilities_from_input", "region_boxes", "region_tiles", "dense_flops_per_voxel",
           "PRECISIONS", "PrecisionError", "precision_dtype"]

# conv1 maps per network, conv2 maps, dense widths: the paper's architecture (corelab.segment).
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


def _fused_conv_available(device: torch.device) -> bool:
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    # Both fused ops or neither: builds differ in which oneDNN ops they register.
    return all(hasattr(torch.ops.mkldnn, op) for op in ("_convolution_pointwise", "_linear_pointwise"))


class DenseNetworks:
    """K patch CNNs in dense form: a `[3, h + 15, w + 15]` input tile -> `[K, n]` logits of n voxels.

    Input row v + i is patch row i of output voxel v (i = 0..15; patch rows 16-18 are never seen).
    `__call__(tile, inside)` returns the logits of the voxels where `inside` (`[h, w]` bool) is
    true, in row-major order, as float32. `dtype` is the arithmetic (float32, or bfloat16 as an
    opt-in approximation).
    """

    def __init__(self, networks: Sequence[PatchCNN], device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        if len(networks) == 0:
            raise ValueError("DenseNetworks needs at least one network")
        self.device = device
        self.k = len(networks)
        self.dtype = dtype
        self.fused = _fused_conv_available(device)
        layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format

        def take(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.detach().to(device=device, dtype=dtype)

        with torch.no_grad():
            self.w1 = torch.cat([take(n.conv1.weight) for n in networks]).contiguous(memory_format=layout)
            self.b1 = torch.cat([take(n.conv1.bias) for n in networks])
            self.heads = [
                (
                    take(n.conv2.weight).contiguous(memory_format=layout), take(n.conv2.bias),
                    take(n.fc1.weight).contiguous(), take(n.fc1.bias),
                    take(n.fc2.weight).contiguous(), take(n.fc2.bias),
                    take(n.out.weight).reshape(-1).contiguous(), take(n.out.bias),
                )
                for n in networks
            ]
        self.layout = layout

    def _conv_relu(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dilation: int) -> torch.Tensor:
        if self.fused:
            return torch.ops.mkldnn._convolution_pointwise(
                x, weight, bias, [0, 0], [1, 1], [dilation, dilation], 1, "relu", [], "")
        return F.conv2d(x, weight, bias, dilation=dilation).relu_()

    @staticmethod
    def _max2x2(x: torch.Tensor, step: int) -> torch.Tensor:
        # 2x2 max-pool with stride 1 and dilation `step`, separably: over x, then over y. Two
        # maxima of contiguous-row views; measured 6x faster than four strided views at once.
        across = torch.maximum(x[:, :, :, :-step], x[:, :, :, step:])
        return torch.maximum(across[:, :, :-step], across[:, :, step:])

    def _linear_relu(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu", [], "")
        return F.linear(x, weight, bias).relu_()

    def __call__(self, tile: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        x = tile[None].to(self.dtype).contiguous(memory_format=self.layout)
        maps = self._conv_relu(x, self.w1, self.b1, 1)
        rows = inside.reshape(-1).nonzero().squeeze(1)
        logits = []
        for k, (w2, b2, f1w, f1b, f2w, f2b, ow, ob) in enumerate(self.heads):
            pooled = self._max2x2(maps[:, _C1 * k:_C1 * (k + 1)], 1).contiguous(memory_format=self.layout)
            features = self._max2x2(self._conv_relu(pooled, w2, b2, 2), 2)
            # [1, 128, h, w] -> the region voxels' 128 features, one row per voxel
            features = features[0].permute(1, 2, 0).reshape(-1, _C2).index_select(0, rows)
            hidden = self._linear_relu(self._linear_relu(features, f1w, f1b), f2w, f2b)
            logits.append(torch.addmv(ob, hidden, ow))
        return torch.stack(logits).float()


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


def region_tiles(region: np.ndarray, *, tile_voxels: int) -> Iterator[tuple[int, int, int, int, int]]:
    """The tiles that dense inference computes: (z, y0, y1, x0, x1) output boxes, end exclusive.

    Per slice, the region's rows in runs of about `tile_voxels / box width` rows, each run cut to
    the columns where the region lies in those rows. The convolutions cover each box plus a halo;
    the region's holes (CSF) inside a box are computed too, which `benchmarks/speed.py` reports.

    >>> r = np.zeros((1, 4, 6), bool); r[0, 0, 0] = r[0, 3, 5] = True
    >>> list(region_tiles(r, tile_voxels=12))
    [(0, 0, 2, 0, 1), (0, 2, 4, 5, 6)]
    """
    for z, y0, y1, x0, x1 in region_boxes(region):
        rows_per_tile = max(1, tile_voxels // (x1 - x0))
        for t0 in range(y0, y1, rows_per_tile):
            t1 = min(y1, t0 + rows_per_tile)
            cols = np.flatnonzero(region[z, t0:t1].any(axis=0))
            if cols.size:
                yield z, t0, t1, int(cols[0]), int(cols[-1]) + 1


def dense_probabilities(
    hu: np.ndarray,
    region: np.ndarray,
    networks: Mapping[str, PatchCNN],
    *,
    norm: InputNorm = InputNorm(),
    device: str = "cpu",
    tile_voxels: int = 60_000,
    precision: str = "float32",
) -> dict[str, np.ndarray]:
    """Foreground probability of every region voxel for each network; 0 outside the region.

    hu: `[z, y, x]` HU on the analysis grid. region: bool mask of the same shape (the analysis
    region: intracranial minus CSF). Returns name -> float32 array shaped like `hu`.
    Only the region's extent is computed: per slice, row tiles of about `tile_voxels` output voxels
    (memory stays bounded, about 3 kB per tile voxel for four networks), each cut to the columns
    where the region lies in those rows. precision: "float32" (default) or "bfloat16" (an opt-in
    approximation, see `corelab.config.Method`). On CUDA, float32 runs without TF32 (flags restored
    on return), so CUDA and CPU probabilities agree to float32 rounding.

    >>> hu = np.full((1, 6, 6), 30.0, np.float32); region = np.zeros((1, 6, 6), bool); region[0, 2, 3] = True
    >>> p = dense_probabilities(hu, region, {"a": PatchCNN()})
    >>> bool(p["a"][0, 2, 3] > 0), float(p["a"].sum() - p["a"][0, 2, 3])
    (True, 0.0)
    """
    hu = np.asarray(hu)
    region = np.asarray(region, dtype=bool)
    if hu.ndim != 3 or region.shape != hu.shape:
        raise ValueError(f"hu {hu.shape} and region {region.shape} must be matching [z, y, x] arrays")
    return dense_probabilities_from_input(norm.apply(hu, region), region, networks, pad_value=norm.pad_value,
                                          device=device, tile_voxels=tile_voxels, precision=precision)


def dense_probabilities_from_input(
    x: np.ndarray,
    region: np.ndarray,
    networks: Mapping[str, PatchCNN],
    *,
    pad_value: float,
    device: str = "cpu",
    tile_voxels: int = 60_000,
    precision: str = "float32",
) -> dict[str, np.ndarray]:
    """`dense_probabilities` on input already normalized (`InputNorm.apply`), e.g. a training cohort's
    stored scans; `pad_value` is the norm's value of air, used outside the image."""
    x = np.asarray(x, dtype=np.float32)
    region = np.asarray(region, dtype=bool)
    if x.ndim != 3 or region.shape != x.shape:
        raise ValueError(f"input {x.shape} and region {region.shape} must be matching [z, y, x] arrays")
    torch_device = resolve_device(device)
    dtype = precision_dtype(precision)
    names = list(networks)
    probabilities = {name: np.zeros(x.shape, dtype=np.float32) for name in names}
    if not names or not region.any():
        return probabilities
    dense = DenseNetworks([networks[name] for name in names], torch_device, dtype)
    before, after = PATCH_CENTER, PATCH_SIZE - 1 - PATCH_CENTER
    padded = np.pad(x, ((1, 1), (before, after), (before, after)), mode="edge")  # z replicate
    pad_value = np.float32(pad_value)
    padded[:, :before, :] = pad_value
    padded[:, -after:, :] = pad_value
    padded[:, :, :before] = pad_value
    padded[:, :, -after:] = pad_value
    with torch.inference_mode(), _ieee_float32(torch_device):
        for z, t0, t1, c0, c1 in region_tiles(region, tile_voxels=tile_voxels):
            inside = region[z, t0:t1, c0:c1]
            # Padded z index z + 1 is slice z. Output row v reads padded rows v .. v + 15 only
            # (floor pooling drops patch rows 16-18), so a tile needs SEEN_SIZE - 1 extra rows.
            tile = torch.from_numpy(np.ascontiguousarray(padded[z:z + 3, t0:t1 + SEEN_SIZE - 1, c0:c1 + SEEN_SIZE - 1]))
            prob = torch.sigmoid(dense(tile.to(torch_device), torch.from_numpy(inside).to(torch_device)))
            prob = prob.to("cpu").numpy()
            for i, name in enumerate(names):
                probabilities[name][z, t0:t1, c0:c1][inside] = prob[i]
    return probabilities
