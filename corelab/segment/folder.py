"""A model folder read for inference: its networks built and checked against the card, on a device.

A model is a folder (weights plus card.json; see `corelab.segment.card`). `load_models` verifies
every weight file's checksum before the networks are built, builds them as the architecture the
card names (`corelab.segment.networks.ARCHITECTURES`), and the `ModelSet` it returns carries the
analysis grid, HU handling, smoothing and cut-offs the networks were trained with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from corelab.audit import file_sha256
from corelab.config import GridParams
from corelab.errors import ModelError
from corelab.segment.card import (
    SINGLE_NAME,
    ChecksumError,
    ModelFolderError,
    architecture_from_card,
    card_gate_hu,
    card_hemorrhage_beside_mm,
    card_smoothing_mm,
    norm_from_card,
    version_string,
)
from corelab.segment.networks import build_network
from corelab.segment.norm import InputNorm

__all__ = ["CudaUnavailableError", "ModelSet", "resolve_device", "default_models_dir", "load_models"]


class CudaUnavailableError(ModelError):
    """CUDA was requested on a machine without a usable CUDA GPU."""



@dataclass(frozen=True, eq=False)
class ModelSet:
    """Trained networks ready for inference, as read from a model folder.

    networks: name -> network of the card's architecture, in eval mode on `device` ("severe",
        "intermediate", "subtle", "hemorrhage"; or "single" and "hemorrhage" for the single-CNN baseline).
    cutoffs: name -> probability cut-off in (0, 1) chosen on validation scans.
    norm: the HU handling the networks were trained with.
    card: the parsed card.json.
    version: card version plus the first 8 hex digits of a hash over all weight checksums.
    checksums: file name -> sha256 hex digest, verified when loaded.
    """

    networks: Mapping[str, nn.Module]
    cutoffs: Mapping[str, float]
    norm: InputNorm
    card: Mapping
    version: str
    checksums: Mapping[str, str]
    folder: str = ""
    device: str = "cpu"

    @property
    def grid(self) -> GridParams:
        """The analysis grid the networks were trained on; inference must use the same one."""
        recorded = self.card.get("analysis_grid") or {}
        return GridParams(**{key: float(recorded[key]) for key in ("slice_mm", "pixel_mm") if key in recorded})

    @property
    def smoothing_mm(self) -> float:
        """In-plane Gaussian sigma (mm) of the probability smoothing the cut-offs were chosen with
        (card "postprocess"; cards without it: 0, no smoothing)."""
        return card_smoothing_mm(self.card)

    @property
    def smoothing_px(self) -> float:
        """`smoothing_mm` in analysis-grid pixels."""
        return self.smoothing_mm / self.grid.pixel_mm

    @property
    def gate_hu(self) -> float | None:
        """The contralateral gate in HU (card "postprocess", `corelab.segment.contralateral`); None = off."""
        return card_gate_hu(self.card)

    @property
    def hemorrhage_beside_mm(self) -> float | None:
        """The hemorrhage rule in mm (card "postprocess", `corelab.segment.labels.hemorrhage_beside`); None = off."""
        return card_hemorrhage_beside_mm(self.card)

    @property
    def is_single(self) -> bool:
        """True for the single-CNN baseline folder."""
        return SINGLE_NAME in self.networks


def resolve_device(device: str = "cpu") -> torch.device:
    """"cpu" or "cuda" -> torch.device; asking for CUDA without one raises `CudaUnavailableError`.

    We raise instead of silently falling back so a batch never runs ten times slower than planned
    without saying so.
    """
    name = str(device).lower()
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CudaUnavailableError("CUDA was requested but this machine has no usable CUDA GPU; use device cpu.")
        return torch.device(name)
    if name != "cpu":
        raise ModelError(f"Unknown device {device!r}; use cpu or cuda.")
    return torch.device("cpu")


def default_models_dir() -> Path:
    """The shipped model folder: the repository's `models/`, installed as the package data `corelab.models`."""
    return Path(str(resources.files("corelab.models")))


def load_models(folder: str | Path | None = None, device: str = "cpu") -> ModelSet:
    """Read a model folder, verify every weight file's sha256 against card.json, and build the networks.

    Load once per process and pass the `ModelSet` down; each call re-reads and re-verifies.
    Raises `ModelFolderError` (missing/incomplete folder), `ChecksumError` (a changed weights file),
    `ArchitectureError` (an architecture corelab does not know), `CudaUnavailableError` (device
    "cuda" without a GPU).
    """
    folder = Path(folder) if folder is not None else default_models_dir()
    torch_device = resolve_device(device)
    card_path = folder / "card.json"
    if not card_path.is_file():
        raise ModelFolderError(f"The model folder {folder} has no card.json; train models with `corelab train`.")
    try:
        card = json.loads(card_path.read_text())
        names = list(card["networks"])
        cutoffs = {name: float(card["cutoffs"][name]) for name in names}
        checksums = dict(card["weights_sha256"])
        norm = norm_from_card(card["hu_input"])
        architecture = architecture_from_card(card)
    except (ValueError, KeyError, TypeError) as error:
        raise ModelFolderError(f"The model card {card_path} cannot be read ({error}).") from error
    networks: dict[str, nn.Module] = {}
    for name in names:
        path = folder / f"{name}.pt"
        if not path.is_file() or path.name not in checksums:
            raise ModelFolderError(f"The model folder {folder} lacks the weights {path.name} listed in its card.")
        actual = file_sha256(path)
        if actual != checksums[path.name]:
            raise ChecksumError(f"The weights file {path} does not match the sha256 in its card; it was changed or damaged.")
        net = build_network(architecture)
        try:
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (RuntimeError, KeyError) as error:
            raise ModelFolderError(f"The weights file {path} does not fit the architecture {architecture} ({error}).") from error
        networks[name] = net.to(torch_device).eval()
    return ModelSet(
        networks=networks,
        cutoffs=cutoffs,
        norm=norm,
        card=card,
        version=version_string({**card, "version": str(card.get("version", ""))}),
        checksums=checksums,
        folder=str(folder),
        device=str(torch_device),
    )
