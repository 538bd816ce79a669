"""The paper's patch CNN (Sales Barros et al. 2020, "CNN-based infarct segmentation"), registered as
"barros2020-patch-cnn" in `corelab.segment.networks`, and its dense form:

    input 19x19x3 (slices z-1, z, z+1 of the 5 mm analysis grid as channels)
    conv 5x5, 64 maps, ReLU        19 -> 15
    max-pool 2x2 stride 2          15 -> 7   (floor: conv row/column 14 is dropped)
    conv 5x5, 128 maps, ReLU        7 -> 3
    max-pool 2x2 stride 2           3 -> 1   (floor: conv row/column 2 is dropped)
    dense 256, ReLU; dense 256, ReLU; dense 1 -> sigmoid = foreground probability of the voxel

Which input rows the network sees. Tracing the output back through the floor pooling: pool2 reads
conv2 rows 0-1, which read pool1 rows 0-5, which read conv1 rows 0-11, which read input rows 0-15.
Rows and columns 16, 17 and 18 of the 19x19 patch never influence the output; the network sees a
16x16 window. An even window has no middle voxel, so we place the voxel at patch index
`PATCH_CENTER` = 8: the seen window spans offsets -8..+7 around the voxel, whose centre is 0.5 voxel
(0.225 mm) before the voxel in y and x, the closest an even window can be centred. (Placing the voxel
at the geometric centre, index 9, would leave the seen window 1.5 voxels off-centre.) Every patch
extractor in corelab (training, patch-wise and dense inference) uses this placement.

Its dense form, `DenseNetworks`, is a fully convolutional rewrite that computes exactly the same
function. With the voxel at patch index 8 and the input padded by 8 before and 10 after (in y and
x), the patch of output voxel v starts at padded row v, and the layers become:

    conv1 5x5                          (unchanged, stride 1)
    max-pool 2x2, stride 1             (pool1 output p of a patch = dense map at v + 2p)
    conv2 5x5, dilation 2              (its taps are 2 apart on the dense map)
    max-pool 2x2, stride 1, dilation 2 (pool2 reads conv2 outputs 0 and 1, i.e. dense v and v + 2)
    dense layers                       (matrix products, on the region's voxels only)

Where the time goes (`benchmarks/speed.py`): conv2 is two thirds of the arithmetic and runs at
the machine's matrix-product rate as a oneDNN convolution with channels-last maps; the rest was
overhead that the dense form removes:

- the four first convolutions are stacked into one (one read of the input, 256 maps);
- ReLU is fused into the convolutions and dense layers where PyTorch's oneDNN build offers it
  (`torch.ops.mkldnn._convolution_pointwise`, `_linear_pointwise`; in bfloat16 only on CPUs whose
  oneDNN has a bfloat16 path); elsewhere (CUDA, builds without oneDNN, bfloat16 on other CPUs) the
  plain layer is followed by an in-place ReLU, the same arithmetic;
- max-pools are element-wise maxima of shifted views, separably over x then y (ReLU and max
  commute, so the order of ReLU and pooling does not change a value);
- the dense layers (a third of the arithmetic) run as matrix products on the voxels of the
  analysis region only: the convolutions must cover the region's bounding box, but a voxel outside
  the region gets probability 0 whatever the network says, so its dense layers are skipped. This
  is exact: every region voxel gets the same arithmetic as before.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PATCH_SIZE", "PATCH_CENTER", "SEEN_SIZE", "PatchCNN", "MirrorPatchCNN", "DenseNetworks"]

PATCH_SIZE = 19  # in-plane patch side, voxels (paper)
PATCH_CENTER = 8  # patch index of the classified voxel (see module docstring)
SEEN_SIZE = 16  # rows/columns of the patch that reach the output through floor pooling


class PatchCNN(nn.Module):
    """The paper's CNN: a [N, 3, 19, 19] input batch -> foreground logit per patch, shape [N].

    Use `probability` for the sigmoid of the logit. The layer names (conv1, conv2, fc1, fc2, out) are
    the keys of the saved weights and are read by `DenseNetworks`.

    >>> net = PatchCNN()
    >>> tuple(net(torch.zeros(2, 3, 19, 19)).shape)
    (2,)
    """

    patch_size = PATCH_SIZE
    patch_center = PATCH_CENTER
    seen_size = SEEN_SIZE
    channels = 3
    inputs = ("hu",)  # the input volumes, each giving 3 slice channels (`corelab.segment.inputs`)
    layers = ("conv 5x5 64 ReLU", "max-pool 2x2/2", "conv 5x5 128 ReLU", "max-pool 2x2/2",
              "dense 256 ReLU", "dense 256 ReLU", "dense 1 sigmoid")

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(self.channels, 64, kernel_size=5)
        self.conv2 = nn.Conv2d(64, 128, kernel_size=5)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)  # floor mode, as most frameworks default
        self.fc1 = nn.Linear(128, 256)
        self.fc2 = nn.Linear(256, 256)
        self.out = nn.Linear(256, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.out(x)[:, 0]

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """Foreground probability of each patch's voxel, in [0, 1]."""
        return torch.sigmoid(self.forward(x))

    @staticmethod
    def dense_form(networks: Sequence[PatchCNN], device: torch.device, dtype: torch.dtype) -> DenseNetworks:
        """The whole-tile form of K networks of this architecture (see `DenseNetworks`)."""
        return DenseNetworks(networks, device, dtype)


class MirrorPatchCNN(PatchCNN):
    """The paper's CNN with a contralateral input: 6 channels, the slices z-1, z, z+1 of the scan and
    of its mid-sagittal mirror (`corelab.preprocess.midline`: each voxel's counterpart across the
    head's own midline, estimated per scan). A reader judges a hypodensity against the other
    hemisphere; this is the one departure from the paper's network (layers, patch and placement are
    the paper's). Registered as "barros2020-mirror-cnn".

    >>> tuple(MirrorPatchCNN()(torch.zeros(2, 6, 19, 19)).shape)
    (2,)
    """

    channels = 6
    inputs = ("hu", "mirror")


def _fused_conv_available(device: torch.device, dtype: torch.dtype = torch.float32) -> bool:
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    # Both fused ops or neither: builds differ in which oneDNN ops they register.
    if not all(hasattr(torch.ops.mkldnn, op) for op in ("_convolution_pointwise", "_linear_pointwise")):
        return False
    return dtype == torch.float32 or _fused_bfloat16_runs()


@functools.lru_cache(maxsize=1)
def _fused_bfloat16_runs() -> bool:
    """Whether oneDNN's fused bfloat16 convolution and dense layer run on this CPU (torch asks for
    AVX512 BW/VL/DQ or AVX-NE-CONVERT; elsewhere it refuses them, while the plain bfloat16 layers
    still run)."""
    x = torch.zeros(1, 6, 8, 8, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    w = torch.zeros(4, 6, 5, 5, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    bias = torch.zeros(4, dtype=torch.bfloat16)
    try:
        torch.ops.mkldnn._convolution_pointwise(x, w, bias, [0, 0], [1, 1], [1, 1], 1, "relu", [], "")
        torch.ops.mkldnn._linear_pointwise(torch.zeros(2, 6, dtype=torch.bfloat16),
                                           torch.zeros(4, 6, dtype=torch.bfloat16), bias, "relu", [], "")
    except RuntimeError:
        return False
    return True


class DenseNetworks:
    """K patch CNNs in dense form (`PatchCNN.dense_form`): a `[channels, h + 15, w + 15]` tile -> `[K, n]` logits.

    Input row v + i is patch row i of output voxel v (i = 0..15; patch rows 16-18 are never seen);
    every whole-tile form keeps this contract, with `seen_size - 1` in place of 15.
    `__call__(tile, inside)` returns the logits of the voxels where `inside` (`[h, w]` bool) is
    true, in row-major order, as float32. `dtype` is the arithmetic (float32, or bfloat16 as an
    opt-in approximation).
    """

    def __init__(self, networks: Sequence[PatchCNN], device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        if len(networks) == 0:
            raise ValueError("DenseNetworks needs at least one network")
        self.device = device
        self.k = len(networks)
        self.c1 = networks[0].conv1.out_channels  # conv1 maps per network, stacked into one convolution
        self.dtype = dtype
        self.fused = _fused_conv_available(device, dtype)
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

    @staticmethod
    def _rows(features: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        # The rows `rows` of `[n, c]` features, copied. On the CPU in float32 numpy's take copies
        # them 3-4x faster than torch's index_select (measured: 51,128 of 68,400 rows of 128); same values.
        if features.device.type == "cpu" and features.dtype == torch.float32:
            return torch.from_numpy(np.take(features.numpy(), rows.numpy(), axis=0))
        return features.index_select(0, rows)

    def __call__(self, tile: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        x = tile[None].to(self.dtype).contiguous(memory_format=self.layout)
        maps = self._conv_relu(x, self.w1, self.b1, 1)
        rows = inside.reshape(-1).nonzero().squeeze(1)
        logits = []
        for k, (w2, b2, f1w, f1b, f2w, f2b, ow, ob) in enumerate(self.heads):
            pooled = self._max2x2(maps[:, self.c1 * k:self.c1 * (k + 1)], 1).contiguous(memory_format=self.layout)
            features = self._max2x2(self._conv_relu(pooled, w2, b2, 2), 2)
            # [1, 128, h, w] -> the region voxels' 128 features, one row per voxel
            features = self._rows(features[0].permute(1, 2, 0).reshape(-1, w2.shape[0]), rows)
            hidden = self._linear_relu(self._linear_relu(features, f1w, f1b), f2w, f2b)
            logits.append(torch.addmv(ob, hidden, ow))
        return torch.stack(logits).float()
