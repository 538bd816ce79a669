"""Cut-offs of the CNNs chosen together, for the Dice of their union, on validation scans.

In use every CNN runs on every scan and the automated infarct is the union of their claims, scored
per patient against the reference (infarct plus hemorrhage, as the paper). So the cut-offs are
chosen for that: the mean over validation scans of the union's Dice, maximized one network at a
time with the others fixed (coordinate ascent over `CUTOFF_GRID`, a few rounds). A network chosen
alone on its own class's scans is rewarded for claiming normal brain: one that cannot tell its lesion
from brain and claims a share f of every region scores 2 f|L| / (|L| + f|region|) there, which grows
with f (measured: the subtle CNN claimed 100-370 mL on every held-out phantom).

Validation scans: every network's validation patients and the validation controls (no lesion; Dice
1 when nothing is claimed, else 0). Counting is estimated on samples: all (or `val_voxels`) lesion
voxels of the region, and `val_voxels // 2` of each background stratum (hard: lesion border,
region edge, hypodense mimics; the rest), each sample weighted by its stratum's size over the sample
size, so no scan needs a full dense pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from corelab.model import InputNorm, PatchCNN
from corelab.patches import extract_patches, hard_background, sample_voxels
from corelab.train_data import PreparedScan

__all__ = ["CUTOFF_GRID", "ValidationSample", "validation_sample", "union_dice", "choose_cutoffs"]

CUTOFF_GRID = np.round(np.concatenate([np.arange(0.05, 0.95, 0.01), np.arange(0.95, 0.999, 0.002)]), 4)


@dataclass(frozen=True)
class ValidationSample:
    """Sampled voxels of one validation scan with every network's probability there.

    kind: per sample 0 background, 1 infarct, 2 hemorrhage (reference voxels of the region).
    weight: voxels each sample stands for. probabilities: network name -> `[n]` probabilities.
    """

    patient_id: str
    kind: np.ndarray
    weight: np.ndarray
    probabilities: dict[str, np.ndarray]


def _probabilities(net: PatchCNN, x: np.ndarray, centers: np.ndarray, norm: InputNorm) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for start in range(0, len(centers), 4096):
            batch = extract_patches(x, centers[start:start + 4096], pad_value=norm.pad_value)
            out.append(net.probability(torch.from_numpy(batch)).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def validation_sample(
    scan: PreparedScan,
    networks: dict[str, PatchCNN],
    *,
    val_voxels: int,
    norm: InputNorm,
    rng: np.random.Generator,
) -> ValidationSample:
    """Stratified voxel sample of one scan's region and all networks' probabilities on it."""
    x = scan.x.astype(np.float32)
    lesion = scan.reference & scan.region
    background = scan.region & ~scan.reference
    hard = np.logical_or.reduce(list(hard_background(
        background, foreground=lesion, region=scan.region, hu=x, spacing=scan.spacing).values()))
    centers, kinds, weights = [], [], []
    strata = ((lesion, val_voxels), (background & hard, val_voxels // 2), (background & ~hard, val_voxels // 2))
    for index, (stratum, limit) in enumerate(strata):
        size = int(stratum.sum())
        if not size:
            continue
        chosen = sample_voxels(stratum, min(size, limit), rng=rng)
        centers.append(chosen)
        weights.append(np.full(len(chosen), size / len(chosen)))
        z, y, xx = chosen.T
        kinds.append(np.where(scan.hemorrhage[z, y, xx], 2, 1) if index == 0 else np.zeros(len(chosen), int))
    centers = np.concatenate(centers) if centers else np.zeros((0, 3), np.int64)
    return ValidationSample(
        patient_id=scan.patient_id,
        kind=np.concatenate(kinds).astype(np.int8) if kinds else np.zeros(0, np.int8),
        weight=np.concatenate(weights) if weights else np.zeros(0),
        probabilities={name: _probabilities(net, x, centers, norm) for name, net in networks.items()},
    )


def union_dice(sample: ValidationSample, cutoffs: dict[str, float], *, vary: str | None = None) -> np.ndarray:
    """Dice of the union of the networks in `cutoffs` against the reference on one scan.

    Returns one value, or with `vary` one value per `CUTOFF_GRID` entry for that network (the others
    at their `cutoffs`). No reference lesion: 1 when nothing is claimed, else 0.

    >>> s = ValidationSample("p", np.array([1, 0]), np.array([10.0, 30.0]),
    ...                      {"a": np.array([0.9, 0.2]), "b": np.array([0.1, 0.6])})
    >>> float(union_dice(s, {"a": 0.5, "b": 0.5}))  # claims 10 lesion + 30 brain: 2*10 / (10 + 40)
    0.4
    """
    fixed = np.zeros(len(sample.kind), bool)
    for name, cutoff in cutoffs.items():
        if name != vary:
            fixed |= sample.probabilities[name] >= cutoff
    if vary is None:
        claimed = fixed[None, :]
    else:
        claimed = fixed[None, :] | (sample.probabilities[vary][None, :] >= CUTOFF_GRID[:, None])
    lesion = sample.kind > 0
    tp = (claimed & lesion) @ sample.weight
    all_claimed = claimed @ sample.weight
    n_lesion = float(sample.weight[lesion].sum())
    if n_lesion == 0:
        dice = np.where(all_claimed > 0, 0.0, 1.0)
    else:
        dice = 2 * tp / (n_lesion + all_claimed)
    return dice if vary is not None else dice[0]


def choose_cutoffs(
    samples: list[ValidationSample],
    names: list[str],
    *,
    fixed: dict[str, float] | None = None,
    rounds: int = 4,
    start: float = 0.5,
) -> dict[str, float]:
    """Cut-offs of `names` maximizing the mean union Dice over `samples` (coordinate ascent).

    fixed: networks in the union whose cut-offs are already set (e.g. the hemorrhage CNN when
    choosing the single-CNN baseline's cut-off). Ties go to the lowest cut-off; stops when a round
    changes nothing.
    """
    cutoffs = {**(fixed or {}), **{name: start for name in names}}
    for _ in range(rounds):
        changed = False
        for name in names:
            mean = np.mean([union_dice(sample, cutoffs, vary=name) for sample in samples], axis=0)
            best = float(CUTOFF_GRID[int(np.argmax(mean))])
            changed |= best != cutoffs[name]
            cutoffs[name] = best
        if not changed:
            break
    return {name: cutoffs[name] for name in names}
