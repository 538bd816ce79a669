"""The architecture is data: card.json names it, load_models builds it, dense inference takes any
architecture that declares its patch geometry (patch-wise when it has no whole-tile form)."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from corelab.errors import ModelError
from corelab.segment import networks as registry
from corelab.segment.card import save_models
from corelab.segment.dense import dense_probabilities
from corelab.segment.folder import default_models_dir, load_models
from corelab.segment.networks import (
    ArchitectureError,
    PatchCNN,
    architecture_of,
    build_network,
)
from corelab.segment.norm import InputNorm

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TinyNet(nn.Module):
    """A second architecture: 11x11 patch, voxel at index 5; conv 3x3 4 maps ReLU, dense 1."""

    patch_size = 11
    patch_center = 5
    seen_size = 11  # every patch row reaches the output
    channels = 3
    layers = ("conv 3x3 4 ReLU", "dense 1 sigmoid")

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=3)
        self.fc = nn.Linear(4 * 9 * 9, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))[:, 0]


class TinyDense:
    """TinyNet's whole-tile form: the dense layer is a 9x9 convolution over the conv maps."""

    def __init__(self, networks, device, dtype) -> None:
        self.networks = networks

    def __call__(self, tile: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        maps = [torch.relu(net.conv(tile[None])) for net in self.networks]
        logits = [F.conv2d(m, net.fc.weight.reshape(1, 4, 9, 9), net.fc.bias)[0, 0]
                  for m, net in zip(maps, self.networks)]
        return torch.stack([map_[inside] for map_ in logits])


class TiledTinyNet(TinyNet):
    """TinyNet with a whole-tile form: the tile's halo must be seen_size - 1 = 10, not PatchCNN's 15."""

    dense_form = TinyDense


def tiny_net(cls, seed: int) -> TinyNet:
    torch.manual_seed(seed)
    net = cls()
    with torch.no_grad():
        net.fc.weight.mul_(8.0)  # logits spread over a few units, so probabilities are not all ~0.5
    return net.eval()


def hand_patch(x: np.ndarray, voxel, pad_value: float, size: int, center: int) -> np.ndarray:
    """The patch of one voxel by the rules of corelab.segment.patches, written out: slices z-1, z, z+1
    (edge slices repeated), rows and columns -center .. size - 1 - center, air outside the image."""
    z, y, x0 = voxel
    patch = np.full((3, size, size), pad_value, np.float32)
    for channel, dz in enumerate((-1, 0, 1)):
        plane = x[min(max(z + dz, 0), x.shape[0] - 1)]
        for i in range(size):
            for j in range(size):
                row, col = y - center + i, x0 - center + j
                if 0 <= row < plane.shape[0] and 0 <= col < plane.shape[1]:
                    patch[channel, i, j] = plane[row, col]
    return patch


def mirror_patches(features: np.ndarray, voxels, pad_value: float) -> torch.Tensor:
    """Hand-cut 6-channel patches of the mirror CNN: the scan's 3 slices, then its mirror's (19x19, voxel at 8)."""
    return torch.from_numpy(np.stack([
        np.concatenate([hand_patch(features[0], v, pad_value, 19, 8), hand_patch(features[1], v, pad_value, 19, 8)])
        for v in voxels]))


def test_card_names_its_architecture_and_load_models_builds_it(tmp_path):
    nets = {name: PatchCNN().eval() for name in ("severe", "hemorrhage")}
    save_models(tmp_path, nets, dict.fromkeys(nets, 0.5))
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["architecture"]["name"] == "barros2020-patch-cnn"
    assert card["architecture"]["input"] == [3, 19, 19] and card["architecture"]["patch_center_index"] == 8
    assert "Architecture `barros2020-patch-cnn`: 19x19 patch" in (tmp_path / "MODEL_CARD.md").read_text()
    models = load_models(tmp_path)
    assert all(type(net) is PatchCNN for net in models.networks.values())


def test_a_card_without_an_architecture_name_loads_as_the_papers_cnn(tmp_path):
    net = PatchCNN().eval()
    save_models(tmp_path, {"severe": net}, {"severe": 0.5})
    card = json.loads((tmp_path / "card.json").read_text())
    del card["architecture"]["name"]  # as every card written before architectures had names
    (tmp_path / "card.json").write_text(json.dumps(card))
    loaded = load_models(tmp_path).networks["severe"]
    assert type(loaded) is PatchCNN
    x = torch.randn(4, 3, 19, 19)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_shipped_cards_name_the_mirror_cnn_chosen_by_the_left_out_benchmark():
    from corelab.segment.barros2020 import MirrorPatchCNN

    for folder in (default_models_dir(), default_models_dir() / "single"):
        models = load_models(folder)
        assert models.card["architecture"]["name"] == registry.MIRROR_ARCHITECTURE
        assert all(type(net) is MirrorPatchCNN for net in models.networks.values())
        held = models.card["scores"]["held_out"]
        assert "background family" in held["cohort"] and "procedural and atlas" in held["cohort"]


def test_an_unknown_architecture_is_a_named_error_in_one_sentence(tmp_path):
    save_models(tmp_path, {"severe": PatchCNN()}, {"severe": 0.5})
    card = json.loads((tmp_path / "card.json").read_text())
    card["architecture"]["name"] = "unet-2031"
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(ArchitectureError) as raised:
        load_models(tmp_path)
    assert isinstance(raised.value, ModelError)
    message = str(raised.value)
    assert message == "The network architecture 'unet-2031' is not one corelab knows (known: barros2020-mirror-cnn, barros2020-patch-cnn)."
    with pytest.raises(ArchitectureError, match="'toy' is not one corelab knows"):
        build_network("toy")


def test_save_models_refuses_mixed_or_unregistered_architectures(tmp_path):
    with pytest.raises(ArchitectureError, match="share one architecture, not PatchCNN, TinyNet"):
        save_models(tmp_path, {"severe": PatchCNN(), "hemorrhage": TinyNet()}, {"severe": 0.5, "hemorrhage": 0.5})
    with pytest.raises(ArchitectureError, match="TinyNet is not a registered architecture"):
        save_models(tmp_path, {"severe": TinyNet()}, {"severe": 0.5})
    with pytest.raises(ArchitectureError, match="does not declare its patch_size, patch_center, seen_size, channels"):
        architecture_of([nn.Linear(2, 1)])
    assert not (tmp_path / "card.json").exists()


@pytest.mark.parametrize("cls", [TinyNet, TiledTinyNet], ids=["patch-wise fallback", "whole-tile form"])
def test_a_second_architecture_saves_loads_and_its_dense_map_equals_patchwise(tmp_path, monkeypatch, cls):
    monkeypatch.setitem(registry.ARCHITECTURES, "tiny-11", cls)
    nets = {"severe": tiny_net(cls, 1), "hemorrhage": tiny_net(cls, 2)}
    save_models(tmp_path, nets, {"severe": 0.5, "hemorrhage": 0.6})
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["architecture"]["name"] == "tiny-11" and card["architecture"]["input"] == [3, 11, 11]
    assert card["architecture"]["seen_window"] == "11x11, offsets -5..+5 around the voxel"
    models = load_models(tmp_path)
    assert all(type(net) is cls for net in models.networks.values())

    rng = np.random.default_rng(0)
    hu = rng.normal(35.0, 35.0, size=(3, 40, 44)).astype(np.float32)
    region = np.zeros(hu.shape, bool)
    region[:, 1:40, 0:44] = True  # more than one batch of 4096 patches; touches the image edges
    region[1, 10:20, 12:30] = False
    probs = dense_probabilities(hu, region, models.networks, norm=models.norm, tile_voxels=300)
    x, pad = models.norm.apply(hu, region), models.norm.pad_value
    inside = np.argwhere(region)
    voxels = np.concatenate([inside[rng.choice(len(inside), 60, replace=False)], [[0, 1, 0], [2, 39, 43]]])
    patches = torch.from_numpy(np.stack([hand_patch(x, v, pad, 11, 5) for v in voxels]))
    for name, net in models.networks.items():
        with torch.no_grad():
            expected = torch.sigmoid(net(patches)).numpy()
        assert np.abs(probs[name][tuple(voxels.T)] - expected).max() < 1e-5
        assert expected.std() > 0.05  # varied probabilities, not a constant
        assert (probs[name][~region] == 0).all()


def test_the_mirror_cnn_reads_the_scan_and_its_mirror_and_its_dense_map_equals_patchwise(tmp_path):
    """barros2020-mirror-cnn: 6 channels (slices z-1, z, z+1 of the scan, then of its mid-sagittal
    mirror); saved, loaded, and its dense map equals the network applied to hand-cut patches."""
    from corelab.segment.barros2020 import MirrorPatchCNN
    from corelab.segment.inputs import network_input

    torch.manual_seed(4)
    nets = {"severe": MirrorPatchCNN().eval(), "hemorrhage": MirrorPatchCNN().eval()}
    norm = InputNorm(brain_reference_hu=35.0)
    save_models(tmp_path, nets, {"severe": 0.5, "hemorrhage": 0.6}, norm=norm)
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["architecture"]["name"] == "barros2020-mirror-cnn" and card["architecture"]["input"] == [6, 19, 19]
    assert "mid-sagittal mirror" in card["architecture"]["channels"]
    models = load_models(tmp_path)
    assert all(type(net) is MirrorPatchCNN for net in models.networks.values())

    rng = np.random.default_rng(2)
    z, y, x = np.mgrid[0:3, 0:48, 0:52]
    head = (y - 24) ** 2 / 20 ** 2 + (x - 27) ** 2 / 21 ** 2 < 1  # midline at column 27, off the image centre
    hu = np.where(head, 35.0 + rng.normal(0, 4, head.shape), -1000.0).astype(np.float32)
    hu[:, 18:26, 12:20] = 15.0  # a dark lesion on one side only
    region = head & (np.abs(x - 27) < 18)
    spacing = (5.0, 1.0, 1.0)
    probs = dense_probabilities(hu, region, models.networks, norm=models.norm, tile_voxels=300, spacing=spacing)
    features = network_input(hu, region, spacing, models.norm, ("hu", "mirror"))
    assert features.shape == (2, *hu.shape)
    # The mirror channel holds the lesion at its contralateral place (columns 34..41), the scan does not.
    lesion_x, mirror_x = features[0][1, 18:26, 12:20].mean(), features[1][1, 18:26, 35:41].mean()
    assert abs(lesion_x - mirror_x) < 0.15 and features[0][1, 18:26, 35:41].mean() > lesion_x + 0.4
    pad = models.norm.pad_value
    inside = np.argwhere(region)
    voxels = np.concatenate([inside[rng.choice(len(inside), 40, replace=False)], [[0, 24, 10], [2, 24, 44]]])
    patches = mirror_patches(features, voxels, pad)
    for name, net in models.networks.items():
        with torch.no_grad():
            expected = torch.sigmoid(net(patches)).numpy()
        assert np.abs(probs[name][tuple(voxels.T)] - expected).max() < 1e-5
        assert (probs[name][~region] == 0).all()
    with pytest.raises(ValueError, match="mirror input needs the grid's spacing"):
        dense_probabilities(hu, region, models.networks, norm=models.norm)


def test_an_architecture_whose_channels_do_not_match_its_inputs_is_refused():
    class Wrong(PatchCNN):
        inputs = ("hu", "mirror")  # 6 channels needed, 3 declared

    with pytest.raises(ArchitectureError, match="declares 3 channels for the inputs"):
        architecture_of([Wrong()])


def test_the_shipped_models_dense_map_equals_their_patchwise_definition():
    """The default model (barros2020-mirror-cnn): dense inference equals each network on hand-cut
    patches of the scan and its mirror, within float32 rounding."""
    from corelab.segment.inputs import network_input

    models = load_models()
    rng = np.random.default_rng(5)
    z, y, x = np.mgrid[0:3, 0:60, 0:64]
    head = (y - 30) ** 2 / 26 ** 2 + (x - 33) ** 2 / 27 ** 2 < 1
    hu = np.where(head, 33.0 + rng.normal(0, 4, head.shape), -1000.0).astype(np.float32)
    hu[:, 20:32, 14:24] = 18.0
    region = head & (np.abs(x - 33) < 22)
    spacing = (5.0, 0.45, 0.45)
    probs = dense_probabilities(hu, region, models.networks, norm=models.norm, spacing=spacing)
    features = network_input(hu, region, spacing, models.norm, ("hu", "mirror"))
    pad, inside = models.norm.pad_value, np.argwhere(region)
    voxels = inside[rng.choice(len(inside), 30, replace=False)]
    patches = mirror_patches(features, voxels, pad)
    for name, net in models.networks.items():
        with torch.no_grad():
            expected = torch.sigmoid(net(patches)).numpy()
        assert np.abs(probs[name][tuple(voxels.T)] - expected).max() < 1e-5, name
