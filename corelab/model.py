"""The paper's patch CNN, its HU input handling, and the model folder (weights + card).

Architecture (Sales Barros et al. 2020, "CNN-based infarct segmentation"), one for all four networks:

    input 19x19x3 (slices z-1, z, z+1 of the 5 mm analysis grid as channels)
    conv 5x5, 64 maps, ReLU        19 -> 15
    max-pool 2x2 stride 2          15 -> 7   (floor: conv row/column 14 is dropped)
    conv 5x5, 128 maps, ReLU        7 -> 3
    max-pool 2x2 stride 2           3 -> 1   (floor: conv row/column 2 is dropped)
    dense 256, ReLU; dense 256, ReLU; dense 1 -> sigmoid = foreground probability of the voxel

Which input rows the network sees. Tracing the output back through the floor pooling: pool2 reads
conv2 rows 0-1, which read pool1 rows 0-5, which read conv1 rows 0-11, which read input rows 0-15.
Rows and columns 16, 17 and 18 of the 19x19 patch never influence the output; the network sees a
16x16 window. An even window has no middle voxel, so we place the voxel at patch index
`PATCH_CENTER` = 8: the seen window spans offsets -8..+7 around the voxel, whose centre is 0.5 voxel
(0.225 mm) before the voxel in y and x, the closest an even window can be centred. (Placing the voxel
at the geometric centre, index 9, would leave the seen window 1.5 voxels off-centre.) Every patch
extractor in corelab (training, patch-wise and dense inference) uses this placement.

HU handling (`InputNorm`, recorded in card.json): clip to [-20, 100] HU, a window that keeps CSF,
every infarct class (14-44 HU), brain and fresh blood (50-90 HU) apart while bone and air saturate,
then (HU - 40) / 30, so values lie in [-2, 2]. Padding outside the image uses the value of air.
Weights trained by `corelab train` first shift each scan so the median HU of its analysis region is
`BRAIN_REFERENCE_HU` (35); cards without `brain_reference_hu` mean absolute HU (see `InputNorm`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn

from corelab import __version__
from corelab.checksums import file_sha256 as sha256_file
from corelab.config import GridParams
from corelab.errors import ModelError

__all__ = [
    "record_held_out",
    "brain_median",
    "PATCH_SIZE",
    "PATCH_CENTER",
    "SEEN_SIZE",
    "NETWORK_NAMES",
    "SINGLE_NAME",
    "InputNorm",
    "normalize_hu",
    "PatchCNN",
    "ModelSet",
    "CudaUnavailableError",
    "ModelFolderError",
    "ChecksumError",
    "resolve_device",
    "save_models",
    "load_models",
    "default_models_dir",
    "sha256_file",
]

PATCH_SIZE = 19  # in-plane patch side, voxels (paper)
PATCH_CENTER = 8  # patch index of the classified voxel (see module docstring)
SEEN_SIZE = 16  # rows/columns of the patch that reach the output through floor pooling
NETWORK_NAMES = ("severe", "intermediate", "subtle", "hemorrhage")
SINGLE_NAME = "single"  # the paper's single-CNN baseline
CARD_VERSION = 1


class CudaUnavailableError(ModelError):
    """CUDA was requested on a machine without a usable CUDA GPU."""


class ModelFolderError(ModelError):
    """A model folder is missing, incomplete or its card cannot be read."""


class ChecksumError(ModelError):
    """A weights file does not match the sha256 recorded in card.json."""


# Median HU of a scan's analysis region that brain-referenced input moves every scan to (about the
# median of a normal brain on a calibrated scanner: 33-35 HU on the synthetic phantoms).
BRAIN_REFERENCE_HU = 35.0


def brain_median(hu: np.ndarray, region: np.ndarray) -> float | None:
    """Median HU of the region's voxels (the brain's level that `InputNorm` shifts to its reference,
    reported per scan as brain_median_hu); None for an empty region.

    >>> brain_median(np.array([[30.0, 36.0, 90.0]]), np.array([[True, True, False]]))
    33.0
    """
    inside = np.asarray(hu)[np.asarray(region, dtype=bool)]
    return float(np.median(inside)) if inside.size else None


@dataclass(frozen=True)
class InputNorm:
    """HU to network input: [shift to the brain reference,] clip to [clip_low_hu, clip_high_hu], then
    (HU - center_hu) / scale_hu.

    brain_reference_hu: None = absolute HU, as the paper. A number: each scan is first shifted by one
        offset so that the median HU of its analysis region (intracranial minus CSF) equals this
        value. Scanners differ in calibration by a few HU and patients' brains by a few more; a subtle
        infarct is only 2-6 HU below the brain it replaced, so the networks then see each brain
        against its own level (the scan's calibration and the patient's grey matter cancel) instead
        of an absolute HU that varies as much as the lesion's contrast. The median is robust to
        lesions: a 300 mL infarct 20 HU below a 1300 mL brain moves it by about 2 HU.

    >>> InputNorm().apply(np.array([-1000.0, 40.0, 70.0, 500.0])).tolist()
    [-2.0, 0.0, 1.0, 2.0]
    >>> brain = np.array([44.0, 44.0, 46.0, 0.0]); region = np.array([True, True, True, False])
    >>> [round(float(v), 3) for v in InputNorm(brain_reference_hu=40.0).apply(brain, region)]  # median 44: -4 HU
    [0.0, 0.0, 0.067, -1.467]
    """

    clip_low_hu: float = -20.0
    clip_high_hu: float = 100.0
    center_hu: float = 40.0
    scale_hu: float = 30.0
    brain_reference_hu: float | None = None

    def apply(self, hu: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
        """Network input from HU; `region` (bool, shaped like `hu`) is needed with a brain reference."""
        hu = np.asarray(hu, dtype=np.float32)
        shift = self.brain_shift(hu, region)
        return normalize_hu(
            hu + np.float32(shift) if shift else hu, clip_low_hu=self.clip_low_hu,
            clip_high_hu=self.clip_high_hu, center_hu=self.center_hu, scale_hu=self.scale_hu,
        )

    def brain_shift(self, hu: np.ndarray, region: np.ndarray | None) -> float:
        """HU added to the scan before clipping: brain_reference_hu minus the region's median HU
        (0 without a brain reference, or when the region is empty)."""
        if self.brain_reference_hu is None:
            return 0.0
        if region is None or np.shape(region) != np.shape(hu):
            raise ValueError("A brain-referenced input needs the analysis region, shaped like the scan.")
        median = brain_median(hu, region)
        return 0.0 if median is None else float(self.brain_reference_hu - median)

    @property
    def pad_value(self) -> float:
        """Network input value used outside the image (air, i.e. the low clip)."""
        return float((self.clip_low_hu - self.center_hu) / self.scale_hu)


def normalize_hu(
    hu: np.ndarray, *, clip_low_hu: float, clip_high_hu: float, center_hu: float, scale_hu: float
) -> np.ndarray:
    """HU array -> float32 network input (clip, shift, scale); shape kept.

    >>> normalize_hu(np.array([0.0, 100.0]), clip_low_hu=0, clip_high_hu=50, center_hu=25, scale_hu=25).tolist()
    [-1.0, 1.0]
    """
    clipped = np.clip(np.asarray(hu, dtype=np.float32), clip_low_hu, clip_high_hu)
    return ((clipped - np.float32(center_hu)) / np.float32(scale_hu)).astype(np.float32)


class PatchCNN(nn.Module):
    """The paper's CNN: a [N, 3, 19, 19] input batch -> foreground logit per patch, shape [N].

    Use `probability` for the sigmoid of the logit. The layer names (conv1, conv2, fc1, fc2, out) are
    the keys of the saved weights and are read by `corelab.dense`.

    >>> net = PatchCNN()
    >>> tuple(net(torch.zeros(2, 3, 19, 19)).shape)
    (2,)
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=5)
        self.conv2 = nn.Conv2d(64, 128, kernel_size=5)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)  # floor mode, as most frameworks default
        self.fc1 = nn.Linear(128, 256)
        self.fc2 = nn.Linear(256, 256)
        self.out = nn.Linear(256, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.out(x)[:, 0]

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """Foreground probability of each patch's voxel, in [0, 1]."""
        return torch.sigmoid(self.forward(x))


@dataclass(frozen=True, eq=False)
class ModelSet:
    """Trained networks ready for inference, as read from a model folder.

    networks: name -> PatchCNN in eval mode on `device` ("severe", "intermediate", "subtle",
        "hemorrhage"; or "single" and "hemorrhage" for the single-CNN baseline).
    cutoffs: name -> probability cut-off in (0, 1) chosen on validation scans.
    norm: the HU handling the networks were trained with.
    card: the parsed card.json.
    version: card version plus the first 8 hex digits of a hash over all weight checksums.
    checksums: file name -> sha256 hex digest, verified when loaded.
    """

    networks: Mapping[str, PatchCNN]
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
        return _smoothing_mm(self.card)

    @property
    def smoothing_px(self) -> float:
        """`smoothing_mm` in analysis-grid pixels."""
        return self.smoothing_mm / self.grid.pixel_mm

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
    """The repository's shipped model folder, `models/` beside the `corelab` package."""
    return Path(__file__).resolve().parents[1] / "models"


def _version_string(card: Mapping) -> str:
    """Card version + 8 hex digits over the weights' checksums, the cut-offs and the smoothing: the
    same weights cut or smoothed otherwise give other volumes, so they are another version."""
    checksums = card["weights_sha256"]
    joined = "".join(f"{name}:{checksums[name]}" for name in sorted(checksums))
    joined += json.dumps({"cutoffs": card["cutoffs"], "smoothing_mm": _smoothing_mm(card)}, sort_keys=True)
    return f"{card['version']}+{hashlib.sha256(joined.encode()).hexdigest()[:8]}"


def save_models(
    folder: str | Path,
    networks: Mapping[str, PatchCNN],
    cutoffs: Mapping[str, float],
    *,
    norm: InputNorm = InputNorm(),
    grid: Mapping | None = None,
    training: Mapping | None = None,
    scores: Mapping | None = None,
    version: str | None = None,
    smoothing_mm: float = 0.0,
) -> Path:
    """Write `<name>.pt` weights, card.json and MODEL_CARD.md into `folder`; returns card.json's path.

    smoothing_mm: in-plane Gaussian sigma the probability maps are smoothed with before the cut-offs
        (the cut-offs were chosen with it; see `corelab.segment.smooth_probabilities`).
    grid: the analysis grid, e.g. {"slice_mm": 5.0, "pixel_mm": 0.45}.
    training: what the networks were trained on (cohort, synthetic or not, seed, sizes, options).
    scores: held-out or validation scores to record, e.g. {"validation_dice": {...}}.
    """
    missing = sorted(set(networks) - set(cutoffs))
    if missing:
        raise ModelError(f"No cut-off was given for network(s) {', '.join(missing)}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    checksums: dict[str, str] = {}
    for name, net in networks.items():
        path = folder / f"{name}.pt"
        torch.save({key: value.detach().cpu() for key, value in net.state_dict().items()}, path)
        checksums[path.name] = sha256_file(path)
    card_version = version or f"corelab-{__version__}"
    card = {
        "card_version": CARD_VERSION,
        "version": card_version,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "method": "Sales Barros et al., J NeuroIntervent Surg 2020;12:848-852 (three-CNN approach)",
        "kind": "single-cnn-baseline" if SINGLE_NAME in networks else "three-cnn",
        "networks": list(networks),
        "architecture": {
            "input": [3, PATCH_SIZE, PATCH_SIZE],
            "channels": "analysis-grid slices z-1, z, z+1 (edge slices replicated)",
            "layers": ["conv 5x5 64 ReLU", "max-pool 2x2/2", "conv 5x5 128 ReLU", "max-pool 2x2/2",
                       "dense 256 ReLU", "dense 256 ReLU", "dense 1 sigmoid"],
            "patch_center_index": PATCH_CENTER,
            "seen_window": f"{SEEN_SIZE}x{SEEN_SIZE}, offsets -8..+7 around the voxel (floor pooling)",
            "outside_image": "padded with the normalized value of air",
        },
        "analysis_grid": dict(grid or {"slice_mm": 5.0, "pixel_mm": 0.45}),
        "hu_input": {**asdict(norm), "rule": _NORM_RULE if norm.brain_reference_hu is None else _BRAIN_RULE + _NORM_RULE},
        "cutoffs": {name: float(cutoffs[name]) for name in networks},
        "postprocess": {"smoothing_mm": float(smoothing_mm), "rule": _SMOOTHING_RULE},
        "labels": {"severe": 1, "intermediate": 2, "subtle": 3, "hemorrhage": 4},
        "precedence": "hemorrhage > subtle > intermediate > severe",
        "training": dict(training or {}),
        "scores": dict(scores or {}),
        "validated_on_patients": False,
        "intended_use": "Research use. Not validated on patients.",
        "weights_sha256": checksums,
    }
    card_path = folder / "card.json"
    card_path.write_text(json.dumps(card, indent=2, default=str) + "\n")
    (folder / "MODEL_CARD.md").write_text(_markdown_card(card, _version_string(card)))
    return card_path


_CARD_SUMMARY_KEYS = (
    "cohort", "cohort_generator", "synthetic", "seed", "n_scans", "classes", "hemorrhage_labels", "patches_per_class", "epochs", "early_stopping",
)


def record_held_out(folder: str | Path, held_out: Mapping, *, headline: str) -> None:
    """Write held-out scores into a model folder's card.json (``scores.held_out``) and MODEL_CARD.md.

    headline: one or two sentences that MODEL_CARD.md puts first, after "Research use only." (the
    verdict a reader must see). The weights and their checksums are not touched.
    """
    card_path = Path(folder) / "card.json"
    if not card_path.is_file():
        raise ModelFolderError(f"{folder} has no card.json to record held-out scores in.")
    card = json.loads(card_path.read_text())
    card["scores"] = {**card.get("scores", {}), "held_out": dict(held_out)}
    card["headline"] = headline
    card_path.write_text(json.dumps(card, indent=2, default=str) + "\n")
    (Path(folder) / "MODEL_CARD.md").write_text(
        _markdown_card(card, _version_string(card)))


def _markdown_card(card: Mapping, version: str) -> str:
    training = card.get("training", {})
    lines = [
        f"# corelab model `{version}`",
        "",
        "**Not validated on patients.** Research use only."
        + (f" {card['headline']}" if card.get("headline") else "")
        + (" Trained on synthetic phantom CTs only." if training.get("synthetic") else ""),
        "",
        f"- Method: {card['method']}; kind: {card['kind']}; networks: {', '.join(card['networks'])}.",
        "- Input: 19x19 patch, 3 slices (z-1, z, z+1) of the 5 mm analysis grid as channels; "
        "the network sees a 16x16 window at offsets -8..+7 around the voxel.",
        "- HU handling: "
        + (f"each scan shifted so the median HU of its analysis region is {card['hu_input']['brain_reference_hu']}, "
           if card["hu_input"].get("brain_reference_hu") is not None else "")
        + f"clip to [{card['hu_input']['clip_low_hu']}, {card['hu_input']['clip_high_hu']}] HU, "
        f"then (HU - {card['hu_input']['center_hu']}) / {card['hu_input']['scale_hu']}.",
        f"- Probability maps smoothed in-plane before the cut-offs: Gaussian sigma {_smoothing_mm(card):g} mm "
        "(0 = none), averaged over the analysis region only.",
        f"- Cut-offs ({training.get('cutoff_rule', 'chosen on validation scans to maximize Dice')}): "
        + ", ".join(f"{name} {value:.3f}" for name, value in card["cutoffs"].items()) + ".",
        "- Training data: "
        + "; ".join(f"{key} {json.dumps(training[key], default=str)}" for key in _CARD_SUMMARY_KEYS
                    if training.get(key) is not None)
        + " (scan lists and the full recipe are in card.json).",
    ]
    if card.get("scores"):
        lines += _scores_markdown(card["scores"])
    lines += ["", "Weights checksums (sha256) are in card.json and are verified on every load.", ""]
    return "\n".join(lines)


def _scores_markdown(scores: Mapping) -> list[str]:
    """The card's scores as a reader wants them: validation Dice in one line, held-out scores as the
    paper's Table 1 (ICC(A,1), Dice mean +- SD, n per class, both approaches side by side).

    >>> _scores_markdown({"validation_dice": {"severe": 0.71}, "note": "union"})
    ['- Validation Dice (union): severe 0.71.']
    """
    def number(value, digits=2):
        return "-" if value is None else f"{value:.{digits}f}"

    def dice(cell):
        return number(cell.get("dice_mean")) + ("" if cell.get("dice_sd") is None else f" ± {cell['dice_sd']:.2f}")

    lines = []
    if scores.get("validation_dice"):
        lines.append(f"- Validation Dice ({scores.get('note', 'per network')}): "
                     + ", ".join(f"{k} {number(v)}" for k, v in scores["validation_dice"].items()) + ".")
    held = scores.get("held_out")
    if not held:
        return lines
    approaches = [(label, held[key]) for key, label in (("three_cnn", "three-CNN"), ("single_cnn", "single CNN"))
                  if isinstance(held.get(key), Mapping)]
    lines += ["", f"Held-out scores: {held.get('cohort', '')}. Command: `{held.get('command', '')}`.", ""]
    lines.append("| class | " + " | ".join(f"{label} ICC(A,1) | {label} Dice | n" for label, _ in approaches) + " |")
    lines.append("|---|" + "---|---|---|" * len(approaches))
    for cls in ("severe", "intermediate", "subtle", "all"):
        cells = [a.get(cls, {}) for _, a in approaches]
        lines.append(f"| {cls} | " + " | ".join(f"{number(c.get('icc_a1'))} | {dice(c)} | {c.get('n', '-')}"
                                               for c in cells) + " |")
    controls = "; ".join(f"{label} " + ", ".join(f"{v:g}" for v in a.get("control_false_ml", [])) + " mL"
                         for label, a in approaches)
    lines += ["", f"Volume claimed on control scans (no infarct): {controls}."]
    return lines


_SMOOTHING_RULE = ("each network's probability map, inside the analysis region, is averaged in-plane with a "
                   "Gaussian of sigma smoothing_mm over region voxels only, then cut at its cut-off")


def _smoothing_mm(card: Mapping) -> float:
    return float((card.get("postprocess") or {}).get("smoothing_mm", 0.0))


_NORM_RULE = "clip to [clip_low_hu, clip_high_hu], then (HU - center_hu) / scale_hu"
_BRAIN_RULE = "shift the scan so the median HU of its analysis region is brain_reference_hu, then "


def _norm_from_card(fields: Mapping) -> InputNorm:
    """The card's hu_input; cards written before brain_reference_hu existed mean absolute HU."""
    reference = fields.get("brain_reference_hu")
    return InputNorm(
        **{key: float(fields[key]) for key in asdict(InputNorm()) if key != "brain_reference_hu"},
        brain_reference_hu=None if reference is None else float(reference),
    )


def load_models(folder: str | Path | None = None, device: str = "cpu") -> ModelSet:
    """Read a model folder, verify every weight file's sha256 against card.json, and build the networks.

    Load once per process and pass the `ModelSet` down; each call re-reads and re-verifies.
    Raises `ModelFolderError` (missing/incomplete folder), `ChecksumError` (a changed weights file),
    `CudaUnavailableError` (device "cuda" without a GPU).
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
        norm = _norm_from_card(card["hu_input"])
    except (ValueError, KeyError, TypeError) as error:
        raise ModelFolderError(f"The model card {card_path} cannot be read ({error}).") from error
    networks: dict[str, PatchCNN] = {}
    for name in names:
        path = folder / f"{name}.pt"
        if not path.is_file() or path.name not in checksums:
            raise ModelFolderError(f"The model folder {folder} lacks the weights {path.name} listed in its card.")
        actual = sha256_file(path)
        if actual != checksums[path.name]:
            raise ChecksumError(f"The weights file {path} does not match the sha256 in its card; it was changed or damaged.")
        net = PatchCNN()
        try:
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (RuntimeError, KeyError) as error:
            raise ModelFolderError(f"The weights file {path} does not fit the paper's architecture ({error}).") from error
        networks[name] = net.to(torch_device).eval()
    return ModelSet(
        networks=networks,
        cutoffs=cutoffs,
        norm=norm,
        card=card,
        version=_version_string({**card, "version": str(card.get("version", ""))}),
        checksums=checksums,
        folder=str(folder),
        device=str(torch_device),
    )
