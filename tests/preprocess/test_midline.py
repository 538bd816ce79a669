"""The mid-sagittal mirror on a symmetric head that lies rotated and off-centre in the image."""

import numpy as np
from scipy import ndimage

from corelab.preprocess.midline import estimate_mirror, mirror_image

SPACING = (5.0, 0.9, 0.9)


def _symmetric_head() -> np.ndarray:
    """A head symmetric about column 100: skull, brain, two ventricles, a falx, a symmetric texture."""
    z, y, x = np.mgrid[0:6, 0:200, 0:200].astype(float)
    r = np.hypot((y - 100) / 80, (x - 100) / 65)
    head = np.where(r < 1.0, 35.0, -1000.0)
    head[(r >= 0.9) & (r < 1.0)] = 800.0
    head[(np.abs(x - 100) > 5) & (np.abs(x - 100) < 15) & (np.abs(y - 95) < 25)] = 5.0
    head[np.abs(x - 100) < 1] = 60.0
    back = (y > 140) & (r < 0.9)
    head[back] += 6 * np.cos((x[back] - 100) / 10)
    return head


def _posed(head: np.ndarray, degrees: float, shift_px: tuple[float, float]) -> np.ndarray:
    turned = ndimage.rotate(head, degrees, axes=(1, 2), reshape=False, order=1, cval=-1000.0)
    return ndimage.shift(turned, (0, *shift_px), order=1, cval=-1000.0)


def test_mirror_of_a_tilted_off_centre_head_matches_the_head_and_shows_a_one_sided_lesion():
    head = _posed(_symmetric_head(), 9.0, (3.0, 7.0))
    lesion = np.zeros(head.shape, bool)
    lesion[:, 60:90, 50:80] = True
    brain = (head > 20) & (head < 50)
    scan = head.copy()
    scan[lesion & brain] -= 12.0  # a 12 HU hypodensity on one side only
    scan += np.random.default_rng(0).normal(0.0, 3.0, scan.shape)

    mirror = mirror_image(scan, SPACING, estimate_mirror(scan, SPACING))

    normal = brain & ~lesion
    # Noise of 3 HU in both images: |difference| has a median near 2.9 HU when aligned, and an
    # aligned mirror puts few brain voxels on CSF, falx or skull (differences over 15 HU).
    assert np.median(np.abs(scan - mirror)[normal]) < 4.0
    off = lambda other: float(np.mean(np.abs(scan - other)[normal] > 15.0))  # noqa: E731
    assert off(mirror) < 0.08 and off(scan[:, :, ::-1]) > 4 * off(mirror)  # the image's own flip is not the head's
    darker = np.median((mirror - scan)[lesion & brain])
    assert 8.0 < darker < 16.0  # the lesion is about 12 HU darker than its mirror, and only there


def test_a_centred_straight_head_mirrors_onto_its_own_flip():
    head = _symmetric_head()
    mirror = mirror_image(head, SPACING, estimate_mirror(head, SPACING))
    brain = (head > 20) & (head < 50)
    assert np.median(np.abs(mirror - head[:, :, ::-1])[brain]) < 1.0


def test_a_one_slice_scan_gets_its_mirror_too():
    """A partial scan of one analysis slice (thinner than ITK's pyramid allows) is registered with its
    edge slice repeated, in its own frame: the mirror still lands on the off-centre head."""
    head = _posed(_symmetric_head(), 9.0, (3.0, 7.0))[2:3]
    mirror = mirror_image(head, SPACING, estimate_mirror(head, SPACING))
    brain = (head > 20) & (head < 50)
    assert np.mean(np.abs(head - mirror)[brain] > 15.0) < 0.08
