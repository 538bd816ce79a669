"""Dense inference: the patch CNN evaluated for every voxel of a slice at once.

The patch network is rewritten as a fully convolutional one that computes exactly the same function.
With the voxel at patch index 8 and the input padded by 8 before and 10 after (in y and x), the
patch of output voxel v starts at padded row v, and the layers become:

    conv1 5x5                          (unchanged, stride 1)
    max-pool 2x2, stride 1             (pool1 output p of a patch = dense map at v + 2p)
    conv2 5x5, dilation 2              (its taps are 2 apart on the dense map)
    max-pool 2x2, stride 1, dilation 2 (pool2 reads conv2 outputs 0 and 1, i.e. dense v and v + 2)
    dense layers as 1x1 convolutions

The four networks run in one pass: their first convolutions are stacked (one conv with 4 x 64 maps);
the later layers run per network.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from corelab.model import PATCH_CENTER, PATCH_SIZE, SEEN_SIZE, InputNorm, PatchCNN, resolve_device

__all__ = ["DenseStack", "dense_probabilities", "region_boxes"]


class _DenseHead(nn.Module):
    """One network's layers after conv1, in their fully convolutional (dilated) form."""

    def __init__(self, net: PatchCNN) -> None:
        super().__init__()
        self.pool1 = nn.MaxPool2d(2, stride=1)
        self.conv2 = nn.Conv2d(64, 128, 5, dilation=2)
        self.pool2 = nn.MaxPool2d(2, stride=1, dilation=2)
        self.fc1 = nn.Conv2d(128, 256, 1)
        self.fc2 = nn.Conv2d(256, 256, 1)
        self.out = nn.Conv2d(256, 1, 1)
        with torch.no_grad():
            for layer in ("conv2", "fc1", "fc2", "out"):
                source, target = getattr(net, layer), getattr(self, layer)
                # Dense layers' [out, in] matrices become [out, in, 1, 1] kernels.
                target.weight.copy_(source.weight.detach().to("cpu").reshape(target.weight.shape))
                target.bias.copy_(source.bias.detach().to("cpu"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool2(torch.relu(self.conv2(self.pool1(x))))
        x = torch.relu(self.fc2(torch.relu(self.fc1(x))))
        return self.out(x)


class DenseStack(nn.Module):
    """K patch CNNs as one fully convolutional network: `[B, 3, H + 15, W + 15]` -> `[B, K, H, W]` logits.

    Input row v + i is patch row i of output voxel v (i = 0..15; patch rows 16-18 are never seen).
    The K first convolutions share their input and run as one stacked convolution; the later layers
    run per network, which on CPU measured faster than grouped convolutions (PyTorch 2.13, 2 threads).
    """

    def __init__(self, networks: Sequence[PatchCNN]) -> None:
        super().__init__()
        if len(networks) == 0:
            raise ValueError("DenseStack needs at least one network")
        self.k = len(networks)
        self.conv1 = nn.Conv2d(3, 64 * self.k, 5)
        with torch.no_grad():
            self.conv1.weight.copy_(torch.cat([net.conv1.weight.detach().to("cpu") for net in networks]))
            self.conv1.bias.copy_(torch.cat([net.conv1.bias.detach().to("cpu") for net in networks]))
        self.heads = nn.ModuleList(_DenseHead(net) for net in networks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = torch.relu(self.conv1(x)).split(64, dim=1)
        return torch.cat([head(part) for head, part in zip(self.heads, maps)], dim=1)


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


def dense_probabilities(
    hu: np.ndarray,
    region: np.ndarray,
    networks: Mapping[str, PatchCNN],
    *,
    norm: InputNorm = InputNorm(),
    device: str = "cpu",
    tile_voxels: int = 40_000,
) -> dict[str, np.ndarray]:
    """Foreground probability of every region voxel for each network; 0 outside the region.

    hu: `[z, y, x]` HU on the analysis grid. region: bool mask of the same shape (the analysis
    region: intracranial minus CSF). Returns name -> float32 array shaped like `hu`.
    Only the region's extent is computed: per slice, row tiles of about `tile_voxels` output voxels
    (memory stays bounded, about 4 kB per voxel for four networks), each cut to the columns where
    the region lies in those rows.

    >>> hu = np.full((1, 6, 6), 30.0, np.float32); region = np.zeros((1, 6, 6), bool); region[0, 2, 3] = True
    >>> p = dense_probabilities(hu, region, {"a": PatchCNN()})
    >>> bool(p["a"][0, 2, 3] > 0), float(p["a"].sum() - p["a"][0, 2, 3])
    (True, 0.0)
    """
    hu = np.asarray(hu)
    region = np.asarray(region, dtype=bool)
    if hu.ndim != 3 or region.shape != hu.shape:
        raise ValueError(f"hu {hu.shape} and region {region.shape} must be matching [z, y, x] arrays")
    torch_device = resolve_device(device)
    names = list(networks)
    probabilities = {name: np.zeros(hu.shape, dtype=np.float32) for name in names}
    if not names or not region.any():
        return probabilities
    stack = DenseStack([networks[name] for name in names]).to(torch_device).eval()
    before, after = PATCH_CENTER, PATCH_SIZE - 1 - PATCH_CENTER
    normed = norm.apply(hu)
    padded = np.pad(normed, ((1, 1), (before, after), (before, after)), mode="edge")  # z replicate
    pad_value = np.float32(norm.pad_value)
    padded[:, :before, :] = pad_value
    padded[:, -after:, :] = pad_value
    padded[:, :, :before] = pad_value
    padded[:, :, -after:] = pad_value
    with torch.inference_mode():
        for z, y0, y1, x0, x1 in region_boxes(region):
            rows_per_tile = max(1, tile_voxels // (x1 - x0))
            for t0 in range(y0, y1, rows_per_tile):
                t1 = min(y1, t0 + rows_per_tile)
                inside = region[z, t0:t1]
                cols = np.flatnonzero(inside.any(axis=0))
                if cols.size == 0:
                    continue
                c0, c1 = int(cols[0]), int(cols[-1]) + 1  # the region's columns in these rows only
                # Padded z index z + 1 is slice z. Output row v reads padded rows v .. v + 15 only
                # (floor pooling drops patch rows 16-18), so a tile needs SEEN_SIZE - 1 extra rows.
                tile = padded[z:z + 3, t0:t1 + SEEN_SIZE - 1, c0:c1 + SEEN_SIZE - 1]
                logits = stack(torch.from_numpy(np.ascontiguousarray(tile))[None].to(torch_device))
                prob = torch.sigmoid(logits[0]).to("cpu").numpy()
                for i, name in enumerate(names):
                    probabilities[name][z, t0:t1, c0:c1] = np.where(inside[:, c0:c1], prob[i], 0.0)
    return probabilities
