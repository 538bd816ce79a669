"""`corelab train --recalibrate`: smoothing and cut-offs chosen again for trained networks, on scans
they never saw, without training them again.

The cut-offs decide how much of a probability map becomes infarct, and the training recipe chooses
them on its few validation scans, so they rest on a handful of patients. Here every scan of a second
annotated cohort is a calibration scan: the networks' dense maps on each, then the rule of
`corelab.train.cutoffs` (smoothing and cut-offs chosen together for the mean per-scan Dice of the
union; the single-CNN baseline's cut-off beside the same hemorrhage CNN), optionally with controls
scored by the volume claimed on them (`control_tolerance_ml`). The weights are not touched; the
card's cut-offs, smoothing and rule change, so the model's version changes with them, and held-out
scores measured at the old cut-offs are removed from the card (they no longer describe it).

A core lab can do this with its own scanners' annotated scans, or on phantoms drawn with a seed
the training cohort did not use (the shipped weights keep their training-time cut-offs; README
"Status" says why). Scans the networks were trained on must not be used: a cohort made by
`corelab synth` with the training cohort's seed is refused.

Maps are kept per scan in `MODELS_DIR/.checkpoints/calibration-<key>/` while the run lasts, so an
interrupted run continues with `resume`; they are removed once the cards are written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from corelab.config import CLASSES, HEMORRHAGE_HU, SYNTH_RECORD_FILE, Method
from corelab.errors import ModelError
from corelab.io.manifest import find_manifest
from corelab.segment.card import SINGLE_NAME, markdown_card, version_string
from corelab.segment.folder import ModelSet, load_models
from corelab.train.cohort import CohortError, load_cohort
from corelab.train.cutoffs import (
    SMOOTHING_GRID_MM,
    ValidationMaps,
    choose_cutoffs,
    choose_smoothing_and_cutoffs,
    union_claim_ml,
    union_dice,
    validation_maps,
)

__all__ = ["CalibrationSummary", "TrainingScansError", "RecalibrationFolderError", "recalibrate_models"]


class TrainingScansError(CohortError):
    """The calibration cohort holds the scans the networks were trained on."""


class RecalibrationFolderError(ModelError):
    """The model folder cannot be recalibrated as given (a single/ folder, or a single/ baseline
    beside another hemorrhage CNN)."""


@dataclass(frozen=True)
class CalibrationSummary:
    """What `recalibrate_models` chose and measured (printed by the CLI)."""

    folders: tuple[Path, ...]
    n_scans: int
    n_controls: int
    smoothing_mm: float
    cutoffs: dict[str, float]
    dice: dict[str, float]
    control_claims_ml: dict[str, dict[str, float]]
    seconds: float

    def __str__(self) -> str:
        lines = [f"Cut-offs chosen again on {self.n_scans} calibration scans ({self.n_controls} controls) in "
                 f"{self.seconds / 60:.1f} min; smoothing {self.smoothing_mm:g} mm; written to "
                 + ", ".join(str(folder) for folder in self.folders)]
        for approach, dice in self.dice.items():
            claims = list(self.control_claims_ml[approach].values())
            lines.append(f"  {approach:<10} mean union Dice {dice:.3f}"
                         + (f"; controls claimed median {np.median(claims):.1f} mL, max {max(claims):.1f} mL"
                            if claims else ""))
        lines.append("  cut-offs " + ", ".join(f"{name} {value:.3f}" for name, value in self.cutoffs.items()))
        return "\n".join(lines)


def recalibrate_models(
    cohort_dir: str | Path,
    models_dir: str | Path,
    *,
    control_tolerance_ml: float | None = None,
    threads: int = 1,
    resume: bool = False,
    segments: tuple[str, ...] | None = None,
    log: Callable[[str], None] = print,
) -> CalibrationSummary:
    """Choose smoothing and cut-offs again for the model folder `models_dir` (and its `single/`
    baseline when present) on every scan of `cohort_dir`, and rewrite their cards.

    cohort_dir: laid out as for `corelab train` (manifest, manual/<id> reads, optional truth/ labels);
        none of its scans may be training scans of the networks.
    control_tolerance_ml: how a control scores (`corelab.train.cutoffs.union_dice`); None: 1 when
        nothing is claimed, else 0, as in training.
    A folder whose card smooths nothing (the paper's per-voxel cut, `models/barros2020/`) keeps
    smoothing 0; others choose it from `SMOOTHING_GRID_MM` as training does.
    Raises `TrainingScansError` for the training cohort itself, `CohortError` subclasses for an
    unusable cohort, `ModelError` subclasses for an unreadable model folder (`RecalibrationFolderError`
    for one that cannot be recalibrated as given).
    """
    started = time.time()
    cohort_dir, models_dir = Path(cohort_dir), Path(models_dir)
    three = load_models(models_dir)
    if three.is_single:
        raise RecalibrationFolderError(f"{models_dir} is a single-CNN folder; recalibrate the three-CNN folder "
                                       "above it (its single/ baseline is recalibrated with it).")
    single = load_models(models_dir / SINGLE_NAME) if (models_dir / SINGLE_NAME / "card.json").is_file() else None
    _refuse_training_scans(cohort_dir, three.card)
    networks = dict(three.networks)
    if single is not None:
        if single.checksums.get("hemorrhage.pt") != three.checksums.get("hemorrhage.pt"):
            raise RecalibrationFolderError(f"{models_dir / SINGLE_NAME} has another hemorrhage CNN than {models_dir}; "
                                           "the single baseline is calibrated beside the three-CNN folder's own.")
        networks[SINGLE_NAME] = single.networks[SINGLE_NAME]
    folder = _maps_dir(cohort_dir, three, single, segments)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        maps = _calibration_maps(cohort_dir, three, networks, folder, resume=resume, segments=segments, log=log)
    finally:
        torch.set_num_threads(previous_threads)
    four = [*CLASSES, "hemorrhage"]
    grid_mm = (0.0,) if three.smoothing_mm == 0 else SMOOTHING_GRID_MM
    smoothing_mm, cutoffs, samples = choose_smoothing_and_cutoffs(
        maps, four, pixel_mm=three.grid.pixel_mm, smoothing_grid_mm=grid_mm, log=log,
        control_tolerance_ml=control_tolerance_ml, scans="calibration")
    approaches = {"three-cnn": four}
    if single is not None:
        cutoffs.update(choose_cutoffs(samples, [SINGLE_NAME], fixed={"hemorrhage": cutoffs["hemorrhage"]},
                                      control_tolerance_ml=control_tolerance_ml))
        approaches["single"] = [SINGLE_NAME, "hemorrhage"]
    dice, claims = {}, {}
    for approach, names in approaches.items():
        chosen = {name: cutoffs[name] for name in names}
        dice[approach] = float(np.mean([union_dice(s, chosen, control_tolerance_ml=control_tolerance_ml)
                                        for s in samples]))
        claims[approach] = {s.patient_id: round(union_claim_ml(s, chosen), 2) for s in samples
                            if not (s.kind > 0).any()}
        for pid, claimed in claims[approach].items():
            log(f"{approach}: calibration control {pid}: {claimed:.1f} mL claimed at these cut-offs")
    record = _calibration_record(cohort_dir, maps, control_tolerance_ml, grid_mm)
    folders = [(three, four, "three-cnn")] + ([(single, [SINGLE_NAME, "hemorrhage"], "single")] if single else [])
    for model, names, approach in folders:
        _rewrite_card(Path(model.folder), {name: cutoffs[name] for name in names}, smoothing_mm,
                      {**record, "mean_union_dice": round(dice[approach], 4),
                       "controls_claimed_ml": claims[approach]})
    shutil.rmtree(folder, ignore_errors=True)
    try:  # `corelab train` keeps its own checkpoints here too: the folder goes only when empty
        folder.parent.rmdir()
    except OSError:
        pass
    return CalibrationSummary(
        folders=tuple(Path(model.folder) for model, _, _ in folders), n_scans=len(maps),
        n_controls=sum(not (m.kind > 0).any() for m in maps), smoothing_mm=smoothing_mm,
        cutoffs=dict(cutoffs), dice=dice, control_claims_ml=claims, seconds=time.time() - started)


def _refuse_training_scans(cohort_dir: Path, card: dict) -> None:
    """Refuse the training cohort: the same `corelab synth` seed (and so the same patients) or, for
    cohorts not made by corelab synth, the same folder name the card records."""
    training = card.get("training", {})
    trained = training.get("cohort_generator") or {}
    record = cohort_dir / SYNTH_RECORD_FILE
    generator = json.loads(record.read_text()) if record.is_file() else {}
    if trained and generator and trained.get("seed") == generator.get("seed") \
            and trained.get("background") == generator.get("background"):
        raise TrainingScansError(
            f"{cohort_dir} was made by corelab synth with seed {generator.get('seed')}, the seed of the cohort the "
            "networks were trained on: its patients are the training patients. Calibrate on scans the networks "
            "never saw (another seed, or a core lab's own annotated scans).")
    if not generator and training.get("cohort") == cohort_dir.resolve().name:
        raise TrainingScansError(
            f"{cohort_dir} has the name of the cohort the networks were trained on ({training['cohort']}); calibrate "
            "on scans the networks never saw.")


def _maps_dir(cohort_dir: Path, model: ModelSet, single: ModelSet | None, segments) -> Path:
    """`MODELS_DIR/.checkpoints/calibration-<key>`: the key fingerprints the cohort (its manifest and
    every file of its reads and truth labels), the segments read, and the weights of both folders, so a
    resumed run never reuses another run's maps or references."""
    from corelab.audit import file_sha256

    manifest = find_manifest(cohort_dir)
    reads = sorted((str(path.relative_to(cohort_dir)), file_sha256(path))
                   for sub in ("manual", "truth") if (cohort_dir / sub).is_dir()
                   for path in (cohort_dir / sub).rglob("*") if path.is_file())
    key = repr((cohort_dir.resolve().name, file_sha256(manifest) if manifest else "", reads,
                sorted(segments) if segments else None, sorted(model.checksums.items()),
                sorted(single.checksums.items()) if single is not None else None, model.card.get("hu_input")))
    return Path(model.folder) / ".checkpoints" / f"calibration-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _calibration_maps(cohort_dir: Path, model: ModelSet, networks: dict, folder: Path, *, resume: bool, segments,
                      log) -> list[ValidationMaps]:
    """The dense maps of every cohort scan, kept per scan in `folder` (`_maps_dir`) for a resumed run."""
    if not resume and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    method = Method(grid=model.grid)
    inputs = _model_inputs(model)
    scans = load_cohort(cohort_dir, method=method, norm=model.norm, hemorrhage_hu=HEMORRHAGE_HU, log=log,
                        inputs=inputs, segments=segments, purpose="calibration")
    log(f"choosing smoothing and cut-offs on the dense maps of {len(scans)} calibration scans "
        f"({sum(not (s.reference & s.region).any() for s in scans)} controls)")
    maps = []
    for index, scan in enumerate(scans, 1):
        path = folder / f"{index:04d}.npz"
        if path.is_file() and (kept := _read_maps(path)).patient_id == scan.patient_id:
            maps.append(kept)
            log(f"calibration maps {index}/{len(scans)} {scan.patient_id}: kept from the interrupted run")
            continue
        begun = time.time()
        made = validation_maps(scan, networks, pad_value=model.norm.pad_value)
        _write_maps(path, made)
        maps.append(made)
        log(f"calibration maps {index}/{len(scans)} {scan.patient_id}: {time.time() - begun:.0f} s")
    return maps


def _model_inputs(model: ModelSet) -> tuple[str, ...]:
    from corelab.segment.networks import architecture_inputs

    return architecture_inputs(type(next(iter(model.networks.values()))))


def _write_maps(path: Path, maps: ValidationMaps) -> None:
    partial = path.with_name(f".tmp-{path.name}")
    with open(partial, "wb") as handle:
        np.savez(handle, patient_id=np.array(maps.patient_id), region=maps.region, kind=maps.kind,
                 voxel_ml=np.array(maps.voxel_ml), names=np.array(list(maps.probabilities)),
                 **{f"p_{i}": prob for i, prob in enumerate(maps.probabilities.values())})
    partial.replace(path)


def _read_maps(path: Path) -> ValidationMaps:
    with np.load(path) as saved:
        names = [str(name) for name in saved["names"]]
        return ValidationMaps(str(saved["patient_id"]), saved["region"], saved["kind"],
                              {name: saved[f"p_{i}"] for i, name in enumerate(names)},
                              voxel_ml=float(saved["voxel_ml"]))


def _calibration_record(cohort_dir: Path, maps: list[ValidationMaps], tolerance: float | None,
                        grid_mm: tuple[float, ...]) -> dict:
    generator = cohort_dir / SYNTH_RECORD_FILE
    return {
        "cohort": cohort_dir.resolve().name,
        "cohort_generator": json.loads(generator.read_text()) if generator.is_file() else None,
        "n_scans": len(maps),
        "controls": sum(not (m.kind > 0).any() for m in maps),
        "rule": "every scan of the calibration cohort (none trained on): smoothing of "
                + ", ".join(f"{mm:g}" for mm in grid_mm) + " mm and cut-offs chosen together (coordinate ascent) "
                "for the mean per-scan Dice of the union, the single CNN's beside the same hemorrhage CNN"
                + ("; a control scores 1 when nothing is claimed, else 0" if tolerance is None else
                   f"; a control scores T / (T + claimed mL) with T = {tolerance:g} mL"),
        "control_tolerance_ml": tolerance,
    }


def _rewrite_card(folder: Path, cutoffs: dict[str, float], smoothing_mm: float, calibration: dict) -> None:
    """New cut-offs, smoothing and their rule in card.json and MODEL_CARD.md; weights untouched.
    Validation and held-out scores, measured at the old cut-offs, are dropped, and the headline says
    so (it keeps the warning against measuring with weights not scored since)."""
    path = folder / "card.json"
    card = json.loads(path.read_text())
    old_version = version_string(card)
    card["cutoffs"] = {name: float(cutoffs[name]) for name in card["networks"]}
    card["postprocess"] = {**card["postprocess"], "smoothing_mm": float(smoothing_mm)}
    training = dict(card.get("training", {}))
    training["smoothing_rule"] = (f"the in-plane Gaussian sigma re-chosen with the cut-offs on the calibration "
                                  f"scans of {calibration['cohort']}: " + calibration["rule"])
    training["cutoff_rule"] = (f"re-chosen without retraining on {calibration['n_scans']} calibration scans of "
                               f"{calibration['cohort']} ({calibration['controls']} controls; "
                               f"`corelab train --recalibrate`): " + calibration["rule"])
    training["calibration"] = {**calibration, "replaces_version": old_version}
    card["training"] = training
    claims = list(calibration["controls_claimed_ml"].values())
    # Validation and held-out scores were measured at the old cut-offs: they no longer describe the model.
    card["scores"] = {"calibration": {
        "mean_union_dice": calibration["mean_union_dice"], "n_scans": calibration["n_scans"],
        "cohort": calibration["cohort"],
        "control_median_ml": round(float(np.median(claims)), 2) if claims else None,
        "control_max_ml": round(float(max(claims)), 2) if claims else None}}
    card["headline"] = (f"**Cut-offs chosen again on {calibration['n_scans']} calibration scans** "
                        f"(`corelab train --recalibrate`, replacing {old_version}); not scored on held-out "
                        "scans since: do not use these weights to measure infarcts until they are.")
    partial = folder / ".tmp-card.json"
    partial.write_text(json.dumps(card, indent=2, default=str) + "\n")
    partial.replace(path)
    (folder / "MODEL_CARD.md").write_text(markdown_card(card, version_string(card)))
