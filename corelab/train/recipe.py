"""`corelab train`: the paper's training recipe on a cohort laid out like `corelab synth` output.

Recipe (Sales Barros et al. 2020, "CNN-based infarct segmentation"; choices the paper leaves open
are marked *):
    - patients grouped by the mean HU of their reference infarct without hemorrhage (severe [14, 22),
      intermediate [22, 32), subtle [32, 44]); one CNN per group, a fourth for hemorrhage, all with
      the same architecture (the paper's `corelab.segment.barros2020.PatchCNN`, or
      `TrainOptions.architecture`);
    - patient split per network (`corelab.train.cohort.split_cohort`): up to 20 validation scans each;
    - patches only inside the analysis region; foreground = the network's lesion, background = the
      rest of the region (hemorrhage voxels are neither for the infarct CNNs); `background_ratio`
      background patches per foreground patch*, half of the background "hard"*: near the lesion
      border, next to CSF, sulci and skull, and hypodense (hyperdense for hemorrhage) mimics, and
      for the infarct CNNs a quarter* from training patients of the other groups and controls;
    - augmentation of foreground patches only: sagittal flip and rotation (quarter turns*, see
      `corelab.train.patches.augment_windows`); optionally a calibration offset on every patch*;
    - Adam*, binary cross-entropy*, fixed seeds;
    - cut-offs (after all networks are trained, with their own seeded stream, so they do not change
      the networks): chosen together to maximize the mean Dice of the union over all validation
      scans, every network's and the validation controls* (see `corelab.train.cutoffs`); the
      single-CNN baseline's cut-off on the same scans by the same rule, next to the same
      hemorrhage CNN;
    - single-CNN baseline (`single=True`, written to `<out>/single/`): one CNN trained on every
      infarct group with the same data and recipe, shipped with the same hemorrhage CNN.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from corelab.config import CLASSES, HEMORRHAGE_HU, SYNTH_RECORD_FILE, Method
from corelab.io.manifest import find_manifest
from corelab.segment.card import SINGLE_NAME, save_models
from corelab.segment.networks import ARCHITECTURES, PAPER_ARCHITECTURE, architecture_inputs, build_network
from corelab.segment.norm import BRAIN_REFERENCE_HU, InputNorm
from corelab.segment.patches import extract_patches
from corelab.train.cohort import CohortSplit, PreparedScan, load_cohort, split_cohort
from corelab.train.cutoffs import (
    SMOOTHING_GRID_MM,
    choose_cutoffs,
    choose_smoothing_and_cutoffs,
    union_claim_ml,
    union_dice,
    validation_maps,
)
from corelab.train.patches import AUGMENT_SIZE, augment_windows, hard_background, sample_voxels

__all__ = [
    "TrainOptions", "TrainSummary", "paper_options", "train_models", "fit_network", "network_patches", "validation_loss"]



@dataclass(frozen=True)
class TrainOptions:
    """Training parameters; the defaults are sized for a cohort of about 100 scans (README gives the
    measured times and why each default was chosen).

    patches_per_class: foreground patches per network.
    background_ratio: background patches per foreground patch (1 = balanced, as the paper's
        "balanced" sampling; 3 puts more of the normal brain, which is most of every scan, in front
        of the network at the same number of lesion patches).
    epochs, batch_size, learning_rate: Adam on binary cross-entropy; the epoch with the lowest loss on
        validation patches is kept.
    val_scans: validation scans per network (paper: 20).
    calibration_shift_hu: each training patch (lesion and background alike) is shifted by one HU
        offset drawn uniformly from +-this, new every epoch*. Scanners differ in calibration by a few
        HU; a network that must not lean on the absolute level of a whole scan learns the local
        contrast instead. 0 = off (the paper augments only by flips and rotations). With the
        brain-referenced input (`norm`) it stands for the error of the reference itself (a large
        lesion moves the median by 1-3 HU).
    contrast_jitter: each training patch's contrast about the brain reference (about `InputNorm.center_hu`
        with absolute-HU input) is scaled by one factor
        drawn log-uniformly from [1 / (1 + this), 1 + this], new every epoch* (scan and mirror alike).
        Reconstruction kernel, kVp and phantom generators differ in grey-white and lesion contrast;
        0 = off (the shipped recipe; see README "Status").
    noise_jitter_hu: each training patch gets added noise of one standard deviation drawn uniformly
        from [0, this] HU (a 3x3 box-filtered Gaussian, independent per channel, so slices and mirror
        differ as real noise does), new every epoch*; a network that must not lean on one generator's
        noise texture. 0 = off.
    control_tolerance_ml: how a validation control scores in the cut-off choice. None: 1 when nothing
        is claimed, else 0 (the claim's size does not count). A number T: T / (T + claimed mL), so a
        control claiming 100 mL costs more than one claiming 2 mL (`corelab.train.cutoffs.union_dice`).
    contralateral_gate_hu: recorded in the card: in use, hypodense claimed parts not at least this
        many HU darker than their mirror are dropped (`corelab.segment.contralateral`). It does not
        change training or the cut-offs (chosen without it). None = off, as the paper.
    hemorrhage_beside_mm: recorded in the card: in use, a connected hemorrhage claim is kept only when
        a hypodense claim lies within this many mm of it (`corelab.segment.labels.hemorrhage_beside`).
        It does not change training or the cut-offs (chosen without it). None = off, as the paper.
    norm: HU handling; by default brain-referenced (`corelab.segment.norm.InputNorm`, `BRAIN_REFERENCE_HU`).
    hard_fraction: share of background patches drawn from the hard strata.
    opposite_negatives: architectures reading the mirror only: a fourth hard stratum, as large as
        each of the three, of background voxels whose mirror across the midline is lesion (taken from
        the uniform share)*. A network that sees the lesion in its mirror channel must learn that the
        healthy side opposite an infarct is not infarct. False = off (the shipped recipe; README "Status").
    other_background_fraction: share of an infarct CNN's background from other groups' patients.
    smoothing_grid_mm: in-plane Gaussian sigmas (mm) tried for the probability maps; the one whose
        cut-offs give the best union Dice on the validation scans is recorded in the card.
    hemorrhage_hu: hemorrhage rule for scans without truth labels (see `corelab.train.cohort`).
    threads: torch CPU threads while training (1 by default; README says why).
    architecture: the registered network architecture to train (`corelab.segment.networks`): the
        paper's CNN, or one with more input volumes (e.g. the scan's mirror), same recipe.
    """

    patches_per_class: int = 40_000
    background_ratio: float = 1.0
    epochs: int = 8
    batch_size: int = 128
    learning_rate: float = 1e-3
    calibration_shift_hu: float = 3.0
    contrast_jitter: float = 0.0
    noise_jitter_hu: float = 0.0
    control_tolerance_ml: float | None = None
    contralateral_gate_hu: float | None = None
    hemorrhage_beside_mm: float | None = None
    val_scans: int = 20
    hard_fraction: float = 0.5
    opposite_negatives: bool = False
    other_background_fraction: float = 0.25
    smoothing_grid_mm: tuple[float, ...] = SMOOTHING_GRID_MM
    hemorrhage_hu: float = HEMORRHAGE_HU
    threads: int = 1
    method: Method = field(default_factory=Method)
    norm: InputNorm = field(default_factory=lambda: InputNorm(brain_reference_hu=BRAIN_REFERENCE_HU))
    architecture: str = PAPER_ARCHITECTURE

    @property
    def inputs(self) -> tuple[str, ...]:
        """The input volumes the architecture reads (`corelab.segment.inputs`)."""
        return architecture_inputs(ARCHITECTURES[self.architecture])


def paper_options(**changes) -> TrainOptions:
    """The recipe of the replication baseline (`models/barros2020/`): the paper's input and
    post-processing with corelab's training loop. Absolute HU (no brain reference), no smoothing
    of the probability maps, no calibration offsets (the paper augments lesion patches by flips and
    rotations only). What stays corelab's: the cut-offs chosen together for the union's Dice on the
    validation scans (the paper: "optimized with the data in the validation set"), early stopping on
    validation patches, and the hard-negative sampling of background patches."""
    from dataclasses import replace

    return replace(TrainOptions(norm=InputNorm(brain_reference_hu=None), smoothing_grid_mm=(0.0,),
                                calibration_shift_hu=0.0), **changes)


@dataclass(frozen=True)
class TrainSummary:
    """What `train_models` wrote: folders, smoothing, cut-offs, validation Dice and sizes per network."""

    out_dir: Path
    single_dir: Path | None
    cutoffs: dict[str, float]
    validation_dice: dict[str, float]
    n_train: dict[str, int]
    n_val: dict[str, int]
    seconds: float
    smoothing_mm: float = 0.0

    def __str__(self) -> str:
        lines = [f"models written to {self.out_dir}" + (f" (single-CNN baseline in {self.single_dir})" if self.single_dir else "")]
        for name, cutoff in self.cutoffs.items():
            lines.append(f"  {name:<12} cut-off {cutoff:.3f}  validation Dice {self.validation_dice[name]:.2f}  "
                         f"({self.n_train[name]} training / {self.n_val[name]} validation scans)")
        lines.append(f"  probability maps smoothed in-plane with sigma {self.smoothing_mm:g} mm before the cut-offs")
        lines.append(f"  {self.seconds / 60:.1f} min")
        return "\n".join(lines)


def _masks(scan: PreparedScan, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(foreground, background) of one network on one scan, both inside the region."""
    if name == "hemorrhage":
        return scan.hemorrhage & scan.region, scan.region & ~scan.hemorrhage
    lesion = scan.infarct if name == SINGLE_NAME else scan.infarct if scan.hypodensity == name else None
    background = scan.region & ~scan.reference & ~scan.hemorrhage
    if lesion is None:  # another group's patient: background only
        return np.zeros(scan.region.shape, bool), background
    return lesion & scan.region, background


def _split_counts(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def network_patches(
    name: str,
    donors: list[PreparedScan],
    others: list[PreparedScan],
    options: TrainOptions,
    *,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Training patches of one network: (float16 `[N, channels, 19, 19]`, float32 labels `[N]`).

    `patches_per_class` lesion patches and `background_ratio` times as many background patches.

    donors: scans whose lesion is this network's foreground (and whose region gives background);
    others: training scans of other groups (background only, infarct CNNs).
    """
    n_fg = options.patches_per_class
    n_bg = int(round(n_fg * options.background_ratio))
    n_other = int(round(n_bg * options.other_background_fraction)) if others and name in CLASSES else 0
    pad = options.norm.pad_value
    patches, labels = [], []
    for scan, fg_count, bg_count in zip(donors, _split_counts(n_fg, len(donors)), _split_counts(n_bg - n_other, len(donors))):
        x = scan.x.astype(np.float32)
        foreground, background = _masks(scan, name)
        if foreground.any():
            windows = extract_patches(x, sample_voxels(foreground, fg_count, rng=rng), pad_value=pad,
                                      size=AUGMENT_SIZE, center=AUGMENT_SIZE // 2)
            patches.append(augment_windows(windows, rng=rng).astype(np.float16))
            labels.append(np.ones(len(windows), np.float32))
        hard = hard_background(background, foreground=foreground, region=scan.region, hu=x if x.ndim == 3 else x[0],
                               spacing=scan.spacing, mimic_low=name != "hemorrhage")
        n_hard = _split_counts(int(round(bg_count * options.hard_fraction)), len(hard))
        centers = [sample_voxels(mask, k, rng=rng) for mask, k in zip(hard.values(), n_hard)]
        if options.opposite_negatives and scan.opposite is not None:
            centers.append(sample_voxels(background & scan.opposite, min(n_hard), rng=rng))
        centers.append(sample_voxels(background, bg_count - sum(len(c) for c in centers), rng=rng))
        centers = np.concatenate(centers)
        patches.append(extract_patches(x, centers, pad_value=pad).astype(np.float16))
        labels.append(np.zeros(len(centers), np.float32))
    for scan, count in zip(others, _split_counts(n_other, len(others)) if n_other else []):
        centers = sample_voxels(_masks(scan, name)[1], count, rng=rng)
        patches.append(extract_patches(scan.x.astype(np.float32), centers, pad_value=pad).astype(np.float16))
        labels.append(np.zeros(len(centers), np.float32))
    return np.concatenate(patches), np.concatenate(labels)


def fit_network(
    patches: np.ndarray,
    labels: np.ndarray,
    options: TrainOptions,
    *,
    seed: int,
    log: Callable[[str], None] = print,
    name: str = "",
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    checkpoint: Path | None = None,
) -> torch.nn.Module:
    """Train one network of `options.architecture` on patches (`[N, channels, 19, 19]`) and 0/1
    labels; returns it in eval mode.

    validation: patches and labels from validation scans. Given, the loss on them is logged after
    every epoch and the weights of the epoch with the lowest validation loss are returned (early
    stopping: more epochs can then only help or be ignored, never overfit the returned network).
    checkpoint: a file written after every epoch (weights, optimizer, random stream, best epoch);
    when it exists, training continues after its last epoch, with the same result as an
    uninterrupted run.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = build_network(options.architecture)
    best: tuple[float, int, dict] | None = None
    optimizer = torch.optim.Adam(net.parameters(), lr=options.learning_rate)
    first_epoch = 0
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        best, first_epoch = state["best"], state["epoch"]
        log(f"{name}: resuming after epoch {first_epoch} ({checkpoint})")
    x_all, y_all = torch.from_numpy(patches), torch.from_numpy(labels)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for epoch in range(first_epoch, options.epochs):
        net.train()
        order = torch.randperm(len(y_all), generator=generator)
        total, correct, seen = 0.0, 0, 0
        for start in range(0, len(order), options.batch_size):
            index = order[start:start + options.batch_size]
            x, y = x_all[index].float(), y_all[index]
            if options.calibration_shift_hu > 0:
                x = _shift_calibration(x, options, generator)
            if options.contrast_jitter > 0 or options.noise_jitter_hu > 0:
                x = _jitter_texture(x, options, generator)
            logits = net(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
            correct += int(((logits > 0).float() == y).sum())
            seen += len(index)
        line = f"{name}: epoch {epoch + 1}/{options.epochs} loss {total / seen:.4f} patch accuracy {correct / seen:.3f}"
        if validation is not None and len(validation[1]):
            val_loss = validation_loss(net, *validation)
            line += f", validation loss {val_loss:.4f}"
            if best is None or val_loss < best[0]:
                best = (val_loss, epoch + 1, {key: value.clone() for key, value in net.state_dict().items()})
        log(line)
        if checkpoint is not None:
            _save_checkpoint(checkpoint, {"net": net.state_dict(), "optimizer": optimizer.state_dict(),
                                          "generator": generator.get_state(), "best": best, "epoch": epoch + 1})
    if best is not None:
        net.load_state_dict(best[2])
        log(f"{name}: keeping epoch {best[1]} (lowest validation loss {best[0]:.4f})")
    return net.eval()


def _save_checkpoint(path: Path, state: dict) -> None:
    """`state` to `path` atomically (a stopped run leaves the previous epoch's file whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)


def validation_loss(net: torch.nn.Module, patches: np.ndarray, labels: np.ndarray, *, batch_size: int = 2048) -> float:
    """Mean binary cross-entropy of ``net`` on patches (`[N, channels, 19, 19]`) and 0/1 labels, without training."""
    was_training = net.training
    net.eval()
    total = 0.0
    with torch.inference_mode():
        for start in range(0, len(labels), batch_size):
            x = torch.from_numpy(patches[start:start + batch_size]).float()
            y = torch.from_numpy(labels[start:start + batch_size])
            total += float(torch.nn.functional.binary_cross_entropy_with_logits(net(x), y, reduction="sum"))
    net.train(was_training)
    return total / len(labels)


def _shift_calibration(x: torch.Tensor, options: TrainOptions, generator: torch.Generator) -> torch.Tensor:
    """Patches `[N, channels, 19, 19]` (normalized input) each moved by one HU offset (all channels alike, as a
    scanner's calibration moves the scan and its mirror together), kept in the clip range."""
    norm = options.norm
    shift_hu = (torch.rand(len(x), generator=generator) * 2 - 1) * options.calibration_shift_hu
    high = (norm.clip_high_hu - norm.center_hu) / norm.scale_hu
    # Air (the pad value) stays air: an offset moves tissue, not the clip.
    tissue = x > norm.pad_value
    return torch.where(tissue, (x + (shift_hu / norm.scale_hu)[:, None, None, None]).clamp(norm.pad_value, high), x)


def _jitter_texture(x: torch.Tensor, options: TrainOptions, generator: torch.Generator) -> torch.Tensor:
    """Patches (normalized input) with their contrast about the brain reference scaled and noise added
    (`TrainOptions.contrast_jitter`, `noise_jitter_hu`), tissue only, kept in the clip range."""
    norm = options.norm
    n = len(x)
    tissue = x > norm.pad_value
    high = (norm.clip_high_hu - norm.center_hu) / norm.scale_hu
    reference_hu = norm.brain_reference_hu if norm.brain_reference_hu is not None else norm.center_hu
    level = (reference_hu - norm.center_hu) / norm.scale_hu
    out = x
    if options.contrast_jitter > 0:
        bound = float(np.log1p(options.contrast_jitter))
        scale = torch.exp((torch.rand(n, generator=generator) * 2 - 1) * bound)[:, None, None, None]
        out = level + (out - level) * scale
    if options.noise_jitter_hu > 0:
        sd_hu = torch.rand(n, generator=generator) * options.noise_jitter_hu
        white = torch.randn((*x.shape[:2], x.shape[2] + 2, x.shape[3] + 2), generator=generator)
        # A 3x3 mean of white noise has 1/3 of its SD: scale back so sd_hu is the added noise's SD.
        box = torch.nn.functional.avg_pool2d(white, 3, stride=1) * 3.0
        out = out + box * (sd_hu / norm.scale_hu)[:, None, None, None]
    return torch.where(tissue, out.clamp(norm.pad_value, high), x)


def train_models(
    cohort_dir: str | Path,
    out_dir: str | Path,
    *,
    single: bool = False,
    seed: int = 0,
    options: TrainOptions = TrainOptions(),
    synthetic: bool | None = None,
    log: Callable[[str], None] = print,
    resume: bool = False,
    segments: tuple[str, ...] | None = None,
) -> TrainSummary:
    """Train the severe, intermediate, subtle and hemorrhage CNNs (and with `single`, the baseline).

    cohort_dir: manifest.xlsx/csv (patient_id, scan), manual/<id> reference reads (binary,
        hemorrhage included; any format `compare` reads, `corelab.io.reference`, ``segments`` the
        segment names to keep), optional truth/<id>.nii.gz labels (4 = hemorrhage).
    out_dir: model folder to write (weights, card.json, MODEL_CARD.md); `out_dir/single/` holds
        the baseline. synthetic: recorded in the card; None = True when the cohort folder holds
        a `corelab synth` trial (its truth.csv with the generator's target_hu column).
    resume: continue an interrupted run of the same cohort, options and seed from its checkpoints
        (`out_dir/.checkpoints/`, one file per network, written after every epoch); the result is
        the same as an uninterrupted run. Without it, old checkpoints are discarded. They are
        removed once the model folder is written.
    Raises `CohortError` subclasses for unusable cohorts (see `corelab.train.cohort`).

    Example: ``train_models("trial/", "models/", seed=0)`` then ``load_models("models/")``.
    """
    started = time.time()
    cohort_dir, out_dir = Path(cohort_dir), Path(out_dir)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(options.threads)
    try:
        rng = np.random.default_rng(seed)
        checkpoints = _checkpoint_dir(cohort_dir, out_dir, options, seed=seed, single=single)
        if not resume and checkpoints.exists():
            shutil.rmtree(checkpoints)
        scans = load_cohort(cohort_dir, method=options.method, norm=options.norm,
                            hemorrhage_hu=options.hemorrhage_hu, log=log, inputs=options.inputs,
                            segments=segments)
        split = split_cohort(scans, val_scans=options.val_scans, rng=rng)
        names = [*CLASSES, "hemorrhage"] + ([SINGLE_NAME] if single else [])
        networks = {name: _train_one(name, scans, split, options, seed=seed + index, rng=rng, log=log,
                                     checkpoint=checkpoints / f"{name}.pt")
                    for index, name in enumerate(names)}
        smoothing_mm, cutoffs, dice = _choose_all_cutoffs(networks, scans, split, options, log=log)
        if synthetic is None:
            synthetic = _looks_synthetic(cohort_dir)
        training = _training_record(cohort_dir, scans, split, options, seed=seed, synthetic=synthetic, names=names)
        if segments:
            training["reference_segments"] = list(segments)  # which segments of the manual reads were kept
        scores = {"validation_dice": {name: round(dice[name], 4) for name in names},
                  "note": "mean per-scan Dice of the approach's union (three CNNs or single, plus hemorrhage) "
                          + ("" if options.control_tolerance_ml is None else
                             f"(validation controls scored T / (T + claimed mL), T = {options.control_tolerance_ml:g} mL) ")
                          + "on each network's own validation scans (not held out)"}
        four = [*CLASSES, "hemorrhage"]
        save_models(out_dir, {n: networks[n] for n in four}, {n: cutoffs[n] for n in four},
                    norm=options.norm, grid=_grid(options), training=training, smoothing_mm=smoothing_mm,
                    contralateral_gate_hu=options.contralateral_gate_hu,
                    hemorrhage_beside_mm=options.hemorrhage_beside_mm,
                    scores={**scores, "validation_dice": {n: scores["validation_dice"][n] for n in four}})
        single_dir = None
        if single:
            single_dir = out_dir / "single"
            pair = (SINGLE_NAME, "hemorrhage")
            save_models(single_dir, {n: networks[n] for n in pair}, {n: cutoffs[n] for n in pair},
                        norm=options.norm, grid=_grid(options), training=training, smoothing_mm=smoothing_mm,
                        contralateral_gate_hu=options.contralateral_gate_hu,
                        hemorrhage_beside_mm=options.hemorrhage_beside_mm,
                        scores={**scores, "validation_dice": {n: scores["validation_dice"][n] for n in pair}})
        shutil.rmtree(checkpoints.parent, ignore_errors=True)
    finally:
        torch.set_num_threads(previous_threads)
    return TrainSummary(
        out_dir=out_dir, single_dir=single_dir, cutoffs=cutoffs, validation_dice=dice, smoothing_mm=smoothing_mm,
        n_train={name: len(split.train[name]) for name in names},
        n_val={name: len(split.val[name]) for name in names},
        seconds=time.time() - started,
    )


def _checkpoint_dir(cohort_dir: Path, out_dir: Path, options: TrainOptions, *, seed: int, single: bool) -> Path:
    """`out_dir/.checkpoints/<key>`: the key fingerprints what makes the networks (cohort manifest,
    options, seed), so a resumed run never continues another run's networks. The settings only
    recorded in the card (the contralateral gate, the hemorrhage rule) are left out of it: they
    change neither the networks nor the cut-offs, so changing them reuses the checkpoints."""
    from corelab.audit import file_sha256

    manifest = find_manifest(cohort_dir)
    makes = replace(options, contralateral_gate_hu=None, hemorrhage_beside_mm=None)
    recipe = repr((cohort_dir.resolve().name, file_sha256(manifest) if manifest else "", makes, seed, single))
    return out_dir / ".checkpoints" / hashlib.sha256(recipe.encode()).hexdigest()[:16]


def _train_one(name, scans, split: CohortSplit, options, *, seed, rng, log, checkpoint=None) -> torch.nn.Module:
    by_id = {scan.patient_id: scan for scan in scans}
    donors = [by_id[pid] for pid in split.train[name]]
    excluded = set(split.train[name]) | set(split.val[name])
    others = [by_id[pid] for pid in split.background if pid not in excluded]
    patches, labels = network_patches(name, donors, others, options, rng=rng)
    log(f"{name}: {len(donors)} training scans, {int(labels.sum())} lesion and {int((labels == 0).sum())} "
        f"background patches")
    # Validation patches come from the network's own validation scans (never trained on), drawn as
    # the training patches are, a fifth as many, from a stream of their own.
    val_donors = [by_id[pid] for pid in split.val[name]]
    validation = None
    if val_donors:
        val_options = replace(options, patches_per_class=max(1, options.patches_per_class // 5))
        validation = network_patches(name, val_donors, [], val_options, rng=np.random.default_rng([seed, 7]))
    return fit_network(patches, labels, options, seed=seed, log=log, name=name, validation=validation,
                       checkpoint=checkpoint)


def _choose_all_cutoffs(networks, scans, split: CohortSplit, options, *, log):
    """Smoothing (mm), cut-offs of all networks and each network's validation Dice: the mean Dice of
    its approach's union (three CNNs + hemorrhage, or single + hemorrhage) on its own validation scans.
    The single baseline gets the same smoothing as the three CNNs and its own cut-off beside their
    hemorrhage CNN."""
    by_id = {scan.patient_id: scan for scan in scans}
    ids = sorted(set().union(*split.val.values(), split.controls))
    log(f"choosing smoothing and cut-offs on the dense maps of {len(ids)} validation scans ({len(split.controls)} controls)")
    maps = []
    for index, pid in enumerate(ids, 1):
        started = time.time()
        maps.append(validation_maps(by_id[pid], networks, pad_value=options.norm.pad_value))
        log(f"validation maps {index}/{len(ids)} {pid}: {time.time() - started:.0f} s")
    four = [name for name in networks if name != SINGLE_NAME]
    tolerance = options.control_tolerance_ml
    smoothing_mm, cutoffs, samples = choose_smoothing_and_cutoffs(
        maps, four, pixel_mm=options.method.grid.pixel_mm, smoothing_grid_mm=options.smoothing_grid_mm, log=log,
        control_tolerance_ml=tolerance)
    log(f"smoothing chosen: {smoothing_mm:g} mm")
    for sample in samples:
        if not (sample.kind > 0).any():
            claimed = union_claim_ml(sample, {n: cutoffs[n] for n in four})
            log(f"validation control {sample.patient_id}: {claimed:.1f} mL claimed at these cut-offs")
    if SINGLE_NAME in networks:
        cutoffs.update(choose_cutoffs(samples, [SINGLE_NAME], fixed={"hemorrhage": cutoffs["hemorrhage"]},
                                      control_tolerance_ml=tolerance))
    dice = {}
    for name in networks:
        approach = ([SINGLE_NAME] if name == SINGLE_NAME else [n for n in four if n != "hemorrhage"]) + ["hemorrhage"]
        own = [sample for sample in samples if sample.patient_id in set(split.val[name])]
        dice[name] = float(np.mean([union_dice(sample, {n: cutoffs[n] for n in approach},
                                               control_tolerance_ml=tolerance) for sample in own]))
        log(f"{name}: cut-off {cutoffs[name]:.3f}, validation Dice {dice[name]:.3f} on {len(own)} scans")
    return smoothing_mm, cutoffs, dice


def _looks_synthetic(cohort_dir: Path) -> bool:
    """True for a `corelab synth` trial: its truth.csv has the generator's target_hu column."""
    truth = cohort_dir / "truth.csv"
    if not truth.is_file():
        return False
    with open(truth, encoding="utf-8", errors="replace") as handle:
        return "target_hu" in handle.readline().split(",")


def _grid(options: TrainOptions) -> dict:
    return {"slice_mm": options.method.grid.slice_mm, "pixel_mm": options.method.grid.pixel_mm}


def _training_record(cohort_dir, scans, split, options, *, seed, synthetic, names) -> dict:

    generator = cohort_dir / SYNTH_RECORD_FILE
    return {
        # The folder's name, not its path: a card travels to other machines and says nothing of this one.
        "cohort": cohort_dir.resolve().name,
        "cohort_generator": json.loads(generator.read_text()) if generator.is_file() else None,
        "synthetic": bool(synthetic),
        "seed": seed,
        "n_scans": len(scans),
        "classes": {c: sum(s.hypodensity == c for s in scans) for c in CLASSES},
        "hemorrhage_labels": {src: sum(s.hemorrhage_source == src for s in scans) for src in ("truth", "threshold")},
        "train_scans": {name: list(split.train[name]) for name in names},
        "validation_scans": {name: list(split.val[name]) for name in names},
        "patches_per_class": options.patches_per_class,
        "background_patches": f"{options.background_ratio:g} per lesion patch; "
                              f"{options.hard_fraction:.0%} hard (lesion border, CSF/sulci/skull edge, mimics)"
                              + ("; as many as each of those opposite the lesion across the midline, from the uniform share"
                                 if options.opposite_negatives and "mirror" in options.inputs else ""),
        "augmentation": "lesion patches only: sagittal flip (p=0.5) and in-plane rotation by a multiple of 90 degrees"
                        + (f"; all patches: calibration offset uniform +-{options.calibration_shift_hu:g} HU"
                           if options.calibration_shift_hu > 0 else "")
                        + (f"; all patches: contrast about the brain reference scaled log-uniformly within "
                           f"x/{1 + options.contrast_jitter:g}" if options.contrast_jitter > 0 else "")
                        + (f"; all patches: added 3x3-correlated noise, SD uniform 0-{options.noise_jitter_hu:g} HU"
                           if options.noise_jitter_hu > 0 else ""),
        "epochs": options.epochs,
        "early_stopping": "weights of the epoch with the lowest loss on patches of the network's validation scans",
        "optimizer": f"Adam lr {options.learning_rate}, batch {options.batch_size}, binary cross-entropy",
        "cutoff_rule": "chosen together (coordinate ascent) to maximize the mean per-scan Dice of the union of the "
                       "networks over all validation scans (every network's and the validation controls), on "
                       "dense maps of every region voxel; the single CNN's on the same scans beside the same "
                       "hemorrhage CNN"
                       + ("" if options.control_tolerance_ml is None else
                          f"; a validation control scores T / (T + claimed mL) with T = "
                          f"{options.control_tolerance_ml:g} mL instead of 1 when nothing is claimed, else 0"),
        "smoothing_rule": "the in-plane Gaussian sigma of " + ", ".join(f"{mm:g}" for mm in options.smoothing_grid_mm)
                          + " mm whose cut-offs reach the highest mean union Dice on the validation scans "
                          "(the single CNN uses the same)",
        "validation_controls": list(split.controls),
        "hemorrhage_rule": f"truth label 4, else reference voxels >= {options.hemorrhage_hu} HU",
    }
