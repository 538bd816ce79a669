"""What a network reads: the input volumes its architecture names, normalized, on the analysis grid.

An architecture declares `inputs`, a tuple of volume names, each giving the slices z-1, z, z+1 as
three channels (`corelab.segment.patches`), in that order:

    "hu"      the scan (`InputNorm` applied: brain-referenced shift, clip, scale);
    "mirror"  the scan's mid-sagittal mirror: each voxel's counterpart across the head's own midline
              (`corelab.preprocess.midline`, a rigid registration of the scan to its left-right flip,
              estimated per scan), normalized with the scan's own brain shift, air outside the grid.

One input is a `[z, y, x]` array, several a `[features, z, y, x]` array. Pure functions: no file I/O.
"""

from __future__ import annotations

import numpy as np

from corelab.segment.norm import InputNorm, normalize_hu

__all__ = ["INPUTS", "network_input", "needs_mirror", "mirror_of"]

INPUTS = ("hu", "mirror")


def needs_mirror(inputs: tuple[str, ...]) -> bool:
    """True when an architecture's inputs include the mirror (a registration per scan, ~3 s)."""
    unknown = [name for name in inputs if name not in INPUTS]
    if unknown or not inputs or inputs[0] != "hu":
        raise ValueError(f"Network inputs must start with 'hu' and name only {', '.join(INPUTS)}, not {inputs}.")
    return "mirror" in inputs


def mirror_of(hu: np.ndarray, spacing: tuple[float, float, float] | None) -> np.ndarray:
    """The scan's mid-sagittal mirror in HU (`corelab.preprocess.midline`), air outside the grid."""
    if spacing is None:
        raise ValueError("The mirror input needs the grid's spacing.")
    from corelab.preprocess.midline import estimate_mirror, mirror_image

    hu = np.asarray(hu, dtype=np.float32)
    return mirror_image(hu, spacing, estimate_mirror(hu, spacing), default=-1000.0)


def network_input(
    hu: np.ndarray,
    region: np.ndarray,
    spacing: tuple[float, float, float] | None,
    norm: InputNorm,
    inputs: tuple[str, ...] = ("hu",),
    mirror_hu: np.ndarray | None = None,
) -> np.ndarray:
    """The normalized input volumes of an architecture: `[z, y, x]` for ("hu",), else `[F, z, y, x]`.

    hu: `[z, y, x]` HU on the analysis grid; region: its analysis region (for the brain shift);
    spacing: (z, y, x) mm, needed for the mirror. mirror_hu: the mirror already computed (HU, shaped
    like `hu`), e.g. stored with a test case for a machine without SimpleITK.

    >>> hu = np.full((2, 8, 8), 30.0, np.float32); region = np.ones(hu.shape, bool)
    >>> network_input(hu, region, (5.0, 1.0, 1.0), InputNorm(), ("hu", "mirror")).shape
    (2, 2, 8, 8)
    """
    hu = np.asarray(hu, dtype=np.float32)
    if not needs_mirror(tuple(inputs)):
        return norm.apply(hu, region)
    mirrored = np.asarray(mirror_hu, dtype=np.float32) if mirror_hu is not None else mirror_of(hu, spacing)
    shift = norm.brain_shift(hu, region)  # the scan's own shift, for the scan and its mirror alike

    def normalized(volume: np.ndarray) -> np.ndarray:
        return normalize_hu(volume + np.float32(shift) if shift else volume, clip_low_hu=norm.clip_low_hu,
                            clip_high_hu=norm.clip_high_hu, center_hu=norm.center_hu, scale_hu=norm.scale_hu)

    return np.stack([normalized(hu), normalized(mirrored)])
