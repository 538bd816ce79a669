"""segment(): cut-offs, precedence, region, through a real model folder on disk."""

import json

import numpy as np
import pytest
import torch

from corelab.segment.card import save_models
from corelab.segment.folder import load_models
from corelab.segment.labels import SegmentInputError, labels_from_probabilities, segment
from corelab.segment.barros2020 import PatchCNN
from corelab.segment.norm import InputNorm

NORM = InputNorm()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def threshold_net(threshold_hu: float, *, above: bool, steepness: float = 4.0) -> PatchCNN:
    """A hand-built network: on a uniform patch of HU h its probability is sigmoid(+-k * (x(h) - x(t))).

    conv1 map 0 averages the middle slice (+3 keeps it positive through every ReLU, inputs are in
    [-2, 2]); conv2, fc1 and fc2 pass that mean on; the output layer subtracts the threshold.
    """
    net = PatchCNN()
    with torch.no_grad():
        for module in (net.conv1, net.conv2, net.fc1, net.fc2, net.out):
            module.weight.zero_()
            module.bias.zero_()
        net.conv1.weight[0, 1] = 1.0 / 25.0
        net.conv1.bias[0] = 3.0
        net.conv2.weight[0, 0] = 1.0 / 25.0
        net.fc1.weight[0, 0] = 1.0
        net.fc2.weight[0, 0] = 1.0
        sign = 1.0 if above else -1.0
        x_threshold = float(NORM.apply(np.array([threshold_hu]))[0])
        net.out.weight[0, 0] = sign * steepness
        net.out.bias[0] = -sign * steepness * (3.0 + x_threshold)
    return net.eval()


def plain_and_with(tmp_path, nets, cutoffs, option: str, value: float, card_words: str):
    """The same networks saved twice, without and with one card option (a `save_models` keyword), both
    loaded; checks that the plain card has no such key, that the versions differ and that the other
    MODEL_CARD.md names the option by ``card_words``."""
    save_models(tmp_path / "plain", nets, cutoffs)
    save_models(tmp_path / "with", nets, cutoffs, **{option: value})
    plain, other = load_models(tmp_path / "plain"), load_models(tmp_path / "with")
    assert option not in json.loads((tmp_path / "plain" / "card.json").read_text())["postprocess"]
    assert plain.version != other.version
    assert card_words in (tmp_path / "with" / "MODEL_CARD.md").read_text()
    return plain, other


def phantom():
    """Three slices: a 16 HU block (severe-like), a 60 HU block (blood-like), 30 HU elsewhere."""
    hu = np.full((3, 60, 90), 30.0, np.float32)
    hu[:, 10:50, 5:40] = 16.0
    hu[:, 10:50, 50:85] = 60.0
    region = np.zeros(hu.shape, bool)
    region[:, 5:55, 2:88] = True
    return hu, region


def write_models(folder, nets, cutoffs):
    save_models(folder, nets, cutoffs, training={"synthetic": True, "note": "hand-built test networks"})
    return load_models(folder)


def test_segment_labels_blocks_and_leaves_outside_region_empty(tmp_path):
    nets = {
        "severe": threshold_net(22.0, above=False),  # fires below 22 HU
        "intermediate": threshold_net(-15.0, above=False),  # never on this phantom
        "subtle": threshold_net(95.0, above=True),  # never on this phantom
        "hemorrhage": threshold_net(50.0, above=True),  # fires above 50 HU
    }
    models = write_models(tmp_path, nets, {name: 0.5 for name in nets})
    hu, region = phantom()
    labels = segment(hu, region, models)
    assert labels.dtype == np.uint8 and labels.shape == hu.shape
    # block interiors, 10 voxels from any edge, see only their own HU: hand-worked labels
    assert (labels[:, 20:40, 15:30] == 1).all()
    assert (labels[:, 20:40, 60:75] == 4).all()
    assert (labels[:, 20:40, 42:48] == 0).all()  # 30 HU gap between the blocks
    assert not labels[~region].any()
    assert set(np.unique(labels)) == {0, 1, 4}


def test_precedence_hemorrhage_over_subtle_over_intermediate_over_severe(tmp_path):
    always = {name: threshold_net(-15.0, above=True) for name in ["severe", "intermediate", "subtle", "hemorrhage"]}
    hu, region = phantom()
    cutoffs = {"severe": 0.5, "intermediate": 0.5, "subtle": 0.5, "hemorrhage": 0.5}
    assert (segment(hu, region, write_models(tmp_path / "a", always, cutoffs))[region] == 4).all()
    cutoffs["hemorrhage"] = 0.9999999  # hemorrhage now never passes its cut-off
    labels = segment(hu, region, write_models(tmp_path / "b", always, cutoffs))
    assert (labels[region] == 3).all()


def test_labels_from_probabilities_hand_worked():
    region = np.array([[[True, True, True, True, False]]])
    probs = {
        "severe": np.array([[[0.9, 0.9, 0.9, 0.2, 0.9]]]),
        "intermediate": np.array([[[0.0, 0.6, 0.6, 0.0, 0.0]]]),
        "subtle": np.array([[[0.0, 0.0, 0.7, 0.0, 0.0]]]),
        "hemorrhage": np.array([[[0.0, 0.0, 0.3, 0.0, 0.0]]]),
    }
    cutoffs = {"severe": 0.5, "intermediate": 0.6, "subtle": 0.7, "hemorrhage": 0.31}
    # cut-off is inclusive (>=); the last voxel is outside the region
    assert labels_from_probabilities(probs, cutoffs, region).tolist() == [[[1, 2, 3, 0, 0]]]


def test_single_cnn_voxels_take_class_of_their_mean_hu():
    region = np.ones((1, 1, 4), bool)
    hu = np.array([[[18.0, 20.0, 40.0, 60.0]]])
    probs = {"single": np.array([[[0.9, 0.9, 0.1, 0.1]]]), "hemorrhage": np.array([[[0.0, 0.0, 0.0, 0.9]]])}
    labels = labels_from_probabilities(probs, {"single": 0.5, "hemorrhage": 0.5}, region, hu=hu)
    assert labels.tolist() == [[[1, 1, 0, 4]]]  # mean 19 HU -> severe


def test_constant_scan_empty_region_and_one_slice(tmp_path):
    nets = {name: threshold_net(22.0, above=False) for name in ["severe", "intermediate", "subtle", "hemorrhage"]}
    models = write_models(tmp_path, nets, {name: 0.5 for name in nets})
    # away from the image border (where patches read the air padding) a constant scan holds no infarct
    interior = np.zeros((2, 30, 30), bool)
    interior[:, 10:20, 10:20] = True
    constant = np.full((2, 30, 30), 35.0, np.float32)
    assert not segment(constant, interior, models).any()
    assert not segment(np.full((2, 30, 30), 10.0), np.zeros((2, 30, 30), bool), models).any()
    one = np.full((1, 30, 30), 10.0, np.float32)
    labels = segment(one, interior[:1], models)
    assert (labels[interior[:1]] == 4).all() and not labels[~interior[:1]].any()  # all fire; hemorrhage wins


def test_segment_rejects_mismatched_inputs(tmp_path):
    nets = {name: threshold_net(22.0, above=False) for name in ["severe", "intermediate", "subtle", "hemorrhage"]}
    models = write_models(tmp_path, nets, {name: 0.5 for name in nets})
    with pytest.raises(SegmentInputError):
        segment(np.zeros((2, 10, 10)), np.ones((2, 10, 9), bool), models)
    with pytest.raises(SegmentInputError):
        segment(np.zeros((10, 10)), np.ones((10, 10), bool), models)


def test_smoothing_drops_specks_and_keeps_a_block_hand_made_maps():
    region = np.ones((1, 40, 60), bool)
    prob = np.full(region.shape, 0.1)
    prob[0, 10:30, 5:25] = 0.9  # a lesion
    prob[0, 5:35:6, 35:60:6] = 0.9  # one-voxel specks, far apart
    cutoffs = {"severe": 0.5}
    raw = labels_from_probabilities({"severe": prob}, cutoffs, region)
    smoothed = labels_from_probabilities({"severe": prob}, cutoffs, region, smoothing_px=2.0)
    assert raw[0, 5:35:6, 35:60:6].all() and not smoothed[0, :, 32:].any()
    assert smoothed[0, 12:28, 7:23].all() and not smoothed[0, :, :3].any()


def test_segment_smooths_the_maps_with_the_cards_sigma_before_the_cut_off(tmp_path):
    nets = {"severe": threshold_net(22.0, above=False),
            **{name: threshold_net(-15.0, above=False) for name in ("intermediate", "subtle", "hemorrhage")}}
    hu, region = phantom()
    hu[:, 12:20, 60:68] = 16.0  # a small severe block beside the blood-like one
    cutoffs = dict.fromkeys(nets, 0.5)
    plain = write_models(tmp_path / "plain", nets, cutoffs)
    save_models(tmp_path / "smooth", nets, cutoffs, smoothing_mm=1.0)
    smooth = load_models(tmp_path / "smooth")
    assert plain.smoothing_px == 0 and smooth.smoothing_mm == 1.0 and smooth.smoothing_px == pytest.approx(1.0 / 0.45)
    assert plain.version != smooth.version  # same weights, other labels: another version
    from corelab.segment.dense import dense_probabilities

    probs = dense_probabilities(hu, region, smooth.networks, norm=smooth.norm)
    expected = labels_from_probabilities(probs, cutoffs, region, smoothing_px=1.0 / 0.45)
    labels = segment(hu, region, smooth)
    assert np.array_equal(labels, expected) and not np.array_equal(labels, segment(hu, region, plain))
