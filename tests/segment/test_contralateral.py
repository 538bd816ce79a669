"""The contralateral gate: a claimed part not darker than its mirror across the head's own midline is
dropped (corelab.segment.contralateral), on a head whose midline is found by registration."""


import numpy as np
import pytest

from corelab.segment.contralateral import contralateral_gate, mirror_views, part_contrasts
from corelab.segment.labels import segment

from tests.segment.test_segment import plain_and_with, threshold_net

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACING = (5.0, 1.0, 1.0)


def head(noise_sd: float = 3.0, seed: int = 0):
    """Six slices of a head 7 pixels right of the image centre: brain 32 HU inside a 900 HU skull,
    two dark blobs (23 HU) at mirror positions on both sides, and one dark blob (23 HU) on one side
    only; noise of ``noise_sd`` HU. Returns hu, region, and the three blobs' masks."""
    z, y, x = np.mgrid[0:6, 0:120, 0:130]
    cx, cy = 72, 60
    r = np.hypot((x - cx) / 50.0, (y - cy) / 48.0)
    hu = np.where(r < 1.0, 32.0, -1000.0)
    hu = np.where((r >= 0.9) & (r < 1.0), 900.0, hu)
    blob = lambda bx, by, rad: (np.hypot(x - bx, y - by) < rad) & (z >= 1) & (z <= 4)
    left, right, lone = blob(cx - 22, cy - 12, 11), blob(cx + 22, cy - 12, 11), blob(cx - 18, cy + 16, 11)
    for mask in (left, right, lone):
        hu = np.where(mask, 23.0, hu)
    hu = hu + np.random.default_rng(seed).normal(0.0, noise_sd, hu.shape) * (r < 0.9)
    region = r < 0.88
    return hu.astype(np.float32), region, (left, right, lone)


def test_symmetric_parts_are_dropped_and_a_one_sided_part_is_kept():
    hu, region, (left, right, lone) = head()
    labels = np.zeros(hu.shape, np.uint8)
    labels[left | right] = 2
    labels[lone] = 3
    labels[0, 50:53, 70:73] = 4  # a speck of "hemorrhage" on a slice without blobs
    views = mirror_views(hu, region, SPACING)
    mirror_hu, region_across = views.hu, views.region_across
    _, contrast, share = part_contrasts((labels >= 1) & (labels <= 3), hu, mirror_hu, region_across)
    low, mid, high = sorted(contrast)
    assert abs(low) < 1.5 and abs(mid) < 1.5  # the mirrored pair: as dark as each other
    assert 7.5 < high < 10.5  # the lone blob: 32 - 23 HU across
    assert share.min() > 0.9
    gated = contralateral_gate(labels, hu, mirror_hu, region_across, 2.0)
    assert not gated[left | right].any()
    assert (gated[lone] == 3).all()
    assert (gated[0, 50:53, 70:73] == 4).all()  # hemorrhage is not judged
    assert np.array_equal(contralateral_gate(labels, hu, mirror_hu, region_across, -50.0), labels)


def test_a_part_with_no_brain_across_the_midline_is_kept_not_judged():
    hu = np.full((1, 4, 8), 30.0)
    mirror = hu.copy()  # nothing darker than its mirror
    labels = np.zeros((1, 4, 8), np.uint8)
    labels[0, 1:3, 1:3] = 1
    labels[0, 1:3, 5:7] = 1
    across = np.ones((1, 4, 8), bool)
    across[0, 1:3, 1:3] = False  # the first part's mirror position is CSF or bone
    across[0, 1, 5] = False  # a quarter of the second part's
    gated = contralateral_gate(labels, hu, mirror, across, 2.0)
    assert gated[0, 1:3, 1:3].all() and not gated[0, 1:3, 5:7].any()


def test_a_models_card_turns_the_gate_on_for_segment_and_changes_its_version(tmp_path):
    hu, region, (left, right, lone) = head(noise_sd=0.0)
    hu = np.where(region, hu, np.where(hu > 0, hu, -1000.0))
    nets = {"severe": threshold_net(27.0, above=False), "hemorrhage": threshold_net(80.0, above=True)}
    cutoffs = {"severe": 0.5, "hemorrhage": 0.5}
    plain, gated = plain_and_with(tmp_path, nets, cutoffs, "contralateral_gate_hu", 2.0, "Contralateral gate")
    assert plain.gate_hu is None and gated.gate_hu == 2.0
    ungated_labels = segment(hu, region, plain, spacing=SPACING)
    gated_labels = segment(hu, region, gated, spacing=SPACING)
    inner = lambda mask: mask & np.roll(mask, 5, 1) & np.roll(mask, -5, 1) & np.roll(mask, 5, 2) & np.roll(mask, -5, 2)
    for blob in (left, right, lone):  # without the gate the network claims each blob's core
        assert (ungated_labels[inner(blob)] == 1).all()
    assert (gated_labels[inner(lone)] == 1).all()
    assert not gated_labels[left | right].any()
    assert np.array_equal(gated_labels[~(left | right)], ungated_labels[~(left | right)])


def test_part_contrasts_are_scipys_labelled_medians():
    # The per-part median is read off sorted runs of the compared voxels only; SciPy's labelled median
    # over the whole grid (how it was computed before, ten times slower on a 544 x 544 x 32 grid) must agree.
    from scipy import ndimage

    rng = np.random.default_rng(0)
    empty = even = 0
    for _ in range(20):
        claim = ndimage.binary_opening(rng.random((4, 40, 40)) < 0.5, structure=np.ones((1, 2, 2)))
        hu, mirror = np.rint(rng.normal(30, 5, claim.shape)), np.rint(rng.normal(31, 5, claim.shape))
        across = rng.random(claim.shape) < 0.7
        parts, contrast, share = part_contrasts(claim, hu, mirror, across)
        n = int(parts.max())
        compared = np.where(claim & across, parts, 0)
        counts = np.bincount(compared.ravel(), minlength=n + 1)[1:]
        medians = np.asarray(ndimage.median(mirror - hu, labels=compared, index=np.arange(1, n + 1)), float)
        empty, even = empty + int((counts == 0).sum()), even + int(((counts > 0) & (counts % 2 == 0)).sum())
        np.testing.assert_allclose(contrast, np.where(counts > 0, medians, np.nan), equal_nan=True)
        np.testing.assert_allclose(share, counts / np.bincount(parts.ravel(), minlength=n + 1)[1:])
    assert empty > 0 and even > 0  # parts with nothing across the midline, and even counts, were met
