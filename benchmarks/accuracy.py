"""Accuracy on phantoms of a family the models never saw, in the layout of the paper's Table 1.

    # the left-out benchmark: models trained on the procedural and atlas families, tested on the
    # real-CT family (lesions drawn into a real normal head) and on that head itself
    python benchmarks/accuracy.py --models models build/paper --family background \\
        --background benchmarks/data/real/cranium.nii.gz --schedule stratified --n-test 24 \\
        --normal-head benchmarks/data/real/cranium.nii.gz --csv F.csv
    python benchmarks/accuracy.py --from-csv F.csv ... [--record-card models --trained-on "..."]

Judge a model only on a family it was not trained on: held-out seeds of its own generator share the
generator's shortcuts (a smoke test, not a result). Families: procedural (`make_patient`), atlas
(MNI152 anatomy, `make_atlas_patient`), background (lesions and mimics drawn into a real normal head
CT, `make_background_patient`). Test patient i is the family's maker at key (test_seed, i), made in
memory; `--schedule stratified` draws severe, intermediate, subtle and control in turn (24 patients
= 6 of each), "mix" the trial's mix. Reference: the phantom's truth labels (nonzero = infarct,
hemorrhage included, as the paper's reference). Class: `hypodensity_class` of the reference's mean HU
without hemorrhage voxels. Controls are left out of Table 1, as the paper's test set had none, and
reported apart: their claimed volume (median, max), the false volume (claimed outside the reference)
on scans with mimics (leukoaraiosis, old infarcts, atrophy), and what is claimed on the real normal
head (`--normal-head`).

Each scan: analysis grid -> analysis region -> each model folder's networks (its three-CNN approach,
and its single-CNN baseline in folder/single) -> labels -> back to the scan's grid. Volumes are
label voxels x voxel volume (mL); Dice per patient; ICC(A,1) (two-way random, absolute agreement,
single measure) of automated vs reference volumes (pingouin's ICC(A,1) row). Every table also scores
the mirror rule (`benchmarks/mirror_rule.py`), the untrained floor a model must clear by far. Several
folders on the same patients give paired per-patient Dice differences (`--paired A B`).
`--maps DIR` keeps each approach's probability maps per patient and reads them back on a rerun with
the same weights (a card whose cut-offs or rules changed reuses them): post-processing experiments
(`--gate-hu`, `--hemorrhage-beside-mm`, `--skull-share`, ...) then take minutes, not hours.

`--unscored MASK` (a mask on the background's and the normal head's grid; used only for those two)
leaves a finding the background scan already holds out of the reference, the volumes, Dice, false
volumes and classes: its voxels are neither reference nor claim, what each approach claims inside it
is reported apart ("<key>_unscored_ml"), the reference it took "reference_unscored_ml", and a
patient whose drawn infarct lies wholly inside it is class "unscored" (neither in Table 1 nor a
control). The real head, Cranium.inv3, has a right frontal lesion (tests/helpers/real_head.py
`known_lesion`); benchmarks/leftout.sh passes its mask. Every row names the mask ("unscored"), and
files scored with different masks are refused together. The per-network claim columns
("<key>:<network>_claim_ml", on the analysis grid) count it in.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from mirror_rule import mirror_rule  # benchmarks/ is the script's folder, on sys.path

from corelab.config import CLASSES, LABELS, hypodensity_class
from corelab.segment.dense import dense_probabilities
from corelab.segment.folder import load_models
from corelab.segment.contralateral import contralateral_gate, mirror_views
from corelab.segment.labels import hemorrhage_beside, labels_from_probabilities, model_labels, smooth_probabilities

# The targets of the generalization issue, on every held-out family, three-CNN approach: overall
# ICC(A,1) and Dice, subtle Dice, control scans' claimed volume (median, max), the real normal head.
TARGETS = {"icc_a1": 0.90, "dice": 0.65, "subtle_dice": 0.50, "control_median_ml": 2.0, "control_max_ml": 10.0,
           "normal_head_ml": 5.0}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two bool masks; 1.0 when both are empty (nothing to find, nothing found)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def icc_a1(auto: pd.Series, reference: pd.Series) -> float:
    """ICC(A,1) (pingouin "ICC(A,1)", formerly "ICC2") of two volume columns; nan with fewer than 3 patients."""
    import pingouin

    if len(auto) < 3:
        return math.nan
    long = pd.DataFrame({
        "patient": np.tile(np.arange(len(auto)), 2),
        "method": np.repeat(["auto", "reference"], len(auto)),
        "ml": np.concatenate([auto.to_numpy(float), reference.to_numpy(float)]),
    })
    table = pingouin.intraclass_corr(long, targets="patient", raters="method", ratings="ml")
    types = table.set_index("Type")["ICC"]
    # pingouin 0.7 names it "ICC(A,1)"; older releases "ICC2" (same two-way random, absolute, single).
    return float(types["ICC(A,1)"] if "ICC(A,1)" in types.index else types["ICC2"])


def _without_small_parts(mask: np.ndarray, min_voxels: float) -> np.ndarray:
    """``mask`` without its 26-connected parts of fewer than ``min_voxels`` voxels."""
    from scipy import ndimage as ndi

    parts, _ = ndi.label(mask, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(parts.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[parts]


FAMILIES = ("procedural", "atlas", "background")
SCHEDULES = ("mix", "stratified")


def patient_class(schedule: str, i: int, hypodensity: str | None) -> str | None:
    """The class drawn for test patient i: `hypodensity` when given; "stratified" cycles severe,
    intermediate, subtle, none (24 patients: 6 of each, controls included); "mix" lets the family
    draw the trial's mix (10% controls, classes as the paper's Table 1).

    >>> [patient_class("stratified", i, None) for i in range(5)]
    ['severe', 'intermediate', 'subtle', 'none', 'severe']
    """
    if hypodensity is not None:
        return hypodensity
    return (*CLASSES, "none")[i % 4] if schedule == "stratified" else None


def _maker(family: str, background):
    from corelab.synth.atlas import make_atlas_patient
    from corelab.synth.phantom import make_patient

    if family == "background":
        if background is None:
            raise SystemExit("--family background needs --background (a normal head CT; benchmarks/fetch_real_head.sh)")
        from corelab.synth.background import load_background, make_background_patient

        bg = load_background(background)
        return lambda key, hypodensity: make_background_patient(bg, key, hypodensity=hypodensity)
    maker = {"procedural": make_patient, "atlas": make_atlas_patient}[family]
    return lambda key, hypodensity: maker(key, matrix=512, hypodensity=hypodensity)


def approaches_of(folders: list[Path]) -> dict[str, tuple]:
    """Approach key -> loaded ModelSet: each folder's three-CNN approach under its folder name, and
    its single-CNN baseline (folder/single, when present) under "<name>/single"."""
    out = {}
    for folder in folders:
        out[folder.name] = load_models(folder)
        if (folder / "single" / "card.json").is_file():
            out[f"{folder.name}/single"] = load_models(folder / "single")
    return out


def score_scan(row: dict, volume, reference: np.ndarray, voxel_ml: float, approaches: dict, *, min_component_ml=(),
               gate_hu=(), unscored: np.ndarray | None = None, hemorrhage_floor_hu=(), hemorrhage_beside_mm=(),
               skull_share=(), maps: Path | None = None) -> dict:
    """Add each approach's volume, Dice and per-network claims, and the mirror rule's, to ``row``.

    ``unscored`` (bool, the scan's grid): voxels left out of volumes, Dice and false volume (the
    caller leaves them out of ``reference`` too); each approach's claim there is "<key>_unscored_ml".
    ``hemorrhage_floor_hu`` (experiment): per value f, the approach's labels with the hemorrhage
    network's claim kept only where the scan, shifted as the networks saw it, reads >= f HU (the
    next network in precedence takes the voxel), under the key "<key>+hfloor<f>".
    ``hemorrhage_beside_mm`` (experiment): per value d, the approach's labels with each connected
    hemorrhage claim kept only when a hypodense claim lies within d mm of it (the reference's rule:
    hemorrhage within or beside the infarct), under the key "<key>+hbeside<d>".
    ``skull_share`` (experiment): per value s, the approach's labels without the hypodense claims of
    which more than s lies at the skull (`skull_dropped`; before the card's hemorrhage rule, so a
    hemorrhage claim beside only such a claim goes too), under the key "<key>+skull<s>".
    ``maps``: a folder where each approach's probability maps are kept per patient and read back on
    a rerun (`cached_probabilities`): the experiments above then cost no network time.

    An approach whose card sets a contralateral gate is scored gated, as `corelab.segment.segment`
    does; ``gate_hu`` adds, per value g, the labels `segment` gives with the card's gate set to g HU
    (its smoothing, cut-offs and hemorrhage rule as they are) under the key "<key>+gate<g>" (the
    same probabilities: a paired comparison at no extra network cost)."""
    from corelab.preprocess import (
        analysis_region,
        labels_to_input_grid,
        to_analysis_grid,
    )

    first = next(iter(approaches.values()))
    grid = to_analysis_grid(volume, first.grid)
    regions = analysis_region(grid.array, grid.spacing)
    grid_ml = float(np.prod(grid.spacing)) / 1000.0
    views = None
    if gate_hu or any(models.gate_hu is not None for models in approaches.values()):
        views = mirror_views(grid.array, regions.region, grid.spacing)

    def scored(auto: np.ndarray, key: str) -> np.ndarray:
        if unscored is None:
            return auto
        row[f"{key}_unscored_ml"] = (auto & unscored).sum() * voxel_ml
        return auto & ~unscored

    def put(key: str, labels: np.ndarray) -> None:
        auto = scored(labels_to_input_grid(labels, grid, volume) > 0, key)
        row[f"{key}_ml"], row[f"{key}_dice"] = auto.sum() * voxel_ml, dice(auto, reference)
        row[f"{key}_false_ml"] = (auto & ~reference).sum() * voxel_ml

    for key, models in approaches.items():
        # The mirror is read only by architectures whose inputs name it (as in `segment`).
        probs = cached_probabilities(
            maps, row["patient"], key, models, regions.region, grid.array,
            lambda: dense_probabilities(grid.array, regions.region, models.networks, norm=models.norm,
                                        device=models.device, spacing=grid.spacing,
                                        mirror_hu=views.hu if views is not None else None))
        for name, prob in smooth_probabilities(probs, regions.region, models.smoothing_px).items():
            row[f"{key}:{name}_claim_ml"] = float((regions.region & (prob >= models.cutoffs[name])).sum()) * grid_ml
        # As `segment` labels them (the card's hemorrhage rule and gate included); the experiments'
        # variants below start from the plain union ("ungated").
        ungated = labels_from_probabilities(probs, dict(models.cutoffs), regions.region, hu=grid.array,
                                            smoothing_px=models.smoothing_px)
        labels = model_labels(probs, models, regions.region, grid.array, grid.spacing, views)
        put(key, labels)
        for g in gate_hu:  # as `segment` would label them with the card's gate at g (its other rules kept)
            put(f"{key}+gate{g:g}", model_labels(probs, _with_postprocess(models, contralateral_gate_hu=g),
                                                 regions.region, grid.array, grid.spacing, views))
        if "hemorrhage" in models.cutoffs:
            for d in hemorrhage_beside_mm:  # likewise with the card's hemorrhage rule at d mm
                put(f"{key}+hbeside{d:g}", model_labels(probs, _with_postprocess(models, hemorrhage_beside_mm=d),
                                                        regions.region, grid.array, grid.spacing, views))
        if hemorrhage_floor_hu or skull_share:  # the same maps labelled with no hemorrhage claim
            without = labels_from_probabilities(probs, {**models.cutoffs, "hemorrhage": math.inf}, regions.region,
                                                hu=grid.array, smoothing_px=models.smoothing_px)
        if hemorrhage_floor_hu and "hemorrhage" in models.cutoffs:
            seen = grid.array + np.float32(models.norm.brain_shift(grid.array, regions.region))
            kept_without = without if models.gate_hu is None else (  # the hypodense claims that stay decide
                contralateral_gate(without, grid.array, views.hu, views.region_across, models.gate_hu))
            for f in hemorrhage_floor_hu:
                floored = hemorrhage_floored(ungated, kept_without, seen, f)
                put(f"{key}+hfloor{f:g}", floored if models.gate_hu is None else
                    contralateral_gate(floored, grid.array, views.hu, views.region_across, models.gate_hu))
        for share in skull_share:
            if models.gate_hu is not None:
                raise SystemExit("--skull-share is not defined for a gated model (its gate would run first)")
            kept = skull_dropped(ungated, grid.array, grid.spacing, share)
            if models.hemorrhage_beside_mm is not None and "hemorrhage" in models.cutoffs:
                kept = hemorrhage_beside(kept, skull_dropped(without, grid.array, grid.spacing, share), grid.spacing,
                                         models.hemorrhage_beside_mm)
            put(f"{key}+skull{share:g}", kept)
        for ml in min_component_ml:  # experiment: drop connected parts smaller than ml
            kept = _without_small_parts(labels > 0, ml / grid_ml)
            auto = scored(labels_to_input_grid(kept.astype(np.uint8), grid, volume) > 0, f"{key}_cc{ml:g}")
            row[f"{key}_cc{ml:g}_ml"], row[f"{key}_cc{ml:g}_dice"] = auto.sum() * voxel_ml, dice(auto, reference)
    floor = scored(labels_to_input_grid(mirror_rule(grid.array, grid.spacing, regions.region).astype(np.uint8), grid,
                                        volume) > 0, "mirror")
    row["mirror_ml"], row["mirror_dice"] = floor.sum() * voxel_ml, dice(floor, reference)
    row["mirror_false_ml"] = (floor & ~reference).sum() * voxel_ml
    return row


def _with_postprocess(models, **changes):
    """``models`` with entries of its card's "postprocess" changed: what `segment` would run with such a card."""
    post = {**(models.card.get("postprocess") or {}), **changes}
    return dataclasses.replace(models, card={**models.card, "postprocess": post})


def skull_dropped(labels: np.ndarray, hu: np.ndarray, spacing, max_share: float) -> np.ndarray:
    """``labels`` without the connected hypodense claims (labels 1-3 together, face connected) of which
    more than ``max_share`` lies within the skull guard's distance of bone (in-plane, `corelab.pipeline.
    guards`: 3 mm of 160 HU or more): the guard's test applied to each claim, not to the scan's whole
    claim. Hemorrhage voxels are kept. A new array.

    >>> hu = np.full((1, 1, 12), 35.0); hu[0, 0, 0] = 1000.0
    >>> labels = np.array([[[0, 1, 1, 0, 0, 0, 2, 2, 2, 2, 0, 4]]], np.uint8)
    >>> skull_dropped(labels, hu, (5.0, 1.0, 1.0), 0.5).tolist()
    [[[0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 0, 4]]]
    """
    from corelab.pipeline.guards import SKULL_DISTANCE_MM, SKULL_HU, _distance_to_bone_mm
    from corelab.preprocess.morphology import label_components

    hypodense = (labels >= 1) & (labels <= 3)
    parts, count = label_components(hypodense)
    if not count:
        return labels.copy()
    slices = np.flatnonzero(hypodense.any(axis=(1, 2)))
    near = hypodense & (_distance_to_bone_mm(hu, spacing, slices, SKULL_HU) <= SKULL_DISTANCE_MM)
    share = np.bincount(parts[near], minlength=count + 1) / np.maximum(np.bincount(parts.ravel(), minlength=count + 1), 1)
    drop = share > max_share
    drop[0] = False
    return np.where(drop[parts], 0, labels).astype(labels.dtype)


def cached_probabilities(maps: Path | None, patient: str, key: str, models, region: np.ndarray, hu: np.ndarray,
                         compute) -> dict[str, np.ndarray]:
    """``compute()`` (the approach's dense probability maps), or the maps stored by an earlier run
    under ``maps``/<key>/<patient>.npz when that file was made by the same networks (weight
    checksums and input rule: the maps do not depend on the card's cut-offs, smoothing or rules, so
    a card changed in those alone reuses them) from the same analysis-grid scan and region (sha256
    of both); stored after computing. Only region voxels are kept (every later step reads the maps
    inside the region only). No ``maps``: computed."""
    import hashlib
    import json

    if maps is None:
        return compute()
    digest = hashlib.sha256(np.ascontiguousarray(hu).tobytes())
    digest.update(np.packbits(region).tobytes())
    sha = digest.hexdigest()
    networks = json.dumps({"weights": dict(sorted(models.checksums.items())),
                           "norm": dataclasses.asdict(models.norm)}, sort_keys=True)
    path = maps / key.replace("/", "_") / f"{patient}.npz"
    if path.is_file():
        with np.load(path) as stored:
            if ("networks_id" in stored.files and str(stored["networks_id"]) == networks
                    and str(stored["input_sha256"]) == sha):
                out = {}
                for name in stored["networks"]:
                    full = np.zeros(region.shape, np.float32)
                    full[region] = stored[f"p_{name}"]
                    out[str(name)] = full
                return out
    probs = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part.npz")
    np.savez(partial, networks_id=networks, input_sha256=sha, networks=np.array(list(probs)),
             **{f"p_{name}": np.asarray(prob, np.float32)[region] for name, prob in probs.items()})
    partial.replace(path)
    return probs


def hemorrhage_floored(labels: np.ndarray, without: np.ndarray, seen_hu: np.ndarray, floor_hu: float) -> np.ndarray:
    """``labels`` whose hemorrhage voxels reading under ``floor_hu`` (``seen_hu``: the scan as the
    networks saw it) take the label of ``without`` (the same maps labelled with no hemorrhage
    network: the next network in precedence, or background). Both ungated.

    >>> labels = np.array([4, 4, 1, 0]); without = np.array([2, 0, 1, 0]); seen = np.array([30.0, 60.0, 20.0, 30.0])
    >>> hemorrhage_floored(labels, without, seen, 44.0).tolist()
    [2, 4, 1, 0]
    """
    return np.where((labels == LABELS["hemorrhage"]) & (seen_hu < floor_hu), without, labels).astype(labels.dtype)


def scored_keys(approaches: dict, gate_hu=(), hemorrhage_floor_hu=(), hemorrhage_beside_mm=(), skull_share=(),
                **_other) -> list[str]:
    """The keys `score_scan` writes for ``approaches``: each approach, its gated ("+gate<g>"),
    hemorrhage-floored ("+hfloor<f>") and hemorrhage-beside ("+hbeside<d>"; approaches with a
    hemorrhage network) and skull ("+skull<s>") variants; not the "_cc<ml>" variants or the mirror
    rule ("mirror"). Other `score_scan` options (``_other``) write no key."""
    return [*approaches, *(f"{key}+gate{g:g}" for key in approaches for g in gate_hu),
            *(f"{key}+hfloor{f:g}" for key in approaches for f in hemorrhage_floor_hu
              if "hemorrhage" in approaches[key].cutoffs),
            *(f"{key}+hbeside{d:g}" for key in approaches for d in hemorrhage_beside_mm
              if "hemorrhage" in approaches[key].cutoffs),
            *(f"{key}+skull{s:g}" for key in approaches for s in skull_share)]


def reference_class(labels: np.ndarray, hu: np.ndarray, reference: np.ndarray) -> str:
    """The Table 1 class of a test patient's scored reference: the hypodensity class of its mean HU
    without hemorrhage voxels; "unclassified" when that mean is outside every class or the scored
    reference is hemorrhage only; "unscored" when an --unscored mask took all of a drawn infarct (in
    neither Table 1 nor the controls); "none" for a control.

    >>> labels = np.array([0, 1, 1, 4]); hu = np.array([30.0, 18.0, 20.0, 70.0])
    >>> [reference_class(labels, hu, labels > 0), reference_class(labels, hu, labels == 4),
    ...  reference_class(labels, hu, np.zeros(4, bool)), reference_class(labels * 0, hu, np.zeros(4, bool))]
    ['severe', 'unclassified', 'unscored', 'none']
    """
    infarct = reference & (labels != LABELS["hemorrhage"])
    if infarct.any():
        return hypodensity_class(float(hu[infarct].mean())) or "unclassified"
    if reference.any():
        return "unclassified"
    return "unscored" if (labels > 0).any() else "none"


def evaluate(approaches: dict, *, n_test: int, test_seed: int, first: int = 0, hypodensity=None,
             family: str = "procedural", schedule: str = "mix", background=None, unscored=None, unscored_name="",
             log=print, **experiments) -> pd.DataFrame:
    """One row per test patient (the family's maker at key (test_seed, i) for first <= i < first +
    n_test): family, class, mimics, reference and automated volumes (mL) and Dice per approach.
    ``experiments``: `score_scan`'s experiment options and ``maps`` (passed on).
    ``unscored`` (bool, the background's grid; background family only): left out of the reference,
    the volumes, Dice and false volumes (its reference there is "reference_unscored_ml");
    ``unscored_name`` goes into each row's "unscored" column."""
    make = _maker(family, background)
    rows = []
    for i in range(first, first + n_test):
        started = time.time()
        phantom = make((test_seed, i), patient_class(schedule, i, hypodensity))
        drawn = phantom.labels > 0
        reference = drawn if unscored is None else drawn & ~_on_grid(unscored, drawn.shape)
        row = {"patient": f"{family[0].upper()}{test_seed}-{i:03d}", "family": family,
               "class": reference_class(phantom.labels, phantom.hu, reference),
               "mimics": ";".join(getattr(phantom.truth, "mimics", ()) or ()),
               "reference_ml": reference.sum() * phantom.voxel_ml,
               "reference_unscored_ml": (drawn & ~reference).sum() * phantom.voxel_ml,
               "unscored": unscored_name}
        score_scan(row, phantom.volume(), reference, phantom.voxel_ml, approaches,
                   unscored=None if unscored is None else _on_grid(unscored, reference.shape), **experiments)
        rows.append(row)
        log(f"{row['patient']} {row['class']:<12} ref {row['reference_ml']:7.1f} mL  "
            + "  ".join(f"{key} {row[f'{key}_ml']:.1f} mL (Dice {row[f'{key}_dice']:.2f})"
                        for key in scored_keys(approaches, **experiments))
            + f"  mirror rule {row['mirror_ml']:.1f} mL (Dice {row['mirror_dice']:.2f})  {time.time() - started:.0f} s")
    return pd.DataFrame(rows)


def evaluate_normal_head(approaches: dict, path: Path, log=print, unscored=None, unscored_name="",
                         **experiments) -> pd.DataFrame:
    """The real normal head CT (nothing to find): what each approach claims on it, one row; outside
    ``unscored`` (bool, its grid: a finding it holds), with the claim inside that apart."""
    from corelab.io.read import read_scan

    volume = read_scan(path)
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    row = score_scan({"patient": path.name, "family": "real normal head", "class": "none", "mimics": "",
                      "reference_ml": 0.0, "unscored": unscored_name}, volume, np.zeros(volume.array.shape, bool), voxel_ml, approaches,
                     unscored=None if unscored is None else _on_grid(unscored, volume.array.shape), **experiments)
    keys = (*scored_keys(approaches, **experiments), "mirror")
    inside = {key: row.get(f"{key}_unscored_ml") for key in keys}
    log(f"real normal head {path.name}: " + ", ".join(
        f"{key} {row[f'{key}_ml']:.1f} mL" + ("" if inside[key] is None else f" (+{inside[key]:.1f} in the unscored finding)")
        for key in keys))
    return pd.DataFrame([row])


def read_unscored(path: Path | None, like: Path | None = None) -> tuple[np.ndarray | None, str]:
    """The --unscored mask (nonzero = left out) as a bool array on the grid of the scan ``like`` (as
    `corelab.io.read.read_mask` places a reference: same orientation, refused when it cannot be
    placed), and its name for the rows ("<file> sha256:<12 hex>"); (None, "") without one."""
    if path is None:
        return None, ""
    from corelab.io.read import read_mask, read_scan
    from corelab.audit import scan_sha256

    mask = read_mask(path, like=None if like is None else read_scan(like))
    return mask.array > 0, f"{Path(path).name} sha256:{scan_sha256(path)[:12]}"


def _on_grid(mask: np.ndarray, shape: tuple) -> np.ndarray:
    if mask.shape != tuple(shape):
        raise SystemExit(f"--unscored mask is {mask.shape}, the scan {tuple(shape)}: give a mask on the background's grid")
    return mask


def approach_keys(results: pd.DataFrame) -> list[str]:
    """The approaches scored in ``results`` (columns "<key>_dice"), the mirror rule last."""
    keys = [c[:-5] for c in results.columns if c.endswith("_dice") and c != "mirror_dice"]
    return keys + (["mirror"] if "mirror_dice" in results else [])


def table1(results: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 per approach: ICC(A,1), Dice mean and SD, n, per class and overall."""
    infarcts = results[results["class"].isin(CLASSES)]
    out = []
    for key in approach_keys(results):
        label = "Mirror rule (floor)" if key == "mirror" else key
        groups = [(name.capitalize(), infarcts[infarcts["class"] == name]) for name in CLASSES]
        groups.append(("All infarctions", infarcts))
        for name, part in groups:
            out.append({
                "approach": label, "class": name,
                "ICC(A,1)": icc_a1(part[f"{key}_ml"], part["reference_ml"]),
                "Dice mean": part[f"{key}_dice"].mean(), "Dice SD": part[f"{key}_dice"].std(ddof=1),
                "n": len(part),
            })
    return pd.DataFrame(out)


def false_volumes(results: pd.DataFrame) -> pd.DataFrame:
    """Per approach: control scans' claimed volume (median, max, n), the false volume (claimed outside
    the reference) on scans with mimics (median, n), and the real normal head's claim (outside an
    --unscored finding; the claim inside it apart, NaN without one)."""
    phantoms = results[results["family"] != "real normal head"] if "family" in results else results
    controls = phantoms[phantoms["class"] == "none"]
    mimics = phantoms[phantoms["mimics"].fillna("").astype(str) != ""] if "mimics" in phantoms else phantoms.iloc[:0]
    real = results[results["family"] == "real normal head"] if "family" in results else results.iloc[:0]
    out = []
    for key in approach_keys(results):
        false = f"{key}_false_ml" if f"{key}_false_ml" in results else f"{key}_ml"
        out.append({
            "approach": "Mirror rule (floor)" if key == "mirror" else key,
            "control median mL": controls[f"{key}_ml"].median(), "control max mL": controls[f"{key}_ml"].max(),
            "controls": len(controls),
            "false mL with mimics (median)": mimics[false].median(), "scans with mimics": len(mimics),
            "real normal head mL": real[f"{key}_ml"].iloc[0] if len(real) else math.nan,
            "real head unscored mL": (real[f"{key}_unscored_ml"].iloc[0]
                                      if len(real) and f"{key}_unscored_ml" in real else math.nan),
        })
    return pd.DataFrame(out)


def paired(results: pd.DataFrame, a: str, b: str) -> dict:
    """Per-patient Dice of approach `a` minus approach `b` on the infarct patients both scored: mean,
    SD, 95% t interval, n, and how often each is higher; and the same for the controls' claimed mL."""
    from scipy import stats

    infarcts = results[results["class"].isin(CLASSES)]
    diff = (infarcts[f"{a}_dice"] - infarcts[f"{b}_dice"]).dropna()
    n = len(diff)
    half = float(stats.t.ppf(0.975, n - 1) * diff.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    controls = results[results["class"] == "none"]
    return {"a": a, "b": b, "n": n, "mean": float(diff.mean()), "sd": float(diff.std(ddof=1)) if n > 1 else math.nan,
            "ci95": (float(diff.mean()) - half, float(diff.mean()) + half), "a_higher": int((diff > 0).sum()),
            "b_higher": int((diff < 0).sum()),
            "control_ml_diff_median": float((controls[f"{a}_ml"] - controls[f"{b}_ml"]).median()) if len(controls) else math.nan}


def main() -> None:
    parser = argparse.ArgumentParser(description="Table 1 on held-out phantoms of one family (and the real normal head).")
    parser.add_argument("--models", type=Path, nargs="+", help="model folders to evaluate (each with single/ if any)")
    parser.add_argument("--train-dir", type=Path, help="cohort to train on first (corelab synth layout)")
    parser.add_argument("--out", type=Path, default=Path("accuracy-models"), help="where to write trained models")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--n-test", type=int, default=20)
    parser.add_argument("--test-seed", type=int, default=424242)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-component-ml", type=float, nargs="*", default=[],
                        help="experiment: also score each approach without connected parts smaller than these mL")
    parser.add_argument("--gate-hu", type=float, nargs="*", default=[],
                        help="also score each approach with the contralateral gate at these HU "
                             "(corelab.segment.contralateral), from the same probabilities")
    parser.add_argument("--first", type=int, default=0,
                        help="first test patient index (split one cohort over several processes)")
    parser.add_argument("--family", choices=FAMILIES, default="procedural",
                        help="phantom family of the test cohort; pick one the models never saw")
    parser.add_argument("--background", type=Path, default=None,
                        help="normal head CT for --family background (e.g. benchmarks/data/real/cranium.nii.gz)")
    parser.add_argument("--schedule", choices=SCHEDULES, default="mix",
                        help="stratified: severe, intermediate, subtle, control in turn (24 = 6 each)")
    parser.add_argument("--normal-head", type=Path, default=None,
                        help="also score this real normal head CT (nothing to find)")
    parser.add_argument("--hemorrhage-floor-hu", type=float, nargs="*", default=[],
                        help="experiment: also score each approach with its hemorrhage claim kept only where the "
                             "scan (as the networks saw it) reads at least these HU")
    parser.add_argument("--hemorrhage-beside-mm", type=float, nargs="*", default=[],
                        help="experiment: also score each approach with each connected hemorrhage claim kept only "
                             "when a hypodense claim lies within these mm of it")
    parser.add_argument("--skull-share", type=float, nargs="*", default=[],
                        help="experiment: also score each approach without the connected hypodense claims of which "
                             "more than this share lies within 3 mm of bone (the skull guard per claim)")
    parser.add_argument("--maps", type=Path, default=None,
                        help="keep each approach's probability maps per patient here, and read them back on a rerun "
                             "(same model version, same scan): experiments then cost no network time")
    parser.add_argument("--unscored", type=Path, default=None,
                        help="mask on the background's (and normal head's) grid left out of every figure: a "
                             "finding the real scan already holds (its claim reported apart)")
    parser.add_argument("--hypodensity", choices=CLASSES, default=None,
                        help="every test patient of this class (default: the schedule)")
    parser.add_argument("--csv", type=Path, default=None, help="write per-patient results here")
    parser.add_argument("--from-csv", type=Path, nargs="+", default=None,
                        help="only print the table of earlier --csv files (joined)")
    parser.add_argument("--record-card", type=Path, default=None,
                        help="with --from-csv: write the table into this model folder's cards (and single/)")
    parser.add_argument("--paired", nargs=2, action="append", default=[], metavar=("A", "B"),
                        help="with --from-csv: per-patient Dice of approach A minus B (repeatable)")
    parser.add_argument("--trained-on", default="", help="with --record-card: the families the model was trained on")
    parser.add_argument("--card-approach", default=None,
                        help="with --record-card: the approach key of that folder's scores (default: its name)")
    args = parser.parse_args()
    if args.from_csv:
        # Rows of one patient from several files (other approaches scored on the same test patient)
        # become one row; other patients' rows (a run split with --first) are added.
        results = joined_results([pd.read_csv(path) for path in args.from_csv])
        print_table(results)
        for a, b in args.paired:
            d = paired(results, a, b)
            print(f"\npaired Dice {a} - {b}: {d['mean']:+.3f} (SD {d['sd']:.3f}, 95% CI {d['ci95'][0]:+.3f} to "
                  f"{d['ci95'][1]:+.3f}, n = {d['n']}; {a} higher on {d['a_higher']}, {b} on {d['b_higher']}); "
                  f"controls: median claimed mL difference {d['control_ml_diff_median']:+.1f}")
        if args.record_card:
            record_in_cards(args.record_card, results, test_seed=args.test_seed, trained_on=args.trained_on,
                            approach=args.card_approach)
        return
    torch.set_num_threads(args.threads)

    folders = args.models
    if not folders:
        if args.train_dir is None:
            parser.error("give --models (trained folders) or --train-dir (cohort to train on)")
        from corelab.train.recipe import train_models

        print(train_models(args.train_dir, args.out, single=True, seed=args.seed))
        folders = [args.out]
    approaches = approaches_of(folders)
    print(f"approaches: {', '.join(f'{k} ({m.version})' for k, m in approaches.items())}; test cohort: "
          f"{args.n_test} {args.family} phantoms, seed {args.test_seed}, schedule {args.schedule}")
    if args.unscored and not (args.background or args.normal_head):
        parser.error("--unscored is a mask on the background's or the normal head's grid: give --background or --normal-head")
    unscored, unscored_name = read_unscored(args.unscored, like=args.background or args.normal_head)
    experiments = {"gate_hu": args.gate_hu, "hemorrhage_floor_hu": args.hemorrhage_floor_hu,
                   "hemorrhage_beside_mm": args.hemorrhage_beside_mm, "skull_share": args.skull_share,
                   "maps": args.maps}
    parts = [evaluate(approaches, n_test=args.n_test, test_seed=args.test_seed, first=args.first,
                      hypodensity=args.hypodensity, family=args.family, schedule=args.schedule,
                      background=args.background, unscored=unscored if args.family == "background" else None,
                      unscored_name=unscored_name if args.family == "background" else "",
                      min_component_ml=args.min_component_ml, **experiments)] if args.n_test else []
    if args.normal_head:
        parts.append(evaluate_normal_head(approaches, args.normal_head, unscored=unscored,
                                          unscored_name=unscored_name, **experiments))
    results = pd.concat(parts, ignore_index=True)
    if args.csv:
        results.to_csv(args.csv, index=False)
    print_table(results)


def joined_results(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Per-patient rows of several --csv files as one table: rows of one patient (other approaches
    scored on the same test patient) become one row; other patients' rows (a run split with --first)
    are added. Two files that disagree on a value of the same patient (the same approach scored
    twice, differently) raise instead of one being kept silently.

    >>> a = pd.DataFrame({"patient": ["P1"], "x_dice": [0.5]}); b = pd.DataFrame({"patient": ["P1"], "y_dice": [0.7]})
    >>> joined_results([a, b]).to_dict("records")
    [{'patient': 'P1', 'x_dice': 0.5, 'y_dice': 0.7}]
    """
    stacked = pd.concat(frames, ignore_index=True)
    grouped = stacked.groupby("patient", sort=False)
    distinct = grouped.nunique(dropna=True)
    conflicts = distinct.columns[(distinct > 1).any()].tolist()
    if conflicts:
        raise SystemExit(f"the files disagree on {', '.join(conflicts[:5])} for the same patients; "
                         "score each approach once, or name its folder differently")
    if "unscored" in stacked and stacked["unscored"].fillna("").nunique() > 1:
        raise SystemExit("the files were scored with different --unscored masks (or some with none): "
                         f"{sorted(set(stacked['unscored'].fillna('(none)')))}; score them alike")
    return grouped.first().reset_index()


def print_table(results: pd.DataFrame) -> None:
    """Table 1 layout on stdout, then the false volumes (controls, mimics, real normal head)."""
    families = sorted(set(results["family"])) if "family" in results else ["procedural"]
    table, false = table1(results), false_volumes(results)
    width = max([28, *(len(str(name)) + 2 for name in table["approach"])])
    print(f"\ntest scans: {len(results)} ({', '.join(families)})")
    print(f"{'':{width}}{'':18}{'ICC(A,1)':>9}  {'Dice':>11}  {'n':>4}")
    for row in table.itertuples(index=False):
        print(f"{row.approach:<{width}}{row[1]:<18}{row[2]:9.2f}  {row[3]:5.2f}±{row[4]:<5.2f}  {row.n:4d}")
    inside = false["real head unscored mL"].notna().any()
    print(f"\n{'':{width}}{'controls median':>16}{'max':>8}{'n':>4}{'mimic false':>13}{'n':>4}{'real head':>11}"
          + (f"{'+ in finding':>14}" if inside else ""))
    for row in false.itertuples(index=False):
        head = "       -   " if math.isnan(row[6]) else f"{row[6]:8.1f} mL"
        print(f"{row[0]:<{width}}{row[1]:13.1f} mL{row[2]:8.1f}{row[3]:4d}{row[4]:10.1f} mL{row[5]:4d}{head}"
              + (f"{row[7]:11.1f} mL" if inside else ""))
    if inside:
        print("(real head: claimed outside the --unscored finding; + in finding: claimed inside it)")


def held_out_record(results: pd.DataFrame, *, test_seed: int, trained_on: str = "") -> dict:
    """Table 1 and the false volumes of each approach as the card's `scores.held_out` entry."""
    def number(value):
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 2)

    table, false = table1(results), false_volumes(results).set_index("approach")
    families = sorted(set(results["family"]) - {"real normal head"}) if "family" in results else ["procedural"]
    record = {
        "cohort": f"{int((results.get('family', pd.Series(['procedural'] * len(results))) != 'real normal head').sum())} "
                  f"phantoms of the {', '.join(families)} famil{'y' if len(families) == 1 else 'ies'} (keys ({test_seed}, i)), "
                  "never used for training" + (f"; the model was trained on {trained_on}" if trained_on else ""),
        "command": "python benchmarks/accuracy.py --models FOLDER --family F --schedule stratified --n-test N --test-seed "
                   f"{test_seed} --csv F.csv; then --from-csv F.csv ... --record-card FOLDER",
    }
    for key in approach_keys(results):
        label = "Mirror rule (floor)" if key == "mirror" else key
        part = {}
        for row in table[table["approach"] == label].itertuples(index=False):
            name = "all" if row[1] == "All infarctions" else row[1].lower()
            part[name] = {"icc_a1": number(row[2]), "dice_mean": number(row[3]), "dice_sd": number(row[4]), "n": int(row.n)}
        part["control_median_ml"], part["control_max_ml"] = number(false.loc[label, "control median mL"]), number(false.loc[label, "control max mL"])
        part["real_normal_head_ml"] = number(false.loc[label, "real normal head mL"])
        if not math.isnan(false.loc[label, "real head unscored mL"]):
            # Outside the finding that head holds (the --unscored mask); the claim inside it beside.
            part["real_normal_head_in_finding_ml"] = number(false.loc[label, "real head unscored mL"])
        record["mirror_rule (floor)" if key == "mirror" else key] = part
    return record


def record_in_cards(folder: Path, results: pd.DataFrame, *, test_seed: int, trained_on: str = "",
                    approach: str | None = None) -> None:
    """Write the held-out record and a one-sentence verdict into `folder` and `folder/single` cards.

    approach: the key of the results that is this folder's three-CNN approach (default: the folder's
    name, the key `approaches_of` gives it)."""
    from corelab.segment.card import record_held_out

    record = held_out_record(results, test_seed=test_seed, trained_on=trained_on)
    key = approach or folder.name
    if key not in record:
        raise SystemExit(f"no approach {key!r} in the results (they hold {', '.join(approach_keys(results))}); "
                         "name it with --card-approach")
    three = record[key]
    met = ((three["all"]["icc_a1"] or 0) >= TARGETS["icc_a1"] and (three["all"]["dice_mean"] or 0) >= TARGETS["dice"]
           and (three.get("subtle", {}).get("dice_mean") or 0) >= TARGETS["subtle_dice"]
           and (three["control_max_ml"] or 0) <= TARGETS["control_max_ml"])
    verdict = "meets the targets" if met else "is below the targets"
    headline = (f"**Accuracy on phantoms of a family it never saw {verdict}** (three-CNN: ICC(A,1) "
                f"{three['all']['icc_a1']}, Dice {three['all']['dice_mean']} ± {three['all']['dice_sd']}, "
                f"n = {three['all']['n']}; control scans median {three['control_median_ml']} mL, max "
                f"{three['control_max_ml']} mL"
                + (f"; the real normal head {three['real_normal_head_ml']} mL" if three["real_normal_head_ml"] is not None else "")
                + (f" outside its own lesion (+ {three['real_normal_head_in_finding_ml']} mL in it)"
                   if three.get("real_normal_head_in_finding_ml") is not None else "")
                + ")" + ("." if met else ": do not use these weights to measure infarcts.")
                + " Retrain with `corelab train` on your own reads.")
    for sub in (folder, folder / "single"):
        if (sub / "card.json").is_file():
            record_held_out(sub, record, headline=headline)
    print(f"held-out scores recorded in {folder}/card.json and MODEL_CARD.md")


if __name__ == "__main__":
    main()
