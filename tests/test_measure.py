"""measure_labels: hand-worked volumes and densities on tiny label maps."""

import math

import numpy as np
import pytest

from corelab.config import hypodensity_class
from corelab.measure import MeasureError, measure_labels


def test_sphere_of_10_ml_measures_its_voxel_count():
    # A ball of radius r on a 1 mm grid: its volume is its voxel count in mm^3 (about 4/3 pi r^3).
    r = 13.4  # 4/3 * pi * 13.4^3 = 10078 mm^3, close to 10 mL
    z, y, x = np.mgrid[-16:17, -16:17, -16:17]
    ball = (x**2 + y**2 + z**2) <= r**2
    labels = ball.astype(np.uint8) * 2
    hu = np.where(ball, 25.0, 35.0).astype(np.float32)
    m = measure_labels(labels, hu, (1.0, 1.0, 1.0))
    assert m.intermediate_ml == pytest.approx(ball.sum() / 1000.0)
    assert m.infarct_ml == pytest.approx(10.0, rel=0.02)
    assert m.severe_ml == m.subtle_ml == m.hemorrhage_ml == 0.0
    assert m.infarct_mean_hu == pytest.approx(25.0)
    assert m.hypodensity_class == "intermediate"


def test_hemorrhage_is_in_the_union_but_not_in_the_mean_density():
    labels = np.zeros((1, 4, 4), np.uint8)
    labels[0, 0, :2] = 1  # 2 voxels severe at 16 HU
    labels[0, 1, :2] = 3  # 2 voxels subtle at 40 HU
    labels[0, 2, 0] = 4  # 1 voxel hemorrhage at 70 HU
    hu = np.zeros_like(labels, dtype=np.float32)
    hu[0, 0, :2] = 16.0
    hu[0, 1, :2] = 40.0
    hu[0, 2, 0] = 70.0
    m = measure_labels(labels, hu, (5.0, 0.5, 0.4))  # 1 voxel = 1 mm^3 = 0.001 mL
    assert m.voxel_counts == (2, 0, 2, 1)
    assert m.voxel_ml == pytest.approx(0.001)
    assert (m.severe_ml, m.subtle_ml, m.hemorrhage_ml) == pytest.approx((0.002, 0.002, 0.001))
    assert m.infarct_ml == pytest.approx(0.005)
    assert m.infarct_mean_hu == pytest.approx(28.0)  # (16 + 16 + 40 + 40) / 4, hemorrhage left out
    assert m.hypodensity_class == "intermediate"


def test_empty_mask_has_zero_volume_and_no_class():
    labels = np.zeros((3, 5, 5), np.uint8)
    m = measure_labels(labels, np.full(labels.shape, 30.0), (5.0, 0.45, 0.45))
    assert m.infarct_ml == 0.0 and m.voxel_counts == (0, 0, 0, 0)
    assert m.infarct_mean_hu is None and m.hypodensity_class == ""


def test_hemorrhage_only_has_volume_but_no_density():
    labels = np.full((1, 2, 2), 4, np.uint8)
    m = measure_labels(labels, np.full(labels.shape, 60.0), (2.0, 1.0, 1.0))
    assert m.infarct_ml == pytest.approx(0.008) and m.hemorrhage_ml == pytest.approx(0.008)
    assert m.infarct_mean_hu is None and m.hypodensity_class == ""


def test_constant_image_one_slice_whole_label():
    labels = np.ones((1, 3, 3), np.uint8)
    m = measure_labels(labels, np.full(labels.shape, 14.0, np.float32), (5.0, 1.0, 1.0))
    assert m.severe_ml == pytest.approx(0.045)
    assert m.hypodensity_class == "severe"  # 14 HU is the closed lower bound of severe


@pytest.mark.parametrize(
    "labels, hu, spacing, words",
    [
        (np.zeros((2, 2, 2), np.uint8), np.zeros((2, 2, 3)), (1.0, 1.0, 1.0), "shape"),
        (np.full((2, 2, 2), 5, np.uint8), np.zeros((2, 2, 2)), (1.0, 1.0, 1.0), "only 0 to 4"),
        (np.zeros((2, 2, 2), np.uint8), np.zeros((2, 2, 2)), (1.0, 0.0, 1.0), "positive"),
    ],
)
def test_unmeasurable_inputs_raise_one_sentence(labels, hu, spacing, words):
    with pytest.raises(MeasureError, match=words):
        measure_labels(labels, hu, spacing)


def test_hypodensity_class_bounds():
    assert [hypodensity_class(v) for v in (13.9, 14.0, 21.99, 22.0, 31.9, 32.0, 44.0, 44.1)] == [
        "", "severe", "severe", "intermediate", "intermediate", "subtle", "subtle", "",
    ]
    assert hypodensity_class(None) == "" and hypodensity_class(math.nan) == ""
