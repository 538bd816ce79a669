"""Automated infarct segmentation on the analysis grid: four CNNs, smoothing, cut-offs, precedence.

Each network's dense probability map is first smoothed in-plane (`smooth_probabilities`, the sigma
recorded in the model card, chosen with the cut-offs on validation scans; not in the paper: one
patch's decision is noisy at 0.45 mm pixels, and a lesion is a region, so its neighbours' votes count),
then dichotomized at its cut-off (a voxel is foreground when its
probability >= cut-off) inside the analysis region; the union of the four is the automated infarct.
A model whose card sets the hemorrhage rule keeps a connected hemorrhage claim only when a hypodense
claim lies within that many mm of it (`hemorrhage_beside`; not in the paper, but the reference's
definition: hemorrhage within or beside the infarct); one whose card sets a contralateral gate then
drops the hypodense parts that are not darker than their mirror across the midline
(`corelab.segment.contralateral`; not in the paper).
Labels (DESIGN): 1 severe, 2 intermediate, 3 subtle, 4 hemorrhage; where several networks claim a
voxel, hemorrhage > subtle > intermediate > severe (the paper's Figure 3 rendering order).

Single-CNN baseline folders ("single" + "hemorrhage"): the single network has no class, so its
voxels are labelled with the hypodensity class of their own mean HU (intermediate when that mean is
outside every class range); volumes and Dice of the union do not depend on this choice.
"""

from __future__ import annotations

import numpy as np

from corelab.config import LABELS, hypodensity_class
from corelab.errors import CorelabError
from corelab.segment.card import SINGLE_NAME
from corelab.segment.contralateral import MirrorViews, contralateral_gate, mirror_views
from corelab.segment.dense import dense_probabilities
from corelab.segment.folder import ModelSet
from corelab.segment.inputs import needs_mirror
from corelab.segment.networks import architecture_inputs, architecture_of

__all__ = ["segment", "labels_from_probabilities", "smooth_probabilities", "hemorrhage_beside", "model_labels",
           "uses_mirror", "SegmentInputError"]

# Later entries overwrite earlier ones: this order is the precedence rule (the label values' order).
PRECEDENCE = tuple(LABELS)


class SegmentInputError(CorelabError, ValueError):
    """The arrays handed to `segment` do not fit together (shape, dimensions)."""


def smooth_probabilities(probabilities: dict[str, np.ndarray], region: np.ndarray, sigma_px: float) -> dict[str, np.ndarray]:
    """Each map averaged in-plane with a Gaussian of `sigma_px` pixels over region voxels only.

    Normalized convolution: sum(g * p * region) / sum(g * region), so CSF, skull and air beside a
    voxel (probability 0, not scored) do not pull it down. Slices are not mixed (5 mm apart). 0
    outside the region; `sigma_px` 0 returns the maps unchanged.

    >>> region = np.zeros((1, 1, 9), bool); region[0, 0, 2:7] = True
    >>> p = np.zeros((1, 1, 9)); p[0, 0, 4] = 1.0; p[0, 0, 2] = 0.5
    >>> [round(float(v), 2) for v in smooth_probabilities({"a": p}, region, 1.0)["a"][0, 0]]
    [0.0, 0.0, 0.36, 0.39, 0.43, 0.26, 0.08, 0.0, 0.0]
    """
    if sigma_px <= 0:
        return probabilities
    from scipy import ndimage  # here: unsmoothed labels (benchmarks/cuda_check.py) need no SciPy

    region = np.asarray(region, dtype=bool)
    smoothed = {name: np.zeros(region.shape, np.float32) for name in probabilities}
    if not region.any():
        return smoothed
    # Only the region's bounding box: outside the region every term is 0 anyway (zero padding).
    box = tuple(slice(int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(region))
    inside = region[box]
    sigma = (0.0, float(sigma_px), float(sigma_px))
    weight = ndimage.gaussian_filter(inside.astype(np.float32), sigma, mode="constant")
    weight = np.where(inside, weight, 1.0)
    for name, prob in probabilities.items():
        total = ndimage.gaussian_filter(np.where(inside, prob[box], 0).astype(np.float32), sigma, mode="constant")
        smoothed[name][box] = np.where(inside, total / weight, 0)
    return smoothed


def labels_from_probabilities(
    probabilities: dict[str, np.ndarray],
    cutoffs: dict[str, float],
    region: np.ndarray,
    *,
    hu: np.ndarray | None = None,
    smoothing_px: float = 0.0,
) -> np.ndarray:
    """uint8 labels 0-4 from per-network probability maps, cut-offs and the analysis region.

    `hu` is needed only for a "single" network (its voxels take the class of their mean HU).
    smoothing_px: `smooth_probabilities` first (the model's `ModelSet.smoothing_px`).

    >>> region = np.ones((1, 1, 3), bool)
    >>> probs = {"severe": np.array([[[0.9, 0.9, 0.1]]]), "hemorrhage": np.array([[[0.0, 0.8, 0.9]]])}
    >>> labels_from_probabilities(probs, {"severe": 0.5, "hemorrhage": 0.5}, region).tolist()
    [[[1, 4, 4]]]
    """
    region = np.asarray(region, dtype=bool)
    probabilities = smooth_probabilities(probabilities, region, smoothing_px)
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


def hemorrhage_beside(labels: np.ndarray, others: np.ndarray, spacing: tuple[float, float, float],
                      within_mm: float) -> np.ndarray:
    """``labels`` without the connected hemorrhage claims (label 4, face-connected) that have no
    hypodense claim of ``others`` (the same maps labelled with no hemorrhage network) within
    ``within_mm`` mm: dropped (their voxels take ``others``' label, which is background there, since
    no hypodense claim lies within ``within_mm`` of them). A new array.

    >>> labels = np.array([[[4, 4, 0, 0, 0, 4]]], np.uint8); others = np.array([[[0, 2, 0, 0, 0, 0]]], np.uint8)
    >>> hemorrhage_beside(labels, others, (5.0, 1.0, 1.0), 2.0).tolist()
    [[[4, 4, 0, 0, 0, 0]]]
    """
    # Imported here: `corelab.segment` loads without scipy's and SimpleITK's preprocessing
    # (benchmarks/cuda_check.py runs on a bare GPU machine).
    from corelab.preprocess.morphology import dilate_mm, label_components

    labels = np.asarray(labels)
    parts, count = label_components(labels == LABELS["hemorrhage"])
    if not count:
        return labels.copy()
    near = dilate_mm((others >= 1) & (others <= 3), tuple(spacing), within_mm)
    keep = np.zeros(count + 1, bool)
    keep[0] = True
    keep[np.unique(parts[near & (parts > 0)])] = True
    return np.where(keep[parts], labels, others).astype(labels.dtype)


def model_labels(probabilities: dict[str, np.ndarray], models: ModelSet, region: np.ndarray, hu: np.ndarray,
                 spacing: tuple[float, float, float], views: MirrorViews | None = None) -> np.ndarray:
    """Labels from dense probability maps as ``models``' card says: smoothing, cut-offs, precedence,
    then its hemorrhage rule and its contralateral gate when set (``views`` needed for the gate)."""
    smoothed = smooth_probabilities(probabilities, region, models.smoothing_px)  # once, for both labellings
    labels = labels_from_probabilities(smoothed, dict(models.cutoffs), region, hu=hu)
    if models.hemorrhage_beside_mm is not None and "hemorrhage" in smoothed:
        others = labels_from_probabilities({k: v for k, v in smoothed.items() if k != "hemorrhage"},
                                           dict(models.cutoffs), region, hu=hu)
        if models.gate_hu is not None:  # the hypodense claims that will stay are the ones that count
            others = contralateral_gate(others, hu, views.hu, views.region_across, models.gate_hu)
        labels = hemorrhage_beside(labels, others, spacing, models.hemorrhage_beside_mm)
    if models.gate_hu is not None:
        labels = contralateral_gate(labels, hu, views.hu, views.region_across, models.gate_hu)
    return labels


def uses_mirror(models: ModelSet) -> bool:
    """True when segmenting with ``models`` looks across the midline: a network reads the mirror, or
    the card sets the contralateral gate (`segment` then needs `MirrorViews`)."""
    return needs_mirror(architecture_inputs(architecture_of(models.networks.values()))) or models.gate_hu is not None


def segment(
    hu: np.ndarray, region: np.ndarray, models: ModelSet, *, device: str = "cpu", precision: str = "float32",
    spacing: tuple[float, float, float] | None = None, views: MirrorViews | None = None,
) -> np.ndarray:
    """Automated infarct labels on the analysis grid: uint8 `[z, y, x]`, 0 outside `region`.

    hu: HU (float) on the 5 mm analysis grid, `[z, y, x]`. region: bool analysis region
    (intracranial minus CSF) of the same shape. models: from `corelab.segment.folder.load_models`.
    device: "cpu" or "cuda" (CUDA without a GPU raises `CudaUnavailableError`).
    precision: the CNNs' arithmetic, "float32" (default) or the opt-in "bfloat16" approximation.
    spacing: (z, y, x) mm of the grid; None = the model's analysis grid (slice_mm, pixel_mm, pixel_mm).
    views: the scan's `corelab.segment.contralateral.MirrorViews` when already made (the pipeline
    reuses them for its symmetry guard); made here when `uses_mirror(models)` and None.

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
    if spacing is None:
        spacing = (models.grid.slice_mm, models.grid.pixel_mm, models.grid.pixel_mm)
    if views is None and uses_mirror(models):  # one registration for the mirror input and the gate
        views = mirror_views(hu, region, spacing)
    probabilities = dense_probabilities(hu, region, models.networks, norm=models.norm, device=device,
                                        precision=precision, spacing=spacing,
                                        mirror_hu=views.hu if views is not None else None)
    return model_labels(probabilities, models, region, hu, spacing, views)
