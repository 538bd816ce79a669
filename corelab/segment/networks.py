"""The network architectures a model folder can name, and the paper's patch CNN with its dense form.

An architecture is an `nn.Module` class that maps a `[N, channels, patch_size, patch_size]` batch
to one foreground logit per patch, `[N]`, and declares as class attributes:

    patch_size    in-plane patch side (voxels)
    patch_center  patch index (row and column) of the classified voxel
    seen_size     patch rows/columns 0 .. seen_size - 1 are those that reach the output (its
                  receptive field); a whole-tile form reads seen_size - 1 rows/columns of halo
    channels      3 per input volume: the analysis-grid slices z-1, z, z+1 (`corelab.segment.patches`)
    inputs        optional: the input volumes (`corelab.segment.inputs`; default ("hu",), the scan)
    layers        the layers in words, for card.json (`describe_architecture`)
    dense_form    optional: `(networks, device, dtype) -> form`, where `form(tile, inside)` gives the
                  logits of several networks on a whole tile (the contract of `DenseNetworks`);
                  without it `corelab.segment.dense` evaluates the networks patch by patch.

`ARCHITECTURES` names each one; card.json records the name and `build_network(name)` builds it. A
new architecture is one file in `corelab/segment/` (importing torch, not this module; the paper's
CNN is `corelab/segment/barros2020.py`) plus its entry in `ARCHITECTURES`.
"""

from __future__ import annotations

from typing import Iterable

from torch import nn

from corelab.errors import ModelError
from corelab.segment.barros2020 import MirrorPatchCNN, PatchCNN

__all__ = [
    "PAPER_ARCHITECTURE",
    "MIRROR_ARCHITECTURE",
    "ArchitectureError",
    "PatchCNN",
    "ARCHITECTURES",
    "build_network",
    "architecture_of",
    "architecture_inputs",
    "architecture_name",
    "describe_architecture",
]

PAPER_ARCHITECTURE = "barros2020-patch-cnn"  # also what a card without an architecture name means
MIRROR_ARCHITECTURE = "barros2020-mirror-cnn"  # the paper's CNN plus the scan's mid-sagittal mirror
_GEOMETRY = ("patch_size", "patch_center", "seen_size", "channels")


class ArchitectureError(ModelError):
    """A network architecture is unknown or undeclared, or one model's networks mix architectures."""


ARCHITECTURES: dict[str, type[nn.Module]] = {
    PAPER_ARCHITECTURE: PatchCNN,
    MIRROR_ARCHITECTURE: MirrorPatchCNN,
}


def _known() -> str:
    return ", ".join(sorted(ARCHITECTURES))


def build_network(name: str) -> nn.Module:
    """A new network (random weights) of the registered architecture `name`.

    >>> type(build_network("barros2020-patch-cnn")).__name__
    'PatchCNN'
    """
    if name not in ARCHITECTURES:
        raise ArchitectureError(f"The network architecture {name!r} is not one corelab knows (known: {_known()}).")
    return ARCHITECTURES[name]()


def architecture_of(networks: Iterable[nn.Module]) -> type[nn.Module]:
    """The one class all `networks` share, checked to declare its patch geometry.

    `ArchitectureError` when the networks mix classes, are none, or their class lacks `patch_size`,
    `patch_center`, `seen_size` or `channels`.
    """
    classes = {type(net) for net in networks}
    if len(classes) != 1:
        names = ", ".join(sorted(cls.__name__ for cls in classes)) or "none"
        raise ArchitectureError(f"The networks of one model must share one architecture, not {names}.")
    cls = classes.pop()
    missing = [name for name in _GEOMETRY if not isinstance(getattr(cls, name, None), int)]
    if missing:
        raise ArchitectureError(f"The network class {cls.__name__} does not declare its {', '.join(missing)}.")
    inputs = architecture_inputs(cls)
    if cls.channels != 3 * len(inputs):
        raise ArchitectureError(f"The network class {cls.__name__} declares {cls.channels} channels for the "
                                f"inputs {inputs}; each input gives 3 (slices z-1, z, z+1).")
    return cls


def architecture_inputs(cls: type[nn.Module]) -> tuple[str, ...]:
    """The input volumes an architecture reads (`corelab.segment.inputs`); ("hu",), the scan, unless it says.

    >>> architecture_inputs(PatchCNN), architecture_inputs(MirrorPatchCNN)
    (('hu',), ('hu', 'mirror'))
    """
    return tuple(getattr(cls, "inputs", ("hu",)))


def architecture_name(cls: type[nn.Module]) -> str:
    """The registry name of an architecture class; `ArchitectureError` for an unregistered one."""
    for name, registered in ARCHITECTURES.items():
        if registered is cls:
            return name
    raise ArchitectureError(f"The network class {cls.__name__} is not a registered architecture (known: {_known()}).")


def describe_architecture(cls: type[nn.Module]) -> dict:
    """An architecture as card.json records it beside its name: input, channels, layers, placement.

    >>> describe_architecture(PatchCNN)["seen_window"]
    '16x16, offsets -8..+7 around the voxel'
    """
    after = cls.seen_size - 1 - cls.patch_center
    inputs = architecture_inputs(cls)
    of = {"hu": "the scan", "mirror": "its mid-sagittal mirror (rigid registration of the scan to its left-right flip)"}
    channels = "analysis-grid slices z-1, z, z+1 (edge slices replicated)"
    if inputs != ("hu",):
        channels += " of " + ", then of ".join(of[name] for name in inputs)
    return {
        "input": [cls.channels, cls.patch_size, cls.patch_size],
        "channels": channels,
        "layers": list(getattr(cls, "layers", ())),
        "patch_center_index": cls.patch_center,
        "seen_window": f"{cls.seen_size}x{cls.seen_size}, offsets -{cls.patch_center}..+{after} around the voxel",
        "outside_image": "padded with the normalized value of air",
    }
