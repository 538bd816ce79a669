"""The left-out benchmark's tables (benchmarks/accuracy.py) on hand-made per-patient results."""

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from accuracy import (  # noqa: E402
    approach_keys, false_volumes, held_out_record, hemorrhage_floored, joined_results, paired, patient_class,
    read_unscored, reference_class, table1,
)


def _results() -> pd.DataFrame:
    rows = []
    for i, klass in enumerate(["severe", "intermediate", "subtle", "none"] * 2):
        ref = 0.0 if klass == "none" else 10.0 + 5 * i
        rows.append({"patient": f"P{i}", "family": "atlas", "class": klass, "mimics": "leukoaraiosis" if i in (1, 3) else "",
                     "reference_ml": ref, "a_ml": ref + 1.0, "a_dice": 0.8 if ref else 1.0, "a_false_ml": 1.0,
                     "b_ml": ref + (20.0 if klass == "none" else 5.0), "b_dice": 0.6 if ref else 0.0,
                     "b_false_ml": 5.0 + 15.0 * (klass == "none"),
                     "mirror_ml": ref, "mirror_dice": 0.4 if ref else 1.0, "mirror_false_ml": 2.0})
    rows.append({"patient": "head", "family": "real normal head", "class": "none", "mimics": "", "reference_ml": 0.0,
                 "a_ml": 3.0, "a_dice": 0.0, "a_false_ml": 3.0, "b_ml": 700.0, "b_dice": 0.0, "b_false_ml": 700.0,
                 "mirror_ml": 60.0, "mirror_dice": 0.0, "mirror_false_ml": 60.0})
    return pd.DataFrame(rows)


def test_a_stratified_schedule_gives_six_of_each_class_in_24():
    drawn = [patient_class("stratified", i, None) for i in range(24)]
    assert {k: drawn.count(k) for k in set(drawn)} == {"severe": 6, "intermediate": 6, "subtle": 6, "none": 6}
    assert patient_class("mix", 3, None) is None and patient_class("stratified", 3, "subtle") == "subtle"


def test_tables_per_approach_keep_controls_and_the_real_head_apart():
    results = _results()
    assert approach_keys(results) == ["a", "b", "mirror"]
    table = table1(results).set_index(["approach", "class"])
    assert table.loc[("a", "All infarctions"), "n"] == 6  # controls and the real head are not in Table 1
    assert table.loc[("a", "All infarctions"), "Dice mean"] == pytest.approx(0.8)
    false = false_volumes(results).set_index("approach")
    assert false.loc["b", "control median mL"] == 20.0 and false.loc["b", "controls"] == 2  # the real head apart
    assert false.loc["b", "real normal head mL"] == 700.0 and false.loc["a", "real normal head mL"] == 3.0
    assert false.loc["b", "false mL with mimics (median)"] == pytest.approx(12.5)  # one infarct, one control
    assert false.loc["Mirror rule (floor)", "scans with mimics"] == 2


def test_paired_dice_is_per_patient_with_its_interval():
    results = _results()
    results.loc[0, "b_dice"] = 0.9  # b wins once
    d = paired(results, "a", "b")
    diffs = np.array([-0.1, 0.2, 0.2, 0.2, 0.2, 0.2])
    assert d["n"] == 6 and d["mean"] == pytest.approx(diffs.mean()) and d["a_higher"] == 5 and d["b_higher"] == 1
    assert d["ci95"][0] < d["mean"] < d["ci95"][1] and d["control_ml_diff_median"] == -19.0


def test_files_of_one_test_cohort_join_per_patient_and_refuse_to_disagree():
    results = _results()
    a = results[["patient", "family", "class", "reference_ml", "a_ml", "a_dice"]]
    b = results[["patient", "family", "class", "reference_ml", "b_ml", "b_dice"]]
    first, second = b.iloc[:4], b.iloc[4:]  # b's run split over two processes (--first)
    joined = joined_results([a, first, second])
    assert len(joined) == len(results) and joined["b_dice"].tolist() == results["b_dice"].tolist()
    rescored = a.assign(a_dice=a["a_dice"] - 0.1)  # the same approach scored again, otherwise
    with pytest.raises(SystemExit, match="a_dice"):
        joined_results([a, rescored])


def test_a_finding_of_the_real_head_is_reported_apart_from_its_false_volume():
    results = _results()
    false = false_volumes(results).set_index("approach")
    assert np.isnan(false.loc["a", "real head unscored mL"])  # no --unscored: no column, no number
    assert "real_normal_head_in_finding_ml" not in held_out_record(results, test_seed=1)["a"]
    head = results["family"] == "real normal head"
    results.loc[head, "a_unscored_ml"], results.loc[head, "mirror_unscored_ml"] = 5.2, 3.4
    false = false_volumes(results).set_index("approach")
    assert false.loc["a", "real normal head mL"] == 3.0 and false.loc["a", "real head unscored mL"] == 5.2
    assert np.isnan(false.loc["b", "real head unscored mL"])
    record = held_out_record(results, test_seed=1)
    assert record["a"]["real_normal_head_ml"] == 3.0 and record["a"]["real_normal_head_in_finding_ml"] == 5.2
    assert record["mirror_rule (floor)"]["real_normal_head_in_finding_ml"] == 3.4


def test_the_unscored_mask_is_placed_on_the_scan_it_belongs_to(tmp_path):
    import SimpleITK as sitk

    hu = np.full((3, 4, 5), 30, np.int16)
    hu[:, 0, :] = -1000  # air, so the file reads as HU
    scan = sitk.GetImageFromArray(hu)
    scan.SetSpacing((0.5, 0.5, 5.0))
    sitk.WriteImage(scan, str(tmp_path / "scan.nii.gz"))
    mask = np.zeros((3, 4, 5), np.uint8)
    mask[1, 2, 3] = 1
    image = sitk.GetImageFromArray(mask)
    image.CopyInformation(scan)
    sitk.WriteImage(image, str(tmp_path / "m.nii.gz"))
    read, name = read_unscored(tmp_path / "m.nii.gz", like=tmp_path / "scan.nii.gz")
    assert read.dtype == bool and read.shape == (3, 4, 5) and read.sum() == 1 and read[1, 2, 3]
    assert name.startswith("m.nii.gz sha256:") and len(name) == len("m.nii.gz sha256:") + 12
    assert read_unscored(None) == (None, "")
    bare = sitk.GetImageFromArray(mask)  # the scan's voxel counts, 1 mm voxels: saved without its geometry
    sitk.WriteImage(bare, str(tmp_path / "bare.nii.gz"))
    with pytest.raises(Exception, match="geometry"):
        read_unscored(tmp_path / "bare.nii.gz", like=tmp_path / "scan.nii.gz")


def test_hemorrhage_under_the_floor_goes_to_the_next_network():
    labels = np.array([4, 4, 4, 1, 0], np.uint8)
    without = np.array([2, 0, 3, 1, 0], np.uint8)  # the same maps with no hemorrhage network
    seen = np.array([30.0, 30.0, 60.0, 20.0, 10.0])
    assert hemorrhage_floored(labels, without, seen, 44.0).tolist() == [2, 0, 4, 1, 0]
    assert hemorrhage_floored(labels, without, seen, 20.0).tolist() == labels.tolist()


def test_a_patient_whose_infarct_lies_in_the_unscored_finding_is_neither_in_table_1_nor_a_control():
    labels = np.array([0, 2, 2, 4], np.uint8)
    hu = np.array([30.0, 25.0, 27.0, 70.0])
    assert reference_class(labels, hu, labels > 0) == "intermediate"
    assert reference_class(labels, hu, labels == 4) == "unclassified"  # only its blood is scored
    assert reference_class(labels, hu, np.zeros(4, bool)) == "unscored"
    assert reference_class(np.zeros(4, np.uint8), hu, np.zeros(4, bool)) == "none"
    results = _results()
    results.loc[0, "class"] = "unscored"
    table, false = table1(results).set_index(["approach", "class"]), false_volumes(results).set_index("approach")
    assert table.loc[("a", "All infarctions"), "n"] == 5 and false.loc["a", "controls"] == 2


def test_files_scored_with_different_unscored_masks_are_refused_together():
    results = _results().assign(unscored="lesion.nii.gz sha256:0123456789ab")
    first, second = results.iloc[:4], results.iloc[4:].assign(unscored="")
    with pytest.raises(SystemExit, match="different --unscored"):
        joined_results([first, second])
    assert len(joined_results([results.iloc[:4], results.iloc[4:]])) == len(results)


def _six_slices_and_the_shipped_models(accuracy, monkeypatch):
    """Six slices of one severe procedural phantom, made `accuracy.evaluate`'s every test patient, and
    the shipped folder's approaches."""
    from corelab.segment.folder import default_models_dir
    from corelab.synth.phantom import make_patient

    phantom = make_patient(5, matrix=256, hypodensity="severe")
    middle = int(np.median(np.nonzero(phantom.labels)[0]))
    keep = slice(max(middle - 3, 0), middle + 3)
    phantom = dataclasses.replace(phantom, hu=phantom.hu[keep], labels=phantom.labels[keep], tissue=phantom.tissue[keep])
    monkeypatch.setattr(accuracy, "_maker", lambda family, background: lambda key, hypodensity: phantom)
    return phantom, accuracy.approaches_of([default_models_dir()])


@pytest.mark.slow
def test_a_finding_left_unscored_leaves_the_reference_and_every_claim(one_torch_thread, monkeypatch):
    # The shipped weights on six slices of one procedural phantom, scored twice by `evaluate`: with
    # the right half of the grid unscored, each claim and the reference split into a scored and an
    # unscored part that add up to the whole, and the class is that of the scored part.
    import accuracy

    phantom, approaches = _six_slices_and_the_shipped_models(accuracy, monkeypatch)
    unscored = np.zeros(phantom.labels.shape, bool)
    unscored[..., : unscored.shape[2] // 2] = True
    kwargs = {"n_test": 1, "test_seed": 1, "family": "background", "hemorrhage_floor_hu": (44.0,), "log": lambda line: None}
    whole = accuracy.evaluate(approaches, **kwargs).iloc[0]
    split = accuracy.evaluate(approaches, unscored=unscored, unscored_name="half", **kwargs).iloc[0]
    drawn_ml = (phantom.labels > 0).sum() * phantom.voxel_ml
    assert whole["reference_ml"] == pytest.approx(drawn_ml) and whole["unscored"] == ""
    assert split["reference_ml"] + split["reference_unscored_ml"] == pytest.approx(drawn_ml)
    assert 0 < split["reference_ml"] < drawn_ml and split["unscored"] == "half"  # the infarct crosses the line
    keys = [*accuracy.scored_keys(approaches, (), (44.0,)), "mirror"]
    assert len(keys) == 5  # three CNNs, the single CNN, each with the hemorrhage floor, and the mirror rule
    for key in keys:
        assert split[f"{key}_ml"] + split[f"{key}_unscored_ml"] == pytest.approx(whole[f"{key}_ml"])
        assert split[f"{key}_false_ml"] <= whole[f"{key}_false_ml"] + 1e-9
    assert whole["mirror_ml"] > 0 and split["mirror_unscored_ml"] > 0


def test_a_claim_mostly_against_the_skull_is_dropped_whole_and_a_deeper_one_kept():
    from accuracy import skull_dropped

    hu = np.full((2, 30, 30), 35.0)
    hu[:, :, :2] = 1000.0  # bone along one edge (1 mm pixels)
    labels = np.zeros((2, 30, 30), np.uint8)
    labels[:, 5:10, 2:4] = 3  # a strip along the inner table: all of it within 3 mm of bone
    labels[:, 15:25, 3:15] = 1  # reaches the bone, but most of it lies deeper
    labels[0, 15, 3] = 4  # hemorrhage is not this rule's to drop
    out = skull_dropped(labels, hu, (5.0, 1.0, 1.0), 0.5)
    assert not out[:, 5:10, 2:4].any()
    assert (out[:, 15:25, 4:15] == 1).all() and out[0, 15, 3] == 4
    assert skull_dropped(labels, hu, (5.0, 1.0, 1.0), 1.0).tolist() == labels.tolist()  # nothing is more than all


@pytest.mark.slow
def test_kept_probability_maps_give_the_same_rows_without_the_networks(one_torch_thread, monkeypatch, tmp_path):
    # One procedural phantom scored with --maps, then again with the networks unable to run: the
    # stored maps give the same row; other cut-offs reuse them, other weights are not served them.
    import accuracy

    phantom, approaches = _six_slices_and_the_shipped_models(accuracy, monkeypatch)
    kwargs = {"n_test": 1, "test_seed": 1, "log": lambda line: None, "maps": tmp_path, "gate_hu": (3.0,)}
    first = accuracy.evaluate(approaches, **kwargs).iloc[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "models_single"]

    def no_networks(*args, **kw):
        raise AssertionError("the networks ran although their maps were kept")

    monkeypatch.setattr(accuracy, "dense_probabilities", no_networks)
    again = accuracy.evaluate(approaches, **kwargs).iloc[0]
    pd.testing.assert_series_equal(first, again)
    assert "models+gate3_dice" in again.index  # an experiment from the kept maps
    recut = dataclasses.replace(approaches["models"], cutoffs={**approaches["models"].cutoffs, "severe": 0.99},
                                version="corelab-0.0.0+recut")
    assert accuracy.evaluate({"models": recut}, **kwargs).iloc[0]["models_ml"] <= first["models_ml"]
    checksums = {**approaches["models"].checksums, "severe.pt": "0" * 64}
    other = {"models": dataclasses.replace(approaches["models"], checksums=checksums)}
    with pytest.raises(AssertionError, match="networks ran"):
        accuracy.evaluate(other, **kwargs)
