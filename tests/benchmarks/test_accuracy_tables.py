"""The left-out benchmark's tables (benchmarks/accuracy.py) on hand-made per-patient results."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from accuracy import approach_keys, false_volumes, joined_results, paired, patient_class, table1  # noqa: E402


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
