"""Accuracy on a held-out synthetic cohort, in the layout of the paper's Table 1.

    python benchmarks/accuracy.py --models models/            # evaluate shipped three-CNN + models/single
    python benchmarks/accuracy.py --train-dir trial/ --out /tmp/m  # train first (single included), then evaluate

Test cohort: `corelab.synth.make_patient((test_seed, i))` for i < n_test, other seeds than any
`corelab synth --seed S` trial (those use (S, i); the shipped weights were trained on S = 1000, the
default test seed is 424242), drawn
with the trial's class mix; made in memory, not written. Reference: the phantom's truth labels
(nonzero = infarct, hemorrhage included, as the paper's reference). Class: `hypodensity_class` of
the reference's mean HU without hemorrhage voxels, on the scan's grid. Controls (no infarct) are left
out of the table, as the paper's test set had none, and listed apart with their false volume.

Each scan: analysis grid -> analysis region -> all five networks (three infarct CNNs, hemorrhage,
single) in one dense pass -> labels for each approach -> back to the scan's grid. Volumes are label
voxels x voxel volume (mL); Dice per patient; ICC(A,1) = two-way random, absolute
agreement, single measure) of automated vs reference volumes (pingouin's ICC(A,1) row). Every
table also scores the mirror rule (`benchmarks/mirror_rule.py`), the untrained floor a model must
clear by far.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from mirror_rule import mirror_rule  # benchmarks/ is the script's folder, on sys.path

from corelab.config import CLASSES, hypodensity_class
from corelab.segment.dense import dense_probabilities
from corelab.segment.folder import load_models
from corelab.segment.labels import labels_from_probabilities, smooth_probabilities

# The accuracy targets of the CNN issue: overall ICC(A,1) and mean Dice per class, three-CNN approach.
TARGETS = {"icc_a1": 0.95, "dice": {"severe": 0.80, "intermediate": 0.75, "subtle": 0.60}}


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


def evaluate(models3, single, *, n_test: int, test_seed: int, first: int = 0, min_component_ml=(), hypodensity=None,
             family: str = "procedural",
             log=print) -> pd.DataFrame:
    """One row per test patient (`make_patient((test_seed, i))` for first <= i < first + n_test): class,
    reference and automated volumes (mL) and Dice per approach. hypodensity: draw every patient of
    that class instead of the trial's class mix (e.g. "severe", rare in the mix)."""
    from corelab.preprocess import analysis_region, labels_to_input_grid, to_analysis_grid
    from corelab.synth.atlas import make_atlas_patient
    from corelab.synth.phantom import make_patient

    makers = {"procedural": make_patient, "atlas": make_atlas_patient}

    networks = {**models3.networks, **{k: v for k, v in single.networks.items() if k == "single"}}
    rows = []
    for i in range(first, first + n_test):
        started = time.time()
        phantom = makers[family]((test_seed, i), matrix=512, hypodensity=hypodensity)
        volume = phantom.volume()
        grid = to_analysis_grid(volume, models3.grid)
        regions = analysis_region(grid.array, grid.spacing)
        probs = dense_probabilities(grid.array, regions.region, networks, norm=models3.norm, device=models3.device)
        reference = phantom.labels > 0
        infarct_only = reference & (phantom.labels != 4)
        mean_hu = float(phantom.hu[infarct_only].mean()) if infarct_only.any() else math.nan
        row = {"patient": f"T{test_seed}-{i:03d}", "class": hypodensity_class(mean_hu) or ("unclassified" if infarct_only.any() else "none"),
               "reference_ml": reference.sum() * phantom.voxel_ml}
        # What each network claims on its own (analysis grid, mL): which one over-claims.
        grid_ml = float(np.prod(grid.spacing)) / 1000.0
        cutoffs = {**models3.cutoffs, **single.cutoffs}
        for name, prob in smooth_probabilities(probs, regions.region, models3.smoothing_px).items():
            row[f"{name}_claim_ml"] = float((regions.region & (prob >= cutoffs[name])).sum()) * grid_ml
        for approach, models in (("three", models3), ("single", single)):
            use = {k: probs[k] for k in models.networks}
            labels = labels_from_probabilities(use, dict(models.cutoffs), regions.region, hu=grid.array,
                                               smoothing_px=models.smoothing_px)
            auto = labels_to_input_grid(labels, grid, volume) > 0
            row[f"{approach}_ml"] = auto.sum() * phantom.voxel_ml
            row[f"{approach}_dice"] = dice(auto, reference)
            for ml in min_component_ml:  # experiment: drop connected parts smaller than ml
                kept = _without_small_parts(labels > 0, ml / grid_ml)
                auto = labels_to_input_grid(kept.astype(np.uint8), grid, volume) > 0
                row[f"{approach}_cc{ml:g}_ml"] = auto.sum() * phantom.voxel_ml
                row[f"{approach}_cc{ml:g}_dice"] = dice(auto, reference)
        floor = labels_to_input_grid(mirror_rule(grid.array, grid.spacing, regions.region).astype(np.uint8), grid, volume) > 0
        row["mirror_ml"], row["mirror_dice"] = floor.sum() * phantom.voxel_ml, dice(floor, reference)
        rows.append(row)
        log(f"{row['patient']} {row['class']:<12} ref {row['reference_ml']:7.1f} mL  three {row['three_ml']:7.1f} mL "
            f"(Dice {row['three_dice']:.2f})  single {row['single_ml']:7.1f} mL (Dice {row['single_dice']:.2f})  "
            f"mirror rule {row['mirror_ml']:7.1f} mL (Dice {row['mirror_dice']:.2f})  "
            f"{time.time() - started:.0f} s\n    claims (mL): "
            + ", ".join(f"{name} {row[f'{name}_claim_ml']:.1f}" for name in probs))
    return pd.DataFrame(rows)


def table1(results: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1: ICC(A,1), Dice mean and SD, n, per class and overall, both approaches."""
    infarcts = results[results["class"].isin(CLASSES)]
    out = []
    approaches = [("three", "Three-CNNs approach"), ("single", "Single CNN approach")]
    if "mirror_ml" in results:  # CSVs written before the floor was added lack it
        approaches.append(("mirror", "Mirror rule (floor)"))
    approaches += [(column[:-3], f"{column.split('_')[0]} parts>={column.split('_')[1][2:]} mL")
                   for column in results.columns if "_cc" in column and column.endswith("_ml")]
    for approach, label in approaches:
        groups = [(name.capitalize(), infarcts[infarcts["class"] == name]) for name in CLASSES]
        groups.append(("All infarctions", infarcts))
        for name, part in groups:
            out.append({
                "approach": label, "class": name,
                "ICC(A,1)": icc_a1(part[f"{approach}_ml"], part["reference_ml"]),
                "Dice mean": part[f"{approach}_dice"].mean(), "Dice SD": part[f"{approach}_dice"].std(ddof=1),
                "n": len(part),
            })
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description="Table 1 on a held-out synthetic cohort.")
    parser.add_argument("--models", type=Path, help="three-CNN model folder (with single/ inside) to evaluate")
    parser.add_argument("--train-dir", type=Path, help="cohort to train on first (corelab synth layout)")
    parser.add_argument("--out", type=Path, default=Path("accuracy-models"), help="where to write trained models")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--n-test", type=int, default=20)
    parser.add_argument("--test-seed", type=int, default=424242)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-component-ml", type=float, nargs="*", default=[],
                        help="experiment: also score each approach without connected parts smaller than these mL")
    parser.add_argument("--first", type=int, default=0,
                        help="first test patient index (split one cohort over several processes)")
    parser.add_argument("--family", choices=("procedural", "atlas"), default="procedural",
                        help="phantom family of the test cohort (atlas: one the shipped weights never saw)")
    parser.add_argument("--hypodensity", choices=CLASSES, default=None,
                        help="every test patient of this class (default: the trial's class mix)")
    parser.add_argument("--csv", type=Path, default=None, help="write per-patient results here")
    parser.add_argument("--from-csv", type=Path, nargs="+", default=None,
                        help="only print the table of earlier --csv files (joined)")
    parser.add_argument("--record-card", type=Path, default=None,
                        help="with --from-csv: write the table into this model folder's cards (and single/)")
    args = parser.parse_args()
    if args.from_csv:
        results = pd.concat([pd.read_csv(path) for path in args.from_csv], ignore_index=True)
        print_table(results)
        if args.record_card:
            record_in_cards(args.record_card, results, test_seed=args.test_seed)
        return
    torch.set_num_threads(args.threads)

    folder = args.models
    if folder is None:
        if args.train_dir is None:
            parser.error("give --models (trained folder) or --train-dir (cohort to train on)")
        from corelab.train.recipe import train_models

        print(train_models(args.train_dir, args.out, single=True, seed=args.seed))
        folder = args.out
    models3 = load_models(folder)
    single = load_models(folder / "single")
    print(f"models {models3.version} (single: {single.version}); test cohort: {args.n_test} phantoms, seed {args.test_seed}")
    results = evaluate(models3, single, n_test=args.n_test, test_seed=args.test_seed, first=args.first,
                       min_component_ml=args.min_component_ml, hypodensity=args.hypodensity, family=args.family)
    if args.csv:
        results.to_csv(args.csv, index=False)
    print_table(results)


def print_table(results: pd.DataFrame) -> None:
    """Table 1 layout on stdout, controls listed apart."""
    table = table1(results)
    print()
    print(f"{'':22}{'':18}{'ICC(A,1)':>9}  {'Dice':>11}  {'n':>4}")
    for row in table.itertuples(index=False):
        print(f"{row.approach:<22}{row[1]:<18}{row[2]:9.2f}  {row[3]:5.2f}±{row[4]:<5.2f}  {row.n:4d}")
    controls = results[results["class"] == "none"]
    if len(controls):
        print(f"\ncontrols (no infarct, not in the table): n={len(controls)}, automated volume "
              f"three-CNN {controls['three_ml'].mean():.1f} mL, single {controls['single_ml'].mean():.1f} mL (mean)"
              + (f", mirror rule {controls['mirror_ml'].mean():.1f} mL" if "mirror_ml" in controls else "")
              + "".join(f", {c[:-3]} {controls[c].mean():.1f} mL" for c in results.columns if "_cc" in c and c.endswith("_ml")))


def held_out_record(results: pd.DataFrame, *, test_seed: int) -> dict:
    """Table 1 and the controls' false volumes as the card's `scores.held_out` entry."""
    def number(value):
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 2)

    table = table1(results)
    controls = results[results["class"] == "none"]
    record = {
        "cohort": f"{len(results)} in-memory phantoms, corelab.synth.make_patient(({test_seed}, i)), never used for training",
        "command": "python benchmarks/accuracy.py --models models --n-test N --test-seed "
                   f"{test_seed} --threads 1 --csv F; then --from-csv F ... --record-card models",
    }
    for approach, label in (("three_cnn", "Three-CNNs approach"), ("single_cnn", "Single CNN approach")):
        part = {}
        for row in table[table["approach"] == label].itertuples(index=False):
            key = "all" if row[1] == "All infarctions" else row[1].lower()
            part[key] = {"icc_a1": number(row[2]), "dice_mean": number(row[3]), "dice_sd": number(row[4]), "n": int(row.n)}
        prefix = approach.split("_")[0]
        part["control_false_ml"] = [round(float(v), 1) for v in controls[f"{prefix}_ml"]]
        record[approach] = part
    return record


def record_in_cards(folder: Path, results: pd.DataFrame, *, test_seed: int) -> None:
    """Write the held-out record and a one-sentence verdict into `folder` and `folder/single` cards."""
    from corelab.segment.card import record_held_out

    record = held_out_record(results, test_seed=test_seed)
    three, single = record["three_cnn"]["all"], record["single_cnn"]["all"]
    met = (three["icc_a1"] or 0) >= TARGETS["icc_a1"] and all(
        (record["three_cnn"].get(name, {}).get("dice_mean") or 0) >= dice for name, dice in TARGETS["dice"].items())
    verdict = "meets the targets" if met else "is below the targets"
    headline = (f"**Held-out accuracy on unseen synthetic phantoms {verdict}** (three-CNN: ICC(A,1) "
                f"{three['icc_a1']}, Dice {three['dice_mean']} ± {three['dice_sd']}, n = {three['n']}; single CNN: "
                f"ICC(A,1) {single['icc_a1']}, Dice {single['dice_mean']}; control scans got "
                f"{', '.join(f'{v:g}' for v in record['three_cnn']['control_false_ml'])} mL)"
                + ("." if met else ": do not use these weights to measure infarcts.")
                + " Retrain with `corelab train` on your own reads.")
    for sub in (folder, folder / "single"):
        if (sub / "card.json").is_file():
            record_held_out(sub, record, headline=headline)
    print(f"held-out scores recorded in {folder}/card.json and MODEL_CARD.md")


if __name__ == "__main__":
    main()
