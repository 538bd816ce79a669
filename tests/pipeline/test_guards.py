"""Guards against confident nonsense (`corelab.pipeline.guards`), on a synthetic head on the analysis
grid with claims built by hand: a real one-sided infarct trips nothing; a claim over most of the
brain, a mirrored bilateral claim, a claim along the skull and a scan 40 HU too bright each trip
their own guard and set needs_review; through `corelab run` the flag reaches volumes.csv."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from pipeline_trial import SMALL_METHOD, make_trial
from scipy import ndimage

from corelab.config import GridParams, Method
from corelab.io.volume import Volume
from corelab.pipeline.batch import run_batch
from corelab.pipeline.guards import (
    BRAIN_HU_KIND,
    GUARD_FLAG_KINDS,
    SKULL_KIND,
    SYMMETRY_KIND,
    VOLUME_KIND,
    brain_hu_flag,
    guard_flags,
    implausible_volume_flag,
    skull_claim_flag,
    symmetric_claim_flag,
)
from corelab.pipeline.outputs import REVIEW_FLAG_KINDS, needs_review
from corelab.preprocess import analysis_region, to_analysis_grid
from corelab.preprocess.grid import mask_to_analysis_grid
from corelab.preprocess.midline import estimate_mirror
from corelab.synth.phantom import make_patient

pytestmark = pytest.mark.slow  # batches through corelab run: make test runs them, the quick loop does not

# A coarse analysis grid keeps the head small (32 x 123 x 123) and the mirror fit at about 4 s.
METHOD = Method(grid=GridParams(slice_mm=5.0, pixel_mm=2.0))


@pytest.fixture(scope="module")
def head():
    """Procedural phantom seed 4: a 1260 mL brain with a one-sided 297 mL intermediate infarct
    (the generator's largest kind, 24% of the brain), its truth labels on the analysis grid, and
    the head's mirror, estimated once for the module."""
    patient = make_patient(4, matrix=96)
    grid = to_analysis_grid(patient.volume(), METHOD.grid)
    region = analysis_region(grid.array, grid.spacing, METHOD).region
    truth = mask_to_analysis_grid(Volume(array=patient.labels, spacing=patient.spacing, origin=patient.origin,
                                         direction=patient.direction), grid)
    z, y, x = np.indices(grid.array.shape)
    return SimpleNamespace(hu=grid.array, spacing=grid.spacing, region=region, truth=truth,
                           voxel_ml=grid.voxel_ml, mirror=estimate_mirror(grid.array, grid.spacing),
                           zyx=(z, y, x), centre=np.array(ndimage.center_of_mass(region)))


def _ball(head, dx_mm: float, radius_mm: float) -> np.ndarray:
    """Brain voxels within ``radius_mm`` of the brain's centre moved ``dx_mm`` along x (left-right)."""
    z, y, x = head.zyx
    sz, sy, sx = head.spacing
    cz, cy, cx = head.centre
    inside = ((z - cz) * sz) ** 2 + ((y - cy) * sy) ** 2 + ((x - cx) * sx - dx_mm) ** 2 <= radius_mm**2
    return inside & head.region


def _labels(mask: np.ndarray, value: int = 2) -> np.ndarray:
    return np.where(mask, value, 0).astype(np.uint8)


def _flags(head, labels, hu=None):
    return guard_flags(labels, head.hu if hu is None else hu, head.region, head.spacing, mirror=head.mirror)


def _only(flags, kind):
    assert len(flags) == 1 and flags[0].startswith(kind), flags
    assert needs_review(flags)
    return flags[0]


def test_a_real_one_sided_infarct_of_300_ml_trips_no_guard(head):
    infarct_ml = np.count_nonzero((head.truth >= 1) & (head.truth <= 3)) * head.voxel_ml
    assert 250 < infarct_ml < 320 and 1100 < np.count_nonzero(head.region) * head.voxel_ml < 1400
    flags = _flags(head, head.truth)
    assert flags == () and not needs_review(flags)


def test_a_claim_over_most_of_the_brain_is_an_implausible_volume(head):
    flag = implausible_volume_flag(_labels(head.region), head.region, head.spacing)
    assert flag.startswith(f"{VOLUME_KIND} 1261 mL of infarct claimed, 100% of the 1261 mL brain (guard: above 40%)")
    assert flag in _flags(head, _labels(head.region)) and needs_review([flag])
    # hemorrhage alone is not counted as claimed infarct
    assert implausible_volume_flag(_labels(head.region, 4), head.region, head.spacing) is None


def test_a_mirrored_bilateral_claim_is_flagged_and_one_side_of_it_is_not(head):
    left, right = _ball(head, -30.0, 22.0), _ball(head, 30.0, 22.0)
    flag = _only(_flags(head, _labels(left | right, 3)), SYMMETRY_KIND)
    assert "88 mL of infarct claimed" in flag and "(guard: above 0.50 from 10 mL)" in flag
    dice = float(flag.split("Dice ")[1].split(" ")[0])
    assert dice > 0.7  # two balls placed about the brain's centre of mass, the head's own midline fitted
    assert _flags(head, _labels(right, 3)) == ()  # 44 mL on one side: an infarct's shape


def test_a_claim_along_the_inner_table_is_flagged(head):
    x = head.zyx[2]
    bone = head.hu >= 160
    distance = np.stack([ndimage.distance_transform_edt(~b, sampling=head.spacing[1:]) for b in bone])
    rim = head.region & (distance <= 3.0) & (x < head.centre[2])  # one side, so not symmetric
    flag = _only(_flags(head, _labels(rim, 1)), SKULL_KIND)
    assert flag.startswith(f"{SKULL_KIND} 100% of the 54 mL of infarct claimed lies within 3 mm of bone")


def test_a_scan_40_hu_too_bright_is_outside_the_trained_range(head):
    flag = _only(_flags(head, head.truth, hu=head.hu + 40.0), BRAIN_HU_KIND)
    median = float(np.median(head.hu[head.region])) + 40.0
    assert f"median of {median:.1f} HU (guard: 20-45 HU)" in flag


def test_a_region_whose_hu_spread_is_far_from_brain_is_flagged():
    region = np.ones((2, 10, 10), bool)
    hu = np.where(np.indices(region.shape)[2] < 5, 10.0, 60.0)  # median 35 HU, IQR 50 HU: not only brain
    assert brain_hu_flag(hu, region).startswith(f"{BRAIN_HU_KIND} the brain (outside CSF) has a median of 35.0 HU")
    assert "an IQR of 50.0 HU (guard: at most 25 HU)" in brain_hu_flag(hu, region)
    assert brain_hu_flag(np.full((2, 10, 10), 33.0), region) is None


def test_the_mirror_is_fitted_only_for_claims_of_10_ml_or_more(monkeypatch):
    def unreachable(*args, **kwargs):
        raise RuntimeError("Exception thrown in SimpleITK ImageRegistrationMethod_Execute: too few samples")

    monkeypatch.setattr("corelab.preprocess.midline.estimate_mirror", unreachable)
    hu, labels, spacing = np.full((2, 50, 50), 35.0), np.zeros((2, 50, 50), np.uint8), (5.0, 2.0, 2.0)
    labels[:, :4, :] = 1  # 400 voxels of 0.02 mL: 8 mL, under the floor, so no registration
    assert symmetric_claim_flag(labels, hu, spacing) is None
    labels[:, :5, :] = 1  # 10 mL: the fit runs, fails, and says so (still a review flag)
    flag = symmetric_claim_flag(labels, hu, spacing)
    assert flag.startswith(f"{SYMMETRY_KIND} 10 mL claimed, but the head's midline could not be found")
    assert needs_review([flag])


def test_edge_cases_empty_claim_empty_region_one_slice_and_bad_shapes():
    one = np.full((1, 8, 8), 35.0)
    empty = np.zeros((1, 8, 8), np.uint8)
    assert guard_flags(empty, one, np.ones((1, 8, 8), bool), (5.0, 1.0, 1.0)) == ()
    assert guard_flags(empty, one, np.zeros((1, 8, 8), bool), (5.0, 1.0, 1.0)) == ()  # no brain: nothing to judge
    assert skull_claim_flag(np.ones((1, 8, 8), np.uint8), one, (5.0, 20.0, 20.0)) is None  # no bone in view
    with pytest.raises(ValueError, match="differ in shape"):
        guard_flags(empty, np.zeros((2, 8, 8)), np.ones((1, 8, 8), bool), (5.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        implausible_volume_flag(empty, np.ones((1, 8, 8), bool), (5.0, 0.0, 1.0))


def test_every_guard_kind_sets_needs_review():
    assert set(GUARD_FLAG_KINDS) <= set(REVIEW_FLAG_KINDS)
    for kind in GUARD_FLAG_KINDS:
        assert needs_review([f"{kind} any measured value"])
    assert not needs_review(["Stroke onset is missing, so the imaging window is unknown."])


def test_a_guard_flag_reaches_volumes_csv_through_corelab_run(tmp_path, monkeypatch):
    """The networks replaced by one claiming every brain voxel: the row stays ok, flagged, needs review."""
    import corelab.segment.labels

    def everything(hu, region, models, **kwargs):
        return np.where(region, 2, 0).astype(np.uint8)

    monkeypatch.setattr(corelab.segment.labels, "segment", everything)
    trial = make_trial(tmp_path / "trial", n=1)
    run_batch(trial.manifest, out_dir=tmp_path / "out", models_dir=trial.models, method=SMALL_METHOD,
              progress=False, threads=1)
    row = pd.read_csv(tmp_path / "out" / "volumes.csv", dtype=str, keep_default_na=False).iloc[0]
    assert row["status"] == "ok", row["error"]
    assert f"{VOLUME_KIND} 199 mL of infarct claimed, 100% of the 199 mL brain (guard: above 40%)" in row["flags"]
    assert row["needs_review"] == "true"
