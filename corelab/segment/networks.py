"""The paper's patch CNN (one architecture for all four networks) and the registry of architectures.

Architecture (Sales Barros et al. 2020, "CNN-based infarct segmentation"):

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

"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PATCH_SIZE", "PATCH_CENTER", "SEEN_SIZE", "PatchCNN"]

PATCH_SIZE = 19  # in-plane patch side, voxels (paper)
PATCH_CENTER = 8  # patch index of the classified voxel (see module docstring)
SEEN_SIZE = 16  # rows/columns of the patch that reach the output through floor pooling


class PatchCNN(nn.Module):
    """The paper's CNN: a [N, 3, 19, 19] input batch -> foreground logit per patch, shape [N].

    Use `probability` for the sigmoid of the logit. The layer names (conv1, conv2, fc1, fc2, out) are
    the keys of the saved weights and are read by `corelab.segment.dense`.

    >>> net = PatchCNN()
    >>> tuple(net(torch.zeros(2, 3, 19, 19)).shape)
    (2,)
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=5)
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

