"""A model folder's card: card.json (architecture, HU handling, cut-offs, training, checksums) and
MODEL_CARD.md, written when networks are saved and read when they load.

The card's "architecture" names the networks' class in `corelab.segment.networks.ARCHITECTURES`
(cards written before it had a name mean the paper's CNN) beside the class's own description.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from corelab import __version__
from corelab.audit import file_sha256
from corelab.config import CLASSES, LABELS
from corelab.errors import ModelError
from corelab.segment.networks import (
    PAPER_ARCHITECTURE,
    architecture_name,
    architecture_of,
    describe_architecture,
)
from corelab.segment.norm import InputNorm

__all__ = [
    "CARD_VERSION",
    "NETWORK_NAMES",
    "SINGLE_NAME",
    "ModelFolderError",
    "ChecksumError",
    "architecture_from_card",
    "card_smoothing_mm",
    "cutoffs_chosen_on",
    "card_gate_hu",
    "card_hemorrhage_beside_mm",
    "norm_from_card",
    "version_string",
    "save_models",
    "record_held_out",
]

NETWORK_NAMES = tuple(LABELS)  # the three class networks and hemorrhage, in label order
SINGLE_NAME = "single"  # the paper's single-CNN baseline
CARD_VERSION = 1


class ModelFolderError(ModelError):
    """A model folder is missing, incomplete or its card cannot be read."""


class ChecksumError(ModelError):
    """A weights file does not match the sha256 recorded in card.json."""



def version_string(card: Mapping) -> str:
    """Card version + 8 hex digits over the weights' checksums, the cut-offs, the smoothing and the
    contralateral gate and the hemorrhage rule when set: the same weights cut, smoothed, gated or
    kept otherwise give other volumes, so they are another version."""
    checksums = card["weights_sha256"]
    joined = "".join(f"{name}:{checksums[name]}" for name in sorted(checksums))
    post = {"cutoffs": card["cutoffs"], "smoothing_mm": card_smoothing_mm(card)}
    if card_gate_hu(card) is not None:  # cards without the gate keep the version they always had
        post["contralateral_gate_hu"] = card_gate_hu(card)
    if card_hemorrhage_beside_mm(card) is not None:  # likewise
        post["hemorrhage_beside_mm"] = card_hemorrhage_beside_mm(card)
    joined += json.dumps(post, sort_keys=True)
    return f"{card['version']}+{hashlib.sha256(joined.encode()).hexdigest()[:8]}"


def save_models(
    folder: str | Path,
    networks: Mapping[str, nn.Module],
    cutoffs: Mapping[str, float],
    *,
    norm: InputNorm = InputNorm(),
    grid: Mapping | None = None,
    training: Mapping | None = None,
    scores: Mapping | None = None,
    version: str | None = None,
    smoothing_mm: float = 0.0,
    contralateral_gate_hu: float | None = None,
    hemorrhage_beside_mm: float | None = None,
) -> Path:
    """Write `<name>.pt` weights, card.json and MODEL_CARD.md into `folder`; returns card.json's path.

    smoothing_mm: in-plane Gaussian sigma the probability maps are smoothed with before the cut-offs
        (the cut-offs were chosen with it; see `corelab.segment.labels.smooth_probabilities`).
    contralateral_gate_hu: drop hypodense claimed parts not at least this many HU darker than their
        mirror across the midline (`corelab.segment.contralateral`); None = off, as the paper.
    hemorrhage_beside_mm: keep a connected hemorrhage claim only when a hypodense claim lies within
        this many mm of it (`corelab.segment.labels.hemorrhage_beside`); None = off, as the paper.
    grid: the analysis grid, e.g. {"slice_mm": 5.0, "pixel_mm": 0.45}.
    training: what the networks were trained on (cohort, synthetic or not, seed, sizes, options).
    scores: held-out or validation scores to record, e.g. {"validation_dice": {...}}.
    The networks share one registered architecture, which the card names (`ArchitectureError`
    from `corelab.segment.networks` otherwise).
    """
    if hemorrhage_beside_mm is not None and "hemorrhage" not in networks:
        raise ModelError("The hemorrhage rule (hemorrhage_beside_mm) needs a hemorrhage network in the folder.")
    missing = sorted(set(networks) - set(cutoffs))
    if missing:
        raise ModelError(f"No cut-off was given for network(s) {', '.join(missing)}.")
    architecture = architecture_of(networks.values())
    architecture_card = {"name": architecture_name(architecture), **describe_architecture(architecture)}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    checksums: dict[str, str] = {}
    for name, net in networks.items():
        path = folder / f"{name}.pt"
        torch.save({key: value.detach().cpu() for key, value in net.state_dict().items()}, path)
        checksums[path.name] = file_sha256(path)
    card_version = version or f"corelab-{__version__}"
    card = {
        "card_version": CARD_VERSION,
        "version": card_version,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "method": "Sales Barros et al., J NeuroIntervent Surg 2020;12:848-852 (three-CNN approach)",
        "kind": "single-cnn-baseline" if SINGLE_NAME in networks else "three-cnn",
        "networks": list(networks),
        "architecture": architecture_card,
        "analysis_grid": dict(grid or {"slice_mm": 5.0, "pixel_mm": 0.45}),
        "hu_input": {**asdict(norm), "rule": _NORM_RULE if norm.brain_reference_hu is None else _BRAIN_RULE + _NORM_RULE},
        "cutoffs": {name: float(cutoffs[name]) for name in networks},
        "postprocess": {"smoothing_mm": float(smoothing_mm), "rule": _SMOOTHING_RULE,
                        **({} if contralateral_gate_hu is None else
                           {"contralateral_gate_hu": float(contralateral_gate_hu), "gate_rule": _GATE_RULE}),
                        **({} if hemorrhage_beside_mm is None else
                           {"hemorrhage_beside_mm": float(hemorrhage_beside_mm), "hemorrhage_rule": _HEMORRHAGE_RULE})},
        "labels": dict(LABELS),
        "precedence": " > ".join(reversed(LABELS)),
        "training": dict(training or {}),
        "scores": dict(scores or {}),
        "validated_on_patients": False,
        "intended_use": "Research use. Not validated on patients.",
        "weights_sha256": checksums,
    }
    card_path = folder / "card.json"
    card_path.write_text(json.dumps(card, indent=2, default=str) + "\n")
    (folder / "MODEL_CARD.md").write_text(markdown_card(card, version_string(card)))
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
        markdown_card(card, version_string(card)))


def markdown_card(card: Mapping, version: str) -> str:
    training = card.get("training", {})
    lines = [
        f"# corelab model `{version}`",
        "",
        "**Not validated on patients.** Research use only."
        + (f" {card['headline']}" if card.get("headline") else "")
        + (" Trained on synthetic phantom CTs only." if training.get("synthetic") else ""),
        "",
        f"- Method: {card['method']}; kind: {card['kind']}; networks: {', '.join(card['networks'])}.",
        _architecture_markdown(card),
        "- HU handling: "
        + (f"each scan shifted so the median HU of its analysis region is {card['hu_input']['brain_reference_hu']}, "
           if card["hu_input"].get("brain_reference_hu") is not None else "")
        + f"clip to [{card['hu_input']['clip_low_hu']}, {card['hu_input']['clip_high_hu']}] HU, "
        f"then (HU - {card['hu_input']['center_hu']}) / {card['hu_input']['scale_hu']}.",
        f"- Probability maps smoothed in-plane before the cut-offs: Gaussian sigma {card_smoothing_mm(card):g} mm "
        "(0 = none), averaged over the analysis region only.",
        *([f"- Contralateral gate (not in the paper): each connected part of the hypodense claim is kept only "
           f"when its median HU is at least {card_gate_hu(card):g} HU below its mirror across the midline."]
          if card_gate_hu(card) is not None else []),
        *([f"- Hemorrhage within or beside the infarct (not in the paper): each connected part of the hemorrhage "
           f"claim is kept only when a hypodense claim lies within {card_hemorrhage_beside_mm(card):g} mm of it."]
          if card_hemorrhage_beside_mm(card) is not None else []),
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


def _architecture_markdown(card: Mapping) -> str:
    """The card's architecture in one line.

    >>> _architecture_markdown({"architecture": {"input": [3, 11, 11], "seen_window": "11x11, offsets -5..+5"}})
    '- Architecture `barros2020-patch-cnn`: 11x11 patch, 3 analysis-grid slices (z-1, z, z+1) as channels; seen window 11x11, offsets -5..+5.'
    """
    architecture = card.get("architecture") or {}
    channels, rows, cols = architecture.get("input", [3, 19, 19])
    what = (f"{channels} analysis-grid slices (z-1, z, z+1) as channels" if channels == 3
            else f"{channels} channels: {architecture.get('channels', 'not recorded')}")
    return (f"- Architecture `{architecture_from_card(card)}`: {rows}x{cols} patch, {what}; "
            f"seen window {architecture.get('seen_window', 'not recorded')}.")


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
    calibration = scores.get("calibration")
    if calibration:
        lines.append(f"- Calibration (cut-offs chosen again on {calibration.get('n_scans', '-')} scans of "
                     f"{calibration.get('cohort', '-')}, not trained on; not held out): mean union Dice "
                     f"{number(calibration.get('mean_union_dice'))}; controls claimed median "
                     f"{number(calibration.get('control_median_ml'), 1)} mL, max "
                     f"{number(calibration.get('control_max_ml'), 1)} mL.")
    held = scores.get("held_out")
    if not held:
        return lines
    names = {"three_cnn": "three-CNN", "single_cnn": "single CNN"}
    approaches = [(names.get(key, key), value) for key, value in held.items()
                  if isinstance(value, Mapping) and isinstance(value.get("all"), Mapping)]
    lines += ["", f"Held-out scores: {held.get('cohort', '')}. Command: `{held.get('command', '')}`.", ""]
    if any("control_median_ml" in a for _, a in approaches):  # the left-out benchmark: one row per approach
        lines.append("| approach | " + " | ".join(f"{cls} ICC(A,1) | {cls} Dice" for cls in (*CLASSES, "all"))
                     + " | n | controls median / max mL | real normal head mL |")
        lines.append("|---|" + "---|---|" * (len(CLASSES) + 1) + "---|---|---|")
        for label, a in approaches:
            cells = " | ".join(f"{number(a.get(cls, {}).get('icc_a1'))} | {dice(a.get(cls, {}))}" for cls in (*CLASSES, "all"))
            lines.append(f"| {label} | {cells} | {a['all'].get('n', '-')} | {number(a.get('control_median_ml'), 1)} / "
                         f"{number(a.get('control_max_ml'), 1)} | {number(a.get('real_normal_head_ml'), 1)}"
                         + (f" (+ {number(a['real_normal_head_in_finding_ml'], 1)} in its own lesion)"
                            if a.get("real_normal_head_in_finding_ml") is not None else "") + " |")
        return lines
    lines.append("| class | " + " | ".join(f"{label} ICC(A,1) | {label} Dice | n" for label, _ in approaches) + " |")
    lines.append("|---|" + "---|---|---|" * len(approaches))
    for cls in (*CLASSES, "all"):
        cells = [a.get(cls, {}) for _, a in approaches]
        lines.append(f"| {cls} | " + " | ".join(f"{number(c.get('icc_a1'))} | {dice(c)} | {c.get('n', '-')}"
                                               for c in cells) + " |")
    controls = "; ".join(f"{label} " + ", ".join(f"{v:g}" for v in a.get("control_false_ml", [])) + " mL"
                         for label, a in approaches)
    lines += ["", f"Volume claimed on control scans (no infarct): {controls}."]
    return lines


_SMOOTHING_RULE = ("each network's probability map, inside the analysis region, is averaged in-plane with a "
                   "Gaussian of sigma smoothing_mm over region voxels only, then cut at its cut-off")


def architecture_from_card(card: Mapping) -> str:
    """The registry name of the card's architecture; cards written before it was named mean the paper's CNN.

    >>> architecture_from_card({"architecture": {"input": [3, 19, 19]}})
    'barros2020-patch-cnn'
    """
    return str((card.get("architecture") or {}).get("name", PAPER_ARCHITECTURE))


def cutoffs_chosen_on(card: Mapping) -> str:
    """Where the card's cut-offs were chosen, in words for run.json and the report's methods.

    >>> cutoffs_chosen_on({"training": {}})
    'validation scans of the training cohort'
    >>> cutoffs_chosen_on({"training": {"calibration": {"n_scans": 48, "cohort": "c", "controls": 5,
    ...                                                 "control_tolerance_ml": 2.0}}})
    '48 calibration scans of c (5 controls), not trained on; a control scored 2 / (2 + mL claimed)'
    """
    calibration = (card.get("training") or {}).get("calibration")
    if not calibration:
        return "validation scans of the training cohort"
    tolerance = calibration.get("control_tolerance_ml")
    return (f"{calibration.get('n_scans')} calibration scans of {calibration.get('cohort')} "
            f"({calibration.get('controls')} controls), not trained on"
            + (f"; a control scored {tolerance:g} / ({tolerance:g} + mL claimed)" if tolerance else ""))


def card_smoothing_mm(card: Mapping) -> float:
    return float((card.get("postprocess") or {}).get("smoothing_mm", 0.0))


def _postprocess_number(card: Mapping, key: str) -> float | None:
    value = (card.get("postprocess") or {}).get(key)
    return None if value is None else float(value)


def card_gate_hu(card: Mapping) -> float | None:
    """The card's contralateral gate in HU (`corelab.segment.contralateral`); None (off) when absent."""
    return _postprocess_number(card, "contralateral_gate_hu")


def card_hemorrhage_beside_mm(card: Mapping) -> float | None:
    """The card's hemorrhage rule in mm (`corelab.segment.labels.hemorrhage_beside`); None (off) when absent."""
    return _postprocess_number(card, "hemorrhage_beside_mm")


_HEMORRHAGE_RULE = ("after the cut-offs and precedence, each connected part of the hemorrhage claim (label 4, face "
                    "connected) is kept only when a hypodense claim of the other networks (labels 1-3, before "
                    "precedence) lies within hemorrhage_beside_mm of it; otherwise it is dropped (the reference's rule: "
                    "hemorrhage within or beside the infarct)")
_GATE_RULE = ("after the cut-offs, each connected part of the hypodense claim (labels 1-3; in-plane 8-connected, "
              "slices face to face) is dropped unless the median over its voxels of (mirror HU - HU) is at least "
              "contralateral_gate_hu, counting voxels whose mirror across the head's midline is brain; parts with "
              "under half such voxels are kept")
_NORM_RULE = "clip to [clip_low_hu, clip_high_hu], then (HU - center_hu) / scale_hu"
_BRAIN_RULE = "shift the scan so the median HU of its analysis region is brain_reference_hu, then "


def norm_from_card(fields: Mapping) -> InputNorm:
    """The card's hu_input; cards written before brain_reference_hu existed mean absolute HU."""
    reference = fields.get("brain_reference_hu")
    return InputNorm(
        **{key: float(fields[key]) for key in asdict(InputNorm()) if key != "brain_reference_hu"},
        brain_reference_hu=None if reference is None else float(reference),
    )
