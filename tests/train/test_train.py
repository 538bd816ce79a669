"""train_models on a tiny on-disk cohort, the cohort errors, and the pure training steps."""

import json
from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from corelab.errors import CohortError
from corelab.segment.card import ChecksumError
from corelab.segment.folder import load_models
from corelab.segment.labels import segment
from corelab.train.cohort import (
    GridMismatchError,
    MissingMaskError,
    TooFewScansError,
    prepare_scan,
    split_cohort,
)
from corelab.train.cutoffs import (
    ValidationSample,
    choose_cutoffs,
    choose_smoothing_and_cutoffs,
    union_claim_ml,
    union_dice,
    validation_maps,
    validation_sample,
)
from corelab.train.patches import hard_background
from corelab.train.recipe import TrainOptions, fit_network, train_models
from train_cohort import CLASS_HU, SPACING, make_cohort, phantom

TINY = TrainOptions(patches_per_class=150, epochs=2, batch_size=64, threads=1, smoothing_grid_mm=(0.0, 1.0))

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KINDS = ["severe", "severe", "intermediate", "intermediate", "subtle", "subtle"]


@pytest.mark.slow
def test_train_models_writes_loadable_checked_folders(tmp_path):
    cohort = make_cohort(tmp_path / "cohort", KINDS + ["none"], hemorrhage=(0, 2, 3, 5), no_truth=(5,))
    lines = []
    summary = train_models(cohort, tmp_path / "models", single=True, seed=1, options=TINY, log=lines.append)
    assert any("epoch 2/2" in line for line in lines)  # progress was reported

    models = load_models(tmp_path / "models")
    assert set(models.networks) == {"severe", "intermediate", "subtle", "hemorrhage"}
    assert all(0.0 < c < 1.0 for c in models.cutoffs.values())
    assert summary.cutoffs["severe"] == models.cutoffs["severe"]
    card = json.loads((tmp_path / "models" / "card.json").read_text())
    assert card["training"]["seed"] == 1 and card["training"]["n_scans"] == 7
    # the folder's name, not this machine's path; no generator record for a cohort not made by synth
    assert card["training"]["cohort"] == "cohort" and card["training"]["cohort_generator"] is None
    assert card["training"]["classes"] == {"severe": 2, "intermediate": 2, "subtle": 2}
    assert card["training"]["hemorrhage_labels"] == {"truth": 6, "threshold": 1}
    assert card["training"]["validation_controls"] == ["P06"]  # the one control validates every CNN
    # one validation scan per class (a quarter, at least one); validation never trains the same CNN
    for name in ("severe", "intermediate", "subtle", "hemorrhage"):
        val, train = card["training"]["validation_scans"][name], card["training"]["train_scans"][name]
        assert len(val) >= 1 and len(train) >= 1 and not set(val) & set(train)

    baseline = load_models(tmp_path / "models" / "single")
    assert baseline.is_single and set(baseline.networks) == {"single", "hemorrhage"}

    hu, _ = phantom("severe", rng=np.random.default_rng(9), hemorrhage=False)
    region = np.zeros(hu.shape, bool)
    region[3:9, 30:126, 30:126] = True
    labels = segment(hu, region, models)
    assert labels.shape == hu.shape and not labels[~region].any() and labels.max() <= 4

    (tmp_path / "models" / "severe.pt").write_bytes(b"not the trained weights")
    with pytest.raises(ChecksumError):
        load_models(tmp_path / "models")


@pytest.mark.slow
def test_train_paper_writes_the_replication_baseline_card(tmp_path):
    """`corelab train --paper`: absolute HU, no smoothing, no calibration offsets, as the paper."""
    from typer.testing import CliRunner

    from corelab.cli import app

    cohort = make_cohort(tmp_path / "cohort", KINDS + ["none"], hemorrhage=(0, 2, 3, 5))
    result = CliRunner().invoke(app, ["train", str(cohort), "--out", str(tmp_path / "paper"), "--paper",
                                      "--patches-per-class", "150", "--epochs", "1", "--val-scans", "1"])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "paper" / "card.json").read_text())
    assert card["hu_input"]["brain_reference_hu"] is None and card["postprocess"]["smoothing_mm"] == 0.0
    assert card["architecture"]["name"] == "barros2020-patch-cnn"
    assert "calibration" not in card["training"]["augmentation"]
    assert "contralateral_gate_hu" not in card["postprocess"] and "hemorrhage_beside_mm" not in card["postprocess"]
    assert load_models(tmp_path / "paper").norm.brain_reference_hu is None


def test_cohort_without_subtle_infarcts_is_a_named_error(tmp_path):
    cohort = make_cohort(tmp_path, ["severe", "severe", "intermediate", "intermediate"], hemorrhage=(0, 2))
    with pytest.raises(TooFewScansError, match="subtle"):
        train_models(cohort, tmp_path / "models", options=TINY, log=lambda _: None)
    assert not (tmp_path / "models").exists()


def test_missing_mask_and_a_read_off_the_scan_are_named_errors(tmp_path):
    cohort = make_cohort(tmp_path / "a", ["severe", "subtle"])
    (cohort / "manual" / "P01.nii.gz").unlink()
    with pytest.raises(MissingMaskError, match="P01"):
        train_models(cohort, tmp_path / "m", options=TINY, log=lambda _: None)
    cohort = make_cohort(tmp_path / "b", ["severe", "subtle"])
    elsewhere = sitk.GetImageFromArray(np.ones((12, 100, 156), np.uint8))  # a read on another grid is
    elsewhere.SetOrigin((0.0, 0.0, 5000.0))  # resampled onto the scan, unless it lies off the scan
    sitk.WriteImage(elsewhere, str(cohort / "manual" / "P00.nii.gz"))
    with pytest.raises(GridMismatchError, match="P00.*outside the scan"):
        train_models(cohort, tmp_path / "m", options=TINY, log=lambda _: None)
    assert issubclass(GridMismatchError, CohortError) and issubclass(MissingMaskError, CohortError)


def test_prepare_scan_hemorrhage_rule_class_and_crop():
    hu = np.full((3, 60, 60), 45.0, np.float32)
    region = np.zeros(hu.shape, bool)
    region[:, 20:40, 20:40] = True
    reference = np.zeros(hu.shape, bool)
    reference[1, 25:30, 25:30] = True
    hu[1, 25:30, 25:28] = 20.0  # 15 infarct voxels at 20 HU
    hu[1, 25:30, 28:30] = 70.0  # 10 blood voxels
    scan = prepare_scan("p", hu, SPACING, region, reference, None)
    assert scan.hemorrhage_source == "threshold" and scan.hemorrhage.sum() == 10
    assert scan.mean_hu == pytest.approx(20.0) and scan.hypodensity == "severe"
    assert scan.x.shape == (3, 52, 52)  # region 20 voxels + 16 margin on each side, clipped to the image
    truth = np.zeros(hu.shape, bool)
    with_truth = prepare_scan("p", hu, SPACING, region, reference, truth)
    assert with_truth.hemorrhage_source == "truth" and with_truth.mean_hu == pytest.approx((15 * 20 + 10 * 70) / 25)


def _scan(pid: str, mean_hu: float, bleed: bool):
    hu = np.full((1, 40, 40), 45.0, np.float32)
    reference = np.zeros(hu.shape, bool)
    reference[0, 10:20, 10:20] = True
    hu[reference] = mean_hu
    blood = np.zeros(hu.shape, bool)
    blood[0, 12, 12] = bleed
    return prepare_scan(pid, hu, SPACING, np.ones(hu.shape, bool), reference, blood)


def test_split_sizes_follow_the_stated_rule():
    scans = [_scan(f"s{i}", 18.0, i < 3) for i in range(9)] + [_scan(f"i{i}", 27.0, False) for i in range(2)]
    scans += [_scan(f"u{i}", 38.0, False) for i in range(3)] + [_scan("x", 60.0, False)]
    split = split_cohort(scans, val_scans=20, rng=np.random.default_rng(0))
    assert (len(split.val["severe"]), len(split.train["severe"])) == (2, 7)  # 9 // 4 = 2
    assert (len(split.val["intermediate"]), len(split.val["subtle"])) == (1, 1)
    assert len(split.train["hemorrhage"]) + len(split.val["hemorrhage"]) == 3
    assert "x" in split.background and "x" not in split.train["single"]
    capped = split_cohort(scans, val_scans=1, rng=np.random.default_rng(0))
    assert len(capped.val["severe"]) == 1


def test_controls_validate_every_network_and_the_rest_give_background():
    scans = [_scan(f"s{i}", 18.0, i < 2) for i in range(4)] + [_scan(f"u{i}", 38.0, False) for i in range(2)]
    scans += [_scan(f"i{i}", 27.0, False) for i in range(2)]
    controls = [prepare_scan(f"c{i}", np.full((1, 40, 40), 40.0, np.float32), SPACING, np.ones((1, 40, 40), bool),
                             np.zeros((1, 40, 40), bool), None) for i in range(5)]
    split = split_cohort(scans + controls, val_scans=20, rng=np.random.default_rng(0))
    assert len(split.controls) == 1 and split.controls[0].startswith("c")  # 5 // 4 = 1
    assert split.controls[0] not in split.background
    assert sum(pid.startswith("c") for pid in split.background) == 4
    assert not any(split.controls[0] in ids for ids in (*split.train.values(), *split.val.values()))
    one = split_cohort(scans + controls[:1], val_scans=20, rng=np.random.default_rng(0))
    assert one.controls == ("c0",) and "c0" not in one.background
    assert split_cohort(scans, val_scans=20, rng=np.random.default_rng(0)).controls == ()


def _square_lesion_scan():
    """A 3 x 80 x 80 scan at 45 +- 2 HU with a 30 x 30 severe lesion (18 HU) as its reference."""
    rng = np.random.default_rng(0)
    hu = np.full((3, 80, 80), 45.0, np.float32) + rng.normal(0, 2, (3, 80, 80)).astype(np.float32)
    reference = np.zeros(hu.shape, bool)
    reference[:, 25:55, 25:55] = True
    hu[reference] = 18.0
    return hu, prepare_scan("p", hu, SPACING, np.ones(hu.shape, bool), reference, np.zeros(hu.shape, bool))


def test_background_ratio_sets_the_number_of_background_patches():
    hu, scan = _square_lesion_scan()
    other = prepare_scan("o", np.full(hu.shape, 40.0, np.float32), SPACING, np.ones(hu.shape, bool),
                         np.zeros(hu.shape, bool), None)
    from corelab.train.recipe import network_patches

    options = replace(TINY, background_ratio=3.0, other_background_fraction=0.25)
    _, labels = network_patches("severe", [scan], [other], options, rng=np.random.default_rng(1))
    assert labels.sum() == 150 and (labels == 0).sum() == 450


def test_hard_background_strata_hand_worked():
    background = np.ones((1, 30, 30), bool)
    foreground = np.zeros_like(background)
    foreground[0, 10:15, 10:15] = True
    background &= ~foreground
    region = np.zeros_like(background)
    region[0, 2:28, 2:28] = True
    hu = np.full(background.shape, 40.0, np.float32)
    hu[0, 22:27, 3:8] = 10.0
    masks = hard_background(background, foreground=foreground, region=region, hu=hu, spacing=(5.0, 1.0, 1.0),
                            border_mm=2.0, edge_mm=1.0, mimic_percentile=3.0)
    assert masks["border"][0, 10:15, 15:17].all() and not masks["border"][0, 10:15, 17].any()
    assert masks["edge"][0, 2, 10] and not masks["edge"][0, 3, 10] and not masks["edge"][0, 12, 12]
    assert masks["mimic"][0, 24, 5] and not masks["mimic"][0, 15, 20]


def test_fit_is_seeded_and_cutoff_separates_a_learnable_lesion():
    hu, scan = _square_lesion_scan()
    from corelab.train.recipe import network_patches

    patches, labels = network_patches("severe", [scan], [], TINY, rng=np.random.default_rng(1))
    assert labels.sum() == TINY.patches_per_class and (labels == 0).sum() == TINY.patches_per_class
    a = fit_network(patches, labels, TINY, seed=3, log=lambda _: None)
    b = fit_network(patches, labels, TINY, seed=3, log=lambda _: None)
    x = torch.from_numpy(patches[:8].astype(np.float32))
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    sample = validation_sample(validation_maps(scan, {"severe": a}, pad_value=TINY.norm.pad_value), 0.0)
    cutoffs = choose_cutoffs([sample], ["severe"])
    # Every voxel counts, the scan's air-padded border too (never seen in 150 training patches):
    # claiming everything would score 2 * 2700 / (2700 + 19200) = 0.25.
    assert 0.0 < cutoffs["severe"] < 1.0 and union_dice(sample, cutoffs) > 0.7


def test_cutoffs_are_chosen_together_for_the_dice_of_the_union_hand_worked():
    """Two scans of samples (kind 1 = lesion, weight = voxels each stands for).
    Severe cut-off c (intermediate finds B's lesion, claims nothing on A):
      c <= 0.70: A claims 10+10+50 -> 40/90 = 0.44; B: severe adds 100 -> 40/140 = 0.29
      0.70 < c <= 0.75: A 1.0, B 0.29 -> 0.64;  0.75 < c <= 0.80: A 1.0, B 1.0 -> 1.0
      0.80 < c <= 0.90: A 20/30 = 0.67, B 1.0 -> 0.83.  Best: the lowest grid value above 0.75.
    Intermediate: <= 0.20 claims all of A; (0.20, 0.90] finds B's lesion only -> lowest is 0.21."""
    a = ValidationSample("A", np.array([1, 1, 0, 0]), np.array([10.0, 10.0, 50.0, 50.0]),
                         {"severe": np.array([0.9, 0.8, 0.7, 0.1]), "intermediate": np.full(4, 0.2)})
    b = ValidationSample("B", np.array([1, 0]), np.array([20.0, 100.0]),
                         {"severe": np.array([0.3, 0.75]), "intermediate": np.array([0.9, 0.1])})
    cutoffs = choose_cutoffs([a, b], ["severe", "intermediate"])
    assert cutoffs == {"severe": 0.76, "intermediate": 0.21}
    assert union_dice(a, cutoffs) == pytest.approx(1.0) and union_dice(b, cutoffs) == pytest.approx(1.0)
    assert union_dice(b, {"severe": 0.7, "intermediate": 0.21}) == pytest.approx(40 / 140)


def test_a_control_switches_off_a_network_that_cannot_tell_lesion_from_brain():
    """A real PatchCNN whose output layer is zeroed says 0.555 for every voxel. Hand-worked
    (region 3x80x80 = 19200 voxels, lesion 3x30x30 = 2700): on its own scan alone, claiming
    everything is best, 2*2700 / (2700 + 19200) = 0.2466 (the old per-network rule's trap). With a
    control (Dice 1 when nothing is claimed, else 0): (0.2466 + 0) / 2 < (0 + 1) / 2, so it is off."""
    from corelab.segment.barros2020 import PatchCNN

    net = PatchCNN().eval()
    with torch.no_grad():
        net.out.weight.zero_()
        net.out.bias.fill_(float(np.log(0.555 / 0.445)))
    hu = np.full((3, 80, 80), 45.0, np.float32)
    reference = np.zeros(hu.shape, bool)
    reference[:, 25:55, 25:55] = True
    own = prepare_scan("own", hu, SPACING, np.ones(hu.shape, bool), reference, np.zeros(hu.shape, bool))
    control = prepare_scan("c", hu, SPACING, np.ones(hu.shape, bool), np.zeros(hu.shape, bool), None)
    samples = [validation_sample(validation_maps(scan, {"severe": net}, pad_value=TINY.norm.pad_value), 0.0)
               for scan in (own, control)]  # every region voxel
    assert samples[0].weight.sum() == pytest.approx(19200) and (samples[0].kind == 1).sum() == 2700
    alone = choose_cutoffs(samples[:1], ["severe"])["severe"]
    assert alone < 0.555 and union_dice(samples[0], {"severe": alone}) == pytest.approx(2 * 2700 / 21900)
    both = choose_cutoffs(samples, ["severe"])["severe"]
    assert both > 0.555 and union_dice(samples[0], {"severe": both}) == 0.0 and union_dice(samples[1], {"severe": both}) == 1.0


def test_smoothing_is_chosen_on_validation_maps_when_it_removes_scattered_false_voxels():
    """One network's map on a 1 x 60 x 60 region: a 20 x 20 lesion at 0.7 with every third lesion
    voxel at background level 0.1 (holes), and scattered background voxels at 0.7 (one in 25). Unsmoothed, no cut-off
    gets the lesion without the scatter or the holes; smoothed by 1 pixel, the lesion stays above the
    background and a cut-off separates them almost exactly."""
    from corelab.train.cutoffs import ValidationMaps

    prob = np.full((1, 60, 60), 0.1, np.float32)
    kind = np.zeros(prob.shape, np.int8)
    kind[0, 20:40, 20:40] = 1
    prob[0, ::5, ::5] = 0.7
    prob[kind == 1] = 0.7
    prob[0, 20:40, 20:40][np.arange(400).reshape(20, 20) % 3 == 0] = 0.1
    maps = [ValidationMaps("p", np.ones(prob.shape, bool), kind, {"a": prob.astype(np.float16)})]
    lines: list[str] = []
    sigma_mm, cutoffs, samples = choose_smoothing_and_cutoffs(maps, ["a"], pixel_mm=0.5, smoothing_grid_mm=(0.0, 0.5),
                                                              log=lines.append)
    raw = validation_sample(maps[0], 0.0)
    best_raw = max(union_dice(raw, {"a": c}) for c in (0.1, 0.5, 0.8))  # all; lesion minus holes + scatter; none
    assert sigma_mm == 0.5 and len(lines) == 2
    assert union_dice(samples[0], cutoffs) > 0.9 and best_raw < 0.7


def test_calibration_shift_moves_tissue_by_one_offset_per_patch_and_leaves_air():
    from corelab.segment.norm import InputNorm
    from corelab.train.recipe import _shift_calibration

    norm = InputNorm()
    x = torch.full((200, 3, 19, 19), (40.0 - norm.center_hu) / norm.scale_hu)
    x[:, :, 0, :] = norm.pad_value  # a row of air
    out = _shift_calibration(x, replace(TINY, calibration_shift_hu=4.0), torch.Generator().manual_seed(0))
    shift_hu = (out[:, :, 5:, :] - x[:, :, 5:, :]) * norm.scale_hu
    per_patch = shift_hu.flatten(1)
    assert torch.allclose(per_patch, per_patch[:, :1].expand_as(per_patch), atol=1e-4)  # one offset a patch
    assert per_patch.abs().max() <= 4.0 + 1e-4 and per_patch[:, 0].std() > 1.5  # +-4 HU, spread (uniform: 2.3)
    assert torch.equal(out[:, :, 0, :], x[:, :, 0, :])


def test_a_control_scored_by_its_claimed_volume_pulls_a_cut_off_up_that_the_binary_score_lets_drift():
    """A lesion scan (10 mL of lesion at 0.9 down to 0.3, 50 mL of brain at 0.1) and a control with
    1 mL that every cut-off claims (0.97) and 99 mL of brain at 0.6 down to 0.2 (0.001 mL voxels).
    Binary control score: 0 at every cut-off below 0.97, so only the lesion scan counts and the
    lowest cut-off that keeps the whole lesion wins, 0.11 (the control then claims 100 mL). With
    T = 10 mL: at 0.60 the control claims 1 mL (and one voxel), about 10/11, the lesion scores
    2*5000/15000 = 0.667, mean 0.79; at 0.30 the lesion scores 1 but the control 10/85.25, mean 0.56:
    0.60 wins."""
    ml = 0.001
    lesion = ValidationSample("L", np.r_[np.ones(10_000), np.zeros(50_000)].astype(int), np.ones(60_000),
                              {"severe": np.r_[np.linspace(0.9, 0.3, 10_000), np.full(50_000, 0.1)]}, voxel_ml=ml)
    control = ValidationSample("C", np.zeros(100_000, int), np.ones(100_000),
                               {"severe": np.r_[np.full(1_000, 0.97), np.linspace(0.6, 0.2, 99_000)]}, voxel_ml=ml)
    binary = choose_cutoffs([lesion, control], ["severe"])["severe"]
    graded = choose_cutoffs([lesion, control], ["severe"], control_tolerance_ml=10.0)["severe"]
    assert binary == pytest.approx(0.11) and graded == pytest.approx(0.60)
    assert union_claim_ml(control, {"severe": binary}) == pytest.approx(100.0)
    assert union_claim_ml(control, {"severe": graded}) == pytest.approx(1.0, abs=0.002)
    assert float(union_dice(control, {"severe": graded}, control_tolerance_ml=10.0)) == pytest.approx(10 / 11, abs=1e-3)
    assert float(union_dice(control, {"severe": graded})) == 0.0
    with pytest.raises(ValueError, match="above 0 mL"):  # 0 / 0 would be NaN, which argmax takes for the best
        union_dice(control, {"severe": graded}, control_tolerance_ml=0.0)
    unsized = ValidationSample("C", control.kind, control.weight, control.probabilities)  # no voxel volume
    with pytest.raises(ValueError, match="above 0 mL"):
        union_dice(unsized, {"severe": graded}, control_tolerance_ml=10.0)


def test_texture_jitter_scales_contrast_about_the_brain_reference_adds_noise_and_leaves_air():
    from corelab.segment.norm import InputNorm
    from corelab.train.recipe import _jitter_texture

    norm = InputNorm(brain_reference_hu=35.0)
    options = replace(TINY, norm=norm)
    hu = torch.full((400, 6, 19, 19), 35.0)
    hu[:, :, 5:, :] = 25.0  # a hypodensity 10 HU below the brain reference
    x = (hu - norm.center_hu) / norm.scale_hu
    x[:, :, 0, :] = norm.pad_value  # a row of air
    contrast = _jitter_texture(x, replace(options, contrast_jitter=0.25), torch.Generator().manual_seed(0))
    drop = ((contrast[:, :, 1, 0] - contrast[:, :, 10, 0]) * norm.scale_hu)  # 10 HU scaled per patch
    assert torch.allclose(contrast[:, :, 1:5], x[:, :, 1:5], atol=1e-6)  # the reference level stays
    assert float(drop.min()) >= 10 / 1.25 - 1e-3 and float(drop.max()) <= 10 * 1.25 + 1e-3
    assert torch.allclose(drop, drop[:, :1].expand_as(drop), atol=1e-4) and float(drop.std()) > 0.5
    noisy = _jitter_texture(x, replace(options, noise_jitter_hu=4.0), torch.Generator().manual_seed(0))
    added = (noisy[:, :, 5:, :] - x[:, :, 5:, :]) * norm.scale_hu
    sd = added.flatten(1).std(dim=1)
    assert float(sd.max()) < 4.0 * 1.15 and float(sd.mean()) == pytest.approx(2.0, abs=0.25)  # uniform 0-4 HU
    # independent per channel (slices and mirror differ as real noise does)
    assert abs(float(torch.corrcoef(torch.stack([added[:, 0].flatten(), added[:, 3].flatten()]))[0, 1])) < 0.05
    for out in (contrast, noisy):
        assert torch.equal(out[:, :, 0, :], x[:, :, 0, :])
    again = _jitter_texture(x, replace(options, noise_jitter_hu=4.0), torch.Generator().manual_seed(0))
    assert torch.equal(again, noisy)


def test_training_input_is_brain_referenced_by_default():
    from corelab.segment.norm import BRAIN_REFERENCE_HU, InputNorm
    from corelab.train.recipe import TrainOptions

    assert TrainOptions().norm == InputNorm(brain_reference_hu=BRAIN_REFERENCE_HU)
    hu, _ = _square_lesion_scan()
    norm = TrainOptions().norm
    region, lesion = np.ones(hu.shape, bool), np.zeros(hu.shape, bool)
    a = prepare_scan("a", hu, SPACING, region, lesion, None, norm=norm)
    b = prepare_scan("b", hu + 5.0, SPACING, region, lesion, None, norm=norm)  # a scanner 5 HU high
    np.testing.assert_allclose(a.x.astype(np.float32), b.x.astype(np.float32), atol=2e-3)  # float16 storage
    assert np.median(a.x[region].astype(np.float32)) * norm.scale_hu + norm.center_hu == pytest.approx(BRAIN_REFERENCE_HU, abs=0.1)


def test_fit_keeps_the_epoch_with_the_lowest_validation_loss():
    hu, scan = _square_lesion_scan()
    from corelab.train.recipe import network_patches, validation_loss

    patches, labels = network_patches("severe", [scan], [], TINY, rng=np.random.default_rng(1))
    val_patches, val_labels = network_patches("severe", [scan], [], TINY, rng=np.random.default_rng(9))
    lines: list[str] = []
    options = replace(TINY, epochs=4, learning_rate=3e-3)
    net = fit_network(patches, labels, options, seed=3, log=lines.append, validation=(val_patches, val_labels))
    logged = [float(line.rsplit("validation loss ", 1)[1]) for line in lines if ", validation loss" in line]
    assert len(logged) == 4
    kept = int(lines[-1].split("keeping epoch ")[1].split()[0])
    assert logged[kept - 1] == min(logged)
    assert validation_loss(net, val_patches, val_labels) == pytest.approx(min(logged), abs=1e-4)


class _Stop(Exception):
    pass


def test_an_interrupted_fit_resumes_from_its_checkpoint_to_the_same_network(tmp_path):
    hu, scan = _square_lesion_scan()
    from corelab.train.recipe import network_patches

    options = replace(TINY, epochs=3)
    patches, labels = network_patches("severe", [scan], [], options, rng=np.random.default_rng(1))
    val = network_patches("severe", [scan], [], replace(options, patches_per_class=40), rng=np.random.default_rng(2))
    whole = fit_network(patches, labels, options, seed=3, log=lambda _: None, validation=val)

    def stop_after_epoch_2(line):
        if "epoch 2/3" in line:
            raise _Stop
    checkpoint = tmp_path / "severe.pt"
    with pytest.raises(_Stop):
        fit_network(patches, labels, options, seed=3, log=stop_after_epoch_2, validation=val, checkpoint=checkpoint)
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 1  # the interrupted epoch was not saved
    lines = []
    resumed = fit_network(patches, labels, options, seed=3, log=lines.append, validation=val, checkpoint=checkpoint)
    assert "resuming after epoch 1" in lines[0] and not any("epoch 1/3" in line for line in lines)
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_the_mirror_architecture_trains_on_scan_and_mirror_patches():
    """A cohort prepared for barros2020-mirror-cnn holds [2, z, y, x] input; its patches have 6 channels."""
    from corelab.train.recipe import network_patches

    hu, _ = _square_lesion_scan()
    head = np.ones(hu.shape, bool)
    reference = np.zeros(hu.shape, bool)
    reference[:, 25:55, 25:40] = True
    options = replace(TINY, architecture="barros2020-mirror-cnn")
    assert options.inputs == ("hu", "mirror")
    scan = prepare_scan("p", hu, SPACING, head, reference, np.zeros(hu.shape, bool), inputs=options.inputs)
    assert scan.x.shape[0] == 2 and scan.x.shape[1:] == scan.region.shape
    patches, labels = network_patches("severe", [scan], [], options, rng=np.random.default_rng(1))
    assert patches.shape[1:] == (6, 19, 19) and labels.sum() == options.patches_per_class
    net = fit_network(patches, labels, options, seed=0, log=lambda _: None)
    assert type(net).__name__ == "MirrorPatchCNN"


def test_opposite_negatives_draw_background_whose_mirror_is_the_lesion():
    """A head with a lesion on one side: `opposite` is that lesion reflected across the midline, and
    the option puts a fourth hard stratum there (patches whose mirror channel shows the lesion)."""
    from corelab.train.recipe import network_patches

    z, y, x = np.mgrid[0:3, 0:80, 0:80]
    head = ((y - 39.5) / 34) ** 2 + ((x - 39.5) / 30) ** 2 <= 1
    rng = np.random.default_rng(0)
    hu = np.where(head, 45.0, -1000.0).astype(np.float32) + rng.normal(0, 1, head.shape).astype(np.float32)
    reference = np.zeros(hu.shape, bool)
    reference[:, 25:50, 16:30] = True
    hu[reference] = 18.0
    options = replace(TINY, architecture="barros2020-mirror-cnn")
    spacing = (5.0, 1.0, 1.0)  # 1 mm pixels: the mirror registration's ~1 mm error is one voxel
    scan = prepare_scan("p", hu, spacing, head, reference, np.zeros(hu.shape, bool), inputs=options.inputs)
    expected = reference[..., ::-1]  # columns 16-29 reflected about 39.5; the crop keeps the whole grid here
    assert scan.opposite is not None and scan.opposite.shape == expected.shape
    assert 2 * (scan.opposite & expected).sum() / (scan.opposite.sum() + expected.sum()) > 0.85
    assert prepare_scan("p", hu, spacing, head, reference, None).opposite is None  # no mirror input, none computed

    lesion, brain = float(scan.x[1][scan.opposite].mean()), float(scan.x[1][scan.region & ~scan.opposite].mean())
    counts = {}
    for on in (False, True):
        patches, labels = network_patches("severe", [scan], [], replace(options, opposite_negatives=on),
                                          rng=np.random.default_rng(1))
        assert (labels == 0).sum() == options.patches_per_class
        mirror_centre = patches[labels == 0, 4, 9, 9].astype(np.float32)  # channel 4: the mirror's own slice
        counts[on] = int((np.abs(mirror_centre - lesion) < abs(brain - lesion) / 2).sum())  # lesion, not air
    n_stratum = options.patches_per_class // 2 // 3
    assert counts[True] >= n_stratum and counts[True] > counts[False] + n_stratum // 2


def test_checkpoints_are_keyed_by_what_makes_the_networks_not_by_card_only_rules(tmp_path):
    from corelab.train.recipe import _checkpoint_dir

    (tmp_path / "cohort").mkdir()
    (tmp_path / "cohort" / "manifest.csv").write_text("patient_id,scan\np1,scans/p1.nii.gz\n")

    def key(options, seed=0):
        return _checkpoint_dir(tmp_path / "cohort", tmp_path / "out", options, seed=seed, single=True)

    assert key(replace(TINY, contralateral_gate_hu=2.0, hemorrhage_beside_mm=10.0)) == key(TINY)
    assert key(replace(TINY, epochs=3)) != key(TINY)
    assert key(replace(TINY, opposite_negatives=True)) != key(TINY)
    assert key(TINY, seed=1) != key(TINY)
