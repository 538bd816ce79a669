"""Guards against confident nonsense: checks of a segmentation result that no real infarct fails.

A network can claim hundreds of mL of infarct on a normal brain, or trace the ventricles, the
inner table of the skull or a whole scan that reads too bright. Such a scan still comes out ``ok``;
each guard that trips adds one flag sentence that names what it measured and its threshold, and
starts with a kind of `GUARD_FLAG_KINDS`, which `corelab.pipeline.outputs.needs_review` counts.

Pure functions on arrays of the analysis grid: ``labels`` uint8 [z, y, x] (0 background, 1-3
infarct classes, 4 hemorrhage), ``hu`` float [z, y, x] HU, ``region`` bool [z, y, x] (the
analysis region: intracranial minus CSF minus bone, "the brain"), ``spacing`` (z, y, x) in mm.
The claim a guard looks at is the infarct, labels 1-3; hemorrhage (label 4) is left out, as its
own network answers a different question (fresh blood reads 50-90 HU, a different contrast).
Each threshold's reason is in its constant's comment; README ("Guards") lists them.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "GUARD_FLAG_KINDS",
    "IMPLAUSIBLE_BRAIN_SHARE",
    "SYMMETRY_MAX_DICE",
    "SYMMETRY_MIN_ML",
    "BRAIN_MEDIAN_RANGE_HU",
    "BRAIN_IQR_MAX_HU",
    "SKULL_HU",
    "SKULL_DISTANCE_MM",
    "SKULL_MAX_SHARE",
    "SKULL_MIN_ML",
    "implausible_volume_flag",
    "symmetric_claim_flag",
    "brain_hu_flag",
    "skull_claim_flag",
    "guard_flags",
]

# The words each guard's sentence starts with, and what it means (needs_review counts them).
VOLUME_KIND = "Implausible volume:"
SYMMETRY_KIND = "Symmetric claim:"
BRAIN_HU_KIND = "Brain HU out of range:"
SKULL_KIND = "Claim at the skull:"
GUARD_FLAG_KINDS: dict[str, str] = {
    VOLUME_KIND: "the claimed infarct is a share of the brain no infarct reaches",
    SYMMETRY_KIND: "the claim mirrors itself across the midline, as anatomy does and infarcts do not",
    BRAIN_HU_KIND: "the brain's HU lie outside what the models were trained on (calibration, contrast)",
    SKULL_KIND: "most of the claim lies against the skull (partial volume, beam hardening)",
}

# A malignant MCA infarct reaches about 300 mL of a 1200 mL brain (25%); the generators draw at
# most 300 mL (the paper's volumes clipped), 36% of their smallest brain (830 mL), and their true
# infarcts reached 27%. Above 40% of the brain, a claim is not an infarct.
IMPLAUSIBLE_BRAIN_SHARE = 0.40

# Infarcts are one-sided: a vascular territory lies on one side of the midline, and the generators'
# true infarcts overlap their own mirror with Dice <= 0.16. A claim that overlaps its mirror with
# Dice above 0.5 traces something both hemispheres have (ventricles, leukoaraiosis, beam hardening).
# The check registers the scan's flip onto itself (`corelab.preprocess.midline`, about 3 s on the
# 0.45 mm grid), so it runs only on claims of at least 10 mL, below which a wrong claim changes a
# trial's volumes little and a mirror fit on few voxels says little.
SYMMETRY_MAX_DICE = 0.5
SYMMETRY_MIN_ML = 10.0

# Median HU of a normal brain outside CSF on a calibrated scanner: about 30-35 (grey matter 35-40,
# white matter 25-30; the generators' 27-39 HU with their +-3 HU calibration offsets). Outside
# 20-45 HU the scanner's calibration is off or the scan had contrast, and the networks see HU they
# were not trained on. The model card records no HU range of its training scans, so these stated
# bounds are used; a caller with such a range passes it as ``median_range_hu``.
BRAIN_MEDIAN_RANGE_HU = (20.0, 45.0)
# Interquartile range of the region's HU: 6.6-13.6 HU on the generators (grey/white contrast plus
# 2-6 HU noise). Above 25 HU the region holds bone, air, streaks or contrast, not only brain.
BRAIN_IQR_MAX_HU = 25.0

# Bone as the method defines it (DESIGN "Method": HU > 160); a claimed voxel within 3 mm in-plane
# of bone sits against the inner table, where partial volume with the skull and beam hardening make
# brain read wrong. About 16% of a brain lies that close to its skull, and at most 16% of the
# generators' true infarcts; a claim over half of which lies there follows the skull, not a
# territory. Small cortical infarcts can lie mostly against the skull, hence the 5 mL floor.
SKULL_HU = 160.0
SKULL_DISTANCE_MM = 3.0
SKULL_MAX_SHARE = 0.5
SKULL_MIN_ML = 5.0

_CHECK = "check before use."


def _checked(labels: np.ndarray, spacing, *others: np.ndarray) -> tuple[np.ndarray, float]:
    """The infarct claim (labels 1-3, bool) and the voxel volume (mL), after shape checks."""
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"The labels must be a 3D array [z, y, x], not of shape {labels.shape}.")
    for other in others:
        if np.shape(other) != labels.shape:
            raise ValueError(f"The arrays differ in shape: labels {labels.shape}, another {np.shape(other)}.")
    if len(spacing) != 3 or min(float(s) for s in spacing) <= 0:
        raise ValueError(f"The spacing must be three positive lengths (z, y, x) in mm, not {tuple(spacing)}.")
    return (labels >= 1) & (labels <= 3), float(np.prod([float(s) for s in spacing])) / 1000.0


def implausible_volume_flag(labels: np.ndarray, region: np.ndarray, spacing, *,
                            max_share: float = IMPLAUSIBLE_BRAIN_SHARE) -> str | None:
    """A flag when the claimed infarct (labels 1-3) is more than ``max_share`` of the region (the brain).

    >>> region = np.ones((2, 10, 10), bool); labels = np.zeros((2, 10, 10), np.uint8); labels[:, :5] = 2
    >>> implausible_volume_flag(labels, region, (5.0, 2.0, 2.0))
    'Implausible volume: 2 mL of infarct claimed, 50% of the 4 mL brain (guard: above 40%); check before use.'
    """
    claim, voxel_ml = _checked(labels, spacing, region)
    brain = int(np.count_nonzero(region))
    claimed = int(np.count_nonzero(claim))
    if brain == 0 or claimed <= max_share * brain:
        return None
    return (f"{VOLUME_KIND} {claimed * voxel_ml:.0f} mL of infarct claimed, {100 * claimed / brain:.0f}% of the "
            f"{brain * voxel_ml:.0f} mL brain (guard: above {100 * max_share:.0f}%); {_CHECK}")


def symmetric_claim_flag(labels: np.ndarray, hu: np.ndarray, spacing, *, mirror=None,
                         min_ml: float = SYMMETRY_MIN_ML, max_dice: float = SYMMETRY_MAX_DICE) -> str | None:
    """A flag when a claim of at least ``min_ml`` mL overlaps its own left-right mirror across the
    head's midline with Dice above ``max_dice``.

    mirror: a `corelab.preprocess.midline.Mirror` of ``hu``; estimated here when None, and only
    when the claim reaches ``min_ml`` (the registration costs about 3 s per scan). The claim is
    mirrored by linear interpolation of the mask, kept where above 0.5.
    """
    from corelab.preprocess.midline import estimate_mirror, mirror_image

    claim, voxel_ml = _checked(labels, spacing, hu)
    claimed_ml = int(np.count_nonzero(claim)) * voxel_ml
    if claimed_ml < min_ml:
        return None
    if mirror is None:
        try:
            mirror = estimate_mirror(hu, spacing)
        except RuntimeError as error:  # SimpleITK's registration failing: say the check did not run
            reason = " ".join(str(error).split())[:120]
            return (f"{SYMMETRY_KIND} {claimed_ml:.0f} mL claimed, but the head's midline could not be found "
                    f"({reason}), so whether the claim mirrors itself was not checked; {_CHECK}")
    mirrored = mirror_image(claim.astype(np.float32), spacing, mirror, default=0.0) > 0.5
    dice = 2.0 * np.count_nonzero(claim & mirrored) / (np.count_nonzero(claim) + np.count_nonzero(mirrored))
    if dice <= max_dice:
        return None
    return (f"{SYMMETRY_KIND} {claimed_ml:.0f} mL of infarct claimed, overlapping its own mirror across the "
            f"midline with Dice {dice:.2f} (guard: above {max_dice:.2f} from {min_ml:g} mL); infarcts are "
            f"one-sided, a mirrored claim is usually anatomy (ventricles, leukoaraiosis) or beam hardening; {_CHECK}")


def brain_hu_flag(hu: np.ndarray, region: np.ndarray, *, median_range_hu: tuple[float, float] = BRAIN_MEDIAN_RANGE_HU,
                  max_iqr_hu: float = BRAIN_IQR_MAX_HU) -> str | None:
    """A flag when the region's median HU lies outside ``median_range_hu`` or its interquartile
    range exceeds ``max_iqr_hu`` (the median as `corelab.segment.norm.brain_median` computes it).

    >>> hu = np.full((1, 4, 4), 75.0); region = np.ones((1, 4, 4), bool)
    >>> brain_hu_flag(hu, region)[:95]
    'Brain HU out of range: the brain (outside CSF) has a median of 75.0 HU (guard: 20-45 HU), and a'
    >>> brain_hu_flag(hu - 40.0, region) is None
    True
    """
    from corelab.segment.norm import brain_median

    if np.shape(hu) != np.shape(region):
        raise ValueError(f"The arrays differ in shape: hu {np.shape(hu)}, region {np.shape(region)}.")
    median = brain_median(hu, region)
    if median is None:
        return None
    q1, q3 = np.percentile(np.asarray(hu)[np.asarray(region, dtype=bool)], [25, 75])
    iqr = float(q3 - q1)
    low, high = median_range_hu
    if low <= median <= high and iqr <= max_iqr_hu:
        return None
    return (f"{BRAIN_HU_KIND} the brain (outside CSF) has a median of {median:.1f} HU (guard: {low:g}-{high:g} HU), "
            f"and an IQR of {iqr:.1f} HU (guard: at most {max_iqr_hu:g} HU), outside what the models were trained on "
            f"(scanner calibration or a contrast scan); {_CHECK}")


def _distance_to_bone_mm(hu: np.ndarray, spacing, slices: np.ndarray, bone_hu: float) -> np.ndarray:
    """In-plane distance (mm) of each voxel to the nearest bone voxel of its own slice, on the slices
    listed (infinity elsewhere and on slices without bone)."""
    from scipy import ndimage

    out = np.full(np.shape(hu), np.inf, dtype=np.float32)
    for k in slices:
        bone = np.asarray(hu[k]) >= bone_hu
        if bone.any():
            out[k] = ndimage.distance_transform_edt(~bone, sampling=(float(spacing[1]), float(spacing[2])))
    return out


def skull_claim_flag(labels: np.ndarray, hu: np.ndarray, spacing, *, bone_hu: float = SKULL_HU,
                     distance_mm: float = SKULL_DISTANCE_MM, max_share: float = SKULL_MAX_SHARE,
                     min_ml: float = SKULL_MIN_ML) -> str | None:
    """A flag when a claim of at least ``min_ml`` mL lies more than ``max_share`` within
    ``distance_mm`` (in-plane) of bone (HU >= ``bone_hu``).

    >>> hu = np.full((2, 40, 40), 35.0); hu[:, :, :2] = 1000.0  # a skull along one edge
    >>> labels = np.zeros((2, 40, 40), np.uint8); labels[:, :, 2:4] = 1  # a claim along it
    >>> skull_claim_flag(labels, hu, (5.0, 1.0, 1.0), min_ml=0.5)
    'Claim at the skull: 100% of the 1 mL of infarct claimed lies within 3 mm of bone (160 HU or more; guard: above 50% from 0.5 mL), where partial volume and beam hardening at the inner table mimic hypodensity; check before use.'
    """
    claim, voxel_ml = _checked(labels, spacing, hu)
    claimed = int(np.count_nonzero(claim))
    if claimed * voxel_ml < min_ml:
        return None
    slices = np.flatnonzero(claim.any(axis=(1, 2)))
    near = claim & (_distance_to_bone_mm(hu, spacing, slices, bone_hu) <= distance_mm)
    share = np.count_nonzero(near) / claimed
    if share <= max_share:
        return None
    return (f"{SKULL_KIND} {100 * share:.0f}% of the {claimed * voxel_ml:.0f} mL of infarct claimed lies within "
            f"{distance_mm:g} mm of bone ({bone_hu:g} HU or more; guard: above {100 * max_share:.0f}% from {min_ml:g} mL), "
            f"where partial volume and beam hardening at the inner table mimic hypodensity; {_CHECK}")


def guard_flags(labels: np.ndarray, hu: np.ndarray, region: np.ndarray, spacing, *, mirror=None,
                median_range_hu: tuple[float, float] = BRAIN_MEDIAN_RANGE_HU) -> tuple[str, ...]:
    """Every guard's flag for one scan's result on the analysis grid, in a fixed order (volume,
    symmetry, brain HU, skull); () when none trips. mirror: the scan's
    `corelab.preprocess.midline.Mirror` when one is at hand; else it is estimated, and only for
    claims of at least `SYMMETRY_MIN_ML`.

    >>> z = np.zeros((3, 8, 8)); guard_flags(z.astype(np.uint8), z + 35.0, z == 0, (5.0, 1.0, 1.0))
    ()
    """
    flags = (
        implausible_volume_flag(labels, region, spacing),
        symmetric_claim_flag(labels, hu, spacing, mirror=mirror),
        brain_hu_flag(hu, region, median_range_hu=median_range_hu),
        skull_claim_flag(labels, hu, spacing),
    )
    return tuple(flag for flag in flags if flag)
