"""train_models on a tiny on-disk cohort, the cohort errors, and the pure training steps."""

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from corelab.errors import CohortError
from corelab.model import ChecksumError, load_models
from corelab.patches import hard_background
from corelab.segment import segment
from corelab.train import TrainOptions, choose_cutoff, fit_network, train_models
from corelab.train_data import (
    GridMismatchError,
    MissingMaskError,
    TooFewScansError,
    prepare_scan,
    split_cohort,
)

SPACING = (5.0, 0.45, 0.45)  # already the analysis grid, so to_analysis_grid keeps the voxels
CLASS_HU = {"severe": 17.0, "intermediate": 27.0, "subtle": 38.0}
TINY = TrainOptions(patches_per_class=150, epochs=2, batch_size=64, val_voxels=300, threads=1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def phantom(kind: str, *, rng: np.random.Generator, hemorrhage: bool, shape=(12, 156, 156)):
    """A drum-shaped head: 45 HU brain (r < 66 voxels), skull ring and caps, a 5 HU ventricle in the
    middle, a 14-voxel-radius lesion of the class's HU on slices 4-7, optionally 65 HU blood in it.
    Returns (HU, truth labels 0-4)."""
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    cy, cx = shape[1] / 2, shape[2] / 2
    r = np.hypot(y - cy, x - cx) + 0 * z
    hu = np.where(r < 66, 45.0, np.where(r < 72, 1000.0, -1000.0)).astype(np.float32)
    hu[0] = np.where(r[0] < 72, 1000.0, -1000.0)  # skull caps close the head above and below
    hu[-1] = hu[0]
    hu += rng.normal(0, 2.0, hu.shape).astype(np.float32) * (hu == 45.0)
    hu[1:-1][r[1:-1] < 7] = 5.0  # ventricle (CSF) at the centroid
    ly, lx = cy + rng.integers(-6, 6), cx + 30 + rng.integers(-4, 4)
    lesion = (np.hypot(y - ly, x - lx) < 14) & (z >= 4) & (z <= 7)
    hu[lesion] = CLASS_HU[kind] + rng.normal(0, 2.0, int(lesion.sum()))
    labels = np.where(lesion, {"severe": 1, "intermediate": 2, "subtle": 3}[kind], 0).astype(np.uint8)
    if hemorrhage:
        blood = (np.hypot(y - ly, x - lx) < 5) & (z == 6)
        hu[blood] = 65.0
        labels[blood] = 4
    return hu, labels


def write(array: np.ndarray, path: Path, spacing=SPACING) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing[::-1])
    sitk.WriteImage(image, str(path))


def make_cohort(folder: Path, kinds, *, seed=0, hemorrhage=(), no_truth=()) -> Path:
    """manifest.csv + scans/, manual/ (binary, blood included) and truth/ (labels) like `corelab synth`."""
    for sub in ("scans", "manual", "truth"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = ["patient_id,scan"]
    for i, kind in enumerate(kinds):
        pid = f"P{i:02d}"
        hu, labels = phantom(kind, rng=rng, hemorrhage=i in hemorrhage)
        write(hu, folder / "scans" / f"{pid}.nii.gz")
        write((labels > 0).astype(np.uint8), folder / "manual" / f"{pid}.nii.gz")
        if i not in no_truth:
            write(labels, folder / "truth" / f"{pid}.nii.gz")
        rows.append(f"{pid},scans/{pid}.nii.gz")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder


KINDS = ["severe", "severe", "intermediate", "intermediate", "subtle", "subtle"]


def test_train_models_writes_loadable_checked_folders(tmp_path):
    cohort = make_cohort(tmp_path / "cohort", KINDS, hemorrhage=(0, 2, 3, 5), no_truth=(5,))
    lines = []
    summary = train_models(cohort, tmp_path / "models", single=True, seed=1, options=TINY, log=lines.append)
    assert any("epoch 2/2" in line for line in lines)  # progress was reported

    models = load_models(tmp_path / "models")
    assert set(models.networks) == {"severe", "intermediate", "subtle", "hemorrhage"}
    assert all(0.0 < c < 1.0 for c in models.cutoffs.values())
    assert summary.cutoffs["severe"] == models.cutoffs["severe"]
    card = json.loads((tmp_path / "models" / "card.json").read_text())
    assert card["training"]["seed"] == 1 and card["training"]["n_scans"] == 6
    assert card["training"]["classes"] == {"severe": 2, "intermediate": 2, "subtle": 2}
    assert card["training"]["hemorrhage_labels"] == {"truth": 5, "threshold": 1}
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


def test_cohort_without_subtle_infarcts_is_a_named_error(tmp_path):
    cohort = make_cohort(tmp_path, ["severe", "severe", "intermediate", "intermediate"], hemorrhage=(0, 2))
    with pytest.raises(TooFewScansError, match="subtle"):
        train_models(cohort, tmp_path / "models", options=TINY, log=lambda _: None)
    assert not (tmp_path / "models").exists()


def test_missing_mask_and_mismatched_grid_are_named_errors(tmp_path):
    cohort = make_cohort(tmp_path / "a", ["severe", "subtle"])
    (cohort / "manual" / "P01.nii.gz").unlink()
    with pytest.raises(MissingMaskError, match="P01"):
        train_models(cohort, tmp_path / "m", options=TINY, log=lambda _: None)
    cohort = make_cohort(tmp_path / "b", ["severe", "subtle"])
    write(np.zeros((12, 100, 156), np.uint8), cohort / "manual" / "P00.nii.gz")
    with pytest.raises(GridMismatchError, match="P00"):
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
    rng = np.random.default_rng(0)
    hu = np.full((3, 80, 80), 45.0, np.float32) + rng.normal(0, 2, (3, 80, 80)).astype(np.float32)
    reference = np.zeros(hu.shape, bool)
    reference[:, 25:55, 25:55] = True
    hu[reference] = 18.0
    scan = prepare_scan("p", hu, SPACING, np.ones(hu.shape, bool), reference, np.zeros(hu.shape, bool))
    from corelab.train import network_patches

    patches, labels = network_patches("severe", [scan], [], TINY, rng=np.random.default_rng(1))
    assert labels.sum() == TINY.patches_per_class and (labels == 0).sum() == TINY.patches_per_class
    a = fit_network(patches, labels, TINY, seed=3, log=lambda _: None)
    b = fit_network(patches, labels, TINY, seed=3, log=lambda _: None)
    x = torch.from_numpy(patches[:8].astype(np.float32))
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    cutoff, dice = choose_cutoff(a, [scan], "severe", TINY, rng=np.random.default_rng(2))
    assert 0.0 < cutoff < 1.0 and dice > 0.8


def test_claims_on_other_networks_scans_raise_the_cutoff():
    """A network that also fires on another class's scan (an 18 HU mimic outside its reference)
    must pay for it: the chosen cut-off's Dice drops. (Whether the cut-off moves depends on
    whether the network can tell the mimic from the lesion at all; here both are 18 HU.)"""
    rng = np.random.default_rng(0)
    hu = np.full((3, 80, 80), 45.0, np.float32) + rng.normal(0, 2, (3, 80, 80)).astype(np.float32)
    reference = np.zeros(hu.shape, bool)
    reference[:, 25:55, 25:55] = True
    own_hu = hu.copy()
    own_hu[reference] = 18.0
    own = prepare_scan("own", own_hu, SPACING, np.ones(hu.shape, bool), reference, np.zeros(hu.shape, bool))
    mimic_hu = hu.copy()
    mimic_hu[:, 10:70, 10:70] = 18.0  # hypodense, but not this scan's reference lesion
    other_ref = np.zeros(hu.shape, bool)
    other_ref[:, 0:3, 0:3] = True
    other = prepare_scan("other", mimic_hu, SPACING, np.ones(hu.shape, bool), other_ref, np.zeros(hu.shape, bool))
    from corelab.train import network_patches

    patches, labels = network_patches("severe", [own], [], TINY, rng=np.random.default_rng(1))
    net = fit_network(patches, labels, TINY, seed=3, log=lambda _: None)
    alone = choose_cutoff(net, [own], "severe", TINY, rng=np.random.default_rng(2))
    paid = choose_cutoff(net, [own], "severe", TINY, rng=np.random.default_rng(2), others=[other])
    assert paid[1] < alone[1] - 0.2
