"""The benchmark's untrained floor (benchmarks/mirror_rule.py) finds a one-sided hypodensity."""

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from mirror_rule import mirror_rule  # noqa: E402

SPACING = (5.0, 0.9, 0.9)


def _head() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A symmetric brain (30 HU) tilted 7 degrees, a 12 HU darker lesion on one side, 2 HU noise."""
    z, y, x = np.mgrid[0:5, 0:160, 0:160].astype(float)
    r = np.hypot((y - 80) / 62, (x - 80) / 50)
    head = np.where(r < 1.0, 30.0, -1000.0)
    head[(r >= 0.88) & (r < 1.0)] = 800.0
    head[(np.abs(x - 80) > 4) & (np.abs(x - 80) < 12) & (np.abs(y - 75) < 20)] = 5.0  # ventricles
    head = ndimage.rotate(head, 7.0, axes=(1, 2), reshape=False, order=1, cval=-1000.0)
    region = (head > 20) & (head < 40)
    lesion = np.zeros(head.shape, bool)
    lesion[:, 40:70, 35:60] = True
    lesion &= region
    scan = head + np.random.default_rng(1).normal(0.0, 2.0, head.shape)
    scan[lesion] -= 12.0
    return scan, ndimage.binary_erosion(region, iterations=2), lesion


def test_the_rule_marks_the_one_sided_lesion_and_little_else():
    scan, region, lesion = _head()
    marked = mirror_rule(scan, SPACING, region)
    truth = lesion & region
    dice = 2 * (marked & truth).sum() / (marked.sum() + truth.sum())
    assert dice > 0.7
    assert (marked & ~ndimage.binary_dilation(truth, iterations=6)).sum() < 0.05 * truth.sum()


def test_a_symmetric_brain_gets_nearly_nothing():
    scan, region, lesion = _head()
    scan[lesion] += 12.0  # healed: symmetric again
    assert mirror_rule(scan, SPACING, region).sum() < 0.01 * region.sum()
