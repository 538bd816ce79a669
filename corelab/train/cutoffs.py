"""Smoothing and cut-offs of the CNNs, chosen together for the Dice of their union on validation scans.

In use every CNN runs on every scan, its probability map is smoothed (`corelab.segment`), and the
automated infarct is the union of their claims, scored per patient against the reference (infarct
plus hemorrhage, as the paper). So smoothing and cut-offs are chosen for exactly that, on the dense
maps of every validation scan (every network's validation patients and the validation controls):
for each smoothing sigma in `SMOOTHING_GRID_MM`, the cut-offs that maximize the mean over validation
scans of the union's Dice, one network at a time with the others fixed (coordinate ascent over
`CUTOFF_GRID`, a few rounds); then the sigma whose cut-offs reach the highest mean Dice.

A network chosen alone on its own class's scans would be rewarded for claiming normal brain: one
that cannot tell its lesion from brain and claims a share f of every region scores
2 f|L| / (|L| + f|region|) there, which grows with f. On every network's scans and the controls (Dice 1 when nothing is claimed
on a control, else 0) it is not.

Scored voxels are those of the analysis region (outside it nothing is claimed or scored, as the
paper); counts are exact, over every region voxel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from corelab.segment.dense import dense_probabilities_from_input
from corelab.segment.labels import smooth_probabilities
from corelab.segment.barros2020 import PatchCNN
from corelab.train.cohort import PreparedScan

__all__ = ["CUTOFF_GRID", "SMOOTHING_GRID_MM", "ValidationMaps", "ValidationSample", "validation_maps",
           "validation_sample", "union_dice", "union_claim_ml", "choose_cutoffs", "choose_smoothing_and_cutoffs"]

CUTOFF_GRID = np.round(np.concatenate([np.arange(0.05, 0.95, 0.01), np.arange(0.95, 0.999, 0.002)]), 4)
# In-plane Gaussian sigmas tried for the probability maps (mm); 0 = none, the paper's per-voxel cut.
SMOOTHING_GRID_MM = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0)
_EDGES = np.concatenate([CUTOFF_GRID, [2.0]])  # probabilities are <= 1


@dataclass(frozen=True)
class ValidationMaps:
    """Dense probability maps of one validation scan (its cropped grid), before smoothing.

    kind: int8, 0 background, 1 infarct, 2 hemorrhage, per voxel (reference voxels of the region).
    voxel_ml: the volume of one voxel (mL).
    """

    patient_id: str
    region: np.ndarray
    kind: np.ndarray
    probabilities: dict[str, np.ndarray]
    voxel_ml: float = 0.0


@dataclass(frozen=True)
class ValidationSample:
    """Scored voxels of one validation scan with every network's (smoothed) probability there.

    kind: per voxel 0 background, 1 infarct, 2 hemorrhage. weight: voxels each entry stands for
    (1 for dense maps). probabilities: network name -> `[n]` probabilities. voxel_ml: the volume
    of one voxel (mL), for scoring controls by the volume claimed on them.
    """

    patient_id: str
    kind: np.ndarray
    weight: np.ndarray
    probabilities: dict[str, np.ndarray]
    voxel_ml: float = 0.0


def validation_maps(scan: PreparedScan, networks: Mapping[str, PatchCNN], *, pad_value: float) -> ValidationMaps:
    """Every network's dense probability map on one prepared validation scan (float16 kept)."""
    probabilities = dense_probabilities_from_input(scan.x, scan.region, networks, pad_value=pad_value)
    kind = np.where(scan.reference & scan.region, np.where(scan.hemorrhage, 2, 1), 0).astype(np.int8)
    return ValidationMaps(scan.patient_id, scan.region, kind,
                          {name: prob.astype(np.float16) for name, prob in probabilities.items()},
                          voxel_ml=float(np.prod(scan.spacing)) / 1000.0)


def validation_sample(maps: ValidationMaps, sigma_px: float) -> ValidationSample:
    """The region's voxels of one scan with its maps smoothed by `sigma_px` pixels (`corelab.segment`)."""
    smoothed = smooth_probabilities({name: p.astype(np.float32) for name, p in maps.probabilities.items()},
                                    maps.region, sigma_px)
    inside = maps.region
    return ValidationSample(
        patient_id=maps.patient_id,
        kind=maps.kind[inside],
        weight=np.ones(int(inside.sum())),
        probabilities={name: prob[inside] for name, prob in smoothed.items()},
        voxel_ml=maps.voxel_ml,
    )


def union_dice(sample: ValidationSample, cutoffs: dict[str, float], *, vary: str | None = None,
               control_tolerance_ml: float | None = None) -> np.ndarray:
    """Dice of the union of the networks in `cutoffs` against the reference on one scan.

    Returns one value, or with `vary` one value per `CUTOFF_GRID` entry for that network (the others
    at their `cutoffs`). No reference lesion (a control): 1 when nothing is claimed, else 0; with
    `control_tolerance_ml` T, T / (T + claimed mL), so the size of a false claim counts (the binary
    score charges 1 voxel and a whole lobe alike, and lets a cut-off drift down once every control
    claims something).

    >>> s = ValidationSample("p", np.array([1, 0]), np.array([10.0, 30.0]),
    ...                      {"a": np.array([0.9, 0.2]), "b": np.array([0.1, 0.6])})
    >>> float(union_dice(s, {"a": 0.5, "b": 0.5}))  # claims 10 lesion + 30 brain: 2*10 / (10 + 40)
    0.4
    >>> cut = union_dice(s, {"a": 0.5, "b": 0.5}, vary="b")  # b's cut-off at 0.05, 0.60 (b still claims), 0.61
    >>> [round(float(cut[i]), 2) for i in (0, 55, 56)]
    [0.4, 0.4, 1.0]
    >>> control = ValidationSample("c", np.array([0, 0]), np.array([1.0, 3.0]), {"a": np.array([0.9, 0.2])}, voxel_ml=1.0)
    >>> float(union_dice(control, {"a": 0.5})), float(union_dice(control, {"a": 0.5}, control_tolerance_ml=3.0))
    (0.0, 0.75)
    """
    fixed = np.zeros(len(sample.kind), bool)
    for name, cutoff in cutoffs.items():
        if name != vary:
            fixed |= sample.probabilities[name] >= cutoff
    lesion = sample.kind > 0
    n_lesion = float(sample.weight[lesion].sum())
    if vary is None:
        tp = float(sample.weight[fixed & lesion].sum())
        claimed = float(sample.weight[fixed].sum())
    else:
        # Voxels not yet claimed count for every cut-off at or below their probability.
        free = ~fixed
        tp = float(sample.weight[fixed & lesion].sum()) + _weight_at_or_above(sample, vary, free & lesion)
        claimed = float(sample.weight[fixed].sum()) + _weight_at_or_above(sample, vary, free)
    if n_lesion == 0:
        if control_tolerance_ml is not None:
            if control_tolerance_ml <= 0 or sample.voxel_ml <= 0:
                raise ValueError(f"A graded control score needs a tolerance and a voxel volume above 0 mL, not "
                                 f"{control_tolerance_ml:g} and {sample.voxel_ml:g} (scan {sample.patient_id}).")
            return control_tolerance_ml / (control_tolerance_ml + np.asarray(claimed) * sample.voxel_ml)
        return np.where(np.asarray(claimed) > 0, 0.0, 1.0)
    return 2 * np.asarray(tp) / (n_lesion + np.asarray(claimed))


def union_claim_ml(sample: ValidationSample, cutoffs: dict[str, float]) -> float:
    """The volume (mL) that the union of the networks in `cutoffs` claims on one validation scan."""
    claimed = np.zeros(len(sample.kind), bool)
    for name, cutoff in cutoffs.items():
        claimed |= sample.probabilities[name] >= cutoff
    return float(sample.weight[claimed].sum()) * sample.voxel_ml


def _weight_at_or_above(sample: ValidationSample, name: str, mask: np.ndarray) -> np.ndarray:
    """Per `CUTOFF_GRID` entry: the weight of `mask`'s voxels whose probability is at or above it."""
    counts, _ = np.histogram(sample.probabilities[name][mask], _EDGES, weights=sample.weight[mask])
    return np.cumsum(counts[::-1])[::-1]


def choose_cutoffs(
    samples: list[ValidationSample],
    names: list[str],
    *,
    fixed: dict[str, float] | None = None,
    rounds: int = 4,
    start: float = 0.5,
    control_tolerance_ml: float | None = None,
) -> dict[str, float]:
    """Cut-offs of `names` maximizing the mean union Dice over `samples` (coordinate ascent).

    fixed: networks in the union whose cut-offs are already set (e.g. the hemorrhage CNN when
    choosing the single-CNN baseline's cut-off). Ties go to the lowest cut-off; stops when a round
    changes nothing. control_tolerance_ml: how controls score (`union_dice`).
    """
    cutoffs = {**(fixed or {}), **{name: start for name in names}}
    for _ in range(rounds):
        changed = False
        for name in names:
            mean = np.mean([union_dice(sample, cutoffs, vary=name, control_tolerance_ml=control_tolerance_ml)
                            for sample in samples], axis=0)
            best = float(CUTOFF_GRID[int(np.argmax(mean))])
            changed |= best != cutoffs[name]
            cutoffs[name] = best
        if not changed:
            break
    return {name: cutoffs[name] for name in names}


def choose_smoothing_and_cutoffs(
    maps: list[ValidationMaps],
    names: list[str],
    *,
    pixel_mm: float,
    smoothing_grid_mm: tuple[float, ...] = SMOOTHING_GRID_MM,
    log: Callable[[str], None] = print,
    control_tolerance_ml: float | None = None,
    scans: str = "validation",
) -> tuple[float, dict[str, float], list[ValidationSample]]:
    """The sigma (mm) of `smoothing_grid_mm` and the cut-offs of `names` with the highest mean union
    Dice over the validation scans; also returns the samples at that sigma (for further cut-offs).
    Ties go to the smaller sigma. scans: what the log calls the scans ("validation", "calibration")."""
    best = None
    for sigma_mm in smoothing_grid_mm:
        samples = [validation_sample(m, sigma_mm / pixel_mm) for m in maps]
        cutoffs = choose_cutoffs(samples, names, control_tolerance_ml=control_tolerance_ml)
        score = float(np.mean([union_dice(sample, cutoffs, control_tolerance_ml=control_tolerance_ml)
                               for sample in samples]))
        log(f"smoothing {sigma_mm:g} mm: mean union Dice {score:.3f} on {len(samples)} {scans} scans; cut-offs "
            + ", ".join(f"{name} {value:.3f}" for name, value in cutoffs.items()))
        if best is None or score > best[0]:
            best = (score, sigma_mm, cutoffs, samples)
    _, sigma_mm, cutoffs, samples = best
    return sigma_mm, cutoffs, samples
