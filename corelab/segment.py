"""Automated infarct segmentation on the analysis grid: four CNNs, cut-offs, precedence.

Each network's dense probability map is dichotomized at its cut-off (a voxel is foreground when its
probability >= cut-off) inside the analysis region; the union of the four is the automated infarct.
Labels (DESIGN): 1 severe, 2 intermediate, 3 subtle, 4 hemorrhage; where several networks claim a
voxel, hemorrhage > subtle > intermediate > severe (the paper's Figure 3 rendering order).

Single-CNN baseline folders ("single" + "hemorrhage"): the single network has no class, so its
voxels are labelled with the hypodensity class of their own mean HU (intermediate when that mean is
outside every class range); volumes and Dice of the union do not depend on this choice.
"""

from __future__ import annotations

import numpy as np

from corelab.config import LABELS
from corelab.dense import dense_probabilities
from corelab.errors import CorelabError
from corelab.measure import hypodensity_class
from corelab.model import SINGLE_NAME, ModelSet

__all__ = ["segment", "labels_from_probabilities", "SegmentInputError"]

# Later entries overwrite earlier ones: this order is the precedence rule.
PRECEDENCE = ("severe", "intermediate", "subtle", "hemorrhage")


class SegmentInputError(CorelabError, ValueError):
    """The arrays handed to `segment` do not fit together (shape, dimensions)."""


def labels_from_probabilities(
    probabilities: dict[str, np.ndarray],
    cutoffs: dict[str, float],
    region: np.ndarray,
    *,
    hu: np.ndarray | None = None,
) -> np.ndarray:
    """uint8 labels 0-4 from per-network probability maps, cut-offs and the analysis region.

    `hu` is needed only for a "single" network (its voxels take the class of their mean HU).

    >>> region = np.ones((1, 1, 3), bool)
    >>> probs = {"severe": np.array([[[0.9, 0.9, 0.1]]]), "hemorrhage": np.array([[[0.0, 0.8, 0.9]]])}
    >>> labels_from_probabilities(probs, {"severe": 0.5, "hemorrhage": 0.5}, region).tolist()
    [[[1, 4, 4]]]
    """
    region = np.asarray(region, dtype=bool)
    labels = np.zeros(region.shape, dtype=np.uint8)
    if SINGLE_NAME in probabilities:
        claimed = region & (probabilities[SINGLE_NAME] >= cutoffs[SINGLE_NAME])
        if claimed.any():
            if hu is None:
                raise SegmentInputError("The single-CNN baseline needs the HU array to label its voxels.")
            name = hypodensity_class(float(np.mean(hu[claimed]))) or "intermediate"
            labels[claimed] = LABELS[name]
    for name in PRECEDENCE:
        if name in probabilities:
            labels[region & (probabilities[name] >= cutoffs[name])] = LABELS[name]
    return labels


def segment(
    hu: np.ndarray, region: np.ndarray, models: ModelSet, *, device: str = "cpu", precision: str = "float32"
) -> np.ndarray:
    """Automated infarct labels on the analysis grid: uint8 `[z, y, x]`, 0 outside `region`.

    hu: HU (float) on the 5 mm analysis grid, `[z, y, x]`. region: bool analysis region
    (intracranial minus CSF) of the same shape. models: from `corelab.model.load_models`.
    device: "cpu" or "cuda" (CUDA without a GPU raises `CudaUnavailableError`).
    precision: the CNNs' arithmetic, "float32" (default) or the opt-in "bfloat16" approximation.

    Example (on a scan read and preprocessed as in docs/INTERFACES.md):
        labels = segment(analysis.array, regions.region, load_models(), device="cpu")
        infarct_voxels = (labels > 0).sum()
    """
    hu = np.asarray(hu)
    region = np.asarray(region)
    if hu.ndim != 3:
        raise SegmentInputError(f"The scan array must be 3D [z, y, x] but has {hu.ndim} dimension(s).")
    if region.shape != hu.shape:
        raise SegmentInputError(f"The analysis region {region.shape} does not match the scan {hu.shape}.")
    region = region.astype(bool)
    probabilities = dense_probabilities(hu, region, models.networks, norm=models.norm, device=device,
                                        precision=precision)
    return labels_from_probabilities(probabilities, dict(models.cutoffs), region, hu=hu)
