"""The patch CNN, patch extraction, dense inference equal to patch-wise, and the model folder."""

import json

import numpy as np
import pytest
import torch

from corelab.segment.card import ChecksumError, ModelFolderError, save_models
from corelab.segment.dense import PrecisionError, dense_probabilities, region_boxes, region_tiles
from corelab.segment.folder import CudaUnavailableError, load_models, resolve_device
from corelab.segment.barros2020 import PATCH_CENTER, PatchCNN
from corelab.segment.norm import InputNorm
from corelab.segment.patches import extract_patches
from corelab.train.patches import AUGMENT_SIZE, augment_windows

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def spread_net(seed: int) -> PatchCNN:
    """A random network whose probabilities spread over (0, 1), so comparisons are not trivially ~0.5."""
    torch.manual_seed(seed)
    net = PatchCNN()
    with torch.no_grad():
        for module in (net.conv1, net.conv2, net.fc1, net.fc2, net.out):
            module.weight.normal_(0.0, np.sqrt(2.0 / module.weight[0].numel()))
            module.bias.normal_(0.0, 0.05)
        # rescale the last layer so logits have mean 0 and SD 2 on random input
        logits = net(torch.randn(256, 3, 19, 19))
        scale = 2.0 / float(logits.std())
        net.out.weight.mul_(scale)
        net.out.bias.copy_((net.out.bias - logits.mean()) * scale)
    return net.eval()


def patchwise(net: PatchCNN, hu: np.ndarray, voxels: np.ndarray, norm: InputNorm, region=None) -> np.ndarray:
    patches = extract_patches(norm.apply(hu, region), voxels, pad_value=norm.pad_value)
    with torch.no_grad():
        return net.probability(torch.from_numpy(patches)).numpy()


def test_input_norm_clips_and_scales_hu():
    norm = InputNorm()
    # clip [-20, 100], (HU - 40) / 30
    assert norm.apply(np.array([-1000.0, -20.0, 40.0, 55.0, 100.0, 1500.0])).tolist() == [-2.0, -2.0, 0.0, 0.5, 2.0, 2.0]
    assert norm.pad_value == -2.0


def test_brain_reference_moves_the_region_median_to_the_reference_before_clipping():
    norm = InputNorm(brain_reference_hu=35.0)
    hu = np.array([-1000.0, 30.0, 41.0, 42.0, 43.0, 95.0])
    region = np.array([False, True, True, True, True, False])  # median 41.5 -> every voxel -6.5 HU
    expected = (np.clip(hu - 6.5, -20, 100) - 40) / 30
    np.testing.assert_allclose(norm.apply(hu, region), expected, rtol=0, atol=1e-6)
    assert norm.brain_shift(hu, region) == -6.5
    assert norm.brain_shift(hu, np.zeros(6, bool)) == 0.0  # nothing to measure: left as it is
    with pytest.raises(ValueError, match="needs the analysis region"):
        norm.apply(hu)
    assert InputNorm().brain_shift(hu, None) == 0.0  # absolute HU, the paper's input


def test_network_sees_only_patch_rows_and_columns_0_to_15():
    net = spread_net(1)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(1, 3, 19, 19)).astype(np.float32))
    base = net(x)
    unseen = x.clone()
    unseen[..., 16:, :] = 9.0
    unseen[..., :, 16:] = -9.0
    assert torch.equal(net(unseen), base)  # rows/columns 16-18 are dropped by floor pooling
    for row, col in [(15, 3), (0, 0), (3, 15)]:
        seen = x.clone()
        seen[0, 1, row, col] += 50.0
        assert not torch.equal(net(seen), base)


def test_extract_patches_places_voxel_at_index_8_and_replicates_edge_slices():
    vol = np.arange(3 * 30 * 30, dtype=np.float32).reshape(3, 30, 30)
    patches = extract_patches(vol, np.array([[0, 12, 15], [2, 20, 9]]), pad_value=-5.0)
    assert patches.shape == (2, 3, 19, 19)
    assert patches[0, 1, PATCH_CENTER, PATCH_CENTER] == vol[0, 12, 15]
    assert np.array_equal(patches[0, 0], patches[0, 1])  # slice -1 replicates slice 0
    assert np.array_equal(patches[0, 2], vol[1, 4:23, 7:26])  # rows 12-8 .. 12+10
    assert np.array_equal(patches[1, 2], patches[1, 1])  # slice 3 replicates slice 2
    assert (patches[1, 1, 18, :] == -5.0).all()  # row 20 + 10 = 30 lies outside the image
    assert np.array_equal(patches[1, 1, :18, :], vol[2, 12:30, 1:20])


def test_extract_patches_rejects_centres_outside_volume():
    with pytest.raises(ValueError):
        extract_patches(np.zeros((1, 5, 5)), np.array([[0, 5, 0]]), pad_value=0.0)


def test_augment_keeps_voxel_value_and_crops_patch():
    rng = np.random.default_rng(3)
    windows = rng.normal(size=(40, 3, AUGMENT_SIZE, AUGMENT_SIZE)).astype(np.float32)
    c = AUGMENT_SIZE // 2
    out = augment_windows(windows, rng=np.random.default_rng(4))
    assert out.shape == (40, 3, 19, 19)
    # rotation and flip are about the voxel, so its own value (and label) is unchanged
    np.testing.assert_array_equal(out[:, :, PATCH_CENTER, PATCH_CENTER], windows[:, :, c, c])
    # each patch is one of the 8 flips/quarter turns of the window, cropped with the voxel at index 8
    start = c - PATCH_CENTER
    seen = set()
    for i in range(40):
        matches = [
            (flip, k)
            for flip in (False, True)
            for k in range(4)
            if np.array_equal(
                out[i],
                np.rot90(windows[i][:, :, ::-1] if flip else windows[i], k=k, axes=(1, 2))[
                    :, start:start + 19, start:start + 19
                ],
            )
        ]
        assert matches, f"patch {i} is not an exact flip/rotation of its window"
        seen.add(matches[0])
    assert len(seen) >= 6  # flips and all four turns are drawn


def test_augmented_patches_keep_the_noise_of_unaugmented_ones():
    """Infarct patches are augmented, background patches are not: augmentation must not change
    their texture, or a network learns the augmentation instead of the infarct."""
    rng = np.random.default_rng(5)
    windows = rng.normal(0.0, 5.0, size=(200, 3, AUGMENT_SIZE, AUGMENT_SIZE)).astype(np.float32)
    out = augment_windows(windows, rng=rng)
    plain_sd = windows.std()
    neighbour_diff_sd = np.diff(out, axis=3).std() / np.sqrt(2.0)  # white noise: equals the SD
    assert abs(out.std() - plain_sd) / plain_sd < 0.02
    assert abs(neighbour_diff_sd - plain_sd) / plain_sd < 0.02


def test_dense_equals_patchwise_at_random_voxels():
    rng = np.random.default_rng(0)
    nets = {name: spread_net(i) for i, name in enumerate(["severe", "intermediate", "subtle", "hemorrhage"])}
    norm = InputNorm()
    hu = rng.normal(35.0, 35.0, size=(4, 37, 45)).astype(np.float32)
    region = np.zeros(hu.shape, bool)
    region[:, 2:36, 0:45] = True  # touches the image's left/right edges and the first/last slice
    region[1, 10:20, 10:20] = False
    yy, xx = np.mgrid[:37, :45]
    region[2] = np.abs(yy - xx) < 4  # a diagonal band: each row tile covers different columns
    probs = dense_probabilities(hu, region, nets, norm=norm, tile_voxels=300)  # several tiles per slice
    inside = np.argwhere(region)
    voxels = np.concatenate([inside[rng.choice(len(inside), 300, replace=False)],
                             [[0, 2, 0], [3, 35, 44], [0, 35, 44], [3, 2, 0]]])
    spread = []
    for name, net in nets.items():
        expected = patchwise(net, hu, voxels, norm)
        got = probs[name][tuple(voxels.T)]
        assert np.abs(got - expected).max() < 1e-5
        spread.append(expected.std())
        assert (probs[name][~region] == 0).all()
    assert min(spread) > 0.05  # the comparison is on varied probabilities, not a constant


def test_brain_referenced_dense_equals_patchwise_and_ignores_scanner_calibration():
    rng = np.random.default_rng(5)
    nets = {name: spread_net(i) for i, name in enumerate(["severe", "subtle"])}
    norm = InputNorm(brain_reference_hu=35.0)
    hu = rng.normal(35.0, 35.0, size=(3, 30, 34)).astype(np.float32)
    hu[:, :, :4] = -1000.0  # air outside the head: clipped, so no calibration reaches it
    region = np.zeros(hu.shape, bool)
    region[:, 3:27, 6:30] = True
    probs = dense_probabilities(hu, region, nets, norm=norm, tile_voxels=200)
    voxels = np.argwhere(region)[rng.choice(int(region.sum()), 200, replace=False)]
    for name, net in nets.items():
        expected = patchwise(net, hu, voxels, norm, region)
        assert np.abs(probs[name][tuple(voxels.T)] - expected).max() < 1e-5
        assert expected.std() > 0.02
    # The same head on a scanner reading 4 HU high: brain-referenced input sees the same brain ...
    brighter = np.where(hu > -1000.0, hu + 4.0, hu).astype(np.float32)
    shifted = dense_probabilities(brighter, region, nets, norm=norm, tile_voxels=200)
    absolute = dense_probabilities(brighter, region, nets, norm=InputNorm(), tile_voxels=200)
    unshifted = dense_probabilities(hu, region, nets, norm=InputNorm(), tile_voxels=200)
    for name in nets:
        np.testing.assert_allclose(shifted[name], probs[name], atol=1e-5)
        # ... where absolute input does not.
        assert np.abs(absolute[name] - unshifted[name]).max() > 1e-3


def test_bfloat16_is_an_opt_in_approximation_close_to_float32():
    rng = np.random.default_rng(1)
    nets = {name: spread_net(i) for i, name in enumerate(["severe", "subtle"])}
    hu = rng.normal(35.0, 35.0, size=(3, 30, 30)).astype(np.float32)
    region = np.ones(hu.shape, bool)
    exact = dense_probabilities(hu, region, nets)
    approx = dense_probabilities(hu, region, nets, precision="bfloat16")
    for name in nets:
        diff = np.abs(approx[name] - exact[name])
        assert 0 < diff.max() < 0.05  # rounded (not the float32 path), yet close
        assert exact[name].std() > 0.05
    with pytest.raises(PrecisionError, match="use float32 or bfloat16"):
        dense_probabilities(hu, region, nets, precision="float16")


def test_dense_handles_one_slice_and_empty_region():
    net = spread_net(7)
    hu = np.full((1, 20, 20), 30.0, np.float32)
    hu[0, 5:12, 5:12] = 10.0
    region = np.ones(hu.shape, bool)
    probs = dense_probabilities(hu, region, {"a": net})["a"]
    voxels = np.argwhere(region)
    np.testing.assert_allclose(probs[tuple(voxels.T)], patchwise(net, hu, voxels, InputNorm()), atol=1e-5)
    empty = dense_probabilities(hu, np.zeros(hu.shape, bool), {"a": net})["a"]
    assert empty.shape == hu.shape and not empty.any()


def test_region_boxes_skips_empty_slices():
    region = np.zeros((3, 6, 7), bool)
    region[0, 1, 2] = region[0, 4, 5] = True
    region[2, 0:6, 0] = True
    assert region_boxes(region) == [(0, 1, 5, 2, 6), (2, 0, 6, 0, 1)]


def test_region_tiles_cover_each_region_voxel_once_and_follow_a_round_head():
    zz, yy, xx = np.mgrid[0:3, 0:420, 0:360]  # an axial head outline on the 0.45 mm grid
    region = (yy - 210) ** 2 / 200**2 + (xx - 180) ** 2 / 170**2 < 1
    region &= (yy - 210) ** 2 + (xx - 180) ** 2 > 30**2  # ventricles: a hole inside the region
    region[1] = False  # a slice without region voxels
    region[2, 250:, :] = False
    region[2, 10:14, 180] = False  # rows of the last slice only in part
    tiles = list(region_tiles(region, tile_voxels=60_000))
    covered = np.zeros(region.shape, int)
    for z, y0, y1, x0, x1 in tiles:
        assert (y1 - y0) * (x1 - x0) <= 60_000
        assert region[z, y0, x0:x1].any() and region[z, y1 - 1, x0:x1].any()  # no empty edge rows
        covered[z, y0:y1, x0:x1] += 1
    assert (covered[region] == 1).all() and covered.max() == 1
    assert {t[0] for t in tiles} == {0, 2}
    # The boxes follow the outline: they compute under 10% more positions than the region's rows
    # span (the least any boxes of whole rows can), where runs of rows of one height compute 21% more.
    span = sum(int(np.ptp(np.flatnonzero(row))) + 1 for plane in region for row in plane if row.any())
    shaped = sum((y1 - y0) * (x1 - x0) for _, y0, y1, x0, x1 in tiles)
    assert span <= shaped < 1.10 * span
    small = list(region_tiles(region, tile_voxels=3000))  # memory bound: boxes of 8-20 rows, same cover
    assert max(y1 - y0 for _, y0, y1, _, _ in small) > 1
    assert all((y1 - y0) * (x1 - x0) <= 3000 for _, y0, y1, x0, x1 in small)
    covered[:] = 0
    for z, y0, y1, x0, x1 in small:
        covered[z, y0:y1, x0:x1] += 1
    assert (covered[region] == 1).all()


def test_region_tiles_cut_rows_where_a_search_of_every_cut_finds_the_least_cost():
    rng = np.random.default_rng(11)
    for _ in range(40):
        plane = np.zeros((9, 30), bool)
        for y in range(9):
            if rng.random() < 0.8:  # some rows empty, between occupied ones too
                x0 = int(rng.integers(0, 25))
                plane[y, x0:x0 + int(rng.integers(1, 30 - x0))] = True
        if not plane.any():
            continue
        limit = int(rng.integers(20, 200))
        tiles = [t[1:] for t in region_tiles(plane[None], tile_voxels=limit, halo=15)]
        assert dense_tiles_cost(tiles) == pytest.approx(least_cost(plane, limit))


def dense_tiles_cost(tiles) -> float:
    """`region_tiles`' cost of these boxes (`_HALO_WEIGHT`, `_TILE_OVERHEAD`, halo 15)."""
    return sum((y1 - y0 + 2) * (x1 - x0 + 2) + 0.15 * (y1 - y0 + 15) * (x1 - x0 + 15) + 300
               for y0, y1, x0, x1 in tiles)


def least_cost(plane: np.ndarray, limit: int) -> float:
    """The least cost over every way of cutting the occupied rows into runs of consecutive rows that
    begin and end on occupied rows, each box within `limit` voxels unless one row (exhaustive)."""
    import functools

    occupied = [y for y in range(plane.shape[0]) if plane[y].any()]

    @functools.lru_cache(maxsize=None)
    def best(i: int) -> float:  # occupied rows i.. still to cover
        if i == len(occupied):
            return 0.0
        options = []
        for j in range(i, len(occupied)):
            y0, y1 = occupied[i], occupied[j] + 1
            cols = np.flatnonzero(plane[y0:y1].any(axis=0))
            box = (y0, y1, int(cols[0]), int(cols[-1]) + 1)
            if j > i and (y1 - y0) * (box[3] - box[2]) > limit:
                break  # rows only add: a longer run is larger still
            options.append(dense_tiles_cost([box]) + best(j + 1))
        return min(options)

    return best(0)


def test_save_load_roundtrip_and_checksum(tmp_path):
    nets = {name: spread_net(i) for i, name in enumerate(["severe", "intermediate", "subtle", "hemorrhage"])}
    cutoffs = {"severe": 0.4, "intermediate": 0.5, "subtle": 0.6, "hemorrhage": 0.7}
    save_models(tmp_path, nets, cutoffs, training={"synthetic": True, "seed": 3})
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["validated_on_patients"] is False and card["training"]["seed"] == 3
    assert set(card["weights_sha256"]) == {f"{n}.pt" for n in nets}
    assert "Not validated on patients" in (tmp_path / "MODEL_CARD.md").read_text()
    models = load_models(tmp_path)
    assert dict(models.cutoffs) == cutoffs and not models.is_single
    assert models.version.startswith(card["version"] + "+") and len(models.version.split("+")[1]) == 8
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(5, 3, 19, 19)).astype(np.float32))
    with torch.no_grad():
        assert torch.equal(models.networks["subtle"](x), nets["subtle"](x))

    weights = tmp_path / "subtle.pt"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ChecksumError):
        load_models(tmp_path)
    weights.unlink()
    with pytest.raises(ModelFolderError):
        load_models(tmp_path)
    with pytest.raises(ModelFolderError):
        load_models(tmp_path / "nowhere")


def test_card_keeps_the_brain_reference_and_older_cards_read_as_absolute_hu(tmp_path):
    nets = {name: spread_net(i) for i, name in enumerate(["severe", "intermediate", "subtle", "hemorrhage"])}
    cutoffs = dict.fromkeys(nets, 0.5)
    save_models(tmp_path, nets, cutoffs, norm=InputNorm(brain_reference_hu=35.0))
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["hu_input"]["brain_reference_hu"] == 35.0 and card["hu_input"]["rule"].startswith("shift the scan")
    assert load_models(tmp_path).norm == InputNorm(brain_reference_hu=35.0)
    assert "median HU of its analysis region is 35.0" in (tmp_path / "MODEL_CARD.md").read_text()
    del card["hu_input"]["brain_reference_hu"]  # as written before the field existed
    (tmp_path / "card.json").write_text(json.dumps(card))
    assert load_models(tmp_path).norm == InputNorm()


def test_cuda_request_without_gpu_is_a_named_error():
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(CudaUnavailableError):
            resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"


def test_held_out_scores_are_recorded_without_touching_the_weights(tmp_path):
    from corelab.segment.card import record_held_out

    nets = {name: spread_net(i) for i, name in enumerate(["severe", "intermediate", "subtle", "hemorrhage"])}
    save_models(tmp_path, nets, {name: 0.5 for name in nets}, training={"synthetic": True})
    version = load_models(tmp_path).version
    held_out = {"three_cnn": {"all": {"icc_a1": 0.42, "dice_mean": 0.3, "dice_sd": 0.2, "n": 7},
                              "control_false_ml": [12.5]},
                "single_cnn": {"all": {"icc_a1": 0.31, "dice_mean": 0.25, "dice_sd": 0.1, "n": 7}}}
    record_held_out(tmp_path, held_out, headline="**Below target** (ICC 0.42).")
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["scores"]["held_out"]["three_cnn"]["all"]["icc_a1"] == 0.42
    lines = (tmp_path / "MODEL_CARD.md").read_text().splitlines()
    assert lines[2].startswith("**Not validated on patients.** Research use only. **Below target** (ICC 0.42).")
    # the paper's Table 1 layout: both approaches side by side, classes without scores shown as "-"
    assert "| all | 0.42 | 0.30 ± 0.20 | 7 | 0.31 | 0.25 ± 0.10 | 7 |" in lines
    assert "| severe | - | - | - | - | - | - |" in lines
    assert any("three-CNN 12.5 mL" in line for line in lines)
    assert load_models(tmp_path).version == version  # checksums still verify, same weights
    with pytest.raises(ModelFolderError):
        record_held_out(tmp_path / "nowhere", {}, headline="x")
